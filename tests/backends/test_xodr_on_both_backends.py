"""The same imported OpenDRIVE map on both backends (issue 10, "the same map on both backends"): a short scenario
on a corpus map (esmini's straight_500m.xodr, MPL-2.0, read from ../shared/corpus, not copied) runs on the builtin
backend and on the carla backend (through the test double, whose generated world is read by the REAL offline
``carla.Map(name, text)``, as a server's ``generate_opendrive_world`` reads it).  Checked: the server is given the
file's own text; the actors are the same; lane placements agree (the backend checks every lane placement against
CARLA's ``get_waypoint_xodr``); with drive="simgen" poses agree frame by frame; and CARLA's waypoints of every
imported lane lie on the builtin RoadMap's lane centre, lane for lane."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="the carla client package is not installed")

from simgen.spec.rig import rig_from_dict  # noqa: E402
from simgen.spec.scenario import concretise, load_scenario_source  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = [ROOT / ".." / "shared" / "corpus", ROOT / ".." / ".." / "shared" / "corpus"]  # CI: ../shared
CORPUS = next((p.resolve() for p in _CANDIDATES if (p / "esmini").is_dir()), ROOT / "missing") / "esmini" / "resources" / "xodr"
STRAIGHT = CORPUS / "straight_500m.xodr"
FABRIKSGATAN = CORPUS / "fabriksgatan.xodr"
pytestmark = pytest.mark.skipif(not STRAIGHT.is_file(), reason="the esmini corpus (../shared/corpus) is not present")

RIG = {"name": "xodr_contract", "sensors": [
    {"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.6},
     "attributes": {"image_size_x": 64, "image_size_y": 36, "fov": 90}},
    {"name": "lidar_top", "type": "lidar", "mount": {"z": 1.9},
     "attributes": {"channels": 8, "range": 60.0, "points_per_second": 16000, "rotation_frequency": 20.0,
                    "upper_fov": 2.0, "lower_fov": -20.0, "dropoff_general_rate": 0.0, "dropoff_zero_intensity": 0.0}},
]}
SCENARIO = """
name: xodr_contract
map: {map}
tick_hz: 20
duration_s: 1
ego:
  place: {{road: 1, lane_id: -1, s_m: 100}}
  speed_mps: 8
  behaviour: {{type: lane_follow, speed_mps: 8}}
actors:
  - id: lead
    kind: car
    place: {{relative_to: ego, ahead_m: 20}}
    speed_mps: 6
    behaviour: {{type: lane_follow, speed_mps: 6, obstacles: none}}
  - id: oncoming
    kind: car
    place: {{road: 1, lane_id: 1, s_m: 160}}
    speed_mps: 7
    behaviour: {{type: lane_follow, speed_mps: 7}}
traffic: {{vehicles: 0, pedestrians: 0}}
"""
N = 12
CASES = [("builtin", None), ("carla", "carla"), ("carla", "simgen")]


def _run(backend, drive, tmp):
    from tests.simgen import carla_double as D

    path = tmp / "on_xodr.yaml"
    path.write_text(SCENARIO.format(map=STRAIGHT.resolve()))
    spec, _ = concretise(load_scenario_source(path), rng=np.random.default_rng(4))
    rig = rig_from_dict(RIG, file="<xodr contract>")
    server = None
    if backend == "builtin":
        from simgen.backends.builtin import BuiltinBackend

        be = BuiltinBackend()
    else:
        from simgen.backends.carla import CarlaBackend

        server = D.FakeServer()
        be = CarlaBackend(carla_module=D.make_module(server), drive=drive, sensor_timeout_s=2.0)
    s = be.open(spec, rig, seed=np.random.SeedSequence(5), source=str(path), n_frames=N)
    try:
        frames = [s.step() for _ in range(s.n_frames)]
        info = s.static_info()
    finally:
        s.close()
        be.close()
    return frames, info, server


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xodr_contract")
    return {case: _run(*case, tmp) for case in CASES}


def test_the_server_generates_its_world_from_the_file_itself(runs):
    for case in CASES[1:]:
        server = runs[case][2]
        text, params = server.generated
        assert text == STRAIGHT.read_text(encoding="utf-8")
        assert isinstance(params, carla.OpendriveGenerationParameters)
        assert params.enable_mesh_visibility and params.enable_pedestrian_navigation
        assert [c[0] for c in server.calls].count("generate_opendrive_world") == 1


def test_same_actors_and_frames_on_both_backends(runs):
    ref_frames, ref, _ = runs[("builtin", None)]
    for case in CASES:
        frames, info, _ = runs[case]
        assert len(frames) == N
        assert [(a.id, a.name, a.kind, a.is_ego) for a in info.actors] == [(a.id, a.name, a.kind, a.is_ego) for a in ref.actors]
        for f in frames:
            assert f.cameras["front"].instance.shape == (36, 64) and len(f.lidars["lidar_top"].xyz) > 0
    # frame 0: every actor starts where the builtin backend puts it (the same OpenDRIVE placement on both): in the
    # same lane exactly; along it within the distance CARLA's controllers drive during the settling ticks
    for case in CASES[1:]:
        f0 = runs[case][0][0]
        assert np.abs(f0.actors.pose[:, 1] - ref_frames[0].actors.pose[:, 1]).max() < 0.02, case
        assert np.abs(f0.actors.pose[:, 0] - ref_frames[0].actors.pose[:, 0]).max() < 0.5, case
        d = (f0.actors.pose[:, 3] - ref_frames[0].actors.pose[:, 3] + np.pi) % (2 * np.pi) - np.pi
        assert np.abs(d).max() < 1e-2, case


def test_poses_agree_frame_by_frame_when_the_simulator_drives(runs):
    ref = runs[("builtin", None)][0]
    got = runs[("carla", "simgen")][0]
    for a, b in zip(ref, got):
        assert np.abs(a.actors.pose[:, :2] - b.actors.pose[:, :2]).max() < 0.05
        assert np.abs(a.actors.pose[:, 3] - b.actors.pose[:, 3]).max() < 1e-3
    # the actors moved along the lanes: the ego forwards (+x on road 1's lane -1), the oncoming car backwards
    names = list(got[0].actors.names)
    dx = got[-1].actors.pose[:, 0] - got[0].actors.pose[:, 0]
    assert dx[0] > 3.0 and dx[names.index("oncoming")] < -3.0


@pytest.mark.parametrize("path", [STRAIGHT, FABRIKSGATAN], ids=lambda p: p.stem)
def test_carla_waypoints_are_the_builtin_lanes_lane_for_lane(path):
    """CARLA's parser as the server holds the map (``carla.Map(name, text)``) vs the builtin RoadMap: every
    imported lane's (road, lane, s) gives a CARLA waypoint on the lane centre, heading its way, same width."""
    from simgen.world.roads import get_map
    from simgen.world.xodr import XodrLayout

    m = get_map(str(path))
    layout = XodrLayout(m)
    cm = carla.Map(path.stem, path.read_text(encoding="utf-8"))
    checked = 0
    for lid, lane in m.lanes.items():
        ref = layout.lane_ref(lid)
        L = lane.centre.length
        for s in np.linspace(0.05 * L, 0.95 * L, 4):
            wp = cm.get_waypoint_xodr(ref.road_id, ref.lane_id, float(layout.road_s(lid, s)))
            assert wp is not None, (lid, s)
            assert (wp.road_id, wp.lane_id, wp.section_id) == (ref.road_id, ref.lane_id, ref.section), lid
            x, y, yaw = lane.centre.pose_at(s)
            loc = wp.transform.location
            assert math.hypot(loc.x - x, -loc.y - y) < 0.02, (lid, s)
            z = float(np.interp(s, lane.centre.vertex_s, lane.z))
            assert abs(loc.z - z) < 0.02, (lid, s)
            d = (math.radians(-wp.transform.rotation.yaw) - yaw + math.pi) % (2 * math.pi) - math.pi
            assert abs(d) < 0.03, (lid, s, d)
            checked += 1
        assert wp.lane_width == pytest.approx(lane.width_m, abs=0.3), lid
    assert checked >= 4 * len(m.lanes) > 0


JUNCTION = """
name: xodr_junction
map: {map}
tick_hz: 10
duration_s: 5
ego:
  place: {{road: 0, lane_id: 1, s_m: 12}}
  speed_mps: 8
  behaviour: {{type: lane_follow, speed_mps: 8, turns: [left]}}
traffic: {{vehicles: 0, pedestrians: 0}}
"""


@pytest.mark.skipif(not FABRIKSGATAN.is_file(), reason="the esmini corpus is not present")
def test_a_route_through_a_junction_of_an_imported_map_on_both_backends(tmp_path):
    """fabriksgatan (esmini, urban junctions): the ego turns left through junction connector r10; with drive
    "simgen" CARLA's ego follows the builtin poses through it, and with drive "carla" the Traffic Manager gets a
    path through the connector's exit lane, at the lane's height."""
    from simgen.backends.builtin import BuiltinBackend
    from simgen.backends.carla import CarlaBackend
    from simgen.world.roads import get_map
    from tests.simgen import carla_double as D

    path = tmp_path / "junction.yaml"
    path.write_text(JUNCTION.format(map=FABRIKSGATAN.resolve()))
    spec, _ = concretise(load_scenario_source(path), rng=np.random.default_rng(4))
    rig = rig_from_dict(RIG, file="<xodr contract>")
    out = {}
    for drive in (None, "simgen", "carla"):
        server = D.FakeServer() if drive else None
        be = BuiltinBackend() if drive is None else CarlaBackend(carla_module=D.make_module(server), drive=drive, sensor_timeout_s=2.0)
        s = be.open(spec, rig, seed=np.random.SeedSequence(5), source=str(path), n_frames=50)
        try:
            out[drive] = ([s.step() for _ in range(s.n_frames)], server)
        finally:
            s.close()
            be.close()
    ref, got = out[None][0], out["simgen"][0]
    for a, b in zip(ref, got):
        assert np.abs(a.actors.pose[0, :2] - b.actors.pose[0, :2]).max() < 0.05
    m = get_map(str(FABRIKSGATAN))
    exit_lane = m.lanes[m.lanes["r10_l-1_s0"].successors["straight"]]
    yaw_turn = (ref[-1].actors.pose[0, 3] - ref[0].actors.pose[0, 3] + np.pi) % (2 * np.pi) - np.pi
    assert yaw_turn > np.radians(60)  # the builtin ego turned left through the junction
    paths = [c for c in out["carla"][1].calls if c[0] == "tm.set_path"]
    assert paths, "the Traffic Manager got no path through the junction"
    pts = np.array([[x, -y, z] for x, y, z in paths[0][2]])
    s_exit, lat = exit_lane.centre.project(pts[:, :2])
    assert np.abs(lat).max() < 0.05 and np.all(s_exit <= exit_lane.centre.length + 1e-6)
