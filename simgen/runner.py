"""Run a scenario for N episodes into an output folder.

Output folder layout::

    OUT/run.json                 written last (atomically): seeds, versions, episode list, summaries
    OUT/scenario.yaml            the scenario file as given (after --set overrides)
    OUT/rig.yaml                 the rig as validated
    OUT/episodes/episode_000000.h5

Seeds: ``SeedSequence(seed)`` spawns one child per episode; each episode's child spawns one stream for parameter
sampling and one for the simulation (which spawns per-subsystem streams).  Same inputs + seed → same arrays.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

import simgen
from simgen.errors import InputError, RunError
from simgen.io.output import OutputLock, check_path_arg, make_dir
from simgen.seeding import episode_streams, sim_streams
from simgen.spec.rig import RigSpec, default_rig_path, load_rig, rig_to_dict
from simgen.spec.scenario import ScenarioSource, concretise, is_carla_town, load_scenario_source, scenario_to_dict


def versions() -> dict:
    import h5py

    out = {"simgen": simgen.__version__, "python": platform.python_version(), "numpy": np.__version__, "h5py": h5py.__version__}
    try:
        from simgen._o3d import o3d

        out["open3d"] = o3d.__version__
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    return out


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and disk_full(e):
            raise RunError(f"{path}: disk full (no space left on device); the unfinished file was removed") from None
        raise


def disk_full(e: BaseException) -> bool:
    """ENOSPC/EDQUOT, also as HDF5 reports it (a RuntimeError/OSError whose text carries the errno)."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return isinstance(e, (OSError, RuntimeError)) and (f"errno = {errno.ENOSPC}," in text or "No space left" in text
                                                      or "no space left" in text)


def prepare_output(out: Path, *, overwrite: bool, outputs: list[Path], inputs: list) -> "OutputManifest":
    """Claim ``outputs`` in ``out`` (see :func:`simgen.io.output.claim_outputs`): a non-empty folder needs
    --overwrite, which deletes only the files an earlier simgen run recorded there; inputs are never outputs.
    The caller holds the folder's :class:`~simgen.io.output.OutputLock`."""
    from simgen.io.output import claim_outputs

    man = claim_outputs(out, outputs, inputs=[Path(i) for i in inputs if i], overwrite=overwrite)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    return man


@dataclass
class EpisodePlan:
    index: int
    seed: np.random.SeedSequence
    spec: object
    params: dict
    sim_seed: np.random.SeedSequence


def plan_episode(src: ScenarioSource, seed: np.random.SeedSequence, index: int, *,
                 check_placements: bool = True) -> EpisodePlan:
    """One episode from its own SeedSequence: sample the concrete scenario and check placements (nothing runs).

    The episode's streams are the first children of ``seed`` (parameters, simulation), whatever was spawned
    from it before (:func:`simgen.seeding.streams`), so runs, batches and replays agree stream for stream.
    With ``check_placements=False`` the placement check (a throw-away world build) is left to the caller, which
    builds the episode's world anyway (:func:`simgen.search.simulate.simulate`): the same checks, raised there.
    """
    from simgen.sim.world import World

    es = episode_streams(seed)
    spec, values = concretise(src, rng=np.random.default_rng(es.params), grid_index=index)  # grid point = index mod N
    if check_placements and not is_carla_town(spec.map):  # CARLA towns are checked by the carla backend against its own map
        World(spec, rng=np.random.default_rng(sim_streams(es.sim).world), source=src.path)  # placement checks only
    return EpisodePlan(index, seed, spec, values, es.sim)


def plan_episodes(src: ScenarioSource, *, seed: int, episodes: int, first: int = 0,
                  check_placements: bool = True) -> list[EpisodePlan]:
    """Every episode of a run (``SeedSequence(seed)`` spawns one child per episode), before anything is written."""
    children = np.random.SeedSequence(seed).spawn(first + episodes)[first:]
    return [plan_episode(src, ss, first + i, check_placements=check_placements) for i, ss in enumerate(children)]


def run_episode(plan: EpisodePlan, rig: RigSpec, path: Path, *, backend, source: str, n_frames: int | None,
                progress=None, meta: dict | None = None, record=None) -> dict:
    """Simulate, annotate and write one episode; returns its summary.  The file appears only when complete."""
    from annotators.criticality import EpisodeCriticality
    from annotators.ground_truth import annotate
    from simgen.io.episode import EpisodeWriter

    opts = {"record": record} if record is not None else {}
    # --- end conditions (protocols helper): the scenario's `end:` decides the last frame, --frames/duration_s caps it
    from simgen.sim.world import EndMonitor, World, predict_end

    end = plan.spec.end if record is None else ()
    cap = n_frames or plan.spec.n_frames
    if end:
        from simgen.spec.scenario import is_carla_town

        if is_carla_town(plan.spec.map):
            raise InputError("end conditions need a builtin map: the end frame is found by simulating the scenario "
                             "before the sensors run", file=source, key="end")
        n_frames, _ = predict_end(World(plan.spec, rng=np.random.default_rng(sim_streams(plan.sim_seed).world),
                                        source=source), cap)
    monitor = EndMonitor(end)
    # ---
    session = backend.open(plan.spec, rig, seed=plan.sim_seed, source=source, n_frames=n_frames, **opts)
    n = session.n_frames
    meta = dict(meta or {})
    meta.update({
        "scenario_name": plan.spec.name, "scenario_yaml": yaml.safe_dump(scenario_to_dict(plan.spec), sort_keys=False),
        "rig_yaml": yaml.safe_dump(rig_to_dict(rig), sort_keys=False), "parameters_json": json.dumps(plan.params),
        "seed_entropy": str(plan.seed.entropy), "seed_spawn_key": json.dumps(list(plan.seed.spawn_key)),
        "episode_index": plan.index, "tick_hz": plan.spec.tick_hz, "map": plan.spec.map, "backend": backend.name,
        "versions_json": json.dumps(versions()),
    })
    # where the scenario file was (its plugins are found relative to it on replay; helper "input", issue 15 item 11)
    meta.setdefault("scenario_file", str(Path(source).resolve()) if Path(source).is_file() else "")
    provenance = session.provenance()
    if provenance:
        meta["backend_provenance_json"] = json.dumps(provenance, default=str)
    static = session.static_info().to_dict()
    writer = None
    try:
        writer = EpisodeWriter(path, n_frames=n, rig=rig, meta=meta, static_info=static)
        crit = EpisodeCriticality(static)
        for _ in range(n):
            frame = session.step()
            labels = annotate(frame)
            writer.write(frame, labels)
            crit.add(frame)
            if end:
                monitor.update(frame.index, frame.time_s, float(np.hypot(*frame.actors.velocity[0, :2])),
                               frame.collisions, frame.events)
            if progress is not None:
                progress.update(1)
        ending = _ending(plan, monitor, end, n, cap, path) if record is None else {"end_reason": "replay", "end_cap_hit": False}
        sim = getattr(session, "sim_world", None) or getattr(session, "world", None)
        crit.set_impacts(list(sim.impacts) if isinstance(sim, World) else [])
        summary = {**crit.summary(), **ending}
        crit.write(writer.f)
        writer.close({"summary_json": json.dumps(summary), **ending})
    except BaseException as e:
        if writer is not None:
            writer.abort()
        if disk_full(e):
            raise RunError(f"{path}: disk full (no space left on device); the unfinished episode was removed") from None
        raise
    finally:
        session.close()
    return {"index": plan.index, "file": str(path.name), "frames": n, "parameters": plan.params, **summary}


def _ending(plan, monitor, end, n: int, cap: int, path: Path) -> dict:
    """Why the episode ended (stored in the episode's attributes, its summary, run.json and the batch index); warns
    (one line on stderr) when the frame cap cut the episode before its end condition held."""
    import sys

    if not end:
        return {"end_reason": "duration", "end_cap_hit": False}
    if monitor.reason is not None:
        return {"end_reason": monitor.reason, "end_time_s": monitor.time_s, "end_frame": monitor.frame, "end_cap_hit": False}
    why = "; ".join(c.describe() for c in end)
    print(f"simgen: warning: {path.name}: the frame cap ({cap} frames, {cap / plan.spec.tick_hz:g} s) ended the episode "
          f"before its end condition ({why}) held", file=sys.stderr)
    return {"end_reason": "cap", "end_time_s": (n - 1) / plan.spec.tick_hz, "end_frame": n - 1, "end_cap_hit": True}


def run(scenario: str, *, rig: str | None = None, out: str = "out", seed: int = 0, episodes: int = 1,
        frames: int | None = None, backend: str = "builtin", overrides: list[str] = (), overwrite: bool = False,
        progress: bool = True, backend_options: dict | None = None, allow_plugins: bool | None = None) -> dict:
    from simgen.backends.base import get_backend

    if episodes < 1:
        raise InputError(f"got {episodes}; allowed: 1 or more", key="--episodes")
    if frames is not None and frames < 1:
        raise InputError(f"got {frames}; allowed: 1 or more", key="--frames")
    src = load_scenario_source(scenario, overrides, allow_plugins=allow_plugins)
    rig_spec = load_rig(rig or default_rig_path())
    be = get_backend(backend, **(backend_options or {}))
    plans = plan_episodes(src, seed=seed, episodes=episodes)
    out_dir = make_dir(Path(out))
    try:
        with OutputLock(out_dir):
            return _run_into(out_dir, src, scenario, rig, rig_spec, be, plans, seed=seed, frames=frames, backend=backend,
                             overwrite=overwrite, progress=progress)
    finally:
        if hasattr(be, "close"):  # e.g. stop a CARLA server the backend launched
            be.close()


def _run_into(out_dir: Path, src, scenario, rig, rig_spec, be, plans, *, seed, frames, backend, overwrite, progress):
    paths = [out_dir / "episodes" / f"episode_{p.index:06d}.h5" for p in plans]
    prepare_output(out_dir, overwrite=overwrite, inputs=[src.path, rig or default_rig_path()],
                   outputs=[out_dir / "scenario.yaml", out_dir / "rig.yaml", *paths, out_dir / "run.json"])
    write_atomic(out_dir / "scenario.yaml", yaml.safe_dump(src.raw, sort_keys=False))
    write_atomic(out_dir / "rig.yaml", yaml.safe_dump(rig_to_dict(rig_spec), sort_keys=False))
    total = sum(frames or p.spec.n_frames for p in plans)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=f"{src.name} ({backend})", dynamic_ncols=True)
    results = []
    try:
        for p, path in zip(plans, paths):
            results.append(run_episode(p, rig_spec, path, backend=be, source=src.path, n_frames=frames, progress=bar,
                                       meta={"run_seed": seed}))
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "format": "simgen-run", "scenario": src.name, "scenario_file": str(scenario), "seed": seed, "backend": backend,
        "episodes": results, "versions": versions(),
        "collisions": sum(1 for r in results if r.get("collision")),
        "min_ttc_s": min((r["min_ttc_s"] for r in results if r.get("min_ttc_s") is not None), default=None),
    }
    write_atomic(out_dir / "run.json", json.dumps(summary, indent=2, default=float))
    return summary


def replay(episode: str, *, out: str, rig: str | None = None, overrides: list[str] = (), backend: str = "builtin",
           overwrite: bool = False, progress: bool = True, backend_options: dict | None = None,
           allow_plugins: bool | None = None) -> dict:
    """Re-render an episode's recorded trajectories (not a re-simulation) with the same or another rig,
    weather (``--set weather.…``) or backend.  With nothing changed the arrays are identical to the original."""
    from simgen.backends.base import get_backend
    from simgen.io.record import read_record
    from simgen.spec.rig import rig_from_dict
    from simgen.spec.scenario import scenario_from_dict
    from simgen.spec.schema import apply_overrides

    check_path_arg(episode, "EPISODE")
    rec = read_record(episode)
    where = f"{episode} (stored scenario)"
    # the stored scenario's plugins, with the same opt-in as a run (helper "input", issue 15 item 11)
    from simgen.io.episode import Episode
    from simgen.spec.scenario import load_stored_plugins

    with Episode(episode) as ep:
        scenario_file = str(ep.attr("scenario_file", "") or "") or None
    load_stored_plugins(rec.scenario, where=where, scenario_file=scenario_file, allow=allow_plugins)
    spec = scenario_from_dict(apply_overrides(rec.scenario, list(overrides), file=where), file=where)
    rig_spec = load_rig(rig) if rig else rig_from_dict(rec.rig, file=f"{episode} (stored rig)")
    be = get_backend(backend, **(backend_options or {}))
    plan = EpisodePlan(rec.index, rec.episode_seed, spec, rec.parameters, episode_streams(rec.episode_seed).sim)
    out_dir = make_dir(Path(out))
    try:
        with OutputLock(out_dir):
            return _replay_into(out_dir, episode, rec, plan, spec, rig, rig_spec, be, backend=backend,
                                overrides=overrides, overwrite=overwrite, progress=progress, where=where,
                                scenario_file=scenario_file)
    finally:
        if hasattr(be, "close"):
            be.close()


def _replay_into(out_dir, episode, rec, plan, spec, rig, rig_spec, be, *, backend, overrides, overwrite, progress,
                 where, scenario_file=None) -> dict:
    path = out_dir / "episodes" / f"episode_{rec.index:06d}.h5"
    prepare_output(out_dir, overwrite=overwrite, inputs=[episode, rig],
                   outputs=[out_dir / "rig.yaml", path, out_dir / "run.json"])
    write_atomic(out_dir / "rig.yaml", yaml.safe_dump(rig_to_dict(rig_spec), sort_keys=False))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rec.n_frames, unit="frame", desc=f"replay {spec.name} ({backend})", dynamic_ncols=True)
    try:
        res = run_episode(plan, rig_spec, path, backend=be, source=where, n_frames=None, progress=bar,
                          meta={"run_seed": rec.run_seed, "replay_of": str(episode),
                                "scenario_file": scenario_file or ""}, record=rec)
    finally:
        if bar is not None:
            bar.close()
    summary = {"format": "simgen-run", "replay_of": str(episode), "scenario": spec.name, "backend": backend,
               "episodes": [res], "versions": versions(), "overrides": list(overrides)}
    write_atomic(out_dir / "run.json", json.dumps(summary, indent=2, default=float))
    return summary
