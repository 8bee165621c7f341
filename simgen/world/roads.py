"""Road networks built in code: lanes, sidewalks, crosswalks, traffic lights, parking and the static ground mesh.

Frames and units: the world frame is right-handed with x east/forward, y north/left, z up, in metres; yaw is in
radians, counter-clockwise from +x.  Traffic drives on the right.  All lateral offsets are positive to the LEFT of a
polyline's direction of travel.

A :class:`Polyline` is a densely sampled 2-D path parameterised by arc length ``s``.  Its lateral frame uses mitred
vertex normals interpolated along each segment, so that ``pose_at(s, lateral)`` and ``project(xy)`` are exact
inverses: the point at lateral offset ``d`` lies at perpendicular distance ``|d|`` from its segment, and the strips
that make up the ground mesh (quads between two lateral offsets) are exactly the areas :meth:`RoadMap.surface_at`
classifies.

A :class:`RoadMap` holds the lanes (with successors through junctions), sidewalks, crosswalks, traffic lights,
parking slots, junction outlines and one ground :class:`~simgen.world.mesh.Mesh` whose every triangle carries a
material and a semantic class (roads and shoulders at z = 0, kerbs and sidewalks raised by
:data:`SIDEWALK_HEIGHT`, grass terrain at :data:`TERRAIN_HEIGHT`, paint 1 cm above the asphalt).
:meth:`RoadMap.scenery` describes buildings, trees, street-light poles and signs as :class:`SceneryItem` records
that the world builder turns into meshes.  Maps are built by the functions registered in :data:`MAPS` and fetched,
cached, with :func:`get_map`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from scipy.spatial import Delaunay

from simgen.classes import ROADLINE, ROADS, SIDEWALKS, TERRAIN
from simgen.world.materials import ASPHALT, CONCRETE, GRASS, KERB, ROAD_PAINT
from simgen.world.mesh import Mesh, merge

# Cross-section (metres).  Lateral offsets from the road's reference (centre) line.
LANE_WIDTH = 3.5
SHOULDER_WIDTH = 2.5
ROAD_HALF_WIDTH = 2 * LANE_WIDTH + SHOULDER_WIDTH  # 9.5: kerb line
KERB_WIDTH = 0.2  # top strip of the kerb stone, part of the sidewalk band
SIDEWALK_WIDTH = 3.0  # kerb line to the back of the sidewalk (kerb top included)
WALK_OUTER = ROAD_HALF_WIDTH + SIDEWALK_WIDTH  # 12.5
TERRAIN_HALF_WIDTH = 60.0
SIDEWALK_HEIGHT = 0.15
TERRAIN_HEIGHT = 0.15
PAINT_Z = 0.01
URBAN_SPEED_MPS = 50.0 / 3.6

# Painted markings (metres): lateral extents are [lo, hi] around the reference line.
_LINE_W = 0.15
_EDGE_W = 0.20
_DASH_LEN, _DASH_GAP = 3.0, 6.0

# Intersection layout.
ARM_LENGTH = 150.0  # junction centre to the end of each arm
CORNER_RADIUS = 3.0  # kerb radius at the junction corners
JUNCTION_HALF = ROAD_HALF_WIDTH + CORNER_RADIUS  # 12.5: half-size of the (square) junction box
_CROSSWALK_S = (0.5, 4.5)  # along the arm, measured outward from the junction box edge
_STOP_S = (5.5, 5.9)  # stop line, likewise
_PARK_LEN, _PARK_W = 6.0, 2.3


_SCALARS = (float, int, np.float64)  # scalar types pose_at passes straight to the one-point kernel
_SMALL = 64  # point counts up to which Polyline hands pose_at / project to the compiled loops


_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        from simgen.world import polyline_kernels

        _KERNELS = polyline_kernels
    return _KERNELS


def _wrap(a):
    return np.arctan2(np.sin(a), np.cos(a))


def _perp(v):
    """Rotate (..., 2) vectors by +90 degrees (to the left)."""
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


def _miter(n_a, n_b):
    """Mitred normal between unit normals n_a and n_b: projects to exactly 1 on both."""
    c = np.clip(np.sum(n_a * n_b, axis=-1, keepdims=True), -0.8, None)
    return (n_a + n_b) / (1.0 + c)


class Polyline:
    """A 2-D path with arc length ``s`` (metres), built from (N, 2) world-frame points (x, y).

    Sample arcs densely (every 0.5-1 m).  Consecutive duplicate points are dropped.  Headings at the vertices are
    length-weighted averages of the adjacent segment headings (the end headings are corrected for sampled arcs),
    and are interpolated linearly in ``s``; lateral offsets use mitred vertex normals interpolated along each
    segment, which makes :meth:`pose_at` and :meth:`project` exact inverses.
    """

    def __init__(self, points: np.ndarray):
        p = np.asarray(points, np.float64).reshape(-1, 2)
        if len(p) >= 2:
            step = np.linalg.norm(np.diff(p, axis=0), axis=1)
            p = p[np.concatenate([[True], step > 1e-9])]
        if len(p) < 2:
            raise ValueError("a Polyline needs at least two distinct points")
        p = np.ascontiguousarray(p)
        p.flags.writeable = False
        self.points = p
        d = np.diff(p, axis=0)
        seg = np.linalg.norm(d, axis=1)
        u = d / seg[:, None]
        self._d, self._seg, self._u, self._n = d, seg, u, _perp(u)
        self._cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self._cum[-1])
        ang = np.unwrap(np.arctan2(u[:, 1], u[:, 0]))
        yv = np.empty(len(p))
        yv[0], yv[-1] = ang[0], ang[-1]
        if len(seg) >= 2:
            yv[1:-1] = (ang[:-1] * seg[:-1] + ang[1:] * seg[1:]) / (seg[:-1] + seg[1:])
            # End headings: a sampled arc's first/last chord is off the true tangent by half its turn.
            for e0, e1 in ((0, 1), (-1, -2)):
                ratio, turn = seg[e0] / seg[e1], ang[e0] - ang[e1]
                if 0.5 < ratio < 2.0 and abs(turn) < 0.3:
                    yv[e0] = ang[e0] + turn * seg[e0] / (seg[e0] + seg[e1])
        self._yv = yv
        self._t0 = np.array([math.cos(yv[0]), math.sin(yv[0])])
        self._t1 = np.array([math.cos(yv[-1]), math.sin(yv[-1])])
        n_ext = np.concatenate([_perp(self._t0)[None], self._n, _perp(self._t1)[None]])
        self._nv = _miter(n_ext[:-1], n_ext[1:])  # (N, 2) mitred vertex normals
        self._nu0 = np.sum(self._nv[:-1] * u, axis=1)  # along-segment components (normal components are 1)
        self._dnu = np.sum((self._nv[1:] - self._nv[:-1]) * u, axis=1)
        # the same arrays packed for the compiled kernels (polyline_kernels: three arguments instead of twelve)
        self._V = np.ascontiguousarray(np.column_stack([p, self._nv, yv, self._cum]))
        self._S = np.ascontiguousarray(np.column_stack([d, u, self._n, seg, self._dnu, self._nu0]))
        self._M = np.array([*self._t0, *self._t1, self.length, float(np.hypot(*self._nv.T).max())])

    def __repr__(self) -> str:
        return f"Polyline({len(self.points)} points, length={self.length:.2f} m)"

    @property
    def vertex_s(self) -> np.ndarray:
        """(N,) arc length of each vertex, metres."""
        return self._cum

    def pose_at(self, s, lateral=0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y (m) and yaw (rad, wrapped to [-pi, pi]) at arc length ``s`` and ``lateral`` offset (m, > 0 left).

        ``s`` and ``lateral`` are scalars or arrays (broadcast).  Beyond ``[0, length]`` the path continues
        linearly along the end tangents.
        """
        if type(s) in _SCALARS and type(lateral) in _SCALARS:  # one point (the simulator's per-tick calls)
            x, y, yaw = _kernels().pose_at_packed(self._V, self._S, self._M, float(s), float(lateral))
            return np.float64(x), np.float64(y), np.float64(yaw)
        s, lat = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(lateral, np.float64))
        shape = s.shape
        s, lat = s.reshape(-1), lat.reshape(-1)
        if len(s) <= _SMALL:  # the simulator's per-actor calls: compiled loop, same algorithm (polyline_kernels)
            x, y, yaw = np.empty(len(s)), np.empty(len(s)), np.empty(len(s))
            _kernels().pose_at_points_packed(self._V, self._S, self._M, np.ascontiguousarray(s),
                                             np.ascontiguousarray(lat), x, y, yaw)
            return x.reshape(shape)[()], y.reshape(shape)[()], yaw.reshape(shape)[()]
        i = np.clip(np.searchsorted(self._cum, s, side="right") - 1, 0, len(self._seg) - 1)
        a = np.clip((s - self._cum[i]) / self._seg[i], 0.0, 1.0)
        nv = self._nv[i] + a[..., None] * (self._nv[i + 1] - self._nv[i])
        xy = self.points[i] + a[..., None] * self._d[i] + lat[..., None] * nv
        yaw = self._yv[i] + a * (self._yv[i + 1] - self._yv[i])
        for mask, p, t, nvec, ds, y in (
            (s < 0.0, self.points[0], self._t0, self._nv[0], s, self._yv[0]),
            (s > self.length, self.points[-1], self._t1, self._nv[-1], s - self.length, self._yv[-1]),
        ):
            if np.any(mask):
                xy[mask] = p + ds[mask][:, None] * t + lat[mask][:, None] * nvec
                yaw[mask] = y
        yaw = _wrap(yaw).reshape(shape)
        return xy[:, 0].reshape(shape)[()], xy[:, 1].reshape(shape)[()], yaw[()]

    def project_heading(self, xy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``s, lateral = project(xy)`` and ``yaw = pose_at(s)[2]`` for (M, 2) points in one call."""
        P = np.ascontiguousarray(np.asarray(xy, np.float64).reshape(-1, 2))
        if len(P) > _SMALL:
            s, lat = self.project(P)
            return s, lat, self.pose_at(s)[2]
        s, lat, yaw = np.empty(len(P)), np.empty(len(P)), np.empty(len(P))
        _kernels().project_heading_points_packed(self._V, self._S, self._M, P, s, lat, yaw)
        return s, lat, yaw

    def project(self, xy) -> tuple[np.ndarray, np.ndarray]:
        """Arc length ``s`` and lateral offset (m, > 0 left) of world points ``xy`` ((2,) or (M, 2)).

        The inverse of :meth:`pose_at` (points beyond the ends get s < 0 or s > length).  Where the frame is
        ambiguous (points beyond the radius of curvature on the inside of a bend) the Euclidean closest point is
        used.  Vectorised over points and segments.
        """
        if type(xy) is np.ndarray and xy.shape == (2,):  # one point (the simulator's per-tick calls)
            s_c, lat_c = _kernels().project_packed(self._V, self._S, self._M, float(xy[0]), float(xy[1]))
            return np.float64(s_c), np.float64(lat_c)
        P = np.asarray(xy, np.float64)
        single = P.ndim == 1
        P = P.reshape(-1, 2)
        M, K = len(P), len(self._seg)
        s_out, lat_out = np.empty(M), np.empty(M)
        if M <= _SMALL:  # the simulator's per-actor calls: compiled loop, same algorithm (polyline_kernels)
            _kernels().project_points_packed(self._V, self._S, self._M, np.ascontiguousarray(P), s_out, lat_out)
            return (s_out[0], lat_out[0]) if single else (s_out, lat_out)
        chunk = max(1, 300_000 // K)
        for c0 in range(0, M, chunk):
            Q = P[c0 : c0 + chunk]
            rel = Q[:, None, :] - self.points[None, :-1, :]
            lat = rel[..., 0] * self._n[:, 0] + rel[..., 1] * self._n[:, 1]
            along = rel[..., 0] * self._u[:, 0] + rel[..., 1] * self._u[:, 1]
            den = self._seg + lat * self._dnu
            with np.errstate(divide="ignore", invalid="ignore"):
                a = (along - lat * self._nu0) / den
            valid = (den > 1e-9 * self._seg) & (a >= -1e-9) & (a <= 1.0 + 1e-9)
            score = np.where(valid, np.abs(lat), np.inf)
            k = np.argmin(score, axis=1)
            r = np.arange(len(Q))
            best = score[r, k]
            s_c = self._cum[k] + np.clip(a[r, k], 0.0, 1.0) * self._seg[k]
            lat_c = lat[r, k]
            for p, t, nvec, s_base, sign in (
                (self.points[0], self._t0, self._nv[0], 0.0, -1.0),
                (self.points[-1], self._t1, self._nv[-1], self.length, 1.0),
            ):
                q = Q - p
                le = q @ _perp(t)
                se = (q - le[:, None] * nvec) @ t
                use = (sign * se > 0) & (np.abs(le) < best)
                s_c = np.where(use, s_base + se, s_c)
                lat_c = np.where(use, le, lat_c)
                best = np.where(use, np.abs(le), best)
            bad = ~np.isfinite(best)
            if np.any(bad):  # Euclidean closest point on the segments
                rb = rel[bad]
                t = np.clip(along[bad] / self._seg, 0.0, 1.0)
                off = rb - t[..., None] * self._d
                dist = np.linalg.norm(off, axis=-1)
                kb = np.argmin(dist, axis=1)
                rr = np.arange(len(kb))
                s_c[bad] = self._cum[kb] + t[rr, kb] * self._seg[kb]
                side = np.sign(lat[bad][rr, kb])
                lat_c[bad] = np.where(side == 0, 1.0, side) * dist[rr, kb]
            s_out[c0 : c0 + chunk], lat_out[c0 : c0 + chunk] = s_c, lat_c
        if single:
            return s_out[0], lat_out[0]
        return s_out, lat_out

    def curvature_at(self, s) -> np.ndarray:
        """Signed curvature (1/m, > 0 turning left) at arc length ``s``; 0 beyond the ends."""
        s = np.asarray(s, np.float64)
        i = np.clip(np.searchsorted(self._cum, s, side="right") - 1, 0, len(self._seg) - 1)
        k = (self._yv[i + 1] - self._yv[i]) / self._seg[i]
        return np.where((s < 0.0) | (s > self.length), 0.0, k)[()]

    def offset(self, lateral: float, reverse: bool = False) -> "Polyline":
        """The parallel path at ``lateral`` metres (> 0 left), optionally reversed in direction."""
        x, y, _ = self.pose_at(self._cum, lateral)
        pts = np.stack([x, y], axis=-1)
        return Polyline(pts[::-1] if reverse else pts)

    @staticmethod
    def concat(parts: list["Polyline"]) -> "Polyline":
        """Join ``parts`` end-to-start into one polyline; a part's first point is dropped when it repeats the
        previous end (within 1 mm)."""
        if not parts:
            raise ValueError("concat needs at least one part")
        pts = [parts[0].points]
        for part in parts[1:]:
            q = part.points
            if np.linalg.norm(q[0] - pts[-1][-1]) < 1e-3:
                q = q[1:]
            pts.append(q)
        return Polyline(np.concatenate(pts))


def _densify(poly: Polyline, max_step: float) -> Polyline:
    """Same path with extra vertices on segments longer than ``max_step`` (identical geometry and frame)."""
    n = np.maximum(1, np.ceil(poly._seg / max_step).astype(int))
    pieces = [poly.points[i] + np.linspace(0.0, 1.0, n[i], endpoint=False)[:, None] * poly._d[i] for i in range(len(n))]
    return Polyline(np.concatenate(pieces + [poly.points[-1:]]))


def _arc(centre, radius: float, a0: float, a1: float, max_step: float, n: int | None = None) -> np.ndarray:
    """(n + 1, 2) points on a circular arc from angle a0 to a1 (rad): ``n`` segments, by default as few as keep
    them at most ``max_step`` metres long."""
    if n is None:
        n = max(1, int(math.ceil(abs(a1 - a0) * radius / max_step)))
    a = np.linspace(a0, a1, n + 1)
    return np.asarray(centre, np.float64) + radius * np.stack([np.cos(a), np.sin(a)], axis=-1)


# ---------------------------------------------------------------------------------------------------------------
# Map records
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Lane:
    """One lane.  ``centre`` runs in the driving direction; widths and arc lengths in metres, speeds in m/s.

    ``successors`` maps a turn ("straight", "left", "right") to the next lane id: junction approach lanes point to
    connector lanes, connectors point to their exit lane under "straight"; lanes that end at the map edge have {}.
    ``stop_s`` is the arc length of the near edge of the stop line (junction approach lanes), ``signal`` the id of
    the :class:`TrafficLight` controlling it.
    """

    id: str
    road_id: str
    centre: Polyline
    width_m: float
    left: str | None  # adjacent same-direction lane to the left
    right: str | None  # adjacent same-direction lane to the right
    speed_limit_mps: float
    successors: dict[str, str]
    kind: str  # "driving" | "connector" | "shoulder" (imported maps also "parking" | "biking")
    stop_s: float | None = None
    signal: str | None = None
    # imported (OpenDRIVE) maps only: height of each centre-line vertex (m), the OpenDRIVE lane type, the
    # (road, lane section index, lane id) triple, road s of each vertex, and the junction id of connectors
    z: np.ndarray | None = None
    lane_type: str | None = None
    odr: tuple[int, int, int] | None = None
    s_road: np.ndarray | None = None
    junction: int | None = None


@dataclass(frozen=True, eq=False)
class Crosswalk:
    """A zebra crossing: ``polygon`` (4, 2) world xy; ``start``/``end`` (2,) the centre line from kerb to kerb."""

    id: str
    polygon: np.ndarray
    start: np.ndarray
    end: np.ndarray


@dataclass(frozen=True, eq=False)
class Sidewalk:
    """A sidewalk band of ``width_m`` metres around ``centre`` (raised by SIDEWALK_HEIGHT)."""

    id: str
    centre: Polyline
    width_m: float


@dataclass(frozen=True, eq=False)
class TrafficLight:
    """A signal head on a pole.  ``position`` (3,) world xyz of the pole foot; ``yaw`` (rad) the direction the
    lamps face (towards the approaching traffic); ``lanes`` the lanes whose stop lines it controls; lights of one
    ``group`` ("NS" or "EW") share phases."""

    id: str
    position: np.ndarray
    yaw: float
    lanes: tuple[str, ...]
    group: str
    phase: int | None = None  # slot of ``group`` in its junction's cycle (None: "NS" is 0, anything else 1)
    n_phases: int = 2  # slots in the cycle; each slot is green, yellow, all-red in turn

    @property
    def slot(self) -> int:
        return self.phase if self.phase is not None else (0 if self.group == "NS" else 1)


@dataclass(frozen=True)
class SceneryItem:
    """A static object for the world builder: ``kind`` "building" | "tree" | "pole" | "sign" at world (x, y, z)
    (z = ground height, metres) with ``yaw`` (rad; a building's length axis, a sign's face direction, a pole's arm
    direction).  ``params``: building {"length_m", "width_m", "height_m"}, tree {"height_m", "crown_radius_m"},
    pole {"height_m"}, sign {"kind": "speed" | "stop" | "yield"}."""

    kind: str
    x: float
    y: float
    yaw: float
    z: float
    params: dict


@dataclass(frozen=True)
class ParkingSlot:
    """A parallel-parking bay on a shoulder: centre (x, y) world metres, ``yaw`` (rad) along the kerb in the
    adjacent traffic's direction, size in metres."""

    x: float
    y: float
    yaw: float
    length_m: float
    width_m: float


@dataclass(frozen=True, eq=False)
class _Strip:
    """Ground area lat0 <= lateral <= lat1, s0 <= s <= s1 along ``poly``, of one semantic class."""

    poly: Polyline
    s0: float
    s1: float
    lat0: float
    lat1: float
    semantic: int


@dataclass(frozen=True, eq=False)
class _Frontage:
    """A stretch of road side for scenery: ``side`` +1 left / -1 right of ``poly`` between s0 and s1."""

    poly: Polyline
    side: int
    s0: float
    s1: float
    base: float = WALK_OUTER  # lateral of the back of the sidewalk from ``poly`` (0: poly is the road's outer edge)


_RANK = {TERRAIN: 0, SIDEWALKS: 1, ROADS: 2}
_RANK_CLASS = np.array([TERRAIN, SIDEWALKS, ROADS], np.uint8)
_RANK_Z = np.array([TERRAIN_HEIGHT, SIDEWALK_HEIGHT, 0.0])  # ground height by rank (RoadMap.ground_height)


def _in_polygon(P: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (M, 2) points against a (K, 2) polygon."""
    x, y = P[:, :1], P[:, 1:]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.count_nonzero(crosses & (x < xi), axis=1) % 2) == 1


def _in_box(P: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((P >= lo) & (P <= hi), axis=1)


def _rect_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """(4, 2) corners (CCW) of a rectangle centred at (x, y) with its length along ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64) * [length / 2, width / 2]
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def _rects_overlap(a: np.ndarray, others: np.ndarray) -> bool:
    """Separating-axis test of rectangle corners ``a`` (4, 2) against each of ``others`` (n, 4, 2)."""
    if len(others) == 0:
        return False
    axes = np.concatenate(
        [np.broadcast_to(np.diff(a[:3], axis=0)[None], (len(others), 2, 2)), np.diff(others[:, :3], axis=1)], axis=1
    )  # (n, 4, 2)
    pa = np.einsum("kd,nad->nak", a, axes)  # (n, 4 axes, 4 corners)
    po = np.einsum("nkd,nad->nak", others, axes)
    separated = (pa.max(-1) < po.min(-1)) | (po.max(-1) < pa.min(-1))
    return bool(np.any(~separated.any(axis=1)))


@dataclass(eq=False)
class RoadMap:
    """A road network with its ground mesh.  All coordinates are world-frame metres (see the module docstring)."""

    name: str
    description: str
    lanes: dict[str, Lane]
    sidewalks: list[Sidewalk]
    crosswalks: list[Crosswalk]
    traffic_lights: list[TrafficLight]
    junctions: list[np.ndarray]  # (K, 2) outlines of the junction areas
    ground: Mesh
    parking_slots: list[ParkingSlot]
    _strips: list[_Strip] = field(default_factory=list, repr=False)
    _areas: list[tuple[np.ndarray, int]] = field(default_factory=list, repr=False)  # (polygon, semantic)
    _frontages: list[_Frontage] = field(default_factory=list, repr=False)
    _signs: list[tuple[float, float, float, str]] = field(default_factory=list, repr=False)  # x, y, yaw, kind

    def __post_init__(self) -> None:
        v = self.ground.vertices[:, :2].astype(np.float64)
        self._bounds = (v.min(axis=0), v.max(axis=0))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(2,) xy minimum and maximum of the map (the ground mesh covers this whole rectangle), metres."""
        return self._bounds[0].copy(), self._bounds[1].copy()

    def surface_at(self, xy: np.ndarray) -> np.ndarray:
        """(M,) uint8 semantic class of the ground at world xy ((2,) or (M, 2)): ROADS (lanes, shoulders,
        junctions), SIDEWALKS (sidewalks and kerbs) or TERRAIN (everywhere else)."""
        P = np.asarray(xy, np.float64).reshape(-1, 2)
        if len(P) <= _SMALL:  # the simulator's per-tick queries: one compiled call over every strip and area
            return _RANK_CLASS[self._rank_small(P)]
        rank = np.zeros(len(P), np.int8)
        for poly, box, strips, _ in self._strip_groups():
            near = np.flatnonzero(_in_box(P, box[:2], box[2:]))
            if len(near) == 0:
                continue
            s, lat = poly.project(P[near])
            for s0, s1, lat0, lat1, r in strips:
                inside = (s >= s0) & (s <= s1) & (lat >= lat0) & (lat <= lat1)
                idx = near[inside]
                rank[idx] = np.maximum(rank[idx], r)
        for polygon, sem in self._areas:
            near = np.flatnonzero(_in_box(P, polygon.min(0), polygon.max(0)))
            idx = near[_in_polygon(P[near], polygon)]
            rank[idx] = np.maximum(rank[idx], _RANK[sem])
        return _RANK_CLASS[rank]

    def _rank_small(self, P: np.ndarray) -> np.ndarray:
        """(M,) int8 surface rank (0 terrain, 1 sidewalk, 2 road) of a few points: the strip groups and the areas of
        :meth:`surface_at` in ONE compiled call (:func:`polyline_kernels.surface_rank_all`; issue 13: the simulator
        asks every tick), the arithmetic of the per-group kernel and of ``_in_polygon``."""
        rank = np.zeros(len(P), np.int8)
        _kernels().surface_rank_all(np.ascontiguousarray(P, np.float64), *self._ground_pack(), rank)
        return rank

    def _ground_pack(self) -> tuple:
        """:meth:`_strip_groups` and the areas packed into flat arrays for :func:`polyline_kernels.surface_rank_all`,
        built once per strip and area list (a map's ground never changes)."""
        key = (id(self._strips), len(self._strips), id(self._areas), len(self._areas))
        got = self.__dict__.get("_ground_pack_cache")
        if got is not None and got[0] == key:
            return got[1]
        groups = self._strip_groups()
        dummy = Polyline(np.array([[0.0, 0.0], [1.0, 0.0]]))  # keeps the arrays' shapes when there is no strip
        polys = [g[0] for g in groups] or [dummy]
        voff = np.zeros(len(polys) + 1, np.int64)
        voff[1:] = np.cumsum([len(p.points) for p in polys])
        V = np.ascontiguousarray(np.concatenate([p._V for p in polys]))
        S = np.ascontiguousarray(np.concatenate([p._S for p in polys]))
        M = np.ascontiguousarray(np.stack([p._M for p in polys]))
        boxes = np.array([g[1] for g in groups], np.float64).reshape(-1, 4)
        toff = np.zeros(len(groups) + 1, np.int64)
        toff[1:] = np.cumsum([len(g[3]) for g in groups])
        strips = np.ascontiguousarray(np.concatenate([g[3] for g in groups] or [np.zeros((0, 5))]))
        areas = [np.asarray(poly, np.float64).reshape(-1, 2) for poly, _ in self._areas]
        aoff = np.zeros(len(areas) + 1, np.int64)
        aoff[1:] = np.cumsum([len(a) for a in areas])
        apts = np.ascontiguousarray(np.concatenate(areas or [np.zeros((0, 2))]))
        abox = np.array([np.concatenate([a.min(0), a.max(0)]) for a in areas], np.float64).reshape(-1, 4)
        arank = np.array([_RANK[sem] for _, sem in self._areas], np.int8)
        pack = (boxes, voff, V, S, M, toff, strips, aoff, apts, abox, arank)
        self._ground_pack_cache = (key, pack)
        return pack

    def _strip_groups(self) -> list:
        """The strips grouped by their polyline: (poly, box (lo_x, lo_y, hi_x, hi_y), [(s0, s1, lat0, lat1, rank)]
        with the 1e-9 tolerances applied, the same as a (S, 5) array), built once per strip list (the simulator
        asks for ground heights every tick)."""
        key = (id(self._strips), len(self._strips))
        got = self.__dict__.get("_strip_cache")
        if got is not None and got[0] == key:
            return got[1]
        by_poly: dict[int, list[_Strip]] = {}
        for st in self._strips:
            by_poly.setdefault(id(st.poly), []).append(st)
        groups = []
        for strips in by_poly.values():
            poly = strips[0].poly
            margin = max(max(abs(st.lat0), abs(st.lat1)) for st in strips) * 1.5 + 1.0
            rows = [(st.s0 - 1e-9, st.s1 + 1e-9, st.lat0 - 1e-9, st.lat1 + 1e-9, _RANK[st.semantic]) for st in strips]
            groups.append((poly, np.concatenate([poly.points.min(0) - margin, poly.points.max(0) + margin]), rows,
                           np.array(rows, np.float64).reshape(-1, 5)))
        self._strip_cache = (key, groups)
        return groups

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        """(M,) ground z (m) at world xy: 0 on roads, SIDEWALK_HEIGHT on sidewalks, TERRAIN_HEIGHT elsewhere."""
        P = np.asarray(xy, np.float64).reshape(-1, 2)
        if len(P) <= _SMALL:  # the simulator's per-tick heights: one compiled call, rank -> height
            return _RANK_Z[self._rank_small(P)]
        sem = self.surface_at(P)
        return np.where(sem == ROADS, 0.0, np.where(sem == SIDEWALKS, SIDEWALK_HEIGHT, TERRAIN_HEIGHT))

    def lane_at(self, xy) -> list[str | None]:
        """Id of the lane whose area contains each world point ((2,) or (M, 2)), or None.  Driving and connector
        lanes win over shoulders; among overlapping lanes (inside junctions) the one with the nearest centre line."""
        P = np.asarray(xy, np.float64).reshape(-1, 2)
        ids = list(self.lanes)
        best = np.full(len(P), np.inf)
        best_i = np.full(len(P), -1)
        for preferred in (True, False):
            todo = best == np.inf
            for li, lid in enumerate(ids):
                lane = self.lanes[lid]
                if (lane.kind in ("driving", "connector")) != preferred:
                    continue
                h = lane.width_m / 2
                near = np.flatnonzero(
                    todo & _in_box(P, lane.centre.points.min(0) - h - 1.0, lane.centre.points.max(0) + h + 1.0)
                )
                if len(near) == 0:
                    continue
                s, lat = lane.centre.project(P[near])
                a = np.abs(lat)
                hit = (s >= 0.0) & (s <= lane.centre.length) & (a <= h) & (a < best[near])
                best[near[hit]] = a[hit]
                best_i[near[hit]] = li
        return [ids[i] if i >= 0 else None for i in best_i]

    def lane_sequence(self, lane_id: str, turns=()) -> list[Lane]:
        """The lanes from ``lane_id`` following successors: at the i-th lane offering a choice (more than one
        successor) ``turns[i]`` is taken ("straight" once turns run out).  Raises ValueError for a turn the lane
        does not offer."""
        out, seen, choice = [], set(), 0
        lane = self.lanes[lane_id]
        while lane is not None and lane.id not in seen:
            seen.add(lane.id)
            out.append(lane)
            succ = lane.successors
            if not succ:
                break
            if len(succ) > 1:
                given = choice < len(turns)
                turn = turns[choice] if given else "straight"
                choice += 1
                if not given and turn not in succ:  # no straight on: the first way on, in the map's order
                    turn = next(iter(succ))
            else:
                turn = next(iter(succ)) if "straight" not in succ else "straight"
            if turn not in succ:
                raise ValueError(f"lane {lane.id!r} has no {turn!r} successor (has {sorted(succ)})")
            lane = self.lanes[succ[turn]]
        return out

    def route(self, lane_id: str, turns: list[str] = (), min_length_m: float = 0.0) -> Polyline:
        """Centre line through :meth:`lane_sequence`, extended along its end tangent to at least ``min_length_m``.

        Routes are cached per (lane, turns, length): every World on a (cached) map asks for the same few, and a
        Polyline is never modified, so actors and episodes share them."""
        key = (lane_id, tuple(turns), float(min_length_m))
        cache = self.__dict__.setdefault("_route_cache", {})
        path = cache.get(key)
        if path is not None:
            return path
        path = Polyline.concat([lane.centre for lane in self.lane_sequence(lane_id, turns)])
        if path.length < min_length_m:
            x, y, _ = path.pose_at(min_length_m + 1e-6)
            path = Polyline(np.concatenate([path.points, [[x, y]]]))
        cache[key] = path
        return path

    def scenery(self, rng: np.random.Generator, density: float = 1.0) -> list[SceneryItem]:
        """Static scenery descriptions: buildings set back behind the sidewalks (footprints on terrain, inside the
        map, not overlapping each other), street-light poles and trees near the back edge of the sidewalks, and a
        few signs.  Deterministic for a given ``rng`` state; ``density`` scales the counts (0 gives none)."""
        if density <= 0:
            return []
        items: list[SceneryItem] = []
        lo, hi = self._bounds
        placed: list[np.ndarray] = []
        for fr in self._frontages:  # buildings
            s = fr.s0 + rng.uniform(0.0, 10.0) / density
            while True:
                length, width = rng.uniform(10.0, 35.0), rng.uniform(8.0, 20.0)
                height, setback = rng.uniform(6.0, 30.0), rng.uniform(2.0, 8.0)
                gap = rng.uniform(2.0, 12.0) / density
                if s + length > fr.s1:
                    break
                x, y, yaw = fr.poly.pose_at(s + length / 2, fr.side * (fr.base + setback + width / 2))
                corners = _rect_corners(float(x), float(y), float(yaw), length, width)
                if self._footprint_free(corners, lo, hi, placed):
                    placed.append(corners)
                    z = float(self.ground_height(np.array([x, y]))[0])
                    items.append(
                        SceneryItem("building", float(x), float(y), float(yaw), z,
                                    {"length_m": float(length), "width_m": float(width), "height_m": float(height)})
                    )
                s += length + gap
        keep_out = [np.asarray(t.position[:2]) for t in self.traffic_lights]
        for cw in self.crosswalks:
            keep_out += [cw.start, cw.end]
        poles: list[np.ndarray] = []
        for fr in self._frontages:  # street lights
            at = np.arange(fr.s0 + 5.0, fr.s1 - 2.0, 30.0 / density)
            for s in at + rng.uniform(-2.0, 2.0, len(at)):
                x, y, yaw = fr.poly.pose_at(s, fr.side * (fr.base - 0.4))
                xy = np.array([x, y])
                if self._on_sidewalk(xy, keep_out + poles, 3.0):
                    poles.append(xy)
                    arm_yaw = float(_wrap(yaw - fr.side * math.pi / 2))  # towards the road
                    items.append(SceneryItem("pole", float(x), float(y), arm_yaw, float(self.ground_height(xy)[0]),
                                             {"height_m": float(rng.uniform(7.0, 10.0))}))
        trees: list[np.ndarray] = []
        for fr in self._frontages:  # trees
            s = fr.s0 + rng.uniform(0.0, 8.0) / density
            while s < fr.s1 - 1.0:
                height, crown = rng.uniform(5.0, 12.0), rng.uniform(1.5, 3.5)
                x, y, _ = fr.poly.pose_at(s, fr.side * (fr.base - 0.9))
                xy = np.array([x, y])
                if self._on_sidewalk(xy, keep_out + poles + trees, 3.5):
                    trees.append(xy)
                    params = {"height_m": float(height), "crown_radius_m": float(crown)}
                    yaw = float(rng.uniform(-math.pi, math.pi))
                    items.append(SceneryItem("tree", float(x), float(y), yaw, float(self.ground_height(xy)[0]), params))
                s += rng.uniform(8.0, 16.0) / density
        if self._signs:
            sz = self.ground_height(np.array([[x, y] for x, y, _, _ in self._signs]))
            for (x, y, yaw, kind), z in zip(self._signs, sz):
                items.append(SceneryItem("sign", x, y, yaw, float(z), {"kind": kind}))
        return items

    def _footprint_free(self, corners: np.ndarray, lo, hi, placed: list[np.ndarray]) -> bool:
        g = np.linspace(0.0, 1.0, 5)
        a, b = np.meshgrid(g, g)
        c = corners
        pts = c[1] + a.reshape(-1, 1) * (c[0] - c[1]) + b.reshape(-1, 1) * (c[2] - c[1])
        if not np.all(_in_box(pts, lo, hi)) or not np.all(self.surface_at(pts) == TERRAIN):
            return False
        grown = corners + 0.5 * (corners - corners.mean(0)) / np.linalg.norm(corners - corners.mean(0), axis=1)[:, None]
        return not _rects_overlap(grown, np.array(placed).reshape(-1, 4, 2))

    def _on_sidewalk(self, xy: np.ndarray, others: list[np.ndarray], clearance: float) -> bool:
        if self.surface_at(xy)[0] != SIDEWALKS:
            return False
        return not others or float(np.min(np.linalg.norm(np.array(others) - xy, axis=1))) >= clearance


# ---------------------------------------------------------------------------------------------------------------
# Mesh helpers (all vectorised; horizontal triangles are oriented counter-clockwise seen from above)
# ---------------------------------------------------------------------------------------------------------------


def _cross2(p: np.ndarray) -> np.ndarray:
    """Twice the signed xy area of triangles p (T, 3, >=2); > 0 when counter-clockwise seen from above."""
    a, b = p[:, 1, :2] - p[:, 0, :2], p[:, 2, :2] - p[:, 0, :2]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def _flat(v2: np.ndarray, tri: np.ndarray, z: float, material: int, semantic: int) -> Mesh:
    """Horizontal triangles at height z, re-ordered counter-clockwise seen from above; degenerate ones dropped."""
    cross = _cross2(v2[tri])
    tri = tri[np.abs(cross) > 1e-10].copy()
    flip = cross[np.abs(cross) > 1e-10] < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    verts = np.column_stack([v2, np.full(len(v2), z)])
    return Mesh.build(verts, tri, material, semantic)


def _quad_strips(a: np.ndarray, b: np.ndarray, z: float, material: int, semantic: int) -> Mesh:
    """Triangulate K strips given their two long edges ``a``, ``b`` (K, n, 2): 2 (n - 1) K triangles."""
    K, n, _ = a.shape
    v2 = np.concatenate([a, b], axis=1).reshape(-1, 2)
    a0 = (np.arange(K) * 2 * n)[:, None] + np.arange(n - 1)[None, :]
    a1, b0 = a0 + 1, a0 + n
    b1 = b0 + 1
    tri = np.concatenate([np.stack([a0, a1, b1], -1), np.stack([a0, b1, b0], -1)], axis=1).reshape(-1, 3)
    return _flat(v2, tri, z, material, semantic)


def _stations(poly: Polyline, s0: float, s1: float) -> np.ndarray:
    c = poly.vertex_s
    return np.concatenate([[s0], c[(c > s0 + 1e-6) & (c < s1 - 1e-6)], [s1]])


def _xy(poly: Polyline, s, lat) -> np.ndarray:
    x, y, _ = poly.pose_at(s, lat)
    return np.stack([x, y], axis=-1)


def _strip(poly: Polyline, s0: float, s1: float, lat0: float, lat1: float, z: float, material: int,
           semantic: int) -> Mesh:
    """The ground quad strip lat0..lat1 x s0..s1 along ``poly`` (vertices at the polyline's vertices)."""
    st = _stations(poly, s0, s1)
    return _quad_strips(_xy(poly, st, lat0)[None], _xy(poly, st, lat1)[None], z, material, semantic)


def _dashes(poly: Polyline, s0: float, s1: float, lat: float, width: float, step: float = 1.0) -> Mesh:
    """Dashed paint line centred at ``lat``: dashes of _DASH_LEN with _DASH_GAP gaps from s0 to s1."""
    starts = np.arange(s0, s1 - _DASH_LEN + 1e-9, _DASH_LEN + _DASH_GAP)
    if len(starts) == 0:
        return Mesh.empty()
    st = starts[:, None] + np.linspace(0.0, _DASH_LEN, int(math.ceil(_DASH_LEN / step)) + 1)[None, :]
    return _quad_strips(_xy(poly, st, lat - width / 2), _xy(poly, st, lat + width / 2), PAINT_Z, ROAD_PAINT, ROADLINE)


def _paint(poly: Polyline, s0: float, s1: float, lat0: float, lat1: float) -> Mesh:
    return _strip(poly, s0, s1, lat0, lat1, PAINT_Z, ROAD_PAINT, ROADLINE)


def _wall(xy: np.ndarray, z0: float, z1: float, road_point, material: int = KERB, semantic: int = SIDEWALKS) -> Mesh:
    """Vertical face along the path ``xy`` (n, 2) from z0 to z1, its normal pointing towards ``road_point``."""
    n = len(xy)
    v = np.concatenate([np.column_stack([xy, np.full(n, z0)]), np.column_stack([xy, np.full(n, z1)])])
    b0 = np.arange(n - 1)
    b1, t0 = b0 + 1, b0 + n
    t1 = t0 + 1
    tri = np.concatenate([np.stack([b0, b1, t1], -1), np.stack([b0, t1, t0], -1)])
    fwd = xy[1] - xy[0]
    right = np.array([fwd[1], -fwd[0]])  # the default winding faces right of the path direction
    if np.dot(right, np.asarray(road_point) - xy[0]) < 0:
        tri = tri[:, [0, 2, 1]]
    return Mesh.build(v, tri, material, semantic)


def _fan(centre, ring: np.ndarray, z: float, material: int, semantic: int) -> Mesh:
    v2 = np.concatenate([np.asarray(centre, np.float64)[None], ring])
    j = np.arange(1, len(ring))
    return _flat(v2, np.stack([np.zeros_like(j), j, j + 1], -1), z, material, semantic)


def _cross_section(ref: Polyline, s0: float, s1: float) -> list[Mesh]:
    """Asphalt (lanes + shoulders), kerbs (top strip + vertical face) and sidewalks on both sides of ``ref``."""
    st = _stations(ref, s0, s1)
    out = [_strip(ref, s0, s1, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH, 0.0, ASPHALT, ROADS)]
    centre = _xy(ref, st, 0.0)
    for side in (1.0, -1.0):
        k0, k1, w1 = side * ROAD_HALF_WIDTH, side * (ROAD_HALF_WIDTH + KERB_WIDTH), side * WALK_OUTER
        out.append(_strip(ref, s0, s1, min(k0, k1), max(k0, k1), SIDEWALK_HEIGHT, KERB, SIDEWALKS))
        out.append(_strip(ref, s0, s1, min(k1, w1), max(k1, w1), SIDEWALK_HEIGHT, CONCRETE, SIDEWALKS))
        out.append(_wall(_xy(ref, st, k0), 0.0, SIDEWALK_HEIGHT, centre[len(st) // 2]))
    return out


def _road_markings(ref: Polyline, s0: float, s1: float, dash_s0: float, sides=(1.0, -1.0)) -> list[Mesh]:
    """Centre double line, dashed lane dividers and solid edge lines of a 2+2-lane road between s0 and s1."""
    out = [_paint(ref, s0, s1, 0.05, 0.05 + _LINE_W), _paint(ref, s0, s1, -0.05 - _LINE_W, -0.05)]
    for side in sides:
        out.append(_dashes(ref, dash_s0, s1, side * LANE_WIDTH, _LINE_W))
        e = side * 2 * LANE_WIDTH
        out.append(_paint(ref, s0, s1, e - _EDGE_W / 2, e + _EDGE_W / 2))
    return out


def _fill_terrain(lo: np.ndarray, hi: np.ndarray, boundary: np.ndarray, inside: Callable, hole_area: float) -> Mesh:
    """Grass over the rectangle [lo, hi] minus the region ``inside`` (whose outline vertices are ``boundary``,
    spaced densely enough to be Delaunay edges).  Checks the covered area is exactly the rectangle's minus
    ``hole_area``."""
    n = np.maximum(2, np.ceil((hi - lo) / 20.0).astype(int) + 1)
    xs, ys = np.linspace(lo[0], hi[0], n[0]), np.linspace(lo[1], hi[1], n[1])
    rim = np.concatenate([
        np.column_stack([xs, np.full_like(xs, lo[1])]), np.column_stack([xs, np.full_like(xs, hi[1])]),
        np.column_stack([np.full_like(ys, lo[0]), ys]), np.column_stack([np.full_like(ys, hi[0]), ys]),
    ])
    rim = rim[~inside(rim, 0.5)]
    pts = np.unique(np.concatenate([boundary, rim]), axis=0)
    tri = Delaunay(pts, qhull_options="QJ").simplices
    tri = tri[~inside(pts[tri].mean(axis=1), 0.0)]
    area = 0.5 * np.abs(_cross2(pts[tri]))
    expected = float(np.prod(hi - lo)) - hole_area
    if abs(area.sum() - expected) > 1e-4 * expected:
        raise RuntimeError(f"terrain triangulation covers {area.sum():.1f} m^2, expected {expected:.1f}")
    return _flat(pts, tri, TERRAIN_HEIGHT, GRASS, TERRAIN)


def _mesh_area(m: Mesh) -> float:
    return float(0.5 * np.abs(_cross2(m.vertices[m.triangles].astype(np.float64))).sum())


def _parking(lane: Polyline, s0: float, s1: float) -> list[ParkingSlot]:
    c = np.arange(s0 + _PARK_LEN / 2, s1 - _PARK_LEN / 2 + 1e-9, _PARK_LEN)
    x, y, yaw = lane.pose_at(c)
    return [ParkingSlot(float(a), float(b), float(t), _PARK_LEN, _PARK_W) for a, b, t in zip(x, y, yaw)]


# ---------------------------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------------------------


def _corridor_map(name: str, description: str, ref: Polyline) -> RoadMap:
    """A 2+2-lane road with shoulders, kerbs and sidewalks along the reference (centre) line ``ref``."""
    L, v = ref.length, URBAN_SPEED_MPS
    lanes: dict[str, Lane] = {}
    for k in (1, 2):
        lat = (k - 0.5) * LANE_WIDTH
        other = 3 - k
        for pre, sgn in (("fwd", -1.0), ("bwd", 1.0)):
            lanes[f"{pre}_{k}"] = Lane(
                f"{pre}_{k}", "main", ref.offset(sgn * lat, reverse=sgn > 0), LANE_WIDTH,
                left=f"{pre}_{other}" if k == 2 else None, right=f"{pre}_{other}" if k == 1 else f"{pre}_shoulder",
                speed_limit_mps=v, successors={}, kind="driving",
            )
    sh_lat = 2 * LANE_WIDTH + SHOULDER_WIDTH / 2
    for pre, sgn in (("fwd", -1.0), ("bwd", 1.0)):  # shoulders neighbour the outer lane (merging, pulling over)
        lanes[f"{pre}_shoulder"] = Lane(f"{pre}_shoulder", "main", ref.offset(sgn * sh_lat, reverse=sgn > 0),
                                        SHOULDER_WIDTH, f"{pre}_2", None, v, {}, "shoulder")

    dense = _densify(ref, 2.0)
    base = _cross_section(dense, 0.0, L)
    corridor_area = sum(_mesh_area(m) for m in base)  # the kerb walls have no area seen from above
    meshes = base + _road_markings(dense, 0.0, L, 0.0)
    st = dense.vertex_s
    edge = np.concatenate([_xy(dense, st, WALK_OUTER), _xy(dense, st, -WALK_OUTER)])
    ext = np.concatenate([_xy(dense, st, TERRAIN_HALF_WIDTH), _xy(dense, st, -TERRAIN_HALF_WIDTH)])
    lo, hi = ext.min(axis=0), ext.max(axis=0)

    def inside(P, tol):
        s, lat = ref.project(P)
        return (s >= -tol) & (s <= L + tol) & (np.abs(lat) <= WALK_OUTER + tol)

    meshes.append(_fill_terrain(lo, hi, edge, inside, corridor_area))
    ground = merge(meshes)

    strips = [_Strip(ref, 0.0, L, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH, ROADS),
              _Strip(ref, 0.0, L, ROAD_HALF_WIDTH, WALK_OUTER, SIDEWALKS),
              _Strip(ref, 0.0, L, -WALK_OUTER, -ROAD_HALF_WIDTH, SIDEWALKS)]
    walk_lat = ROAD_HALF_WIDTH + SIDEWALK_WIDTH / 2
    sidewalks = [Sidewalk("sidewalk_left", ref.offset(walk_lat), SIDEWALK_WIDTH),
                 Sidewalk("sidewalk_right", ref.offset(-walk_lat), SIDEWALK_WIDTH)]
    parking = []
    for pre in ("fwd", "bwd"):
        sh = lanes[f"{pre}_shoulder"].centre
        parking += _parking(sh, 15.0, sh.length - 15.0)
    sign_lat = ROAD_HALF_WIDTH + 0.8
    signs = []
    for s, sgn in ((30.0, -1.0), (L - 30.0, 1.0)):  # a speed-limit sign at the start of each direction
        x, y, yaw = ref.pose_at(s, sgn * sign_lat)
        face = yaw + math.pi if sgn < 0 else yaw  # facing the oncoming traffic of that side
        signs.append((float(x), float(y), float(_wrap(face)), "speed"))
    return RoadMap(name, description, lanes, sidewalks, [], [], [], ground, parking,
                   _strips=strips, _frontages=[_Frontage(ref, 1, 0.0, L), _Frontage(ref, -1, 0.0, L)], _signs=signs)


def straight_map() -> RoadMap:
    """2+2-lane road along +x from x = -150 to x = +350 m."""
    ref = Polyline(np.array([[-150.0, 0.0], [350.0, 0.0]]))
    return _corridor_map(
        "straight",
        "Straight 500 m two-way road along +x (x=-150..350 m): 2+2 lanes of 3.5 m, shoulders with parking, "
        "kerbs and 3 m sidewalks, grass beyond.",
        ref,
    )


def curve_map() -> RoadMap:
    """100 m straight along +x from the origin, a 90-degree left arc of radius 120 m, then 150 m straight north."""
    r = 120.0
    arc = _arc((100.0, r), r, -math.pi / 2, 0.0, 0.5)
    ref = Polyline(np.concatenate([[[0.0, 0.0]], arc, [[100.0 + r, r + 150.0]]]))
    return _corridor_map(
        "curve",
        "2+2-lane road: 100 m straight east from the origin, 90-degree left curve of radius 120 m, 150 m straight "
        "north; shoulders, kerbs, sidewalks.",
        ref,
    )


_ARMS = {"east": (1.0, 0.0), "north": (0.0, 1.0), "west": (-1.0, 0.0), "south": (0.0, -1.0)}


def _rot(k: int) -> np.ndarray:
    """Rotation by k quarter turns (counter-clockwise), as a matrix acting on row vectors (pts @ R)."""
    c, s = round(math.cos(k * math.pi / 2)), round(math.sin(k * math.pi / 2))
    return np.array([[c, s], [-s, c]], np.float64)


def _connector(p0: np.ndarray, d: np.ndarray, p1: np.ndarray, turn: str) -> Polyline:
    """Junction connector from p0 (heading d) to p1: a straight line or a quarter circle (left/right)."""
    if turn == "straight":
        n = int(math.ceil(np.linalg.norm(p1 - p0) / 1.0))
        return Polyline(p0 + np.linspace(0.0, 1.0, n + 1)[:, None] * (p1 - p0))
    side = _perp(d) if turn == "left" else -_perp(d)
    r = float(np.dot(p1 - p0, d))
    if abs(float(np.dot(p1 - p0, side)) - r) > 1e-6:
        raise ValueError("connector end points do not admit a quarter circle")
    centre = p0 + r * side
    a0 = math.atan2(*(p0 - centre)[::-1])
    a1 = a0 + (math.pi / 2 if turn == "left" else -math.pi / 2)
    pts = _arc(centre, r, a0, a1, 0.5)
    pts[0], pts[-1] = p0, p1
    return Polyline(pts)


def intersection_map() -> RoadMap:
    """Signalised 4-way junction at the origin of two 2+2-lane roads (along x and y) with 150 m arms."""
    B, W, Rc, v = JUNCTION_HALF, ROAD_HALF_WIDTH, CORNER_RADIUS, URBAN_SPEED_MPS
    arm_len = ARM_LENGTH - B
    lanes: dict[str, Lane] = {}
    meshes: list[Mesh] = []
    strips: list[_Strip] = []
    frontages: list[_Frontage] = []
    crosswalks, lights, parking, signs = [], [], [], []
    refs: dict[str, Polyline] = {}
    lat_k = {1: LANE_WIDTH / 2, 2: 1.5 * LANE_WIDTH}
    sh_lat = 2 * LANE_WIDTH + SHOULDER_WIDTH / 2
    stop_in_s = arm_len - _STOP_S[1]
    for arm, e in _ARMS.items():
        e = np.array(e)
        n = _perp(e)
        ref = Polyline(np.array([B * e, ARM_LENGTH * e]))  # outward
        refs[arm] = ref
        tl_id = f"tl_{arm}"
        for k in (1, 2):
            o = 3 - k
            lanes[f"{arm}_in_{k}"] = Lane(
                f"{arm}_in_{k}", arm, ref.offset(lat_k[k], reverse=True), LANE_WIDTH,
                left=f"{arm}_in_{o}" if k == 2 else None, right=f"{arm}_in_{o}" if k == 1 else f"{arm}_in_shoulder",
                speed_limit_mps=v, successors={}, kind="driving", stop_s=stop_in_s, signal=tl_id,
            )
            lanes[f"{arm}_out_{k}"] = Lane(
                f"{arm}_out_{k}", arm, ref.offset(-lat_k[k]), LANE_WIDTH,
                left=f"{arm}_out_{o}" if k == 2 else None, right=f"{arm}_out_{o}" if k == 1 else f"{arm}_out_shoulder",
                speed_limit_mps=v, successors={}, kind="driving",
            )
        lanes[f"{arm}_in_shoulder"] = Lane(f"{arm}_in_shoulder", arm, ref.offset(sh_lat, reverse=True),
                                           SHOULDER_WIDTH, f"{arm}_in_2", None, v, {}, "shoulder")
        lanes[f"{arm}_out_shoulder"] = Lane(f"{arm}_out_shoulder", arm, ref.offset(-sh_lat),
                                            SHOULDER_WIDTH, f"{arm}_out_2", None, v, {}, "shoulder")
        parking += _parking(lanes[f"{arm}_out_shoulder"].centre, 30.0, arm_len - 5.0)
        parking += _parking(lanes[f"{arm}_in_shoulder"].centre, 5.0, arm_len - 30.0)

        dense = _densify(ref, 2.0)
        meshes += _cross_section(dense, 0.0, arm_len)
        meshes += _road_markings(dense, _STOP_S[0], arm_len, _STOP_S[1] + 2.0)
        meshes.append(_paint(dense, _STOP_S[0], _STOP_S[1], 0.25, 2 * LANE_WIDTH - _EDGE_W / 2))  # stop line
        c0, c1 = _CROSSWALK_S
        zl = np.arange(-W + 0.5, W - 0.49, 1.0)  # zebra stripe centres, 0.5 m wide, 1 m pitch
        st = np.array([c0, c1])
        meshes.append(_quad_strips(_xy(dense, st[None], zl[:, None] - 0.25), _xy(dense, st[None], zl[:, None] + 0.25),
                                   PAINT_Z, ROAD_PAINT, ROADLINE))
        poly = np.array([(B + c0) * e - W * n, (B + c1) * e - W * n, (B + c1) * e + W * n, (B + c0) * e + W * n])
        mid = B + (c0 + c1) / 2
        crosswalks.append(Crosswalk(f"crosswalk_{arm}", poly, mid * e - W * n, mid * e + W * n))
        pos = (B + (c1 + _STOP_S[0]) / 2) * e + (W + 0.8) * n  # right-hand corner of the approach
        lights.append(TrafficLight(tl_id, np.array([*pos, SIDEWALK_HEIGHT]), math.atan2(e[1], e[0]),
                                   (f"{arm}_in_1", f"{arm}_in_2"), "EW" if arm in ("east", "west") else "NS"))
        sx, sy, syaw = ref.pose_at(40.0, -(W + 0.8))  # speed sign for the traffic leaving the junction
        signs.append((float(sx), float(sy), float(_wrap(syaw + math.pi)), "speed"))
        strips += [_Strip(ref, 0.0, arm_len, -W, W, ROADS), _Strip(ref, 0.0, arm_len, W, WALK_OUTER, SIDEWALKS),
                   _Strip(ref, 0.0, arm_len, -WALK_OUTER, -W, SIDEWALKS)]
        frontages += [_Frontage(ref, 1, 0.0, arm_len), _Frontage(ref, -1, 0.0, arm_len)]

    # Connectors: straight from both lanes, left from lane 1 to out_1, right from lane 2 to out_2.
    dir_to_arm = {v_: k for k, v_ in _ARMS.items()}
    # turning speeds for 2.5 m/s^2 lateral acceleration on the connector radii
    turn_speed = {"straight": v, "left": min(v, math.sqrt(2.5 * (B + lat_k[1]))),
                  "right": min(v, math.sqrt(2.5 * (B - lat_k[2])))}
    for arm, e in _ARMS.items():
        d = -np.array(e)
        targets = {"straight": d, "left": _perp(d), "right": -_perp(d)}
        for k, turns in ((1, ("straight", "left")), (2, ("straight", "right"))):
            in_id = f"{arm}_in_{k}"
            succ = {}
            for turn in turns:
                tgt = dir_to_arm[tuple(float(c) + 0.0 for c in targets[turn])]
                out_id = f"{tgt}_out_{k}"
                cid = f"{in_id}>{out_id}"
                p0 = lanes[in_id].centre.points[-1]
                p1 = lanes[out_id].centre.points[0]
                lanes[cid] = Lane(cid, "junction", _connector(p0, d, p1, turn), LANE_WIDTH, None, None,
                                  turn_speed[turn], {"straight": out_id}, "connector")
                succ[turn] = cid
            lanes[in_id] = replace(lanes[in_id], successors=succ)

    # Junction box: centre square, four mouths, four spandrels between the mouths and the rounded kerb corners.
    fillet = _arc((B, B), Rc, -math.pi / 2, -math.pi, 0.5)  # (B, W) -> (W, B), the (+x, +y) corner
    outline = np.concatenate([fillet @ _rot(k) for k in range(4)])
    two = np.array([[0, 1, 2], [0, 2, 3]])  # a quad as two triangles
    meshes.append(_flat(np.array([[-W, -W], [W, -W], [W, W], [-W, W]]), two, 0.0, ASPHALT, ROADS))
    kerb_in = _arc((B, B), Rc - KERB_WIDTH, -math.pi / 2, -math.pi, 0.5, n=len(fillet) - 1)
    areas = [(outline, ROADS)]
    for k in range(4):
        R = _rot(k)
        mouth = np.array([[W, -W], [B, -W], [B, W], [W, W]]) @ R
        meshes.append(_flat(mouth, two, 0.0, ASPHALT, ROADS))
        meshes.append(_fan(np.array([W, W]) @ R, fillet @ R, 0.0, ASPHALT, ROADS))
        corner = np.array([B, B]) @ R
        meshes.append(_fan(corner, kerb_in @ R, SIDEWALK_HEIGHT, CONCRETE, SIDEWALKS))
        meshes.append(_quad_strips((kerb_in @ R)[None], (fillet @ R)[None], SIDEWALK_HEIGHT, KERB, SIDEWALKS))
        meshes.append(_wall(fillet @ R, 0.0, SIDEWALK_HEIGHT, np.array([W, W]) @ R))
        areas.append((np.concatenate([corner[None], fillet @ R]), SIDEWALKS))
        quad = np.array([[B, B], [ARM_LENGTH, B], [ARM_LENGTH, ARM_LENGTH], [B, ARM_LENGTH]]) @ R
        meshes.append(_flat(quad, two, TERRAIN_HEIGHT, GRASS, TERRAIN))

    # L-shaped sidewalk centre lines around each corner.
    sidewalks = []
    wl = W + SIDEWALK_WIDTH / 2
    for k, name in enumerate(("ne", "nw", "sw", "se")):
        R = _rot(k)
        bend = _arc((B, B), B - wl, -math.pi, -math.pi / 2, 0.5)  # (wl, B) -> (B, wl)
        pts = np.concatenate([[[wl, ARM_LENGTH]], bend, [[ARM_LENGTH, wl]]]) @ R
        sidewalks.append(Sidewalk(f"sidewalk_{name}", Polyline(pts), SIDEWALK_WIDTH))

    return RoadMap(
        "intersection",
        "Signalised 4-way junction at the origin: two 2+2-lane roads along x and y with 150 m arms, 25 m junction "
        "box, crosswalks, stop lines and traffic lights (groups NS/EW).",
        lanes, sidewalks, crosswalks, lights, [outline], merge(meshes), parking,
        _strips=strips, _areas=areas, _frontages=frontages, _signs=signs,
    )


MAPS: dict[str, Callable[[], RoadMap]] = {
    "straight": straight_map,
    "curve": curve_map,
    "intersection": intersection_map,
}
_CACHE: dict[str, RoadMap] = {}


def is_map_file(name: str) -> bool:
    """Whether a scenario's ``map:`` value names an OpenDRIVE file rather than a builtin map or CARLA town."""
    return str(name).lower().endswith(".xodr")


def get_map(name: str, *, file: str | None = None) -> RoadMap:
    """The map ``name``: a builtin map registered in :data:`MAPS` (built once, then cached), a path to an OpenDRIVE
    ``.xodr`` file (imported with :mod:`simgen.world.xodr`, cached by content hash), or a CARLA town name when
    $SIMGEN_CARLA_ROOT points at a CARLA installation holding its .xodr.  KeyError lists known names; a bad map
    file is an InputError naming it (``file`` names the scenario that asked for it when the map is missing)."""
    if is_map_file(name):
        from pathlib import Path

        from simgen.errors import InputError
        from simgen.world.xodr import load_xodr

        if not Path(name).is_file():
            raise InputError(f"map file {name!r} not found", file=file, key="map")
        return load_xodr(name)
    if name not in MAPS:
        from simgen.world.xodr import carla_town_xodr

        town = carla_town_xodr(name)
        if town is not None:
            from simgen.world.xodr import load_xodr

            return load_xodr(town)
        raise KeyError(f"unknown map {name!r}; known maps: {sorted(MAPS)}")
    if name not in _CACHE:
        _CACHE[name] = MAPS[name]()
    return _CACHE[name]
