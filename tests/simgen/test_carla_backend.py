"""CARLA backend (issue 6) without a server: frame conversions, decoding, frame matching, call sequences, clean-up
on errors and Ctrl-C, trigger semantics against the builtin simulator, and a complete episode through the runner,
all against the test double in ``carla_double.py`` (real ``carla`` value types, fake server)."""
from __future__ import annotations

import math
import os
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="the carla client package is not installed (pip install 'simgen[carla]')")

from tests.simgen import carla_double as D  # noqa: E402
from simgen.backends import carla as CB  # noqa: E402
from simgen.backends import carla_frames as F  # noqa: E402
from simgen.backends.carla_server import CarlaServer, CarlaServerLost, is_server_failure, port_plan, retrying, server_command  # noqa: E402
from simgen.errors import InputError, RunError  # noqa: E402
from simgen.geometry import T_BODY_FROM_OPTICAL, intrinsics_from_fov, invert, pose_matrix, project, rotation_matrix  # noqa: E402
from simgen.spec.rig import rig_from_dict  # noqa: E402
from simgen.spec.scenario import concretise, load_scenario_source  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"

TINY_RIG = {"name": "tiny", "sensors": [
    {"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.6},
     "attributes": {"image_size_x": 64, "image_size_y": 36, "fov": 90}},
    {"name": "lidar_top", "type": "lidar", "mount": {"z": 1.9},
     "attributes": {"channels": 8, "range": 60.0, "points_per_second": 24000, "rotation_frequency": 20.0, "upper_fov": 2.0,
                    "lower_fov": -20.0, "dropoff_general_rate": 0.0, "dropoff_zero_intensity": 0.0}},
]}


@pytest.fixture(scope="module")
def rig():
    return rig_from_dict(TINY_RIG, file="<tiny>")


def scenario(name="lead_vehicle_brakes.yaml", seed=1, text=None, tmp=None, **overrides):
    import dataclasses

    path = SCENARIOS / name
    if text is not None:
        path = tmp / "s.yaml"
        path.write_text(text)
    src = load_scenario_source(path)
    spec, _ = concretise(src, rng=np.random.default_rng(seed))
    return dataclasses.replace(spec, **overrides) if overrides else spec, str(path)


def backend(server, **kw):
    kw.setdefault("sensor_timeout_s", 60.0)  # late data arrives on timer threads: no race on a loaded machine
    return CB.CarlaBackend(carla_module=D.make_module(server), **kw)


def open_session(server, rig, name="lead_vehicle_brakes.yaml", seed=3, n_frames=6, **kw):
    spec, src = scenario(name)
    return backend(server, **kw).open(spec, rig, seed=np.random.SeedSequence(seed), source=src, n_frames=n_frames)


def assert_clean(server, sync=False):
    """Everything spawned is gone and the world's settings are back to what they were."""
    assert server.live_spawned() == []
    assert server.settings.synchronous_mode is sync
    for tm in server.tms.values():
        assert tm.sync is sync


# =============================================================================== frames (carla_frames)
def test_location_worked_example():
    assert F.xyz_from_carla(carla.Location(1, 2, 3)).tolist() == [1.0, -2.0, 3.0]
    loc = F.location_to_carla([1.0, -2.0, 3.0], carla)
    assert (loc.x, loc.y, loc.z) == (1.0, 2.0, 3.0)


def test_rotation_worked_examples():
    # CARLA yaw 90 deg faces CARLA +y, which is to the RIGHT: simgen yaw -90 deg, forward (0, -1, 0)
    roll, pitch, yaw = F.rpy_from_carla(carla.Rotation(yaw=90))
    assert (roll, pitch, yaw) == pytest.approx((0.0, 0.0, -math.pi / 2))
    T = F.matrix_from_carla(carla.Transform(carla.Location(), carla.Rotation(yaw=90)))
    assert T[:3, 0] == pytest.approx([0.0, -1.0, 0.0], abs=1e-9)
    # CARLA pitch +10 deg is nose up; simgen pitch is positive nose DOWN
    roll, pitch, yaw = F.rpy_from_carla(carla.Rotation(pitch=10))
    assert pitch == pytest.approx(math.radians(-10))
    T = F.matrix_from_carla(carla.Transform(carla.Location(), carla.Rotation(pitch=10)))
    assert T[2, 0] == pytest.approx(math.sin(math.radians(10)))
    # CARLA roll +30 deg drops the right side (its right vector points down): simgen roll +30 deg, left side up
    tf = carla.Transform(carla.Location(), carla.Rotation(roll=30))
    assert tf.get_right_vector().z < 0
    roll, _, _ = F.rpy_from_carla(tf.rotation)
    assert roll == pytest.approx(math.radians(30))
    assert F.matrix_from_carla(tf)[2, 1] == pytest.approx(0.5)  # the simgen left axis (y) tips up


def test_transform_matches_carla_own_matrix_and_round_trips():
    rng = np.random.default_rng(0)
    S = np.diag([1.0, -1.0, 1.0, 1.0])
    for _ in range(50):
        p, y, r = rng.uniform(-80, 80), rng.uniform(-180, 180), rng.uniform(-180, 180)
        tf = carla.Transform(carla.Location(*rng.uniform(-50, 50, 3)), carla.Rotation(pitch=p, yaw=y, roll=r))
        M = np.array(tf.get_matrix())
        T = F.matrix_from_carla(tf)
        assert np.abs(T - S @ M @ S).max() < 1e-5
        assert np.abs(F.rotation_matrix_from_carla(p, y, r) - M[:3, :3]).max() < 1e-6
        back = F.matrix_to_carla(T, carla)
        assert np.abs(np.array(back.get_matrix()) - M).max() < 1e-4
        T2 = F.matrices_from_carla([[tf.location.x, tf.location.y, tf.location.z]], [[p, y, r]])[0]
        assert np.abs(T2 - T).max() < 1e-5
    T = pose_matrix(3.0, -4.0, 1.0, 0.3, 0.1, -0.2)
    assert np.abs(F.matrix_from_carla(F.matrix_to_carla(T, carla)) - T).max() < 1e-5
    assert np.abs(F.matrix_from_carla(F.pose_to_carla(3.0, -4.0, 1.0, 0.3, carla, pitch=0.1, roll=-0.2)) - T).max() < 1e-5


def test_points_vectors_and_boxes():
    pts = F.points_from_carla(np.array([[1.0, 2.0, 0.5]], np.float32))  # 2 m to the right of the sensor
    assert pts.dtype == np.float32 and pts.tolist() == [[1.0, -2.0, 0.5]]
    v = F.vector_to_carla([3.0, 1.0, 0.0], carla)  # a velocity to the front-left
    assert (v.x, v.y, v.z) == (3.0, -1.0, 0.0)
    bb = carla.BoundingBox(carla.Location(0.1, 0.2, 0.7), carla.Vector3D(2.0, 0.9, 0.7))
    assert F.bbox_dims(bb).tolist() == pytest.approx([4.0, 1.8, 1.4])
    T = F.T_actor_from_box_bottom(bb)
    assert T[:3, 3] == pytest.approx([0.1, -0.2, 0.0])


def test_camera_projection_through_converted_pose():
    """A point 10 m ahead and 2 m to the right of a CARLA camera lands right of the image centre."""
    cam = carla.Transform(carla.Location(5, 5, 2), carla.Rotation(yaw=30))
    p_carla = cam.transform(carla.Location(10, 2, 0))
    T_ws = F.matrix_from_carla(cam)
    K = intrinsics_from_fov(800, 600, 90)
    p_opt = invert(T_ws @ T_BODY_FROM_OPTICAL) @ np.append(F.xyz_from_carla(p_carla), 1.0)
    uv, z = project(K, p_opt[None, :3])
    assert z[0] == pytest.approx(10.0, abs=1e-4)
    assert uv[0] == pytest.approx([400 + 400 * 2 / 10, 300], abs=1e-3)


# =============================================================================== decoding
def _bgra(rgb_rows):
    a = np.array(rgb_rows, np.uint8)
    out = np.zeros(a.shape[:2] + (4,), np.uint8)
    out[..., 0], out[..., 1], out[..., 2], out[..., 3] = a[..., 2], a[..., 1], a[..., 0], 255
    return out.tobytes()


def test_depth_decoding_worked_pixels():
    raw = _bgra([[(0, 0, 0), (255, 255, 255), (1, 0, 0), (0, 1, 0), (0, 0, 1), (92, 143, 2)]])
    d = CB.decode_depth(raw, 1, 6)
    want = [0.0, 1000.0, 1000 / 16777215, 256000 / 16777215, 65536000 / 16777215, 10.0]
    assert d.dtype == np.float32
    assert d[0].tolist() == pytest.approx(want, abs=1e-4)
    assert d[0, 4] == pytest.approx(3.90625, abs=1e-4)


def test_bgra_semantic_and_instance_decoding():
    raw = _bgra([[(10, 20, 30), (14, 0x34, 0x12)]])
    assert CB.decode_bgra(raw, 1, 2).tolist() == [[[10, 20, 30], [14, 0x34, 0x12]]]
    assert CB.decode_semantic(raw, 1, 2).tolist() == [[10, 14]]
    tag, ids = CB.decode_instance(raw, 1, 2)
    assert tag.tolist() == [[10, 14]] and ids.tolist() == [[20 + 30 * 256, 0x1234]]
    with pytest.raises(RunError):
        CB.decode_bgra(raw, 2, 2)


def test_semantic_lidar_decoding():
    rec = np.zeros(3, D.SEM_DTYPE)
    rec["x"], rec["y"], rec["z"] = [1, 2, 3], [1, -1, 0], [0, 0, -1]
    rec["idx"], rec["tag"] = [0, 42, 42], [1, 14, 14]
    out = CB.decode_semantic_lidar(rec.tobytes(), [2, 1])
    assert out["xyz"].tolist() == [[1, -1, 0], [2, 1, 0], [3, 0, -1]]  # y right -> y left
    assert out["channel"].tolist() == [0, 0, 1] and out["object_idx"].tolist() == [0, 42, 42]
    with pytest.raises(RunError):
        CB.decode_semantic_lidar(rec.tobytes(), [2, 2])


def test_lidar_postprocess_follows_carla_model():
    from simgen.spec.rig import LidarAttributes

    rng = np.random.default_rng(0)
    xyz = np.repeat(np.array([[10.0, 0, 0], [100.0, 0, 0]]), 20000, axis=0).astype(np.float32)
    a = LidarAttributes(atmosphere_attenuation_rate=0.004, dropoff_general_rate=0.0, dropoff_intensity_limit=0.8,
                        dropoff_zero_intensity=0.4, noise_stddev=0.0)
    keep, inten, out = CB.lidar_postprocess(xyz, a, rng)
    assert inten[:2].tolist() == pytest.approx([math.exp(-0.04)] * 2, rel=1e-6)
    assert keep[:20000].all()  # intensity 0.96 > limit 0.8: always kept
    i100 = math.exp(-0.4)
    assert keep[20000:].mean() == pytest.approx((0.4 / 0.8) * i100 + 0.6, abs=0.01)
    assert np.array_equal(out, xyz)
    keep, _, _ = CB.lidar_postprocess(xyz, LidarAttributes(dropoff_general_rate=1.0), rng)
    assert not keep.any()
    _, _, noisy = CB.lidar_postprocess(xyz[:20000], LidarAttributes(noise_stddev=0.1, dropoff_general_rate=0.0), rng)
    assert np.std(noisy[:, 0] - 10.0) == pytest.approx(0.1, rel=0.05) and np.abs(noisy[:, 1:]).max() == 0


def test_substep_settings():
    assert CB.substep_settings(0.05) == (0.01, 5)
    assert CB.substep_settings(1 / 30) == (0.01, 4)
    assert CB.substep_settings(0.16) == (0.01, 16)
    for hz in np.linspace(6.25, 200, 97):
        dt = 1 / hz
        sub, n = CB.substep_settings(dt)
        assert sub <= 0.01 and 1 <= n <= 16 and sub * n >= dt - 1e-12
    with pytest.raises(InputError, match="tick_hz"):
        CB.substep_settings(0.2)


def test_colour_conversion_and_blueprint_choice():
    assert CB.linear_to_srgb8([0.0, 1.0, 0.5]) == (0, 255, 188)  # 1.055 * 0.5 ** (1 / 2.4) - 0.055 = 0.7354
    assert CB.srgb8_to_linear((0, 255, 188)) == pytest.approx([0.0, 1.0, 0.5029], abs=1e-3)
    cand = {"a": np.array([4.0, 1.8, 1.5]), "b": np.array([10.0, 2.5, 3.3]), "c": np.array([4.1, 1.8, 1.5])}
    rng = np.random.default_rng(0)
    picks = {CB.choose_blueprint(cand, [4.05, 1.8, 1.5], rng) for _ in range(50)}
    assert picks == {"a", "c"}  # both within tolerance, never the bus
    assert CB.choose_blueprint(cand, [11, 2.5, 3.2], rng) == "b"
    assert CB.choose_blueprint(cand, [4.05, 1.8, 1.5], np.random.default_rng(5)) == CB.choose_blueprint(cand, [4.05, 1.8, 1.5], np.random.default_rng(5))


# =============================================================================== frame matching
class _D:
    def __init__(self, frame, payload=None):
        self.frame, self.payload = frame, payload


def test_collector_out_of_order_and_late_data():
    c = CB.FrameCollector(["a", "b"])
    c.put("b", _D(11, "b11"))  # the next frame's data first
    c.put("a", _D(10, "a10"))
    c.put("b", _D(10, "b10"))
    got = c.wait(10, 0.5)
    assert {k: v.payload for k, v in got.items()} == {"a": "a10", "b": "b10"}
    c.put("a", _D(9, "late"))  # data for an older frame: discarded
    c.put("a", _D(10, "late"))
    assert c.discarded_late == 2
    c.put("a", _D(11, "a11"))
    c.put("a", _D(11, "dup"))
    assert c.duplicates == 1
    assert {k: v.payload for k, v in c.wait(11, 0.5).items()} == {"a": "a11", "b": "b11"}


def test_collector_waits_for_other_threads_and_times_out_naming_the_sensor():
    c = CB.FrameCollector(["cam", "lidar"])
    threading.Timer(0.05, c.put, args=("lidar", _D(3))).start()
    c.put("cam", _D(3))
    assert set(c.wait(3, 60.0)) == {"cam", "lidar"}  # returns when the timer thread delivers
    c.put("cam", _D(4))
    t0 = time.monotonic()
    with pytest.raises(CB.SensorTimeout, match="frame 4: no data from lidar"):
        c.wait(4, 0.2)
    assert time.monotonic() - t0 >= 0.2  # it waited the whole timeout (no upper bound: issue 15 item 6)
    c.put("lidar", _D(4))  # arrives after the timeout: never mixed into a later frame
    c.put("cam", _D(5))
    c.put("lidar", _D(5))
    assert all(v.frame == 5 for v in c.wait(5, 0.2).values())


# =============================================================================== triggers and lights vs the builtin simulator
TRIGGERS = """
name: triggers
map: straight
tick_hz: 20
duration_s: 6
ego:
  place: {lane: fwd_2, s_m: 100}
  speed_mps: 12
  behaviour: {type: lane_follow, speed_mps: 12}
actors:
  - id: lead
    kind: car
    place: {relative_to: ego, ahead_m: 30}
    speed_mps: 4
    behaviour: {type: lane_follow, speed_mps: 4, obstacles: none}
    events:
      - name: lead_close
        when: {ttc_s: 4.5}
        do: {type: brake, decel_mps2: 3}
  - id: ped
    kind: pedestrian
    place: {relative_to: ego, ahead_m: 45, lateral_m: -6}
    behaviour: {type: stand}
    events:
      - name: ped_go
        when: {distance_m: 30}
        do: {type: walk, speed_mps: 1.5, heading_deg: 90, distance_m: 3}
      - name: ped_stop
        when: {after: ped_go, delay_s: 1.0}
        do: {type: stand}
  - id: other
    kind: car
    place: {lane: bwd_1, s_m: 300}
    speed_mps: 10
    events:
      - when: {time_s: 2.0, distance_m: 200, actor: lead, to: ego}
        do: {type: stop, decel_mps2: 2}
"""


def test_trigger_shim_fires_like_the_builtin_simulator(tmp_path):
    """Issue 6: on a CARLA town (no builtin World) triggers run through ``World.check_events`` on a shim fed with
    observed states; fed the builtin simulator's states, it must fire the same events at the same times."""
    from simgen.sim.behaviours import register_trigger
    from simgen.sim.world import World

    register_trigger("test_ego_faster_than")(lambda world, actor, params: world.actors[0].speed > params["v"])
    text = TRIGGERS + """    events:
      - name: custom_one
        when: {custom: test_ego_faster_than, params: {v: 5.0}, position: [-38, -5.25], radius_m: 5, actor: ego}
        do: {type: stop, decel_mps2: 1}
""".replace("    events:\n      - name: custom_one", "      - name: custom_one", 1)
    spec, src = scenario(text=text, tmp=tmp_path)
    w = World(spec, rng=np.random.default_rng(0), source=src)
    plans = [CB._Plan(a.id, a.name, a.kind, a.is_ego, a.dims, a.colour, a.x, a.y, a.z, a.yaw, a.speed, a.behaviour,
                      tuple(a.events)) for a in w.actors]
    shim = CB._TriggerShim(plans)
    fired = []
    for _ in range(spec.n_frames):
        for wa, sa in zip(w.actors, shim.actors):
            sa.x, sa.y, sa.yaw, sa.speed, sa.crashed = wa.x, wa.y, wa.yaw, wa.speed, wa.crashed
        shim.time_s = w.time_s
        n_s, n_w = len(shim.event_log), len(w.event_log)
        World.check_events(shim)
        w.step()
        assert shim.event_log[n_s:] == w.event_log[n_w:]
        fired += shim.event_log[n_s:]
    assert {k for _, _, k in fired} == {"lead_close", "ped_go", "ped_stop", "other#0", "custom_one"}


def test_footprints_match_the_builtin_simulator(tmp_path):
    from simgen.sim.world import World

    spec, src = scenario(text=TRIGGERS, tmp=tmp_path)
    w = World(spec, rng=np.random.default_rng(0), source=src)
    st = w.states()
    assert np.allclose(CB.footprints(st.pose, st.dims), w._footprints())


# =============================================================================== sessions on the double
def test_open_sets_sync_mode_substeps_tm_and_weather_then_restores(rig):
    srv = D.FakeServer()
    spec, src = scenario()
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(3), source=src, n_frames=3)
    st = srv.settings
    assert st.synchronous_mode and st.fixed_delta_seconds == pytest.approx(1 / spec.tick_hz)
    assert st.substepping and st.max_substep_delta_time <= 0.01 and st.max_substeps <= 16
    assert st.max_substep_delta_time * st.max_substeps >= st.fixed_delta_seconds - 1e-12
    tm = srv.tms[8000]
    assert tm.sync and tm.seed is not None
    names = [c[0] for c in srv.calls]
    assert names.index("generate_opendrive_world") < names.index("apply_settings") < names.index("tm.set_synchronous_mode")
    assert srv.weather.cloudiness == pytest.approx(spec.weather.cloudiness)
    assert srv.weather.sun_altitude_angle == pytest.approx(spec.weather.sun_altitude_angle)
    for _ in range(3):
        s.step()
    s.close()
    assert_clean(srv)
    destroyed = {c[2] for c in srv.calls if c[:2] == ("batch", "DestroyActor")}
    assert set(srv.spawned) <= destroyed  # one batch of DestroyActor commands for everything spawned
    s.close()  # idempotent


def test_tm_seed_comes_from_the_episode_seed(rig):
    seeds = []
    for ep_seed in (3, 3, 4):
        srv = D.FakeServer()
        open_session(srv, rig, seed=ep_seed).close()
        seeds.append(srv.tms[8000].seed)
    assert seeds[0] == seeds[1] != seeds[2]


def test_previous_synchronous_settings_are_restored(rig):
    srv = D.FakeServer()
    orig = srv.settings
    orig.synchronous_mode, orig.fixed_delta_seconds = True, 0.1
    srv.tms[8000] = D.FakeTrafficManager(srv, 8000)
    srv.tms[8000].sync = True
    s = open_session(srv, rig)  # generate_opendrive_world resets the settings; the originals must come back
    s.step()
    s.close()
    assert srv.settings.synchronous_mode and srv.settings.fixed_delta_seconds == pytest.approx(0.1)
    assert srv.tms[8000].sync  # left synchronous, as it was
    assert srv.live_spawned() == []


def test_same_map_is_not_regenerated(rig):
    srv = D.FakeServer()
    be = backend(srv)
    spec, src = scenario()
    for _ in range(2):
        be.open(spec, rig, seed=np.random.SeedSequence(1), source=src, n_frames=1).close()
    assert sum(1 for c in srv.calls if c[0] == "generate_opendrive_world") == 1


def test_static_info_reports_carla_boxes_and_applied_colours(rig):
    srv = D.FakeServer()
    s = open_session(srv, rig, "pedestrian_behind_van.yaml")
    info = s.static_info()
    s.close()
    assert [a["id"] for a in info["actors"]] == list(range(1, len(info["actors"]) + 1))
    assert info["actors"][0]["is_ego"] and info["map"] == "straight" and info["traffic_lights"] == []
    by_bp = {v[0]: 2 * np.array(v[2]) for v in D.VEHICLES} | {w[0]: 2 * np.array(w[2]) for w in D.WALKERS}
    prov = s.provenance()
    for a in info["actors"]:
        assert np.allclose(a["dims"], by_bp[prov["blueprints"][a["name"]]])  # what was rendered, not what was asked
    van = next(a for a in info["actors"] if a["name"] == "van")
    ped = next(a for a in info["actors"] if a["name"] == "pedestrian")
    assert prov["blueprints"]["van"] == "vehicle.fake.van" and np.all(np.isfinite(van["colour"]))
    assert np.all(np.isnan(ped["colour"]))  # walkers have no colour attribute


def test_behaviours_use_tm_target_velocity_and_walker_control(rig, tmp_path):
    srv = D.FakeServer()
    spec, src = scenario(text=TRIGGERS, tmp=tmp_path)
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=spec.n_frames)
    cid = {a.name: a.cid for a in s.actors}
    lead_speed = spec.actors[0].behaviour.speed_mps
    assert ("tm.set_desired_speed", cid["lead"], pytest.approx(lead_speed * 3.6)) in srv.calls
    assert ("tm.auto_lane_change", cid["ego"], False) in srv.calls
    assert ("tm.ignore_vehicles_percentage", cid["lead"], 100.0) in srv.calls  # obstacles: none
    assert ("tm.ignore_lights_percentage", cid["ego"], 0.0) in srv.calls
    events = []
    for _ in range(spec.n_frames):
        events += s.step().events
    s.close()
    assert {e[2] for e in events} == {"lead_close", "ped_go", "ped_stop", "other#0"}
    assert ("set_autopilot", cid["lead"], False, 8000) in srv.calls  # brake: the TM lets go
    tv = [i for i, c in enumerate(srv.calls) if c[:3] == ("batch", "ApplyTargetVelocity", cid["lead"])]
    assert len(tv) > 3
    walk = [c for c in srv.calls if c[:3] == ("batch", "ApplyWalkerControl", cid["ped"])]
    assert walk, "the pedestrian is driven by WalkerControl"
    assert_clean(srv)


def test_lane_change_uses_force_lane_change(rig, tmp_path):
    text = TRIGGERS.split("actors:")[0] + """actors:
  - id: lead
    kind: car
    place: {relative_to: ego, ahead_m: 30}
    speed_mps: 10
    events:
      - when: {time_s: 0.2}
        do: {type: lane_change, direction: left, speed_mps: 10}
"""
    srv = D.FakeServer()
    spec, src = scenario(text=text, tmp=tmp_path)
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=6)
    for _ in range(6):
        s.step()
    lead = next(a for a in s.actors if a.name == "lead")
    s.close()
    assert ("tm.force_lane_change", lead.cid, False) in srv.calls  # TM: False = to the left
    assert lead.plan.lane == "fwd_1"


@pytest.mark.parametrize("no_ids", [False, True])
def test_intersection_lights_routes_and_freeze(rig, tmp_path, no_ids):
    text = TRIGGERS.split("actors:")[0].replace("map: straight", "map: intersection").replace(
        "lane: fwd_2, s_m: 100", "lane: east_in_1, s_m: 100")
    srv = D.FakeServer(faults=D.Faults(no_opendrive_ids=no_ids))
    spec, src = scenario(text=text, tmp=tmp_path)
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=3)
    assert s.static_info()["traffic_lights"] == ["tl_east", "tl_north", "tl_west", "tl_south"]
    assert srv.frozen_all is True
    frames = [s.step() for _ in range(3)]
    s.close()
    assert frames[0].lights == {"tl_east": "red", "tl_north": "green", "tl_west": "red", "tl_south": "green"}
    states = {c[1]: c[2] for c in srv.calls if c[0] == "tl_set_state"}  # CARLA light id -> state set
    assert len(states) == 4 and sorted(states.values()) == ["Green", "Green", "Red", "Red"]
    # each simgen light drives the CARLA light standing at its own pole (matched by OpenDRIVE id, else position)
    from simgen.world.roads import get_map

    for tl in get_map("intersection").traffic_lights:
        a = s._tl_actor[tl.id]
        assert np.linalg.norm(F.xyz_from_carla(a.get_location())[:2] - tl.position[:2]) < 3.0
        assert states[a.id] == frames[0].lights[tl.id].capitalize()
    paths = [c for c in srv.calls if c[0] == "tm.set_path"]
    ego_path = next(p for p in paths if p[1] == s.actors[0].cid)
    west_out = np.array([[x, -y] for x, y, _ in ego_path[2]])
    assert np.all(west_out[:, 0] < -12.0)  # straight through the junction to the west arm
    assert srv.frozen_all is False
    assert_clean(srv)


def test_carla_town_placement_through_waypoints(rig):
    from simgen.world.opendrive import opendrive_xml

    srv = D.FakeServer(towns={"Town03": opendrive_xml("straight")})
    spec, src = scenario("lead_vehicle_brakes.yaml")
    import dataclasses

    ego = dataclasses.replace(spec.ego, place=dataclasses.replace(spec.ego.place, lane="1:-2", s_m=100.0))
    spec = dataclasses.replace(spec, map="Town03", ego=ego)
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=2)
    assert ("load_world", "Town03") in srv.calls
    f = s.step()
    s.close()
    # lane -2 of road 1 is the straight map's fwd_2 (y = -5.25); the lead is placed relative to the ego on it
    assert f.actors.pose[0, 1] == pytest.approx(-5.25, abs=1e-3) and f.actors.pose[1, 1] == pytest.approx(-5.25, abs=1e-3)
    assert f.actors.pose[1, 0] - f.actors.pose[0, 0] == pytest.approx(spec.actors[0].place.ahead_m, abs=0.5)
    assert len(f.actors.ids) == 2 + spec.traffic.vehicles
    assert_clean(srv)


# =============================================================================== frame matching through a session
def test_late_out_of_order_and_stale_sensor_data_still_give_exact_frames(rig):
    faults = D.Faults(late={("front:depth", 1): 0.05, ("lidar_top:lidar", 2): 0.1}, reverse_order=True,
                      stale={("front:rgb", 2), ("front:instance", 3)})
    srv = D.FakeServer(faults=faults)
    s = open_session(srv, rig, n_frames=5)
    for k in range(5):
        f = s.step()
        snap_frame = srv._snapshot.frame
        assert f.index == k and f.time_s == pytest.approx(k * 0.05)
        assert s.collector._done == snap_frame  # the frame handed out is the tick's frame
    assert s.collector.discarded_late >= 2
    s.close()
    assert_clean(srv)


@pytest.mark.parametrize("fault", ["drop", "wrong_frame"])
def test_missing_or_mismatched_data_is_an_error_not_a_mixed_frame(rig, fault):
    faults = D.Faults(**{fault: {("front:depth", 2)}})
    srv = D.FakeServer(faults=faults)
    s = open_session(srv, rig, n_frames=5, sensor_timeout_s=0.3)
    s.step()
    s.step()
    with pytest.raises(CB.SensorTimeout, match="front:depth"):
        s.step()
    s.close()
    assert_clean(srv)


# =============================================================================== clean-up on errors
def test_error_inside_open_cleans_up(rig):
    srv = D.FakeServer(faults=D.Faults(fail_spawn={"sensor.camera.depth"}))
    with pytest.raises(RuntimeError, match="Spawn failed because of collision"):
        open_session(srv, rig)
    assert len(srv.spawned) > 3  # actors and a sensor were spawned before the failure
    assert_clean(srv)


def test_bad_tick_rate_is_an_input_error_and_cleans_up(rig):
    srv = D.FakeServer()
    spec, src = scenario()
    import dataclasses

    with pytest.raises(InputError, match="tick_hz"):
        backend(srv).open(dataclasses.replace(spec, tick_hz=4.0), rig, seed=np.random.SeedSequence(0), source=src)
    assert_clean(srv)


def test_server_crash_mid_episode(rig):
    srv = D.FakeServer(faults=D.Faults(crash_at_tick=2))
    s = open_session(srv, rig)
    s.step()
    s.step()
    with pytest.raises(CarlaServerLost, match="lost at frame 2"):
        s.step()
    s.close()  # must not raise or hang on a dead server
    assert s.cleanup_errors


def _plan_and_run(tmp_path, rig, srv, name="lead_vehicle_brakes.yaml", frames=8, monkeypatch=None):
    from simgen.runner import plan_episodes, run_episode

    src = load_scenario_source(SCENARIOS / name)
    plan = plan_episodes(src, seed=2, episodes=1)[0]
    if monkeypatch is not None:
        monkeypatch.setattr(CB, "_load_carla", lambda: D.make_module(srv))
        from simgen.backends.base import get_backend

        be = get_backend("carla", host="127.0.0.1", port=2000, sensor_timeout_s=1.0)
    else:
        be = backend(srv)
    path = tmp_path / "episode_000000.h5"
    summary = run_episode(plan, rig, path, backend=be, source=src.path, n_frames=frames)
    return path, summary, plan


def test_keyboard_interrupt_mid_episode_cleans_up(rig, tmp_path):
    srv = D.FakeServer(faults=D.Faults(interrupt_at_tick=3))
    with pytest.raises(KeyboardInterrupt):
        _plan_and_run(tmp_path, rig, srv)
    assert_clean(srv)
    assert not list(tmp_path.glob("*.h5*"))  # no partial episode left behind


# =============================================================================== a whole episode through the runner
def test_episode_through_runner_is_complete_and_consistent(rig, tmp_path, monkeypatch):
    from simgen.io.episode import Episode

    srv = D.FakeServer()
    path, summary, plan = _plan_and_run(tmp_path, rig, srv, frames=10, monkeypatch=monkeypatch)
    assert_clean(srv)
    assert summary["frames"] == 10
    with Episode(path) as ep:
        assert ep.f.attrs["backend"] == "carla" and ep.n_frames == 10
        ids = ep.f["actors/id"][:]
        lead = int(np.flatnonzero(ep.f["actors/name"].asstr()[:] == "lead")[0])
        t = ep.f["frames/time_s"][:]
        assert np.allclose(np.diff(t), 1 / plan.spec.tick_hz)
        T_es = ep.f["sensors/front/T_ego_from_sensor"][:]
        seen_lead = 0
        for k in range(10):
            T_we = ep.f["frames/T_world_from_ego"][k]
            assert np.abs(ep.f["sensors/front/T_world_from_sensor"][k] - T_we @ T_es).max() < 1e-4
            cam = ep.camera("front", k)
            lab = ep.labels("front", k)
            for i in np.flatnonzero(lab["visible_pixels"] > 0):
                m, p = lab["bbox_mask"][i], lab["bbox_proj"][i]
                assert m[0] >= p[0] - 1.5 and m[1] >= p[1] - 1.5 and m[2] <= p[2] + 1.5 and m[3] <= p[3] + 1.5, (k, i, m, p)
                assert lab["visible_pixels"][i] <= lab["amodal_pixels"][i]
                assert set(np.unique(cam["instance"])) <= set(ids.tolist()) | {0}
            seen_lead += int(lab["visible_pixels"][lead] > 0)
            # LiDAR points labelled as the lead lie inside the lead's box
            ld = ep.lidar("lidar_top", k)
            mine = ld["instance"] == ids[lead]
            if mine.any():
                pw = ld["xyz"][mine] @ ld["T_world_from_sensor"][:3, :3].T + ld["T_world_from_sensor"][:3, 3]
                box = ep.boxes(k)
                c, yaw, size = box["center_world"][lead], box["yaw_world"][lead], box["size"][lead]
                local = (pw - c) @ rotation_matrix(0, 0, yaw)
                assert np.all(np.abs(local) <= size / 2 + 0.05)
            assert np.all(ld["time_s"] == t[k])
        assert seen_lead == 10
        assert ep.labels("lidar_top", 0)["n_points"][lead] > 0


def test_instance_ids_resolve_the_same_with_unreal_or_actor_ids(rig):
    imgs = {}
    for mode in ("unreal", "actor"):
        srv = D.FakeServer(faults=D.Faults(instance_ids=mode))
        s = open_session(srv, rig, "pedestrian_behind_van.yaml", n_frames=4)
        imgs[mode] = [s.step().cameras["front"].instance for _ in range(4)]
        s.close()
    for a, b in zip(imgs["unreal"], imgs["actor"]):
        assert np.array_equal(a, b)
    assert any(len(np.unique(a)) > 2 for a in imgs["unreal"])


def test_amodal_estimate_of_an_occluded_box(rig):
    """Two cars in a row in front of the camera: the far one is partly hidden.  Boxes fill their silhouettes in the
    double, so the estimate must recover the exact unoccluded pixel count (within edge pixels)."""
    from simgen.world.opendrive import opendrive_xml

    srv = D.FakeServer(towns={"Town03": opendrive_xml("straight")})
    cl = D.FakeClient(srv)
    world = cl.load_world("Town03")
    st = world.get_settings()
    st.synchronous_mode, st.fixed_delta_seconds = True, 0.05
    world.apply_settings(st)
    lib = world.get_blueprint_library()
    near = world.spawn_actor(lib.find("vehicle.fake.compact"), carla.Transform(carla.Location(10, 0.0, 0)))
    far = world.spawn_actor(lib.find("vehicle.fake.truck"), carla.Transform(carla.Location(25, 0.3, 0)))
    cams = {}
    for kind in ("depth", "semantic_segmentation", "instance_segmentation"):
        bp = lib.find(f"sensor.camera.{kind}")
        for k, v in (("image_size_x", "160"), ("image_size_y", "90"), ("role_name", f"x/{kind}")):
            bp.set_attribute(k, v)
        cam = world.spawn_actor(bp, carla.Transform(carla.Location(0, 0, 1.5)))
        cam.listen(lambda d, kind=kind: cams.__setitem__(kind, d))
    world.tick()
    H, W = 90, 160
    depth = CB.decode_depth(cams["depth"].raw_data, H, W)
    sem = CB.decode_semantic(cams["semantic_segmentation"].raw_data, H, W)
    _, raw = CB.decode_instance(cams["instance_segmentation"].raw_data, H, W)
    inst = np.where(raw == near.id + D.UNREAL_ID_OFFSET, 1, np.where(raw == far.id + D.UNREAL_ID_OFFSET, 2, 0)).astype(np.uint32)
    T_ws = F.matrix_from_carla(cams["depth"].transform)
    K = intrinsics_from_fov(W, H, 90)
    boxes, dims = [], []
    for a in (near, far):
        T = F.matrix_from_carla(a.get_transform()) @ F.T_actor_from_box_bottom(a.bounding_box)
        d = F.bbox_dims(a.bounding_box)
        boxes.append(T @ pose_matrix(0, 0, d[2] / 2, 0))
        dims.append(d)
    est = CB.estimate_amodal(K, T_ws, np.array(boxes), np.array(dims), np.array([1, 2]), ("car", "truck"), inst, depth, sem)
    # exact: the far box alone
    M = np.array(cams["depth"].transform.get_matrix())
    f = W / 2
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d_cam = np.stack([np.ones(W * H), (u.ravel() - W / 2) / f, -(v.ravel() - H / 2) / f], -1)
    only_far = [b for b in srv._boxes() if b[0].id == far.id]
    _, which, _ = srv._cast(M[:3, 3], d_cam @ M[:3, :3].T, only_far)
    exact = int((which == 0).sum())
    visible = int((inst == 2).sum())
    assert 0 < visible < exact - 50  # really occluded
    assert est[2] == pytest.approx(exact, rel=0.03), (visible, exact, est)
    assert est[1] == int((inst == 1).sum())  # unoccluded: exactly its visible pixels


# =============================================================================== optional dependency and server management
def test_missing_carla_package_is_a_one_line_input_error(monkeypatch, tmp_path, capsys):
    from simgen.backends.base import get_backend
    from simgen.cli import main

    monkeypatch.setitem(sys.modules, "carla", None)  # import carla -> ImportError
    with pytest.raises(InputError, match=r"pip install 'simgen\[carla\]'"):
        get_backend("carla", host="localhost", port=2000)
    code = main(["run", "lead_vehicle_brakes", "--backend", "carla", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'simgen[carla]'" in err


def test_retrying_only_retries_lost_servers():
    calls = []

    def flaky(i):
        calls.append(i)
        if i < 2:
            raise RuntimeError("time-out of 10000ms while waiting for the simulator")
        return "ok"

    restarts = []
    assert retrying(flaky, 3, on_failure=lambda i, e: restarts.append(i)) == "ok"
    assert calls == [0, 1, 2] and restarts == [0, 1]
    with pytest.raises(RuntimeError):
        retrying(lambda i: (_ for _ in ()).throw(RuntimeError("rpc timeout")), 2)
    n = []
    with pytest.raises(InputError):
        retrying(lambda i: n.append(i) or (_ for _ in ()).throw(InputError("bad")), 3)
    assert n == [0]
    assert is_server_failure(RuntimeError("rpc::rpc_error during call in function get_version"))
    assert not is_server_failure(RuntimeError("blueprint 'x' has no attribute"))
    assert not is_server_failure(KeyboardInterrupt())


def test_server_command_and_ports(tmp_path):
    cmd = server_command(tmp_path, 2010, quality="Low", gpu=1)
    assert cmd[0].endswith("CarlaUE4.sh")
    assert {"-RenderOffScreen", "-carla-rpc-port=2010", "-carla-streaming-port=2011", "-quality-level=Low", "-graphicsadapter=1"} <= set(cmd)
    assert port_plan(2) == {"rpc": 2020, "streaming": 2021, "tm": 8020}
    with pytest.raises(InputError):
        server_command(tmp_path, 2000, quality="Ultra")


def test_attached_server_that_does_not_answer():
    srv = CarlaServer(D.make_module(None), "127.0.0.1", 2999, health_timeout_s=0.1)
    with pytest.raises(CarlaServerLost, match="no CARLA server answers"):
        srv.ensure()


def test_managed_server_is_launched_and_relaunched_after_a_crash(tmp_path):
    script = tmp_path / "CarlaUE4.sh"
    script.write_text("#!/bin/sh\nexec sleep 3600\n")  # outlives the test however slow
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    fake = D.FakeServer()
    srv = CarlaServer(D.make_module(fake), "127.0.0.1", 2000, root=tmp_path, start_timeout_s=120)
    try:
        assert srv.ensure() == ("127.0.0.1", 2000) and srv.process is None  # a server answers: attach, launch nothing
        srv.start()
        pid = srv.process.pid
        os.kill(pid, 9)
        srv.process.wait()
        assert not srv.healthy()
        srv.ensure()
        assert srv.process is not None and srv.process.pid != pid and srv.process.poll() is None
    finally:
        srv.stop()
    assert srv.process is None


def test_open_is_retried_on_a_fresh_server(rig, monkeypatch):
    fake = D.FakeServer()
    fake.dead = True  # the first attempt meets a crashed server
    be = backend(fake, open_attempts=2)
    be.server.root = Path("/nonexistent")  # managed: a failure restarts it
    monkeypatch.setattr(be.server, "healthy", lambda: True)
    restarted = []

    def restart():
        restarted.append(1)
        fake.dead = False

    monkeypatch.setattr(be.server, "restart", restart)
    spec, src = scenario()
    s = be.open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=1)
    s.step()
    s.close()
    assert restarted == [1]
    assert_clean(fake)


def test_same_actors_as_the_builtin_backend(rig):
    """The CARLA session builds its actors from the builtin World on BuiltinSession's stream (first of seed.spawn(3)),
    so names, kinds, requested colours and start positions match the builtin backend's."""
    from simgen.sim.world import World

    srv = D.FakeServer()
    spec, src = scenario("pedestrian_behind_van.yaml")
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(5), source=src, n_frames=1)
    f = s.step()
    s.close()
    w = World(spec, rng=np.random.default_rng(np.random.SeedSequence(5).spawn(3)[0]), source=src)
    assert [a.name for a in w.actors] == list(f.actors.names)
    assert [a.kind.name for a in w.actors] == list(f.actors.kinds)
    for a, act, p in zip(w.actors, s.actors, f.actors.pose):
        assert np.allclose(act.plan.colour, a.colour)
        assert np.hypot(p[0] - a.x, p[1] - a.y) <= a.speed * 0.05 + 0.05  # one tick of motion


# =============================================================================== drive modes, replay, environment
@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_library_scenario_plays(rig, path):
    from simgen.runner import plan_episodes

    plan = plan_episodes(load_scenario_source(path, allow_plugins=True), seed=1, episodes=1)[0]  # shipped library
    srv = D.FakeServer()
    s = backend(srv).open(plan.spec, rig, seed=plan.sim_seed, source=str(path), n_frames=3)
    frames = [s.step() for _ in range(3)]
    s.close()
    assert [f.index for f in frames] == [0, 1, 2] and all(len(f.actors.ids) == len(s.actors) for f in frames)
    assert_clean(srv)


def test_auto_drive_hands_unsupported_behaviours_to_the_builtin_simulator(rig):
    spec, src = scenario("wrong_way_driver.yaml")
    srv = D.FakeServer()
    with pytest.raises(InputError, match="reverse"):
        backend(srv, drive="carla").open(spec, rig, seed=np.random.SeedSequence(0), source=src)
    assert srv.spawned == []  # refused before touching the server
    s = backend(srv).open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=2)
    assert s.drive == "simgen" and s.provenance()["drive"] == "simgen"
    s.close()
    assert not any(c[0].startswith("tm.") for c in srv.calls)  # the Traffic Manager is not involved
    with pytest.raises(InputError, match="drive"):
        backend(srv, drive="fast")


def test_simgen_drive_places_actors_where_the_builtin_simulator_says(rig):
    """drive='simgen': the builtin World steps and CARLA's actors are put at its poses (what is rendered is what the
    builtin backend simulates); events, lights and collisions are the World's."""
    from simgen.seeding import streams
    from simgen.sim.world import World

    spec, src = scenario("pedestrian_behind_van.yaml")
    seed = np.random.SeedSequence(4)
    srv = D.FakeServer()
    s = backend(srv, drive="simgen").open(spec, rig, seed=seed, source=src, n_frames=60)
    w = World(spec, rng=np.random.default_rng(streams(seed, 3)[0]), source=src)
    events = []
    for k in range(60):
        f = s.step()
        n = len(w.event_log)
        if k:
            w.step()
        st = w.states()
        assert f.time_s == pytest.approx(w.time_s)
        assert np.abs(f.actors.pose[:, :2] - st.pose[:, :2]).max() < 1e-4
        assert np.abs(f.actors.velocity - st.velocity).max() < 1e-9
        assert f.events == w.event_log[n:]
        events += f.events
    s.close()
    assert [e[2] for e in events] == ["pedestrian_runs"]
    assert_clean(srv)


def test_replay_of_an_episode_in_carla(rig, tmp_path, monkeypatch):
    """``simgen replay --backend carla``: the recorded states are re-rendered (teleported), not re-simulated."""
    from simgen.io.episode import Episode
    from simgen.runner import replay

    srv = D.FakeServer()
    path, _, _ = _plan_and_run(tmp_path, rig, srv, frames=6, monkeypatch=monkeypatch)
    srv2 = D.FakeServer()
    monkeypatch.setattr(CB, "_load_carla", lambda: D.make_module(srv2))
    replay(str(path), out=str(tmp_path / "re"), backend="carla", progress=False,
           backend_options={"host": "127.0.0.1", "port": 2000, "sensor_timeout_s": 1.0})
    with Episode(path) as a, Episode(tmp_path / "re" / "episodes" / path.name) as b:
        assert np.abs(a.f["actors/pose"][:] - b.f["actors/pose"][:]).max() < 1e-4
        assert np.array_equal(a.f["events/name"][:], b.f["events/name"][:])
        assert np.allclose(a.f["actors/dims"][:], b.f["actors/dims"][:])  # the same blueprints were chosen
    assert_clean(srv2)


def test_sensor_jitter_weather_ramps_and_applied_values(rig, tmp_path):
    from simgen.backends.builtin import jittered_mounts
    from simgen.seeding import streams

    text = TRIGGERS.split("actors:")[0] + """sensor_jitter: {position_m: 0.05, angle_deg: 1.0}
ramps:
  - {key: weather.fog_density, to: 60, start_s: 0.0, end_s: 0.25}
"""
    spec, src = scenario(text=text, tmp=tmp_path)
    seed = np.random.SeedSequence(9)
    srv = D.FakeServer()
    s = backend(srv).open(spec, rig, seed=seed, source=src, n_frames=6)
    frames = [s.step() for _ in range(6)]
    sensor = next(a for a in srv.actors.values() if a.type_id == "sensor.camera.rgb")
    rel = F.matrix_from_carla(sensor._tf)
    s.close()
    want = jittered_mounts(rig, spec.sensor_jitter, np.random.default_rng(streams(streams(seed, 3)[2], len(rig.sensors) + 1)[-1]))
    assert np.allclose(frames[0].T_ego_from_sensor["front"], want["front"])
    assert not np.allclose(want["front"], rig.sensors[0].mount.matrix())
    assert np.abs(rel - s.ego.T_actor_from_bottom @ want["front"]).max() < 1e-4  # spawned at the jittered mounting
    fog = [f.applied["weather.fog_density"] for f in frames]
    assert fog[0] == 0.0 and fog[-1] == pytest.approx(60.0) and fog == sorted(fog)
    assert sum(1 for c in srv.calls if c[0] == "set_weather") >= 5


def test_lens_distortion_is_refused(tmp_path):
    spec, src = scenario()
    rig = rig_from_dict({"name": "d", "sensors": [{"name": "front", "type": "camera", "attributes": {
        "image_size_x": 64, "image_size_y": 36, "fov": 90, "distortion": [-0.1, 0.0, 0.0, 0.0, 0.0]}}]}, file="<d>")
    srv = D.FakeServer()
    with pytest.raises(InputError, match="distortion"):
        backend(srv).open(spec, rig, seed=np.random.SeedSequence(0), source=src)
    assert srv.spawned == []


def test_physics_door_scripted_speed_and_hesitation(rig, tmp_path):
    text = TRIGGERS.split("actors:")[0] + """actors:
  - id: parked
    kind: car
    place: {relative_to: ego, ahead_m: 25, lateral_m: -3.0}
    behaviour: {type: parked}
    events:
      - when: {time_s: 0.1}
        do: {type: open_door, direction: left, duration_s: 0.5}
  - id: lead
    kind: car
    place: {relative_to: ego, ahead_m: 50}
    speed_mps: 10
    behaviour: {type: scripted, speed_profile: [[0, 10], [1, 4]]}
  - id: ped
    kind: pedestrian
    place: {relative_to: ego, ahead_m: 40, lateral_m: -8}
    speed_mps: 1.5
    behaviour: {type: walk, speed_mps: 2.0, heading_deg: 90, hesitate_at_m: 0.5, hesitate_s: 0.3}
"""
    spec, src = scenario(text=text, tmp=tmp_path)
    srv = D.FakeServer()
    s = backend(srv, drive="carla").open(spec, rig, seed=np.random.SeedSequence(0), source=src, n_frames=20)
    frames = [s.step() for _ in range(20)]
    cid = {a.name: a.cid for a in s.actors}
    s.close()
    parked = list(frames[0].actors.names).index("parked")
    assert ("open_door", cid["parked"], "FL") in srv.calls
    door = [f.actors.door[parked] for f in frames]
    assert door[0] == 0.0 and door[-1] == pytest.approx(math.radians(70)) and door == sorted(door)
    speeds = [c[2] for c in srv.calls if c[:2] == ("tm.set_desired_speed", cid["lead"])]
    assert speeds[0] == pytest.approx(36.0) and speeds == sorted(speeds, reverse=True)
    assert speeds[-1] == pytest.approx((10 - 6 * 0.95) * 3.6)  # profile at the end of the last tick (t = 0.95 s)
    walk = [c for c in srv.calls if c[:3] == ("batch", "ApplyWalkerControl", cid["ped"])]
    assert len(walk) == 20
    assert_clean(srv)
