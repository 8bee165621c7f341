"""Sensor-free episodes: the builtin simulator and the criticality annotator, no rendering, no files.

:func:`simulate` plays exactly the episode that ``simgen run SCENARIO --seed SEED --set OVERRIDES`` would play:
the same concrete scenario (parameters from the same seed stream), the same simulation stream, the same ticks;
only the sensors are left out.  Its criticality summary is therefore the summary the rendered episode writes
(``tests/simgen/test_search.py`` checks that on rendered episodes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SimTask:
    """One sensor-free episode: scenario file, pinned overrides, run seed (``simgen run --seed``)."""

    scenario: str
    overrides: tuple[str, ...]
    seed: int
    frames: int | None = None


def simulate(task: SimTask) -> dict:
    """Play one episode without sensors; returns its criticality summary (as in run.json) plus ``frames``."""
    from annotators.criticality import EpisodeCriticality
    from simgen.runner import plan_episodes
    from simgen.seeding import streams
    from simgen.sim.world import World

    src = _source(task.scenario, task.overrides)
    plan = plan_episodes(src, seed=task.seed, episodes=1, check_placements=False)[0]  # checked by the build below
    # The builtin session's first stream is the world's (simgen.backends.builtin.BuiltinSession).
    world = World(plan.spec, rng=np.random.default_rng(streams(plan.sim_seed, 3)[0]), source=src.path)
    n = task.frames or plan.spec.n_frames
    actors = [{"id": a.id, "name": a.name} for a in world.actors]
    crit = EpisodeCriticality({"actors": actors})
    obs = _Observed()
    for k in range(n):
        collisions = world.step() if k > 0 else []
        ident, obs.pose, obs.velocity, obs.accel, _, _ = world._state_arrays()  # what World.states() holds
        obs.index, obs.time_s, obs.collisions, obs.dims = k, world.time_s, collisions, ident[4]
        crit.add(obs)
    return {"frames": n, **crit.summary()}


class _Observed:
    """The part of a :class:`simgen.backends.base.Frame` and its ``World.states()`` that
    ``EpisodeCriticality.add`` reads (it copies the arrays it keeps): index, time_s, collisions, and as
    ``actors`` the pose, velocity, accel and dims arrays.  Filled per frame without building the Frame and
    ActorStates objects (about 6 µs a frame, 5 % of a short episode)."""

    __slots__ = ("index", "time_s", "collisions", "pose", "velocity", "accel", "dims")

    @property
    def actors(self):
        return self


_SOURCES: dict = {}  # (file, overrides, file stamp, plugin opt-in) -> ScenarioSource: read once per process


def _source(path: str, overrides: tuple[str, ...]):
    """:func:`load_scenario_source` of a task, cached per process: a search plays thousands of episodes of the
    same file and overrides, and the parsed, checked source is the same for all of them (concretise only reads
    it).  The key holds the file's size and modification time, so an edited file is read again."""
    import os

    from simgen.spec.scenario import PLUGIN_ENV, load_scenario_source

    try:
        stt = os.stat(path)
        stamp = (stt.st_mtime_ns, stt.st_size)
    except OSError:  # a library name or a missing file: no caching, load_scenario_source reports it
        return load_scenario_source(path, list(overrides))
    key = (str(path), tuple(overrides), stamp, os.environ.get(PLUGIN_ENV))
    src = _SOURCES.get(key)
    if src is None:
        src = load_scenario_source(path, list(overrides))
        if len(_SOURCES) >= 64:
            _SOURCES.clear()
        _SOURCES[key] = src
    return src


def simulate_many(tasks: list[SimTask]) -> list[dict]:
    """Worker entry point for a chunk of tasks (one process import, many episodes)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return [simulate(t) for t in tasks]
