"""Scenario parameters: distributions, per-episode sampling and ``$name`` / ``${expression}`` substitution.

A scenario's ``parameters:`` mapping declares each parameter as a constant or a distribution::

    gap_m: {uniform: [10, 30]}
    decel_mps2: {normal: {mean: 6, std: 1, min: 3, max: 9}}   # truncated normal
    kind: {choice: [car, van], weights: [3, 1]}
    lanes: {randint: [1, 2]}                                  # inclusive
    speed_kmh: 50
    speed_mps: "${speed_kmh / 3.6}"                            # expression over earlier parameters

Anywhere else in the file, a string ``"$name"`` is replaced by the sampled value and ``"${expr}"`` by the value
of an arithmetic expression over parameters (+ - * / ** %, parentheses, min, max, abs, round, sqrt, pi).
Sampling takes an explicit ``numpy.random.Generator``; parameters are sampled in file order.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any

import numpy as np

from simgen.errors import InputError

_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_EXPR = re.compile(r"^\$\{(.+)\}$")
_FUNCS = {"min": min, "max": max, "abs": abs, "round": round, "sqrt": math.sqrt}
_CONSTS = {"pi": math.pi}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod}
_KINDS = ("uniform", "normal", "choice", "randint", "grid")


def evaluate(expr: str, values: dict[str, Any], *, file: str, key: str):
    """Evaluate a restricted arithmetic expression; names are parameters."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise InputError(f"cannot parse expression {expr!r}", file=file, key=key) from None

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.Name):
            if n.id in values:
                return values[n.id]
            if n.id in _CONSTS:
                return _CONSTS[n.id]
            raise InputError(f"unknown parameter {n.id!r} in {expr!r}; known: {', '.join(values) or 'none'}", file=file, key=key)
        if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
            return _BINOPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS and not n.keywords:
            return _FUNCS[n.func.id](*[ev(a) for a in n.args])
        raise InputError(f"expression {expr!r} uses something not allowed (only numbers, parameters, + - * / ** %, min max abs round sqrt)", file=file, key=key)

    try:
        return ev(tree)
    except InputError:
        raise
    except (ZeroDivisionError, OverflowError, TypeError, ValueError) as e:
        raise InputError(f"expression {expr!r} failed: {e}", file=file, key=key) from None


def _num(v, file, key, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{what} must be a number, got {v!r}", file=file, key=key)
    return float(v)


def check_parameters(params: dict, *, file: str) -> None:
    """Validate declarations without sampling (unknown distribution kinds, bad bounds)."""
    if not isinstance(params, dict):
        raise InputError(f"got {params!r}; allowed: a mapping of parameter names", file=file, key="parameters")
    for name, spec in params.items():
        key = f"parameters.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise InputError("parameter names are letters, digits and _", file=file, key=key)
        if not isinstance(spec, dict):
            continue
        kinds = [k for k in spec if k in _KINDS]
        extra = [k for k in spec if k not in _KINDS and k != "weights"]
        if len(kinds) != 1 or extra:
            raise InputError(f"got {spec!r}; allowed: a constant or one of {{uniform: [lo, hi]}}, {{normal: {{mean, std, min, max}}}}, {{choice: [...], weights: [...]}}, {{randint: [lo, hi]}}", file=file, key=key)
        k = kinds[0]
        v = spec[k]
        if k in ("uniform", "randint"):
            if not (isinstance(v, list) and len(v) == 2):
                raise InputError(f"{k} takes [lo, hi], got {v!r}", file=file, key=f"{key}.{k}")
            lo, hi = (_num(x, file, f"{key}.{k}", "bound") for x in v)
            if hi < lo:
                raise InputError(f"{k} bounds reversed: {v!r}; allowed: lo <= hi", file=file, key=f"{key}.{k}")
            if k == "randint" and not all(float(x).is_integer() for x in v):
                raise InputError(f"randint bounds must be integers, got {v!r}", file=file, key=f"{key}.{k}")
        elif k == "normal":
            if not isinstance(v, dict) or set(v) - {"mean", "std", "min", "max"} or not {"mean", "std"} <= set(v):
                raise InputError(f"normal takes {{mean, std, min?, max?}}, got {v!r}", file=file, key=f"{key}.normal")
            std = _num(v["std"], file, f"{key}.normal.std", "std")
            if std < 0:
                raise InputError(f"std must be >= 0, got {std}", file=file, key=f"{key}.normal.std")
            lo, hi = v.get("min", -math.inf), v.get("max", math.inf)
            if lo > hi:
                raise InputError(f"min > max in {v!r}", file=file, key=f"{key}.normal")
        elif k == "grid":
            if not isinstance(v, list) or not v:
                raise InputError(f"grid takes a non-empty list of values, got {v!r}", file=file, key=f"{key}.grid")
        elif k == "choice":
            if not isinstance(v, list) or not v:
                raise InputError(f"choice takes a non-empty list, got {v!r}", file=file, key=f"{key}.choice")
            w = spec.get("weights")
            if w is not None:
                if not isinstance(w, list) or len(w) != len(v) or any(_num(x, file, f"{key}.weights", "weight") < 0 for x in w) or sum(w) <= 0:
                    raise InputError(f"weights must be {len(v)} non-negative numbers with a positive sum, got {w!r}", file=file, key=f"{key}.weights")


def grid_axes(params: dict) -> list[tuple[str, list]]:
    """The ``grid`` parameters (name, values) in declaration order: the axes of a full-factorial grid."""
    return [(n, list(p["grid"])) for n, p in (params or {}).items() if isinstance(p, dict) and "grid" in p]


def grid_size(params: dict) -> int:
    """Number of points of the parameters' full-factorial grid (1 without grid parameters)."""
    return int(np.prod([len(v) for _, v in grid_axes(params)], dtype=np.int64)) if grid_axes(params) else 1


def grid_point(params: dict, index: int) -> dict[str, Any]:
    """The values of grid point ``index mod grid_size``: the axes in declaration order, the last varying fastest
    (row-major), so episodes 0 .. N-1 visit every point exactly once."""
    axes = grid_axes(params)
    k = int(index) % grid_size(params)
    out = {}
    for name, vals in reversed(axes):
        k, r = divmod(k, len(vals))
        out[name] = vals[r]
    return {n: out[n] for n, _ in axes}


def sample_parameters(params: dict, *, rng: np.random.Generator, file: str, grid_index: int = 0) -> dict[str, Any]:
    """Draw one concrete value per parameter, in declaration order.  ``grid`` parameters take the values of grid
    point ``grid_index`` (the episode index; see :func:`grid_point`) and draw nothing from ``rng``."""
    check_parameters(params, file=file)
    point = grid_point(params, grid_index)
    values: dict[str, Any] = {}
    for name, spec in params.items():
        key = f"parameters.{name}"
        if isinstance(spec, dict):
            k = next(k for k in spec if k in _KINDS)
            v = spec[k]
            if k == "grid":
                values[name] = substitute(point[name], values, file=file, key=f"{key}.grid")
            elif k == "uniform":
                values[name] = float(rng.uniform(float(v[0]), float(v[1])))
            elif k == "randint":
                values[name] = int(rng.integers(int(v[0]), int(v[1]) + 1))
            elif k == "normal":
                lo, hi = float(v.get("min", -math.inf)), float(v.get("max", math.inf))
                x = float(v["mean"])
                for _ in range(1000):  # rejection sampling of the truncated normal
                    x = float(rng.normal(float(v["mean"]), float(v["std"])))
                    if lo <= x <= hi:
                        break
                else:
                    x = float(np.clip(v["mean"], lo, hi))
                values[name] = x
            else:
                w = spec.get("weights")
                p = np.asarray(w, float) / np.sum(w) if w else None
                values[name] = v[int(rng.choice(len(v), p=p))]
        else:
            values[name] = substitute(spec, values, file=file, key=key)
    return values


def substitute(obj, values: dict[str, Any], *, file: str, key: str = ""):
    """Replace ``$name`` and ``${expr}`` strings throughout a plain structure."""
    if isinstance(obj, dict):
        return {k: substitute(v, values, file=file, key=f"{key}.{k}" if key else str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute(v, values, file=file, key=f"{key}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):
        m = _REF.match(obj)
        if m:
            if m.group(1) not in values:
                raise InputError(f"unknown parameter ${m.group(1)}; known: {', '.join(values) or 'none'}", file=file, key=key)
            return values[m.group(1)]
        m = _EXPR.match(obj)
        if m:
            return evaluate(m.group(1), values, file=file, key=key)
    return obj
