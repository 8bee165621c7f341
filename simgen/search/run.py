"""``simgen search``: run sensor-free episodes in generations, adapt where they are sampled, write what was found.

Output folder::

    search.json     the configuration (written first; a resumed search must match it)
    samples.jsonl   one line per episode, appended a whole generation at a time (fsync'd): the resume log
    samples.csv     every sample: index, generation, seed, parameter values, score, failed, weight, summary
    space.png       the parameter space coloured by outcome, with the failure boundary
    summary.json    failures found, P(failure) with its 95 % interval, episodes spent (written last)
    render/         ``--render K``: the chosen samples as ordinary ``simgen run`` datasets

Determinism: generation ``g`` draws from ``SeedSequence(seed).spawn`` child ``g`` and sample ``i`` runs with
episode seed ``episode_seed(seed, i)``; what a generation proposes depends only on the samples before it.  So
the same seed gives the same samples whatever the number of workers, and an interrupted search resumed with the
same command continues exactly where it stopped.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simgen.errors import InputError
from simgen.search.methods import METHODS, History, make_method
from simgen.search.objectives import OBJECTIVES
from simgen.search.simulate import SimTask, simulate, simulate_many
from simgen.search.space import Space, space_of

FORMAT = "simgen-search/1"


def episode_seed(seed: int, index: int) -> int:
    """The ``simgen run --seed`` of sample ``index`` (a 31-bit integer drawn from the search seed)."""
    return int(np.random.SeedSequence(seed, spawn_key=(7, index)).generate_state(1)[0] >> 1)


@dataclass
class SearchConfig:
    scenario: str
    objective: str
    method: str
    budget: int
    seed: int = 0
    threshold: float | None = None
    batch_size: int = 100
    frames: int | None = None
    overrides: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    until_rel_error: float | None = None
    until_failures: int | None = None

    def validate(self) -> None:
        f = self.scenario
        if self.objective not in OBJECTIVES:
            raise InputError(f"got {self.objective!r}; allowed: {', '.join(sorted(OBJECTIVES))} (or an objective a "
                             "scenario plugin registers)", file=f, key="--objective")
        if self.method not in METHODS:
            raise InputError(f"got {self.method!r}; allowed: {', '.join(METHODS)}", file=f, key="--method")
        if not 1 <= self.budget <= 10_000_000:
            raise InputError(f"got {self.budget}; allowed: 1 to 10000000 episodes", file=f, key="--budget")
        if not 2 <= self.batch_size <= 100_000:
            raise InputError(f"got {self.batch_size}; allowed: 2 to 100000", file=f, key="--batch-size")
        if self.seed < 0 or self.seed >= 2 ** 63:
            raise InputError(f"got {self.seed}; allowed: 0 to 2**63-1", file=f, key="--seed")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise InputError(f"got {self.threshold}; allowed: a finite number", file=f, key="--threshold")
        if self.frames is not None and not 1 <= self.frames <= 1_000_000:
            raise InputError(f"got {self.frames}; allowed: 1 to 1000000", file=f, key="--frames")
        if self.until_rel_error is not None and not 0 < self.until_rel_error < 1:
            raise InputError(f"got {self.until_rel_error}; allowed: a fraction between 0 and 1", file=f,
                             key="--until-rel-error")
        if self.until_failures is not None and not 1 <= self.until_failures <= 10_000_000:
            raise InputError(f"got {self.until_failures}; allowed: 1 to 10000000 failures", file=f,
                             key="--until-failures")

    @property
    def fail_level(self) -> float:
        return self.threshold if self.threshold is not None else OBJECTIVES[self.objective][1]

    def identity(self, scenario_sha: str) -> dict:
        """What a resumed search must share with the one it continues (the budget may grow)."""
        return {"format": FORMAT, "scenario_sha256": scenario_sha, "objective": self.objective, "method": self.method,
                "seed": self.seed, "threshold": self.fail_level, "batch_size": self.batch_size, "frames": self.frames,
                "overrides": list(self.overrides), "params": list(self.params)}


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _prepare(out: Path, ident: dict, *, overwrite: bool) -> list[dict]:
    """Create or reopen the search folder; returns the samples already done (whole generations only)."""
    cfg = out / "search.json"
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", file=str(out), key="--out")
    if cfg.exists() and not overwrite:
        try:
            old = json.loads(cfg.read_text()).get("identity")
        except (json.JSONDecodeError, AttributeError):
            raise InputError("search.json is unreadable; use --overwrite to start again", file=str(out), key="--out") from None
        if old != ident:
            diff = sorted(k for k in ident if (old or {}).get(k) != ident[k])
            raise InputError(f"holds a different search (differs in {', '.join(diff)}); use another --out, or "
                             "--overwrite to start again", file=str(out), key="--out")
        return _load_samples(out / "samples.jsonl")
    if not cfg.exists() and out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError("is not empty and holds no search; use an empty folder or --overwrite", file=str(out),
                         key="--out")
    if overwrite:
        for name in ("search.json", "samples.jsonl", "samples.csv", "space.png", "summary.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(cfg, json.dumps({"identity": ident}, indent=1))
    return []


def _load_samples(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from an interrupted write: that generation is redone
    if rows:  # keep whole generations only
        last = rows[-1]["generation"]
        if sum(r["generation"] == last for r in rows) != rows[-1]["generation_size"]:
            rows = [r for r in rows if r["generation"] != last]
    return rows


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Executor:
    def __init__(self, kind: str, workers: int):
        self.kind, self.workers, self.pool = kind, workers, None
        if kind == "ray":
            try:
                import ray  # noqa: F401
                from ray.util.multiprocessing import Pool
            except ImportError:
                raise InputError("the ray executor needs Ray: pip install 'simgen[ray]'", key="--executor") from None
            self.pool = Pool(processes=workers)
        elif kind == "local":
            if workers > 1:
                import concurrent.futures as cf
                import multiprocessing as mp

                self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        else:
            raise InputError(f"got {kind!r}; allowed: local, ray", key="--executor")

    def map(self, tasks: list[SimTask]) -> list[dict]:
        if self.pool is None:
            return [simulate(t) for t in tasks]
        n = max(1, math.ceil(len(tasks) / (self.workers * 4)))
        chunks = [tasks[i:i + n] for i in range(0, len(tasks), n)]
        results = self.pool.map(simulate_many, chunks)
        return [r for chunk in results for r in chunk]

    def close(self) -> None:
        if self.pool is None:
            return
        if self.kind == "ray":
            self.pool.terminate()
        else:
            self.pool.shutdown(cancel_futures=True)


def search(cfg: SearchConfig, *, out: str, workers: int = 1, executor: str = "local", overwrite: bool = False,
           progress: bool = True) -> dict:
    """Run (or resume) a search; returns the summary (also written to OUT/summary.json)."""
    from simgen.spec.scenario import load_scenario_source

    cfg.validate()
    src = load_scenario_source(cfg.scenario, list(cfg.overrides))  # validates the file and the base overrides
    space = space_of(src.raw, file=cfg.scenario, only=list(cfg.params) or None)
    if not 1 <= workers <= 512:
        raise InputError(f"got {workers}; allowed: 1 to 512", key="--workers")
    outp = Path(out)
    ident = cfg.identity(_sha(cfg.scenario))
    done = _prepare(outp, ident, overwrite=overwrite)
    objective, _ = OBJECTIVES[cfg.objective]
    method = make_method(cfg.method, space.d, cfg.fail_level)
    gen_seeds = np.random.SeedSequence(cfg.seed).spawn(1 + cfg.budget // 2)
    rows: list[dict] = []
    hist = History.empty(space.d)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.budget, unit="ep", desc=f"search {cfg.method}", file=sys.stderr)
    pool = None
    try:
        gen = 0
        while len(rows) < cfg.budget:
            n = min(cfg.batch_size, cfg.budget - len(rows))
            z, log_w = method.propose(gen, hist, np.random.default_rng(gen_seeds[gen]), n)
            first = len(rows)
            stored = [r for r in done if r["generation"] == gen]
            if stored:
                if len(stored) != n:
                    raise InputError("the stored samples do not match this search's generations (was --budget "
                                     "or --batch-size changed?); use --overwrite to start again", file=out, key="--out")
                if not np.allclose(np.array([r["z"] for r in stored]), z, rtol=0, atol=1e-9):
                    raise InputError("the stored samples were not drawn by this search (samples.jsonl edited?); use "
                                     "--overwrite to start again", file=out, key="--out")
                new = stored
            else:
                values = space.values(z)
                tasks = [SimTask(cfg.scenario, tuple(cfg.overrides) + tuple(space.pins(v)),
                                 episode_seed(cfg.seed, first + i), cfg.frames) for i, v in enumerate(values)]
                if pool is None:
                    pool = _Executor(executor, workers)
                results = pool.map(tasks)
                new = []
                for i, (v, t, res) in enumerate(zip(values, tasks, results)):
                    score, failed = objective(res, cfg.fail_level)
                    new.append({"index": first + i, "generation": gen, "generation_size": n, "seed": t.seed,
                                "z": [float(x) for x in z[i]], "params": v, "score": float(score),
                                "failed": bool(failed), "log_w": None if np.isnan(log_w[i]) else float(log_w[i]),
                                "summary": res})
                with open(outp / "samples.jsonl", "a") as f:
                    f.write("".join(json.dumps(r, default=_json_default) + "\n" for r in new))
                    f.flush()
                    os.fsync(f.fileno())
            rows += new
            hist = History(np.array([r["z"] for r in rows], float),
                           np.array([r["log_w"] if r["log_w"] is not None else 0.0 for r in rows], float),
                           np.array([r["score"] for r in rows], float), np.array([r["failed"] for r in rows], bool),
                           np.array([r["generation"] for r in rows], int))
            if bar is not None:
                bar.update(len(new))
            gen += 1
            if cfg.until_rel_error is not None and _precise(method.estimate(hist), cfg.until_rel_error, cfg.batch_size):
                break
            if cfg.until_failures is not None and int(hist.failed.sum()) >= cfg.until_failures:
                break
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.close()
    summary = _summarise(cfg, space, method, rows, hist)
    _write_outputs(outp, space, rows, summary, cfg)
    return summary


def _precise(est: dict, rel: float, batch: int) -> bool:
    """Stop rule of --until-rel-error: the interval is narrow enough and rests on two generations' worth of
    estimation samples (a variance estimated from fewer is itself too uncertain to stop on)."""
    return (est.get("rel_half_width") is not None and est["rel_half_width"] <= rel
            and est.get("estimated_from_episodes", 0) >= min(2 * batch, 300))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _summarise(cfg: SearchConfig, space: Space, method, rows: list[dict], hist: History) -> dict:
    est = method.estimate(hist)
    fails = [r for r in rows if r["failed"]]
    order = sorted(rows, key=lambda r: (not r["failed"], r["score"]))
    return {
        "format": FORMAT, "scenario": cfg.scenario, "objective": cfg.objective, "threshold": cfg.fail_level,
        "method": cfg.method, "seed": cfg.seed, "parameters": space.names, "episodes": len(rows),
        "failures": len(fails), "first_failure_episode": (fails[0]["index"] + 1) if fails else None,
        **est,
        "effective_sample_size": _ess(hist) if method.estimates else None,
        "most_critical": [{"index": r["index"], "seed": r["seed"], "params": r["params"], "score": r["score"],
                           "failed": r["failed"]} for r in order[:10]],
    }


def _ess(hist: History) -> float | None:
    if not len(hist.log_w):
        return None
    w = np.exp(hist.log_w)
    return float(w.sum() ** 2 / np.sum(w * w))


def _write_outputs(out: Path, space: Space, rows: list[dict], summary: dict, cfg: SearchConfig) -> None:
    keys = ["min_ttc_s", "min_gap_m", "collision", "collided_with", "max_ego_decel_mps2"]
    tmp = out / "samples.csv.partial"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "generation", "seed"] + space.names + ["score", "failed", "weight"] + keys)
        for r in rows:
            s = r["summary"]
            wt = "" if r["log_w"] is None else f"{math.exp(r['log_w']):.6g}"
            w.writerow([r["index"], r["generation"], r["seed"]] + [r["params"][n] for n in space.names]
                       + [f"{r['score']:.6g}", int(r["failed"]), wt]
                       + [";".join(s[k]) if isinstance(s.get(k), list) else s.get(k) for k in keys])
    os.replace(tmp, out / "samples.csv")
    from simgen.search.plot import plot_space

    plot_space(out / "space.png", space, rows, summary)
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1, default=_json_default))


def load_search(out: str) -> tuple[dict, dict, list[dict]]:
    """(search.json, summary.json, samples) of a finished search folder."""
    p = Path(out)
    if not (p / "summary.json").exists():
        raise InputError("is not a finished search folder (no summary.json)", file=out)
    return json.loads((p / "search.json").read_text()), json.loads((p / "summary.json").read_text()), \
        _load_samples(p / "samples.jsonl")


def choose(rows: list[dict], k: int, strategy: str, fail_level: float) -> list[dict]:
    """The samples to render: ``critical`` (failures first, then the lowest scores) or ``boundary`` (the k samples
    whose scores lie nearest the failure level, alternating failures and passes)."""
    if strategy == "critical":
        return sorted(rows, key=lambda r: (not r["failed"], r["score"], r["index"]))[:k]
    fails = sorted((r for r in rows if r["failed"]), key=lambda r: (-r["score"], r["index"]))
    passes = sorted((r for r in rows if not r["failed"]), key=lambda r: (abs(r["score"] - fail_level), r["index"]))
    out = []
    while len(out) < k and (fails or passes):
        for lst in (fails, passes):
            if lst and len(out) < k:
                out.append(lst.pop(0))
    return out


def render(out: str, k: int, *, strategy: str = "critical", rig: str | None = None, overwrite: bool = False,
           progress: bool = True) -> list[dict]:
    """Render chosen samples with the full rig as ordinary datasets under OUT/render/sample_NNNNNN."""
    from simgen.runner import run

    if strategy not in ("critical", "boundary"):
        raise InputError(f"got {strategy!r}; allowed: critical, boundary", key="--render-strategy")
    if not 1 <= k <= 10_000:
        raise InputError(f"got {k}; allowed: 1 to 10000", key="--render")
    cfg, summary, rows = load_search(out)
    ident = cfg["identity"]
    names = summary["parameters"]
    done = []
    for r in choose(rows, k, strategy, summary["threshold"]):
        pins = Space.pins({n: r["params"][n] for n in names})
        dest = Path(out) / "render" / f"sample_{r['index']:06d}"
        run(summary["scenario"], rig=rig, out=str(dest), seed=r["seed"], episodes=1, frames=ident["frames"],
            overrides=list(ident["overrides"]) + pins, overwrite=overwrite, progress=progress)
        done.append({"index": r["index"], "seed": r["seed"], "dir": str(dest), "failed": r["failed"],
                     "score": r["score"], "overrides": list(ident["overrides"]) + pins})
    _write_atomic(Path(out) / "render" / "index.json", json.dumps(done, indent=1, default=_json_default))
    return done
