"""``simgen bench``: whole-pipeline throughput against the ray-casting floor.

Runs the default rig on the dense straight-road scenario with 20 moving vehicles for N frames: simulate,
render, annotate and write an HDF5 episode (to a temporary folder).  Then, for sampled frames, it measures the
time open3d alone needs to cast the *same logical rays* (one per camera pixel, one per LiDAR beam, one shadow
ray per sun-facing camera hit) into a single scene holding the static world and the actors posed at that
frame.  ``floor_ratio`` = pipeline time per frame / that floor.  The last line printed is one JSON object.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _combined_scene(session):
    from simgen._o3d import o3d
    from simgen.records import pose_transform
    from simgen.world.mesh import merge

    st = session.world.states()
    rows = session._geom_rows
    parts = [session.static.mesh]
    for g, p in zip(session.actor_geoms, st.pose6[rows]):
        parts.append(g.mesh.transformed(pose_transform(p)))
    m = merge(parts)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(m.vertices), o3d.core.Tensor(m.triangles.astype(np.uint32)))
    return scene


def floor_time(session, frame, repeats: int = 3) -> float:
    """Seconds open3d alone needs for this frame's logical rays (best of ``repeats``)."""
    from simgen._o3d import o3d
    from simgen.records import pose_transform

    scene = _combined_scene(session)
    T = lambda a: o3d.core.Tensor(np.ascontiguousarray(a, np.float32))  # noqa: E731
    jobs = []
    sun = session._environment(frame.time_s)[1].sun_dir
    for name, cam in session.cameras.items():
        Tws = frame.cameras[name].T_world_from_sensor
        d = cam.d_body @ Tws[:3, :3].T.astype(np.float32)
        o = np.broadcast_to(Tws[:3, 3].astype(np.float32), d.shape)
        rays = T(np.concatenate([o, d], 1))
        r = scene.cast_rays(rays)
        t = r["t_hit"].numpy()
        n = r["primitive_normals"].numpy()
        hit = np.isfinite(t) & (np.einsum("ni,ni->n", n * np.sign(-np.einsum("ni,ni->n", n, d))[:, None], np.broadcast_to(sun, d.shape)) > 0)
        p = o[hit] + d[hit] * t[hit, None]
        shadow = T(np.concatenate([p, np.broadcast_to(sun, p.shape)], 1))
        jobs += [("cast", rays), ("occl", shadow)]
    for name, lid in session.lidars.items():
        n = lid.n_az * len(lid.elev)
        Tws = pose_transform(frame.actors.pose6[0]) @ lid.T_ego_from_sensor
        az = np.linspace(0, 2 * np.pi, lid.n_az, endpoint=False)
        ce, se = np.cos(lid.elev), np.sin(lid.elev)
        d = np.stack([ce[None] * np.cos(az)[:, None], ce[None] * np.sin(az)[:, None], np.broadcast_to(se, (lid.n_az, len(se)))], -1).reshape(-1, 3)
        d = d @ Tws[:3, :3].T
        jobs.append(("cast", T(np.concatenate([np.broadcast_to(Tws[:3, 3], d.shape), d], 1))))
        assert len(d) == n
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for kind, rays in jobs:
            (scene.cast_rays if kind == "cast" else scene.test_occlusions)(rays)
        best = min(best, time.perf_counter() - t0)
    return best


def run_bench(frames: int = 30, memory_frames: int = 0) -> dict:
    from annotators.ground_truth import annotate
    from simgen.backends.builtin import BuiltinSession
    from simgen.io.episode import EpisodeWriter
    from simgen.paths import SCENARIOS
    from simgen.spec.rig import default_rig_path, load_rig
    from simgen.spec.scenario import concretise, load_scenario_source

    src = load_scenario_source(SCENARIOS / "dense_traffic.yaml", ["traffic.vehicles=20", "traffic.pedestrians=0"])
    spec, _ = concretise(src, rng=np.random.default_rng(0))
    rig = load_rig(default_rig_path())
    warmup = 2  # first frames pay one-off costs (lazy BVH builds, loading compiled kernels)
    total = warmup + frames + max(memory_frames, 0)
    t_setup = time.perf_counter()
    session = BuiltinSession(spec, rig, seed=np.random.SeedSequence(0), source=str(src.path), n_frames=total)
    t_setup = time.perf_counter() - t_setup
    moving = sum(1 for a in session.world.actors[1:] if a.speed > 0)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        w = EpisodeWriter(Path(tmp) / "bench.h5", n_frames=total, rig=rig, meta={}, static_info=session.static_info().to_dict())
        parts = {"simulate_render": 0.0, "annotate": 0.0, "write": 0.0}
        floors = []
        rss = []
        for _ in range(warmup):
            fr = session.step()
            w.write(fr, annotate(fr))
        for k in range(total - warmup):
            t0 = time.perf_counter()
            fr = session.step()
            t1 = time.perf_counter()
            lab = annotate(fr)
            t2 = time.perf_counter()
            w.write(fr, lab)
            t3 = time.perf_counter()
            if k < frames:
                parts["simulate_render"] += t1 - t0
                parts["annotate"] += t2 - t1
                parts["write"] += t3 - t2
            if k in (frames // 3, frames - 1):
                floors.append(floor_time(session, fr))  # outside the timed part of the frame
            if memory_frames and k >= frames and (k - frames) % max(1, memory_frames // 10) == 0:
                rss.append(round(_rss_mb(), 1))
        w.close()
        size_mb = (Path(tmp) / "bench.h5").stat().st_size / 1e6
    pipe_per_frame = sum(parts.values()) / frames
    floor = float(np.mean(floors))
    out.update({
        "cores": os.cpu_count(), "frames": frames, "moving_actors": moving, "setup_s": round(t_setup, 3),
        "frames_per_s": round(1.0 / pipe_per_frame, 3), "pipeline_ms_per_frame": round(1000 * pipe_per_frame, 1),
        "floor_ms_per_frame": round(1000 * floor, 1), "floor_ratio": round(pipe_per_frame / floor, 3),
        "breakdown_ms_per_frame": {k: round(1000 * v / frames, 1) for k, v in parts.items()},
        "episode_mb_per_frame": round(size_mb / total, 2),
    })
    if memory_frames:
        out["memory_frames"] = memory_frames
        out["rss_mb_samples"] = rss
        out["rss_growth_mb"] = round(rss[-1] - rss[0], 1) if len(rss) > 1 else 0.0
    return out


def main(frames: int = 30, as_json: bool = False, memory_frames: int = 0) -> int:
    res = run_bench(frames=frames, memory_frames=memory_frames)
    if not as_json:
        for k, v in res.items():
            print(f"{k:24s} {v}")
    print(json.dumps(res))
    return 0
