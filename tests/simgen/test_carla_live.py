"""CARLA backend against a live server (issue 6).  Runs only when SIMGEN_CARLA_HOST is set (port: SIMGEN_CARLA_PORT,
default 2000), e.g. ``SIMGEN_CARLA_HOST=127.0.0.1 pytest -m carla tests/simgen/test_carla_live.py``.

These tests have NOT been run by the author (no CARLA server was available); see docs/carla.md.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

HOST = os.environ.get("SIMGEN_CARLA_HOST")
PORT = int(os.environ.get("SIMGEN_CARLA_PORT", "2000"))
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.carla,
    pytest.mark.skipif(not HOST, reason="needs a live CARLA server: set SIMGEN_CARLA_HOST (and SIMGEN_CARLA_PORT)"),
]

RIG = {"name": "live_small", "sensors": [
    {"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.7}, "attributes": {"image_size_x": 320, "image_size_y": 180, "fov": 90}},
    {"name": "lidar_top", "type": "lidar", "mount": {"z": 2.0},
     "attributes": {"channels": 16, "range": 60.0, "points_per_second": 100000, "rotation_frequency": 20.0, "upper_fov": 2.0,
                    "lower_fov": -24.8, "dropoff_general_rate": 0.0, "dropoff_zero_intensity": 0.0}},
]}


@pytest.fixture(scope="module")
def carla_mod():
    return pytest.importorskip("carla")


def _world_state(carla_mod):
    client = carla_mod.Client(HOST, PORT)
    client.set_timeout(20.0)
    world = client.get_world()
    return client, world, world.get_settings()


def test_server_answers_and_versions(carla_mod):
    client, _, _ = _world_state(carla_mod)
    assert client.get_server_version().startswith(("0.9.15", "0.9.16"))


def test_short_episode_end_to_end(carla_mod, tmp_path):
    import yaml

    from simgen.io.episode import Episode
    from simgen.runner import run
    from simgen.geometry import rotation_matrix

    _, world, before = _world_state(carla_mod)
    rig_path = tmp_path / "rig.yaml"
    rig_path.write_text(yaml.safe_dump(RIG))
    out = tmp_path / "out"
    summary = run(str(REPO / "scenarios" / "lead_vehicle_brakes.yaml"), rig=str(rig_path), out=str(out), seed=1, frames=20,
                  backend="carla", progress=False, backend_options={"host": HOST, "port": PORT})
    assert summary["episodes"][0]["frames"] == 20
    # the world is left as it was: settings restored, nothing of ours left behind
    _, world, after = _world_state(carla_mod)
    assert after.synchronous_mode == before.synchronous_mode
    assert after.fixed_delta_seconds == before.fixed_delta_seconds
    leftovers = [a for a in world.get_actors() if a.attributes.get("role_name", "").startswith("simgen/")]
    assert leftovers == []
    with Episode(out / "episodes" / "episode_000000.h5") as ep:
        names = list(ep.f["actors/name"].asstr()[:])
        lead = names.index("lead")
        ids = ep.f["actors/id"][:]
        seen = 0
        for k in range(ep.n_frames):
            lab = ep.labels("front", k)
            vis = lab["visible_pixels"] > 0
            m, p = lab["bbox_mask"][vis], lab["bbox_proj"][vis]
            # instance masks sit inside the projected CARLA boxes (a few pixels for mirrors and antialiasing)
            assert np.all(m[:, :2] >= p[:, :2] - 4) and np.all(m[:, 2:] <= p[:, 2:] + 4), k
            assert np.all(lab["visible_pixels"] <= lab["amodal_pixels"])
            seen += int(vis[lead])
            ld = ep.lidar("lidar_top", k)
            mine = ld["instance"] == ids[lead]
            if mine.any():
                pw = ld["xyz"][mine] @ ld["T_world_from_sensor"][:3, :3].T + ld["T_world_from_sensor"][:3, 3]
                b = ep.boxes(k)
                local = (pw - b["center_world"][lead]) @ rotation_matrix(0, 0, b["yaw_world"][lead])
                assert np.mean(np.all(np.abs(local) <= b["size"][lead] / 2 + 0.3, axis=1)) > 0.95
        assert seen > 10


def test_opendrive_export_loads_and_waypoints_match(carla_mod):
    from simgen.world.opendrive import build_layout, opendrive_xml
    from simgen.world.roads import get_map
    from simgen.backends.carla_frames import xyz_from_carla

    client, world, before = _world_state(carla_mod)
    try:
        world = client.generate_opendrive_world(opendrive_xml("intersection"), carla_mod.OpendriveGenerationParameters(
            vertex_distance=2.0, max_road_length=50.0, wall_height=0.0, additional_width=0.0, smooth_junctions=True,
            enable_mesh_visibility=True, enable_pedestrian_navigation=True))
        cmap = world.get_map()
        layout = build_layout("intersection")
        m = get_map("intersection")
        for lane_id, lane in m.lanes.items():
            ref = layout.lane_ref(lane_id)
            for s in (0.5, lane.centre.length / 2):
                wp = cmap.get_waypoint_xodr(ref.road_id, ref.lane_id, float(layout.road_s(lane_id, s)))
                assert wp is not None, lane_id
                got = xyz_from_carla(wp.transform.location)
                assert np.hypot(*(got[:2] - np.array(lane.centre.pose_at(s)[:2]))) < 0.2, lane_id
        lights = world.get_actors().filter("traffic.traffic_light*")
        assert len(lights) == len(m.traffic_lights)
    finally:
        world.apply_settings(before)
