"""Fast sensor-free simulation (issue 13 part 1): the shortcuts taken for speed agree with the general code."""
import math
from pathlib import Path

import numpy as np
import pytest

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
    old_dims = w.states().dims.copy()  # states() keeps the dims with the static arrays (issue 13, third round)
    assert np.array_equal(old_dims, np.array([a.dims for a in w.actors]))
    w.actors[1].dims = np.array([9.0, 3.0, 2.0])  # a new dims array (as the carla backend assigns) is seen
    assert np.isclose(w._static_arrays()["length"][1], 9.0)
    assert np.isclose(w._static_arrays()["half_w"][1], 1.5)
    assert np.array_equal(w.states().dims[1], [9.0, 3.0, 2.0]) and np.array_equal(w.states().dims[0], old_dims[0])


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
    """A moved actor gets the ground under its new place (builtin maps: one compiled query for all actors; .xodr
    maps: only the actors that moved are re-queried)."""
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


# ---------------------------------------------------------------------------------------------------------------
# The array step (issue 13 part 1, second round) against the per-actor Python step it replaces
# ---------------------------------------------------------------------------------------------------------------
_ROOT = Path(__file__).resolve().parents[2]
CORPUS = next((p.resolve() for p in (_ROOT / ".." / "shared" / "corpus", _ROOT / ".." / ".." / "shared" / "corpus")
               if (p / "esmini").is_dir()), _ROOT / ".." / "shared" / "corpus") / "esmini" / "resources"

MIXED = """
name: mixed
map: intersection
duration_s: 9
traffic_light_cycle_s: [3, 1.5, 1]
scenery: {density: 0}
ego:
  place: {lane: south_in_1, s_m: 70}
  speed_mps: 12
  behaviour: {type: lane_follow, speed_mps: 12, aeb: true, obstacles: none}
actors:
  - id: lead
    kind: car
    place: {relative_to: ego, ahead_m: 22}
    speed_mps: 9
    behaviour: {type: scripted, speed_profile: [[0, 9], [1.5, 9], [2.5, 0], [9, 0]]}
  - id: liner
    kind: van
    place: {lane: south_in_2, s_m: 90}
    speed_mps: 9
    behaviour: {type: stop_at_line, speed_mps: 9}
  - id: crosser
    kind: car
    place: {lane: west_in_1, s_m: 100}
    speed_mps: 10
    behaviour: {type: lane_follow, speed_mps: 10, turns: [left], obstacles: vehicles}
    events:
      - when: {time_s: 2}
        do: {type: brake, decel_mps2: 3}
traffic: {vehicles: 10, pedestrians: 5, radius_m: 120}
"""

FAB_TRAFFIC = """
name: fab
map: {map}
duration_s: 12
ego:
  place: {{road: 2, lane_id: -1, s_m: 260}}
  speed_mps: 8
  behaviour: {{type: lane_follow, speed_mps: 8, turns: [left]}}
traffic: {{vehicles: 10, pedestrians: 4, radius_m: 150}}
"""


def _run(world_fn, array_step: bool, n: int) -> dict:
    w = world_fn()
    w.array_step = array_step
    rec = {"traj": [], "cols": [], "latched": False, "reserved": False, "walked": []}
    for k in range(n):
        rec["cols"].append(sorted(w.step()) if k else [])
        rec["traj"].append(np.array([[a.x, a.y, a.yaw, a.speed, a.accel, a.s, a.lateral, a.steer, a.walked_m]
                                     for a in w.actors]))
        rec["latched"] |= any(a.aeb_latched for a in w.actors)
        rec["reserved"] |= bool(w._reserved)
    rec["events"] = [(round(t, 9), a, e) for t, a, e in w.event_log]
    rec["impacts"] = [(i["actor_a"], i["actor_b"], i["time_s"]) for i in w.impacts]
    rec["types"] = {a.behaviour.type for a in w.actors}
    return rec


def _library(name: str, overrides=(), seed: int = 0):
    from simgen.cli import resolve_scenario
    from simgen.runner import plan_episodes
    from simgen.seeding import streams

    src = load_scenario_source(resolve_scenario(name) if "/" not in name else name, list(overrides))
    plan = plan_episodes(src, seed=seed, episodes=1)[0]
    return plan.spec.n_frames, lambda: World(plan.spec, rng=np.random.default_rng(streams(plan.sim_seed, 3)[0]),
                                             source=src.path)


def _text(tmp_path, text: str, seed: int = 0):
    src = load_scenario_source(write(tmp_path, "s.yaml", text))
    spec, _ = concretise(src, rng=np.random.default_rng(seed))
    return spec.n_frames, lambda: World(spec, rng=np.random.default_rng(seed), source=str(src.path))


CASES = {
    "dense_traffic": lambda tmp: _library("dense_traffic"),  # leaders among 35 actors, plain walkers
    "lane_change_into_occupied": lambda tmp: _library("lane_change_into_occupied"),  # lane change, plain walkers
    "euro_ncap_ccftap": lambda tmp: _library("euro_ncap_ccftap"),  # synchronize: per-actor code interleaved
    "euro_ncap_ccrb_aeb": lambda tmp: _library("euro_ncap_ccrb", ["parameters.ego_aeb=true"]),  # AEB latch
    "braking_cascade": lambda tmp: _library("braking_cascade"),  # brake events, walkers with distances
    "mixed": lambda tmp: _text(tmp, MIXED),  # scripted, stop_at_line, lights, turns, AEB, obstacles: vehicles
    "fabriksgatan": lambda tmp: _text(tmp, FAB_TRAFFIC.format(map=CORPUS / "xodr" / "fabriksgatan.xodr")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_array_step_gives_the_per_actor_steps_results(tmp_path, case):
    """issue 13 part 1 (second round): stepping lane followers and plain walkers over arrays (compiled leader
    search with its bounding-box pruning, IDM, stop lines, AEB, pure pursuit, bicycle; walkers) gives the
    trajectories, collisions, impacts and events of the per-actor Python step (World.array_step = False:
    project_heading over all actors, idm_leader, _bicycle, _walk per actor)."""
    if case == "fabriksgatan" and not (CORPUS / "xodr" / "fabriksgatan.xodr").is_file():
        pytest.skip("esmini corpus (../shared/corpus) not here")
    n, world_fn = CASES[case](tmp_path)
    ref = _run(world_fn, False, n)
    got = _run(world_fn, True, n)
    assert len(got["traj"]) == len(ref["traj"]) == n
    for k, (g, r) in enumerate(zip(got["traj"], ref["traj"])):
        assert g.shape == r.shape and np.allclose(g, r, rtol=0, atol=1e-9), (case, k, np.abs(g - r).max())
    assert got["cols"] == ref["cols"] and got["events"] == ref["events"] and got["impacts"] == ref["impacts"]
    assert got["latched"] == ref["latched"] and got["reserved"] == ref["reserved"]
    moved = np.abs(ref["traj"][-1][:, :2] - ref["traj"][0][:, :2]).max()
    assert moved > 5.0  # the episode does move
    if case == "euro_ncap_ccrb_aeb":
        assert ref["latched"], "the AEB must engage in this case"
    if case == "fabriksgatan":
        assert ref["reserved"], "a vehicle must reserve an unsignalised junction in this case"
    if case == "mixed":
        speeds = np.array([t[:4, 3] for t in ref["traj"]])
        assert speeds[:, 2].min() < 0.05, "the stop_at_line van must stop at its line"
        assert ref["latched"], "the ego's AEB must engage behind the scripted stop"


def test_compiled_overlap_tests_agree_with_numpy():
    """overlapping_pairs and first_contact (compiled loops) against their numpy forms on random boxes."""
    from simgen.sim.world import _rects, first_contact, first_contact_numpy, overlapping_pairs, overlapping_pairs_numpy

    rng = np.random.default_rng(11)
    n = 60
    xy = rng.uniform(0, 40, (n, 2))
    fp = _rects(xy, rng.uniform(-np.pi, np.pi, n), rng.uniform([0.4, 0.4], [6.0, 2.5], (n, 2)))
    for margin in (0.0, 0.3):
        got = overlapping_pairs(fp, margin)
        want = overlapping_pairs_numpy(fp, margin)
        assert len(want) > 5 and np.array_equal(got, want)
    P = 400
    a0 = np.c_[rng.uniform(-10, 10, (P, 2)), rng.uniform(-3, 3, P)]
    b0 = np.c_[rng.uniform(-10, 10, (P, 2)), rng.uniform(-3, 3, P)]
    a1 = a0 + np.c_[rng.normal(0, 3, (P, 2)), rng.normal(0, 0.3, P)]
    b1 = b0 + np.c_[rng.normal(0, 3, (P, 2)), rng.normal(0, 0.3, P)]
    da, db = rng.uniform(0.3, 5, (P, 2)), rng.uniform(0.3, 5, (P, 2))
    got, want = first_contact(a0, a1, da, b0, b1, db), first_contact_numpy(a0, a1, da, b0, b1, db)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and 20 < np.count_nonzero(~np.isnan(want)) < P
    assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-9)


def test_compiled_ground_classes_agree_with_the_numpy_path():
    """surface_at for up to 64 points (compiled strip loop) against the numpy path of a larger batch."""
    from simgen.world.roads import get_map

    for name in ("straight", "intersection", "curve"):
        m = get_map(name)
        lo, hi = m.bounds()
        P = np.random.default_rng(2).uniform(lo, hi, (640, 2))
        want = m.surface_at(P)  # > 64 points: numpy
        got = np.concatenate([m.surface_at(P[k:k + 40]) for k in range(0, 640, 40)])
        assert np.array_equal(got, want) and len(set(want.tolist())) >= 2, name


def test_routes_are_shared_and_unchanged():
    """RoadMap.route caches its Polylines: the same object again, with the geometry of a fresh concatenation."""
    from simgen.world.roads import get_map

    m = get_map("intersection")
    r1 = m.route("south_in_1", ["left"], min_length_m=500.0)
    assert m.route("south_in_1", ("left",), min_length_m=500.0) is r1
    fresh = Polyline.concat([ln.centre for ln in m.lane_sequence("south_in_1", ["left"])])
    assert np.allclose(r1.points[:len(fresh.points)], fresh.points) and r1.length >= 500.0
    assert m.route("south_in_1", ["straight"], min_length_m=500.0) is not r1


def test_compiled_point_in_polygon_agrees_with_numpy():
    """The junction-occupancy test (compiled even-odd loop) against roads._in_polygon on a star-shaped outline."""
    from simgen.sim import kernels
    from simgen.world.roads import _in_polygon

    ang = np.linspace(0, 2 * np.pi, 23, endpoint=False)
    r = np.where(np.arange(23) % 2 == 0, 20.0, 8.0)
    poly = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
    P = np.random.default_rng(4).uniform(-25, 25, (2000, 2))
    mask = np.ones(len(P), np.bool_)
    mask[::7] = False
    got = np.empty(len(P), np.bool_)
    kernels.in_polygon(P, poly, mask, got)
    want = _in_polygon(P, poly) & mask
    assert np.array_equal(got, want) and 200 < want.sum() < 1800


def _ground_rank_per_group(m, P):
    """The ground query as it was before issue 13's third round: one compiled call per strip group (the polyline's
    strips), then every area polygon in numpy (roads._in_polygon)."""
    from simgen.world import polyline_kernels
    from simgen.world.roads import _RANK, _in_box, _in_polygon

    rank = np.zeros(len(P), np.int8)
    for poly, box, _, table in m._strip_groups():
        polyline_kernels.rank_strips_packed(np.ascontiguousarray(P), box, poly._V, poly._S, poly._M, table, rank)
    for polygon, sem in m._areas:
        near = np.flatnonzero(_in_box(P, polygon.min(0), polygon.max(0)))
        idx = near[_in_polygon(P[near], polygon)]
        rank[idx] = np.maximum(rank[idx], _RANK[sem])
    return rank


def test_one_call_ground_query_agrees_with_the_per_group_query():
    """issue 13 (third round): RoadMap.surface_at / ground_height for a few points go through ONE compiled call over
    all strip groups and areas (polyline_kernels.surface_rank_all).  Against the per-group query it replaced, on
    the builtin maps plus one with extra strips on polylines of different lengths (so a wrong vertex/segment offset
    of a group shows), with points drawn near every strip edge and area vertex as well as uniformly."""
    import dataclasses

    from simgen.classes import ROADS, SIDEWALKS
    from simgen.world.roads import _RANK_CLASS, _Strip, get_map

    inter = get_map("intersection")
    wig = _wiggly(57)
    extra = dataclasses.replace(inter, _strips=list(inter._strips) + [
        _Strip(wig, 5.0, 60.0, -2.0, 3.0, SIDEWALKS), _Strip(wig, 20.0, 45.0, -1.0, 1.0, ROADS),
        _Strip(Polyline(np.array([[-30.0, -30.0], [-10.0, -25.0], [0.0, -40.0]])), 0.0, 30.0, -4.0, 0.5, ROADS)])
    rng = np.random.default_rng(9)
    for name, m in (("straight", get_map("straight")), ("curve", get_map("curve")), ("intersection", inter),
                    ("extra", extra)):
        lo, hi = m.bounds()
        pts = [rng.uniform(lo, hi, (800, 2))]
        for st in m._strips:  # near the strips' four edges
            s = rng.uniform(st.s0 - 2, st.s1 + 2, 200)
            lat = np.where(rng.random(200) < 0.5, st.lat0, st.lat1) + rng.normal(0, 0.05, 200)
            x, y, _ = st.poly.pose_at(s, lat)
            pts.append(np.stack([x, y], 1))
        for polygon, _ in m._areas:  # near the areas' vertices
            pts.append(np.repeat(polygon, 4, 0) + rng.normal(0, 0.3, (4 * len(polygon), 2)))
        P = np.concatenate(pts)
        want = _ground_rank_per_group(m, P)
        got = np.concatenate([m._rank_small(P[k:k + 50]) for k in range(0, len(P), 50)])
        assert np.array_equal(got, want), (name, np.flatnonzero(got != want)[:5])
        assert len(set(want.tolist())) == 3, name  # all three surfaces are hit
        sem = np.concatenate([m.surface_at(P[k:k + 50]) for k in range(0, len(P), 50)])
        assert np.array_equal(sem, _RANK_CLASS[want]), name
        z = np.concatenate([m.ground_height(P[k:k + 50]) for k in range(0, len(P), 50)])
        assert np.array_equal(z, m.ground_height(P)), name  # few points (compiled) == many points (numpy)
        if m._areas:
            inside = np.zeros(len(P), bool)
            from simgen.world.roads import _in_polygon
            for polygon, _ in m._areas:
                inside |= _in_polygon(P, polygon)
            assert inside.sum() > 20, name  # the areas are really exercised


def test_actor_attributes_are_views_of_the_worlds_state_array(tmp_path):
    """issue 13 (third round): the moving state of the actors lives in World._S (one row per actor, columns
    STATE_COLUMNS) and Actor attributes read and write that row.  Writes through either side are seen by the other
    (and by states()), a copied actor does not write into the original's row, and an actor added to the list is
    taken into the array at the next step."""
    import copy

    from simgen.classes import ACTOR_KINDS
    from simgen.sim.world import STATE_COLUMNS, Actor
    from simgen.spec.scenario import Behaviour

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
    w.step()
    lead = w.actors[1]
    cx, cs = STATE_COLUMNS.index("x"), STATE_COLUMNS.index("speed")
    assert w._S.shape == (2, len(STATE_COLUMNS))
    assert np.array_equal(w._S[:, cx], [a.x for a in w.actors]) and w._S[1, cs] == lead.speed > 0
    lead.x = 123.5  # attribute -> array -> states()
    assert w._S[1, cx] == 123.5 and w.states().pose[1, 0] == 123.5
    w._S[1, cs] = 4.25  # array -> attribute (a Python float)
    assert lead.speed == 4.25 and type(lead.speed) is float
    twin = copy.copy(lead)
    twin.x = -7.0
    assert lead.x == 123.5 and twin.x == -7.0
    x0 = w.actors[0].x
    w.step()  # the ego moved: through the array, seen on the object
    assert w.actors[0].x > x0 and w._S[0, cx] == w.actors[0].x
    extra = Actor(3, "extra", ACTOR_KINDS["pedestrian"], np.array([0.5, 0.5, 1.7]), np.zeros(3), 150.0, 20.0, 0.0,
                  0.0, Behaviour(type="stand"))
    w.actors.append(extra)
    w.step()
    assert w._S.shape[0] == 3 and w._S[2, cx] == 150.0 and w.states().pose[2, 0] == 150.0
    extra.y = 21.0
    assert w._S[2, STATE_COLUMNS.index("y")] == 21.0  # the appended actor's row is now a view of the array
    # states() (one compiled loop over the array) against the attributes, read independently
    st = w.states()
    want_pose = [[a.x, a.y, a.z, a.yaw] for a in w.actors]
    want_vel = [[a.speed * math.cos(a.yaw), a.speed * math.sin(a.yaw), a.vz] for a in w.actors]
    assert np.array_equal(st.pose, want_pose) and np.array_equal(st.velocity, want_vel)
    assert np.array_equal(st.accel, [a.accel for a in w.actors]) and np.array_equal(st.door, [a.door for a in w.actors])
    assert np.array_equal(st.dims, [a.dims for a in w.actors]) and list(st.ids) == [1, 2, 3]
    assert abs(st.velocity[0, 0]) > 1.0  # the ego drives: the velocity is not trivially zero
    # the ground step (compiled, builtin maps): onto the road, z and vz follow the ground under the new place
    z0 = extra.z
    extra.y = -1.75  # from the terrain onto the road (z 0.15 -> 0)
    w._update_z(w.dt)
    z1 = float(w.map.ground_height(np.array([[extra.x, extra.y]]))[0])
    assert z1 != z0 and extra.z == z1 and extra.vz == (z1 - z0) / w.dt and w.actors[0].vz == 0.0
    # the World notices a replaced actor (ActorList counts its changes) and a plain list put in place of its list
    other = copy.copy(extra)
    other.x = 160.0
    w.actors[2] = other
    assert w.states().pose[2, 0] == 160.0 and w._S[2, cx] == 160.0
    other.x = 161.0
    assert w._S[2, cx] == 161.0 and extra.x == 150.0
    w.actors = list(w.actors[:2])
    assert w.states().pose.shape == (2, 4) and w._S.shape[0] == 2


def test_spawn_probe_footprints_are_the_batch_footprints(tmp_path):
    """issue 13 (third round): the traffic spawner's probe footprints (kept footprints of the placed actors plus the
    probe's box in scalar arithmetic, _rect1) equal _footprints(actors + [probe]) exactly, so the spawner places
    the same traffic as the batch form did."""
    from simgen.classes import ACTOR_KINDS
    from simgen.sim.world import Actor, _rect1, _rects
    from simgen.spec.scenario import Behaviour

    rng = np.random.default_rng(5)
    xy, yaw, lw = rng.uniform(-500, 500, (400, 2)), rng.uniform(-7, 7, 400), rng.uniform(0.2, 20, (400, 2))
    batch = _rects(xy, yaw, lw)
    one = np.concatenate([_rect1(*xy[k], yaw[k], *lw[k]) for k in range(400)])
    assert np.array_equal(one, batch)
    n, make = _library("dense_traffic")
    w = make()
    assert len(w.actors) > 20
    for k in range(30):
        x, y, yw = rng.uniform(-100, 100), rng.uniform(-20, 20), rng.uniform(-3, 3)
        dims = rng.uniform([3, 1.5, 1.2], [12, 2.6, 3])
        probe = Actor(0, "", ACTOR_KINDS["car"], dims, np.zeros(3), x, y, yw, 0.0, Behaviour())
        want = w._footprints(list(w.actors) + [probe])
        assert np.array_equal(w._probe_footprints(x, y, yw, dims), want), k
        if k == 10:  # an actor appended: the kept footprints grow with it
            w.actors.append(probe)
