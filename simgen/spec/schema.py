"""Strict loading of YAML into frozen, typed dataclasses.

One mechanism validates every user file (scenario, rig, plan): a dataclass's type hints say what each key may
hold and ``field(metadata=...)`` adds ranges (``range=(lo, hi)``, ``gt``/``lt`` for open bounds) and choices.
Unknown keys, wrong types and out-of-range values raise :class:`simgen.errors.InputError` naming the file, the
key path (``actors[2].speed_mps``), the bad value and what is allowed.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from simgen.errors import InputError


MAX_DEPTH = 64  # nesting of mappings/lists in a YAML file or a --set value (after alias expansion)
MAX_VALUES = 100_000  # values in one YAML document after alias expansion (a "billion laughs" expands to 10^9)
MAX_STRING = 10_000  # characters in any string field unless the field says otherwise (metadata max_len)
MAX_SET_PARTS = 16  # dotted parts in a --set key


class _Refused(yaml.YAMLError):
    """A document the loader refuses (too deep, alias bomb, recursive alias): one line, no traceback."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that also rejects duplicate keys (a silent last-wins is a common YAML trap), reads YAML 1.2
    floats such as ``1e9`` as numbers (YAML 1.1 reads them as strings), and refuses documents nested deeper than
    MAX_DEPTH or expanding (through aliases) to more than MAX_VALUES values, and recursive aliases, before any
    Python object is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"values nested deeper than {MAX_DEPTH} levels (line {mark.line + 1}); allowed: at "
                               f"most {MAX_DEPTH}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node)
        return node


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root) -> None:
    """Count the values a composed node graph expands to (aliases are shared nodes) and its depth, iteratively;
    a node reached again while it is being expanded is a recursive alias."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, leave = stack.pop()
        nid = id(node)
        if leave:
            kids = _children(node)
            count = 1 + sum(done[id(k)][0] for k in kids)
            depth = 1 + max((done[id(k)][1] for k in kids), default=0)
            open_.discard(nid)
            done[nid] = (count, depth)
            if count > MAX_VALUES:
                raise _Refused(f"YAML aliases expand to more than {MAX_VALUES} values (line {node.start_mark.line + 1}); "
                               f"allowed: at most {MAX_VALUES} values in one file" if len(done) <= MAX_VALUES else
                               f"more than {MAX_VALUES} values in one file; allowed: at most {MAX_VALUES}")
            if depth > MAX_DEPTH:
                raise _Refused(f"values nested deeper than {MAX_DEPTH} levels once aliases are expanded (line "
                               f"{node.start_mark.line + 1}); allowed: at most {MAX_DEPTH}")
            continue
        if nid in done:
            continue
        if nid in open_:
            raise _Refused(f"a YAML alias refers to the value that contains it (line {node.start_mark.line + 1}); "
                           "recursive aliases are not allowed")
        open_.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(_children(node)))


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: merged keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 floats with an exponent and no dot or sign after the e (1e9, 2.5E3, -1e-3), which YAML 1.1 leaves strings
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(path: str | Path, *, what: str = "file") -> dict:
    """Read a YAML mapping safely; any problem is a one-line InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", file=str(path))
    if path.is_dir():
        raise InputError(f"expected a {what}, got a directory", file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what}: {e}", file=str(path)) from None
    key = (str(path), text)
    hit = _PARSED.get(key)
    if hit is None:
        hit = parse_yaml(text, file=str(path))
        if len(_PARSED) >= 16:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = hit
    return copy.deepcopy(hit)


# Parsed files by (path, exact text): a search or batch reads the same scenario thousands of times in one process
# (issue 13); the text is read and compared every time, so an edited file is parsed again.  Callers get a copy.
_PARSED: dict[tuple[str, str], object] = {}


def _load(text: str, *, file: str, key: str | None = None):
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except _Refused as e:
        raise InputError(str(e), file=file, key=key) from None
    except yaml.constructor.ConstructorError as e:
        mark = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        problem = e.problem or str(e)
        if "could not determine a constructor" in problem:
            problem = "YAML tags that construct objects are not allowed: " + problem.split("for the tag")[-1].strip()
        raise InputError(f"invalid YAML{mark}: {problem}", file=file, key=key) from None
    except yaml.reader.ReaderError as e:  # its own str() is two lines
        raise InputError(f"malformed YAML (character {e.position + 1}): unacceptable character #x{e.character:04x}; "
                         "allowed: printable text", file=file, key=key) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"malformed YAML{where}: {getattr(e, 'problem', None) or e}", file=file, key=key) from None
    except RecursionError:  # belt and braces: the limits above should make this unreachable
        raise InputError(f"values nested too deeply; allowed: at most {MAX_DEPTH} levels", file=file, key=key) from None


def parse_yaml(text: str, *, file: str) -> dict:
    data = _load(text, file=file)
    if data is None:
        raise InputError("file is empty; expected a YAML mapping", file=file)
    if not isinstance(data, dict):
        raise InputError(f"expected a YAML mapping at the top level, got {type(data).__name__}", file=file)
    return data


def _tname(tp) -> str:
    origin = get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true/false"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_tname(a) for a in get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _fmt(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


class Ctx:
    """Where we are in a file, for messages."""

    def __init__(self, file: str, path: str = ""):
        self.file, self.path = file, path

    def key(self, k) -> "Ctx":
        return Ctx(self.file, f"{self.path}.{k}" if self.path else str(k))

    def index(self, i: int) -> "Ctx":
        return Ctx(self.file, f"{self.path}[{i}]")

    def error(self, msg: str) -> InputError:
        return InputError(msg, file=self.file, key=self.path or None)


def convert(tp, value, ctx: Ctx, meta: typing.Mapping | None = None):
    """Check ``value`` against type ``tp`` (and metadata constraints) and build the typed value."""
    meta = meta or {}
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(a, value, ctx, meta)
            except InputError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ctx.error(f"got {_fmt(value)}; allowed: {_tname(tp)}")
    if tp is Any:
        return value
    if tp is dict:
        tp, origin = dict[str, Any], dict
    if origin is Literal:
        if value not in get_args(tp):
            raise ctx.error(f"got {_fmt(value)}; allowed: {_tname(tp)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(f"got {_fmt(value)}; allowed: true or false")
        return value
    if tp in (int, float):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if tp is float:
            ok = ok or isinstance(value, float)
        if not ok:
            raise ctx.error(f"got {_fmt(value)}; allowed: {_tname(tp)}")
        try:
            value = tp(value)
        except OverflowError:  # an integer too large for a float
            raise ctx.error(f"got {_fmt(value)}; allowed: a finite number") from None
        if tp is float and value != value:
            raise ctx.error("got NaN; allowed: a finite number")
        if tp is float and not math.isfinite(value) and not meta.get("allow_inf"):
            raise ctx.error(f"got {value}; allowed: a finite number")
        check_range(value, ctx, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(f"got {_fmt(value)}; allowed: a string")
        max_len = meta.get("max_len", MAX_STRING)
        if len(value) > max_len:
            raise ctx.error(f"got a string of {len(value)} characters; allowed: at most {max_len} characters")
        if "\0" in value:
            raise ctx.error("got a string with a NUL character; allowed: text without NUL")
        if meta.get("nonempty") and not value.strip():
            raise ctx.error("got an empty string; allowed: a non-empty string")
        if "choices" in meta and value not in meta["choices"]:
            raise ctx.error(f"got {_fmt(value)}; allowed: {', '.join(map(str, meta['choices']))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ctx.error(f"got {_fmt(value)}; allowed: a list")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ctx.error(f"got {len(value)} items; allowed: exactly {len(args)}")
            return tuple(convert(a, v, ctx.index(i), meta) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        if "min_items" in meta and len(value) < meta["min_items"]:
            raise ctx.error(f"got {len(value)} items; allowed: at least {meta['min_items']}")
        out = [convert(item, v, ctx.index(i), {k: v2 for k, v2 in meta.items() if k != "min_items"}) for i, v in enumerate(value)]
        return tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            raise ctx.error(f"got {_fmt(value)}; allowed: a mapping")
        kt, vt = get_args(tp) or (Any, Any)
        return {convert(kt, k, ctx.key(k)): convert(vt, v, ctx.key(k), meta) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, ctx)
    raise TypeError(f"unsupported spec type {tp!r}")  # programming error, not user error


def check_range(value, ctx: Ctx, meta) -> None:
    """Check a number against a field's ``range`` / ``gt`` / ``lt`` metadata."""
    lo, hi = meta.get("range", (None, None))
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ctx.error(f"got {value}; allowed: {lo} to {hi}")
    if "gt" in meta and not value > meta["gt"]:
        raise ctx.error(f"got {value}; allowed: greater than {meta['gt']}" + (f" and below {meta['lt']}" if "lt" in meta else ""))
    if "lt" in meta and not value < meta["lt"]:
        raise ctx.error(f"got {value}; allowed: below {meta['lt']}" + (f" and greater than {meta['gt']}" if "gt" in meta else ""))


_HINTS: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def from_dict(cls, data, ctx: Ctx):
    """Build dataclass ``cls`` from a mapping, strictly."""
    if not isinstance(data, dict):
        raise ctx.error(f"got {_fmt(data)}; allowed: a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ctx.key(unknown[0]).error(f"unknown key; allowed keys: {', '.join(fields)}")
    hints = _hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], ctx.key(name), f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.key(name).error("missing required key")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(ctx)
    return obj


def to_dict(obj) -> Any:
    """Dataclass → plain YAML-able structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override_value(raw: str, *, file: str, key: str):
    """A ``--set`` value: YAML (with the file loader's limits; ``1e9`` is a number), or the text itself when it is
    not valid YAML (``--set name=a: b``)."""
    if not raw.strip():
        return ""
    try:
        return yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except _Refused as e:
        raise InputError(f"--set {key}: {e}", file=file) from None
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict, overrides: list[str], *, file: str) -> dict:
    """Apply ``--set a.b.c=VALUE`` overrides (VALUE parsed as YAML) to a plain mapping, returning a copy.

    List items are addressed by index (``actors.0.speed_mps``) or by their ``id`` (``actors.lead.speed_mps``).
    The result is validated like the file itself, so a bad override fails with the same kind of message.
    Keys have at most MAX_SET_PARTS parts and values the file loader's limits.
    """
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE, got {_fmt(item)}", file=file)
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise InputError(f"--set has an empty key in {_fmt(item)}", file=file)
        if len(parts) > MAX_SET_PARTS:
            raise InputError(f"--set key {_fmt(key)} has {len(parts)} parts; allowed: at most {MAX_SET_PARTS}", file=file)
        value = parse_override_value(raw, file=file, key=key.strip())
        node = data
        for i, p in enumerate(parts[:-1]):
            node = _descend(node, p, parts[: i + 1], file, create=True)
        last = parts[-1]
        if isinstance(node, list):
            idx = _list_index(node, last, parts, file)
            node[idx] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise InputError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping", file=file)
    return data


def check_keys(cls, data, ctx: Ctx) -> None:
    """Refuse unknown keys throughout ``data`` against dataclass ``cls`` (and the dataclasses its fields hold),
    without checking values: the cheap structural check that runs before anything is sampled or imported."""
    stack = [(cls, data, ctx)]
    while stack:
        tp, value, c = stack.pop()
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            for a in get_args(tp):
                if dataclasses.is_dataclass(a) or get_origin(a) in (list, tuple):
                    stack.append((a, value, c))
                    break
            continue
        if origin in (list, tuple) and isinstance(value, list):
            args = get_args(tp)
            if origin is tuple and args and args[-1] is not Ellipsis:
                stack += [(a, v, c.index(i)) for i, (a, v) in enumerate(zip(args, value))]
            elif args:
                stack += [(args[0], v, c.index(i)) for i, v in enumerate(value)]
            continue
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            fields = [f.name for f in dataclasses.fields(tp) if f.init]
            unknown = [k for k in value if k not in fields]
            if unknown:
                raise c.key(unknown[0]).error(f"unknown key; allowed keys: {', '.join(fields)}")
            hints = _hints(tp)
            stack += [(hints[k], v, c.key(k)) for k, v in value.items()]


def _list_index(node: list, p: str, parts, file):
    if p.lstrip("-").isdigit():
        i = int(p)
        if not -len(node) <= i < len(node):
            raise InputError(f"--set {'.'.join(parts)}: index {i} out of range (list has {len(node)} items)", file=file)
        return i
    for i, v in enumerate(node):
        if isinstance(v, dict) and v.get("id") == p:
            return i
    raise InputError(f"--set {'.'.join(parts)}: no list item with id {p!r}", file=file)


def _descend(node, p, parts, file, create):
    if isinstance(node, list):
        return node[_list_index(node, p, parts, file)]
    if isinstance(node, dict):
        if p not in node or node[p] is None:
            if not create:
                raise InputError(f"--set {'.'.join(parts)}: no such key", file=file)
            node[p] = {}
        return node[p]
    raise InputError(f"--set {'.'.join(parts)}: cannot descend into {_fmt(node)}", file=file)
