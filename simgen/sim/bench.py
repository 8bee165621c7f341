"""``simgen sim-bench``: speed of the builtin simulator without sensors.

Two figures per scenario, each the median of ``--repeats`` runs, in CPU time (``time.process_time``, robust on a
shared machine) and wall time:

- ``ticks_per_s``: ``World.step()`` alone, world already built (the dense_traffic figure of issue 13);
- ``episode_ms``: one whole sensor-free episode, world build and criticality annotation included
  (:func:`simgen.search.simulate.simulate`, what ``simgen search`` spends per sample).
"""
from __future__ import annotations

import json
import os
import statistics
import time

DEFAULT_SCENARIOS = ("dense_traffic", "pedestrian_behind_van", "highway_cut_in")


def _timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def bench_ticks(scenario: str, ticks: int = 200, seed: int = 0) -> tuple[float, float]:
    """(CPU s, wall s) for ``ticks`` calls of ``World.step()`` on the scenario's episode of ``seed``."""
    import numpy as np

    from simgen.runner import plan_episodes
    from simgen.seeding import streams
    from simgen.sim.world import World
    from simgen.spec.scenario import load_scenario_source

    src = load_scenario_source(scenario, [])
    plan = plan_episodes(src, seed=seed, episodes=1)[0]
    world = World(plan.spec, rng=np.random.default_rng(streams(plan.sim_seed, 3)[0]), source=src.path)
    world.step()  # warm-up (compiled kernels, caches)

    def run():
        for _ in range(ticks):
            world.step()

    return _timed(run)


def bench_episode(scenario: str, seed: int = 0) -> tuple[float, float]:
    from simgen.search.simulate import SimTask, simulate

    return _timed(lambda: simulate(SimTask(scenario=scenario, overrides=(), seed=seed)))


def run_bench(scenarios, repeats: int = 5, ticks: int = 200) -> dict:
    from simgen.cli import resolve_scenario

    out = {"cores": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2), "repeats": repeats,
           "ticks": ticks, "scenarios": {}}
    for name in scenarios:
        path = resolve_scenario(name)
        bench_episode(path)  # warm-up: imports, numba compilation
        tk = [bench_ticks(path, ticks) for _ in range(repeats)]
        ep = [bench_episode(path) for _ in range(repeats)]
        cpu_t = statistics.median(c for c, _ in tk)
        wall_t = statistics.median(w for _, w in tk)
        out["scenarios"][name] = {
            "ticks_per_s_cpu": round(ticks / cpu_t, 1), "ticks_per_s_wall": round(ticks / wall_t, 1),
            "tick_ms_cpu": round(1e3 * cpu_t / ticks, 3),
            "episode_ms_cpu": round(1e3 * statistics.median(c for c, _ in ep), 2),
            "episode_ms_wall": round(1e3 * statistics.median(w for _, w in ep), 2),
        }
    out["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    return out


def add_subcommand(sub) -> None:
    p = sub.add_parser("sim-bench", help="sensor-free simulator speed: ticks/s and ms per whole episode")
    p.add_argument("--scenario", action="append", dest="scenarios", metavar="NAME",
                   help="scenario name or file (repeatable; default: " + ", ".join(DEFAULT_SCENARIOS) + ")")
    p.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    p.add_argument("--ticks", type=int, default=200, help="World.step() calls per ticks/s run (default 200)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sim_bench)


def cmd_sim_bench(a) -> int:
    from simgen.errors import InputError

    if a.repeats < 1:
        raise InputError(f"--repeats must be a positive integer, got {a.repeats}", key="--repeats")
    if a.ticks < 1:
        raise InputError(f"--ticks must be a positive integer, got {a.ticks}", key="--ticks")
    res = run_bench(a.scenarios or DEFAULT_SCENARIOS, a.repeats, a.ticks)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"cores {res['cores']}, load {res['load_avg_1min']} -> {res['load_avg_1min_end']}, "
          f"median of {res['repeats']} (CPU time; wall in brackets)")
    for name, r in res["scenarios"].items():
        print(f"{name:28s} {r['ticks_per_s_cpu']:9.1f} ticks/s ({r['ticks_per_s_wall']:.1f})  "
              f"episode {r['episode_ms_cpu']:8.1f} ms ({r['episode_ms_wall']:.1f})")
    return 0
