"""OpenDRIVE maps on the builtin backend (issue 10): every corpus map loads, renders and runs; lanes, elevation,
junction connections, signals and placements are checked against independent views of the same facts (the XML
itself, CARLA's parser queried directly, the builtin maps' own lanes through an export round trip)."""
from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

carla = pytest.importorskip("carla")

from simgen.classes import ROADS, SIDEWALKS, TERRAIN  # noqa: E402
from simgen.errors import InputError  # noqa: E402
from simgen.spec.scenario import concretise, load_scenario_source  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = [ROOT / ".." / "shared" / "corpus", ROOT / ".." / ".." / "shared" / "corpus"]
CORPUS = next((p.resolve() for p in _CANDIDATES if (p / "esmini").is_dir()), None)
XODR = CORPUS / "esmini" / "resources" / "xodr" if CORPUS else None
MAP_NAMES = ["crest-curve", "curve_r100", "curves_elevation", "e6mini", "fabriksgatan", "multi_intersections",
             "straight_500m", "straight_500m_signs"]
pytestmark = pytest.mark.skipif(CORPUS is None, reason="the esmini corpus (../shared/corpus) is not here")


def xodr(name: str) -> str:
    return str(XODR / f"{name}.xodr")


def load(name: str):
    from simgen.world.xodr import load_xodr

    return load_xodr(xodr(name))


def world_for(tmp_path, text: str, seed: int = 0):
    from simgen.sim.world import World

    p = tmp_path / "s.yaml"
    p.write_text(text)
    src = load_scenario_source(p)
    spec, _ = concretise(src, rng=np.random.default_rng(seed))
    return World(spec, rng=np.random.default_rng(seed), source=str(p))


def simgen(*args, cwd=None):
    import os

    return subprocess.run([sys.executable, "-m", "simgen.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


# ---------------------------------------------------------------------------------------------------------------
# Loading and geometry
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MAP_NAMES)
def test_every_corpus_map_loads_with_lanes_on_its_road_surface(name):
    """Each map loads; every drivable lane's centre is road surface (per the ground mesh) at the lane's own
    height, and CARLA's parser, asked directly, puts that (road, lane, s) at the same place."""
    m = load(name)
    cmap = carla.Map(name, Path(xodr(name)).read_text())
    assert any(ln.kind == "driving" for ln in m.lanes.values())
    for ln in m.lanes.values():
        xy = ln.centre.points
        s = np.linspace(0.3, ln.centre.length - 0.3, 60)
        x, y, _ = ln.centre.pose_at(s)
        inner = np.stack([x, y], 1)
        sem = m.surface_at(inner)
        assert np.mean(sem == ROADS) > 0.98, (ln.id, np.unique(sem))
        z = m.ground_height(inner)
        assert np.allclose(z, np.interp(s, ln.centre.vertex_s, ln.z), atol=0.025), ln.id  # (paint: +1-2 cm)
        road, section, lane = ln.odr
        k = len(xy) // 2
        w = cmap.get_waypoint_xodr(road, lane, float(ln.s_road[k]))
        loc = w.transform.location
        assert np.allclose([loc.x, -loc.y, loc.z], [xy[k, 0], xy[k, 1], ln.z[k]], atol=1e-3)
    lo, hi = m.bounds()
    assert m.surface_at(np.array([lo + 1.0]))[0] == TERRAIN


def _xml_elevation(road_el, s: float) -> float:
    els = road_el.find("elevationProfile").findall("elevation")
    e = [x for x in els if float(x.get("s")) <= s + 1e-9][-1]
    ds = s - float(e.get("s"))
    a, b, c, d = (float(e.get(k)) for k in "abcd")
    return a + b * ds + c * ds ** 2 + d * ds ** 3


@pytest.mark.parametrize("name", ["crest-curve", "curves_elevation", "e6mini"])
def test_ground_height_is_the_xml_elevation_profile(name):
    """issue 10: the road surface height under a lane centre is the road's <elevation> cubic at that s (read from
    the XML here, independently of the parser)."""
    m = load(name)
    root = ET.parse(xodr(name)).getroot()
    roads = {int(r.get("id")): r for r in root.findall("road")}
    checked = 0
    rise = 0.0
    for ln in m.lanes.values():
        if ln.kind != "driving":
            continue
        arc = np.linspace(0.3, ln.centre.length - 0.3, 400)  # (the lane ends lie on the mesh's open edge)
        s_road = np.interp(arc, ln.centre.vertex_s, ln.s_road)
        want = np.array([_xml_elevation(roads[ln.odr[0]], s) for s in s_road])
        x, y, _ = ln.centre.pose_at(arc)
        got = m.ground_height(np.stack([x, y], 1))
        assert np.allclose(got, want, atol=0.02), (ln.id, np.abs(got - want).max())
        rise = max(rise, float(np.ptp(want)))
        checked += 1
    assert checked >= 2 and rise > 3.0


def test_junction_connections_match_the_xml():
    """The successors of each approach lane are exactly the connecting roads the <junction> links it to."""
    for name in ("fabriksgatan", "multi_intersections"):
        m = load(name)
        root = ET.parse(xodr(name)).getroot()
        want: dict[tuple[int, int], set[int]] = {}
        for j in root.findall("junction"):
            for c in j.findall("connection"):
                for ll in c.findall("laneLink"):
                    want.setdefault((int(c.get("incomingRoad")), int(ll.get("from"))), set()).add(int(c.get("connectingRoad")))
        checked = 0
        for ln in m.lanes.values():
            if ln.kind != "driving" or not any(m.lanes[s].kind == "connector" for s in ln.successors.values()):
                continue
            got = {m.lanes[s].odr[0] for s in ln.successors.values()}
            assert got == want[(ln.odr[0], ln.odr[2])], ln.id
            checked += 1
        assert checked >= 4, name


def test_turn_labels_follow_the_connector_heading():
    m = load("fabriksgatan")
    seen = set()
    for ln in m.lanes.values():
        if len(ln.successors) < 2:
            continue
        for turn, sid in ln.successors.items():
            c = m.lanes[sid].centre
            y0, y1 = c.pose_at(np.array([0.0, c.length]))[2]
            d = math.degrees(math.atan2(math.sin(y1 - y0), math.cos(y1 - y0)))
            want = "left" if d > 30 else "right" if d < -30 else "straight"
            assert turn.split("_")[0] == want, (ln.id, turn, d)
            seen.add(want)
    assert seen == {"left", "right", "straight"}


def test_sidewalks_are_raised_and_sidewalk_surface():
    m = load("fabriksgatan")
    assert len(m.sidewalks) >= 8
    for sw in m.sidewalks:
        x, y, _ = sw.centre.pose_at(np.linspace(1.0, sw.centre.length - 1.0, 40))
        p = np.stack([x, y], 1)
        assert np.mean(m.surface_at(p) == SIDEWALKS) > 0.95, sw.id
        road = m.ground_height(p) - 0.15
        assert np.all(road > -0.05) and np.all(road < 0.05)  # fabriksgatan is flat: sidewalk 0.15 m up


@pytest.mark.parametrize("builtin", ["straight", "curve", "intersection"])
def test_builtin_maps_round_trip_through_their_opendrive_export(tmp_path, builtin):
    """Export a builtin map to OpenDRIVE, import it again: every builtin lane comes back where it was (its centre
    line within 2 cm, same width, same direction), and junction approaches lead to the same exits."""
    from simgen.world.opendrive import build_layout, export_opendrive
    from simgen.world.roads import get_map
    from simgen.world.xodr import load_xodr

    p = tmp_path / f"{builtin}.xodr"
    export_opendrive(builtin, p)
    orig, back, layout = get_map(builtin), load_xodr(p), build_layout(builtin)
    by_odr: dict[tuple[int, int], list] = {}
    for ln in back.lanes.values():
        by_odr.setdefault((ln.odr[0], ln.odr[2]), []).append(ln)
    matched = {}
    for lid, ln in orig.lanes.items():
        ref = layout.lane_ref(lid)
        cands = by_odr.get((ref.road_id, ref.lane_id), [])
        assert cands, lid
        s = np.linspace(0.0, ln.centre.length, 25)
        x, y, yaw = ln.centre.pose_at(s)
        pts = np.stack([x, y], 1)
        best = None
        for c in cands:
            cs, lat = c.centre.project(pts)
            inside = (cs >= -0.05) & (cs <= c.centre.length + 0.05)
            if inside.all():
                best = c
                break
        assert best is not None, lid
        cs, lat = best.centre.project(pts)
        assert np.abs(lat).max() < 0.02, (lid, np.abs(lat).max())
        yb = best.centre.pose_at(cs)[2]
        assert np.abs(np.arctan2(np.sin(yb - yaw), np.cos(yb - yaw))).max() < 0.02, lid
        assert abs(best.width_m - ln.width_m) < 1e-3, lid
        matched[lid] = best.id
    if builtin == "intersection":
        for lid, ln in orig.lanes.items():
            if ln.kind != "driving" or not ln.successors:
                continue
            want = {orig.lanes[c].successors["straight"] for c in ln.successors.values()}
            got = set()
            for c in back.lanes[matched[lid]].successors.values():
                got |= set(back.lanes[c].successors.values())
            assert got == {matched[w] for w in want}, lid


# ---------------------------------------------------------------------------------------------------------------
# Running: junctions, traffic, lights, placements
# ---------------------------------------------------------------------------------------------------------------

FAB = """
name: t
map: {map}
duration_s: 20
ego:
  place: {{road: 2, lane_id: -1, s_m: 260}}
  speed_mps: 8
  behaviour: {{type: lane_follow, speed_mps: 8, turns: [{turn}]}}
traffic: {{vehicles: 8, pedestrians: 4, radius_m: 150}}
"""


@pytest.mark.parametrize("turn,exit_road", [("left", 1), ("right", 3), ("straight", 0)])
def test_ego_drives_through_the_junction_onto_the_exit_road(tmp_path, turn, exit_road):
    """fabriksgatan: from road 2 the ego turns as told and ends up on the exit road the junction links that turn
    to (read from the XML), inside its lane; background vehicles stay on their lanes."""
    w = world_for(tmp_path, FAB.format(map=xodr("fabriksgatan"), turn=turn))
    root = ET.parse(xodr("fabriksgatan")).getroot()
    road_of = {int(r.get("id")): r for r in root.findall("road")}
    max_dev = 0.0
    ego = w.actors[0]
    visited = []
    for _ in range(int(14 / w.dt)):
        w.step()
        for a in w.actors:
            if a.kind.vehicle and a.path is not None and not a.crashed:
                max_dev = max(max_dev, abs(float(a.path.project(np.array([a.x, a.y]))[1]) - a.lateral))
        lane = w.map.lane_at(np.array([ego.x, ego.y]))[0]
        if lane is not None and (not visited or visited[-1] != lane):
            visited.append(lane)
    roads = [w.map.lanes[l].odr[0] for l in visited]
    kinds = [w.map.lanes[l].kind for l in visited]
    assert roads[0] == 2 and "connector" in kinds and roads[-1] == exit_road, visited
    assert not w.collisions_total
    # the connecting road used leads to that exit road in the XML
    conn = next(l for l in w.map.lane_sequence(ego.lane, [turn]) if l.kind == "connector")
    link = road_of[conn.odr[0]].find("link")
    ends = {int(e.get("elementId")) for e in link if e.get("elementType") == "road"}
    assert exit_road in ends
    assert sum(a.kind.vehicle for a in w.actors) >= 5
    assert max_dev < 1.2, max_dev  # inside the lane (pure pursuit cuts the tight junction turns a little)


def test_traffic_lights_switch_by_junction_and_cars_stop_at_red(tmp_path):
    """multi_intersections: every light shows green and red over a cycle, never two groups of one junction green
    at once; an ego approaching a red light stops before its stop line and goes on when it turns green."""
    m = load("multi_intersections")
    assert len(m.traffic_lights) >= 20
    text = f"""
name: t
map: {xodr('multi_intersections')}
duration_s: 60
ego:
  place: {{lane: LANE, s_m: 5}}
  speed_mps: 8
  behaviour: {{type: lane_follow, speed_mps: 8}}
"""
    tl = m.traffic_lights[0]
    lane = m.lanes[tl.lanes[0]]
    w = world_for(tmp_path, text.replace("LANE", lane.id))
    seen = {t.id: set() for t in m.traffic_lights}
    period = max(t.n_phases for t in m.traffic_lights) * sum(w.spec.traffic_light_cycle_s)
    by_junction: dict = {}
    for t in m.traffic_lights:
        j = next(m.lanes[s].junction for s in m.lanes[t.lanes[0]].successors.values())
        by_junction.setdefault(j, set()).add(t.group)
    assert all(len(g) >= 2 for g in by_junction.values())
    for ts in np.arange(0.0, period, 0.5):
        st = w.light_states(float(ts))
        for k, v in st.items():
            seen[k].add(v)
        for j, groups in by_junction.items():
            green = {t.group for t in m.traffic_lights if st[t.id] == "green" and t.group in groups}
            assert len(green) <= 1, (ts, j, green)
    assert all({"green", "red"} <= s for s in seen.values())
    # the ego starts on an approach lane whose light is red until it arrives: it stops before the line, then goes
    sig = lane.signal
    assert sig is not None and lane.stop_s is not None
    ego = w.actors[0]
    min_red_speed, crossed_on_red, went = np.inf, False, False
    for _ in range(int(40 / w.dt)):
        w.step()
        red = w.light_states()[sig] == "red"
        front = ego.s + ego.dims[0] / 2
        if red and ego.s < lane.stop_s:
            min_red_speed = min(min_red_speed, ego.speed) if front > lane.stop_s - 3.0 else min_red_speed
            crossed_on_red |= front > lane.stop_s + 0.5
        went |= ego.s > lane.centre.length + 5
    assert min_red_speed < 0.5 and not crossed_on_red and went


def test_placements_in_opendrive_terms(tmp_path):
    """road/lane_id/s_m/offset_m lands where CARLA's parser puts that lane position; before_junction_m is that far
    before the connector along the route; conflict_of is where the two routes cross."""
    path = xodr("fabriksgatan")
    text = f"""
name: t
map: {path}
ego:
  place: {{road: 2, lane_id: -1, s_m: 200, offset_m: 0.5}}
  speed_mps: 5
  behaviour: {{type: lane_follow, speed_mps: 5, turns: [left]}}
actors:
  - id: a
    kind: car
    place: {{relative_to: ego, before_junction_m: 10}}
    behaviour: {{type: lane_follow, turns: [left]}}
  - id: b
    kind: car
    place: {{road: 1, lane_id: 1, s_m: 8}}
    behaviour: {{type: lane_follow, turns: [straight]}}
  - id: p
    kind: pedestrian
    place: {{conflict_of: [ego, b]}}
    behaviour: {{type: stand}}
"""
    w = world_for(tmp_path, text)
    cmap = carla.Map("f", Path(path).read_text())
    wp = cmap.get_waypoint_xodr(2, -1, 200.0)
    loc = wp.transform.location
    yaw = -math.radians(wp.transform.rotation.yaw)
    # lane -1 drives along +s: +t (OpenDRIVE left of the reference direction) is the lane's left
    want = np.array([loc.x, -loc.y]) + 0.5 * np.array([-math.sin(yaw), math.cos(yaw)])
    ego = w.actors[0]
    assert np.allclose([ego.x, ego.y], want, atol=0.02)
    assert abs(ego.z - loc.z) < 0.02
    a = w.actors[1]
    conn = next(l for l in w.map.lane_sequence(ego.lane, ["left"]) if l.kind == "connector")
    s_conn, _ = conn.centre.project(np.array([a.x, a.y]))
    s_lane, _ = w.map.lanes[a.lane].centre.project(np.array([a.x, a.y]))
    assert abs((w.map.lanes[a.lane].centre.length - s_lane) - 10.0) < 0.1
    p = w.actors[3]
    b = w.actors[2]
    _, lat_e = ego.path.project(np.array([p.x, p.y]))
    _, lat_b = b.path.project(np.array([p.x, p.y]))
    assert abs(lat_e) < 0.05 and abs(lat_b) < 0.05


@pytest.mark.parametrize("place,msg", [
    ("{road: 99, lane_id: -1, s_m: 10}", "unknown road 99"),
    ("{road: 2, lane_id: -7, s_m: 10}", "road 2 of"),
    ("{road: 2, lane_id: -1, s_m: 400}", "length of road 2"),
])
def test_bad_placement_is_one_line_naming_road_and_lane(tmp_path, place, msg, simgen_cli):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: t\nmap: {xodr('fabriksgatan')}\nego: {{place: {place}}}\n")
    r = simgen_cli("run", str(p), "--out", str(tmp_path / "out"), "--no-progress", cwd=ROOT)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("simgen")]
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert "ego.place" in lines[0] and str(p) in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_map_files_are_one_line_errors(tmp_path, simgen_cli):
    """The first call is a real ``python -m simgen.cli`` process (exit code and stderr of the process itself); the
    others run the same ``main`` in this process (tests/conftest.py ``simgen_cli``)."""
    bad = tmp_path / "bad.xodr"
    bad.write_text("<OpenDRIVE><road id='1' length='10'>")
    r = simgen("validate", str(bad))
    assert r.returncode == 2 and "not well-formed" in r.stderr and str(bad) in r.stderr and "Traceback" not in r.stderr
    bad.write_text("<OpenDRIVE><road id='x1' length='10'><lanes><laneSection s='0'/></lanes></road></OpenDRIVE>")
    r = simgen_cli("validate", str(bad), cwd=ROOT)
    assert r.returncode == 2 and "'x1'" in r.stderr and "road" in r.stderr
    sc = tmp_path / "s.yaml"
    sc.write_text("name: t\nmap: nothere.xodr\nego: {place: {road: 1, lane_id: -1}}\n")
    r = simgen_cli("validate", str(sc), cwd=ROOT)
    assert r.returncode == 2 and "nothere.xodr" in r.stderr and "map" in r.stderr, r.stderr
    r = simgen_cli("validate", xodr("multi_intersections"), cwd=ROOT)
    assert r.returncode == 0 and "traffic lights" in r.stdout, r.stderr


def test_map_path_is_relative_to_the_scenario_file(tmp_path):
    import shutil

    d = tmp_path / "maps"
    d.mkdir()
    shutil.copy(xodr("straight_500m"), d / "road.xodr")
    sub = tmp_path / "sc"
    sub.mkdir()
    (sub / "s.yaml").write_text("name: t\nmap: ../maps/road.xodr\nego: {place: {road: 1, lane_id: -1, s_m: 50}}\n")
    src = load_scenario_source(sub / "s.yaml")
    spec, _ = concretise(src, rng=np.random.default_rng(0))
    assert Path(spec.map) == (d / "road.xodr").resolve()


def test_maps_show_prints_ids_and_draws_a_png(tmp_path, simgen_cli):
    out = tmp_path / "m.png"
    r = simgen_cli("maps", "show", xodr("multi_intersections"), "--out", str(out), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "junction 146" in r.stdout and "tl_" in r.stdout and "lane r" in r.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = simgen_cli("maps", "show", xodr("multi_intersections"), "--out", str(out), cwd=ROOT)
    assert r.returncode == 2  # no silent overwrite


def test_carla_town_name_resolves_to_the_installation_xodr(tmp_path, monkeypatch):
    import shutil

    from simgen.world.roads import get_map

    d = tmp_path / "CarlaUE4" / "Content" / "Carla" / "Maps" / "OpenDrive"
    d.mkdir(parents=True)
    shutil.copy(xodr("fabriksgatan"), d / "Town99.xodr")
    monkeypatch.setenv("SIMGEN_CARLA_ROOT", str(tmp_path))
    m = get_map("Town99")
    assert len(m.lanes) == len(load("fabriksgatan").lanes)
    # and a scenario naming the town runs on the builtin backend
    from simgen.backends.builtin import BuiltinSession
    from simgen.spec.rig import load_rig

    sc = tmp_path / "s.yaml"
    sc.write_text("name: t\nmap: Town99\nego: {place: {road: 2, lane_id: -1, s_m: 100}}\n")
    spec, _ = concretise(load_scenario_source(sc), rng=np.random.default_rng(0))
    sess = BuiltinSession(spec, load_rig(ROOT / "assets" / "rigs" / "small.yaml"), seed=np.random.SeedSequence(0),
                          source=str(sc), n_frames=1)
    assert sess.world.map.lanes.keys() == m.lanes.keys()
    sess.close()
    monkeypatch.delenv("SIMGEN_CARLA_ROOT")
    with pytest.raises(InputError, match="SIMGEN_CARLA_ROOT"):
        BuiltinSession(spec, load_rig(ROOT / "assets" / "rigs" / "small.yaml"), seed=np.random.SeedSequence(0),
                       source=str(sc), n_frames=1)


# ---------------------------------------------------------------------------------------------------------------
# Rendering and labels
# ---------------------------------------------------------------------------------------------------------------

EPISODE = """
name: t
map: {map}
duration_s: 1
ego:
  place: {{lane: {lane}, s_m: {s}}}
  speed_mps: 10
  behaviour: {{type: lane_follow, speed_mps: 10}}
actors:
  - id: lead
    kind: car
    place: {{relative_to: ego, ahead_m: 14}}
    speed_mps: 8
    behaviour: {{type: lane_follow, speed_mps: 8}}
  - id: van
    kind: van
    place: {{relative_to: ego, ahead_m: 26}}
    speed_mps: 6
    behaviour: {{type: lane_follow, speed_mps: 6}}
traffic: {{vehicles: 6, pedestrians: 4, radius_m: 80}}
"""


def _start(name):
    """A start lane and s where the first 60 m ahead climb or fall the most (elevation maps) or any long lane."""
    m = load(name)
    best = None
    for ln in m.lanes.values():
        if ln.kind != "driving" or ln.centre.length < 90:
            continue
        vs = ln.centre.vertex_s
        for s0 in np.arange(10.0, ln.centre.length - 70.0, 10.0):
            i0, i1 = np.searchsorted(vs, [s0, s0 + 40.0])
            dz = abs(float(ln.z[min(i1, len(vs) - 1)] - ln.z[i0]))
            if best is None or dz > best[0]:
                best = (dz, ln.id, float(s0))
    return best


def _pose6(st) -> np.ndarray:
    """(A,6) x, y, z, yaw, pitch, roll from the raw record fields (pitch_roll None = level)."""
    pr = np.zeros((len(st.ids), 2)) if st.pitch_roll is None else np.asarray(st.pitch_roll, float)
    return np.concatenate([np.asarray(st.pose, float), pr], axis=1)


def _T6(p6: np.ndarray, centre_h=None) -> np.ndarray:
    """(N,4,4) transforms of (N,6) poses built here with scipy (ZYX yaw, pitch, roll), independently of simgen's
    helpers; with ``centre_h`` (N,) the origin moves half that height up the body's own z axis (the box centre)."""
    from scipy.spatial.transform import Rotation

    p6 = np.atleast_2d(p6)
    T = np.tile(np.eye(4), (len(p6), 1, 1))
    T[:, :3, :3] = Rotation.from_euler("ZYX", p6[:, 3:6]).as_matrix()
    T[:, :3, 3] = p6[:, :3]
    if centre_h is not None:
        T[:, :3, 3] += T[:, :3, 2] * (np.broadcast_to(centre_h, len(p6))[:, None] / 2)
    return T


def _pose6_at(p0, p1, w):
    from simgen.geometry import wrap_angle

    out = p0 + w[:, None] * (p1 - p0)
    out[:, 3:] = p0[3:] + w[:, None] * wrap_angle(p1[3:] - p0[3:])
    return out


def _label_checks(frames):
    """Box vs mask, depth-unprojected pixels and LiDAR points in their actor's box; boxes (full orientation) are
    built here from the raw pose and pitch/roll, not by the annotator."""
    from annotators.ground_truth import annotate
    from simgen.geometry import T_BODY_FROM_OPTICAL, invert, points_in_box, transform_points

    boxes_checked = points_total = points_in = 0
    for k, f in enumerate(frames):
        lab = annotate(f)
        for name, cl in lab.cameras.items():
            ok = (cl.visible_fraction > 0.999) & (cl.truncation < 1e-6) & (cl.visible_pixels >= 30)
            for j in np.nonzero(ok)[0]:
                m, p = cl.bbox_mask[j], cl.bbox_proj[j]
                assert m[0] >= p[0] - 2 and m[1] >= p[1] - 2 and m[2] <= p[2] + 2 and m[3] <= p[3] + 2
                boxes_checked += 1
        boxes = _T6(_pose6(f.actors), f.actors.dims[:, 2])
        for name, cam in f.cameras.items():  # camera pixels of an actor, unprojected with depth, are in its box
            T = cam.T_world_from_sensor @ T_BODY_FROM_OPTICAL
            for j, aid in enumerate(f.actors.ids[1:], start=1):
                v, u = np.nonzero(cam.instance == aid)
                if len(u) < 20:
                    continue
                z = cam.depth[v, u].astype(float)
                K = cam.K
                pts = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
                assert points_in_box(transform_points(T, pts), boxes[j], f.actors.dims[j], margin=0.03).mean() >= 0.99
        if k == 0:
            continue
        prev = frames[k - 1]
        for name, ld in f.lidars.items():  # LiDAR points of an actor are in its box at each point's firing time
            w = (ld.time_s - prev.time_s) / (f.time_s - prev.time_s)
            P0, P1 = _pose6(prev.actors), _pose6(f.actors)
            ego = _pose6_at(P0[0], P1[0], w)
            T_es = invert(_T6(P1[0])[0]) @ ld.T_world_from_sensor
            pw = transform_points(_T6(ego) @ T_es, ld.xyz.astype(float))
            for j, aid in enumerate(f.actors.ids[1:], start=1):
                sel = ld.instance == aid
                if sel.sum() < 5:
                    continue
                dims = f.actors.dims[j]
                T_wb = _T6(_pose6_at(P0[j], P1[j], w[sel]), dims[2])
                for q, T in zip(pw[sel], T_wb):
                    points_in += bool(points_in_box(q[None], T, dims, margin=0.02)[0])
                    points_total += 1
    return boxes_checked, points_total, points_in


def _bottom_gap(m, p6: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Height of a 5 x 5 grid of points on a box's (tilted) bottom face above the map's ground under each."""
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, 5) * dims[0], np.linspace(-0.5, 0.5, 5) * dims[1])
    local = np.stack([u.ravel(), v.ravel(), np.zeros(u.size), np.ones(u.size)], 1)
    pw = (_T6(p6)[0] @ local.T).T[:, :3]
    return pw[:, 2] - m.ground_height(pw[:, :2])


@pytest.mark.parametrize("name", MAP_NAMES)
def test_episode_renders_with_consistent_labels(small_rig, tmp_path, name):
    """A short episode on each corpus map (the steepest start on the elevation maps): the ground is seen
    (road pixels in the camera), actors sit on the surface (z = ground height under them), and the label checks
    of the suite hold: instance-mask box inside the projected 3-D box, depth-unprojected pixels and LiDAR points
    inside the actor's box."""
    from simgen.backends.builtin import BuiltinSession

    dz, lane, s = _start(name)
    p = tmp_path / "e.yaml"
    p.write_text(EPISODE.format(map=xodr(name), lane=lane, s=s))
    spec, _ = concretise(load_scenario_source(p), rng=np.random.default_rng(0))
    sess = BuiltinSession(spec, small_rig, seed=np.random.SeedSequence(0), source=str(p), n_frames=4)
    frames = [sess.step() for _ in range(4)]
    m = sess.world.map
    boxes_checked, total, inside = _label_checks(frames)
    sess.close()
    f = frames[-1]
    for j in range(len(f.actors.ids)):
        gap = _bottom_gap(m, _pose6(f.actors)[j], f.actors.dims[j])
        assert gap.min() > -0.01 and gap.min() < 0.02, (j, gap)  # the box's bottom face rests on the ground
    cam = next(iter(f.cameras.values()))
    assert np.mean(cam.semantic == ROADS) > 0.05
    assert np.mean(cam.instance > 0) > 0.002
    assert boxes_checked >= 2
    assert total > 30 and inside / total >= 0.99, (inside, total)
    if name in ("crest-curve", "curves_elevation", "e6mini"):
        assert dz > 0.5 and np.ptp(f.actors.pose[:3, 2]) > 0.05  # the actors really are at different heights


def test_library_scenario_runs_on_an_imported_map(tmp_path):
    """scenarios/lead_vehicle_brakes.yaml with only map: and the ego's placement changed runs on straight_500m:
    the lead brakes, the ego stops behind it without a collision."""
    from simgen.runner import run

    raw = yaml.safe_load((ROOT / "scenarios" / "lead_vehicle_brakes.yaml").read_text())
    changed = dict(raw, map=xodr("straight_500m"), ego=dict(raw["ego"], place={"road": 1, "lane_id": -1, "s_m": 120}))
    diff = {k for k in set(raw) | set(changed) if raw.get(k) != changed.get(k)}
    assert diff == {"map", "ego"} and {k for k in raw["ego"] if raw["ego"][k] != changed["ego"][k]} == {"place"}
    p = tmp_path / "lead.yaml"
    p.write_text(yaml.safe_dump(changed))
    from simgen.sim.world import World

    spec, _ = concretise(load_scenario_source(p), rng=np.random.default_rng(3))
    w = World(spec, rng=np.random.default_rng(3), source=str(p))
    lead = next(a for a in w.actors if a.name == "lead")
    for _ in range(spec.n_frames):
        w.step()
    assert "lead_brakes" in w.applied
    assert lead.speed < 0.1 and not w.collisions_total
    s = run(str(p), out=str(tmp_path / "out"), frames=3, progress=False, rig=str(ROOT / "assets" / "rigs" / "small.yaml"))
    assert s["episodes"][0]["frames"] == 3


def test_without_the_carla_package_the_error_says_so(tmp_path, monkeypatch):
    """issue 10: where `carla` cannot be imported (no wheel), loading an .xodr is a one-line error saying why."""
    from simgen.world import xodr as X

    monkeypatch.setitem(sys.modules, "carla", None)  # import carla -> ImportError
    p = tmp_path / "road.xodr"
    p.write_bytes(Path(xodr("straight_500m")).read_bytes() + b"\n")  # new content: not in the cache
    with pytest.raises(InputError) as e:
        X.load_xodr(p)
    msg = str(e.value)
    assert "\n" not in msg and "carla" in msg and "Linux x86_64" in msg and str(p) in msg
