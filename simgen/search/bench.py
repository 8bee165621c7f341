"""``simgen search-bench``: how many episodes the search methods need against uniform sampling, on rare events.

For every rare scenario with a stored truth (``scenarios/rare/NAME.truth.json``: a large uniform run made once,
with its seed, by ``simgen search-bench --make-truth NAME --episodes N``) it measures, per method and seed:

- episodes to the first failure (uniform: measured too, capped at ``--uniform-cap``; its expectation 1/p from the
  truth is printed beside it);
- episodes until the 95 % interval of P(failure) is within ±20 % of the estimate (``ce-is``), and whether that
  interval covers the truth; uniform's count is the binomial one, 1.96² (1 - p) / (0.2² p), from the truth.

It prints a table and, with ``--json``, the figures as one JSON line.  No figure here is asserted by a test: the
speed-independent counts are what docs/performance.md reports.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from simgen.errors import InputError
from simgen.paths import SCENARIOS

RARE = SCENARIOS / "rare"
REL = 0.2
Z95 = 1.959964


def truths() -> dict[str, dict]:
    out = {}
    for p in sorted(RARE.glob("*.truth.json")):
        out[p.name.removesuffix(".truth.json")] = json.loads(p.read_text())
    return out


def make_truth(name: str, *, episodes: int, seed: int, workers: int, out: str | None = None) -> dict:
    """Run the large uniform search that is a rare scenario's truth and store its result beside the scenario."""
    from simgen.search.run import SearchConfig, search

    scen = RARE / f"{name}.yaml"
    if not scen.exists():
        raise InputError(f"no rare scenario {name!r}; known: {', '.join(p.stem for p in RARE.glob('*.yaml'))}",
                         key="--make-truth")
    spec = json.loads((RARE / "objectives.json").read_text())[name]
    folder = out or tempfile.mkdtemp(prefix=f"truth_{name}_")
    s = search(SearchConfig(str(scen), spec["objective"], "uniform", episodes, seed=seed,
                            threshold=spec.get("threshold"), batch_size=1000), out=folder, workers=workers)
    truth = {"scenario": f"rare/{name}.yaml", "objective": spec["objective"], "threshold": s["threshold"],
             "method": "uniform", "seed": seed, "episodes": s["episodes"], "failures": s["failures"],
             "p_failure": s["p_failure"], "ci95": s["ci95"],
             "command": f"simgen search-bench --make-truth {name} --episodes {episodes} --seed {seed}"}
    (RARE / f"{name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def bench(*, scenarios: list[str] | None = None, repeats: int = 3, workers: int = 2, out: str | None = None,
          budget: int = 4000, uniform_cap: int = 3000, falsify_cap: int = 300,
          methods: tuple[str, ...] = ("uniform", "falsify", "ce-is")) -> dict:
    from simgen.search.run import SearchConfig, search

    known = truths()
    names = scenarios or list(known)
    for m in methods:
        if m not in ("uniform", "falsify", "ce-is"):
            raise InputError(f"got {m!r}; allowed: uniform, falsify, ce-is", key="--methods")
    for n in names:
        if n not in known:
            raise InputError(f"no stored truth for {n!r}; known: {', '.join(known) or 'none'} (make one with "
                             "--make-truth)", key="--scenarios")
    root = Path(out or tempfile.mkdtemp(prefix="search_bench_"))
    res = {}
    for name in names:
        t = known[name]
        p = t["p_failure"]
        scen = str(RARE / f"{name}.yaml")
        row = {"truth_p": p, "truth_ci95": t["ci95"], "truth_episodes": t["episodes"],
               "uniform_first_failure_expected": (1 / p) if p else None,
               "uniform_rel20_episodes": math.ceil(Z95 ** 2 * (1 - p) / (REL ** 2 * p)) if p else None}
        firsts = {"uniform": [], "falsify": [], "ce-is": []}
        rel_eps, covered, ests, cis = [], [], [], []
        for r in range(repeats):
            for method in methods:
                # falsify is measured only by its first failure: a short run (a miss shows as None in the table)
                cap = {"uniform": uniform_cap, "falsify": falsify_cap}.get(method, budget)
                # uniform and falsify stop at the generation of their first failure: that is all they are measured by
                cfg = SearchConfig(scen, t["objective"], method, cap, seed=1000 + r, threshold=t["threshold"],
                                   batch_size=50, until_rel_error=REL if method == "ce-is" else None,
                                   until_failures=None if method == "ce-is" else 1)
                s = search(cfg, out=str(root / f"{name}_{method}_{r}"), workers=workers, progress=False)
                firsts[method].append(s["first_failure_episode"])
                if method == "ce-is":
                    rel_eps.append(s["episodes"] if (s["rel_half_width"] or 1) <= REL else None)
                    lo, hi = s["ci95"] or (None, None)
                    covered.append(lo is not None and lo <= p <= hi)
                    ests.append(s["p_failure"])
                    cis.append([lo, hi])
        med = {m: _median(v) for m, v in firsts.items()}
        row.update({"first_failure_median": med, "first_failure_runs": firsts,
                    "ce_is_rel20_episodes": rel_eps, "ce_is_rel20_median": _median_all(rel_eps),
                    "ce_is_estimates": ests, "ce_is_ci95": cis, "ce_is_covers_truth": covered})
        u = row["uniform_first_failure_expected"]
        row["ce_is_coverage"] = f"{sum(covered)}/{len(covered)}"
        row["speedup_first_failure"] = {m: (u / med[m]) if u and med[m] else None for m in ("falsify", "ce-is")}
        row["speedup_rel20"] = ((row["uniform_rel20_episodes"] / row["ce_is_rel20_median"])
                                if row["ce_is_rel20_median"] else None)
        res[name] = row
        print(f"{name}: truth P = {p:.4g} ({t['failures']}/{t['episodes']}); first failure: uniform ~{u:.0f} "
              f"expected, median measured {med['uniform']}, falsify {med['falsify']}, ce-is {med['ce-is']}; "
              f"±20 %: uniform {row['uniform_rel20_episodes']}, ce-is {row['ce_is_rel20_median']} "
              f"(covers truth {sum(covered)}/{len(covered)})")
    return res


def _median_all(v):
    """Median where a run that never got there (None) counts as more than any that did; None if that is the median
    (so a method that mostly fails is not reported by its one success)."""
    m = float(np.median([math.inf if x is None else x for x in v])) if v else math.inf
    return m if math.isfinite(m) else None


def _median(v):
    v = [x for x in v if x is not None]
    return float(np.median(v)) if v else None
