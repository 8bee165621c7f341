"""OpenDRIVE export of the builtin maps (issue 6): structure, geometry against the builtin lanes, junction
connections, lane ids and directions, signals, and — where the ASAM schema can be had from a PyPI package —
validation against the OpenDRIVE 1.7 XSD.

The geometry checks evaluate the written XML with their own small line/arc/lane-width evaluator (not
``simgen.world.opendrive``), so they test the file, not the exporter's internal model.
"""
from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from simgen.world.opendrive import PlanView, Geometry, build_layout, export_opendrive, fit_geometry, opendrive_xml
from simgen.world.roads import MAPS, Polyline, get_map

MAP_NAMES = sorted(MAPS)


# ------------------------------------------------------------------ an independent reader of the written file
class Road:
    def __init__(self, el):
        self.el = el
        self.id = int(el.get("id"))
        self.name = el.get("name")
        self.junction = int(el.get("junction"))
        self.length = float(el.get("length"))
        self.geoms = []
        for g in el.find("planView").findall("geometry"):
            arc = g.find("arc")
            self.geoms.append(dict(s=float(g.get("s")), x=float(g.get("x")), y=float(g.get("y")), hdg=float(g.get("hdg")),
                                   length=float(g.get("length")), k=float(arc.get("curvature")) if arc is not None else 0.0))
        lanes = el.find("lanes")
        lo = lanes.find("laneOffset")
        self.offset = float(lo.get("a")) if lo is not None else 0.0
        sections = lanes.findall("laneSection")
        assert len(sections) == 1
        self.lanes = {}
        for side in ("left", "right"):
            s_el = sections[0].find(side)
            for ln in (s_el.findall("lane") if s_el is not None else []):
                self.lanes[int(ln.get("id"))] = ln

    def width(self, lid):
        w = self.lanes[lid].find("width")
        assert float(w.get("b")) == float(w.get("c")) == float(w.get("d")) == 0.0
        return float(w.get("a"))

    def lane_t(self, lid):
        sign = 1 if lid > 0 else -1
        return self.offset + sign * (sum(self.width(sign * k) for k in range(1, abs(lid))) + self.width(lid) / 2)

    def pose(self, s):
        g = [g for g in self.geoms if g["s"] <= s + 1e-9][-1]
        ds, h, k = s - g["s"], g["hdg"], g["k"]
        if k == 0.0:
            return g["x"] + ds * math.cos(h), g["y"] + ds * math.sin(h), h
        h1 = h + k * ds
        return g["x"] + (math.sin(h1) - math.sin(h)) / k, g["y"] - (math.cos(h1) - math.cos(h)) / k, h1

    def point(self, s, t):
        x, y, h = self.pose(s)
        return np.array([x - t * math.sin(h), y + t * math.cos(h)]), h


def parse(text):
    root = ET.fromstring(text)
    roads = {r.id: r for r in (Road(el) for el in root.findall("road"))}
    return root, roads


@pytest.fixture(scope="module", params=MAP_NAMES)
def exported(request):
    name = request.param
    text = opendrive_xml(name)
    root, roads = parse(text)
    return name, text, root, roads


# ------------------------------------------------------------------ schema
def _schema_path() -> Path:
    from tests.asam_schemas import schema_dir
    from tests.needs import unavailable

    p = schema_dir("opendrive") / "1.7.0" / "opendrive_17_core.xsd"
    if not p.is_file():
        unavailable(f"ASAM OpenDRIVE 1.7 XSD missing at {p}")
    return p


def test_valid_against_asam_opendrive_17_xsd(exported):
    """The ASAM OpenDRIVE 1.7 XSD ships in ASAM's own PyPI package ``asam-qc-opendrive``; validated with
    ``xmlschema`` (in the test extra).  That package pins numpy < 2, so the tests take only its schema files
    (tests/asam_schemas.py: the installed package, else its wheel unpacked into a cache), never its deps."""
    import xmlschema

    path = _schema_path()
    name, text, _, _ = exported
    errors = [str(e).splitlines()[0] for e in xmlschema.XMLSchema(str(path)).iter_errors(text)]
    assert errors == [], f"{name}: {errors[:3]}"


# ------------------------------------------------------------------ structure
def test_header_and_unique_ids(exported):
    name, _, root, roads = exported
    h = root.find("header")
    assert (h.get("revMajor"), h.get("revMinor"), h.get("name")) == ("1", "7", name)
    ids = [r.get("id") for r in root.findall("road")]
    assert len(ids) == len(set(ids))
    lo, hi = get_map(name).bounds()
    assert float(h.get("west")) == pytest.approx(lo[0]) and float(h.get("north")) == pytest.approx(hi[1])


def test_plan_view_is_contiguous_and_matches_road_length(exported):
    _, _, _, roads = exported
    for r in roads.values():
        g = r.geoms
        assert g[0]["s"] == 0.0
        assert sum(x["length"] for x in g) == pytest.approx(r.length, abs=1e-6)
        for a, b in zip(g, g[1:]):
            assert a["s"] + a["length"] == pytest.approx(b["s"], abs=1e-6)
            x, y, h = r.pose(b["s"] - 1e-12)
            assert math.hypot(x - b["x"], y - b["y"]) < 1e-6, f"road {r.id}: gap between geometries"
            assert abs(math.remainder(h - b["hdg"], 2 * math.pi)) < 1e-6, f"road {r.id}: heading jump"


def test_every_builtin_lane_is_exported_with_matching_length_and_geometry(exported):
    """Each builtin lane maps to one OpenDRIVE lane whose centre line (evaluated from the XML) lies on the builtin
    centre line, runs the same way, and has the same length (∫(1 − κ t) ds over the road)."""
    name, _, _, roads = exported
    m = get_map(name)
    layout = build_layout(name)
    assert set(layout.lanes) == set(m.lanes)
    for lane_id, lane in m.lanes.items():
        ref = layout.lanes[lane_id]
        r = roads[ref.road_id]
        assert ref.lane_id in r.lanes
        assert float(r.lanes[ref.lane_id].find("width").get("a")) == pytest.approx(lane.width_m)
        want_type = {"driving": "driving", "connector": "driving", "shoulder": "shoulder"}[lane.kind]
        assert r.lanes[ref.lane_id].get("type") == want_type
        t = r.lane_t(ref.lane_id)
        length = sum(g["length"] * (1 - g["k"] * t) for g in r.geoms)
        assert length == pytest.approx(lane.centre.length, abs=0.01), f"{lane_id}: xodr {length:.3f} m, builtin {lane.centre.length:.3f} m"
        for s in np.linspace(0.0, r.length, 25):
            p, h = r.point(s, t)
            s_b, lat = lane.centre.project(p)
            assert abs(lat) < 0.01 and -0.01 <= s_b <= lane.centre.length + 0.01, f"{lane_id} at road s={s:.1f}"
            hb = float(lane.centre.pose_at(s_b)[2])
            along = math.cos(hb - h) > 0.99
            assert along == (ref.lane_id < 0), f"{lane_id}: lane {ref.lane_id} should run {'with' if ref.lane_id < 0 else 'against'} the reference"


def test_lane_ids_follow_builtin_neighbours(exported):
    name, _, _, _ = exported
    m = get_map(name)
    layout = build_layout(name)
    for lane_id, lane in m.lanes.items():
        ref = layout.lanes[lane_id]
        outward = -1 if ref.lane_id < 0 else 1  # the right of a lane, in its driving direction, is away from the centre
        if lane.right is not None:
            assert layout.lanes[lane.right] == type(ref)(ref.road_id, ref.lane_id + outward)
        if lane.left is not None:
            assert layout.lanes[lane.left] == type(ref)(ref.road_id, ref.lane_id - outward)


def test_sidewalk_lanes_where_the_builtin_ground_has_sidewalks(exported):
    from simgen.classes import SIDEWALKS

    name, _, _, roads = exported
    m = get_map(name)
    for r in roads.values():
        for lid, ln in r.lanes.items():
            if ln.get("type") != "sidewalk":
                continue
            assert ln.find("height") is not None
            for s in np.linspace(0.1, 0.9, 5) * r.length:
                p, _ = r.point(s, r.lane_t(lid))
                assert m.surface_at(p)[0] == SIDEWALKS


def test_junction_connections_match_builtin_connectors():
    name = "intersection"
    root, roads = parse(opendrive_xml(name))
    m = get_map(name)
    layout = build_layout(name)
    junctions = root.findall("junction")
    assert len(junctions) == 1
    jid = int(junctions[0].get("id"))
    got = set()
    for c in junctions[0].findall("connection"):
        ll = c.findall("laneLink")
        assert len(ll) == 1 and c.get("contactPoint") == "start"
        got.add((int(c.get("incomingRoad")), int(ll[0].get("from")), int(c.get("connectingRoad"))))
    want = set()
    for lane in m.lanes.values():
        for cid in lane.successors.values():
            if m.lanes[cid].kind == "connector":
                inc, con = layout.lanes[lane.id], layout.lanes[cid]
                want.add((inc.road_id, inc.lane_id, con.road_id))
    assert got == want and len(got) == sum(1 for l in m.lanes.values() if l.kind == "connector")
    for cid, conn in ((k, l) for k, l in m.lanes.items() if l.kind == "connector"):
        r = roads[layout.lanes[cid].road_id]
        assert r.junction == jid
        incoming = next(l for l in m.lanes.values() if cid in l.successors.values())
        exit_lane = m.lanes[conn.successors["straight"]]
        link = r.el.find("link")
        pred, succ = link.find("predecessor"), link.find("successor")
        assert int(pred.get("elementId")) == layout.lanes[incoming.id].road_id
        assert int(succ.get("elementId")) == layout.lanes[exit_lane.id].road_id
        lane_link = r.lanes[-1].find("link")
        assert int(lane_link.find("predecessor").get("id")) == layout.lanes[incoming.id].lane_id
        assert int(lane_link.find("successor").get("id")) == layout.lanes[exit_lane.id].lane_id
        start, _ = r.point(0.0, r.lane_t(-1))
        end, _ = r.point(r.length, r.lane_t(-1))
        assert np.linalg.norm(start - incoming.centre.points[-1]) < 1e-3
        assert np.linalg.norm(end - exit_lane.centre.points[0]) < 1e-3
        # contact points name the arm's end that touches the junction
        for el, arm_lane, pt in ((pred, incoming, incoming.centre.points[-1]), (succ, exit_lane, exit_lane.centre.points[0])):
            arm = roads[int(el.get("elementId"))]
            at_start = np.linalg.norm(np.array(arm.pose(0.0)[:2]) - pt) < np.linalg.norm(np.array(arm.pose(arm.length)[:2]) - pt)
            assert el.get("contactPoint") == ("start" if at_start else "end")
            arm_link = arm.el.find("link").find("predecessor" if at_start else "successor")
            assert arm_link.get("elementType") == "junction" and int(arm_link.get("elementId")) == jid


def test_corridor_roads_have_no_junctions():
    for name in ("straight", "curve"):
        root, roads = parse(opendrive_xml(name))
        assert root.findall("junction") == [] and len(roads) == 1
        assert list(roads.values())[0].el.find("link").findall("*") == []


def test_traffic_lights_become_signals_with_controllers():
    name = "intersection"
    root, roads = parse(opendrive_xml(name))
    m = get_map(name)
    layout = build_layout(name)
    signals = {}
    for r in roads.values():
        sigs = r.el.find("signals")
        for sg in (sigs.findall("signal") if sigs is not None else []):
            signals[sg.get("name")] = (r, sg)
    assert set(signals) == {tl.id for tl in m.traffic_lights}
    for tl in m.traffic_lights:
        r, sg = signals[tl.id]
        assert sg.get("type") == "1000001" and sg.get("dynamic") == "yes" and sg.get("id") == layout.signals[tl.id]
        refs = [layout.lanes[l] for l in tl.lanes]
        assert {x.road_id for x in refs} == {r.id}
        v = sg.find("validity")
        assert sorted([int(v.get("fromLane")), int(v.get("toLane"))]) == sorted([min(x.lane_id for x in refs), max(x.lane_id for x in refs)])
        lane = m.lanes[tl.lanes[0]]
        stop_xy = np.array(lane.centre.pose_at(lane.stop_s)[:2])
        p, _ = r.point(float(sg.get("s")), r.lane_t(layout.lanes[lane.id].lane_id))
        assert np.linalg.norm(p - stop_xy) < 0.01
        pole, _ = r.point(float(sg.get("s")), float(sg.get("t")))
        assert np.linalg.norm(pole - tl.position[:2]) < 3.0  # the pole stands beside the stop line
    groups = {}
    for tl in m.traffic_lights:
        groups.setdefault(tl.group, set()).add(layout.signals[tl.id])
    ctl = [{c.get("signalId") for c in el.findall("control")} for el in root.findall("controller")]
    assert sorted(map(sorted, ctl)) == sorted(map(sorted, groups.values()))


def test_crosswalks_are_objects_with_local_outlines():
    name = "intersection"
    _, roads = parse(opendrive_xml(name))
    m = get_map(name)
    found = {}
    for r in roads.values():
        objs = r.el.find("objects")
        for o in (objs.findall("object") if objs is not None else []):
            assert o.get("type") == "crosswalk"
            corners = np.array([[float(c.get("u")), float(c.get("v"))] for c in o.find("outline").findall("cornerLocal")])
            x, y, h = r.pose(float(o.get("s")))
            R = np.array([[math.cos(h), -math.sin(h)], [math.sin(h), math.cos(h)]])
            found[o.get("name")] = corners @ R.T + [x, y]
    assert set(found) == {c.id for c in m.crosswalks}
    for c in m.crosswalks:
        assert np.abs(found[c.id] - c.polygon).max() < 1e-6


# ------------------------------------------------------------------ the fitter and the writer
def test_fit_geometry_recovers_lines_and_arcs_exactly():
    r = 120.0
    a = np.linspace(-math.pi / 2, 0.0, 377)
    arc = np.stack([100 + r * np.cos(a), r + r * np.sin(a)], axis=-1)
    poly = Polyline(np.concatenate([[[0.0, 0.0]], arc, [[220.0, 270.0]]]))
    pv = fit_geometry(poly)
    kinds = [(round(g.curvature, 9), round(g.length, 6)) for g in pv.geometries]
    assert kinds == [(0.0, 100.0), (round(1 / r, 9), round(r * math.pi / 2, 6)), (0.0, 150.0)]
    x, y, h = pv.pose_at(pv.length)
    assert (float(x), float(y), float(h)) == pytest.approx((220.0, 270.0, math.pi / 2), abs=1e-9)
    s_v = poly.vertex_s
    xs, ys, _ = pv.pose_at(s_v * pv.length / poly.length)
    assert np.abs(np.stack([xs, ys], -1) - poly.points).max() < 1e-3


def test_geometry_offset_length_formula():
    g = Geometry(0.0, 0.0, 0.0, 0.0, 10.0, 0.1)
    pv = PlanView((g,))
    xs, ys, _ = pv.pose_at(np.linspace(0, 10, 2001), 2.0)
    length = np.sum(np.hypot(np.diff(xs), np.diff(ys)))
    assert length == pytest.approx(pv.lane_length(2.0), rel=1e-5) == pytest.approx(10 * (1 - 0.2))


def test_export_to_path_text_and_binary_files(tmp_path):
    text = opendrive_xml("straight")
    export_opendrive("straight", tmp_path / "a.xodr")
    export_opendrive(get_map("straight"), str(tmp_path / "b.xodr"))
    buf, tbuf = io.BytesIO(), io.StringIO()
    export_opendrive("straight", buf)
    export_opendrive("straight", tbuf)
    assert (tmp_path / "a.xodr").read_text() == (tmp_path / "b.xodr").read_text() == text
    assert buf.getvalue().decode() == tbuf.getvalue() == text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_road_s_maps_lane_arc_length_to_road_s():
    layout = build_layout("curve")
    m = get_map("curve")
    _, roads = parse(opendrive_xml("curve"))
    for lane_id in ("fwd_1", "bwd_2"):
        lane = m.lanes[lane_id]
        ref = layout.lanes[lane_id]
        r = roads[ref.road_id]
        for s_lane in (0.0, 57.3, 200.0, lane.centre.length):
            s_road = float(layout.road_s(lane_id, s_lane))
            p, _ = r.point(s_road, r.lane_t(ref.lane_id))
            q = np.array(lane.centre.pose_at(s_lane)[:2])
            assert np.linalg.norm(p - q) < 0.01
