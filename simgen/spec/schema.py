"""Strict loading of YAML into frozen, typed dataclasses.

One mechanism validates every user file (scenario, rig, plan): a dataclass's type hints say what each key may
hold and ``field(metadata=...)`` adds ranges (``range=(lo, hi)``, ``gt``/``lt`` for open bounds) and choices.
Unknown keys, wrong types and out-of-range values raise :class:`simgen.errors.InputError` naming the file, the
key path (``actors[2].speed_mps``), the bad value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from simgen.errors import InputError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that also rejects duplicate keys (a silent last-wins is a common YAML trap)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
    return parse_yaml(text, file=str(path))


def parse_yaml(text: str, *, file: str) -> dict:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.constructor.ConstructorError as e:
        mark = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        problem = e.problem or str(e)
        if "could not determine a constructor" in problem:
            problem = "YAML tags that construct objects are not allowed: " + problem.split("for the tag")[-1].strip()
        raise InputError(f"invalid YAML{mark}: {problem}", file=file) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"malformed YAML{where}: {getattr(e, 'problem', None) or e}", file=file) from None
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
        value = tp(value)
        if tp is float and value != value:
            raise ctx.error("got NaN; allowed: a finite number")
        _check_range(value, ctx, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(f"got {_fmt(value)}; allowed: a string")
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


def _check_range(value, ctx: Ctx, meta) -> None:
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


def apply_overrides(data: dict, overrides: list[str], *, file: str) -> dict:
    """Apply ``--set a.b.c=VALUE`` overrides (VALUE parsed as YAML) to a plain mapping, returning a copy.

    List items are addressed by index (``actors.0.speed_mps``) or by their ``id`` (``actors.lead.speed_mps``).
    The result is validated like the file itself, so a bad override fails with the same kind of message.
    """
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}", file=file)
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise InputError(f"--set has an empty key in {item!r}", file=file)
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
