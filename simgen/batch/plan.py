"""The batch plan file: strict loading, deterministic expansion into episodes, and the plan's hash.

A plan (YAML, validated by :mod:`simgen.spec.schema` like every other user file)::

    seed: 21
    rig: assets/rigs/default.yaml          # optional default rig for every job
    retries: 2                             # extra attempts per failing episode
    timeout_s: 600                         # wall-clock limit per episode attempt
    jobs:
      - scenario: scenarios/lead_vehicle_brakes.yaml
        episodes: 500
        frames: 200                        # or duration_s (not both); default: the scenario's duration
        rig: assets/rigs/small.yaml        # optional, overrides the plan's rig
        set: ["weather.fog_density=20"]    # --set style overrides
        backend: builtin                   # builtin (default) or carla
        name: lead_fog                     # optional job name (default: NN-<scenario stem>)

Relative paths resolve against the plan file's folder (a bare name such as ``dense_traffic`` may also name a
scenario of the shipped library).

Seeds: episode ``i`` of job ``j`` uses ``SeedSequence(seed, spawn_key=(j, i))``, which is exactly
``SeedSequence(seed).spawn(J)[j].spawn(I)[i]``: the root spawns one child per job and each job's child spawns
one per episode, as :func:`simgen.runner.plan_episodes` does for a single run.  An episode's data therefore
depends only on (plan seed, job index, episode index, the job's inputs), never on worker count, executor or
completion order.

The plan hash (:attr:`Plan.sha256`) covers what determines the data: the seed and, per job, its name, backend,
frame count, the scenario as loaded (after ``set`` overrides, so reformatting a file changes nothing but editing
a value does) and the validated rig.  It leaves out ``episodes``, ``retries`` and ``timeout_s``: raising a job's
episode count and re-running adds the new episodes to an existing output folder.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simgen.backends.base import BACKENDS
from simgen.errors import InputError
from simgen.spec.schema import Ctx, from_dict, load_yaml

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class JobSpec:
    """One job of a plan: ``episodes`` episodes of one scenario on one rig and backend."""

    scenario: str
    episodes: int | None = field(default=None, metadata={"range": (1, 10_000_000)})
    frames: int | None = field(default=None, metadata={"range": (1, 10_000_000)})
    duration_s: float | None = field(default=None, metadata={"gt": 0.0, "range": (0.0, 3600.0)})
    rig: str | None = None
    set: tuple[str, ...] = ()
    backend: str = field(default="builtin", metadata={"choices": tuple(BACKENDS)})
    name: str | None = None
    grid: dict[str, Any] = field(default_factory=dict)  # parameter name -> list of values (full factorial)

    def validate(self, ctx: Ctx) -> None:
        for k, v in self.grid.items():
            if not isinstance(v, list) or not v:
                raise ctx.key("grid").key(str(k)).error(f"got {v!r}; allowed: a non-empty list of values")
        if self.frames is not None and self.duration_s is not None:
            raise ctx.error("give frames or duration_s, not both")
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise ctx.key("name").error(f"got {self.name!r}; allowed: letters, digits, _ . - (not starting with . _ -)")
        for i, s in enumerate(self.set):
            if "=" not in s:
                raise ctx.key("set").index(i).error(f"got {s!r}; allowed: KEY=VALUE, e.g. weather.fog_density=20")


@dataclass(frozen=True)
class PlanSpec:
    jobs: tuple[JobSpec, ...] = field(metadata={"min_items": 1})
    seed: int = field(default=0, metadata={"range": (0, 2**63 - 1)})
    rig: str | None = None
    retries: int = field(default=2, metadata={"range": (0, 100)})
    timeout_s: float = field(default=600.0, metadata={"gt": 0.0, "range": (0.0, 7 * 86400.0)})

    def validate(self, ctx: Ctx) -> None:
        seen = {}
        for j, job in enumerate(self.jobs):
            if job.name is not None:
                if job.name in seen:
                    raise ctx.key("jobs").index(j).key("name").error(
                        f"duplicate job name {job.name!r} (also jobs[{seen[job.name]}])")
                seen[job.name] = j


@dataclass
class Job:
    """A job resolved against the file system: absolute paths, loaded scenario source and rig."""

    index: int
    name: str
    scenario: str  # absolute path
    overrides: tuple[str, ...]  # the job's ``set`` plus ``duration_s=...`` when given
    rig: str  # absolute path
    frames: int | None
    backend: str
    episodes: int
    src: object  # ScenarioSource
    rig_spec: object  # RigSpec
    allow_plugins: bool | None = None  # the user's opt-in to the scenario's plugins (--allow-plugins)
    grid_size: int = 1  # points of the scenario's full-factorial grid (episode i takes point i mod grid_size)

    def seed(self, plan_seed: int) -> np.random.SeedSequence:
        """The job's SeedSequence: child ``index`` of ``SeedSequence(plan_seed)``."""
        return np.random.SeedSequence(plan_seed, spawn_key=(self.index,))


@dataclass(frozen=True)
class EpisodeTask:
    """One episode to produce.  Its identity is (job name, episode index)."""

    job: Job
    episode: int
    plan_seed: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.job.name, self.episode)

    @property
    def seed(self) -> np.random.SeedSequence:
        return episode_seed(self.plan_seed, self.job.index, self.episode)

    @property
    def rel_path(self) -> str:
        return f"jobs/{self.job.name}/episodes/episode_{self.episode:06d}.h5"

    @property
    def rel_log(self) -> str:
        return f"logs/{self.job.name}/episode_{self.episode:06d}.log"

    @property
    def label(self) -> str:
        return f"{self.job.name}/episode_{self.episode:06d}"

    def payload(self) -> dict:
        """What a worker needs (plain, picklable): paths, overrides, seed numbers."""
        j = self.job
        return {"job": j.name, "job_index": j.index, "episode": self.episode, "plan_seed": self.plan_seed,
                "scenario": j.scenario, "set": list(j.overrides), "rig": j.rig, "frames": j.frames,
                "backend": j.backend, "allow_plugins": j.allow_plugins}


@dataclass
class Plan:
    path: str
    spec: PlanSpec
    jobs: list[Job]
    sha256: str
    text: str  # the plan file as given

    @property
    def n_episodes(self) -> int:
        return sum(j.episodes for j in self.jobs)

    def expand(self) -> list[EpisodeTask]:
        """Every episode of the plan, in plan order (job by job, episode by episode)."""
        return [EpisodeTask(j, i, self.spec.seed) for j in self.jobs for i in range(j.episodes)]


def episode_seed(plan_seed: int, job_index: int, episode: int) -> np.random.SeedSequence:
    """``SeedSequence(plan_seed).spawn(J)[job_index].spawn(I)[episode]``, built directly."""
    return np.random.SeedSequence(plan_seed, spawn_key=(job_index, episode))


def plan_one(src, seed: np.random.SeedSequence, index: int):
    """One episode's :class:`simgen.runner.EpisodePlan` from its own SeedSequence (the runner's own planner)."""
    from simgen.runner import plan_episode

    return plan_episode(src, seed, index)


def sample_params(task: EpisodeTask) -> dict:
    """The sampled scenario parameters of one episode (no simulation)."""
    from simgen.seeding import episode_streams
    from simgen.spec.scenario import concretise

    s_param = episode_streams(task.seed).params
    return concretise(task.job.src, rng=np.random.default_rng(s_param), grid_index=task.episode)[1]


def _resolve(base: Path, value: str, ctx: Ctx, what: str, *, library: bool = False) -> Path:
    p = Path(value).expanduser()
    cand = p if p.is_absolute() else base / p
    if cand.is_file():
        return cand.resolve()
    if library and "/" not in value and not value.endswith((".yaml", ".yml")):
        from simgen.paths import SCENARIOS

        lib = SCENARIOS / f"{value}.yaml"
        if lib.is_file():
            return lib.resolve()
    why = "is a directory" if cand.is_dir() else "not found"
    raise ctx.error(f"got {value!r}: {what} {why} (looked for {cand})")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def load_plan(path: str | Path, *, allow_plugins: bool | None = None) -> Plan:
    """Read, validate and resolve a plan; also loads every job's scenario and rig and samples its episode 0, so
    bad paths, overrides and values fail here, before anything runs.  Scenario plugins run only with
    ``allow_plugins`` (``--allow-plugins``) or ``SIMGEN_ALLOW_PLUGINS=1``."""
    from simgen.spec.rig import default_rig_path, load_rig, rig_to_dict
    from simgen.spec.scenario import load_scenario_source

    path = Path(path)
    text = None
    if path.suffix.lower() == ".xosc":  # an OpenSCENARIO ParameterValueDistribution: one job per run
        from simgen.spec.xosc_batch import distribution_plan

        data, text = distribution_plan(path)
    else:
        data = load_yaml(path, what="plan file")
    ctx = Ctx(str(path))
    spec = from_dict(PlanSpec, data, ctx)
    base = path.resolve().parent
    jobs: list[Job] = []
    rigs: dict[Path, object] = {}
    for j, js in enumerate(spec.jobs):
        jctx = ctx.key("jobs").index(j)
        scen = _resolve(base, js.scenario, jctx.key("scenario"), "scenario file", library=True)
        if js.rig is not None:
            rig_path = _resolve(base, js.rig, jctx.key("rig"), "rig file")
        elif spec.rig is not None:
            rig_path = _resolve(base, spec.rig, ctx.key("rig"), "rig file")
        else:
            rig_path = Path(default_rig_path()).resolve()
        overrides = tuple(js.set) + ((f"duration_s={js.duration_s}",) if js.duration_s is not None else ())
        name = js.name or f"{j:02d}-{scen.stem}"
        try:
            if rig_path not in rigs:
                rigs[rig_path] = load_rig(rig_path)
            src = load_scenario_source(scen, list(overrides), allow_plugins=allow_plugins)
        except InputError as e:
            raise jctx.error(str(e)) from None
        if js.grid:  # a grid axis replaces the parameter's declaration (its place in the file order stays)
            declared = src.raw.get("parameters") or {}
            for k in js.grid:
                if k not in declared:
                    raise jctx.key("grid").key(str(k)).error(
                        f"unknown parameter {k!r} of {scen.name}; known: {', '.join(declared) or 'none'}")
            overrides += tuple(f"parameters.{k}={json.dumps({'grid': v})}" for k, v in js.grid.items())
        try:
            if js.grid:
                src = load_scenario_source(scen, list(overrides), allow_plugins=allow_plugins)
            plan_one(src, episode_seed(spec.seed, j, 0), 0)  # episode 0 samples and places
        except InputError as e:
            raise jctx.error(str(e)) from None
        from simgen.spec.params import grid_size

        n_grid = grid_size(src.raw.get("parameters") or {})
        episodes = js.episodes
        if episodes is None:
            if n_grid == 1:
                raise jctx.key("episodes").error("required (only a job with a grid may leave it out: one episode per point)")
            episodes = n_grid
        elif episodes % n_grid:
            raise jctx.key("episodes").error(f"got {episodes}; allowed: a multiple of the grid's {n_grid} points, so every "
                                             "point is covered equally often")
        if any(job.name == name for job in jobs):
            raise jctx.key("name").error(f"duplicate job name {name!r}; give the jobs distinct names")
        jobs.append(Job(j, name, str(scen), overrides, str(rig_path), js.frames, js.backend, episodes, src,
                        rigs[rig_path], allow_plugins, n_grid))
    ident = {"format": "simgen-batch-plan/1", "seed": spec.seed, "jobs": [
        {"name": jb.name, "backend": jb.backend, "frames": jb.frames, "scenario": jb.src.raw,
         "rig": rig_to_dict(jb.rig_spec)} for jb in jobs]}
    sha = hashlib.sha256(_canonical(ident).encode()).hexdigest()
    return Plan(str(path), spec, jobs, sha, text if text is not None else path.read_text(encoding="utf-8"))
