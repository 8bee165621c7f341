"""The scenario library (scenarios/*.yaml): every file validates and documents itself, sampling is deterministic
per seed and stays inside the declared ranges, and each scenario really stages its event within its duration -
checked from the simulated state (the World stepped without rendering).  Also: a parameter choice that gives a
collision and another that gives a near miss, the Python plugin example, ``simgen scenarios list/show``, and one
short end-to-end render."""
from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
import pytest

from simgen.classes import ROADS, SIDEWALKS
from simgen.errors import InputError
from simgen.sim.world import World
from simgen.spec.scenario import concretise, load_scenario_source, scenario_to_dict
from tests.conftest import RIGS, SCENARIOS

EXPECTED = {
    "lead_vehicle_brakes", "highway_cut_in", "pedestrian_behind_van", "child_ball", "jaywalker_night",
    "cyclist_swerve", "red_light_runner", "unprotected_left_turn", "right_turn_cyclist", "stalled_vehicle_highway",
    "wrong_way_driver", "door_opening", "on_ramp_merge", "lane_change_into_occupied", "pedestrian_group_crosswalk",
    "braking_cascade", "dense_traffic", "drunk_driver_weaving",
}
FILES = sorted(SCENARIOS.glob("*.yaml"))
NAMES = [p.stem for p in FILES]


def test_library_has_every_scenario():
    assert EXPECTED <= set(NAMES), f"missing: {sorted(EXPECTED - set(NAMES))}"


# ------------------------------------------------------------------------------------------------ simulation
class Trace:
    """A scenario's World stepped for its whole duration, with every named actor's state per tick."""

    def __init__(self, name: str, seed: int = 0, overrides=()):
        src = load_scenario_source(SCENARIOS / f"{name}.yaml", list(overrides), allow_plugins=True)  # the shipped library
        self.spec, self.values = concretise(src, rng=np.random.default_rng(seed))
        self.world = w = World(self.spec, rng=np.random.default_rng([seed, 7]), source=src.path)
        self.map = w.map
        self.names = [a.name for a in w.actors if not a.name.startswith(("traffic_", "walker_"))]
        self.by_name = {a.name: a for a in w.actors}
        rows, self.lights, self.t, self.behaviour = [], [], [], []
        for _ in range(self.spec.n_frames):
            w.step()
            self.t.append(w.time_s)
            rows.append([(a.x, a.y, a.yaw, a.speed, a.accel, a.door, a.crashed, a.lateral)
                         for a in (self.by_name[n] for n in self.names)])
            self.behaviour.append({n: self.by_name[n].behaviour.type for n in self.names})
            if w.map.traffic_lights:
                self.lights.append(w.light_states())
        self.t = np.array(self.t)
        arr = np.array(rows, float)  # (T, A, 8)
        self.state = {n: arr[:, i] for i, n in enumerate(self.names)}
        self.events = {key: t for t, _, key in w.event_log}
        ids = {a.id: a.name for a in w.actors}
        self.collisions = {frozenset((ids[i], ids[j])) for i, j in w.collisions_total}
        self.ego_hits = {n for pair in self.collisions if "ego" in pair for n in pair if n != "ego"}
        self._lanes: dict[str, list] = {}

    def xy(self, n):
        return self.state[n][:, :2]

    def x(self, n):
        return self.state[n][:, 0]

    def yaw(self, n):
        return self.state[n][:, 2]

    def speed(self, n):
        return self.state[n][:, 3]

    def accel(self, n):
        return self.state[n][:, 4]

    def door(self, n):
        return self.state[n][:, 5]

    def lane(self, n) -> list:
        if n not in self._lanes:
            self._lanes[n] = self.map.lane_at(self.xy(n))
        return self._lanes[n]

    def surface(self, n) -> np.ndarray:
        return self.map.surface_at(self.xy(n))

    def dist(self, a, b) -> np.ndarray:
        return np.linalg.norm(self.xy(a) - self.xy(b), axis=1)

    def crashed_at(self, n) -> float:
        return float(self.t[self.first(self.state[n][:, 6] > 0)])

    def first(self, mask) -> int:
        idx = np.flatnonzero(mask)
        assert len(idx), "the condition never held"
        return int(idx[0])


def in_polygon(p, poly) -> bool:
    x, y = p
    inside = False
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def crosswalk(tr, cid):
    return next(c for c in tr.map.crosswalks if c.id == cid)


def lane_heading(tr, lane_id, xy):
    lane = tr.map.lanes[lane_id]
    s, _ = lane.centre.project(np.asarray(xy, float))
    return float(lane.centre.pose_at(s)[2])


def lateral_in(tr, lane_id, n) -> np.ndarray:
    return np.asarray(tr.map.lanes[lane_id].centre.project(tr.xy(n))[1])


# ------------------------------------------------------------------------------ per-scenario event checks
def check_lead_vehicle_brakes(tr):
    v = tr.values
    k = tr.first(tr.t >= tr.events["lead_brakes"] + 0.2)
    assert tr.accel("lead")[k] == pytest.approx(-v["decel_mps2"], abs=0.05)
    assert tr.speed("lead")[-1] == 0.0  # braked to a stop
    assert tr.accel("ego").min() < -2.0 and not tr.ego_hits  # the attentive ego brakes and stops in time


def check_highway_cut_in(tr):
    assert tr.events["cut_in_starts"] == pytest.approx(1.0)
    lanes = tr.lane("cut_in")
    assert lanes[0] == "fwd_2" and tr.lane("ego")[0] == "fwd_1"
    if "cut_in" in tr.ego_hits:  # a collision, once it started cutting in
        assert tr.crashed_at("cut_in") > tr.events["cut_in_starts"]
        return
    k = tr.first([la == "fwd_1" for la in lanes])  # it ends up in the ego's lane, ahead of the ego
    assert tr.x("cut_in")[k] > tr.x("ego")[k] and lanes[-1] == "fwd_1"
    assert tr.accel("ego").min() < -3.0


def check_pedestrian_behind_van(tr):
    assert "pedestrian_runs" in tr.events
    assert "fwd_2" in tr.lane("pedestrian") and tr.lane("ego")[0] == "fwd_2"  # it runs into the ego's lane


def check_child_ball(tr):
    assert tr.events["ball_rolls"] < tr.events["child_runs"]
    on_road_ball, on_road_child = tr.surface("ball") == ROADS, tr.surface("child") == ROADS
    assert not on_road_ball[0] and not on_road_child[0]  # both start on the sidewalk
    k_ball, k_child = tr.first(on_road_ball), tr.first(on_road_child)
    assert k_ball < k_child  # the ball is in the road first, the child follows
    k_ball_lane = tr.first([la == "fwd_2" for la in tr.lane("ball")])
    assert k_ball_lane < tr.first([la == "fwd_2" for la in tr.lane("child")])  # ... into the ego's lane


def check_jaywalker_night(tr):
    assert tr.spec.weather.sun_altitude_angle < 0  # night
    assert not tr.map.crosswalks  # mid-block: there is no crosswalk on this road
    assert tr.surface("jaywalker")[0] == SIDEWALKS
    assert "fwd_2" in tr.lane("jaywalker")  # it walks into the ego's lane
    assert "jaywalker_crosses" in tr.events


def check_cyclist_swerve(tr):
    lanes = tr.lane("cyclist")
    assert lanes[0] == "fwd_shoulder"
    k = tr.first([la == "fwd_2" for la in lanes])  # it swerves into the ego's lane in front of the ego
    assert tr.x("ego")[k] < tr.x("cyclist")[k]
    assert frozenset(("cyclist", "parked_car")) not in tr.collisions  # it gets round the parked car


def check_red_light_runner(tr):
    box = tr.map.junctions[0]
    inside = [in_polygon(p, box) for p in tr.xy("runner")]
    k = tr.first(inside)
    assert not inside[0]
    assert all(tr.lights[i]["tl_west"] == "red" for i in np.flatnonzero(inside))  # it enters on red
    assert tr.lights[k]["tl_south"] == "green"  # ... while the ego has green
    assert tr.by_name["runner"].behaviour.obey_lights is False


def check_unprotected_left_turn(tr):
    assert tr.by_name["ego"].behaviour.turns == ("left",)
    assert "south_in_1>west_out_1" in tr.lane("ego")  # through the left-turn connector
    assert "north_in_1>south_out_1" in tr.lane("oncoming")  # the oncoming car goes straight
    if not tr.ego_hits:  # the ego has turned (ends heading west); the oncoming car heads on south
        assert tr.lane("ego")[-1] in ("south_in_1>west_out_1", "west_out_1") and math.cos(tr.yaw("ego")[-1]) < -0.9
        assert tr.lane("oncoming")[-1] in ("north_in_1>south_out_1", "south_out_1")
        assert abs(math.sin(tr.yaw("oncoming")[-1]) + 1) < 0.05


def check_right_turn_cyclist(tr):
    cw = crosswalk(tr, "crosswalk_east")
    on_cw = np.array([in_polygon(p, cw.polygon) for p in tr.xy("cyclist")])
    riding = on_cw & (tr.speed("cyclist") > 0)
    assert riding.any()  # it rides over the crosswalk ...
    assert "south_in_2>east_out_2" in tr.lane("ego")  # ... while the ego turns right
    if "cyclist" in tr.ego_hits:  # ... and runs into the turning ego or is hit by it
        assert tr.crashed_at("cyclist") >= tr.events["cyclist_crosses"]
    else:  # ... or crosses the ego's exit lane, and the ego carries on into it or is still giving way to it
        assert (riding & np.array([la == "east_out_2" for la in tr.lane("cyclist")])).any()
        assert tr.lane("ego")[-1] == "east_out_2" or (
            tr.lane("ego")[-1] == "south_in_2>east_out_2" and tr.accel("ego").min() < -3.0)


def check_stalled_vehicle_highway(tr):
    assert tr.values["ego_speed_mps"] >= 22 and tr.lane("ego")[0] == "fwd_1"
    assert set(tr.lane("obstacle")) == {"fwd_1"}  # stands in the ego's lane
    k = tr.first(tr.t >= tr.events["van_swerves"])
    assert tr.x("van")[k] < tr.x("obstacle")[k]
    assert tr.lane("van")[-1] == "fwd_2"  # the van has swerved out, revealing it
    assert tr.accel("ego").min() <= -6.0 or "obstacle" in tr.ego_hits
    if not tr.ego_hits:  # braking hard, short of the obstacle
        assert tr.speed("ego")[-1] < 0.5 * tr.speed("ego")[0] and tr.x("ego")[-1] < tr.x("obstacle")[-1]


def check_wrong_way_driver(tr):
    lanes = tr.lane("wrong_way")
    assert lanes[0] == {0: "fwd_1", -1: "fwd_2"}[tr.values["lane_offset"]]
    for k in range(0, 40):  # while it drives: against its lane's direction of travel
        h = lane_heading(tr, lanes[k], tr.xy("wrong_way")[k])
        vel = tr.speed("wrong_way")[k] * np.array([math.cos(tr.yaw("wrong_way")[k]), math.sin(tr.yaw("wrong_way")[k])])
        assert vel @ np.array([math.cos(h), math.sin(h)]) < -0.9 * tr.speed("wrong_way")[k] < 0
    d = tr.dist("ego", "wrong_way")
    assert d[40] < d[0] - 15  # and it approaches the ego


def check_door_opening(tr):
    assert "door_opens" in tr.events
    assert tr.door("door_car")[0] == 0 and abs(tr.door("door_car")[-1]) >= math.radians(69)
    k = tr.first(tr.x("ego") >= tr.x("door_car"))  # the ego passes the car ...
    assert abs(tr.door("door_car")[k]) > 0.1  # ... with the door already opening
    assert tr.door("door_car")[k] > 0  # on the left (traffic) side


def check_on_ramp_merge(tr):
    lanes = tr.lane("merger")
    assert lanes[0] == "fwd_shoulder" and tr.lane("ego")[0] == "fwd_2"
    if "merger" in tr.ego_hits:  # a collision, once it started merging
        assert tr.crashed_at("merger") > tr.events["merge_starts"]
        return
    k = tr.first([la == "fwd_2" for la in lanes])
    assert tr.x("merger")[k] > tr.x("ego")[k] and lanes[-1] == "fwd_2"  # it merges in front of the ego


def check_lane_change_into_occupied(tr):
    k = tr.first(tr.t >= tr.events["changer_changes_lane"])
    ahead = tr.x("changer")[k] - tr.x("ego")[k]
    assert -3.0 <= ahead <= 11.5  # beside the ego or just ahead when it starts changing lanes
    assert tr.lane("changer")[0] == "fwd_1" and tr.lane("ego")[0] == "fwd_2"
    if "changer" in tr.ego_hits:
        assert tr.crashed_at("changer") > tr.events["changer_changes_lane"]
    else:
        assert tr.lane("changer")[-1] == "fwd_2"


def check_pedestrian_group_crosswalk(tr):
    n = tr.values["group_size"]
    assert 4 <= n <= 8
    cw = crosswalk(tr, "crosswalk_south")
    peds = [f"ped_{i}" for i in range(1, 9)]
    crossed = []
    for p in peds:
        xy = tr.xy(p)
        mid = [in_polygon(q, cw.polygon) and abs(q[0]) < 8.0 for q in xy]  # in the road, on the crosswalk
        if any(mid):
            crossed.append(p)
        else:  # the others wait at the kerb
            assert np.linalg.norm(xy[-1] - xy[0]) < 0.01
    assert len(crossed) == n and crossed == peds[:n]
    assert tr.by_name["ped_3"].kind.name == "child" and "ped_3" in crossed
    # ped_2 stops part-way for hesitate_s once it has walked hesitate_at_m (if it gets that far in time)
    k0 = tr.first(tr.t >= tr.events["ped_2_crosses"])
    walked = np.linalg.norm(tr.xy("ped_2") - tr.xy("ped_2")[k0], axis=1)
    reach = np.flatnonzero(walked >= tr.values["hesitate_at_m"] - 1e-6)
    if len(reach):
        k = int(reach[0])
        expected = min(tr.values["hesitate_s"], tr.t[-1] - tr.t[k])
        paused = np.flatnonzero(tr.speed("ped_2")[k:] > 0)
        still = (paused[0] if len(paused) else len(tr.t) - k) * tr.world.dt
        assert still >= expected - 2 * tr.world.dt
        assert abs(tr.xy("ped_2")[k][0]) < 9.0  # in the road
    assert all(light["tl_south"] == "red" for light in tr.lights)
    assert tr.speed("ego")[-1] < 0.5 and tr.xy("ego")[-1][1] < -18.4  # stopped before the stop line
    assert not tr.collisions


def check_braking_cascade(tr):
    assert tr.events["lead_brakes"] < tr.events["middle_brakes"] < tr.events["ego_brakes"]
    assert tr.accel("lead").min() <= -6.5 and tr.accel("middle").min() <= -8.0
    assert tr.accel("ego").min() <= -6.0 or "middle" in tr.ego_hits  # all three brake hard
    assert frozenset(("middle", "lead")) not in tr.collisions


def check_dense_traffic(tr):
    names = [a.name for a in tr.world.actors]
    assert sum(n.startswith("traffic_") for n in names) >= 20 and sum(n.startswith("walker_") for n in names) >= 8
    assert tr.x("ego")[-1] - tr.x("ego")[0] > 40


def check_drunk_driver_weaving(tr):
    t0 = tr.events["drunk_weaves"]  # the custom trigger fired ...
    k0 = tr.first(tr.t >= t0)
    assert k0 > 10  # not at once: it waits for the ego to close in
    behind = tr.x("drunk")[k0] - tr.x("ego")[k0]
    assert 0 < behind < tr.values["notice_gap_m"] + 1.0  # ... when the ego was close behind
    assert tr.behaviour[k0 + 1]["drunk"] == "weave"
    lat = lateral_in(tr, "fwd_1", "drunk")
    assert np.abs(lat[:k0 - 1]).max() < 0.05  # steady before
    assert lat[k0:].min() < -0.8  # the custom behaviour sways it towards the ego's lane ...
    if "drunk" not in tr.ego_hits:  # ... and back: its offset changes sign
        assert lat[k0:].max() > 0.5


CHECKS = {n[len("check_"):]: f for n, f in globals().items() if n.startswith("check_")}
CASES = [(name, seed, ()) for name in sorted(EXPECTED) for seed in (0, 1)] + [
    # settings in the near-miss part of a range, where the event must run to its end
    ("highway_cut_in", 2, ("parameters.cut_in_gap_m=25", "parameters.rel_speed_mps=3")),
    ("unprotected_left_turn", 0, ("parameters.arrival_gap_s=1.5",)),
    ("unprotected_left_turn", 1, ("parameters.arrival_gap_s=-2.0",)),
    ("right_turn_cyclist", 0, ("parameters.arrival_gap_s=-2.0",)),
    ("stalled_vehicle_highway", 2, ("parameters.ego_attention=all",)),
    ("on_ramp_merge", 2, ("parameters.merge_ttc_s=3.5",)),
    ("lane_change_into_occupied", 2, ("parameters.offset_m=8",)),
    ("wrong_way_driver", 2, ("parameters.lane_offset=-1",)),
    ("pedestrian_group_crosswalk", 2, ("parameters.group_size=8", "parameters.hesitate_at_m=3")),
    ("pedestrian_group_crosswalk", 3, ("parameters.group_size=4",)),
]


def test_every_scenario_has_a_check():
    assert EXPECTED <= set(CHECKS)


@pytest.mark.parametrize("name,seed,overrides", CASES, ids=[f"{n}-{s}{'-set' if o else ''}" for n, s, o in CASES])
def test_event_happens(name, seed, overrides):
    tr = Trace(name, seed, overrides)
    assert tr.t[-1] == pytest.approx(tr.spec.duration_s) and tr.spec.duration_s <= 10
    CHECKS[name](tr)


BROKEN = [  # the same checks reject a staging that does not produce the event
    ("red_light_runner", ("traffic_light_offset_s=35",)),  # the runner's light is green now
    ("door_opening", ("actors.door_car.events.0.do.type=parked",)),  # the door stays shut
    ("jaywalker_night", ("actors.jaywalker.events.0.do.heading_deg=-90",)),  # walks away from the road
    ("drunk_driver_weaving", ("parameters.weave_amplitude_m=0",)),  # no sway
    ("child_ball", ("actors.child.events.0.when={time_s: 0.5}",)),  # the child runs out first
]


@pytest.mark.parametrize("name,overrides", BROKEN, ids=[b[0] for b in BROKEN])
def test_checks_reject_broken_staging(name, overrides):
    tr = Trace(name, 0, overrides)
    with pytest.raises(AssertionError):
        CHECKS[name](tr)


# ----------------------------------------------------------------------------- collision versus near miss
def _near_miss(tr, other):
    assert not tr.ego_hits, f"unexpected collision with {tr.ego_hits}"
    assert tr.accel("ego").min() <= -6.0  # hard braking ...
    half = (tr.by_name["ego"].dims[0] + tr.by_name[other].dims[0]) / 2
    assert tr.dist("ego", other).min() - half < 8.0  # ... ending close to it


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jaywalker_lead_time_gives_collision_or_near_miss(seed):
    hit = Trace("jaywalker_night", seed, ["parameters.lead_time_s=0.3"])
    assert hit.ego_hits == {"jaywalker"}
    _near_miss(Trace("jaywalker_night", seed, ["parameters.lead_time_s=1.5"]), "jaywalker")


@pytest.mark.parametrize("seed", [0, 1])
def test_cascade_distracted_reaction_gives_collision_or_near_miss(seed):
    base = ["parameters.ego_attention=none", "parameters.ego_headway_s=1.2"]
    hit = Trace("braking_cascade", seed, base + ["parameters.ego_reaction_s=1.9"])
    assert hit.ego_hits == {"middle"}
    _near_miss(Trace("braking_cascade", seed, base + ["parameters.ego_reaction_s=0.9"]), "middle")


def test_lane_change_offset_gives_side_swipe_or_near_miss():
    assert Trace("lane_change_into_occupied", 0, ["parameters.offset_m=0.5"]).ego_hits == {"changer"}
    _near_miss(Trace("lane_change_into_occupied", 0, ["parameters.offset_m=8"]), "changer")


# ----------------------------------------------------------------------------------- the plugin example
def test_plugin_behaviour_and_trigger_registered():
    from simgen.sim.behaviours import BEHAVIOURS, TRIGGERS

    load_scenario_source(SCENARIOS / "drunk_driver_weaving.yaml", allow_plugins=True)
    assert BEHAVIOURS.get("weave") is not None and "ego_behind_within" in TRIGGERS


def test_plugin_trigger_waits_for_the_ego():
    """Without the ego closing in (a slow ego far behind) the custom trigger never fires: it is not time-based."""
    tr = Trace("drunk_driver_weaving", 0, ["ego.speed_mps=3", "ego.behaviour.speed_mps=3", "parameters.drunk_ahead_m=60"])
    assert "drunk_weaves" not in tr.events
    assert np.abs(lateral_in(tr, "fwd_1", "drunk")).max() < 0.05


# ------------------------------------------------------------------------------ files, headers, sampling
@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_validates(path, capsys):
    from simgen.cli import main

    assert main(["validate", str(path), "--sample", "3", "--allow-plugins"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok" in out and out.count("episode ") == 3


def _header(path) -> str:
    from simgen.scenario_library import read_scenario

    return read_scenario(path).header


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_header_documents_the_scenario(path):
    from simgen.spec.schema import load_yaml

    raw = load_yaml(path)
    head = _header(path)
    assert path.read_text().startswith("# ")
    for needle in ("What happens:", "Parameters:", "NHTSA pre-crash typology:"):
        assert needle in head, f"{path.name}: header lacks {needle!r}"
    assert raw["name"] == path.stem
    assert raw.get("description") and "\n" not in raw["description"] and len(raw["description"]) <= 110
    assert raw.get("pre_crash_type")
    assert float(raw.get("duration_s", 8)) <= 10
    for p, spec in (raw.get("parameters") or {}).items():  # every sampled parameter is described
        if isinstance(spec, dict):
            generic = re.sub(r"_\d+$", "_<i>", p)
            assert p in head or generic in head, f"{path.name}: parameter {p} not described in the header"


def _bounds(spec):
    kind = next(k for k in ("uniform", "normal", "choice", "randint") if k in spec)
    v = spec[kind]
    if kind in ("uniform", "randint"):
        return kind, (v[0], v[1])
    if kind == "normal":
        return kind, (v.get("min", -math.inf), v.get("max", math.inf))
    return kind, v


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_sampling_is_deterministic_and_within_declared_ranges(path):
    src = load_scenario_source(path, allow_plugins=True)
    declared = {k: v for k, v in (src.raw.get("parameters") or {}).items() if isinstance(v, dict)}
    seen: dict[str, set] = {k: set() for k in declared}
    for seed in range(6):
        spec, values = concretise(src, rng=np.random.default_rng(seed))
        spec2, values2 = concretise(src, rng=np.random.default_rng(seed))
        assert values == values2 and scenario_to_dict(spec) == scenario_to_dict(spec2)
        assert "$" not in json.dumps(scenario_to_dict(spec), default=str)  # everything substituted
        for k, decl in declared.items():
            kind, b = _bounds(decl)
            val = values[k]
            seen[k].add(json.dumps(val))
            if kind == "choice":
                assert val in b, (k, val)
            else:
                assert b[0] <= val <= b[1], (k, val, b)
                if kind == "randint":
                    assert isinstance(val, int)
    for k, decl in declared.items():  # and it really varies between seeds
        kind, b = _bounds(decl)
        if (kind == "choice" and len(set(map(json.dumps, b))) > 1) or (kind != "choice" and b[0] < b[1]):
            assert len(seen[k]) > 1, f"{k} took one value for six seeds"


def test_runner_plans_are_deterministic_per_seed():
    from simgen.runner import plan_episodes

    src = load_scenario_source(SCENARIOS / "braking_cascade.yaml")
    a = [p.params for p in plan_episodes(src, seed=5, episodes=3)]
    b = [p.params for p in plan_episodes(src, seed=5, episodes=3)]
    c = [p.params for p in plan_episodes(src, seed=6, episodes=3)]
    assert a == b and a != c


# ---------------------------------------------------------------------------------- simgen scenarios ...
def _cli(argv, capsys):
    from simgen.scenario_library import add_subcommand

    ap = argparse.ArgumentParser(prog="simgen")
    add_subcommand(ap.add_subparsers(dest="cmd", required=True))
    a = ap.parse_args(argv)
    assert a.func(a) == 0
    return capsys.readouterr().out


def test_scenarios_list(capsys):
    from simgen.spec.schema import load_yaml

    out = _cli(["scenarios", "list"], capsys)
    for path in FILES:
        raw = load_yaml(path)
        line = next(li for li in out.splitlines() if li.startswith(raw["name"] + " "))
        assert raw["description"] in line
    assert "cut_in_gap_m uniform 10 to 30" in out
    assert "obstacle_kind one of car (3), debris (1)" in out
    assert "group_size integer 4 to 8" in out
    assert "walk_speed_mps normal mean 1.4 std 0.25, 1 to 2" in out


@pytest.mark.parametrize("name", ["red_light_runner", "drunk_driver_weaving"])
def test_scenarios_show(name, capsys):
    from simgen.spec.schema import load_yaml

    path = SCENARIOS / f"{name}.yaml"
    raw = load_yaml(path)
    out = _cli(["scenarios", "show", name], capsys)
    head = _header(path)
    assert out.startswith(head.splitlines()[0]) and head in out  # the full header comment
    assert raw["description"] in out and raw["pre_crash_type"] in out
    for p in raw["parameters"]:
        assert re.search(rf"^  {p} +\S", out, re.M), p
    assert name != "red_light_runner" or re.search(r"^  arrival_gap_s +uniform -1.5 to 1.5$", out, re.M)


def test_scenarios_show_unknown_name_lists_the_library(capsys):
    with pytest.raises(InputError) as e:
        _cli(["scenarios", "show", "no_such_scenario"], capsys)
    msg = str(e.value)
    assert "\n" not in msg and "unknown scenario 'no_such_scenario'" in msg
    assert all(n in msg for n in EXPECTED)


def test_through_the_simgen_cli(monkeypatch, capsys):
    """Once registered in simgen.cli.PLUGIN_MODULES: exit 0 with the listing; a bad name is a one-line error, exit 2."""
    from simgen import cli

    if "simgen.scenario_library" not in cli.PLUGIN_MODULES:
        monkeypatch.setattr(cli, "PLUGIN_MODULES", [*cli.PLUGIN_MODULES, "simgen.scenario_library"])
    assert cli.main(["scenarios", "list"]) == 0 and "braking_cascade" in capsys.readouterr().out
    assert cli.main(["scenarios", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown scenario 'nope'; library scenarios: " in err


def test_scenarios_behaviours_lists_plugins(capsys):
    out = _cli(["scenarios", "behaviours"], capsys)
    assert "lane_follow" in out and "weave" in out and "ego_behind_within" in out


# ---------------------------------------------------------------------------------------- end to end
def test_render_one_library_scenario(tmp_path):
    import h5py

    from simgen.runner import run

    summary = run(str(SCENARIOS / "red_light_runner.yaml"), rig=str(RIGS / "small.yaml"), out=str(tmp_path), seed=4,
                  frames=3, progress=False)
    assert summary["episodes"][0]["frames"] == 3
    with h5py.File(tmp_path / "episodes" / "episode_000000.h5", "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["actors/name"][()]]
        assert {"ego", "runner", "waiting_van"} <= set(names)
        assert f["actors/pose"].shape[:2] == (3, len(names))
        lights = [n.decode() if isinstance(n, bytes) else n for n in f["lights/id"][()]]
        state = f["lights/state"][()]
        assert (state[:, lights.index("tl_west")] == 0).all() and (state[:, lights.index("tl_south")] == 2).all()
        # the criticality summary against independent views: the world's collision log and the poses (issue 15)
        summary = json.loads(f.attrs["summary_json"])
        assert {"min_ttc_s", "min_gap_m", "collision", "any_collision"} <= set(summary)
        coll = f["collisions"][()]
        assert summary["any_collision"] == (len(coll) > 0) and summary["collision"] == bool((coll[:, 1:] == 1).any())
        pose, dims = f["actors/pose"][()], f["actors/dims"][()]
        centre_dist = np.linalg.norm(pose[:, 1:, :2] - pose[:, :1, :2], axis=-1)  # ego to every actor, each frame
        half_diag = 0.5 * np.hypot(dims[:, 0], dims[:, 1])
        # a footprint gap lies between the centre distance and the centre distance less both half-diagonals
        assert (centre_dist - half_diag[0] - half_diag[1:]).min() - 1e-6 <= summary["min_gap_m"] <= centre_dist.min()
        assert summary["min_ttc_s"] == pytest.approx(float(np.nanmin(f["criticality/ttc_s"][:, 1:])))
