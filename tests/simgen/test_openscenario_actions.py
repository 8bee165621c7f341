"""OpenSCENARIO import (issue 12): actions, positions and environment on small scenarios written here on the
corpus's straight_500m.xodr (a straight road along +x from (0, 0); lanes -1 and 1 are 3.07 m wide, so lane -1's
centre is y = -1.535), and ParameterValueDistribution files as batch plans.  Expected values are computed by hand
from the XML written here (or read from the corpus files)."""
from __future__ import annotations

import csv
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from simgen.errors import InputError
from tests.simgen.test_openscenario import CORPUS, REPO, _world

pytestmark = pytest.mark.skipif(not (CORPUS / "cut-in.xosc").is_file(), reason="esmini corpus not here")
pytest.importorskip("carla")
XODR = (CORPUS.parent / "xodr" / "straight_500m.xodr").resolve()
LANE = -1.535  # centre of lane -1

CAR = """<Vehicle name="{name}" vehicleCategory="car"><BoundingBox><Center x="{cx}" y="0" z="0.75"/>
<Dimensions width="2.0" length="{length}" height="1.5"/></BoundingBox>
<Performance maxSpeed="60" maxDeceleration="10" maxAcceleration="10"/><Axles>
<FrontAxle maxSteering="0.5" wheelDiameter="0.6" trackWidth="1.7" positionX="2.8" positionZ="0.3"/>
<RearAxle maxSteering="0" wheelDiameter="0.6" trackWidth="1.7" positionX="0" positionZ="0.3"/></Axles>
<Properties/></Vehicle>"""
PED = """<Pedestrian name="walker" mass="80" model="walker" pedestrianCategory="pedestrian"><BoundingBox>
<Center x="0" y="0" z="0.9"/><Dimensions width="0.5" length="0.6" height="1.8"/></BoundingBox><Properties/>
</Pedestrian>"""


def _speed(v):
    return (f'<PrivateAction><LongitudinalAction><SpeedAction><SpeedActionDynamics dynamicsShape="step" value="0" '
            f'dynamicsDimension="time"/><SpeedActionTarget><AbsoluteTargetSpeed value="{v}"/></SpeedActionTarget>'
            "</SpeedAction></LongitudinalAction></PrivateAction>")


def _teleport(pos):
    return f"<PrivateAction><TeleportAction><Position>{pos}</Position></TeleportAction></PrivateAction>"


def scenario(tmp_path, *, init: dict, actions: str, owner: str = "Target", at: float = 1.0, stop: float = 12.0,
             entities: dict | None = None, global_init: str = "", name="t.xosc", rev=2, xodr=XODR):
    """A scenario file: ``init`` maps entity -> its Init private actions; one event of ``owner`` doing
    ``actions`` (the Event's Action elements' content) when SimulationTime > ``at``."""
    entities = entities or {"Ego": CAR.format(name="ego", cx=1.4, length=5.0),
                            "Target": CAR.format(name="target", cx=1.3, length=4.6)}
    ents = "".join(f'<ScenarioObject name="{n}">{body}</ScenarioObject>' for n, body in entities.items())
    privs = "".join(f'<Private entityRef="{n}">{acts}</Private>' for n, acts in init.items())
    acts = "".join(f'<Action name="a{i}">{a}</Action>' for i, a in enumerate(actions if isinstance(actions, list) else [actions]))
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<OpenSCENARIO><FileHeader revMajor="1" revMinor="{rev}" date="2026-12-02T00:00:00" description="test" author="simgen"/>
<ParameterDeclarations/><CatalogLocations/>
<RoadNetwork><LogicFile filepath="{xodr}"/></RoadNetwork>
<Entities>{ents}</Entities>
<Storyboard><Init><Actions>{global_init}{privs}</Actions></Init>
<Story name="s"><Act name="act"><ManeuverGroup maximumExecutionCount="1" name="mg"><Actors selectTriggeringEntities="false">
<EntityRef entityRef="{owner}"/></Actors><Maneuver name="m"><Event name="ev" priority="overwrite">{acts}
<StartTrigger><ConditionGroup><Condition name="c" delay="0" conditionEdge="none"><ByValueCondition>
<SimulationTimeCondition value="{at}" rule="greaterThan"/></ByValueCondition></Condition></ConditionGroup></StartTrigger>
</Event></Maneuver></ManeuverGroup><StartTrigger><ConditionGroup><Condition name="as" delay="0" conditionEdge="none">
<ByValueCondition><SimulationTimeCondition value="0" rule="greaterThan"/></ByValueCondition></Condition></ConditionGroup>
</StartTrigger></Act></Story>
<StopTrigger><ConditionGroup><Condition name="end" delay="0" conditionEdge="none"><ByValueCondition>
<SimulationTimeCondition value="{stop}" rule="greaterThan"/></ByValueCondition></Condition></ConditionGroup></StopTrigger>
</Storyboard></OpenSCENARIO>"""
    f = tmp_path / name
    f.write_text(text)
    return f


def _lanepos(s, lane=-1, offset=0.0):
    return f'<LanePosition roadId="1" laneId="{lane}" s="{s}" offset="{offset}"/>'


def _run(w, until):
    out = {}
    while w.time_s < until - 1e-9:
        w.step()
        out[round(w.time_s, 2)] = {a.name: (a.x, a.y, a.speed, a.yaw) for a in w.actors}
    return out


# ------------------------------------------------------------------------------------------------------ positions
def test_road_and_relative_object_positions(tmp_path):
    """RoadPosition (s, t from the reference line) and RelativeObjectPosition (dx ahead, dy left of the entity)
    teleports; the box centre is Center.x ahead of the reference point."""
    f = scenario(tmp_path, init={
        "Ego": _teleport('<RoadPosition roadId="1" s="100" t="-1.535"/>') + _speed(10),
        "Target": _teleport('<RelativeObjectPosition entityRef="Ego" dx="20" dy="3.07"/>') + _speed(10)},
        actions=_speed(10))
    w = _world(f)
    ego, tgt = w.actors
    assert (ego.x, ego.y) == pytest.approx((100 + 1.4, LANE), abs=1e-3)
    assert (tgt.x, tgt.y) == pytest.approx((100 + 20 + 1.3, LANE + 3.07), abs=1e-3)


# ------------------------------------------------------------------------------------------------------ lane offset
def test_lane_offset_sinusoidal_max_lateral_acc(tmp_path):
    """issue 12: LaneOffsetAction, absolute target 1.0 m (towards +t: the left of lane -1), sinusoidal at
    maxLateralAcc 0.5: by hand the offset is 1/2(1 - cos(pi t/T)) with peak acceleration pi^2/(2 T^2) = 0.5, so
    T = pi s; half-way at T/2.  Before: refused."""
    off = ('<PrivateAction><LateralAction><LaneOffsetAction continuous="false"><LaneOffsetActionDynamics '
           'dynamicsShape="sinusoidal" maxLateralAcc="0.5"/><LaneOffsetTarget><AbsoluteTargetLaneOffset value="1.0"/>'
           "</LaneOffsetTarget></LaneOffsetAction></LateralAction></PrivateAction>")
    f = scenario(tmp_path, init={"Ego": _teleport(_lanepos(20)) + _speed(10), "Target": _teleport(_lanepos(60)) + _speed(10)},
                 actions=off, at=1.0)
    w = _world(f)
    tr = _run(w, 6.0)
    t0 = {k: t for t, _, k in w.event_log}["ev"]
    T = math.pi
    tick = lambda t: round(round(t / w.dt) * w.dt, 2)  # noqa: E731
    # the vehicle steers onto its lateral target with simgen's pure-pursuit (9 m look-ahead at 10 m/s): it crosses
    # the half-way offset less than 1 s after the target does, and settles on the full offset
    t_half = next(t for t in sorted(tr) if tr[t]["Target"][1] >= LANE + 0.5)
    assert t0 + T / 2 <= t_half <= t0 + T / 2 + 1.0
    assert tr[tick(t0 + T + 1.5)]["Target"][1] == pytest.approx(LANE + 1.0, abs=0.05)
    assert tr[tick(t0 + T + 1.5)]["Target"][2] == pytest.approx(10.0)


# ------------------------------------------------------------------------------------------------------ trajectories
def test_follow_trajectory_polyline_with_timing(tmp_path):
    """FollowTrajectoryAction, a polyline of world points with absolute vertex times: the walker is where the
    times put it (linear between the vertices)."""
    verts = [(50.0, -6.0, 1.0), (50.0, 4.0, 6.0), (40.0, 4.0, 11.0)]  # (x, y, time): 2 m/s
    poly = "".join(f'<Vertex time="{t}"><Position><WorldPosition x="{x}" y="{y}"/></Position></Vertex>' for x, y, t in verts)
    traj = (f'<PrivateAction><RoutingAction><FollowTrajectoryAction><TrajectoryRef><Trajectory name="tr" closed="false">'
            f'<Shape><Polyline>{poly}</Polyline></Shape></Trajectory></TrajectoryRef><TimeReference><Timing '
            'domainAbsoluteRelative="absolute" scale="1" offset="0"/></TimeReference><TrajectoryFollowingMode '
            'followingMode="position"/></FollowTrajectoryAction></RoutingAction></PrivateAction>')
    f = scenario(tmp_path, init={"Ego": _teleport(_lanepos(10)) + _speed(0),
                                 "walker": _teleport('<WorldPosition x="50" y="-6" h="1.5708"/>')},
                 entities={"Ego": CAR.format(name="ego", cx=1.4, length=5.0), "walker": PED}, owner="walker",
                 actions=traj, at=0.9)
    w = _world(f)
    tr = _run(w, 10.0)
    for t in (3.0, 6.0, 8.5):
        k = min(range(len(verts) - 1), key=lambda i: 0 if verts[i][2] <= t <= verts[i + 1][2] else 1)
        (x0, y0, t0), (x1, y1, t1) = verts[k], verts[k + 1]
        u = (t - t0) / (t1 - t0)
        assert tr[t]["walker"][:2] == pytest.approx((x0 + u * (x1 - x0), y0 + u * (y1 - y0)), abs=0.05), t


def test_follow_trajectory_clothoid(tmp_path):
    """A clothoid from (60, -1.535) heading +x with curvature 0 and curvaturePrime 0.002 over 40 m: by hand (the
    Fresnel integrals) its end is at x0 + a sqrt(pi) C(L / (a sqrt(pi))), y0 + a sqrt(pi) S(...), a =
    1/sqrt(curvaturePrime); the car (reference point on it) ends near there, heading curvaturePrime L^2 / 2."""
    from scipy.special import fresnel

    k1, length = 0.002, 40.0
    clo = (f'<PrivateAction><RoutingAction><FollowTrajectoryAction><TrajectoryRef><Trajectory name="c" closed="false">'
           f'<Shape><Clothoid curvature="0" curvaturePrime="{k1}" length="{length}"><Position>'
           f'<WorldPosition x="60" y="{LANE}" h="0"/></Position></Clothoid></Shape></Trajectory></TrajectoryRef>'
           '<TimeReference><None/></TimeReference><TrajectoryFollowingMode followingMode="follow"/>'
           "</FollowTrajectoryAction></RoutingAction></PrivateAction>")
    f = scenario(tmp_path, init={"Ego": _teleport(_lanepos(10)) + _speed(0),
                                 "Target": _teleport(f'<WorldPosition x="{60 - 1.3 - 5}" y="{LANE}" h="0"/>') + _speed(5)},
                 actions=clo, at=0.0)
    w = _world(f)
    a = 1 / math.sqrt(k1)
    S, C = fresnel(length / (a * math.sqrt(math.pi)))
    x_end, y_end = 60 + a * math.sqrt(math.pi) * C, LANE + a * math.sqrt(math.pi) * S
    best = math.inf
    tgt = w.actors[1]
    for _ in range(int(12 / w.dt)):
        w.step()
        rx, ry = tgt.x - 1.3 * math.cos(tgt.yaw), tgt.y - 1.3 * math.sin(tgt.yaw)  # its reference point
        best = min(best, math.hypot(rx - x_end, ry - y_end))
    # the path it was given passes through the end (pyclothoids' curve vs the Fresnel integrals); the car itself,
    # steering by pure pursuit round a curvature of up to 0.08 /m, passes within 0.5 m
    _, lat = tgt.path.project(np.array([x_end, y_end]))
    assert abs(float(lat)) < 0.02
    assert best < 0.5
    assert {k for _, _, k in w.event_log} >= {"ev"}


def test_speed_and_trajectory_in_one_event(tmp_path):
    """A SpeedAction (linear, rate 1 m/s^2 to 2 m/s) and a FollowTrajectoryAction without timing in one Event:
    the walker speeds up as the SpeedAction says, along the trajectory."""
    poly = "".join(f'<Vertex><Position><WorldPosition x="{x}" y="{y}"/></Position></Vertex>' for x, y in ((80, -8), (80, 8)))
    traj = (f'<PrivateAction><RoutingAction><FollowTrajectoryAction><Trajectory name="tr" closed="false">'
            f'<ParameterDeclarations/><Shape><Polyline>{poly}</Polyline></Shape></Trajectory><TimeReference><None/>'
            '</TimeReference><TrajectoryFollowingMode followingMode="follow"/></FollowTrajectoryAction></RoutingAction>'
            "</PrivateAction>")
    sp = ('<PrivateAction><LongitudinalAction><SpeedAction><SpeedActionDynamics dynamicsShape="linear" value="1" '
          'dynamicsDimension="rate"/><SpeedActionTarget><AbsoluteTargetSpeed value="2"/></SpeedActionTarget>'
          "</SpeedAction></LongitudinalAction></PrivateAction>")
    f = scenario(tmp_path, init={"Ego": _teleport(_lanepos(10)) + _speed(0),
                                 "walker": _teleport('<WorldPosition x="80" y="-8" h="1.5708"/>')},
                 entities={"Ego": CAR.format(name="ego", cx=1.4, length=5.0), "walker": PED}, owner="walker",
                 actions=[sp, traj], at=0.95, rev=1)
    w = _world(f)
    tr = _run(w, 6.0)
    t0 = {k: t for t, _, k in w.event_log}["ev"]
    # distance walked: 1/2 t^2 for t <= 2 s, then 2 + 2 (t - 2)
    for t in (1.0, 2.0, 4.0):
        d = 0.5 * t * t if t <= 2 else 2 + 2 * (t - 2)
        x, y = tr[round(t0 + t, 2)]["walker"][:2]
        assert (x, y) == pytest.approx((80, -8 + d), abs=0.12), t


# ------------------------------------------------------------------------------------------------------ environment
def test_environment_action_to_weather(tmp_path):
    """EnvironmentAction in Init: the sun's elevation/azimuth (rad) -> degrees; 4 oktas -> cloudiness 50; a fog
    visual range V -> fog_density with simgen's fog (extinction 0.06/m (d/100)^1.5 = ln 20 / V); 10 mm/h of rain
    -> precipitation 50 (20 mm/h = 100)."""
    env = ('<GlobalAction><EnvironmentAction><Environment name="e"><TimeOfDay animation="false" '
           'dateTime="2026-06-01T18:30:00"/><Weather fractionalCloudCover="fourOktas"><Sun azimuth="1.0" '
           'elevation="0.2" illuminance="20000"/><Fog visualRange="200"/><Precipitation precipitationType="rain" '
           'precipitationIntensity="10"/></Weather><RoadCondition frictionScaleFactor="1.0"/></Environment>'
           "</EnvironmentAction></GlobalAction>")
    f = scenario(tmp_path, init={"Ego": _teleport(_lanepos(10)) + _speed(5), "Target": _teleport(_lanepos(40)) + _speed(5)},
                 actions=_speed(5), global_init=env)
    from simgen.spec.scenario import load_scenario_source

    raw = load_scenario_source(f).raw
    wx = raw["weather"]
    assert wx["sun_altitude_angle"] == pytest.approx(math.degrees(0.2))
    assert wx["sun_azimuth_angle"] == pytest.approx(math.degrees(1.0))
    assert wx["cloudiness"] == pytest.approx(50.0)
    d = wx["fog_density"]
    assert 0.06 * (d / 100) ** 1.5 == pytest.approx(math.log(20) / 200)
    assert wx["precipitation"] == pytest.approx(50.0)
    assert "time_of_day_h" not in raw  # the Sun element sets the sun
    assert "friction" in raw["description"]  # recorded, not silently dropped
    bad = f.read_text().replace('precipitationType="rain"', 'precipitationType="snow"')
    f.write_text(bad)
    with pytest.raises(InputError, match="snow"):
        load_scenario_source(f)


# ------------------------------------------------------------------------------------------------------ signals
@pytest.mark.parametrize("state,expect", [("red", "red"), ("off;off;on", "green"), ("off;on;off", "yellow")])
def test_traffic_signal_state_action(tmp_path, state, expect):
    """issue 12: TrafficSignalStateAction sets signal 290 of multi_intersections.xodr (it controls lane 1 of road
    196) to the state from the event's time on; the owner's behaviour is not replaced.  Before: refused."""
    act = ('<GlobalAction><InfrastructureAction><TrafficSignalAction><TrafficSignalStateAction name="290" '
           f'state="{state}"/></TrafficSignalAction></InfrastructureAction></GlobalAction>')
    f = scenario(tmp_path, init={"Ego": _teleport('<LanePosition roadId="196" laneId="1" s="60" offset="0"/>') + _speed(5),
                                 "Target": _teleport('<LanePosition roadId="196" laneId="1" s="40" offset="0"/>') + _speed(5)},
                 actions=act, at=1.0, xodr=(CORPUS.parent / "xodr" / "multi_intersections.xodr").resolve())
    w = _world(f)
    for _ in range(int(3 / w.dt)):
        w.step()
    t_ev = {k: t for t, _, k in w.event_log}["ev"]
    assert t_ev == pytest.approx(1.0 + w.dt)
    assert w.light_states()["tl_290"] == expect and w.light_states(2.0)["tl_290"] == expect
    assert w.actors[1].behaviour.type == "lane_follow"  # not replaced by the event


# ------------------------------------------------------------------------------------------------------ refusals
def test_unsupported_still_refused_with_path(tmp_path):
    """Anything unsupported is one error with the element path (a TrafficSignalControllerAction here)."""
    act = ('<GlobalAction><InfrastructureAction><TrafficSignalAction><TrafficSignalControllerAction '
           'trafficSignalControllerRef="c1" phase="p"/></TrafficSignalAction></InfrastructureAction></GlobalAction>')
    f = scenario(tmp_path, init={"Ego": _teleport(_lanepos(10)) + _speed(5), "Target": _teleport(_lanepos(40)) + _speed(5)},
                 actions=act)
    from simgen.spec.scenario import load_scenario_source

    with pytest.raises(InputError) as e:
        load_scenario_source(f)
    assert e.value.key.startswith("Storyboard/Story[1]/Act[1]/ManeuverGroup[1]/Maneuver[1]/Event[1]/Action[1]/GlobalAction")


# ------------------------------------------------------------------------------------------------------ batch plans
def test_parameter_set_is_a_batch_plan():
    """cut-in_parameter_set.xosc: 2 value sets x EgoSpeed {70, 110} x TargetSpeedFactor 1.1..1.5 step 0.2 = 12
    runs, the last axis fastest; the second value set leaves HostVehicle at its declaration.  Each run's World
    has the ego at EgoSpeed / 3.6 and the target's catalog size."""
    from simgen.batch.plan import load_plan
    from simgen.spec.scenario import load_scenario_source
    from tests.simgen.test_openscenario import _params

    plan = load_plan(CORPUS / "cut-in_parameter_set.xosc")
    host = _params(CORPUS / "cut-in.xosc")["HostVehicle"]
    expect = [(h, t, e, f) for h, t in (("car_blue", "car_yellow"), (host, "van_red")) for e in (70.0, 110.0)
              for f in (1.1, 1.3, 1.5)]
    got = []
    for job in plan.jobs:
        assert job.episodes == 1 and job.scenario == str((CORPUS / "cut-in.xosc").resolve())
        p = load_scenario_source(job.scenario, list(job.overrides)).raw["parameters"]
        got.append((p["HostVehicle"], p["TargetVehicle"], p["EgoSpeed"], p["TargetSpeedFactor"]))
    assert [(h, t, e, pytest.approx(f)) for h, t, e, f in got] == expect
    cat = ET.parse(CORPUS / "Catalogs" / "Vehicles" / "VehicleCatalog.xosc").getroot()
    van = next(v for v in cat.iter("Vehicle") if v.get("name") == "van_red").find("BoundingBox/Dimensions")
    w = _world(plan.jobs[9].scenario, plan.jobs[9].overrides)
    assert w.actors[0].speed == pytest.approx(110 / 3.6)
    assert w.actors[1].dims[0] == pytest.approx(float(van.get("length")))


def _distribution(tmp_path, body: str, name="d.xosc", scenario_file=None) -> object:
    f = tmp_path / name
    f.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<OpenSCENARIO><FileHeader revMajor="1" revMinor="2" date="2026-12-02T00:00:00" description="d" author="simgen"/>
<ParameterValueDistribution><ScenarioFile filepath="{scenario_file or CORPUS / 'cut-in.xosc'}"/>{body}
</ParameterValueDistribution></OpenSCENARIO>""")
    return f


def test_stochastic_distribution_is_seeded_and_in_range(tmp_path):
    """Stochastic: numberOfTestRuns runs, each drawing a uniform EgoSpeed in its Range and a truncated normal
    factor; the same file gives the same values (randomSeed), another seed others."""
    from simgen.spec.xosc_batch import runs

    body = ('<Stochastic numberOfTestRuns="6" randomSeed="7"><StochasticDistribution parameterName="EgoSpeed">'
            '<UniformDistribution><Range lowerLimit="60" upperLimit="80"/></UniformDistribution></StochasticDistribution>'
            '<StochasticDistribution parameterName="TargetSpeedFactor"><NormalDistribution expectedValue="1.3" '
            'variance="0.01"><Range lowerLimit="1.2" upperLimit="1.4"/></NormalDistribution></StochasticDistribution>'
            '</Stochastic>')
    f = _distribution(tmp_path, body)
    _, a = runs(f)
    _, b = runs(f)
    assert a == b and len(a) == 6
    ego = [float(r["EgoSpeed"]) for r in a]
    fac = [float(r["TargetSpeedFactor"]) for r in a]
    assert all(60 <= v <= 80 for v in ego) and len(set(ego)) == 6
    assert all(1.2 <= v <= 1.4 for v in fac)
    _, c = runs(_distribution(tmp_path, body.replace('randomSeed="7"', 'randomSeed="8"'), "d2.xosc"))
    assert c != a


def test_simgen_batch_on_a_distribution_file(tmp_path):
    """`simgen batch FILE.xosc --out DIR`: one episode per run, each with its parameter values (index.csv)."""
    src = (CORPUS / "cut-in.xosc").read_text()
    src = src.replace('"../xodr/', f'"{CORPUS.parent}/xodr/').replace('"../xosc/Catalogs', f'"{CORPUS}/Catalogs')
    import re

    short = re.sub(r"(<Storyboard>.*)<StopTrigger>.*?</StopTrigger>", r"\1<StopTrigger><ConditionGroup><Condition "
                   r'name="e" delay="0" conditionEdge="none"><ByValueCondition><SimulationTimeCondition value="0.05" '
                   r'rule="greaterThan"/></ByValueCondition></Condition></ConditionGroup></StopTrigger>', src, flags=re.S)
    scen = tmp_path / "cut-in-short.xosc"
    scen.write_text(short)
    f = _distribution(tmp_path, '<Deterministic><DeterministicSingleParameterDistribution parameterName="EgoSpeed">'
                      '<DistributionSet><Element value="50"/><Element value="72"/></DistributionSet>'
                      "</DeterministicSingleParameterDistribution></Deterministic>", scenario_file=scen)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "batch", str(f), "--out", str(out), "--workers", "1",
                        "--no-progress"], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert [row["status"] for row in rows] == ["done", "done"]
    assert sorted(float(row["param.EgoSpeed"]) for row in rows) == [50.0, 72.0]
    from simgen.io.episode import Episode

    for row in rows:  # the ego's speed at frame 0 is the run's EgoSpeed (km/h in the file) / 3.6
        with Episode(out / row["path"]) as ep:
            v = float(np.linalg.norm(ep.f["actors/velocity"][0, 0, :2]))
        assert v == pytest.approx(float(row["param.EgoSpeed"]) / 3.6, abs=1e-3)
