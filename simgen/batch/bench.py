"""``simgen batch-bench``: batch throughput with 1 and 2 workers, local process pool vs Ray.

Workload: ``episodes`` episodes x ``frames`` frames of scenarios/dense_traffic.yaml with ``traffic.vehicles=6`` on
the small rig (assets/rigs/small.yaml), run as a batch into a temporary folder.  Every figure is end to end (a
fresh worker pool each time, so worker start-up and imports are included), except that Ray's own start
(``ray.init``) is timed separately and left out of the Ray runs.  ``steady_eps`` is the rate between the first
and the last finished episode (start-up excluded).  ``speedup`` is episodes/s with 2 workers over 1 worker;
``ray_overhead_s_per_episode`` is (Ray wall time - local wall time) / episodes for the same worker count.
``--repeat R`` keeps the fastest of R runs per configuration (useful on a shared machine).

Local thread settings (``threads``): ``auto`` (each worker limited to cores // workers threads), ``off`` (no
limit), ``N`` (N threads per worker), ``pinN`` (N threads and pinned to its share of the cores).
The last line printed is one JSON object.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path


def _plan(folder: Path, episodes: int, frames: int) -> Path:
    from simgen.paths import ASSETS, SCENARIOS

    p = folder / "bench_plan.yaml"
    p.write_text(
        "seed: 0\n"
        f"rig: {ASSETS / 'rigs' / 'small.yaml'}\n"
        "retries: 0\n"
        "timeout_s: 600\n"
        "jobs:\n"
        f"  - scenario: {SCENARIOS / 'dense_traffic.yaml'}\n"
        f"    episodes: {episodes}\n"
        f"    frames: {frames}\n"
        "    set: ['traffic.vehicles=6']\n", encoding="utf-8")
    return p


def _steady(out: Path) -> float | None:
    times = []
    with open(out / "manifest.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("event") == "done":
                times.append(datetime.fromisoformat(r["time"]).timestamp())
    if len(times) < 3:
        return None
    times.sort()
    return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


def _threads(setting: str) -> tuple[int | None, bool]:
    if setting == "auto":
        return None, False
    if setting == "off":
        return 0, False
    if setting.startswith("pin"):
        return int(setting[3:] or 1), True
    return int(setting), False


def run_one(plan: Path, out: Path, *, executor: str, workers: int, threads: str = "auto") -> dict:
    from simgen.batch.runner import run_batch

    n_threads, pin = _threads(threads)
    t0 = time.perf_counter()
    res = run_batch(plan, out, executor=executor, workers=workers, overwrite=True, progress=False,
                    threads=n_threads, pin=pin, faults="")
    wall = time.perf_counter() - t0
    if res.failed:
        raise RuntimeError(f"benchmark episodes failed: {res.failed}")
    steady = _steady(out)
    return {"executor": executor, "workers": workers, "threads": threads if executor == "local" else "ray",
            "episodes": res.done, "frames": res.frames, "wall_s": round(wall, 3),
            "eps": round(res.done / wall, 3), "fps": round(res.frames / wall, 2),
            "steady_eps": round(steady, 3) if steady else None}


def main(*, episodes: int = 12, frames: int = 10, workers=(1, 2), executors=("local", "ray"), threads=("auto",),
         repeat: int = 1, as_json: bool = False) -> int:
    """``repeat`` > 1 runs every configuration that many times and keeps the fastest (on a shared machine the
    minimum is the figure least disturbed by other load)."""
    from simgen.batch.executor import import_ray

    say = (lambda *a: None) if as_json else print
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results, ray_init_s = [], None
    with tempfile.TemporaryDirectory(prefix="simgen-batch-bench-") as tmp:
        tmp = Path(tmp)
        plan = _plan(tmp, episodes, frames)
        say(f"batch-bench: {episodes} episodes x {frames} frames, dense_traffic (6 vehicles), small rig, {ncpu} cores")
        for ex in executors:
            settings = threads if ex == "local" else ["ray"]
            if ex == "ray":
                ray = import_ray()
                t0 = time.perf_counter()
                if not ray.is_initialized():
                    ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                ray_init_s = round(time.perf_counter() - t0, 3)
                say(f"  ray.init: {ray_init_s:.2f} s (not counted below)")
            try:
                for th in settings:
                    for w in workers:
                        runs = [run_one(plan, tmp / "out", executor=ex, workers=w, threads=th if ex == "local" else "auto")
                                for _ in range(max(1, repeat))]
                        r = min(runs, key=lambda x: x["wall_s"])
                        r["repeats"] = len(runs)
                        results.append(r)
                        say(f"  {ex:5s} threads={r['threads']:5s} workers={w}: {r['wall_s']:6.2f} s  "
                            f"{r['eps']:.2f} episodes/s  {r['fps']:.1f} frames/s  (steady {r['steady_eps'] or 0:.2f} ep/s)")
            finally:
                if ex == "ray":
                    ray.shutdown()

    def find(ex, w, th):
        return next((r for r in results if r["executor"] == ex and r["workers"] == w and r["threads"] == th), None)

    speedup = {}
    for ex in executors:
        for th in (threads if ex == "local" else ["ray"]):
            one, two = find(ex, 1, th), find(ex, 2, th)
            if one and two:
                speedup[f"{ex}:{th}"] = round(two["eps"] / one["eps"], 3)
    overhead = {}
    for w in workers:
        loc, ray_r = find("local", w, threads[0]), find("ray", w, "ray")
        if loc and ray_r:
            overhead[str(w)] = round((ray_r["wall_s"] - loc["wall_s"]) / episodes, 3)
    best = max((k for k in speedup if k.startswith("local:")), key=speedup.get, default=None)
    for k, v in speedup.items():
        say(f"  speedup 2 vs 1 worker ({k}): {v:.2f}x")
    for w, v in overhead.items():
        say(f"  Ray overhead per episode ({w} worker(s)): {v:+.3f} s")
    print(json.dumps({"cores": ncpu, "episodes": episodes, "frames": frames, "repeat": repeat, "runs": results,
                      "speedup_2v1": speedup, "ray_overhead_s_per_episode": overhead, "ray_init_s": ray_init_s,
                      "best_local_threads": best.split(":", 1)[1] if best else None}))
    return 0
