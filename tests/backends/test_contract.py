"""The backend contract (issue 14): the same scenario, rig and seed through both backends — ``builtin`` and
``carla`` (through the test double ``tests/simgen/carla_double.py``) — give frames of the same structure and
meaning, events at the same ticks, and labels that pass the same consistency checks.

What may differ between backends, and is therefore not compared: pixel values (different renderers), the
rendered boxes' dims (CARLA reports its blueprint's box), LiDAR point counts, and — with CARLA's own controllers
(``drive="carla"``) — the motion itself; so events are compared on time triggers there, and on every trigger kind
with ``drive="simgen"`` (the builtin simulator moves CARLA's actors).  CARLA also renders the ego's own body
where a camera sees it (its hood, labelled with the ego's id 1); the builtin backend does not render the ego.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from simgen.records import CameraData, Frame, LidarData, StaticInfo
from simgen.spec.rig import rig_from_dict
from simgen.spec.scenario import concretise, load_scenario_source

REPO = Path(__file__).resolve().parents[2]
RIG = {"name": "contract", "sensors": [
    {"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.6},
     "attributes": {"image_size_x": 96, "image_size_y": 54, "fov": 90}},
    {"name": "lidar_top", "type": "lidar", "mount": {"z": 1.9},
     "attributes": {"channels": 8, "range": 60.0, "points_per_second": 24000, "rotation_frequency": 20.0,
                    "upper_fov": 2.0, "lower_fov": -20.0, "dropoff_general_rate": 0.0, "dropoff_zero_intensity": 0.0}},
]}
TIMED = """
name: contract_timed
map: straight
tick_hz: 20
duration_s: 2
ego:
  place: {lane: fwd_2, s_m: 100}
  speed_mps: 8
  behaviour: {type: lane_follow, speed_mps: 8}
actors:
  - id: lead
    kind: car
    place: {relative_to: ego, ahead_m: 22}
    speed_mps: 6
    behaviour: {type: lane_follow, speed_mps: 6, obstacles: none}
    events:
      - name: lead_brakes
        when: {time_s: 0.5}
        do: {type: brake, decel_mps2: 4}
  - id: ped
    kind: pedestrian
    place: {relative_to: ego, ahead_m: 30, lateral_m: -5}
    behaviour: {type: stand}
    events:
      - name: ped_walks
        when: {time_s: 0.8}
        do: {type: walk, speed_mps: 1.5, heading_deg: 90, distance_m: 3}
  - id: van
    kind: van
    place: {relative_to: ego, ahead_m: 40, lateral_m: -3.5}
    behaviour: {type: parked}
    events:
      - name: van_door
        when: {distance_m: 34}
        do: {type: open_door, direction: left, duration_s: 0.5}
traffic: {vehicles: 0, pedestrians: 0}
"""
N = 24
CASES = [("builtin", None, "timed"), ("carla", "carla", "timed"), ("carla", "simgen", "timed")]  # (backend, drive, scenario)


def _spec(name, tmp):
    if name == "timed":
        path = tmp / "timed.yaml"
        path.write_text(TIMED)
    else:
        path = REPO / "scenarios" / name
    spec, _ = concretise(load_scenario_source(path), rng=np.random.default_rng(4))
    return spec, str(path)


def _run(backend: str, drive: str | None, name: str, tmp) -> tuple[list[Frame], StaticInfo, dict, float]:
    rig = rig_from_dict(RIG, file="<contract>")
    spec, src = _spec(name, tmp)
    if backend == "builtin":
        from simgen.backends.builtin import BuiltinBackend

        be = BuiltinBackend()
    else:
        pytest.importorskip("carla", reason="the carla client package is not installed")
        from simgen.backends.carla import CarlaBackend
        from tests.simgen import carla_double as D

        be = CarlaBackend(carla_module=D.make_module(D.FakeServer()), drive=drive, sensor_timeout_s=2.0)
    s = be.open(spec, rig, seed=np.random.SeedSequence(11), source=src, n_frames=N)
    try:
        frames = [s.step() for _ in range(s.n_frames)]
        info, prov = s.static_info(), s.provenance()
    finally:
        s.close()
        be.close()
    return frames, info, prov, 1.0 / spec.tick_hz


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    return {case: _run(*case, tmp) for case in CASES}


def _ids(case):
    return f"{case[0]}-{case[1] or 'sim'}-{case[2].split('.')[0]}"


# ------------------------------------------------------------------------------------------------ structure
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_frames_have_the_contract_structure(runs, case):
    frames, info, prov, dt = runs[case]
    assert isinstance(info, StaticInfo) and isinstance(prov, dict)
    assert len(frames) == N
    ids = np.array([a.id for a in info.actors])
    assert ids[0] == 1 and info.actors[0].is_ego and len(set(ids.tolist())) == len(ids)
    for k, f in enumerate(frames):
        assert isinstance(f, Frame) and f.index == k and f.time_s == pytest.approx(k * dt)
        st = f.actors
        A = len(st.ids)
        assert st.ids.tolist() == ids.tolist() and list(st.names) == [a.name for a in info.actors]
        assert list(st.kinds) == [a.kind for a in info.actors]
        assert st.pose.shape == (A, 4) and st.velocity.shape == (A, 3) and st.accel.shape == (A,) and st.dims.shape == (A, 3)
        assert st.door is not None and st.door.shape == (A,)
        assert np.allclose(st.dims, [a.dims for a in info.actors])
        assert _rigid(f.T_world_from_ego) and set(f.T_ego_from_sensor) == {"front", "lidar_top"}
        assert set(f.cameras) == {"front"} and set(f.lidars) == {"lidar_top"}
        cam = f.cameras["front"]
        assert isinstance(cam, CameraData)
        for arr, shape, dtype in ((cam.rgb, (54, 96, 3), np.uint8), (cam.depth, (54, 96), np.float32),
                                  (cam.semantic, (54, 96), np.uint8), (cam.instance, (54, 96), np.uint32)):
            assert arr.shape == shape and arr.dtype == dtype
        assert cam.K.shape == (3, 3) and _rigid(cam.T_world_from_sensor)
        assert set(cam.amodal_pixels) <= set(ids.tolist())
        ld = f.lidars["lidar_top"]
        assert isinstance(ld, LidarData)
        n = len(ld.xyz)
        assert n > 0 and ld.xyz.shape == (n, 3) and ld.xyz.dtype == np.float32
        for arr, dtype in ((ld.intensity, np.float32), (ld.semantic, np.uint8), (ld.instance, np.uint32),
                           (ld.time_s, np.float64), (ld.channel, np.uint16), (ld.false_return, np.uint8)):
            assert arr.shape == (n,) and arr.dtype == dtype
        assert _rigid(ld.T_world_from_sensor) and _rigid(ld.T_world_from_sensor_start)
        assert np.all((ld.intensity >= 0) & (ld.intensity <= 1)) and ld.channel.max() < 8
        assert isinstance(f.applied, dict) and isinstance(f.lights, dict)


def _rigid(T) -> bool:
    T = np.asarray(T)
    return T.shape == (4, 4) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-5) and np.allclose(T[3], [0, 0, 0, 1])


# ------------------------------------------------------------------------------------------------ meaning
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_frames_mean_the_same_thing(runs, case):
    """Sensor poses follow the ego pose and the mountings; the ego's box is at T_world_from_ego; LiDAR returns fall
    in the sweep (t - dt, t]; instance ids are actors of the episode and their pixels carry the actor's class."""
    frames, info, _, dt = runs[case]
    sem_of = {a.id: a.semantic for a in info.actors}
    checked = 0
    for f in frames:
        T_we = f.T_world_from_ego
        assert np.allclose(f.cameras["front"].T_world_from_sensor, T_we @ f.T_ego_from_sensor["front"], atol=1e-3)
        assert np.allclose(f.lidars["lidar_top"].T_world_from_sensor, T_we @ f.T_ego_from_sensor["lidar_top"], atol=1e-3)
        ego = f.actors.pose[0]
        assert np.allclose(T_we[:3, 3], ego[:3], atol=1e-3) and np.arctan2(T_we[1, 0], T_we[0, 0]) == pytest.approx(ego[3], abs=1e-3)
        ld = f.lidars["lidar_top"]
        assert np.all(ld.time_s <= f.time_s + 1e-9) and (f.index == 0 or np.all(ld.time_s > f.time_s - dt - 1e-9))
        inst = f.cameras["front"].instance
        assert set(np.unique(inst).tolist()) <= set(sem_of) | {0}
        if case[0] == "builtin":
            assert not np.any(inst == 1)  # the builtin backend does not render the ego
        for aid in np.unique(inst[inst > 0]).tolist():
            if sem_of[aid] in (12, 14, 15, 16):  # people and vehicles: both backends render their class
                share = np.mean(f.cameras["front"].semantic[inst == aid] == sem_of[aid])
                assert share > 0.95, (aid, share)
                checked += 1
        assert set(np.unique(ld.instance).tolist()) <= set(sem_of) | {0}
    assert checked > 0


# ------------------------------------------------------------------------------------------------ events
def _events(frames):
    return [(f.index, round(t, 6), who, ev) for f in frames for (t, who, ev) in f.events]


def test_events_fire_at_the_same_ticks(runs):
    """Every event with drive="simgen"; the time-triggered ones with CARLA's controllers (their motion differs)."""
    ref = _events(runs[("builtin", None, "timed")][0])
    assert {e[3] for e in ref} == {"lead_brakes", "ped_walks", "van_door"}, "the scenario must fire its events"
    assert _events(runs[("carla", "simgen", "timed")][0]) == ref
    timed = [e for e in ref if e[3] != "van_door"]
    assert [e for e in _events(runs[("carla", "carla", "timed")][0]) if e[3] != "van_door"] == timed


def test_same_actors_on_both_backends(runs):
    for scenario in ("timed",):
        ref = runs[("builtin", None, scenario)][1]
        for case in CASES:
            if case[2] == scenario:
                info = runs[case][1]
                assert [(a.id, a.name, a.kind, a.semantic, a.is_ego) for a in info.actors] == \
                       [(a.id, a.name, a.kind, a.semantic, a.is_ego) for a in ref.actors]


# ------------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_labels_pass_the_same_consistency_checks(runs, case):
    from annotators.ground_truth import annotate
    from simgen.geometry import rotation_matrix

    frames, info, _, dt = runs[case]
    seen_any = False
    for f in frames:
        lab = annotate(f)
        st = f.actors
        cl = lab.cameras["front"]
        vis, amo = cl.visible_pixels, cl.amodal_pixels
        assert np.all(vis >= 0) and np.all(vis <= amo)
        inst = f.cameras["front"].instance
        assert [int(np.count_nonzero(inst == i)) for i in st.ids[1:]] == vis[1:].tolist()
        vf = cl.visible_fraction
        ok = amo > 0
        assert np.all((vf[ok] >= 0) & (vf[ok] <= 1 + 1e-6)) and np.all(np.isnan(vf[~ok]))
        for i in np.flatnonzero(vis > 0):
            m, p = cl.bbox_mask[i], cl.bbox_proj[i]
            assert m[0] >= p[0] - 1.5 and m[1] >= p[1] - 1.5 and m[2] <= p[2] + 1.5 and m[3] <= p[3] + 1.5, (f.index, i, m, p)
            seen_any = True
        ld = f.lidars["lidar_top"]
        n = lab.lidars["lidar_top"].n_points
        assert [int(np.count_nonzero(ld.instance == i)) for i in st.ids[1:]] == n[1:].tolist()
        # points labelled as an actor lie in its box (sensor pose at each point's time; the actor may move in a sweep)
        w = np.clip((ld.time_s - (f.time_s - dt)) / dt, 0, 1)[:, None]
        T0, T1 = ld.T_world_from_sensor_start, ld.T_world_from_sensor
        origin = (1 - w) * T0[:3, 3] + w * T1[:3, 3]
        pw = ld.xyz @ T1[:3, :3].T + origin
        for r, aid in enumerate(st.ids.tolist()):
            mine = ld.instance == aid
            if r == 0 or not mine.any():
                continue
            c = st.pose[r, :3] + [0, 0, st.dims[r, 2] / 2]
            local = (pw[mine] - c) @ rotation_matrix(0, 0, st.pose[r, 3])
            slack = float(np.linalg.norm(st.velocity[r])) * dt + 0.1
            assert np.all(np.abs(local) <= st.dims[r] / 2 + slack), (f.index, aid)
        assert np.allclose(lab.size, st.dims) and np.allclose(lab.center_world[:, 2], st.pose[:, 2] + st.dims[:, 2] / 2)
    assert seen_any


def test_carla_frames_stay_close_to_the_builtin_motion_when_the_simulator_drives(runs):
    """drive="simgen": CARLA's actors are placed where the builtin simulator says, so poses agree with the builtin
    backend's frame by frame (up to the box-bottom height of CARLA's blueprints)."""
    for scenario in ("timed",):
        ref = runs[("builtin", None, scenario)][0]
        got = runs[("carla", "simgen", scenario)][0]
        for a, b in zip(ref, got):
            assert np.abs(a.actors.pose[:, :2] - b.actors.pose[:, :2]).max() < 0.05
            assert np.abs(a.actors.pose[:, 3] - b.actors.pose[:, 3]).max() < 1e-3
            assert np.allclose(a.actors.door, b.actors.door)  # CARLA opened the door (dynamic-door blueprint)
        van = list(ref[-1].actors.names).index("van")
        assert ref[-1].actors.door[van] > 0
