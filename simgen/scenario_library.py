"""The scenario library: ``simgen scenarios list | show NAME | behaviours``.

The library is the folder :data:`simgen.paths.SCENARIOS` (``scenarios/`` in a checkout, ``simgen/_scenarios`` in a
wheel): one YAML file per scenario, each opening with a comment that says what happens, which parameters exist
with their ranges and which NHTSA pre-crash type it stages, followed by ``name``, a one-line ``description`` and
``pre_crash_type``.  ``list`` prints every scenario with its description and sampled parameters; ``show`` prints
one scenario's header comment, description, pre-crash type and all of its parameters; ``behaviours`` lists the
behaviours and custom triggers a scenario may name (built in, and those registered by the library's plugins).

Library files are read as plain YAML here (plugins are not imported for ``list``/``show``), so a broken plugin
cannot hide the listing.  A scenario is found by its ``name`` or its file name without ``.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simgen.errors import InputError

_KINDS = ("uniform", "normal", "choice", "randint", "grid")


@dataclass(frozen=True)
class LibraryScenario:
    """One library file as written (before sampling)."""

    name: str
    path: Path
    header: str  # the leading comment, without the "# " markers
    description: str
    pre_crash_type: str
    map: str
    duration_s: float | None
    parameters: dict = field(default_factory=dict)
    randomize: dict = field(default_factory=dict)
    plugins: tuple[str, ...] = ()


def library_dir() -> Path:
    from simgen.paths import SCENARIOS

    return Path(SCENARIOS)


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:]
        lines.append(body[1:] if body.startswith(" ") else body)
    return "\n".join(lines).rstrip()


def read_scenario(path: str | Path) -> LibraryScenario:
    """Parse one library file (strict YAML, no plugin import, no sampling)."""
    from simgen.spec.schema import parse_yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read scenario file: {e}", file=str(path)) from None
    raw = parse_yaml(text, file=str(path))
    params = raw.get("parameters") or {}
    rand = raw.get("randomize") or {}
    plugins = raw.get("plugins") or []
    dur = raw.get("duration_s")
    return LibraryScenario(
        name=str(raw.get("name", path.stem)), path=path, header=_header(text),
        description=str(raw.get("description", "") or ""), pre_crash_type=str(raw.get("pre_crash_type", "") or ""),
        map=str(raw.get("map", "")), duration_s=float(dur) if isinstance(dur, (int, float)) else None,
        parameters=dict(params) if isinstance(params, dict) else {},
        randomize=dict(rand) if isinstance(rand, dict) else {},
        plugins=tuple(str(p) for p in plugins) if isinstance(plugins, list) else (),
    )


def library(folder: str | Path | None = None) -> list[LibraryScenario]:
    """Every scenario in the library folder, sorted by name."""
    folder = Path(folder) if folder is not None else library_dir()
    if not folder.is_dir():
        raise InputError("scenario library folder not found", file=str(folder))
    return sorted((read_scenario(p) for p in folder.glob("*.yaml")), key=lambda s: s.name)


def find(name: str, folder: str | Path | None = None) -> LibraryScenario:
    """The library scenario called ``name`` (its ``name`` field or file stem, ``.yaml`` optional)."""
    entries = library(folder)
    key = name[:-5] if name.endswith(".yaml") else name
    for e in entries:
        if key in (e.name, e.path.stem):
            return e
    raise InputError(f"unknown scenario {name!r}; library scenarios: {', '.join(e.name for e in entries) or 'none'}")


def _num(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:g}"


def describe(spec) -> str:
    """A parameter declaration in words: its distribution and range, or its constant value / expression."""
    if isinstance(spec, dict):
        kind = next((k for k in spec if k in _KINDS), None)
        v = spec.get(kind)
        if kind in ("uniform", "randint") and isinstance(v, list) and len(v) == 2:
            what = "uniform" if kind == "uniform" else "integer"
            return f"{what} {_num(v[0])} to {_num(v[1])}"
        if kind == "normal" and isinstance(v, dict):
            bounds = ""
            if "min" in v or "max" in v:
                bounds = f", {_num(v.get('min', '-inf'))} to {_num(v.get('max', 'inf'))}"
            return f"normal mean {_num(v.get('mean'))} std {_num(v.get('std'))}{bounds}"
        if kind == "choice" and isinstance(v, list):
            w = spec.get("weights")
            if isinstance(w, list) and len(w) == len(v):
                return "one of " + ", ".join(f"{_num(c)} ({_num(x)})" for c, x in zip(v, w))
            return "one of " + ", ".join(_num(c) for c in v)
        if kind == "grid" and isinstance(v, list):
            return "grid of " + ", ".join(_num(c) for c in v)
        return str(spec)
    if isinstance(spec, str) and spec.startswith("$"):
        return f"= {spec}"
    return f"= {_num(spec)}"


def is_sampled(spec) -> bool:
    return isinstance(spec, dict) and any(k in spec for k in _KINDS)


def _param_lines(entry: LibraryScenario, *, sampled_only: bool) -> list[tuple[str, str]]:
    rows = [(k, describe(v)) for k, v in entry.parameters.items() if is_sampled(v) or not sampled_only]
    rows += [(f"randomize.{k}", describe(v)) for k, v in entry.randomize.items() if is_sampled(v) or not sampled_only]
    return rows


def format_list(entries: list[LibraryScenario]) -> str:
    out = []
    for e in entries:
        out.append(f"{e.name}  -  {e.description or '(no description)'}")
        rows = _param_lines(e, sampled_only=True)
        if rows:
            out.append("    " + "; ".join(f"{k} {d}" for k, d in rows))
        else:
            out.append("    (no sampled parameters)")
    return "\n".join(out)


def format_show(e: LibraryScenario) -> str:
    out = [e.header or "(no header comment)", ""]
    out.append(f"name:           {e.name}")
    out.append(f"file:           {e.path}")
    out.append(f"description:    {e.description or '(none)'}")
    out.append(f"pre-crash type: {e.pre_crash_type or '(none)'}")
    dur = f", {_num(e.duration_s)} s" if e.duration_s is not None else ""
    out.append(f"map:            {e.map}{dur}")
    if e.plugins:
        out.append(f"plugins:        {', '.join(e.plugins)}")
    rows = _param_lines(e, sampled_only=False)
    out.append("parameters:" + ("" if rows else " none"))
    width = max((len(k) for k, _ in rows), default=0)
    out += [f"  {k.ljust(width)}  {d}" for k, d in rows]
    return "\n".join(out)


def format_behaviours(folder: str | Path | None = None, allow_plugins: bool | None = None) -> str:
    """Registered behaviours and custom triggers, after importing the library's plugins (those of another
    ``--library`` folder only with the opt-in, ``--allow-plugins`` or ``SIMGEN_ALLOW_PLUGINS=1``)."""
    from simgen.sim.behaviours import BEHAVIOURS, BUILTIN_BEHAVIOURS, TRIGGERS
    from simgen.spec.scenario import load_plugins

    problems = []
    for e in library(folder):
        if e.plugins:
            try:
                # the shipped library's plugins are part of simgen; another --library folder needs the opt-in
                load_plugins({"plugins": list(e.plugins)}, str(e.path), allow=True if folder is None else allow_plugins)
            except InputError as err:  # list what is there; say what could not be loaded
                problems.append(f"  (not loaded: {err})")

    def doc(fn) -> str:
        first = (fn.__doc__ or "").strip().splitlines()
        return first[0] if first else ""

    out = ["built-in behaviours: " + ", ".join(BUILTIN_BEHAVIOURS)]
    plugged = [(n, f) for n, f in BEHAVIOURS.items() if f is not None]
    out.append("registered behaviours:" + ("" if plugged else " none"))
    out += [f"  {n}  ({f.__module__})  {doc(f)}" for n, f in sorted(plugged)]
    out.append("built-in trigger conditions: time_s, distance_m, ttc_s, after, position, custom (+ delay_s)")
    out.append("registered custom triggers:" + ("" if TRIGGERS else " none"))
    out += [f"  {n}  ({f.__module__})  {doc(f)}" for n, f in sorted(TRIGGERS.items())]
    return "\n".join(out + problems)


def cmd_scenarios(a) -> int:
    folder = getattr(a, "library", None)
    if a.action == "list":
        print(format_list(library(folder)))
    elif a.action == "show":
        print(format_show(find(a.name, folder)))
    elif a.action == "behaviours":
        print(format_behaviours(folder, getattr(a, "allow_plugins", False) or None))
    else:  # pragma: no cover - argparse restricts the actions
        raise InputError(f"unknown scenarios action {a.action!r}; allowed: list, show, behaviours")
    return 0


def add_subcommand(subparsers) -> None:
    """Add ``scenarios {list, show NAME, behaviours}`` to a ``simgen`` subparsers object."""
    p = subparsers.add_parser("scenarios", help="the scenario library: list, show NAME, behaviours",
                              description="Browse the scenario library (" + str(library_dir()) + ").")
    p.add_argument("--library", metavar="DIR", help="another library folder (default: the shipped one)")
    p.add_argument("--allow-plugins", action="store_true",
                   help="behaviours: also run the plugins of another --library folder (Python code: only if you trust it)")
    acts = p.add_subparsers(dest="action", required=True, metavar="{list,show,behaviours}")
    acts.add_parser("list", help="every library scenario: name, description, sampled parameters with ranges")
    s = acts.add_parser("show", help="one scenario's header comment, description, pre-crash type and parameters")
    s.add_argument("name", help="scenario name (or file name without .yaml)")
    acts.add_parser("behaviours", help="behaviours and custom triggers a scenario may use (incl. library plugins)")
    p.set_defaults(func=cmd_scenarios)
