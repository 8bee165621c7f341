"""Procedural low-poly meshes: actors (cars, people, bikes ...) and static scenery (buildings, trees, poles ...).

Every mesh is generated in code from a handful of primitives (box, capped cylinder/loft, UV ellipsoid, torus,
convex prism and a side-profile extrusion), so nothing is loaded from disk and the same call always gives the
same mesh.  Triangles are counter-clockwise seen from outside (outward normals) and none has zero area; each
primitive fixes its own winding against a known outward direction, so the rule holds by construction.

Frames and units: metres; x forward, y left, z up.

Actor meshes (:func:`actor_mesh`) have their origin at the centre of the bottom face of the label box, and their
vertex bounding box *is* the label box: a mesh built for (l, w, h) spans exactly [-l/2, l/2] x [-w/2, w/2] x
[0, h].  The shape is first built at (about) the requested size with realistic proportions, then every axis is
scaled/shifted so that the vertex extremes land on the box faces (the correction is a few per cent at most within
the ranges of :data:`simgen.classes.ACTOR_KINDS`).  Actor triangles carry ``semantic == 0`` ("owner's class")
except the rider of a motorcycle or bicycle, whose triangles carry :data:`simgen.classes.RIDER`.  Body panels use
:data:`~simgen.world.materials.PAINT` (coloured per actor at render time), people's clothes
:data:`~simgen.world.materials.CLOTHING`.

Scenery meshes (:func:`building_mesh`, :func:`tree_mesh`, :func:`pole_mesh`, :func:`sign_mesh`,
:func:`traffic_light_mesh`) set an explicit, non-zero semantic class on every triangle.  Their origin is the
centre of their footprint on the ground (a building) or the foot of their pole/trunk.  Signs and traffic lights
face +x: they are read by traffic coming from +x towards the origin.
"""
from __future__ import annotations

import math

import numpy as np

from simgen import classes
from simgen.world import materials as mat
from simgen.world.mesh import Mesh, merge

__all__ = [
    "actor_mesh",
    "building_mesh",
    "tree_mesh",
    "pole_mesh",
    "sign_mesh",
    "traffic_light_mesh",
    "SIGN_KINDS",
    "TRAFFIC_LIGHT_HEAD",
    "TRAFFIC_LIGHT_LAMPS",
]

# ---------------------------------------------------------------------------------------------------------------
# Primitives.  Each returns a closed, outward-wound Mesh.  ``material`` may be a scalar or one id per triangle.
# ---------------------------------------------------------------------------------------------------------------


def _oriented(v, tris, outward, material, semantic=0) -> Mesh:
    """Make a mesh, flipping every triangle whose geometric normal points against ``outward`` (T,3)."""
    v = np.asarray(v, np.float64).reshape(-1, 3)
    t = np.array(tris, np.int64).reshape(-1, 3)
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    n = np.cross(b - a, c - a)
    flip = np.einsum("ij,ij->i", n, np.asarray(outward, np.float64).reshape(-1, 3)) < 0
    t[flip] = t[flip][:, ::-1]
    return Mesh.build(v, t, material, semantic)


def _convex(v, tris, material, semantic=0, centre=None) -> Mesh:
    """Orient a convex (or star-shaped about ``centre``) closed surface outward."""
    v = np.asarray(v, np.float64).reshape(-1, 3)
    t = np.asarray(tris, np.int64).reshape(-1, 3)
    c = v.mean(axis=0) if centre is None else np.asarray(centre, np.float64)
    return _oriented(v, t, v[t].mean(axis=1) - c, material, semantic)


def _quads(q) -> np.ndarray:
    """Split quads (a, b, c, d) given in ring order into triangles (a, b, c), (a, c, d)."""
    q = np.asarray(q, np.int64).reshape(-1, 4)
    return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], axis=0)


_BOX_FACES = np.array(  # vertex index = x_bit + 2*y_bit + 4*z_bit; faces -x, +x, -y, +y, -z, +z
    [[0, 2, 6, 4], [1, 5, 7, 3], [0, 4, 5, 1], [2, 3, 7, 6], [0, 1, 3, 2], [4, 6, 7, 5]]
)


def _box(lo, hi, material, semantic=0) -> Mesh:
    """Axis-aligned box between corners ``lo`` and ``hi`` (m).

    ``material``: one id, or six ids for the faces -x, +x, -y, +y, -z, +z.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    assert np.all(hi > lo), (lo, hi)
    bits = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], np.float64)
    v = lo + bits * (hi - lo)
    tris = np.concatenate([_BOX_FACES[:, [0, 1, 2]], _BOX_FACES[:, [0, 2, 3]]])  # face f -> tris f and f+6
    m = np.asarray(material)
    if m.ndim:
        m = np.concatenate([m, m])
    return _convex(v, tris, m, semantic)


_BOX_BITS = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], np.float64)
_BOX_TRIS = np.concatenate([_BOX_FACES[:, [0, 1, 2]], _BOX_FACES[:, [0, 2, 3]]])


def _boxes(lo, hi, material, semantic=0) -> Mesh:
    """N axis-aligned boxes between corners ``lo`` (N,3) and ``hi`` (N,3), one material: the same mesh as
    ``merge([_box(lo[i], hi[i], material, semantic) for i in range(N)])``, made in one vectorised pass (a
    building's window panes were 80 % of its build time as one ``_box`` call each)."""
    lo, hi = np.asarray(lo, np.float64).reshape(-1, 3), np.asarray(hi, np.float64).reshape(-1, 3)
    assert np.all(hi > lo)
    n = len(lo)
    v = lo[:, None, :] + _BOX_BITS[None] * (hi - lo)[:, None, :]  # (N, 8, 3)
    t = np.broadcast_to(_BOX_TRIS, (n, 12, 3)).copy()
    corner = [np.take_along_axis(v, t[:, :, k, None].repeat(3, axis=2), axis=1) for k in range(3)]
    normal = np.cross(corner[1] - corner[0], corner[2] - corner[0])
    outward = (corner[0] + corner[1] + corner[2]) / 3 - v.mean(axis=1, keepdims=True)
    flip = np.einsum("nij,nij->ni", normal, outward) < 0
    t[flip] = t[flip][:, ::-1]
    t += 8 * np.arange(n)[:, None, None]
    return Mesh.build(v.reshape(-1, 3), t.reshape(-1, 3), material, semantic)


def _rot(axis: str, angle: float) -> np.ndarray:
    """3x3 right-handed rotation by ``angle`` (rad) about the x, y or z axis."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _placed(m: Mesh, R=None, t=(0.0, 0.0, 0.0)) -> Mesh:
    """Rigidly move a mesh: rotate by ``R`` (3x3, det +1, keeps the winding) then translate by ``t``."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = t
    return m.transformed(T)


def _obox(centre, size, material, semantic=0, R=None) -> Mesh:
    """Box of ``size`` (m) centred on ``centre``, rotated by ``R`` about its centre."""
    half = np.asarray(size, np.float64) / 2
    return _placed(_box(-half, half, material, semantic), R, centre)


def _loft(centres, radii, material, semantic=0, *, n: int = 8, ref=None, phase: float = 0.0) -> Mesh:
    """Capped tube through K >= 2 centre points (a limb, a pipe, a cylinder when K == 2).

    ``radii``: K radii, or K (ra, rb) pairs for an elliptic section whose ``ra`` axis lies in the plane of the
    tube axis and ``ref`` (default: the world axis least aligned with the tube).  Each ring is perpendicular to
    the bisector of its neighbouring segments; ``n`` vertices per ring; ``material`` scalar or
    (side, start cap, end cap).
    """
    c = np.asarray(centres, np.float64).reshape(-1, 3)
    k = len(c)
    r = np.asarray(radii, np.float64)
    r = np.broadcast_to(r[:, None] if r.ndim == 1 else r, (k, 2))
    seg = np.diff(c, axis=0)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    t = np.empty((k, 3))
    t[0], t[-1] = seg[0], seg[-1]
    if k > 2:
        t[1:-1] = seg[:-1] + seg[1:]
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    if ref is None:
        ref = np.eye(3)[np.argmin(np.abs(seg.sum(axis=0)))]
    u = np.asarray(ref, np.float64) - (t @ np.asarray(ref, np.float64))[:, None] * t
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.cross(t, u)
    th = phase + 2 * np.pi * np.arange(n) / n
    ring = (
        c[:, None, :]
        + r[:, 0, None, None] * np.cos(th)[None, :, None] * u[:, None, :]
        + r[:, 1, None, None] * np.sin(th)[None, :, None] * w[:, None, :]
    )
    v = np.concatenate([ring.reshape(-1, 3), c[[0, -1]]])
    j = np.arange(n)
    jn = (j + 1) % n
    kk = np.arange(k - 1)[:, None]
    side = _quads(np.stack([kk * n + j, kk * n + jn, (kk + 1) * n + jn, (kk + 1) * n + j], -1))
    ring_centre = np.concatenate([np.repeat(c, n, axis=0), c[[0, -1]]])
    out_side = (v[side] - ring_centre[side]).mean(axis=1)
    s0, s1 = k * n, k * n + 1
    cap0 = np.stack([np.full(n, s0), jn, j], -1)
    cap1 = np.stack([np.full(n, s1), (k - 1) * n + j, (k - 1) * n + jn], -1)
    tris = np.concatenate([side, cap0, cap1])
    out = np.concatenate([out_side, np.repeat(-t[:1], n, 0), np.repeat(t[-1:], n, 0)])
    m = np.asarray(material)
    if m.ndim:
        m = np.concatenate([np.full(len(side), m[0]), np.full(n, m[1]), np.full(n, m[2])])
    return _oriented(v, tris, out, m, semantic)


def _cyl(p0, p1, radius, material, semantic=0, *, n: int = 12, phase: float = 0.0) -> Mesh:
    """Capped circular cylinder from point ``p0`` to ``p1``; ``material`` scalar or (side, cap at p0, cap at p1)."""
    return _loft([p0, p1], [radius, radius], material, semantic, n=n, phase=phase)


def _ellipsoid(centre, radii, material, semantic=0, *, n_lon: int = 12, n_lat: int = 8, R=None, jitter=0.0) -> Mesh:
    """Low-poly UV ellipsoid with semi-axes ``radii`` (m) along x, y, z (then rotated by ``R``).

    ``jitter`` > 0 perturbs the radius of each vertex deterministically (a lumpy blob, e.g. foliage).
    """
    phi = np.pi * np.arange(1, n_lat) / n_lat
    th = 2 * np.pi * np.arange(n_lon) / n_lon
    unit = np.stack(
        [np.outer(np.sin(phi), np.cos(th)), np.outer(np.sin(phi), np.sin(th)), np.outer(np.cos(phi), np.ones(n_lon))],
        -1,
    ).reshape(-1, 3)
    unit = np.concatenate([unit, [[0, 0, 1], [0, 0, -1]]])
    if jitter:
        g = np.arange(len(unit))
        unit = unit * (1 + jitter * np.sin(g * 2.399963 + 0.7) * np.cos(g * 1.3))[:, None]
    v = unit * np.asarray(radii, np.float64)
    if R is not None:
        v = v @ np.asarray(R).T
    v = v + np.asarray(centre, np.float64)
    top, bot = len(unit) - 2, len(unit) - 1
    j = np.arange(n_lon)
    jn = (j + 1) % n_lon
    kk = np.arange(n_lat - 2)[:, None]
    tris = [
        np.stack([np.full(n_lon, top), j, jn], -1),
        _quads(np.stack([kk * n_lon + j, (kk + 1) * n_lon + j, (kk + 1) * n_lon + jn, kk * n_lon + jn], -1)),
        np.stack([np.full(n_lon, bot), (n_lat - 2) * n_lon + jn, (n_lat - 2) * n_lon + j], -1),
    ]
    return _convex(v, np.concatenate(tris), material, semantic, centre=centre)


def _torus(centre, axis: str, major: float, minor: float, material, semantic=0, *, n_major=18, n_minor=5) -> Mesh:
    """Torus (a tyre) round the x, y or z ``axis`` through ``centre``; ``major``/``minor`` radii in metres."""
    a = np.linspace(0, 2 * np.pi, n_major, endpoint=False)
    b = np.linspace(0, 2 * np.pi, n_minor, endpoint=False)
    # local frame: e1, e2 span the ring plane, e3 is the axis
    e3 = {"x": np.eye(3)[0], "y": np.eye(3)[1], "z": np.eye(3)[2]}[axis]
    e1 = np.eye(3)[(("xyz".index(axis)) + 1) % 3]
    e2 = np.cross(e3, e1)
    radial = np.cos(a)[:, None] * e1 + np.sin(a)[:, None] * e2  # (Na,3)
    core = major * radial
    v = (
        core[:, None, :]
        + minor * np.cos(b)[None, :, None] * radial[:, None, :]
        + minor * np.sin(b)[None, :, None] * e3
    ).reshape(-1, 3)
    i = np.arange(n_major)[:, None]
    j = np.arange(n_minor)[None, :]
    i1, j1 = (i + 1) % n_major, (j + 1) % n_minor
    q = np.stack(
        np.broadcast_arrays(i * n_minor + j, i1 * n_minor + j, i1 * n_minor + j1, i * n_minor + j1), -1
    ).reshape(-1, 4)
    tris = _quads(q)
    core_v = np.repeat(core, n_minor, axis=0)
    out = (v[tris] - core_v[tris]).mean(axis=1)
    return _oriented(v + np.asarray(centre, np.float64), tris, out, material, semantic)


def _prism(poly, origin, e1, e2, depth: float, material, semantic=0) -> Mesh:
    """Convex polygon ``poly`` (N,2) in the plane (``e1``, ``e2``) through ``origin``, extruded by ``depth``
    along e1 x e2.  ``material`` scalar or (side, back cap, front cap); the front cap faces +e1 x e2."""
    poly = np.asarray(poly, np.float64)
    e1, e2 = np.asarray(e1, np.float64), np.asarray(e2, np.float64)
    e3 = np.cross(e1, e2)
    n = len(poly)
    base = np.asarray(origin, np.float64) + poly[:, :1] * e1 + poly[:, 1:] * e2
    v = np.concatenate([base, base + depth * e3])
    j = np.arange(n)
    jn = (j + 1) % n
    side = _quads(np.stack([j, jn, n + jn, n + j], -1))
    back = np.stack([np.zeros(n - 2, int), j[2:], j[1:-1]], -1)
    front = back[:, [0, 2, 1]] + n
    tris = np.concatenate([side, back, front])
    m = np.asarray(material)
    if m.ndim:
        m = np.concatenate([np.full(len(side), m[0]), np.full(n - 2, m[1]), np.full(n - 2, m[2])])
    return _convex(v, tris, m, semantic)


def _regular_polygon(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(a), np.sin(a)], -1)


def _profile(xs, z_bot, z_top, half_w_bot, half_w_top, *, side, top, bottom, rear, front, semantic=0) -> Mesh:
    """Side-profile extrusion: the region z_bot(x) <= z <= z_top(x) of the x-z plane, swept across y.

    ``xs`` strictly increasing stations (m); ``z_bot``/``z_top`` the lower/upper outline at each station (the
    polygon is that band between two x-monotone chains, closed by vertical ends at xs[0] and xs[-1]).  The
    section is ±half_w_bot wide at the bottom edge and ±half_w_top at the top edge (tumblehome).  ``side``,
    ``top`` and ``bottom`` give one material or one per segment (len(xs) - 1); ``rear``/``front`` the end faces.
    """
    x = np.asarray(xs, np.float64)
    zb = np.asarray(z_bot, np.float64)
    zt = np.maximum(np.asarray(z_top, np.float64), zb + 1e-3)
    assert np.all(np.diff(x) > 0), x
    k = len(x)
    yb, yt = float(half_w_bot), float(half_w_top)
    v = np.stack(
        [
            np.stack([x, np.full(k, -yb), zb], -1),
            np.stack([x, np.full(k, yb), zb], -1),
            np.stack([x, np.full(k, -yt), zt], -1),
            np.stack([x, np.full(k, yt), zt], -1),
        ],
        1,
    ).reshape(-1, 3)  # vertex 4*i + (0: bottom right, 1: bottom left, 2: top right, 3: top left)
    i = np.arange(k - 1)
    a = 4 * i
    b = 4 * (i + 1)
    dx, dzt, dzb = np.diff(x), np.diff(zt), np.diff(zb)
    zero = np.zeros(k - 1)
    groups = [
        (np.stack([a + 1, b + 1, b + 3, a + 3], -1), np.stack([zero, zero + 1, zero], -1), side),  # +y side
        (np.stack([a, a + 2, b + 2, b], -1), np.stack([zero, zero - 1, zero], -1), side),  # -y side
        (np.stack([a + 2, a + 3, b + 3, b + 2], -1), np.stack([-dzt, zero, dx], -1), top),
        (np.stack([a, b, b + 1, a + 1], -1), np.stack([dzb, zero, -dx], -1), bottom),
    ]
    tris, outs, mats = [], [], []
    for q, o, m in groups:
        m = np.broadcast_to(np.asarray(m, np.uint8), (k - 1,))
        tris += [q[:, [0, 1, 2]], q[:, [0, 2, 3]]]
        outs += [o, o]
        mats += [m, m]
    last = 4 * (k - 1)
    for q, o, m in [([0, 1, 3, 2], [-1, 0, 0], rear), ([last, last + 1, last + 3, last + 2], [1, 0, 0], front)]:
        tris += [np.array([q[:3], [q[0], q[2], q[3]]])]
        outs += [np.array([o, o], np.float64)]
        mats += [np.full(2, m, np.uint8)]
    return _oriented(v, np.concatenate(tris), np.concatenate(outs), np.concatenate(mats), semantic)


def _chains(*chains):
    """Resample piecewise-linear outlines [(x, z), ...] at the union of their x knots.

    Returns xs and one z array per chain.  Each chain must have strictly increasing x and span the same range.
    """
    pts = [np.asarray(c, np.float64) for c in chains]
    xs = np.unique(np.round(np.concatenate([p[:, 0] for p in pts]), 9))
    return (xs, *[np.interp(xs, p[:, 0], p[:, 1]) for p in pts])


def _arch(x_axle: float, r_wheel: float, z_clear: float, n: int = 7) -> list[tuple[float, float]]:
    """Bottom-outline knots of a wheel arch (a half circle 12 % wider than the wheel) over an axle."""
    big = 1.12 * r_wheel
    th = np.linspace(np.pi, 0, n)
    pts = [(x_axle - big - 0.03, z_clear)]
    pts += [(x_axle + big * math.cos(a), max(z_clear, r_wheel + big * math.sin(a))) for a in th]
    pts += [(x_axle + big + 0.03, z_clear)]
    return pts


def _wheel(x: float, y_out: float, r: float, width: float, side: int, *, n: int = 16, hub=True) -> list[Mesh]:
    """Car-type wheel at axle position ``x``; outer face at |y| = ``y_out`` on ``side`` (+1 left, -1 right);
    touches z = 0.  Tyre cylinder (TYRE) plus a hub disc (METAL) 5 mm proud of the tyre's outer face."""
    yo, yi = side * y_out, side * (y_out - width)
    parts = [_cyl((x, yi, r), (x, yo, r), r, mat.TYRE, n=n)]
    if hub:
        parts.append(_cyl((x, yi + side * 0.02, r), (x, yo + side * 0.005, r), 0.6 * r, mat.METAL, n=10))
    return parts


def _fit(m: Mesh, lo, hi) -> Mesh:
    """Scale and shift each axis so the vertex bounding box is exactly [lo, hi] (keeps winding: scales > 0)."""
    v = m.vertices.astype(np.float64)
    vmin, vmax = v.min(axis=0), v.max(axis=0)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    v = lo + (v - vmin) * ((hi - lo) / (vmax - vmin))
    v = np.clip(v, lo, hi)
    return Mesh(v.astype(np.float32), m.triangles, m.material, m.semantic)


# ---------------------------------------------------------------------------------------------------------------
# Vehicles
# ---------------------------------------------------------------------------------------------------------------


def _lights(x_face: float, sign: int, z0, z1, y0, y1, material) -> list[Mesh]:
    """A pair of lamps (mirror images in y) on an end face at ``x_face``, 6 mm proud (sign +1 front, -1 rear)."""
    xa, xb = sorted((x_face - sign * 0.03, x_face + sign * 0.006))
    return [_box((xa, y0, z0), (xb, y1, z1), material), _box((xa, -y1, z0), (xb, -y0, z1), material)]


def _car(L: float, W: float, H: float) -> list[Mesh]:
    r = float(np.clip(0.215 * H, 0.26, 0.40))
    clr = 0.11 * H
    xf, xr = L / 2 - 0.19 * L, -L / 2 + 0.21 * L
    bottom = [(-0.5 * L, 0.2 * H), (-0.46 * L, clr)] + _arch(xr, r, clr) + _arch(xf, r, clr)
    bottom += [(0.46 * L, clr), (0.5 * L, 0.2 * H)]
    body_top = [
        (-0.5 * L, 0.60 * H), (-0.49 * L, 0.645 * H), (-0.45 * L, 0.665 * H), (-0.36 * L, 0.665 * H),
        (0.17 * L, 0.635 * H), (0.32 * L, 0.605 * H), (0.45 * L, 0.565 * H), (0.485 * L, 0.545 * H),
        (0.5 * L, 0.50 * H),
    ]
    xs, zb, zt = _chains(bottom, body_top)
    parts = [_profile(xs, zb, zt, W / 2, W / 2, side=mat.PAINT, top=mat.PAINT, bottom=mat.PAINT,
                      rear=mat.PAINT, front=mat.PAINT)]

    # Cabin (greenhouse): narrower than the body, sloped windscreen / rear window, glass sides with B-pillar.
    def belt(x):
        return float(np.interp(x, [p[0] for p in body_top], [p[1] for p in body_top]))

    rw0, rw1 = (-0.36 * L, belt(-0.36 * L) + 0.005 * H), (-0.245 * L, 0.965 * H)  # rear window, bottom/top
    ws0, ws1 = (0.035 * L, 0.975 * H), (0.17 * L, belt(0.17 * L) + 0.005 * H)  # windscreen, top/bottom
    cx = np.array([rw0[0], -0.30 * L, rw1[0], -0.21 * L, -0.085 * L, -0.055 * L, 0.01 * L, ws0[0], 0.10 * L, ws1[0]])
    ctop = np.array([rw0[1], np.interp(-0.30 * L, *zip(rw0, rw1)), rw1[1], H, H, H, H, ws0[1],
                     np.interp(0.10 * L, *zip(ws0, ws1)), ws1[1]])
    cbot = np.array([belt(x) - 0.03 * H for x in cx])
    P, G = mat.PAINT, mat.GLASS
    # side: C-pillar, rear quarter glass, glass, B-pillar, front door glass (up under the A-pillar), A-pillar
    side_m = [P, G, G, G, P, G, G, G, P]
    top_m = [G, G, P, P, P, P, P, G, G]  # rear window, roof, windscreen
    parts.append(_profile(cx, cbot, ctop, 0.465 * W, 0.40 * W, side=side_m, top=top_m, bottom=P, rear=P, front=P))

    y_out = W / 2 - 0.015
    ww = 0.12 * W
    for x in (xf, xr):
        for s in (1, -1):
            parts += _wheel(x, y_out, r, ww, s)
    parts += _lights(L / 2, 1, 0.40 * H, 0.47 * H, 0.27 * W, 0.45 * W, mat.HEADLIGHT)
    parts += _lights(-L / 2, -1, 0.50 * H, 0.58 * H, 0.30 * W, 0.47 * W, mat.TAILLIGHT)
    parts.append(_box((L / 2 - 0.04, -0.22 * W, 0.29 * H), (L / 2 + 0.006, 0.22 * W, 0.39 * H), mat.PLASTIC))  # grille
    for sgn in (1, -1):  # bumpers
        xa, xb = sorted((sgn * (L / 2 - 0.12), sgn * (L / 2 + 0.012)))
        parts.append(_box((xa, -0.485 * W, 0.15 * H), (xb, 0.485 * W, 0.27 * H), mat.PLASTIC))
    return parts


def _van(L: float, W: float, H: float) -> list[Mesh]:
    r = float(np.clip(0.155 * H, 0.30, 0.42))
    clr = 0.085 * H
    xf, xr = L / 2 - 0.16 * L, -L / 2 + 0.2 * L
    bottom = [(-0.5 * L, 0.16 * H), (-0.47 * L, clr)] + _arch(xr, r, clr) + _arch(xf, r, clr)
    bottom += [(0.47 * L, clr), (0.5 * L, 0.15 * H)]
    body_top = [(-0.5 * L, 0.45 * H), (0.36 * L, 0.45 * H), (0.46 * L, 0.41 * H), (0.49 * L, 0.36 * H),
                (0.5 * L, 0.31 * H)]
    xs, zb, zt = _chains(bottom, body_top)
    P, G = mat.PAINT, mat.GLASS
    parts = [_profile(xs, zb, zt, W / 2, W / 2, side=P, top=P, bottom=P, rear=P, front=P)]
    belt = 0.45 * H
    cx = np.array([-0.5 * L, -0.495 * L, 0.0, 0.04 * L, 0.18 * L, 0.205 * L, 0.36 * L])
    ctop = np.array([0.975 * H, H, H, H, H, 0.97 * H, belt + 0.005 * H])
    cbot = np.full(len(cx), belt - 0.03 * H)
    side_m = [P, P, P, G, P, P]  # panel sides, B-pillar, door glass, A-pillar
    top_m = [P, P, P, P, P, G]
    parts.append(_profile(cx, cbot, ctop, 0.49 * W, 0.46 * W, side=side_m, top=top_m, bottom=P, rear=P, front=P))
    for ya, yb in ((0.05 * W, 0.42 * W), (-0.42 * W, -0.05 * W)):  # rear door windows
        parts.append(_box((-L / 2 - 0.005, ya, 0.60 * H), (-L / 2 + 0.02, yb, 0.88 * H), G))
    y_out = W / 2 - 0.015
    for x in (xf, xr):
        for s in (1, -1):
            parts += _wheel(x, y_out, r, 0.11 * W, s)
    parts += _lights(L / 2, 1, 0.235 * H, 0.295 * H, 0.28 * W, 0.45 * W, mat.HEADLIGHT)
    parts += _lights(-L / 2, -1, 0.28 * H, 0.44 * H, 0.42 * W, 0.49 * W, mat.TAILLIGHT)
    parts.append(_box((L / 2 - 0.04, -0.24 * W, 0.17 * H), (L / 2 + 0.006, 0.24 * W, 0.235 * H), mat.PLASTIC))
    for sgn in (1, -1):
        xa, xb = sorted((sgn * (L / 2 - 0.12), sgn * (L / 2 + 0.012)))
        parts.append(_box((xa, -0.485 * W, 0.10 * H), (xb, 0.485 * W, 0.17 * H), mat.PLASTIC))
    return parts


def _truck(L: float, W: float, H: float) -> list[Mesh]:
    """Rigid box truck: cab-over cab, a 0.3 m gap, then the cargo box on a ladder chassis; 6 wheels."""
    r = float(np.clip(0.14 * H, 0.45, 0.55))
    P, G = mat.PAINT, mat.GLASS
    lc = float(np.clip(0.25 * L, 1.9, 2.4))
    gap = 0.3
    hc = 0.8 * H
    wc = W - 0.08
    x0 = L / 2 - lc
    xf = L / 2 - 0.55 * lc
    cab_floor = 0.5
    bottom = [(x0, cab_floor)] + _arch(xf, r, cab_floor) + [(L / 2, cab_floor)]
    top = [(x0, hc), (L / 2 - 0.35, hc), (L / 2 - 0.18, hc - 0.08), (L / 2 - 0.04, 0.5 * H), (L / 2, 0.47 * H)]
    xs, zb, zt = _chains(bottom, top)
    top_m = np.full(len(xs) - 1, P, np.uint8)
    top_m[(xs[:-1] >= L / 2 - 0.181) & (xs[1:] <= L / 2 - 0.039)] = G  # windscreen segment
    parts = [_profile(xs, zb, zt, wc / 2, wc / 2 - 0.03, side=P, top=top_m, bottom=P, rear=P, front=P)]
    for s in (1, -1):  # cab door windows, proud of the (tumblehome) side
        ya, yb = sorted((s * (wc / 2 - 0.04), s * (wc / 2 + 0.004)))
        parts.append(_box((L / 2 - 1.3, ya, 0.52 * H), (L / 2 - 0.45, yb, hc - 0.14), G))
    box_floor = 2 * r + 0.22
    xb1 = x0 - gap
    parts.append(_box((-L / 2, -W / 2, box_floor), (xb1, W / 2, H), P))
    for s in (1, -1):  # chassis rails, visible in the gap and under the box
        parts.append(_box((-L / 2 + 0.15, s * 0.42 - 0.06, box_floor - 0.3), (L / 2 - 0.35, s * 0.42 + 0.06,
                                                                            box_floor), mat.METAL))
    parts.append(_box((xb1 - 1.1, -0.47 * W, 0.55), (xb1 - 0.2, -0.3 * W, box_floor - 0.05), mat.METAL))  # tank
    xr_mid = -L / 2 + 0.3 * L
    for x, width in [(xf, 0.3), (xr_mid - r - 0.08, 0.45), (xr_mid + r + 0.08, 0.45)]:
        for s in (1, -1):
            parts += _wheel(x, W / 2 - 0.03, r, width, s)
    parts += _lights(L / 2, 1, 0.19 * H, 0.25 * H, 0.3 * W, 0.45 * W, mat.HEADLIGHT)
    parts.append(_box((L / 2 - 0.04, -0.3 * W, 0.27 * H), (L / 2 + 0.006, 0.3 * W, 0.42 * H), mat.PLASTIC))
    parts.append(_box((L / 2 - 0.12, -0.48 * W, 0.12 * H), (L / 2 + 0.012, 0.48 * W, 0.18 * H), mat.PLASTIC))
    parts.append(_box((-L / 2, -0.46 * W, 0.42), (-L / 2 + 0.12, 0.46 * W, 0.6), mat.METAL))  # underrun bar
    parts += _lights(-L / 2, -1, 0.45, 0.57, 0.3 * W, 0.44 * W, mat.TAILLIGHT)
    return parts


def _bus(L: float, W: float, H: float) -> list[Mesh]:
    """City bus: long body with a band of side windows, big windscreen, front door; 4 wheels (6 if L > 12 m)."""
    r = float(np.clip(0.16 * H, 0.45, 0.55))
    P, G = mat.PAINT, mat.GLASS
    clr = 0.3
    xf, xr = L / 2 - 0.22 * L, -L / 2 + 0.27 * L
    axles = [xf, xr] + ([xr - 2 * r - 0.2] if L > 12.0 else [])
    bottom = [(-0.5 * L, 0.12 * H), (-0.48 * L, clr)]
    for x in sorted(axles):
        bottom += _arch(x, r, clr)
    bottom += [(0.48 * L, clr), (0.5 * L, 0.12 * H)]
    top = [(-0.5 * L, 0.93 * H), (-0.49 * L, 0.98 * H), (-0.47 * L, H), (0.47 * L, H), (0.495 * L, 0.97 * H),
           (0.5 * L, 0.9 * H)]
    xs, zb, zt = _chains(bottom, top)
    wb = W / 2 - 0.012
    parts = [_profile(xs, zb, zt, wb, wb, side=P, top=P, bottom=P, rear=P, front=P)]
    parts.append(_box((L / 2 - 0.02, -0.46 * W, 0.36 * H), (L / 2 + 0.006, 0.46 * W, 0.87 * H), G))  # windscreen
    parts.append(_box((-L / 2 - 0.006, -0.4 * W, 0.55 * H), (-L / 2 + 0.02, 0.4 * W, 0.86 * H), G))  # rear window
    pane, pillar = 1.3, 0.12
    door = (L / 2 - 1.35, L / 2 - 0.25)
    for s in (1, -1):
        ya, yb = sorted((s * (wb - 0.02), s * (W / 2)))
        x_end = door[0] - pillar if s < 0 else L / 2 - 0.3
        x_start = -0.47 * L
        nwin = max(1, int((x_end - x_start + pillar) // (pane + pillar)))
        pw = (x_end - x_start + pillar) / nwin - pillar
        for i in range(nwin):
            xa = x_start + i * (pw + pillar)
            parts.append(_box((xa, ya, 0.44 * H), (xa + pw, yb, 0.86 * H), G))
        if s < 0:  # front door on the right-hand (-y) side, glazed full height
            parts.append(_box((door[0], ya, 0.12 * H), (door[1], yb, 0.86 * H), G))
    for x in axles:
        for s in (1, -1):
            parts += _wheel(x, W / 2 - 0.04, r, 0.3, s)
    parts += _lights(L / 2, 1, 0.13 * H, 0.19 * H, 0.3 * W, 0.45 * W, mat.HEADLIGHT)
    parts += _lights(-L / 2, -1, 0.15 * H, 0.3 * H, 0.38 * W, 0.47 * W, mat.TAILLIGHT)
    return parts


# ---------------------------------------------------------------------------------------------------------------
# People
# ---------------------------------------------------------------------------------------------------------------

# Body proportions as fractions of standing height.  head_*: full head height / depth / width.
_ADULT = dict(head_h=0.13, head_d=0.115, head_w=0.088, sh_z=0.81, sh_y=0.100, hip_z=0.52, hip_y=0.052,
              ankle_z=0.045, arm=0.335, foot=0.15, limb=1.0)
_CHILD = dict(head_h=0.17, head_d=0.15, head_w=0.12, sh_z=0.77, sh_y=0.100, hip_z=0.48, hip_y=0.052,
              ankle_z=0.045, arm=0.32, foot=0.15, limb=1.1)


def _ik(a, c, l1: float, l2: float, bend) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone chain from ``a`` towards ``c``: returns (middle joint, end joint).  The middle joint bends
    towards ``bend``; an unreachable end is pulled in along the line a -> c."""
    a, c, bend = (np.asarray(p, np.float64) for p in (a, c, bend))
    d = c - a
    dist = float(np.linalg.norm(d))
    dh = d / dist
    dist = float(np.clip(dist, abs(l1 - l2) + 1e-3, 0.995 * (l1 + l2)))
    x = (l1 * l1 - l2 * l2 + dist * dist) / (2 * dist)
    y = math.sqrt(max(l1 * l1 - x * x, 0.0))
    p = bend - (bend @ dh) * dh
    p /= np.linalg.norm(p)
    return a + dh * x + p * y, a + dh * dist


def _figure(H: float, P: dict, hip_c, torso_dir, head_dir, hips, knees, ankles, shoulders, elbows, wrists,
            semantic: int, headgear: str = "hair") -> list[Mesh]:
    """Assemble a person from joint positions (m).  Paired joints are (left, right) tuples; ``torso_dir`` is the
    unit vector hip centre -> shoulder centre, ``head_dir`` neck -> head centre."""
    C, S = mat.CLOTHING, mat.SKIN
    lim = P["limb"] * H
    hip_c, td, hd = (np.asarray(p, np.float64) for p in (hip_c, torso_dir, head_dir))
    tl = (P["sh_z"] - P["hip_z"]) * H
    rings = [(-0.10, 0.060, 0.095), (0.35, 0.055, 0.082), (0.72, 0.066, 0.100), (1.06, 0.050, 0.090)]
    parts = [_loft([hip_c + f * tl * td for f, _, _ in rings], [(a * H, b * H) for _, a, b in rings], C, semantic,
                   n=10, ref=(1, 0, 0))]
    neck0 = hip_c + 1.0 * tl * td
    head_c = neck0 + (1.0 - P["sh_z"] - 0.5 * P["head_h"]) * H * hd  # crown at H when upright
    parts.append(_loft([neck0, head_c], [0.026 * H, 0.024 * H], S, semantic, n=8))
    radii = np.array([P["head_d"], P["head_w"], P["head_h"]]) * H / 2
    if headgear == "helmet":
        parts.append(_ellipsoid(head_c + (0, 0, 0.1 * radii[2]), radii * (1.18, 1.2, 1.05), mat.PAINT, semantic,
                                n_lon=12, n_lat=7))
        parts.append(_ellipsoid(head_c + (0.45 * radii[0], 0, 0.05 * radii[2]), radii * (0.8, 0.95, 0.55),
                                mat.GLASS, semantic, n_lon=10, n_lat=5))  # visor
    else:
        parts.append(_ellipsoid(head_c, radii, S, semantic, n_lon=12, n_lat=8))
        parts.append(_ellipsoid(head_c + (-0.14 * radii[0], 0, 0.2 * radii[2]), radii * (0.92, 1.05, 0.85),
                                mat.HAIR, semantic, n_lon=10, n_lat=6))
    for i in range(2):
        parts.append(_loft([hips[i], knees[i], ankles[i]], [(0.038 * lim,) * 2, (0.029 * lim,) * 2,
                                                          (0.02 * lim,) * 2], C, semantic, n=8))
        parts.append(_loft([shoulders[i], elbows[i], wrists[i]], [0.027 * lim, 0.022 * lim, 0.017 * lim], C,
                           semantic, n=8))
        fore = np.asarray(wrists[i], np.float64) - np.asarray(elbows[i], np.float64)
        fore /= np.linalg.norm(fore)
        parts.append(_ellipsoid(np.asarray(wrists[i]) + 0.045 * H * fore, (0.02 * H, 0.02 * H, 0.045 * H),
                                S, semantic, n_lon=8, n_lat=5, R=_frame_z_to(fore)))
        an = np.asarray(ankles[i], np.float64)
        fl = P["foot"] * H
        parts.append(_box((an[0] - 0.25 * fl, an[1] - 0.028 * H, an[2] - P["ankle_z"] * H),
                          (an[0] + 0.75 * fl, an[1] + 0.028 * H, an[2] + 0.015 * H), mat.PLASTIC, semantic))
    return parts


def _frame_z_to(d) -> np.ndarray:
    """A rotation taking +z to the unit vector ``d``."""
    d = np.asarray(d, np.float64)
    d = d / np.linalg.norm(d)
    a = np.eye(3)[np.argmin(np.abs(d))]
    x = np.cross(a, d)
    x /= np.linalg.norm(x)
    y = np.cross(d, x)
    return np.stack([x, y, d], 1)


def _pedestrian(L: float, W: float, H: float, child: bool) -> list[Mesh]:
    """Standing person mid-stride (left foot forward), facing +x, arms swinging opposite the legs."""
    P = _CHILD if child else _ADULT
    fl = P["foot"] * H
    stride = max(L - fl, 0.06 * H)
    off = -0.25 * fl  # centre the feet: heel of the back foot to toe of the front foot
    hip_c = np.array([0.0, 0.0, P["hip_z"] * H])
    hips = [hip_c + (0, P["hip_y"] * H, 0), hip_c - (0, P["hip_y"] * H, 0)]
    ankles = [np.array([stride / 2 + off, P["hip_y"] * H + 0.01 * H, P["ankle_z"] * H]),
              np.array([-stride / 2 + off, -P["hip_y"] * H - 0.01 * H, P["ankle_z"] * H])]
    knees, ankles2 = [], []
    for hp, an in zip(hips, ankles):
        half = 0.5 * np.linalg.norm(an - hp) * 1.01
        k, a = _ik(hp, an, half, half, (1, 0, 0))
        knees.append(k)
        ankles2.append(a)
    sh_c = np.array([0.0, 0.0, P["sh_z"] * H])
    shoulders = [sh_c + (0, P["sh_y"] * H, 0), sh_c - (0, P["sh_y"] * H, 0)]
    arm = P["arm"] * H
    swing = math.radians(float(np.clip(stride / H * 40, 4, 15)))
    elbows, wrists = [], []
    for i, s in enumerate((1, -1)):
        dx = -arm * math.sin(swing) * s  # left arm back while the left leg is forward
        hand_y = max(W / 2 - 0.022 * H, P["sh_y"] * H + 0.03 * H)
        dy = s * (hand_y - P["sh_y"] * H)
        dz = -math.sqrt(max(arm * arm - dx * dx - dy * dy, (0.5 * arm) ** 2))
        target = shoulders[i] + (dx, dy, dz)
        half = 0.5 * arm * 1.01
        e, wr = _ik(shoulders[i], target, half, half, (-1, 0.3 * s, 0))
        elbows.append(e)
        wrists.append(wr)
    return _figure(H, P, hip_c, (0, 0, 1), (0, 0, 1), hips, knees, ankles2, shoulders, elbows, wrists, 0)


def _rider(hip_c, grips, feet, top_z: float, lean_deg: float, headgear: str) -> list[Mesh]:
    """A seated rider (semantic RIDER): hips at ``hip_c``, hands on ``grips``, soles on ``feet`` (left, right),
    top of the head at about ``top_z``.  Stature is solved from the head height (clamped to 1.45-1.95 m) and the
    torso lean adjusted to suit."""
    P = _ADULT
    hip_c = np.asarray(hip_c, np.float64)
    up = 1.0 - P["sh_z"]  # shoulder -> crown, fraction of H
    tl = P["sh_z"] - P["hip_z"]
    lean = math.radians(lean_deg)
    H = float(np.clip((top_z - hip_c[2]) / (tl * math.cos(lean) + up), 1.45, 1.95))
    cos_l = float(np.clip(((top_z - hip_c[2]) / H - up) / tl, math.cos(math.radians(50)), 1.0))
    lean = math.acos(cos_l)
    td = np.array([math.sin(lean), 0.0, math.cos(lean)])
    hd = np.array([math.sin(0.3 * lean), 0.0, math.cos(0.3 * lean)])
    sh_c = hip_c + tl * H * td
    shoulders = [sh_c + (0, P["sh_y"] * H, 0), sh_c - (0, P["sh_y"] * H, 0)]
    hips = [hip_c + (0.02 * H, P["hip_y"] * H, 0.02 * H), hip_c + (0.02 * H, -P["hip_y"] * H, 0.02 * H)]
    arm = P["arm"] * H
    leg = (P["hip_z"] - P["ankle_z"]) * H
    elbows, wrists, knees, ankles = [], [], [], []
    for i, s in enumerate((1, -1)):
        e, wr = _ik(shoulders[i], np.asarray(grips[i]) - (0.03 * H, 0, 0), 0.5 * arm, 0.5 * arm, (-0.4, 0.6 * s, -1))
        elbows.append(e)
        wrists.append(wr)
        ankle_t = np.asarray(feet[i], np.float64) + (-0.15 * P["foot"] * H, 0, P["ankle_z"] * H)
        k, an = _ik(hips[i], ankle_t, 0.5 * leg, 0.5 * leg, (1, 0.15 * s, 0.6))
        knees.append(k)
        ankles.append(an)
    return _figure(H, P, hip_c, td, hd, hips, knees, ankles, shoulders, elbows, wrists, classes.RIDER, headgear)


# ---------------------------------------------------------------------------------------------------------------
# Two-wheelers
# ---------------------------------------------------------------------------------------------------------------


def _cyclist(L: float, W: float, H: float) -> list[Mesh]:
    """Bicycle (semantic 0) with its rider (RIDER), pedals at 3 and 9 o'clock."""
    r = float(np.clip(0.19 * L, 0.28, 0.36))
    xr, xf = -L / 2 + r, L / 2 - r
    wb = xf - xr
    P, M = mat.PAINT, mat.METAL
    tube = 0.018
    bb = np.array([xr + 0.41 * wb, 0.0, r - 0.07])
    st = bb + 0.5 * np.array([-math.sin(math.radians(17)), 0, math.cos(math.radians(17))])
    saddle = st + 0.17 * np.array([-math.sin(math.radians(17)), 0, math.cos(math.radians(17))])
    hb = np.array([xf - 0.16, 0.0, r + 0.28])
    ht = np.array([xf - 0.22, 0.0, r + 0.47])
    bar = ht + (-0.06, 0.0, 0.16)
    half_bar = W / 2 - 0.03
    parts: list[Mesh] = []
    for x in (xr, xf):  # wheels: tyre ring, hub, three spokes
        parts.append(_torus((x, 0, r), "y", r - 0.022, 0.022, mat.TYRE))
        parts.append(_cyl((x, -0.05, r), (x, 0.05, r), 0.03, M, n=8))
        for k in range(3):
            a = math.pi * k / 3 + 0.3
            d = (r - 0.04) * np.array([math.cos(a), 0, math.sin(a)])
            parts.append(_cyl(np.array([x, 0, r]) - d, np.array([x, 0, r]) + d, 0.005, M, n=4))
    parts.append(_loft([bb, st + 0.1 * (st - bb)], [tube, tube], P, n=6))  # seat tube
    parts.append(_loft([st, ht], [tube, tube], P, n=6))  # top tube
    parts.append(_loft([bb, hb], [tube * 1.2, tube * 1.2], P, n=6))  # down tube
    parts.append(_loft([hb, ht + 0.02 * (ht - hb)], [tube * 1.3, tube * 1.3], P, n=6))  # head tube
    for s in (1, -1):
        axle_r, axle_f = np.array([xr, s * 0.06, r]), np.array([xf, s * 0.05, r])
        parts.append(_loft([bb + (0, s * 0.03, 0), axle_r], [0.011, 0.011], P, n=6))  # chain stay
        parts.append(_loft([st + (0, s * 0.02, 0), axle_r], [0.011, 0.011], P, n=6))  # seat stay
        parts.append(_loft([hb + (0, s * 0.03, 0), axle_f], [0.013, 0.013], P, n=6))  # fork blade
    parts.append(_loft([ht, bar], [0.014, 0.014], M, n=6))  # stem
    parts.append(_loft([saddle - 0.16 * (saddle - st), saddle], [0.012, 0.012], M, n=6))  # seat post
    parts.append(_loft([bar + (0, -half_bar, 0), bar + (0, half_bar, 0)], [0.012, 0.012], M, n=6))  # handlebar
    for s in (1, -1):
        parts.append(_cyl(bar + (0, s * (half_bar - 0.11), 0), bar + (0, s * (half_bar + 0.03), 0), 0.018,
                          mat.PLASTIC, n=6))  # grips
    parts.append(_box(saddle + (-0.14, -0.075, 0.0), saddle + (0.11, 0.075, 0.05), mat.PLASTIC))
    crank = 0.17
    pedals = [bb + (crank, 0.11, 0.0), bb + (-crank, -0.11, 0.0)]
    for s, pd in zip((1, -1), pedals):
        parts.append(_loft([bb + (0, s * 0.05, 0), pd - (0, s * 0.02, 0)], [0.012, 0.012], M, n=4))
        parts.append(_box(pd + (-0.05, -0.045, -0.012), pd + (0.05, 0.045, 0.012), mat.PLASTIC))
    grips = [bar + (0, half_bar - 0.05, 0), bar + (0, -(half_bar - 0.05), 0)]
    feet = [pd + (0, 0, 0.012) for pd in pedals]
    parts += _rider(saddle + (-0.01, 0, 0.1), grips, feet, H, 22.0, "hair")
    return parts


def _motorcycle(L: float, W: float, H: float) -> list[Mesh]:
    """Standard motorcycle (semantic 0) with a helmeted rider (RIDER)."""
    r = float(np.clip(0.145 * L, 0.28, 0.34))
    xr, xf = -L / 2 + r, L / 2 - r
    wb = xf - xr
    P, M = mat.PAINT, mat.METAL
    parts: list[Mesh] = []
    for x, wdt in ((xr, 0.17), (xf, 0.13)):
        parts.append(_cyl((x, -wdt / 2, r), (x, wdt / 2, r), r, mat.TYRE, n=16))
        parts.append(_cyl((x, -wdt / 2 - 0.005, r), (x, wdt / 2 + 0.005, r), 0.62 * r, M, n=12))
    rake = math.radians(25)
    fork_top = np.array([xf - 0.72 * math.sin(rake), 0, r + 0.72 * math.cos(rake)])
    for s in (1, -1):
        parts.append(_loft([(xf, s * 0.09, r), fork_top + (0, s * 0.09, 0)], [0.025, 0.03], M, n=6))
    bar = fork_top + (-0.08, 0, 0.1)
    half_bar = W / 2 - 0.02
    parts.append(_loft([fork_top, bar], [0.03, 0.02], M, n=6))
    parts.append(_loft([bar + (0, -half_bar + 0.12, 0), bar + (0, half_bar - 0.12, 0)], [0.012, 0.012], M, n=6))
    for s in (1, -1):
        parts.append(_cyl(bar + (0, s * (half_bar - 0.13), 0), bar + (0, s * half_bar, 0), 0.02, mat.PLASTIC, n=6))
    lamp = fork_top + (0.11, 0, -0.12)
    parts.append(_cyl(lamp - (0.1, 0, 0), lamp, 0.09, (P, P, mat.HEADLIGHT), n=10))  # headlight, lens facing +x
    head = fork_top + (-0.02, 0, -0.05)
    pivot = np.array([xr + 0.42 * wb, 0, 0.42])
    parts.append(_loft([head, (xr + 0.45 * wb, 0, 0.72), pivot], [0.035, 0.035, 0.035], M, n=6))  # frame spine
    parts.append(_ellipsoid((xr + 0.64 * wb, 0, 0.84), (0.19 * wb, 0.16, 0.12), P, n_lon=12, n_lat=6))  # tank
    parts.append(_box((xr + 0.2 * wb, -0.15, 0.7), (xr + 0.5 * wb, 0.15, 0.8), mat.PLASTIC))  # seat
    tail_x = np.array([xr - 0.08, xr + 0.22 * wb])
    parts.append(_profile(tail_x, [0.64, 0.64], [0.78, 0.82], 0.11, 0.09, side=P, top=P, bottom=P, rear=P,
                          front=P))  # tail cowl
    parts.append(_box((xr - 0.085, -0.06, 0.69), (xr - 0.07, 0.06, 0.75), mat.TAILLIGHT))
    parts.append(_box((xr + 0.38 * wb, -0.17, 0.22), (xr + 0.74 * wb, 0.17, 0.6), M))  # engine
    parts.append(_loft([(xr + 0.5 * wb, -0.1, 0.25), (xr + 0.25 * wb, -0.19, 0.3), (xr - 0.02, -0.19, 0.45)],
                       [0.04, 0.045, 0.05], M, n=8))  # exhaust
    for s in (1, -1):
        parts.append(_loft([pivot + (0, s * 0.11, 0), (xr, s * 0.11, r)], [0.025, 0.02], M, n=6))  # swing arm
        parts.append(_loft([(xr + 0.42 * wb, s * 0.12, 0.34), (xr + 0.42 * wb, s * 0.24, 0.34)], [0.015, 0.015],
                           M, n=6))  # foot pegs
    parts.append(_profile(np.array([xf - 0.45 * r, xf + 0.5 * r]), [1.12 * r + 0.7 * r, 2.05 * r],
                          [1.12 * r + 0.7 * r + 0.04, 2.12 * r], 0.08, 0.08, side=P, top=P, bottom=P, rear=P,
                          front=P))  # front mudguard (a sloped plate over the wheel)
    grips = [bar + (0, half_bar - 0.06, 0), bar + (0, -(half_bar - 0.06), 0)]
    feet = [np.array([xr + 0.42 * wb, 0.24, 0.35]), np.array([xr + 0.42 * wb, -0.24, 0.35])]
    parts += _rider((xr + 0.33 * wb, 0, 0.86), grips, feet, H, 25.0, "helmet")
    return parts


# ---------------------------------------------------------------------------------------------------------------
# Small things
# ---------------------------------------------------------------------------------------------------------------


def _ball(L: float, W: float, H: float) -> list[Mesh]:
    return [_ellipsoid((0, 0, H / 2), (L / 2, W / 2, H / 2), mat.RUBBER_BALL, n_lon=20, n_lat=12)]


def _debris(L: float, W: float, H: float) -> list[Mesh]:
    """A plank, a metal wedge, a plastic crate and a leaning board lying together."""
    parts = [
        _obox((-0.05 * L, 0.18 * W, 0.14 * H), (0.8 * L, 0.28 * W, 0.28 * H), mat.WOOD, R=_rot("z", 0.2)),
        _profile(np.array([0.05 * L, 0.48 * L]), [0.0, 0.0], [0.6 * H, 0.08 * H], 0.2 * W, 0.2 * W,
                 side=mat.METAL, top=mat.METAL, bottom=mat.METAL, rear=mat.METAL, front=mat.METAL),
        _box((-0.48 * L, -0.48 * W, 0.0), (-0.12 * L, -0.05 * W, H), mat.PLASTIC),
        _obox((-0.05 * L, 0.36 * W, 0.45 * H), (0.6 * L, 0.12 * W, 0.1 * H), mat.WOOD, R=_rot("y", -0.6)),
    ]
    parts[1] = _placed(parts[1], None, (0, -0.25 * W, 0))
    return parts


def _quadruped(L: float, W: float, H: float, *, deer: bool) -> list[Mesh]:
    """A low-poly four-legged animal facing +x: ellipsoid body, four leg tubes, neck, head (and short antler
    tines for a deer).  Proportions: a deer stands tall on thin legs with a raised neck; a dog is long-bodied,
    low, with the head carried forward.  Fur uses the HAIR material; the caller's box fits it exactly."""
    F = mat.HAIR
    leg_h = (0.52 if deer else 0.42) * H
    body_r = ((0.30 if deer else 0.32) * L, 0.46 * W, (0.15 if deer else 0.20) * H)
    body_c = (-0.06 * L, 0.0, leg_h + body_r[2] * 0.8)
    leg_r = (0.07 if deer else 0.10) * W
    parts = [_ellipsoid(body_c, body_r, F, n_lon=10, n_lat=6)]
    for dx in (0.6 * body_r[0], -0.6 * body_r[0]):
        for dy in (0.5 * body_r[1], -0.5 * body_r[1]):
            top = (body_c[0] + dx, dy, body_c[2])
            parts.append(_cyl((top[0], dy, 0.0), top, leg_r, F, n=6))
    neck_base = (body_c[0] + 0.8 * body_r[0], 0.0, body_c[2] + 0.3 * body_r[2])
    head_c = ((0.34 if deer else 0.38) * L, 0.0, (0.80 if deer else 0.78) * H)
    parts.append(_cyl(neck_base, head_c, (0.13 if deer else 0.18) * W, F, n=6))
    head_r = ((0.10 if deer else 0.11) * L, 0.22 * W, (0.06 if deer else 0.09) * H)
    parts.append(_ellipsoid((head_c[0] + 0.4 * head_r[0], 0.0, head_c[2]), head_r, F, n_lon=8, n_lat=5))
    if deer:  # two short tines reaching the top of the box
        for dy in (0.12 * W, -0.12 * W):
            parts.append(_cyl((head_c[0], dy, head_c[2] + 0.5 * head_r[2]), (head_c[0] - 0.03 * L, 1.6 * dy, H), 0.03 * W,
                              mat.WOOD, n=5))
    else:  # a tail
        parts.append(_cyl((body_c[0] - 0.95 * body_r[0], 0.0, body_c[2] + 0.2 * body_r[2]),
                          (-0.5 * L, 0.0, body_c[2] + 0.9 * body_r[2]), 0.08 * W, F, n=5))
    return parts


_BUILDERS = {
    "car": _car,
    "van": _van,
    "truck": _truck,
    "bus": _bus,
    "motorcycle": _motorcycle,
    "cyclist": _cyclist,
    "pedestrian": lambda L, W, H: _pedestrian(L, W, H, child=False),
    "child": lambda L, W, H: _pedestrian(L, W, H, child=True),
    "ball": _ball,
    "debris": _debris,
    "deer": lambda L, W, H: _quadruped(L, W, H, deer=True),
    "dog": lambda L, W, H: _quadruped(L, W, H, deer=False),
    "animal": lambda L, W, H: _quadruped(L, W, H, deer=H > 1.0),
}


def actor_mesh(kind: str, length_m: float, width_m: float, height_m: float) -> Mesh:
    """Mesh of an actor of ``kind`` (a key of :data:`simgen.classes.ACTOR_KINDS`) with label box l x w x h (m).

    Object frame: x forward, y left, z up, origin at the centre of the box's bottom face.  The vertex bounding box
    is exactly [-l/2, l/2] x [-w/2, w/2] x [0, h].  Semantic ids are 0 (the owner's class) except a rider
    (motorcycle, cyclist), which is :data:`simgen.classes.RIDER`.  Deterministic: same arguments, same mesh.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown actor kind {kind!r}; expected one of {sorted(_BUILDERS)}")
    L, W, H = float(length_m), float(width_m), float(height_m)
    if not (L > 0 and W > 0 and H > 0):
        raise ValueError(f"actor dimensions must be positive, got {(L, W, H)}")
    m = merge(_BUILDERS[kind](L, W, H))
    return _fit(m, (-L / 2, -W / 2, 0.0), (L / 2, W / 2, H))


# ---------------------------------------------------------------------------------------------------------------
# Scenery
# ---------------------------------------------------------------------------------------------------------------

_WINDOW_DEPTH = 0.02  # window panes stand this far (m) proud of the facade


def building_mesh(length_m: float, width_m: float, height_m: float, *, floors: int | None = None) -> Mesh:
    """A flat-roofed block: FACADE walls, ROOF on top, a grid of WINDOW panes on all four sides (one row per
    floor, the ground floor's taller), 2 cm proud of the facade.  Semantic BUILDING everywhere.

    Frame: origin at the centre of the footprint on the ground, x along ``length_m``, z up.  The vertex bounding box
    is exactly [-l/2, l/2] x [-w/2, w/2] x [0, h] (the walls stand 2 cm inside it, the window panes reach it).
    ``floors`` defaults to about one per 3.2 m of height.
    """
    L, W, H = float(length_m), float(width_m), float(height_m)
    if not (L > 0.5 and W > 0.5 and H > 0.5):
        raise ValueError(f"building dimensions too small: {(L, W, H)}")
    n_fl = max(1, int(round(H / 3.2))) if floors is None else max(1, int(floors))
    fh = H / n_fl
    d = _WINDOW_DEPTH
    B = classes.BUILDING
    F = mat.FACADE
    parts = [_box((-L / 2 + d, -W / 2 + d, 0.0), (L / 2 - d, W / 2 - d, H), (F, F, F, F, F, mat.ROOF), B)]
    perim = 2 * (L + W)
    spacing = max(3.0, n_fl * perim / 1500.0)  # at most ~1500 panes (18k triangles)
    pane_lo, pane_hi = [], []
    # each side: (axis along the wall, fixed axis, sign of the outward normal, wall length)
    for along, fixed, sgn, length, half_other in [(0, 1, 1, L, W / 2), (0, 1, -1, L, W / 2),
                                                  (1, 0, 1, W, L / 2), (1, 0, -1, W, L / 2)]:
        if length < 1.6:
            continue
        ncol = max(1, int((length - 1.0) // spacing))
        pitch = (length - 1.0) / ncol
        centres = -length / 2 + 0.5 + pitch * (np.arange(ncol) + 0.5)
        for f in range(n_fl):
            if f == 0:
                z0, z1, pw = 0.12 * fh, min(0.8 * fh, 0.12 * fh + 2.6), min(0.7 * pitch, 2.2)
            else:
                z0 = f * fh + 0.3 * fh
                z1, pw = z0 + min(0.45 * fh, 1.6), min(0.5 * pitch, 1.3)
            if z1 <= z0 + 0.05 or z1 > H - 0.05:
                continue
            lo, hi = np.zeros((ncol, 3)), np.zeros((ncol, 3))
            lo[:, along], hi[:, along] = centres - pw / 2, centres + pw / 2
            a, b = sgn * (half_other - 0.05), sgn * half_other
            lo[:, fixed], hi[:, fixed] = min(a, b), max(a, b)
            lo[:, 2], hi[:, 2] = z0, z1
            pane_lo.append(lo)
            pane_hi.append(hi)
    if pane_lo:  # every pane in one call, in the order the sides, floors and columns come
        parts.append(_boxes(np.concatenate(pane_lo), np.concatenate(pane_hi), mat.WINDOW, B))
    return _fit(merge(parts), (-L / 2, -W / 2, 0.0), (L / 2, W / 2, H))


def tree_mesh(height_m: float, crown_radius_m: float) -> Mesh:
    """A tree: BARK trunk plus a crown of one (small trees) or three lumpy FOLIAGE blobs; semantic VEGETATION.

    Origin at the foot of the trunk; the top of the crown is at z = ``height_m`` and the crown reaches about
    ``crown_radius_m`` from the trunk axis horizontally.
    """
    h, R = float(height_m), float(crown_radius_m)
    if not (h > 0.5 and R > 0.1):
        raise ValueError(f"tree too small: height {h}, crown radius {R}")
    V = classes.VEGETATION
    rv = min(0.8 * R, 0.4 * h)  # vertical semi-axis of the main blob
    zc = h - rv
    rt = float(np.clip(0.012 * h + 0.04 * R, 0.05, 0.5))
    parts = [_loft([(0, 0, 0), (0, 0, zc)], [rt, 0.7 * rt], mat.BARK, V, n=8)]
    if R < 1.0:
        parts.append(_ellipsoid((0, 0, zc), (R, R, rv), mat.FOLIAGE, V, n_lon=10, n_lat=7, jitter=0.08))
    else:
        parts.append(_ellipsoid((0.1 * R, 0, zc), (0.75 * R, 0.75 * R, rv), mat.FOLIAGE, V, n_lon=10, n_lat=7,
                                jitter=0.08))
        for ang in (2.2, 4.2):
            c = (0.42 * R * math.cos(ang), 0.42 * R * math.sin(ang), zc - 0.3 * rv)
            parts.append(_ellipsoid(c, (0.55 * R, 0.55 * R, 0.6 * rv), mat.FOLIAGE, V, n_lon=9, n_lat=6,
                                    jitter=0.08))
    m = merge(parts)
    v = m.vertices.astype(np.float64)
    z = v[:, 2]
    v[:, 2] = np.where(z > zc, zc + (z - zc) * (h - zc) / (z.max() - zc), z)  # crown top exactly at height_m
    return Mesh(v.astype(np.float32), m.triangles, m.material, m.semantic)


def pole_mesh(height_m: float) -> Mesh:
    """Street light: tapered POLE_METAL pole to z = ``height_m``, an arm reaching along +y and a lamp head at its
    end (housing POLE_METAL, lens HEADLIGHT facing down).  Semantic POLE everywhere.  Origin at the pole's foot;
    the lamp head's centre is at (0, arm + 0.3, height_m - 0.13) with arm = clip(0.2 * height_m, 1, 2.5) m."""
    h = float(height_m)
    if h <= 1.0:
        raise ValueError(f"pole too short: {h}")
    Pm, Pc = mat.POLE_METAL, classes.POLE
    arm = float(np.clip(0.2 * h, 1.0, 2.5))
    parts = [
        _loft([(0, 0, 0), (0, 0, h)], [0.09, 0.06], Pm, Pc, n=8),
        _loft([(0, 0, h - 0.45), (0, 0.35, h - 0.12), (0, arm, h - 0.1)], [0.04, 0.04, 0.035], Pm, Pc, n=6),
        _box((-0.16, arm - 0.05, h - 0.2), (0.16, arm + 0.65, h - 0.06), Pm, Pc),
        _box((-0.12, arm + 0.02, h - 0.22), (0.12, arm + 0.58, h - 0.2), mat.HEADLIGHT, Pc),
    ]
    return merge(parts)


SIGN_KINDS = ("speed", "stop", "yield")


def sign_mesh(kind: str = "speed") -> Mesh:
    """Traffic sign: a POLE_METAL post (semantic POLE) and a 2 cm plate (SIGN_FACE, semantic TRAFFIC_SIGN)
    facing +x.  ``kind``: "speed" (round, 0.6 m), "stop" (octagon, 0.65 m across flats) or "yield" (triangle,
    point down, 0.9 m sides).  Origin at the post's foot; plate centre at (0.05, 0, 2.3); top of the post 2.25 m.
    """
    if kind not in SIGN_KINDS:
        raise ValueError(f"unknown sign kind {kind!r}; expected one of {SIGN_KINDS}")
    zc = 2.3
    parts = [_loft([(0, 0, 0), (0, 0, zc - 0.05)], [0.035, 0.035], mat.POLE_METAL, classes.POLE, n=8)]
    if kind == "speed":
        poly = _regular_polygon(16, 0.3)
    elif kind == "stop":
        poly = _regular_polygon(8, 0.325 / math.cos(math.pi / 8), math.pi / 8)
    else:
        poly = _regular_polygon(3, 0.9 / math.sqrt(3), -math.pi / 2)
    # polygon (u, v) in the plane (y, z) at x = 0.04, extruded along y x z = +x
    parts.append(_prism(poly, (0.04, 0, zc), (0, 1, 0), (0, 0, 1), 0.02, mat.SIGN_FACE, classes.TRAFFIC_SIGN))
    return merge(parts)


TRAFFIC_LIGHT_HEAD = (0.0, 3.3, 4.75)
"""Centre (m) of the traffic-light housing in :func:`traffic_light_mesh`'s frame (also the yellow lamp's centre
in y, z); the housing is 1.0 m tall, 0.34 m wide, its lamp face at x = 0.12 facing +x."""
TRAFFIC_LIGHT_LAMPS = {"red": (0.14, 3.3, 5.05), "yellow": (0.14, 3.3, 4.75), "green": (0.14, 3.3, 4.45)}
"""Centre (m) of the front face of each lamp disc (radius 0.1 m) in :func:`traffic_light_mesh`'s frame."""


def traffic_light_mesh() -> tuple[Mesh, dict[str, np.ndarray]]:
    """Traffic light on a mast arm: pole (POLE_METAL, semantic POLE) at the origin, 5.6 m tall, an arm along +y
    at z = 5.4 m, and a housing (LIGHT_HOUSING, semantic TRAFFIC_LIGHT) hanging under the arm at
    :data:`TRAFFIC_LIGHT_HEAD`, its lamps facing +x (front-face normals +x): red on top, yellow, green at the
    bottom (LAMP_RED/LAMP_YELLOW/LAMP_GREEN, semantic TRAFFIC_LIGHT), each with a visor.

    Returns (mesh, lamps) where ``lamps`` maps "red"/"yellow"/"green" to the int64 indices of that lamp's
    triangles in the mesh (the renderer switches a lamp on or off by its material).
    """
    Pm, Pc, Tl = mat.POLE_METAL, classes.POLE, classes.TRAFFIC_LIGHT
    hx, hy, hz = TRAFFIC_LIGHT_HEAD
    parts = [
        _loft([(0, 0, 0), (0, 0, 5.6)], [0.1, 0.08], Pm, Pc, n=10),
        _loft([(0, 0, 5.4), (0, hy + 0.3, 5.4)], [0.065, 0.05], Pm, Pc, n=8),
        _box((hx - 0.04, hy - 0.04, hz + 0.5), (hx + 0.04, hy + 0.04, 5.38), Pm, Pc),  # hanger
        _box((hx - 0.12, hy - 0.17, hz - 0.5), (hx + 0.12, hy + 0.17, hz + 0.5), mat.LIGHT_HOUSING, Tl),
    ]
    lamps: dict[str, np.ndarray] = {}
    for name, lamp_mat in (("red", mat.LAMP_RED), ("yellow", mat.LAMP_YELLOW), ("green", mat.LAMP_GREEN)):
        _, ly, lz = TRAFFIC_LIGHT_LAMPS[name]
        start = sum(p.n_triangles for p in parts)
        parts.append(_prism(_regular_polygon(12, 0.1), (hx + 0.12, ly, lz), (0, 1, 0), (0, 0, 1), 0.02, lamp_mat, Tl))
        lamps[name] = np.arange(start, start + parts[-1].n_triangles, dtype=np.int64)
        parts.append(_box((hx + 0.12, ly - 0.13, lz + 0.11), (hx + 0.3, ly + 0.13, lz + 0.125), mat.LIGHT_HOUSING, Tl))
    return merge(parts), lamps
