"""Scenario parameters: distributions, per-episode sampling and ``$name`` / ``${expression}`` substitution.

A scenario's ``parameters:`` mapping declares each parameter as a constant or a distribution::

    gap_m: {uniform: [10, 30]}
    decel_mps2: {normal: {mean: 6, std: 1, min: 3, max: 9}}   # truncated normal
    kind: {choice: [car, van], weights: [3, 1]}
    lanes: {randint: [1, 2]}                                  # inclusive
    speed_kmh: 50
    speed_mps: "${speed_kmh / 3.6}"                            # expression over earlier parameters

Anywhere else in the file, a string ``"$name"`` is replaced by the sampled value and ``"${expr}"`` by the value
of an arithmetic expression over parameters (+ - * / ** %, parentheses, min, max, abs, round, sqrt, pi),
evaluated by ``simpleeval`` with simgen's bounded operators (see :func:`evaluate`).  Sampling takes an explicit ``numpy.random.Generator``; parameters are sampled in file order.
"""
from __future__ import annotations

import ast
import math
import re
from typing import Any

import numpy as np

from simgen.errors import InputError

_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_EXPR = re.compile(r"^\$\{(.+)\}$")
_KINDS = ("uniform", "normal", "choice", "randint", "grid")

# Limits on expressions (issue 15 items 3 and 4).  simpleeval walks the tree; these bound what it is given and
# what any operation may produce, so no expression can run for long or allocate much.
MAX_EXPR_CHARS = 1000  # characters in one ${...}
MAX_EXPR_DEPTH = 50  # nesting of the parsed expression
MAX_INT = 2**63  # integer results beyond this become floats ...
MAX_POW_BITS = 63  # ... as do integer powers with more bits than this; floats must stay finite
MAX_NUMBER = 1e12  # largest magnitude of a distribution's numbers (bounds, mean, std, weights)
MAX_RANDINT = 2**53  # randint bounds (exact as floats)


class _ExprError(Exception):
    """Raised by the operators below; becomes a one-line InputError naming the key."""


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _nums(*args):
    for a in args:
        if not _is_num(a):
            raise _ExprError(f"operands must be numbers, got {_short(a)} (a string parameter can only be used "
                             "whole, as $name)")
    return args


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _result(v):
    if isinstance(v, complex):
        raise _ExprError("the result is not a real number")
    if isinstance(v, float) and not math.isfinite(v):
        raise _ExprError("the result is not a finite number (too large?)")
    if isinstance(v, int) and abs(v) >= MAX_INT:
        v = float(v)
    return v


def _binop(fn):
    def op(a, b):
        _nums(a, b)
        return _result(fn(a, b))

    return op


def _power(a, b):
    _nums(a, b)
    if isinstance(a, int) and isinstance(b, int) and b >= 0 and max(a.bit_length(), 1) * b <= MAX_POW_BITS:
        return _result(a**b)
    try:
        return _result(math.pow(a, b))
    except OverflowError:
        raise _ExprError(f"{_short(a)} ** {_short(b)} is too large") from None
    except ValueError:
        raise _ExprError(f"{_short(a)} ** {_short(b)} is not a real number") from None


def _func(fn):
    def call(*args):
        _nums(*args)
        return _result(fn(*args))

    call.__name__ = fn.__name__
    return call


_OPERATORS = {ast.Add: _binop(lambda a, b: a + b), ast.Sub: _binop(lambda a, b: a - b),
              ast.Mult: _binop(lambda a, b: a * b), ast.Div: _binop(lambda a, b: a / b), ast.Pow: _power,
              ast.Mod: _binop(lambda a, b: a % b), ast.USub: lambda a: -_nums(a)[0], ast.UAdd: lambda a: +_nums(a)[0]}
_FUNCS = {"min": _func(min), "max": _func(max), "abs": _func(abs), "round": _func(round), "sqrt": _func(math.sqrt)}
_CONSTS = {"pi": math.pi}
_ALLOWED = "only numbers, parameters, + - * / ** %, parentheses, min max abs round sqrt, pi"


def _check_tree(tree: ast.Expression) -> None:
    """Allow only the documented constructs, and bound the depth (the walk is iterative)."""
    stack = [(tree.body, 1)]
    while stack:
        n, depth = stack.pop()
        if depth > MAX_EXPR_DEPTH:
            raise _ExprError(f"nested deeper than {MAX_EXPR_DEPTH} levels")
        if isinstance(n, ast.Constant):
            if not _is_num(n.value):
                raise _ExprError(f"uses {_short(n.value)}; allowed: {_ALLOWED}")
        elif isinstance(n, ast.Name):
            pass
        elif isinstance(n, ast.BinOp) and type(n.op) in _OPERATORS:
            stack += [(n.left, depth + 1), (n.right, depth + 1)]
        elif isinstance(n, ast.UnaryOp) and type(n.op) in _OPERATORS:
            stack.append((n.operand, depth + 1))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS and not n.keywords \
                and not any(isinstance(a, ast.Starred) for a in n.args):
            stack += [(a, depth + 1) for a in n.args]
        else:
            raise _ExprError(f"uses something not allowed ({type(n).__name__}); allowed: {_ALLOWED}")


def evaluate(expr: str, values: dict[str, Any], *, file: str, key: str):
    """Evaluate a restricted arithmetic expression; names are parameters.

    The tree is walked by ``simpleeval`` (a maintained, sandboxed expression evaluator) with simgen's own
    operators: numbers only, integer powers that would exceed 63 bits computed as floats, every result finite.
    """
    from simpleeval import InvalidExpression, SimpleEval

    shown = expr if len(expr) <= 60 else expr[:57] + "..."
    if len(expr) > MAX_EXPR_CHARS:
        raise InputError(f"expression of {len(expr)} characters; allowed: at most {MAX_EXPR_CHARS}", file=file, key=key)
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise InputError(f"cannot parse expression {shown!r}", file=file, key=key) from None
    try:
        _check_tree(tree)
        names = {**_CONSTS, **values}
        ev = SimpleEval(operators=_OPERATORS, functions=_FUNCS, names=names)
        ev.nodes = {t: h for t, h in ev.nodes.items() if t in (ast.Name, ast.UnaryOp, ast.BinOp, ast.Call, ast.Constant)}
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and n.id not in names and n.id not in _FUNCS:
                raise InputError(f"unknown parameter {n.id!r} in {shown!r}; known: {', '.join(values) or 'none'}",
                                 file=file, key=key)
        return ev.eval(expr, previously_parsed=tree.body)
    except InputError:
        raise
    except _ExprError as e:
        raise InputError(f"expression {shown!r} {e}" if str(e).startswith("nested") or str(e).startswith("uses")
                         else f"expression {shown!r}: {e}", file=file, key=key) from None
    except (InvalidExpression, ZeroDivisionError, OverflowError, TypeError, ValueError) as e:
        raise InputError(f"expression {shown!r} failed: {e}", file=file, key=key) from None


def _num(v, file, key, what, *, limit: float = MAX_NUMBER):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{what} must be a number, got {v!r}", file=file, key=key)
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise InputError(f"{what} got {v!r}; allowed: a finite number", file=file, key=key)
    if abs(x) > limit:
        raise InputError(f"{what} got {v!r}; allowed: -{limit:g} to {limit:g}", file=file, key=key)
    return x


def _window_mass(mean: float, std: float, lo: float, hi: float) -> float:
    """Probability that normal(mean, std) falls in [lo, hi] (computed on the far side of the mean's tail, so a
    window deep in a tail does not cancel to 0)."""
    from scipy.special import ndtr

    if std == 0:
        return 1.0 if lo <= mean <= hi else 0.0
    a, b = (lo - mean) / std, (hi - mean) / std
    if a > 0:  # both in the upper tail: use the lower tail of the mirror image
        return float(ndtr(-a) - ndtr(-b))
    return float(ndtr(b) - ndtr(a))


MIN_WINDOW_MASS = 1e-9  # a truncated normal's window must hold at least this much of the distribution


def check_parameters(params: dict, *, file: str) -> None:
    """Validate declarations without sampling (unknown distribution kinds, bad bounds, non-finite numbers)."""
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
            raise InputError(f"got {spec!r}; allowed: a constant or one of {{uniform: [lo, hi]}}, {{normal: {{mean, std, min, max}}}}, {{choice: [...], weights: [...]}}, {{randint: [lo, hi]}}, {{grid: [...]}}", file=file, key=key)
        k = kinds[0]
        v = spec[k]
        if k in ("uniform", "randint"):
            if not (isinstance(v, list) and len(v) == 2):
                raise InputError(f"{k} takes [lo, hi], got {v!r}", file=file, key=f"{key}.{k}")
            limit = MAX_RANDINT if k == "randint" else MAX_NUMBER
            lo, hi = (_num(x, file, f"{key}.{k}", "bound", limit=limit) for x in v)
            if hi < lo:
                raise InputError(f"{k} bounds reversed: {v!r}; allowed: lo <= hi", file=file, key=f"{key}.{k}")
            if k == "randint" and not all(float(x).is_integer() for x in v):
                raise InputError(f"randint bounds must be integers, got {v!r}", file=file, key=f"{key}.{k}")
        elif k == "normal":
            if not isinstance(v, dict) or set(v) - {"mean", "std", "min", "max"} or not {"mean", "std"} <= set(v):
                raise InputError(f"normal takes {{mean, std, min?, max?}}, got {v!r}", file=file, key=f"{key}.normal")
            mean = _num(v["mean"], file, f"{key}.normal.mean", "mean")
            std = _num(v["std"], file, f"{key}.normal.std", "std")
            if std < 0:
                raise InputError(f"std must be >= 0, got {std}", file=file, key=f"{key}.normal.std")
            lo = _num(v["min"], file, f"{key}.normal.min", "min") if "min" in v else -math.inf
            hi = _num(v["max"], file, f"{key}.normal.max", "max") if "max" in v else math.inf
            if lo > hi:
                raise InputError(f"min > max in {v!r}", file=file, key=f"{key}.normal")
            if _window_mass(mean, std, lo, hi) < MIN_WINDOW_MASS:
                raise InputError(f"the window [min, max] = [{lo:g}, {hi:g}] holds practically none of normal(mean "
                                 f"{mean:g}, std {std:g}); allowed: a window that contains the mean or lies within a "
                                 "few std of it", file=file, key=f"{key}.normal")
        elif k == "grid":
            if not isinstance(v, list) or not v:
                raise InputError(f"grid takes a non-empty list of values, got {v!r}", file=file, key=f"{key}.grid")
        elif k == "choice":
            if not isinstance(v, list) or not v:
                raise InputError(f"choice takes a non-empty list, got {v!r}", file=file, key=f"{key}.choice")
            w = spec.get("weights")
            if w is not None:
                if not isinstance(w, list) or len(w) != len(v):
                    raise InputError(f"weights must be {len(v)} non-negative numbers with a positive sum, got {w!r}",
                                     file=file, key=f"{key}.weights")
                ws = [_num(x, file, f"{key}.weights", "weight") for x in w]
                if any(x < 0 for x in ws) or sum(ws) <= 0:
                    raise InputError(f"weights must be {len(v)} non-negative numbers with a positive sum, got {w!r}",
                                     file=file, key=f"{key}.weights")


def _truncated_normal(rng: np.random.Generator, mean: float, std: float, lo: float, hi: float) -> float:
    """Rejection sampling (up to 1000 draws); a window too far in a tail for that is sampled exactly from the
    truncated distribution (``scipy.stats.truncnorm``), never clipped to an edge."""
    for _ in range(1000):
        x = float(rng.normal(mean, std))
        if lo <= x <= hi:
            return x
    from scipy.stats import truncnorm

    x = float(truncnorm.rvs((lo - mean) / std, (hi - mean) / std, loc=mean, scale=std, random_state=rng))
    return min(max(x, lo), hi)  # guards the last ulp only


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
                values[name] = _truncated_normal(rng, float(v["mean"]), float(v["std"]), lo, hi)
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
