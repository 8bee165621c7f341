"""Fast sensor-free simulation (issue 13 part 1): the shortcuts taken for speed agree with the general code."""
import math

import numpy as np

from simgen.cli import main
from simgen.sim.world import World, _wrap1
from simgen.spec.scenario import concretise, load_scenario_source
from simgen.geometry import wrap_angle
from simgen.world.roads import Polyline
from tests.conftest import write


def _wiggly(n):
    t = np.linspace(0, 3 * np.pi, n)
    return Polyline(np.stack([20 * t, 8 * np.sin(t)], 1))


def test_one_point_kernels_agree_with_the_vectorised_numpy_path():
    """Scalar pose_at/project (compiled one-point kernels) against the numpy path of a > 64-point batch."""
    pl = _wiggly(40)
    rng = np.random.default_rng(3)
    s = rng.uniform(-15, pl.length + 15, 200)
    lat = rng.normal(0, 4, 200)
    xb, yb, yawb = pl.pose_at(s, lat)  # 200 points: the numpy code, not the kernels
    P = np.stack([rng.uniform(-20, 210, 200), rng.uniform(-25, 25, 200)], 1)
    sb, db = pl.project(P)
    for k in range(200):
        x, y, yaw = pl.pose_at(float(s[k]), float(lat[k]))
        assert abs(x - xb[k]) < 1e-9 and abs(y - yb[k]) < 1e-9 and abs(wrap_angle(yaw - yawb[k])) < 1e-9
        s1, d1 = pl.project(P[k])
        assert abs(s1 - sb[k]) < 1e-9 and abs(d1 - db[k]) < 1e-9


def test_scalar_wrap_matches_wrap_angle():
    for a in np.linspace(-20, 20, 401):
        assert abs(_wrap1(a) - float(wrap_angle(a))) < 1e-12
        assert -math.pi <= _wrap1(a) < math.pi


def test_footprints_are_the_rotated_boxes_and_static_arrays_follow_new_dims(tmp_path):
    text = """
name: t
map: straight
duration_s: 2
scenery: {density: 0}
ego: {place: {lane: fwd_2, s_m: 100}, speed_mps: 15, behaviour: {type: lane_follow}}
actors:
  - id: lead
    kind: car
    place: {relative_to: ego, ahead_m: 30}
    behaviour: {type: lane_follow}
"""
    src = load_scenario_source(write(tmp_path, "t.yaml", text))
    spec, _ = concretise(src, rng=np.random.default_rng(0))
    w = World(spec, rng=np.random.default_rng(0), source=str(src.path))
    w.actors[1].yaw = 0.7
    fp = w._footprints()
    for a, corners in zip(w.actors, fp):
        # independent view: each corner is dims/2 from the centre along the actor's own axes
        fwd = np.array([math.cos(a.yaw), math.sin(a.yaw)])
        left = np.array([-fwd[1], fwd[0]])
        rel = corners - [a.x, a.y]
        assert np.allclose(np.sort(np.abs(rel @ fwd)), [a.dims[0] / 2] * 4)
        assert np.allclose(np.sort(np.abs(rel @ left)), [a.dims[1] / 2] * 4)
    assert np.isclose(w._static_arrays()["length"][1], w.actors[1].dims[0])
    w.actors[1].dims = np.array([9.0, 3.0, 2.0])  # a new dims array (as the carla backend assigns) is seen
    assert np.isclose(w._static_arrays()["length"][1], 9.0)
    assert np.isclose(w._static_arrays()["half_w"][1], 1.5)


def test_sim_bench_bad_repeats_is_a_one_line_error(capsys):
    assert main(["sim-bench", "--repeats", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repeats" in err[0]


def test_project_heading_is_project_then_pose_at():
    pl = _wiggly(30)
    rng = np.random.default_rng(5)
    for n in (1, 35, 100):  # compiled kernel and numpy path
        P = np.stack([rng.uniform(-20, 210, n), rng.uniform(-25, 25, n)], 1)
        s, d, yaw = pl.project_heading(P)
        s2, d2 = pl.project(P)
        assert np.allclose(s, s2, atol=1e-9) and np.allclose(d, d2, atol=1e-9)
        assert np.allclose(wrap_angle(yaw - pl.pose_at(s2)[2]), 0.0, atol=1e-9)


def test_cached_ground_heights_follow_moved_actors(tmp_path):
    """Heights are recomputed only for actors that moved: a moved actor gets the ground under its new place."""
    text = """
name: t
map: straight
duration_s: 2
scenery: {density: 0}
ego: {place: {lane: fwd_2, s_m: 100}, speed_mps: 15, behaviour: {type: lane_follow}}
actors:
  - id: parked
    kind: car
    place: {relative_to: ego, ahead_m: 30}
    behaviour: {type: parked}
"""
    src = load_scenario_source(write(tmp_path, "t.yaml", text))
    spec, _ = concretise(src, rng=np.random.default_rng(0))
    w = World(spec, rng=np.random.default_rng(0), source=str(src.path))
    w.step()
    for y in np.linspace(-40, 40, 17):  # across road, sidewalks and terrain
        w.actors[1].y = float(y)
        w._update_z()
        want = w.map.ground_height(np.array([[a.x, a.y] for a in w.actors]))
        assert np.allclose([a.z for a in w.actors], want), y
    assert len(set(np.round(w.map.ground_height(np.stack([np.full(17, w.actors[1].x),
                                                           np.linspace(-40, 40, 17)], 1)), 6))) > 1
