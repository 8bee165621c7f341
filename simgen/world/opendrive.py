"""Export of the builtin road maps to ASAM OpenDRIVE 1.7 (``.xodr``), and the simgen-lane ↔ OpenDRIVE-lane mapping.

The export is what the CARLA backend loads with ``client.generate_opendrive_world`` for a builtin map, so the one
place that says where a simgen lane lives in OpenDRIVE (road id, lane id, road ``s``) is :class:`OpenDriveLayout`
here; the backend asks it, never re-derives it.

Frames and units: simgen's world frame (x east, y north, z up, metres, yaw counter-clockwise from +x) *is* the
OpenDRIVE inertial frame, so coordinates are written unchanged; angles in radians as OpenDRIVE requires.

How a :class:`~simgen.world.roads.RoadMap` becomes OpenDRIVE:

- every group of lanes sharing a ``road_id`` (other than junction connectors) becomes one ``<road>``.  Its reference
  line is the boundary between the two driving directions (right-hand traffic: lanes running along the reference
  line are on its right and get ids -1, -2, ... from the centre outwards; lanes running against it are on its left,
  +1, +2, ...).  The reference direction is chosen to head east (or north when exactly north-south), so e.g. the
  ``straight`` map's ``fwd_1`` is lane -1 of road 1.  Shoulders are ``shoulder`` lanes; where the builtin ground
  has a sidewalk beside the road, a raised ``sidewalk`` lane of :data:`~simgen.world.roads.SIDEWALK_WIDTH` is added
  outside the shoulder (CARLA builds kerbs and pedestrian navigation from these).
- the reference line is fitted exactly with ``line`` and ``arc`` primitives (the builtin maps are built from
  lines and circular arcs; the fit reproduces every polyline vertex to within :data:`FIT_TOL_M`).
- every junction connector becomes a connecting road of one junction: one driving lane (-1) whose centre is the
  reference line (a ``laneOffset`` of half the lane width), linked from the incoming lane to the exit lane.
- traffic lights become dynamic ``signal`` elements of type ``1000001`` at the stop line of the lanes they
  control (with lane ``validity``), grouped by phase group into ``controller`` elements; crosswalks become
  ``crosswalk`` objects with a ``cornerLocal`` outline (the form CARLA's parser reads).
- road marks follow the builtin paint: double solid centre line, broken lane dividers, solid edge lines.

Not exported: the sidewalk corners inside the intersection's junction box (OpenDRIVE junctions carry only the
connecting roads), stop-line paint, and scenery.  Elevation is flat (the builtin roads are at z = 0).
"""
from __future__ import annotations

import io
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simgen.world.roads import SIDEWALK_HEIGHT, SIDEWALK_WIDTH, Polyline, RoadMap, get_map

FIT_TOL_M = 1e-4  # maximum distance of a builtin polyline vertex from the fitted OpenDRIVE geometry
_JUNCTION_ID_BASE = 1000
_SIGNAL_ID_BASE = 5000
_OBJECT_ID_BASE = 7000
_CONTROLLER_ID_BASE = 9000
TRAFFIC_LIGHT_TYPE = "1000001"  # OpenDRIVE / German catalogue code for a three-light signal head; CARLA keys on it


# ---------------------------------------------------------------------------------------------------------------
# Plan view: lines and arcs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """One ``<geometry>`` record: starts at road ``s`` at (x, y) with heading ``hdg`` (rad); ``curvature`` (1/m,
    > 0 turning left) is 0 for a line."""

    s: float
    x: float
    y: float
    hdg: float
    length: float
    curvature: float = 0.0

    def pose_at(self, ds, t=0.0):
        """(x, y, hdg) at ``ds`` metres along this primitive and lateral offset ``t`` (m, > 0 left); vectorised."""
        ds, t = np.broadcast_arrays(np.asarray(ds, float), np.asarray(t, float))
        k = self.curvature
        h = self.hdg + k * ds
        if abs(k) < 1e-12:
            x = self.x + ds * math.cos(self.hdg)
            y = self.y + ds * math.sin(self.hdg)
        else:
            x = self.x + (np.sin(h) - math.sin(self.hdg)) / k
            y = self.y - (np.cos(h) - math.cos(self.hdg)) / k
        return x - t * np.sin(h), y + t * np.cos(h), h


@dataclass(frozen=True)
class PlanView:
    """A reference line as a sequence of :class:`Geometry` (contiguous in ``s``)."""

    geometries: tuple[Geometry, ...]

    @property
    def length(self) -> float:
        g = self.geometries[-1]
        return g.s + g.length

    def pose_at(self, s, t=0.0):
        """(x, y, hdg) at road ``s`` (clamped to the primitives' range) and lateral ``t``; vectorised."""
        s, t = np.broadcast_arrays(np.asarray(s, float), np.asarray(t, float))
        starts = np.array([g.s for g in self.geometries])
        idx = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(starts) - 1)
        x, y, h = np.empty(s.shape), np.empty(s.shape), np.empty(s.shape)
        for i, g in enumerate(self.geometries):
            m = idx == i
            if np.any(m):
                x[m], y[m], h[m] = g.pose_at(s[m] - g.s, t[m])
        return x, y, h

    def lane_length(self, t: float) -> float:
        """Length (m) of the curve at constant lateral offset ``t`` (> 0 left): ∫ (1 - κ t) ds."""
        return float(sum(g.length * (1.0 - g.curvature * t) for g in self.geometries))


def _arc_through(p0: np.ndarray, hdg: float, q: np.ndarray) -> tuple[float, float]:
    """Curvature and arc length of the circle (or line) starting at p0 with heading ``hdg`` through point q."""
    d = q - p0
    tx, ty = math.cos(hdg), math.sin(hdg)
    cross = tx * d[1] - ty * d[0]
    dot = tx * d[0] + ty * d[1]
    dd = float(d @ d)
    k = 2.0 * cross / dd
    phi = 2.0 * math.atan2(cross, dot)  # turn over the arc
    length = math.sqrt(dd) / float(np.sinc(phi / (2.0 * math.pi)))  # chord / (sin(phi/2) / (phi/2))
    return k, length


def _deviation(p0: np.ndarray, hdg: float, k: float, q: np.ndarray) -> np.ndarray:
    """Distance (m) of points q (M, 2) from the circle through p0 with heading hdg and curvature k (stable as k→0)."""
    r = q - p0
    n = np.array([-math.sin(hdg), math.cos(hdg)])
    g = 0.5 * (k * np.einsum("ij,ij->i", r, r)) - r @ n
    grad = np.linalg.norm(k * r - n, axis=1)
    return np.abs(g) / np.maximum(grad, 1e-12)


def fit_geometry(poly: Polyline, tol: float = FIT_TOL_M) -> PlanView:
    """Exact line/arc description of a polyline made of straight runs and sampled circular arcs.

    Greedy: from the current point and heading (the polyline's corrected start tangent first, then the end
    heading of the previous primitive), extend one circle-or-line primitive through as many following vertices as
    stay within ``tol`` metres of it.  Raises ValueError if a vertex cannot be reached (not a line/arc polyline).
    """
    P = poly.points
    hdg = float(poly.pose_at(0.0)[2])
    i, s = 0, 0.0
    geoms: list[Geometry] = []
    while i < len(P) - 1:
        best = None
        for j in range(i + 1, len(P)):
            k, length = _arc_through(P[i], hdg, P[j])
            if abs(k) * length >= math.pi - 1e-6:
                break
            if j > i + 1 and float(_deviation(P[i], hdg, k, P[i + 1 : j]).max()) > tol:
                break
            best = (j, k, length)
        if best is None:
            raise ValueError(f"polyline vertex {i + 1} at {P[i + 1]} cannot be fitted with a line or arc")
        j, k, length = best
        if abs(k) * length < 1e-9:
            k = 0.0
        geoms.append(Geometry(s, float(P[i][0]), float(P[i][1]), float(math.remainder(hdg, 2 * math.pi)), length, k))
        hdg += k * length
        s += length
        i = j
    return PlanView(tuple(geoms))


# ---------------------------------------------------------------------------------------------------------------
# Layout: roads, lanes, junctions, signals (the simgen <-> OpenDRIVE mapping)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XodrLane:
    """Where a simgen lane lives in OpenDRIVE: road id, lane id (< 0 right of the reference line, driving along
    it; > 0 left, driving against it)."""

    road_id: int
    lane_id: int


@dataclass
class _LaneRec:
    lane_id: int
    width: float
    type: str  # driving | shoulder | sidewalk
    simgen_id: str | None
    speed_mps: float | None = None
    mark: tuple[str, str] = ("none", "standard")  # roadMark (type, color) on the lane's outer border


@dataclass
class XodrRoad:
    id: int
    name: str
    plan: PlanView
    reference: Polyline  # the builtin-side reference polyline the plan view was fitted to
    junction: int = -1
    lane_offset: float = 0.0  # laneOffset a (m): the centre lane is this far left of the reference line
    lanes: list[_LaneRec] = field(default_factory=list)
    centre_mark: tuple[str, str] = ("none", "standard")
    speed_mps: float = 0.0
    predecessor: tuple[str, int, str | None] | None = None  # (elementType, elementId, contactPoint)
    successor: tuple[str, int, str | None] | None = None
    lane_links: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)  # lane -> (pred, succ)
    signals: list[dict] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list)

    @property
    def length(self) -> float:
        return self.plan.length


@dataclass
class _Connection:
    id: int
    incoming: int
    connecting: int
    lane_from: int
    lane_to: int


@dataclass
class XodrJunction:
    id: int
    name: str
    connections: list[_Connection] = field(default_factory=list)
    controllers: list[int] = field(default_factory=list)


@dataclass
class OpenDriveLayout:
    """The OpenDRIVE description of a builtin map and the lane mapping.  Build with :func:`build_layout`."""

    map_name: str
    roads: list[XodrRoad]
    junctions: list[XodrJunction]
    lanes: dict[str, XodrLane]  # simgen lane id -> OpenDRIVE road/lane
    signals: dict[str, str]  # simgen traffic light id -> OpenDRIVE signal id
    controllers: dict[int, list[str]]  # controller id -> signal ids
    bounds: tuple[np.ndarray, np.ndarray]
    _by_id: dict[int, XodrRoad] = field(default_factory=dict, repr=False)

    def road(self, road_id: int) -> XodrRoad:
        return self._by_id[road_id]

    def lane_ref(self, lane_id: str) -> XodrLane:
        """OpenDRIVE road and lane of a simgen lane; KeyError (listing the known lanes) if unknown."""
        if lane_id not in self.lanes:
            raise KeyError(f"lane {lane_id!r} is not exported; known: {sorted(self.lanes)}")
        return self.lanes[lane_id]

    def road_s(self, lane_id: str, s_lane, lateral=0.0) -> np.ndarray:
        """Road ``s`` (m) of the point ``s_lane`` metres along the simgen lane's centre (at ``lateral``, m left).

        CARLA's ``map.get_waypoint_xodr(road_id, lane_id, s)`` takes this ``s``."""
        ref = self.lanes[lane_id]
        road = self._by_id[ref.road_id]
        x, y, _ = get_map(self.map_name).lanes[lane_id].centre.pose_at(s_lane, lateral)
        s, _ = road.reference.project(np.stack([np.ravel(x), np.ravel(y)], axis=-1))
        return np.clip(s, 0.0, road.length).reshape(np.shape(x))[()]


def _heading_ok(h: float) -> bool:
    """Reference direction rule: head east-ish (cos > 0), or exactly north."""
    c, s = math.cos(h), math.sin(h)
    return c > 1e-9 or (abs(c) <= 1e-9 and s > 0)


def _road_frame(lanes: list) -> tuple[Polyline, list[tuple[object, float, bool]]]:
    """Reference polyline of a group of parallel lanes and, per lane, (lane, lateral offset of its centre from the
    reference (m, > 0 left), runs against the reference)."""
    for base in lanes:  # try each lane as the "along" direction until the heading rule holds
        info = []
        for ln in lanes:
            xm, ym, hm = ln.centre.pose_at(ln.centre.length / 2)
            s_b, lat = base.centre.project(np.array([xm, ym]))
            hb = base.centre.pose_at(s_b)[2]
            against = math.cos(hm - hb) < 0
            info.append((ln, float(lat), against))
        along = [(ln, lat) for ln, lat, ag in info if not ag]
        t_ref = max(lat + ln.width_m / 2 for ln, lat in along)  # left edge of the leftmost along-lane
        against = [(ln, lat) for ln, lat, ag in info if ag]
        if against:
            t_other = min(lat - ln.width_m / 2 for ln, lat in against)
            if abs(t_other - t_ref) > 1e-3:
                raise ValueError(f"lanes of road {base.road_id!r} leave a gap of {t_other - t_ref:.3f} m at the centre")
        ref = base.centre.offset(t_ref)
        if _heading_ok(float(ref.pose_at(0.0)[2])):
            return ref, [(ln, lat - t_ref, ag) for ln, lat, ag in info]
    raise ValueError(f"no lane direction of road {lanes[0].road_id!r} satisfies the reference heading rule")


def _assign_ids(entries: list[tuple[object, float, bool]], road_name: str) -> list[tuple[int, object, float]]:
    """OpenDRIVE lane ids from lateral offsets: right side -1, -2 ... outwards, left side 1, 2 ...; checks the lanes
    tile the cross-section without gaps."""
    out = []
    for side in (-1, 1):
        sel = sorted((e for e in entries if np.sign(e[1]) == side), key=lambda e: abs(e[1]))
        edge = 0.0
        for k, (ln, lat, _) in enumerate(sel, start=1):
            inner = abs(lat) - ln.width_m / 2
            if abs(inner - edge) > 1e-3:
                raise ValueError(f"road {road_name!r}: lane {ln.id} starts {inner:.3f} m from the centre, expected {edge:.3f}")
            edge = abs(lat) + ln.width_m / 2
            out.append((side * k, ln, lat))
    return out


def build_layout(road_map: RoadMap | str) -> OpenDriveLayout:
    """Describe ``road_map`` (or the builtin map of that name) in OpenDRIVE terms.  Cached per map name."""
    if isinstance(road_map, str):
        road_map = get_map(road_map)
    key = road_map.name
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0] is road_map:
        return hit[1]
    layout = _build_layout(road_map)
    _LAYOUTS[key] = (road_map, layout)
    return layout


_LAYOUTS: dict[str, tuple[RoadMap, OpenDriveLayout]] = {}


def _build_layout(m: RoadMap) -> OpenDriveLayout:
    from simgen.classes import SIDEWALKS

    groups: dict[str, list] = {}
    for ln in m.lanes.values():
        if ln.kind != "connector":
            groups.setdefault(ln.road_id, []).append(ln)
    roads: list[XodrRoad] = []
    lane_map: dict[str, XodrLane] = {}
    by_id: dict[int, XodrRoad] = {}
    for k, (name, lanes) in enumerate(groups.items(), start=1):
        ref, entries = _road_frame(lanes)
        plan = fit_geometry(ref)
        rd = XodrRoad(k, name, plan, ref, speed_mps=max(ln.speed_limit_mps for ln in lanes))
        ids = _assign_ids(entries, name)
        outer_edge = {-1: 0.0, 1: 0.0}
        for lid, ln, lat in ids:
            lane_map[ln.id] = XodrLane(k, lid)
            rd.lanes.append(_LaneRec(lid, ln.width_m, "shoulder" if ln.kind == "shoulder" else "driving", ln.id))
            side = int(np.sign(lid))
            outer_edge[side] = max(outer_edge[side], abs(lat) + ln.width_m / 2)
        # road marks: broken between driving lanes of one direction, solid at the outer edge of the driving lanes
        for side in (-1, 1):
            recs = sorted((r for r in rd.lanes if np.sign(r.lane_id) == side), key=lambda r: abs(r.lane_id))
            for i, r in enumerate(recs):
                if r.type != "driving":
                    continue
                nxt = recs[i + 1] if i + 1 < len(recs) else None
                r.mark = ("broken", "white") if nxt is not None and nxt.type == "driving" else ("solid", "white")
        has_left = any(r.lane_id > 0 and r.type == "driving" for r in rd.lanes)
        has_right = any(r.lane_id < 0 and r.type == "driving" for r in rd.lanes)
        rd.centre_mark = ("solid solid", "white") if has_left and has_right else ("solid", "white")
        # sidewalks beside the road (where the builtin ground is sidewalk over the whole length)
        s_probe = np.linspace(0.05, 0.95, 7) * plan.length
        for side in (-1, 1):
            edge = outer_edge[side]
            if edge == 0.0:
                continue
            x, y, _ = plan.pose_at(s_probe, side * (edge + SIDEWALK_WIDTH / 2))
            if np.all(m.surface_at(np.stack([x, y], axis=-1)) == SIDEWALKS):
                n = max(abs(r.lane_id) for r in rd.lanes if np.sign(r.lane_id) == side) + 1
                rd.lanes.append(_LaneRec(side * n, SIDEWALK_WIDTH, "sidewalk", None))
        roads.append(rd)
        by_id[k] = rd

    # junction connectors -> connecting roads of one junction per connector road_id
    junctions: list[XodrJunction] = []
    next_id = len(roads) + 1
    conn_groups: dict[str, list] = {}
    for ln in m.lanes.values():
        if ln.kind == "connector":
            conn_groups.setdefault(ln.road_id, []).append(ln)
    for jk, (jname, conns) in enumerate(conn_groups.items()):
        jid = _JUNCTION_ID_BASE + jk
        jn = XodrJunction(jid, jname)
        for cn in conns:
            incoming = next(l for l in m.lanes.values() if cn.id in l.successors.values())
            exit_lane = m.lanes[cn.successors["straight"]]
            rd = XodrRoad(next_id, cn.id, fit_geometry(cn.centre), cn.centre, junction=jid, lane_offset=cn.width_m / 2,
                          speed_mps=cn.speed_limit_mps)
            rd.lanes.append(_LaneRec(-1, cn.width_m, "driving", cn.id, speed_mps=cn.speed_limit_mps))
            lane_map[cn.id] = XodrLane(next_id, -1)
            in_ref, out_ref = lane_map[incoming.id], lane_map[exit_lane.id]
            in_road, out_road = by_id[in_ref.road_id], by_id[out_ref.road_id]
            # where the lanes meet the connector: incoming lane ends there, exit lane starts there
            rd.predecessor = ("road", in_road.id, _contact(in_road, incoming.centre.points[-1]))
            rd.successor = ("road", out_road.id, _contact(out_road, exit_lane.centre.points[0]))
            rd.lane_links[-1] = (in_ref.lane_id, out_ref.lane_id)
            for arm, pt in ((in_road, incoming.centre.points[-1]), (out_road, exit_lane.centre.points[0])):
                cp = _contact(arm, pt)
                if cp == "start":
                    arm.predecessor = ("junction", jid, None)
                else:
                    arm.successor = ("junction", jid, None)
            jn.connections.append(_Connection(len(jn.connections), in_road.id, rd.id, in_ref.lane_id, -1))
            roads.append(rd)
            by_id[rd.id] = rd
            next_id += 1
        junctions.append(jn)

    # traffic lights -> signals at the stop line of the lanes they control; one controller per phase group
    signals: dict[str, str] = {}
    groups_ctl: dict[str, list[str]] = {}
    for n, tl in enumerate(m.traffic_lights):
        lanes = [m.lanes[l] for l in tl.lanes]
        refs = [lane_map[l.id] for l in lanes]
        road = by_id[refs[0].road_id]
        stop_s = lanes[0].stop_s if lanes[0].stop_s is not None else lanes[0].centre.length
        s_road = float(np.clip(road.reference.project(np.array(lanes[0].centre.pose_at(stop_s)[:2]))[0], 0, road.length))
        _, t_pole = road.reference.project(np.asarray(tl.position[:2], float))
        lane_ids = sorted(r.lane_id for r in refs)
        sid = str(_SIGNAL_ID_BASE + n)
        road.signals.append(dict(s=s_road, t=float(t_pole), id=sid, name=tl.id, orientation="-" if lane_ids[0] > 0 else "+",
                                 from_lane=lane_ids[0], to_lane=lane_ids[-1], z=float(tl.position[2])))
        signals[tl.id] = sid
        groups_ctl.setdefault(tl.group, []).append(sid)
    controllers = {_CONTROLLER_ID_BASE + i: sids for i, sids in enumerate(groups_ctl.values())}
    for jn in junctions:
        jn.controllers = list(controllers)

    # crosswalks -> objects on the road whose reference line they cross
    for n, cw in enumerate(m.crosswalks):
        c = cw.polygon.mean(axis=0)
        for road in roads:
            if road.junction != -1:
                continue
            s_c, t_c = road.reference.project(c)
            if 0.0 <= s_c <= road.length and abs(t_c) <= 20.0:
                x0, y0, h = road.plan.pose_at(s_c)
                rel = cw.polygon - np.array([float(x0), float(y0)])
                u = rel @ np.array([math.cos(h), math.sin(h)])
                v = rel @ np.array([-math.sin(h), math.cos(h)])
                road.objects.append(dict(id=str(_OBJECT_ID_BASE + n), name=cw.id, s=float(s_c), t=0.0,
                                         length=float(np.ptp(u)), width=float(np.ptp(v)),
                                         corners=[(float(a), float(b)) for a, b in zip(u, v)]))  # local to (s_c, t=0)
                break
    lo, hi = m.bounds()
    layout = OpenDriveLayout(m.name, roads, junctions, lane_map, signals, controllers, (lo, hi))
    layout._by_id = by_id
    return layout


def _contact(road: XodrRoad, pt: np.ndarray) -> str:
    """Which end of ``road`` (start/end of its reference line) the point ``pt`` lies at."""
    s, _ = road.reference.project(np.asarray(pt, float))
    return "start" if s < road.length / 2 else "end"


# ---------------------------------------------------------------------------------------------------------------
# XML
# ---------------------------------------------------------------------------------------------------------------


def _f(v: float) -> str:
    v = float(v)
    if v == 0.0:
        return "0"
    return f"{v:.12g}"


GEO_REFERENCE = "+proj=tmerc +lat_0=0 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"


def _sub(parent: ET.Element, tag: str, **attrs) -> ET.Element:
    return ET.SubElement(parent, tag, {k.rstrip("_"): (v if isinstance(v, str) else _f(v)) for k, v in attrs.items()})


def opendrive_xml(road_map: RoadMap | str) -> str:
    """The OpenDRIVE 1.7 document of a builtin map as a string (what ``generate_opendrive_world`` takes)."""
    layout = build_layout(road_map)
    lo, hi = layout.bounds
    root = ET.Element("OpenDRIVE")
    _sub(root, "header", revMajor="1", revMinor="7", name=layout.map_name, version="1.0",
         north=float(hi[1]), south=float(lo[1]), east=float(hi[0]), west=float(lo[0]), vendor="simgen")
    # a local transverse Mercator projection at (0, 0): CARLA reads lat_0/lon_0 from it (and warns when it is missing)
    ET.SubElement(root.find("header"), "geoReference").text = GEO_REFERENCE
    for rd in layout.roads:
        r = _sub(root, "road", name=rd.name, length=rd.length, id=str(rd.id), junction=str(rd.junction), rule="RHT")
        link = _sub(r, "link")
        for tag, val in (("predecessor", rd.predecessor), ("successor", rd.successor)):
            if val is not None:
                et, eid, cp = val
                attrs = dict(elementType=et, elementId=str(eid))
                if cp is not None:
                    attrs["contactPoint"] = cp
                _sub(link, tag, **attrs)
        typ = _sub(r, "type", s=0.0, type="town")
        _sub(typ, "speed", max=round(rd.speed_mps * 3.6, 3), unit="km/h")
        pv = _sub(r, "planView")
        for g in rd.plan.geometries:
            ge = _sub(pv, "geometry", s=g.s, x=g.x, y=g.y, hdg=g.hdg, length=g.length)
            if g.curvature == 0.0:
                _sub(ge, "line")
            else:
                _sub(ge, "arc", curvature=g.curvature)
        ep = _sub(r, "elevationProfile")
        _sub(ep, "elevation", s=0.0, a=0.0, b=0.0, c=0.0, d=0.0)
        _sub(r, "lateralProfile")
        lanes = _sub(r, "lanes")
        _sub(lanes, "laneOffset", s=0.0, a=rd.lane_offset, b=0.0, c=0.0, d=0.0)
        sec = _sub(lanes, "laneSection", s=0.0)
        left = sorted((x for x in rd.lanes if x.lane_id > 0), key=lambda x: -x.lane_id)
        right = sorted((x for x in rd.lanes if x.lane_id < 0), key=lambda x: -x.lane_id)
        if left:
            side = _sub(sec, "left")
            for rec in left:
                _lane_xml(side, rec, rd)
        centre = _sub(sec, "center")
        c = _sub(centre, "lane", id="0", type="none", level="false")
        _sub(c, "roadMark", sOffset=0.0, type=rd.centre_mark[0], weight="standard", color=rd.centre_mark[1],
             width=0.15, laneChange="none")
        if right:
            side = _sub(sec, "right")
            for rec in right:
                _lane_xml(side, rec, rd)
        if rd.objects:
            objs = _sub(r, "objects")
            for o in rd.objects:
                oe = _sub(objs, "object", type="crosswalk", name=o["name"], id=o["id"], s=o["s"], t=o["t"], zOffset=0.0,
                          orientation="none", length=o["length"], width=o["width"], hdg=0.0, pitch=0.0, roll=0.0)
                ol = _sub(oe, "outline", id="0", closed="true")
                for i, (u, v) in enumerate(o["corners"]):
                    _sub(ol, "cornerLocal", u=u, v=v, z=0.0, height=0.0, id=str(i))
        if rd.signals:
            sigs = _sub(r, "signals")
            for sg in rd.signals:
                se = _sub(sigs, "signal", s=sg["s"], t=sg["t"], id=sg["id"], name=sg["name"], dynamic="yes",
                          orientation=sg["orientation"], zOffset=sg["z"], type=TRAFFIC_LIGHT_TYPE, subtype="-1",
                          country="DE", height=1.0, width=0.4)
                _sub(se, "validity", fromLane=str(sg["from_lane"]), toLane=str(sg["to_lane"]))
    for cid, sids in layout.controllers.items():
        ce = _sub(root, "controller", id=str(cid), name=f"group_{cid - _CONTROLLER_ID_BASE}")
        for sid in sids:
            _sub(ce, "control", signalId=sid)
    for jn in layout.junctions:
        je = _sub(root, "junction", id=str(jn.id), name=jn.name)
        for cn in jn.connections:
            ce = _sub(je, "connection", id=str(cn.id), incomingRoad=str(cn.incoming), connectingRoad=str(cn.connecting),
                      contactPoint="start")
            _sub(ce, "laneLink", from_=str(cn.lane_from), to=str(cn.lane_to))
        for seq, cid in enumerate(jn.controllers, start=1):
            _sub(je, "controller", id=str(cid), type="0", sequence=str(seq))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _lane_xml(parent: ET.Element, rec: _LaneRec, rd: XodrRoad) -> None:
    ln = _sub(parent, "lane", id=str(rec.lane_id), type=rec.type, level="false")
    link = _sub(ln, "link")
    if rec.lane_id in rd.lane_links:
        pred, succ = rd.lane_links[rec.lane_id]
        if pred is not None:
            _sub(link, "predecessor", id=str(pred))
        if succ is not None:
            _sub(link, "successor", id=str(succ))
    _sub(ln, "width", sOffset=0.0, a=rec.width, b=0.0, c=0.0, d=0.0)
    _sub(ln, "roadMark", sOffset=0.0, type=rec.mark[0], weight="standard", color=rec.mark[1],
         width=0.15 if rec.mark[0] in ("broken", "solid broken") else 0.2, laneChange="both" if rec.mark[0] == "broken" else "none")
    if rec.speed_mps is not None:
        _sub(ln, "speed", sOffset=0.0, max=round(rec.speed_mps * 3.6, 3), unit="km/h")
    if rec.type == "sidewalk":
        _sub(ln, "height", sOffset=0.0, inner=SIDEWALK_HEIGHT, outer=SIDEWALK_HEIGHT)


def export_opendrive(road_map: RoadMap | str, path_or_file) -> None:
    """Write ``road_map`` (a :class:`RoadMap` or a builtin map name) as OpenDRIVE 1.7 to a path or an open file
    (text or binary)."""
    text = opendrive_xml(road_map)
    if isinstance(path_or_file, (str, os.PathLike)):
        Path(path_or_file).write_text(text, encoding="utf-8")
    elif isinstance(path_or_file, io.TextIOBase) or hasattr(path_or_file, "encoding"):
        path_or_file.write(text)
    else:
        path_or_file.write(text.encode("utf-8"))
