"""OpenSCENARIO ParameterValueDistribution files as batch plans: ``simgen batch FILE.xosc --out DIR``.

A distribution file names one scenario (``ScenarioFile``) and the parameter values of its runs:

- ``Deterministic``: every ``DeterministicMultiParameterDistribution`` (a list of ``ParameterValueSet``s) and every
  ``DeterministicSingleParameterDistribution`` (a ``DistributionSet`` of values or a ``DistributionRange`` from
  lowerLimit to upperLimit in steps of stepWidth) is one axis; the runs are their full-factorial product, in file
  order with the last axis varying fastest.
- ``Stochastic``: ``numberOfTestRuns`` runs; in each, every ``StochasticDistribution`` draws its parameter (normal,
  log-normal, uniform, Poisson, histogram, or a weighted set) from numpy's PCG64 seeded with ``randomSeed``
  (0 when absent), run by run and in file order, so the same file gives the same values.

Each run becomes one job of one episode whose ``set`` overrides the scenario's parameter declarations (as
``simgen run --set parameters.NAME=V`` would), so everything else — seeds, resume, the index — is the batch
runner's (docs/batch.md).  The plan is validated like a YAML plan; the YAML equivalent is what the output folder's
``plan.yaml`` records.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from simgen.errors import InputError

MAX_RUNS = 100_000


class _Reader:
    def __init__(self, path: Path):
        from simgen.spec.xosc import _Conv, _parse

        self.path = path
        self.file = str(path)
        self.root = _parse(path)
        self.kids = _Conv.kids

    def err(self, where: str, msg: str) -> InputError:
        return InputError(msg, file=self.file, key=where)

    def num(self, el: ET.Element, attr: str, where: str, default=None) -> float:
        v = el.get(attr)
        if v is None:
            if default is None:
                raise self.err(f"{where}@{attr}", "missing")
            return default
        try:
            x = float(v)
        except ValueError:
            raise self.err(f"{where}@{attr}", f"got {v!r}; allowed: a number (parameter references are not "
                                              "supported in a distribution file)") from None
        if not math.isfinite(x):
            raise self.err(f"{where}@{attr}", f"got {v!r}; allowed: a finite number")
        return x

    def one(self, el: ET.Element, where: str) -> tuple[ET.Element, str]:
        kids = list(self.kids(el, where))
        if len(kids) != 1:
            raise self.err(where, f"expected one child element, got {len(kids)}")
        return kids[0][0], re.sub(r"\[1\]$", "", kids[0][1])

    # ------------------------------------------------------------------ deterministic
    def deterministic(self, det: ET.Element, where: str) -> list[dict]:
        axes: list[list[dict]] = []
        for d, dw in self.kids(det, where):
            if d.tag == "DeterministicMultiParameterDistribution":
                vsd, vw = self.one(d, dw)
                if vsd.tag != "ValueSetDistribution":
                    raise self.unsupported(vsd, vw)
                sets = []
                for s, sw in self.kids(vsd, vw):
                    sets.append({a.get("parameterRef").lstrip("$"): a.get("value") for a, _ in self.kids(s, sw)})
                axes.append(sets)
            elif d.tag == "DeterministicSingleParameterDistribution":
                name = d.get("parameterName").lstrip("$")
                kind, kw = self.one(d, dw)
                if kind.tag == "DistributionSet":
                    axes.append([{name: e.get("value")} for e, _ in self.kids(kind, kw)])
                elif kind.tag == "DistributionRange":
                    step = self.num(kind, "stepWidth", kw)
                    rg = kind.find("Range")
                    lo, hi = self.num(rg, "lowerLimit", f"{kw}/Range"), self.num(rg, "upperLimit", f"{kw}/Range")
                    if step <= 0 or hi < lo:
                        raise self.err(kw, f"a range from {lo:g} to {hi:g} in steps of {step:g}; allowed: stepWidth "
                                           "> 0 and lowerLimit <= upperLimit")
                    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
                    if n > MAX_RUNS:
                        raise self.err(kw, f"{n} values; allowed: at most {MAX_RUNS}")
                    axes.append([{name: _fmt(round(lo + i * step, 12))} for i in range(n)])
                else:
                    raise self.unsupported(kind, kw)
            else:
                raise self.unsupported(d, dw)
        size = math.prod(len(a) for a in axes)
        if size > MAX_RUNS:
            raise self.err(where, f"{size} runs; allowed: at most {MAX_RUNS}")
        return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]

    # ------------------------------------------------------------------ stochastic
    def stochastic(self, sto: ET.Element, where: str) -> list[dict]:
        n = int(self.num(sto, "numberOfTestRuns", where))
        if not 1 <= n <= MAX_RUNS:
            raise self.err(f"{where}@numberOfTestRuns", f"got {n}; allowed: 1 to {MAX_RUNS}")
        rng = np.random.default_rng(int(self.num(sto, "randomSeed", where, 0.0)))
        dists = []
        for d, dw in self.kids(sto, where):
            if d.tag != "StochasticDistribution":
                raise self.unsupported(d, dw)
            dists.append((d.get("parameterName").lstrip("$"), *self.one(d, dw)))
        return [{name: self.draw(kind, kw, rng) for name, kind, kw in dists} for _ in range(n)]

    def _limits(self, el: ET.Element, where: str) -> tuple[float, float]:
        rg = el.find("Range")
        if rg is None:
            return -math.inf, math.inf
        lo, hi = self.num(rg, "lowerLimit", f"{where}/Range"), self.num(rg, "upperLimit", f"{where}/Range")
        if hi < lo:
            raise self.err(f"{where}/Range", "lowerLimit must not exceed upperLimit")
        return lo, hi

    def draw(self, kind: ET.Element, where: str, rng: np.random.Generator) -> str:
        tag = kind.tag
        if tag == "UniformDistribution":
            lo, hi = self._limits(kind, where)
            if not math.isfinite(lo):
                raise self.err(where, "needs a Range")
            return _fmt(float(rng.uniform(lo, hi)))
        if tag in ("NormalDistribution", "LogNormalDistribution"):
            mean, var = self.num(kind, "expectedValue", where), self.num(kind, "variance", where)
            if var < 0:
                raise self.err(f"{where}@variance", "allowed: >= 0")
            lo, hi = self._limits(kind, where)
            for _ in range(10_000):  # truncated by the Range: rejection (the Range must hold some of the mass)
                x = float(rng.normal(mean, math.sqrt(var)))
                if tag == "LogNormalDistribution":  # expectedValue and variance of the variable's logarithm
                    x = math.exp(x)
                if lo <= x <= hi:
                    return _fmt(x)
            raise self.err(f"{where}/Range", "holds practically none of the distribution")
        if tag == "PoissonDistribution":
            lam = self.num(kind, "expectedValue", where)
            lo, hi = self._limits(kind, where)
            for _ in range(10_000):
                x = int(rng.poisson(lam))
                if lo <= x <= hi:
                    return str(x)
            raise self.err(f"{where}/Range", "holds practically none of the distribution")
        if tag == "Histogram":
            bins = [(self.num(b, "weight", bw), *self._limits(b, bw)) for b, bw in self.kids(kind, where)]
            w = np.array([b[0] for b in bins], float)
            if not len(bins) or w.sum() <= 0:
                raise self.err(where, "needs bins with a positive total weight")
            k = int(rng.choice(len(bins), p=w / w.sum()))
            return _fmt(float(rng.uniform(bins[k][1], bins[k][2])))
        if tag == "ProbabilityDistributionSet":
            els = [(e.get("value"), self.num(e, "weight", ew)) for e, ew in self.kids(kind, where)]
            w = np.array([e[1] for e in els], float)
            if not len(els) or w.sum() <= 0:
                raise self.err(where, "needs elements with a positive total weight")
            return els[int(rng.choice(len(els), p=w / w.sum()))][0]
        raise self.unsupported(kind, where)

    def unsupported(self, el: ET.Element, where: str) -> InputError:
        return self.err(where, f"<{el.tag}> is not supported by simgen's OpenSCENARIO import (see docs/openscenario.md)")


def _fmt(x: float) -> str:
    return repr(float(x))


def _is_number(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def is_distribution(path: str | Path) -> bool:
    """Whether an .xosc file is a ParameterValueDistribution (cheap: looks at the root's children only)."""
    try:
        for _, el in ET.iterparse(str(path), events=("start",)):
            if el.tag == "ParameterValueDistribution":
                return True
            if el.tag in ("Storyboard", "Catalog", "Entities", "RoadNetwork"):
                return False
    except (ET.ParseError, OSError):
        return False
    return False


def runs(path: str | Path) -> tuple[Path, list[dict]]:
    """The scenario file and the parameter values of each run (name -> value text) of a distribution file."""
    path = Path(path)
    r = _Reader(path)
    pvd = r.root.find("ParameterValueDistribution")
    if pvd is None:
        raise r.err("OpenSCENARIO", "not a ParameterValueDistribution file: `simgen batch` takes a plan (.yaml) or an "
                                    "OpenSCENARIO parameter distribution; run a scenario with `simgen run FILE.xosc`")
    where = "ParameterValueDistribution"
    sf = pvd.find("ScenarioFile")
    scen = (path.parent / sf.get("filepath")).resolve()
    if not scen.is_file():
        raise r.err(f"{where}/ScenarioFile@filepath", f"scenario file {str(scen)!r} not found")
    det, sto = pvd.find("Deterministic"), pvd.find("Stochastic")
    out = r.deterministic(det, f"{where}/Deterministic") if det is not None else \
        r.stochastic(sto, f"{where}/Stochastic")
    return scen, out


def distribution_plan(path: str | Path) -> tuple[dict, str]:
    """The batch plan (as the mapping a plan YAML gives, and that YAML's text) of a distribution file."""
    import yaml

    scen, values = runs(path)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", scen.stem)
    jobs = []
    for i, vals in enumerate(values):
        jobs.append({"scenario": str(scen), "episodes": 1, "name": f"{i:03d}-{stem}",
                     "set": [f"parameters.{k}={v if _is_number(v) else json.dumps(v)}" for k, v in vals.items()]})
    data = {"seed": 0, "jobs": jobs}
    text = f"# made by simgen from the OpenSCENARIO parameter distribution {Path(path).resolve()}\n" + \
        yaml.safe_dump(data, sort_keys=False)
    return data, text
