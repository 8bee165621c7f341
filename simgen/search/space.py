"""The search space of a scenario: its own parameter distributions, seen through one standard-normal space.

Every parameter declared with a distribution (``uniform``, truncated ``normal``, ``randint``, ``choice``) is one
dimension.  A point of the search space is a vector ``z`` in R^d whose nominal law is N(0, I): a coordinate
``z_j`` maps to ``u_j = Phi(z_j)`` in (0, 1) and ``u_j`` through the parameter's inverse CDF to its value.  So
sampling ``z`` from N(0, I) is exactly sampling the scenario's own distribution (discrete parameters included:
the inverse CDF of a categorical is a step function), and a search method only has to propose ``z`` from some
other density ``q`` and record the likelihood ratio ``phi(z) / q(z)`` to keep estimates unbiased.

Constants and ``${expressions}`` are not dimensions: they follow from the searched values as in any run.
A searched value reaches the scenario as a pinned parameter (``--set parameters.NAME=VALUE``), so a searched
episode is an ordinary ``simgen run`` with those overrides and its seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from simgen.errors import InputError
from simgen.spec.params import check_parameters

_KINDS = ("uniform", "normal", "randint", "choice")


@dataclass(frozen=True)
class Dim:
    """One searched parameter: ``kind`` and its declaration ``spec`` (as written in the scenario)."""

    name: str
    kind: str
    spec: dict

    def value(self, u: np.ndarray) -> np.ndarray | list:
        """Inverse CDF: values for quantiles ``u`` in (0, 1) (vectorised)."""
        u = np.clip(np.asarray(u, float), 1e-12, 1 - 1e-12)
        v = self.spec[self.kind]
        if self.kind == "uniform":
            lo, hi = float(v[0]), float(v[1])
            return lo + u * (hi - lo)
        if self.kind == "normal":
            mean, std = float(v["mean"]), float(v["std"])
            lo, hi = float(v.get("min", -math.inf)), float(v.get("max", math.inf))
            a, b = (lo - mean) / std, (hi - mean) / std
            return np.clip(stats.truncnorm.ppf(u, a, b, loc=mean, scale=std), lo, hi)
        if self.kind == "randint":
            lo, hi = int(v[0]), int(v[1])
            return np.minimum(lo + np.floor(u * (hi - lo + 1)).astype(int), hi)
        w = np.asarray(self.spec.get("weights") or [1.0] * len(v), float)
        idx = np.minimum(np.searchsorted(np.cumsum(w) / w.sum(), u, side="right"), len(v) - 1)
        return [v[i] for i in np.atleast_1d(idx)]

    @property
    def numeric(self) -> bool:
        return self.kind != "choice" or all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in self.spec["choice"])

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Plot range of a numeric dimension (its support, or mean ± 3 std for an untruncated normal)."""
        v = self.spec[self.kind]
        if self.kind in ("uniform", "randint"):
            return float(v[0]), float(v[1])
        if self.kind == "normal":
            m, s = float(v["mean"]), float(v["std"])
            return max(float(v.get("min", -math.inf)), m - 3 * s), min(float(v.get("max", math.inf)), m + 3 * s)
        if self.numeric:
            return float(min(v)), float(max(v))
        return None


@dataclass(frozen=True)
class Space:
    dims: tuple[Dim, ...]

    @property
    def d(self) -> int:
        return len(self.dims)

    @property
    def names(self) -> list[str]:
        return [x.name for x in self.dims]

    def values(self, z: np.ndarray) -> list[dict]:
        """Parameter values for each row of ``z`` (n, d)."""
        z = np.atleast_2d(np.asarray(z, float))
        u = stats.norm.cdf(z)
        cols = [dim.value(u[:, j]) for j, dim in enumerate(self.dims)]
        out = []
        for i in range(len(z)):
            row = {}
            for dim, col in zip(self.dims, cols):
                x = col[i]
                row[dim.name] = x if dim.kind == "choice" else (int(x) if dim.kind == "randint" else float(x))
            out.append(row)
        return out

    @staticmethod
    def pins(values: dict) -> list[str]:
        """``--set`` overrides that pin these parameter values (exact: floats are written with repr)."""
        from simgen.spec.scenario import _yaml_scalar

        out = []
        for k, v in values.items():
            text = repr(float(v)) if isinstance(v, float) else _yaml_scalar(v)
            out.append(f"parameters.{k}={text}")
        return out


def space_of(raw: dict, *, file: str, only: list[str] | None = None) -> Space:
    """The search space of a scenario's ``parameters:`` (all distribution-valued ones, or ``only`` these)."""
    params = raw.get("parameters") or {}
    check_parameters(params, file=file)
    dims = []
    for name, spec in params.items():
        if not isinstance(spec, dict):
            continue
        kind = next(k for k in spec if k in _KINDS)
        if kind == "normal" and float(spec["normal"]["std"]) == 0.0:
            continue  # a point mass: nothing to search
        if kind in ("uniform", "randint") and float(spec[kind][0]) == float(spec[kind][1]):
            continue
        dims.append(Dim(str(name), kind, spec))
    if only:
        known = {d.name for d in dims}
        for n in only:
            if n not in known:
                raise InputError(f"got {n!r}; allowed: parameters with a distribution: {', '.join(sorted(known)) or 'none'}",
                                 file=file, key="--params")
        dims = [d for d in dims if d.name in only]
    if not dims:
        raise InputError("the scenario declares no parameter with a distribution, so there is nothing to search; "
                         "declare e.g. gap_m: {uniform: [10, 30]} under parameters:", file=file, key="parameters")
    return Space(tuple(dims))
