"""Test protocols (issue 11): synchronised arrival, end conditions, grids, impact metrics from swept footprints,
reversing with the heading kept, animals, and the Euro NCAP / ScenarioRunner library entries.

Every expected value is computed by hand here (closed-form kinematics, map geometry read off the map's lane
centres, poses recorded in the episode) - never taken from simgen's own impact records."""
from __future__ import annotations

import csv
import json
import math

import h5py
import numpy as np
import pytest
import yaml

from simgen.errors import InputError
from simgen.sim.world import World, predict_end
from simgen.spec.scenario import concretise, load_scenario_source
from tests.conftest import SCENARIOS

DT = 0.05  # the library's 20 Hz tick


def world_of(path, overrides=(), grid_index=0, seed=0):
    src = load_scenario_source(path, list(overrides))
    spec, values = concretise(src, rng=np.random.default_rng(seed), grid_index=grid_index)
    return World(spec, rng=np.random.default_rng([seed, 1]), source=str(path)), spec, values


def write_scenario(tmp_path, body: dict, name="case"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "map": "straight", "tick_hz": 20, **body}, sort_keys=False))
    return p


def tiny_rig(tmp_path):
    p = tmp_path / "tiny_rig.yaml"
    p.write_text("name: tiny\nsensors:\n  - name: front\n    type: camera\n    mount: {x: 1.0, z: 1.6}\n"
                 "    attributes: {image_size_x: 32, image_size_y: 16, fov: 90}\n")
    return p


def ego_frame(pose_ego, xy):
    """(forward, left) of world point xy in the ego's frame."""
    c, s = math.cos(pose_ego[3]), math.sin(pose_ego[3])
    d = np.asarray(xy, float) - pose_ego[:2]
    return c * d[0] + s * d[1], -s * d[0] + c * d[1]


# ------------------------------------------------------------------------------------------ impact metrics
def test_ccrb_contact_time_and_point_match_closed_form():
    """Issue 11: CCRb at 50 km/h, 12 m headway, GVT braking at 6 m/s^2 from t = 1 s, ego not braking.  The gap
    closes as a t^2 / 2 after the brake onset (the GVT is still moving when they touch), so contact is at
    1 + sqrt(2 * 12 / 6) = 3.0 s; the closing speed then is a * 2 s = 12 m/s; with equal masses each party's
    delta-v is half of it; the full-overlap impact point is the middle of the ego's front."""
    w, spec, vals = world_of(SCENARIOS / "euro_ncap_ccrb.yaml", ["parameters.headway_m=12", "parameters.gvt_decel_mps2=6",
                                                                 "parameters.overlap_pct=100"])
    v, g, a, tb = 50 / 3.6, 12.0, 6.0, 1.0
    assert g < v * v / (2 * a)  # still moving at contact, so the closed form below applies
    t_hand = tb + math.sqrt(2 * g / a)
    frames = []
    for _ in range(int(4.0 / DT)):
        col = w.step()
        frames.append((w.time_s, col, [(x.x, x.y, x.yaw, x.speed) for x in w.actors[:2]]))
    hit = [f for f in frames if f[1]]
    assert hit, "no collision"
    t_first_tick = hit[0][0]
    assert t_first_tick - DT - 1e-9 <= t_hand <= t_first_tick + 1e-9  # the contact lies within the reporting tick
    imp = w.impacts[0]
    assert abs(imp["time_s"] - t_hand) <= DT and abs(imp["time_s"] - t_hand) < 1e-3  # sub-tick, not tick-rounded
    assert imp["ego_point_pct"] == pytest.approx(50.0, abs=5.0)
    assert imp["relative_speed_mps"] == pytest.approx(a * (t_hand - tb), abs=0.05)
    assert imp["speed_a_mps"] == pytest.approx(v, abs=0.01)
    assert imp["delta_v_a_mps"] == pytest.approx(imp["relative_speed_mps"] / 2, rel=1e-6)
    # the recorded contact state: bumper to bumper, not a tick's worth (0.6 m) of overlap (issue 11)
    (ex, _, _, _), (gx, _, _, _) = hit[0][2]
    bumper_gap = (gx - spec.actors[0].dims.length_m / 2) - (ex + spec.ego.dims.length_m / 2)
    assert -0.01 < bumper_gap <= 1e-6


@pytest.mark.parametrize("overlap,expect_pct", [(50, 100 * (0.925 - 0.475) / 1.85), (-50, 100 * (0.925 + 0.475) / 1.85)])
def test_ccrb_offset_impact_point_is_the_middle_of_the_overlap(overlap, expect_pct):
    """50 % overlap offsets the GVT (1.8 m wide) by half the ego's 1.85 m width (to the right for +50); the overlapped
    part of the ego's front runs from that edge to 0.025 m short of its centre line; the impact point is its middle
    (0.475 m from the centre line)."""
    w, _, _ = world_of(SCENARIOS / "euro_ncap_ccrb.yaml", ["parameters.headway_m=12", "parameters.gvt_decel_mps2=6",
                                                           f"parameters.overlap_pct={overlap}"])
    predict_end(w, 200)
    assert w.impacts[0]["ego_side"] == "front"
    assert w.impacts[0]["ego_point_pct"] == pytest.approx(expect_pct, abs=0.5)


def test_cpnco_40kmh_child_is_hit_at_half_the_ego_width():
    """Issue 11: CPNCO at 40 km/h: the child (synchronised, arrive: contact) is hit at 50 % +- 5 % of the ego's
    width - checked on the recorded contact state (the child's position in the ego's frame), not on simgen's
    impact record alone."""
    w, spec, _ = world_of(SCENARIOS / "euro_ncap_cpnco.yaml", ["parameters.vut_speed_kmh=40"])
    child = next(a for a in w.actors if a.name == "child")
    W = spec.ego.dims.width_m
    for _ in range(int(5.0 / DT)):
        if w.step():
            break
    assert child.crashed
    e = w.actors[0]
    fwd, left = ego_frame(np.array([e.x, e.y, 0.0, e.yaw]), (child.x, child.y))
    pct_hand = 100 * (left + W / 2) / W
    assert pct_hand == pytest.approx(50.0, abs=5.0)
    assert fwd == pytest.approx(spec.ego.dims.length_m / 2 + child.dims[1] / 2, abs=0.02)  # touching the front
    assert w.impacts[0]["ego_point_pct"] == pytest.approx(pct_hand, abs=1.0)
    assert w.impacts[0]["time_s"] == pytest.approx(4.0, abs=DT)  # ttc0_s: the start is 4 s before impact


def test_first_contact_is_found_between_ticks_even_when_the_end_poses_miss():
    """A 0.3 m ball crossing a car's path at 30 m/s passes through it within one tick; the swept test finds the
    contact at the hand-computed fraction."""
    from simgen.sim.world import first_contact

    car = np.array([[0.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 0.0]]), np.array([[4.0, 1.8]])
    ball = np.array([[0.0, -1.5, 0.0]]), np.array([[0.0, 1.5, 0.0]]), np.array([[0.3, 0.3]])
    f = first_contact(*car, *ball)
    # the ball's leading face (y + 0.15) meets the car's right side (y = -0.9): -1.5 + 3 f + 0.15 = -0.9
    assert f[0] == pytest.approx((1.5 - 0.15 - 0.9) / 3.0, abs=1e-6)
    miss = first_contact(*car, np.array([[0.0, 3.0, 0.0]]), np.array([[1.0, 3.0, 0.0]]), np.array([[0.3, 0.3]]))
    assert np.isnan(miss[0])


# ------------------------------------------------------------------------------------------- synchronisation
def test_synchronised_arrival_within_a_tick_of_the_reference(tmp_path):
    """A car on west_in_1 synchronises with the ego: it must reach the crossing of the two lanes, (1.75, -1.75) on
    the map (south_in_1 runs along x = 1.75 northwards, west_in_1 along y = -1.75 eastwards), when the ego's centre
    reaches (1.75, 10).  The ego drives at a constant 10 m/s from y = -50, so by hand it arrives at t = 6.0 s."""
    p = write_scenario(tmp_path, {
        "map": "intersection", "duration_s": 9, "traffic_light_cycle_s": [30, 3, 2],
        "ego": {"place": {"lane": "south_in_1", "s_m": 100}, "speed_mps": 10,
                "behaviour": {"type": "lane_follow", "speed_mps": 10, "obstacles": "none"}},
        "actors": [{"id": "crosser", "kind": "car", "place": {"lane": "west_in_1", "s_m": 90}, "speed_mps": 5,
                    "behaviour": {"type": "synchronize", "reference": "ego", "reference_at": [1.75, 10.0],
                                  "final_speed_mps": 8, "obstacles": "none", "obey_lights": False}}]})
    w, _, _ = world_of(p)
    ego, crosser = w.actors[0], w.actors[1]
    assert ego.y == pytest.approx(-50.0)
    t_ref = (10.0 - ego.y) / 10.0
    prev = (w.time_s, crosser.x, crosser.speed)
    t_own = v_own = None
    while w.time_s < 9.0 and t_own is None:
        w.step()
        if crosser.x >= 1.75 > prev[1]:
            f = (1.75 - prev[1]) / (crosser.x - prev[1])
            t_own, v_own = prev[0] + f * DT, prev[2] + f * (crosser.speed - prev[2])
        prev = (w.time_s, crosser.x, crosser.speed)
    assert t_own is not None and abs(t_own - t_ref) <= DT
    assert v_own == pytest.approx(8.0, abs=0.5)
    assert not w.collisions_total
    w.step()
    assert crosser.behaviour.type == "lane_follow"  # handed over at the point (checked at the next tick)


def test_synchronize_without_a_crossing_is_refused(tmp_path):
    p = write_scenario(tmp_path, {
        "ego": {"place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 10},
        "actors": [{"id": "other", "kind": "car", "place": {"lane": "fwd_1", "s_m": 80},
                    "behaviour": {"type": "synchronize", "reference": "ego"}}]})
    with pytest.raises(InputError, match="do not cross"):
        world_of(p)


# -------------------------------------------------------------------------------------------- end conditions
def _ends(tmp_path, end, ego=None, actors=(), duration=8):
    p = write_scenario(tmp_path, {"duration_s": duration,
                                  "ego": ego or {"place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 10,
                                                 "behaviour": {"type": "lane_follow", "obstacles": "none"}},
                                  "actors": list(actors), "end": end})
    w, spec, _ = world_of(p)
    return predict_end(w, spec.n_frames)


def test_end_at_time(tmp_path):
    n, mon = _ends(tmp_path, [{"time_s": 1.0}])
    assert (n, mon.frame) == (21, 20) and mon.reason == "time 1 s"  # frames 0 .. 20 cover t = 0 .. 1.0 s


def test_end_on_ego_standstill(tmp_path):
    """The ego brakes at 5 m/s^2 from 10 m/s: it stands still at t = 2.0 s; held 0.5 s, the episode ends at 2.5 s."""
    n, mon = _ends(tmp_path, [{"ego_standstill_s": 0.5}],
                   ego={"place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 10, "behaviour": {"type": "brake", "decel_mps2": 5}})
    assert mon.time_s == pytest.approx(2.5) and n == 51


def test_end_after_event_plus_delay(tmp_path):
    lead = {"id": "lead", "kind": "car", "place": {"relative_to": "ego", "ahead_m": 30}, "speed_mps": 10,
            "behaviour": {"type": "lane_follow", "obstacles": "none"},
            "events": [{"name": "lead_brakes", "when": {"time_s": 1.0}, "do": {"type": "brake"}}]}
    n, mon = _ends(tmp_path, [{"event": "lead_brakes", "delay_s": 0.5}], actors=[lead])
    assert mon.time_s == pytest.approx(1.5) and n == 31


def test_end_on_collision_plus_delay():
    """CCRb 12 m / 2 m/s^2: contact at 1 + sqrt(12) = 4.464 s, reported at the tick ending at 4.5 s; + 0.5 s delay."""
    w, spec, _ = world_of(SCENARIOS / "euro_ncap_ccrb.yaml", ["parameters.headway_m=12", "parameters.gvt_decel_mps2=2"])
    n, mon = predict_end(w, spec.n_frames)
    t_contact = 1.0 + math.sqrt(2 * 12 / 2)
    t_tick = math.ceil(t_contact / DT) * DT
    assert mon.time_s == pytest.approx(t_tick + 0.5) and n == round((t_tick + 0.5) / DT) + 1


def test_end_condition_needs_exactly_one_kind(tmp_path):
    with pytest.raises(InputError, match="exactly one of"):
        _ends(tmp_path, [{"time_s": 1.0, "collision": "ego"}])
    with pytest.raises(InputError, match="unknown event"):
        _ends(tmp_path, [{"event": "nope"}])


def test_run_stops_at_the_end_condition_and_warns_when_the_cap_cuts_it(tmp_path, capsys):
    """End to end: the episode holds exactly the frames up to its end condition, stores why it ended and its
    impact; a --frames cap that comes first gives one warning line and says so in run.json and the episode."""
    from simgen.runner import run

    rig = tiny_rig(tmp_path)
    sets = ["parameters.headway_m=12", "parameters.gvt_decel_mps2=6", "parameters.overlap_pct=100", "scenery.density=0"]
    summ = run(str(SCENARIOS / "euro_ncap_ccrb.yaml"), rig=str(rig), out=str(tmp_path / "a"), overrides=sets, progress=False)
    ep = summ["episodes"][0]
    # contact at 3.0 s lies on a tick boundary; it is reported at the first tick that sees it, + 0.5 s
    assert ep["end_reason"] == "collision (ego) + 0.5 s" and not ep["end_cap_hit"]
    assert ep["frames"] == round(ep["end_time_s"] / DT) + 1 and 3.5 <= ep["end_time_s"] <= 3.55 + 1e-9
    assert ep["impact_time_s"] == pytest.approx(3.0, abs=1e-3) and ep["impact_actor_b"] == "gvt"
    with h5py.File(tmp_path / "a" / "episodes" / "episode_000000.h5") as f:
        assert f.attrs["n_frames"] == ep["frames"] and f.attrs["end_reason"] == ep["end_reason"]
        assert f["impacts/time_s"][0] == pytest.approx(3.0, abs=1e-3)
        assert f["impacts/ego_point_pct"][0] == pytest.approx(50.0, abs=5.0)
    assert "warning" not in capsys.readouterr().err
    summ = run(str(SCENARIOS / "euro_ncap_ccrb.yaml"), rig=str(rig), out=str(tmp_path / "b"), overrides=sets, frames=5,
               progress=False)
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "frame cap" in err[0] and "collision (ego)" in err[0]
    ep = summ["episodes"][0]
    assert ep["end_reason"] == "cap" and ep["end_cap_hit"] and ep["frames"] == 5
    run_json = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run_json["episodes"][0]["end_cap_hit"] is True
    with h5py.File(tmp_path / "b" / "episodes" / "episode_000000.h5") as f:
        assert bool(f.attrs["end_cap_hit"]) and f["impacts/time_s"].shape == (0,)


# -------------------------------------------------------------------------------------------------- grids
def test_grid_parameter_visits_every_point_once_in_order():
    from simgen.spec.params import grid_size, sample_parameters

    params = {"a": {"grid": [1, 2, 3]}, "b": {"uniform": [0, 1]}, "c": {"grid": ["x", "y"]}, "d": "${a * 10}"}
    assert grid_size(params) == 6
    seen = [sample_parameters(params, rng=np.random.default_rng(i), file="f", grid_index=i) for i in range(6)]
    assert [(s["a"], s["c"]) for s in seen] == [(1, "x"), (1, "y"), (2, "x"), (2, "y"), (3, "x"), (3, "y")]
    assert [s["d"] for s in seen] == [10, 10, 20, 20, 30, 30]


def test_full_protocol_grid_runs_as_one_batch(tmp_path):
    """Issue 11: the CPNCO protocol grid (11 speeds) as one batch: each grid point exactly once, and index.csv holds
    the impact metrics - here the impact speed is the grid speed (the ego does not brake) and the point is 50 %."""
    from simgen.batch.runner import run_batch

    grid = [10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"seed": 3, "rig": str(tiny_rig(tmp_path)), "jobs": [{
        "scenario": str(SCENARIOS / "euro_ncap_cpnco.yaml"), "name": "cpnco", "grid": {"vut_speed_kmh": grid},
        "set": ["scenery.density=0", "tick_hz=10", "parameters.ttc0_s=1.5"]}]}))
    res = run_batch(plan, tmp_path / "out", workers=1, progress=False, faults="")
    with open(tmp_path / "out" / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(grid) and all(r["status"] == "done" for r in rows), res
    assert sorted(float(r["param.vut_speed_kmh"]) for r in rows) == grid  # every point exactly once
    assert sorted(int(r["grid_point"]) for r in rows) == list(range(len(grid)))
    for r in rows:
        assert r["impact_actor_b"] == "child"
        assert float(r["impact_speed_a_mps"]) == pytest.approx(float(r["param.vut_speed_kmh"]) / 3.6, abs=0.01)
        assert float(r["impact_ego_point_pct"]) == pytest.approx(50.0, abs=5.0)
        assert float(r["impact_delta_v_b_mps"]) > 0 and r["end_reason"].startswith("collision")


def test_plan_grid_checks_names_and_episode_counts(tmp_path):
    from simgen.batch.plan import load_plan

    def plan(job):
        p = tmp_path / "plan.yaml"
        p.write_text(yaml.safe_dump({"jobs": [{"scenario": str(SCENARIOS / "euro_ncap_ccrb.yaml"), **job}]}))
        return p

    assert load_plan(plan({"grid": {"headway_m": [12, 40], "overlap_pct": [100, 50, -50]}})).jobs[0].episodes == 6
    assert load_plan(plan({"grid": {"headway_m": [12, 40]}, "episodes": 4})).jobs[0].episodes == 4
    with pytest.raises(InputError, match=r"grid\.headway: unknown parameter"):
        load_plan(plan({"grid": {"headway": [12]}}))
    with pytest.raises(InputError, match="multiple of the grid's 2 points"):
        load_plan(plan({"grid": {"headway_m": [12, 40]}, "episodes": 3}))
    with pytest.raises(InputError, match="episodes: required"):
        load_plan(plan({}))


def test_library_plans_cover_their_grids():
    """Every shipped protocol plan loads, and its episode count is the product of its grid axes."""
    from simgen.batch.plan import load_plan

    plans = sorted((SCENARIOS / "plans").glob("euro_ncap_*.yaml"))
    assert {p.stem for p in plans} == {f"euro_ncap_{n}" for n in ("ccrs", "ccrm", "ccrb", "cpna", "cpfa", "cpnco", "cbla", "ccftap")}
    for p in plans:
        raw = yaml.safe_load(p.read_text())
        for job, spec in zip(load_plan(p).jobs, raw["jobs"]):
            assert job.episodes == math.prod(len(v) for v in spec["grid"].values())


@pytest.mark.parametrize("name", ["euro_ncap_ccrs", "euro_ncap_ccrm", "euro_ncap_cpna", "euro_ncap_cpfa",
                                  "euro_ncap_cbla", "euro_ncap_ccftap"])
def test_protocol_scenarios_end_in_an_ego_impact(name):
    """A corner of each grid: the non-reacting ego hits the target, and pedestrian/cyclist impact points are the
    protocol's (25/50/75 %)."""
    src = load_scenario_source(SCENARIOS / f"{name}.yaml")
    for idx in (0, 1, 2):
        spec, vals = concretise(src, rng=np.random.default_rng(idx), grid_index=idx)
        w = World(spec, rng=np.random.default_rng(1))
        n, mon = predict_end(w, spec.n_frames)
        assert mon.reason and mon.reason.startswith("collision"), (name, vals)
        imp = w.impacts[0]
        assert imp["actor_a"] == "ego"
        if "impact_pct" in vals:
            assert imp["ego_point_pct"] == pytest.approx(vals["impact_pct"], abs=5.0)


def test_scenario_runner_entries():
    w, spec, _ = world_of(SCENARIOS / "sr_follow_leading_vehicle.yaml")
    n, mon = predict_end(w, spec.n_frames)
    assert mon.reason == "ego standstill for 1 s" and not w.collisions_total and n < spec.n_frames
    w, spec, _ = world_of(SCENARIOS / "sr_opposite_vehicle_running_red_light.yaml", ["parameters.ego_attention=none"])
    lights = w.light_states()
    assert lights["tl_south"] == "green" and lights["tl_west"] == "red"
    predict_end(w, spec.n_frames)
    assert w.impacts and w.impacts[0]["actor_b"] == "runner"


def test_aeb_brakes_for_a_driver_who_ignores_obstacles(tmp_path):
    """Issue 11: docs/scenario_language.md said AEB sees nothing with obstacles: none; the code brakes (the behaviour a
    tester wants).  A non-reacting driver at 15 m/s with AEB stops short of a stationary car 60 m ahead; without AEB
    it hits it."""
    def run_(aeb):
        p = write_scenario(tmp_path, {"duration_s": 8, "ego": {
            "place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 15,
            "behaviour": {"type": "lane_follow", "obstacles": "none", "aeb": aeb, "aeb_ttc_s": 1.5}},
            "actors": [{"id": "stopped", "kind": "car", "place": {"relative_to": "ego", "ahead_m": 60},
                        "behaviour": {"type": "parked"}}]}, name=f"aeb_{aeb}")
        w, spec, _ = world_of(p)
        predict_end(w, spec.n_frames)
        return w

    assert run_(False).impacts
    w = run_(True)
    assert not w.impacts and abs(w.actors[0].speed) < 0.05


# ---------------------------------------------------------------------------------------- reversing, animals
def test_reverse_backs_up_keeping_the_heading(tmp_path):
    """type: reverse at 2 m/s for 6 m: it ends 6 m behind its start on its lane, still facing +x."""
    p = write_scenario(tmp_path, {"ego": {"place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 0,
                                          "behaviour": {"type": "parked"}},
                                  "actors": [{"id": "rev", "kind": "car", "place": {"lane": "fwd_1", "s_m": 100},
                                              "behaviour": {"type": "reverse", "speed_mps": 2, "distance_m": 6}}]})
    w, _, _ = world_of(p)
    rev = w.actors[1]
    x0 = rev.x
    vx = []
    for _ in range(200):
        w.step()
        vx.append(w.states().velocity[1, 0])
    assert rev.x == pytest.approx(x0 - 6.0, abs=0.01) and rev.yaw == pytest.approx(0.0, abs=1e-6)
    assert min(vx) == pytest.approx(-2.0, abs=1e-6) and max(vx) <= 0.0


def test_reverse_true_facing_along_the_lane_is_refused(tmp_path):
    """Issue 11: reverse: true without yaw_deg: 180 used to be silently ignored; now it is an error naming the key."""
    p = write_scenario(tmp_path, {"ego": {"place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 5,
                                          "behaviour": {"type": "lane_follow", "reverse": True}}})
    with pytest.raises(InputError, match="reverse") as e:
        world_of(p)
    assert "type: reverse" in str(e.value)


@pytest.mark.parametrize("kind", ["deer", "dog", "animal"])
def test_animal_kinds(kind, tmp_path):
    from simgen.classes import ACTOR_KINDS, CLASSES, MASS_KG

    k = ACTOR_KINDS[kind]
    assert CLASSES[k.semantic][0] == "Dynamic" and not k.vehicle and MASS_KG[kind] > 0
    p = write_scenario(tmp_path, {"ego": {"place": {"lane": "fwd_2", "s_m": 60}, "speed_mps": 10,
                                          "behaviour": {"type": "lane_follow", "obstacles": "none"}},
                                  "actors": [{"id": "beast", "kind": kind, "place": {"relative_to": "ego", "ahead_m": 20},
                                              "behaviour": {"type": "stand"}}], "duration_s": 3})
    w, spec, _ = world_of(p)
    predict_end(w, spec.n_frames)
    assert w.impacts and w.impacts[0]["kind_b"] == kind


def test_animals_have_an_export_class_in_every_format():
    """Without a default mapping every export would refuse episodes (``no mapping for kinds ...``)."""
    from annotators.export.common import load_class_map

    for section, want in (("kitti", "Misc"), ("nuscenes", "animal")):
        m = load_class_map(None, section)
        assert all(m[k] == want for k in ("deer", "dog", "animal"))
    assert load_class_map(None, "coco")["dog"] == "dog"
