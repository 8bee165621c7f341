"""Import of ASAM OpenDRIVE (``.xodr``) road networks as simgen :class:`~simgen.world.roads.RoadMap` objects.

Parser: the ``carla`` client package's offline OpenDRIVE parser, ``carla.Map(name, xodr_text)`` — CARLA's own
C++ parser, which works without a server.  Using it means the builtin backend and a CARLA server agree lane for
lane on the same file.  The XML is read with :mod:`xml.etree.ElementTree` only to *enumerate* what the parser
exposes per id (roads, their lane sections and lane ids, signal attributes and controllers); all geometry —
positions, headings, elevation, lane widths, road marks, lane-change permissions, junction connectivity — comes
from the parser's waypoints, except the superelevation (below), which the parser ignores.

Frames: CARLA's world frame is left-handed (y to the right); simgen's is right-handed ISO 8855 (y left), which is
also the OpenDRIVE inertial frame.  Conversion as in :mod:`simgen.backends.carla_frames`: y -> -y, yaw -> -yaw.

What is built (see docs/maps.md):

- lanes: every lane of every lane section, sampled every :data:`SAMPLE_M` metres along its road with
  ``Map.get_waypoint_xodr``; drivable lanes (driving, entry/exit/ramps, shoulder, stop, parking, biking) become
  :class:`~simgen.world.roads.Lane` records with id ``r{road}_l{lane}_s{section}``, their centre line in the
  direction of travel and their height per vertex; driving lanes inside a junction are ``connector`` lanes.
  Successors come from ``Waypoint.next`` at each lane's end; a lane's ``left``/``right`` are the adjacent
  same-direction lanes where the road marks allow the change.  Sidewalk lanes become
  :class:`~simgen.world.roads.Sidewalk` records.
- ground mesh: every lane is a strip between its two edges at the waypoints' true height (asphalt for drivable and
  narrow border lanes, raised concrete with a kerb face for sidewalks, grass for medians, ``none`` lanes and border
  lanes wider than :data:`BORDER_AS_ROAD_M`), road marks
  (solid, broken, double; white or yellow) as paint strips, zebra crossings, stop lines, and a terrain grid just
  under the road surface whose height follows the nearest road.
- signals: ``1000001`` signals are traffic lights (grouped by their ``controller``; the controllers of one
  junction take turns), their stop line is the holding line (``294``) on the same approach where there is one;
  ``1000003`` signals and ``crosswalk`` objects are crosswalks; 205/206/274 are yield, stop and speed signs.

:class:`XodrLayout` is the lane/signal mapping the carla backend uses when it loads the same file into a server
(``generate_opendrive_world``).

Superelevation (banking): CARLA's parser gives waypoints no roll and every lane of a cross-section the height of
the reference line, so the roll is applied here from the file's own ``lateralProfile/superelevation`` records
(cubic polynomials in s, like the elevation), read with the same ElementTree enumeration as the other records.
A point at lateral offset t from the reference line (OpenDRIVE t, left positive, measured horizontally; t comes
from the ``laneOffset`` records and the lane widths) lies ``t * tan(superelevation(s))`` above the reference
line's height; a positive superelevation raises the left side (a right-handed roll about +s).  Lanes marked
``level="true"`` keep the height of their inner edge across their width.  Lane centre heights, the road, kerb,
sidewalk and marking meshes (hence :meth:`XodrRoadMap.ground_height`) all carry the bank.  ``lateralProfile/shape``
records (OpenDRIVE 1.6 cross-section shapes) are refused with a one-line error.
"""
from __future__ import annotations

import hashlib
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simgen.classes import ROADLINE, ROADS, SIDEWALKS, TERRAIN
from simgen.errors import InputError
from simgen.world.materials import ASPHALT, CONCRETE, GRASS, KERB, ROAD_PAINT, YELLOW_PAINT
from simgen.world.mesh import Mesh, merge
from simgen.world.roads import (PAINT_Z, SIDEWALK_HEIGHT, URBAN_SPEED_MPS, Crosswalk, Lane, Polyline, RoadMap,
                                Sidewalk, TrafficLight, _Frontage, _wrap)

SAMPLE_M = 1.0  # waypoint spacing along each lane (metres)
SIMPLIFY_M = 0.005  # lane centre lines drop sample points a chord reproduces to within this (metres)
TERRAIN_CELL_M = 4.0
TERRAIN_DROP_M = 0.03  # the terrain grid lies this far under the nearest road surface
TERRAIN_MARGIN_M = 40.0
_DASH, _GAP = 3.0, 6.0  # broken-line pattern (metres)
_DOUBLE_GAP = 0.12
BORDER_AS_ROAD_M = 1.0  # border lanes up to this wide are the asphalt's edge; wider ones (a verge) are grass  # gap between the two lines of a double mark

DRIVABLE = {"driving": "driving", "entry": "driving", "exit": "driving", "onramp": "driving", "offramp": "driving",
            "connectingramp": "driving", "bidirectional": "driving", "shoulder": "shoulder", "stop": "shoulder",
            "parking": "parking", "biking": "biking"}
TRAFFIC_LIGHT = "1000001"
PEDESTRIAN_LIGHT = "1000002"
CROSSWALK_SIGNAL = "1000003"
STOP_LINE = "294"
SIGN_KINDS = {"206": "stop", "205": "yield", "274": "speed"}

_CACHE: dict[str, RoadMap] = {}


def carla_module(file: str | None = None):
    """The ``carla`` package (CARLA's OpenDRIVE parser), or a one-line InputError saying why it is missing."""
    import os
    import tempfile

    # the carla client crashes (SIGSEGV) on import when HOME is unset (a cron job, `env -i`, some containers)
    os.environ.setdefault("HOME", tempfile.gettempdir())
    try:
        import carla  # noqa: F401
    except ImportError as e:
        raise InputError(
            "reading OpenDRIVE maps needs the `carla` client package (CARLA's OpenDRIVE parser), which is not "
            f"importable here ({e}); it has wheels for Linux x86_64 only: pip install carla", file=file) from None
    return carla


# ---------------------------------------------------------------------------------------------------------------
# XML enumeration (ids and attributes only; geometry comes from the parser)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _RoadInfo:
    id: int
    length: float
    junction: int  # -1 outside junctions
    sections: list[tuple[float, float, list[tuple[int, str]]]]  # (s0, s1, [(lane id, type)])
    speed_mps: float | None
    signals: list[dict] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list)
    superelevation: list = field(default_factory=list)  # [(s, a, b, c, d)] roll about the reference line (rad)
    lane_offset: list = field(default_factory=list)  # [(s, a, b, c, d)] lateral shift of lane 0 (m)
    level: set = field(default_factory=set)  # {(section, lane id)} of lanes with level="true"


def _poly_records(parent, tag: str, file: str, where: str) -> list:
    """Cubic polynomial records ``<tag s a b c d>`` under ``parent`` as [(s, a, b, c, d)] sorted by s."""
    if parent is None:
        return []
    out = []
    for j, el in enumerate(parent.findall(tag)):
        w = f"{where}/{tag}[{j}]"
        out.append(tuple(_float(el, k, file, w, default=0.0 if k != "s" else None) for k in ("s", "a", "b", "c", "d")))
    return sorted(out, key=lambda r: r[0])


def _cubic(records: list, s) -> np.ndarray:
    """Value of piecewise cubic records [(s, a, b, c, d)] at road s (array); 0 where there are none."""
    s = np.asarray(s, float)
    if not records:
        return np.zeros(s.shape)
    r = np.asarray(records, float)
    i = np.clip(np.searchsorted(r[:, 0], s, side="right") - 1, 0, len(r) - 1)
    ds = s - r[i, 0]
    return r[i, 1] + ds * (r[i, 2] + ds * (r[i, 3] + ds * r[i, 4]))


def _float(el, attr, file, where, default=None):
    v = el.get(attr)
    if v is None:
        if default is not None:
            return default
        raise InputError(f"missing attribute {attr!r}", file=file, key=where)
    try:
        return float(v)
    except ValueError:
        raise InputError(f"attribute {attr}={v!r} is not a number", file=file, key=where) from None


def _int(v, file, where):
    try:
        return int(v)
    except (TypeError, ValueError):
        raise InputError(f"id {v!r} is not an integer (CARLA's OpenDRIVE parser needs numeric road, lane and "
                         "junction ids)", file=file, key=where) from None


_SPEED_UNITS = {"m/s": 1.0, "km/h": 1 / 3.6, "mph": 0.44704}


def _enumerate(root: ET.Element, file: str) -> tuple[dict[int, _RoadInfo], dict[str, str]]:
    """Roads with their sections, lanes, signals and objects; and signal id -> controller id."""
    roads: dict[int, _RoadInfo] = {}
    for i, r in enumerate(root.findall("road")):
        where = f"OpenDRIVE/road[{i}]"
        rid = _int(r.get("id"), file, f"{where}@id")
        where = f"road {rid}"
        if rid in roads:
            raise InputError(f"duplicate road id {rid}", file=file, key=where)
        length = _float(r, "length", file, where)
        junction = _int(r.get("junction", "-1"), file, f"{where}@junction")
        lanes_el = r.find("lanes")
        if lanes_el is None or not lanes_el.findall("laneSection"):
            raise InputError("has no <lanes>/<laneSection>", file=file, key=where)
        secs = lanes_el.findall("laneSection")
        s_starts = [_float(s, "s", file, f"{where}/laneSection[{k}]") for k, s in enumerate(secs)]
        sections = []
        levels: set = set()
        for k, sec in enumerate(secs):
            s0 = s_starts[k]
            s1 = s_starts[k + 1] if k + 1 < len(secs) else length
            lanes = []
            for side in ("left", "right"):
                el = sec.find(side)
                if el is None:
                    continue
                for ln in el.findall("lane"):
                    lane_id = _int(ln.get("id"), file, f"{where}/laneSection[{k}]/lane@id")
                    lanes.append((lane_id, (ln.get("type") or "none").lower()))
                    if (ln.get("level") or "false").strip().lower() in ("true", "1"):
                        levels.add((k, lane_id))
            sections.append((s0, s1, lanes))
        speed = None
        t = r.find("type")
        if t is not None and t.find("speed") is not None:
            sp = t.find("speed")
            try:
                speed = float(sp.get("max")) * _SPEED_UNITS.get(sp.get("unit", "m/s"), 1.0)
            except (TypeError, ValueError):
                speed = None  # "no limit" / "undefined": the default applies
        lat = r.find("lateralProfile")
        if lat is not None and lat.find("shape") is not None:
            raise InputError("lateralProfile/shape (cross-section shape) is not supported; allowed in "
                             "<lateralProfile>: superelevation", file=file, key=f"{where}/lateralProfile/shape")
        info = _RoadInfo(rid, length, junction, sections, speed,
                         superelevation=_poly_records(lat, "superelevation", file, f"{where}/lateralProfile"),
                         lane_offset=_poly_records(lanes_el, "laneOffset", file, f"{where}/lanes"), level=levels)
        sig = r.find("signals")
        if sig is not None:
            for s in sig.findall("signal"):
                d = dict(s.attrib)
                d["validity"] = [(_int(v.get("fromLane"), file, where), _int(v.get("toLane"), file, where))
                                 for v in s.findall("validity")]
                info.signals.append(d)
        objs = r.find("objects")
        if objs is not None:
            info.objects = [dict(o.attrib) for o in objs.findall("object")]
        roads[rid] = info
    if not roads:
        raise InputError("no <road> elements: not an OpenDRIVE road network", file=file)
    controller = {}
    for c in root.findall("controller"):
        for ctl in c.findall("control"):
            controller[str(ctl.get("signalId"))] = str(c.get("id"))
    return roads, controller


# ---------------------------------------------------------------------------------------------------------------
# Sampling with the parser
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _LaneSamples:
    road: int
    section: int
    lane: int
    odr_type: str
    s: np.ndarray  # (n,) road s, in travel order
    xyz: np.ndarray  # (n, 3) simgen world
    yaw: np.ndarray  # (n,) simgen yaw of travel direction
    width: np.ndarray
    outer: list  # per sample: (type str, colour str, width) of the boundary away from the reference line
    inner: list  # per sample: the boundary towards the reference line
    outer_is_right: bool  # in travel direction, the outer boundary is on the right
    change: list  # per sample: carla LaneChange name
    junction: int | None
    forward: bool  # travels along +s
    last_wp: object = None
    bank: np.ndarray | None = None  # (n,) dz per metre to the left of travel (the superelevation's cross slope)

    def bank_or_zero(self) -> np.ndarray:
        return np.zeros(len(self.s)) if self.bank is None else self.bank


def _apply_superelevation(samples: list[_LaneSamples], roads: dict[int, _RoadInfo]) -> None:
    """Raise every lane sample by t * tan(superelevation(s)) (t: its lateral offset from the reference line) and
    record each lane's cross slope, in place (module docstring)."""
    by_sec: dict[tuple[int, int], dict[int, _LaneSamples]] = {}
    for ls in samples:
        by_sec.setdefault((ls.road, ls.section), {})[ls.lane] = ls
    for (r, k), group in by_sec.items():
        rd = roads[r]
        if not rd.superelevation:
            continue
        order = {lane: np.argsort(ls.s) for lane, ls in group.items()}

        def width_at(lane: int, s: np.ndarray) -> np.ndarray:
            o = group.get(lane)
            if o is None:
                return np.zeros(len(s))
            i = order[lane]
            return np.interp(s, o.s[i], o.width[i])

        for lane, ls in group.items():
            sgn = 1.0 if lane > 0 else -1.0
            inner = sum((width_at(int(sgn * j), ls.s) for j in range(1, abs(lane))), np.zeros(len(ls.s)))
            t_inner = _cubic(rd.lane_offset, ls.s) + sgn * inner
            tan = np.tan(_cubic(rd.superelevation, ls.s))
            if (k, lane) in rd.level:
                ls.xyz[:, 2] += t_inner * tan
                ls.bank = np.zeros(len(ls.s))
            else:
                ls.xyz[:, 2] += (t_inner + sgn * ls.width / 2) * tan
                ls.bank = tan if ls.forward else -tan  # left of travel is +t along +s, -t against it


def _mark(m):
    if m is None:
        return ("NONE", "White", 0.0)
    return (str(m.type), str(m.color), float(m.width))


def _sample_lane(cmap, road: _RoadInfo, k: int, lane_id: int, odr_type: str, s0: float, s1: float):
    n = max(2, int(math.ceil((s1 - s0) / SAMPLE_M)) + 1)
    eps = min(1e-4, (s1 - s0) / 10)
    ss = np.linspace(s0 + eps, s1 - eps, n)
    wps, s_ok = [], []
    for s in ss:
        w = cmap.get_waypoint_xodr(road.id, lane_id, float(s))
        if w is None or w.section_id != k or w.lane_id != lane_id:
            continue
        wps.append(w)
        s_ok.append(float(s))
    if len(wps) < 2:
        return None
    loc = np.array([[w.transform.location.x, w.transform.location.y, w.transform.location.z] for w in wps])
    yaw_c = np.array([w.transform.rotation.yaw for w in wps])
    xyz = loc * [1.0, -1.0, 1.0]
    yaw = np.deg2rad(-yaw_c)
    chord = np.diff(xyz[:, :2], axis=0)
    dirs = np.stack([np.cos(yaw[:-1]), np.sin(yaw[:-1])], -1)
    forward = bool(np.sum(np.sum(chord * dirs, axis=1)) >= 0)
    width = np.array([w.lane_width for w in wps])
    left = [_mark(w.left_lane_marking) for w in wps]
    right = [_mark(w.right_lane_marking) for w in wps]
    change = [str(w.lane_change) for w in wps]
    # the outer boundary (away from the reference line): lane < 0 lies right of +s, lane > 0 left of it
    outer_is_right = (lane_id < 0) == forward
    outer, inner = (right, left) if outer_is_right else (left, right)
    junction = road.junction if road.junction >= 0 else None
    s_arr = np.array(s_ok)
    if not forward:
        xyz, yaw, width, s_arr = xyz[::-1], yaw[::-1], width[::-1], s_arr[::-1]
        outer, inner, change, wps = outer[::-1], inner[::-1], change[::-1], wps[::-1]
    return _LaneSamples(road.id, k, lane_id, odr_type, s_arr, xyz, yaw, width, outer, inner, outer_is_right,
                        change, junction, forward, wps[-1])


def lane_key(road: int, lane: int, section: int) -> str:
    return f"r{road}_l{lane}_s{section}"


def _simplify(p: np.ndarray, tol: float) -> np.ndarray:
    """Mask of the vertices of polyline ``p`` (n, 2) that Douglas-Peucker keeps at tolerance ``tol`` (metres)."""
    keep = np.zeros(len(p), bool)
    keep[[0, -1]] = True
    stack = [(0, len(p) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = p[i], p[j]
        d = b - a
        n = float(np.hypot(*d))
        q = p[i + 1:j] - a
        dist = np.abs(q[:, 0] * d[1] - q[:, 1] * d[0]) / n if n > 1e-12 else np.hypot(q[:, 0], q[:, 1])
        k = int(np.argmax(dist))
        if dist[k] > tol:
            m = i + 1 + k
            keep[m] = True
            stack += [(i, m), (m, j)]
    return keep


def _polyline(xyz: np.ndarray):
    """Polyline of (n, 3) points plus the heights of its vertices (consecutive duplicates dropped together, and
    vertices that a straight chord reproduces to within :data:`SIMPLIFY_M` and whose height is linear along it:
    routes then have few segments, which keeps projecting onto them cheap)."""
    keep = np.concatenate([[True], np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1) > 1e-6])
    idx = np.flatnonzero(keep)
    # simplify in (x, y) and in (arc length, z) together: a vertex stays if either view needs it
    q = xyz[idx]
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q[:, :2], axis=0), axis=1))])
    k2 = _simplify(q[:, :2], SIMPLIFY_M) | _simplify(np.column_stack([arc, q[:, 2]]), SIMPLIFY_M)
    keep = np.zeros(len(xyz), bool)
    keep[idx[k2]] = True
    p = xyz[keep]
    if len(p) < 2:
        return None, None, keep
    return Polyline(p[:, :2]), p[:, 2].copy(), keep


# ---------------------------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------------------------


def _normals(yaw: np.ndarray) -> np.ndarray:
    return np.stack([-np.sin(yaw), np.cos(yaw)], -1)


def _strip3d(a: np.ndarray, b: np.ndarray, material: int, semantic: int) -> Mesh:
    """Quads between two polylines a, b (n, 3) (a on the left of b), oriented counter-clockwise from above."""
    n = len(a)
    if n < 2:
        return Mesh.empty()
    v = np.concatenate([a, b])
    i = np.arange(n - 1)
    # a is on the left of travel, b on the right: (b_i, b_i+1, a_i+1) is counter-clockwise seen from above
    tri = np.concatenate([np.stack([n + i, n + i + 1, i + 1], -1), np.stack([n + i, i + 1, i], -1)])
    return Mesh.build(v, tri, material, semantic)


def _wall3d(p: np.ndarray, height: float, material: int, semantic: int) -> Mesh:
    n = len(p)
    if n < 2:
        return Mesh.empty()
    v = np.concatenate([p, p + [0.0, 0.0, height]])
    i = np.arange(n - 1)
    tri = np.concatenate([np.stack([i, i + 1, n + i + 1], -1), np.stack([i, n + i + 1, n + i], -1)])
    return Mesh.build(v, tri, material, semantic)


def _segments_mesh(p0: np.ndarray, p1: np.ndarray, nrm0: np.ndarray, nrm1: np.ndarray, lat0, lat1, half_w,
                   material: int, bank0=0.0, bank1=0.0) -> Mesh:
    """Independent paint quads for segments p0 -> p1 (m, 3): lateral centre lat (m,) and half width (m,); ``bank``
    is the cross slope at each end (dz per metre to the left), so the paint lies on a banked surface."""
    m = len(p0)
    if m == 0:
        return Mesh.empty()
    z = np.array([0.0, 0.0, PAINT_Z])
    a0 = p0.copy()
    a0[:, :2] += nrm0 * (lat0 + half_w)[:, None]
    a0[:, 2] += (lat0 + half_w) * bank0
    b0 = p0.copy()
    b0[:, :2] += nrm0 * (lat0 - half_w)[:, None]
    b0[:, 2] += (lat0 - half_w) * bank0
    a1 = p1.copy()
    a1[:, :2] += nrm1 * (lat1 + half_w)[:, None]
    a1[:, 2] += (lat1 + half_w) * bank1
    b1 = p1.copy()
    b1[:, :2] += nrm1 * (lat1 - half_w)[:, None]
    b1[:, 2] += (lat1 - half_w) * bank1
    v = np.stack([a0, b0, b1, a1], 1).reshape(-1, 3) + z
    base = 4 * np.arange(m)[:, None]
    tri = np.concatenate([base + [1, 2, 3], base + [1, 3, 0]])
    return Mesh.build(v, tri, material, ROADLINE)


_MARK_LINES = {  # carla LaneMarkingType -> line patterns from the lane side outwards (True solid, False broken)
    "Solid": (True,), "Broken": (False,), "SolidSolid": (True, True), "SolidBroken": (True, False),
    "BrokenSolid": (False, True), "BrokenBroken": (False, False), "BottsDots": (False,),
}


def _marks_mesh(lanes: list[_LaneSamples], boundary: str) -> list[Mesh]:
    """Paint for the ``boundary`` ("outer" or "inner") marks of ``lanes``."""
    out = []
    for ls in lanes:
        marks = getattr(ls, boundary)
        nrm = _normals(ls.yaw)
        bank = ls.bank_or_zero()
        # lateral of the boundary, left of travel positive
        on_right = ls.outer_is_right if boundary == "outer" else not ls.outer_is_right
        side = -1.0 if on_right else 1.0
        edge = side * ls.width / 2
        seg_len = np.linalg.norm(np.diff(ls.xyz, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg_len)])
        mid = 0.5 * (arc[:-1] + arc[1:])
        dash_on = (mid % (_DASH + _GAP)) < _DASH
        types = [m[0] for m in marks[:-1]]
        for mtype, pattern in _MARK_LINES.items():
            sel = np.array([t == mtype for t in types])
            if not sel.any():
                continue
            w = np.array([max(0.08, m[2]) for m in marks[:-1]])
            col = np.array([m[1] == "Yellow" for m in marks[:-1]])
            for j, solid in enumerate(pattern):
                if len(pattern) == 1:
                    off = 0.0
                else:  # two lines either side of the boundary; the first is the one nearer this lane
                    off = (-side if j == 0 else side) * (w / 2 + _DOUBLE_GAP / 2)
                use = sel & (True if solid else dash_on)
                for yellow in (False, True):
                    u = np.flatnonzero(use & (col == yellow))
                    if len(u) == 0:
                        continue
                    lat0 = edge[u] + (off[u] if np.ndim(off) else off)
                    lat1 = edge[u + 1] + (off[u] if np.ndim(off) else off)
                    out.append(_segments_mesh(ls.xyz[u], ls.xyz[u + 1], nrm[u], nrm[u + 1], lat0, lat1, w[u] / 2,
                                              YELLOW_PAINT if yellow else ROAD_PAINT, bank[u], bank[u + 1]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The map
# ---------------------------------------------------------------------------------------------------------------


class XodrRoadMap(RoadMap):
    """A :class:`RoadMap` imported from OpenDRIVE.  Heights are real: :meth:`ground_height` and :meth:`surface_at`
    read the ground mesh itself (a vertical ray cast from above with Embree), so an actor's z is the height of
    the surface the renderer and the LiDAR see under it."""

    source_file: str = ""
    info: dict = {}
    junction_ids: list = []  # OpenDRIVE junction id of each outline in ``junctions``

    def _scene(self):
        sc = getattr(self, "_o3d_scene", None)
        if sc is None:
            from simgen.sensors.render import _scene_of

            sc = self._o3d_scene = _scene_of(self.ground)
            self._sem_ext = np.append(self.ground.semantic, np.uint8(TERRAIN))
            self._top = float(self.ground.vertices[:, 2].max()) + 100.0
        return sc

    def _cast_down(self, xy) -> tuple[np.ndarray, np.ndarray]:
        from simgen._o3d import o3d

        P = np.asarray(xy, np.float64).reshape(-1, 2)
        sc = self._scene()
        rays = np.zeros((len(P), 6), np.float32)
        rays[:, :2] = P
        rays[:, 2] = self._top
        rays[:, 5] = -1.0
        r = sc.cast_rays(o3d.core.Tensor(rays))
        t = r["t_hit"].numpy().astype(np.float64)
        prim = r["primitive_ids"].numpy().astype(np.int64)
        prim[~np.isfinite(t)] = -1
        z = np.where(np.isfinite(t), self._top - t, 0.0)
        return z, prim

    def surface_at(self, xy: np.ndarray) -> np.ndarray:
        _, prim = self._cast_down(xy)
        sem = self._sem_ext[prim]
        sem = np.where(sem == ROADLINE, ROADS, sem)
        return np.where(np.isin(sem, (ROADS, SIDEWALKS)), sem, TERRAIN).astype(np.uint8)

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        return self._cast_down(xy)[0]

    def lane_at_road_s(self, road: int, lane: int, s: float) -> tuple[Lane, float] | None:
        """The lane record and its arc length at OpenDRIVE (road, lane id, road s), or None."""
        for (r, k, l), lid in self._odr_index.items():
            if r != road or l != lane:
                continue
            ln = self.lanes.get(lid)
            if ln is None or ln.s_road is None:
                continue
            sr = ln.s_road
            s0, s1 = self._sections[(r, k)]
            if s0 - 1e-6 <= s <= s1 + 1e-6:
                arc = float(np.interp(s, sr, ln.centre.vertex_s) if sr[-1] >= sr[0]
                            else np.interp(-s, -sr, ln.centre.vertex_s))
                return ln, arc
        return None


def load_xodr(path: str | Path, *, file: str | None = None) -> XodrRoadMap:
    """The map in the OpenDRIVE file ``path`` (cached in memory by the file's content hash)."""
    path = Path(path)
    shown = file or str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read OpenDRIVE map: {e.strerror}", file=shown) from None
    key = hashlib.sha256(data).hexdigest()
    if key not in _CACHE:
        _CACHE[key] = build_xodr_map(data, name=str(path), file=shown)
    m = _CACHE[key]
    if m.name != str(path):  # same content under another name: share the build, keep the caller's name
        import copy

        m = copy.copy(m)
        m.name = str(path)
    return m


def build_xodr_map(data: bytes | str, *, name: str, file: str) -> XodrRoadMap:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise InputError(f"not well-formed XML: {e}", file=file) from None
    if root.tag != "OpenDRIVE":
        raise InputError(f"the root element is <{root.tag}>; allowed: <OpenDRIVE>", file=file)
    roads, controller = _enumerate(root, file)
    carla = carla_module(file)
    for rd in roads.values():  # geometry the parser needs
        if rd.length <= 0:
            raise InputError(f"length {rd.length} is not positive", file=file, key=f"road {rd.id}")
    try:
        with _quiet_stderr() as said:
            cmap = carla.Map(Path(name).stem or "map", text)
    except Exception as e:  # noqa: BLE001 - the parser rejects the file
        raise InputError(f"CARLA's OpenDRIVE parser rejected the file: {e}", file=file) from None
    for line in said:
        if "georeference" not in line and line.strip():  # the parser's remarks, kept (the default georeference is fine)
            import warnings

            warnings.warn(f"{file}: CARLA's OpenDRIVE parser: {line.strip()}", stacklevel=2)
    samples: list[_LaneSamples] = []
    sections: dict[tuple[int, int], tuple[float, float]] = {}
    for rd in roads.values():
        for k, (s0, s1, lanes) in enumerate(rd.sections):
            sections[(rd.id, k)] = (s0, s1)
            if s1 - s0 < 1e-3:
                continue
            for lane_id, t in lanes:
                if lane_id == 0:
                    continue
                ls = _sample_lane(cmap, rd, k, lane_id, t, s0, s1)
                if ls is not None:
                    samples.append(ls)
    if not samples:
        raise InputError("CARLA's OpenDRIVE parser found no lanes with geometry", file=file)
    _apply_superelevation(samples, roads)
    return _assemble(name, file, roads, controller, cmap, samples, sections, root)


class _quiet_stderr:
    """Capture what C++ code writes to file descriptor 2 (CARLA's parser prints remarks there) as lines."""

    def __enter__(self):
        import tempfile

        self.lines: list[str] = []
        try:
            self._saved = os.dup(2)
        except OSError:
            self._saved = None
            return self.lines
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 2)
        return self.lines

    def __exit__(self, *exc):
        if self._saved is None:
            return False
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.lines.extend(self._tmp.read().decode("utf-8", "replace").splitlines())
        self._tmp.close()
        return False


def _turn(d: float) -> str:
    if abs(d) > math.radians(150):
        return "uturn"
    if d > math.radians(30):
        return "left"
    if d < -math.radians(30):
        return "right"
    return "straight"


def _assemble(name, file, roads, controller, cmap, samples, sections, root) -> XodrRoadMap:
    by_key = {(ls.road, ls.section, ls.lane): ls for ls in samples}
    lanes: dict[str, Lane] = {}
    sidewalks: list[Sidewalk] = []
    odr_index: dict[tuple[int, int, int], str] = {}
    polys: dict[str, tuple[Polyline, np.ndarray, np.ndarray]] = {}
    for ls in samples:
        kind = DRIVABLE.get(ls.odr_type)
        if kind is None and ls.odr_type != "sidewalk":
            continue
        poly, z, keep = _polyline(ls.xyz)
        if poly is None:
            continue
        lid = lane_key(ls.road, ls.lane, ls.section)
        polys[lid] = (poly, z, ls.s[keep])
        odr_index[(ls.road, ls.section, ls.lane)] = lid
        if ls.odr_type == "sidewalk":
            sidewalks.append(Sidewalk(lid, poly, float(np.median(ls.width))))
    # successors (drivable lanes): Waypoint.next past each lane's end
    succ: dict[str, list[str]] = {}
    for ls in samples:
        lid = lane_key(ls.road, ls.lane, ls.section)
        if lid not in polys or ls.odr_type == "sidewalk":
            continue
        out = []
        for w in ls.last_wp.next(0.5):
            key = (w.road_id, w.section_id, w.lane_id)
            nid = odr_index.get(key)
            if nid is not None and nid != lid and nid not in out:
                out.append(nid)
        succ[lid] = out
    speed = {rd.id: rd.speed_mps for rd in roads.values()}
    for ls in samples:
        lid = lane_key(ls.road, ls.lane, ls.section)
        if lid not in polys or ls.odr_type == "sidewalk":
            continue
        poly, z, s_road = polys[lid]
        kind = DRIVABLE[ls.odr_type]
        if kind == "driving" and ls.junction is not None:
            kind = "connector"
        # neighbours in the direction of travel: left is towards the reference line for right-hand traffic
        step_left = 1 if ls.lane < 0 else -1
        if not ls.outer_is_right:
            step_left = -step_left
        nb = {}
        changes = ls.change
        allow = {"left": sum(c in ("Left", "Both") for c in changes) > len(changes) / 2,
                 "right": sum(c in ("Right", "Both") for c in changes) > len(changes) / 2}
        for side, step in (("left", step_left), ("right", -step_left)):
            other = by_key.get((ls.road, ls.section, ls.lane + step))
            nb[side] = None
            if other is None or (ls.lane + step) == 0 or (ls.lane + step) * ls.lane < 0:
                continue
            okind = DRIVABLE.get(other.odr_type)
            if okind is None or other.forward != ls.forward or not allow[side]:
                continue
            # driving lanes neighbour driving lanes and the shoulder/parking lane beside them (pulling over);
            # shoulder, parking and biking lanes neighbour only driving lanes
            if (okind not in ("driving", "shoulder", "parking")) if kind in ("driving", "connector") else okind != "driving":
                continue
            nb[side] = lane_key(other.road, other.lane, other.section)
        # turns at the lane end
        succ_ids = succ.get(lid, [])
        successors: dict[str, str] = {}
        for nid in succ_ids:
            nxt = polys.get(nid)
            if nxt is None:
                continue
            if len(succ_ids) == 1:
                t = "straight"
            else:
                p = nxt[0]
                yaws = p.pose_at(np.array([0.0, p.length]))[2]
                # follow a connector to its end for its total turn
                t = _turn(float(_wrap(yaws[1] - yaws[0])))
            k, key = 2, t
            while key in successors:
                key, k = f"{t}_{k}", k + 1
            successors[key] = nid
        rd_speed = speed.get(ls.road) or URBAN_SPEED_MPS
        lanes[lid] = Lane(lid, str(ls.road), poly, float(np.median(ls.width)), nb["left"], nb["right"], rd_speed,
                          successors, kind, z=z, lane_type=ls.odr_type, odr=(ls.road, ls.section, ls.lane),
                          s_road=s_road, junction=ls.junction)

    lights, crosswalks, signs, stop_marks, signal_info = _signals(name, file, roads, controller, cmap, lanes,
                                                                  odr_index, sections, polys)
    for lid, (stop_s, sig) in stop_marks.items():
        from dataclasses import replace

        lanes[lid] = replace(lanes[lid], stop_s=stop_s, signal=sig)
    ground, frontages, (junction_outlines, junction_ids) = _ground(samples, lanes, crosswalks, stop_marks, roads)
    description = f"OpenDRIVE map {Path(name).name}: {len(roads)} roads, " \
                  f"{len({rd.junction for rd in roads.values() if rd.junction >= 0})} junctions, " \
                  f"{len(lanes)} lanes, {len(lights)} traffic lights"
    m = XodrRoadMap(name, description, lanes, sidewalks, crosswalks, lights, junction_outlines, ground, [],
                    _strips=[], _areas=[], _frontages=frontages, _signs=signs)
    m.source_file = name
    m.junction_ids = junction_ids
    m._odr_index = odr_index
    m._sections = sections
    m.info = {"roads": roads, "signals": signal_info, "controllers": controller}
    return m


def _signals(name, file, roads, controller, cmap, lanes, odr_index, sections, polys):
    """Traffic lights (with phases per junction), crosswalks, signs, and lane stop lines."""
    lights: list[TrafficLight] = []
    crosswalks: list[Crosswalk] = []
    signs: list[tuple[float, float, float, str]] = []
    stop: dict[str, tuple[float, str | None]] = {}
    info = []
    landmarks = {}
    for lm in cmap.get_all_landmarks():
        landmarks.setdefault(str(lm.id), []).append(lm)

    def section_of(road: int, s: float) -> int | None:
        rd = roads[road]
        for k, (s0, s1, _) in enumerate(rd.sections):
            if s0 - 1e-6 <= s <= s1 + 1e-6 and s1 - s0 > 1e-3:
                return k
        return None

    def controlled_lanes(road: int, s: float, orientation: str, validity) -> list[str]:
        k = section_of(road, s)
        if k is None:
            return []
        out = []
        for lane_id, t in roads[road].sections[k][2]:
            lid = odr_index.get((road, k, lane_id))
            if lid is None or lanes.get(lid) is None or lanes[lid].kind not in ("driving", "connector"):
                continue
            fwd = lanes[lid].s_road[-1] >= lanes[lid].s_road[0]
            if orientation == "+" and not fwd or orientation == "-" and fwd:
                continue
            if validity and not any(min(a, b) <= lane_id <= max(a, b) for a, b in validity):
                continue
            out.append(lid)
        return out

    def arc_at(lid: str, s: float) -> float:
        ln = lanes[lid]
        sr = ln.s_road
        return float(np.interp(s, sr, ln.centre.vertex_s) if sr[-1] >= sr[0] else np.interp(-s, -sr, ln.centre.vertex_s))

    light_groups: dict[str, list[int]] = {}
    for rd in roads.values():
        for sg in rd.signals:
            sid = str(sg.get("id"))
            typ = str(sg.get("type"))
            try:
                s = float(sg.get("s", 0.0))
                t = float(sg.get("t", 0.0))
            except ValueError:
                raise InputError(f"signal {sid}: s/t are not numbers", file=file, key=f"road {rd.id}") from None
            orient = sg.get("orientation", "+")
            lms = landmarks.get(sid, [])
            lm = next((x for x in lms if x.road_id == rd.id), lms[0] if lms else None)
            info.append({"road": rd.id, "id": sid, "type": typ, "name": sg.get("name", ""), "s": s, "t": t,
                         "orientation": orient, "dynamic": sg.get("dynamic", "no"),
                         "controller": controller.get(sid)})
            if typ == TRAFFIC_LIGHT:
                ctl = controlled_lanes(rd.id, s, orient, sg["validity"])
                if not ctl:
                    continue
                # stop at the holding line on this approach, if there is one within 20 m, else at the signal
                s_stop = s
                best = None
                for other in rd.signals:
                    if str(other.get("type")) == STOP_LINE and other.get("orientation", "+") == orient:
                        d = abs(float(other.get("s", 0.0)) - s)
                        if d < 20.0 and (best is None or d < best):
                            best, s_stop = d, float(other.get("s", 0.0))
                group = f"ctrl{controller[sid]}" if sid in controller else f"sig{sid}"
                light_id = f"tl_{sid}"
                for lid in ctl:
                    stop[lid] = (max(0.0, arc_at(lid, s_stop) - 0.2), light_id)
                ln = lanes[ctl[0]]
                arc = arc_at(ctl[0], s_stop)
                x, y, yaw = ln.centre.pose_at(arc)
                if lm is not None:
                    loc = lm.transform.location
                    pos = np.array([loc.x, -loc.y, loc.z])
                else:
                    pos = np.array([float(x), float(y), 0.0])
                z = np.interp(arc, ln.centre.vertex_s, ln.z)
                lights.append(TrafficLight(light_id, np.array([pos[0], pos[1], z + SIDEWALK_HEIGHT]),
                                           float(_wrap(yaw + math.pi)), tuple(ctl), group))
                light_groups.setdefault(group, [])
            elif typ in SIGN_KINDS and lm is not None:
                loc = lm.transform.location
                ctl = controlled_lanes(rd.id, s, orient, sg["validity"])
                yaw = lanes[ctl[0]].centre.pose_at(arc_at(ctl[0], s))[2] + math.pi if ctl else \
                    math.radians(-lm.transform.rotation.yaw)
                signs.append((float(loc.x), float(-loc.y), float(_wrap(yaw)), SIGN_KINDS[typ]))
            elif typ == CROSSWALK_SIGNAL:
                k = section_of(rd.id, s)
                try:
                    length = float(sg.get("value") or 4.0)
                    width = float(sg.get("width") or 0.0)
                except ValueError:
                    length, width = 4.0, 0.0
                cw = _crosswalk_from_road(cmap, rd, k, f"crosswalk_{sid}_r{rd.id}", s, t, length, width)
                if cw is not None:
                    crosswalks.append(cw)
    for i, pts in enumerate(_carla_crosswalks(cmap)):
        poly = pts[:, :2]
        c = poly.mean(0)
        # centre line across: along the polygon's longer direction
        e = poly - c
        u, sv, vt = np.linalg.svd(e, full_matrices=False)
        d = vt[0]
        ext = np.abs(e @ d).max()
        crosswalks.append(Crosswalk(f"crosswalk_obj{i}", poly, c - d * ext, c + d * ext))
    # phases: the light groups feeding one junction take turns
    by_junction: dict[int, list[str]] = {}
    for tl in lights:
        j = None
        for lid in tl.lanes:
            for nid in lanes[lid].successors.values():
                if lanes[nid].junction is not None:
                    j = lanes[nid].junction
                    break
            if j is not None:
                break
        key = j if j is not None else -1_000_000 - len(by_junction)
        if tl.group not in by_junction.setdefault(key, []):
            by_junction[key].append(tl.group)
    phase = {}
    for key, groups in by_junction.items():
        groups.sort(key=lambda g: (len(g), g))
        for i, g in enumerate(groups):
            phase[g] = (i, len(groups))
    from dataclasses import replace

    lights = [replace(tl, phase=phase[tl.group][0], n_phases=max(2, phase[tl.group][1])) for tl in lights]
    return lights, crosswalks, signs, stop, info


def _carla_crosswalks(cmap) -> list[np.ndarray]:
    locs = cmap.get_crosswalks()
    out, cur = [], []
    for loc in locs:
        p = np.array([loc.x, -loc.y, loc.z])
        if cur and np.linalg.norm(p - cur[0]) < 1e-6 and len(cur) >= 3:
            out.append(np.array(cur))
            cur = []
        else:
            cur.append(p)
    return out


def _crosswalk_from_road(cmap, rd, k, cid, s, t, length, width):
    """Crosswalk polygon from a crosswalk road-mark signal at (s, t): ``length`` along s from s, ``width`` across."""
    if k is None:
        return None
    lanes = rd.sections[k][2]
    ref_lane = next((l for l, _ in sorted(lanes, key=lambda x: abs(x[0])) if l != 0), None)
    if ref_lane is None:
        return None
    s1 = min(rd.length - 1e-3, s + length)
    pts = []
    for ss in (max(1e-3, s), s1):
        w = cmap.get_waypoint_xodr(rd.id, ref_lane, float(ss))
        if w is None:
            return None
        loc = w.transform.location
        c = np.array([loc.x, -loc.y])
        yaw = math.radians(-w.transform.rotation.yaw)
        nrm = np.array([-math.sin(yaw), math.cos(yaw)])
        # nrm is left of the lane's travel; +t is left of +s
        fwd = (ref_lane < 0)
        tn = nrm if fwd else -nrm
        half = w.lane_width / 2
        ref = c + tn * half if ref_lane < 0 else c - tn * half  # the lane's inner edge: the reference line
        pts.append((ref, tn))
    if width <= 0:
        width = 8.0
    (r0, n0), (r1, n1) = pts
    lo, hi = t - width / 2, t + width / 2
    poly = np.array([r0 + n0 * lo, r1 + n1 * lo, r1 + n1 * hi, r0 + n0 * hi])
    mid0, mid1 = 0.5 * (r0 + r1), 0.5 * (n0 + n1)
    return Crosswalk(cid, poly, mid0 + mid1 * lo, mid0 + mid1 * hi)


def _ground(samples, lanes, crosswalks, stop_marks, roads):
    """Ground mesh (lane strips, kerbs, marks, zebras, stop lines, terrain), frontages and junction outlines."""
    from scipy.spatial import ConvexHull, cKDTree

    meshes: list[Mesh] = []
    edge_pts = []
    surface_z = _surface_z_of(samples)
    by_road_sec: dict[tuple[int, int], list[_LaneSamples]] = {}
    for ls in samples:
        by_road_sec.setdefault((ls.road, ls.section), []).append(ls)
    for ls in samples:
        nrm = _normals(ls.yaw)
        half = (ls.width / 2)[:, None]
        rise = ls.bank_or_zero() * ls.width / 2  # superelevation: the left edge (of travel) this much higher
        left = ls.xyz.copy()
        left[:, :2] += nrm * half
        left[:, 2] += rise
        right = ls.xyz.copy()
        right[:, :2] -= nrm * half
        right[:, 2] -= rise
        t = ls.odr_type
        if t == "sidewalk":
            up = np.array([0.0, 0.0, SIDEWALK_HEIGHT])
            meshes.append(_strip3d(left + up, right + up, CONCRETE, SIDEWALKS))
            inner_edge = left if not ls.outer_is_right else right  # towards the reference line
            outer_edge = right if not ls.outer_is_right else left
            inner_id = ls.lane + (1 if ls.lane < 0 else -1)
            nb = by_road_sec.get((ls.road, ls.section), [])
            inner_t = next((o.odr_type for o in nb if o.lane == inner_id), None)
            if inner_t != "sidewalk":
                meshes.append(_wall3d(inner_edge, SIDEWALK_HEIGHT, KERB, SIDEWALKS))
            meshes.append(_wall3d(outer_edge - [0, 0, TERRAIN_DROP_M + 0.02], SIDEWALK_HEIGHT + TERRAIN_DROP_M + 0.02,
                                  CONCRETE, SIDEWALKS))
        elif t == "curb":
            up = np.array([0.0, 0.0, SIDEWALK_HEIGHT])
            meshes.append(_strip3d(left + up, right + up, KERB, SIDEWALKS))
        elif t in ("median", "none") or (t == "border" and float(np.median(ls.width)) > BORDER_AS_ROAD_M):
            meshes.append(_strip3d(left, right, GRASS, TERRAIN))
        else:
            meshes.append(_strip3d(left, right, ASPHALT, ROADS))
        edge_pts += [left, right]
    # marks: every lane's outer boundary; the centre line from the lanes next to the reference line
    meshes += _marks_mesh(samples, "outer")
    centre = []
    for (r, k), group in by_road_sec.items():
        ids = {o.lane for o in group}
        pick = -1 if -1 in ids else (1 if 1 in ids else None)
        if pick is not None:
            centre += [o for o in group if o.lane == pick]
    meshes += _marks_mesh(centre, "inner")
    # zebra crossings (stripes along the crossing direction's normal, 0.5 m wide at 1 m pitch)
    for cw in crosswalks:
        a, b = np.asarray(cw.start, float), np.asarray(cw.end, float)
        across = b - a
        L = float(np.linalg.norm(across))
        if L < 0.5:
            continue
        u = across / L
        poly = np.asarray(cw.polygon, float)
        along = np.array([u[1], -u[0]])
        half_len = float(np.abs((poly - (a + b) / 2) @ along).max())
        centres = np.arange(0.5, L - 0.49, 1.0)
        p0 = a + centres[:, None] * u
        quads = []
        for c in p0:
            q = np.array([c - 0.25 * u - half_len * along, c + 0.25 * u - half_len * along,
                          c + 0.25 * u + half_len * along, c - 0.25 * u + half_len * along])
            quads.append(q)
        if quads:
            q = np.array(quads).reshape(-1, 2)
            v = np.column_stack([q, surface_z(q) + PAINT_Z])
            base = 4 * np.arange(len(quads))[:, None]
            meshes.append(Mesh.build(v, np.concatenate([base + [0, 1, 2], base + [0, 2, 3]]), ROAD_PAINT, ROADLINE))
    # stop lines across the lanes that stop at a light
    for lid, (stop_s, _) in stop_marks.items():
        ln = lanes[lid]
        s0, s1 = stop_s + 0.2, stop_s + 0.6
        st = np.array([s0, s1])
        xa, ya, _ = ln.centre.pose_at(st, ln.width_m / 2 - 0.1)
        xb, yb, _ = ln.centre.pose_at(st, -ln.width_m / 2 + 0.1)
        q = np.array([[xa[0], ya[0]], [xb[0], yb[0]], [xb[1], yb[1]], [xa[1], ya[1]]])
        v = np.column_stack([q, surface_z(q) + 2 * PAINT_Z])
        meshes.append(Mesh.build(v, [[0, 1, 2], [0, 2, 3]], ROAD_PAINT, ROADLINE))
    road_mesh = merge(meshes)
    # terrain: a grid under everything, its height that of the nearest road edge minus a small drop
    pts = np.concatenate(edge_pts)
    lo = pts[:, :2].min(0) - TERRAIN_MARGIN_M
    hi = pts[:, :2].max(0) + TERRAIN_MARGIN_M
    nx, ny = (np.ceil((hi - lo) / TERRAIN_CELL_M).astype(int) + 1)
    gx, gy = np.linspace(lo[0], hi[0], nx), np.linspace(lo[1], hi[1], ny)
    G = np.stack(np.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)
    tree = cKDTree(pts[:, :2])
    _, idx = tree.query(G)
    # on a banked road the nearest edge can be higher than the surface at the node (inside a wide banked strip):
    # take the lower of that edge and the nearest lane's banked plane there
    gz = np.minimum(pts[idx, 2], _surface_z_of(samples, drivable_first=False)(G)) - TERRAIN_DROP_M
    i = np.arange(nx - 1)[None, :] + nx * np.arange(ny - 1)[:, None]
    i = i.reshape(-1)
    tri = np.concatenate([np.stack([i, i + 1, i + nx + 1], -1), np.stack([i, i + nx + 1, i + nx], -1)])
    terrain = Mesh.build(np.column_stack([G, gz]), tri, GRASS, TERRAIN)
    ground = merge([road_mesh, terrain])
    # frontages for scenery: the outermost edge of each non-junction road side, along +s
    frontages = []
    for (r, k), group in by_road_sec.items():
        if roads[r].junction >= 0:
            continue
        for sign, side in ((-1, -1), (1, 1)):
            g = [o for o in group if np.sign(o.lane) == sign]
            if not g:
                continue
            o = max(g, key=lambda x: abs(x.lane))
            nrm = _normals(o.yaw)
            off = (-1.0 if o.outer_is_right else 1.0) * (o.width / 2)
            e = o.xyz[:, :2] + nrm * off[:, None]
            if not o.forward:
                e = e[::-1]
            keep = np.concatenate([[True], np.linalg.norm(np.diff(e, axis=0), axis=1) > 1e-6])
            e = e[keep]
            if len(e) < 2:
                continue
            p = Polyline(e)
            if p.length > 10.0:
                frontages.append(_Frontage(p, side, 0.0, p.length, base=0.0))
    outlines = []
    by_j: dict[int, list[np.ndarray]] = {}
    for ls in samples:
        if ls.junction is not None:
            nrm = _normals(ls.yaw)
            half = (ls.width / 2)[:, None]
            by_j.setdefault(ls.junction, []).extend([ls.xyz[:, :2] + nrm * half, ls.xyz[:, :2] - nrm * half])
    jids = []
    for j, parts in sorted(by_j.items()):
        p = np.concatenate(parts)
        try:
            hull = ConvexHull(p)
            outlines.append(p[hull.vertices])
            jids.append(j)
        except Exception:  # noqa: BLE001 - degenerate (a single straight connector)
            continue
    return ground, frontages, (outlines, jids)


def _surface_z_of(samples, drivable_first: bool = True):
    """Function (m,2) xy -> (m,) height of the road surface near the lanes: the nearest lane sample's centre height
    plus the superelevation's cross slope times the point's lateral offset from that centre (drivable lanes first:
    paint lies on the carriageway)."""
    from scipy.spatial import cKDTree

    use = ([ls for ls in samples if ls.odr_type in DRIVABLE] if drivable_first else []) or samples
    c = np.concatenate([ls.xyz for ls in use])
    nrm = np.concatenate([_normals(ls.yaw) for ls in use])
    bank = np.concatenate([ls.bank_or_zero() for ls in use])
    tree = cKDTree(c[:, :2])

    def z_at(xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, float).reshape(-1, 2)
        _, i = tree.query(xy)
        return c[i, 2] + np.einsum("nk,nk->n", xy - c[i, :2], nrm[i]) * bank[i]

    return z_at


# ---------------------------------------------------------------------------------------------------------------
# CARLA towns
# ---------------------------------------------------------------------------------------------------------------


def carla_town_xodr(name: str, carla_root: str | None = None) -> Path | None:
    """The .xodr of CARLA town ``name`` in a CARLA installation (``carla_root`` or $SIMGEN_CARLA_ROOT), or None."""
    root = carla_root or os.environ.get("SIMGEN_CARLA_ROOT")
    if not root:
        return None
    base = Path(root) / "CarlaUE4" / "Content" / "Carla" / "Maps" / "OpenDrive"
    for cand in (base / f"{name}.xodr", base / f"{name.removesuffix('_Opt')}.xodr"):
        if cand.is_file():
            return cand
    return None


# ---------------------------------------------------------------------------------------------------------------
# The lane mapping the carla backend uses (same interface as simgen.world.opendrive.OpenDriveLayout)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XodrLaneRef:
    road_id: int
    lane_id: int
    section: int


class XodrLayout:
    """Lane and signal mapping of an imported map in OpenDRIVE terms, for the carla backend: ``lanes`` (simgen
    lane id -> road/lane), ``lane_ref``, ``road_s`` (road s of a point along a simgen lane: CARLA's
    ``get_waypoint_xodr`` takes it) and ``signals`` (traffic light id -> OpenDRIVE signal id).  Nothing is
    exported: the file itself is what CARLA loads."""

    def __init__(self, m: XodrRoadMap):
        self._map = m
        self.lanes = {lid: XodrLaneRef(ln.odr[0], ln.odr[2], ln.odr[1]) for lid, ln in m.lanes.items()
                      if ln.odr is not None and ln.s_road is not None}
        self.signals = {tl.id: tl.id.removeprefix("tl_") for tl in m.traffic_lights}

    def lane_ref(self, lane_id: str) -> XodrLaneRef:
        if lane_id not in self.lanes:
            raise KeyError(f"lane {lane_id!r} is not an OpenDRIVE lane of {self._map.name}; known: {sorted(self.lanes)}")
        return self.lanes[lane_id]

    def road_s(self, lane_id: str, s_lane, lateral=0.0) -> np.ndarray:
        ln = self._map.lanes[lane_id]
        return np.interp(s_lane, ln.centre.vertex_s, ln.s_road)[()]
