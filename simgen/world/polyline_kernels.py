"""Compiled (numba) forms of :meth:`Polyline.pose_at` and :meth:`Polyline.project` for a few points at a time.

The simulator asks for one or a handful of points per actor per tick; for such calls numpy's per-call overhead
dominates (tens of small temporary arrays), so :class:`simgen.world.roads.Polyline` hands them to these loops.
They are the same algorithm, step for step, as the vectorised numpy code in ``roads.py`` (mitred-normal frame,
end extensions along the end tangents, Euclidean fallback where the frame is ambiguous); the two agree to
rounding, which ``tests/simgen/test_roads.py`` checks on random points.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def pose_at_one(cum, seg, points, d, nv, yv, t0, t1, length, sm, lm):  # pragma: no cover
    """One point: (x, y, yaw) at arc length ``sm`` and lateral offset ``lm``."""
    K = len(seg)
    i = np.searchsorted(cum, sm, side="right") - 1
    i = min(max(i, 0), K - 1)
    a = min(max((sm - cum[i]) / seg[i], 0.0), 1.0)
    nvx = nv[i, 0] + a * (nv[i + 1, 0] - nv[i, 0])
    nvy = nv[i, 1] + a * (nv[i + 1, 1] - nv[i, 1])
    x = points[i, 0] + a * d[i, 0] + lm * nvx
    y = points[i, 1] + a * d[i, 1] + lm * nvy
    yaw = yv[i] + a * (yv[i + 1] - yv[i])
    if sm < 0.0:
        x = points[0, 0] + sm * t0[0] + lm * nv[0, 0]
        y = points[0, 1] + sm * t0[1] + lm * nv[0, 1]
        yaw = yv[0]
    elif sm > length:
        ds = sm - length
        x = points[-1, 0] + ds * t1[0] + lm * nv[-1, 0]
        y = points[-1, 1] + ds * t1[1] + lm * nv[-1, 1]
        yaw = yv[-1]
    return x, y, math.atan2(math.sin(yaw), math.cos(yaw))


@njit(cache=True, error_model="numpy")
def pose_at_points(cum, seg, points, d, nv, yv, t0, t1, length, s, lat, out_x, out_y, out_yaw):  # pragma: no cover
    for m in range(len(s)):
        out_x[m], out_y[m], out_yaw[m] = pose_at_one(cum, seg, points, d, nv, yv, t0, t1, length, s[m], lat[m])


@njit(cache=True, error_model="numpy")
def project_one(points, n, u, seg, cum, d, dnu, nu0, t0, t1, nv, length, px, py):  # pragma: no cover
    """One point: (s, lateral) of world point (px, py)."""
    K = len(seg)
    best = np.inf
    kbest = -1
    abest = 0.0
    lat0 = 0.0
    latbest = 0.0
    for k in range(K):
        rx, ry = px - points[k, 0], py - points[k, 1]
        lat = rx * n[k, 0] + ry * n[k, 1]
        if k == 0:
            lat0 = lat
        along = rx * u[k, 0] + ry * u[k, 1]
        den = seg[k] + lat * dnu[k]
        if den > 1e-9 * seg[k]:
            a = (along - lat * nu0[k]) / den
            if a >= -1e-9 and a <= 1.0 + 1e-9 and abs(lat) < best:
                best, kbest, abest, latbest = abs(lat), k, a, lat
    if kbest >= 0:
        s_c = cum[kbest] + min(max(abest, 0.0), 1.0) * seg[kbest]
        lat_c = latbest
    else:
        s_c = np.nan
        lat_c = lat0
    for e in range(2):  # beyond the start, then beyond the end, along the end tangents
        if e == 0:
            qx, qy = px - points[0, 0], py - points[0, 1]
            tx, ty, nx, ny, base, sign = t0[0], t0[1], nv[0, 0], nv[0, 1], 0.0, -1.0
        else:
            qx, qy = px - points[-1, 0], py - points[-1, 1]
            tx, ty, nx, ny, base, sign = t1[0], t1[1], nv[-1, 0], nv[-1, 1], length, 1.0
        le = qx * -ty + qy * tx
        se = (qx - le * nx) * tx + (qy - le * ny) * ty
        if sign * se > 0 and abs(le) < best:
            s_c, lat_c, best = base + se, le, abs(le)
    if not np.isfinite(best):  # Euclidean closest point on the segments
        dbest = np.inf
        for k in range(K):
            rx, ry = px - points[k, 0], py - points[k, 1]
            t = min(max((rx * u[k, 0] + ry * u[k, 1]) / seg[k], 0.0), 1.0)
            ox, oy = rx - t * d[k, 0], ry - t * d[k, 1]
            dist = math.sqrt(ox * ox + oy * oy)
            if dist < dbest:
                dbest = dist
                s_c = cum[k] + t * seg[k]
                side = rx * n[k, 0] + ry * n[k, 1]
                lat_c = (1.0 if side >= 0 else -1.0) * dist if side != 0 else dist
    return s_c, lat_c


@njit(cache=True, error_model="numpy")
def project_points(points, n, u, seg, cum, d, dnu, nu0, t0, t1, nv, length, P, out_s, out_lat):  # pragma: no cover
    for m in range(len(P)):
        out_s[m], out_lat[m] = project_one(points, n, u, seg, cum, d, dnu, nu0, t0, t1, nv, length, P[m, 0], P[m, 1])


@njit(cache=True, error_model="numpy")
def project_heading_points(points, n, u, seg, cum, d, dnu, nu0, t0, t1, nv, yv, length, P, out_s, out_lat,
                           out_yaw):  # pragma: no cover
    """project_points, then the path's heading at each projected s (pose_at_points with lateral 0)."""
    for m in range(len(P)):
        s, lat = project_one(points, n, u, seg, cum, d, dnu, nu0, t0, t1, nv, length, P[m, 0], P[m, 1])
        out_s[m], out_lat[m] = s, lat
        out_yaw[m] = pose_at_one(cum, seg, points, d, nv, yv, t0, t1, length, s, 0.0)[2]


# ---- the same kernels on a Polyline's packed arrays (three arguments instead of twelve: a call from Python pays
# numba's per-argument dispatch, about as much as the work itself for a few points).  Packed layout, built by
# Polyline: V (N, 6) vertex rows x, y, nv_x, nv_y, yaw, s; S (N-1, 9) segment rows d_x, d_y, u_x, u_y, n_x, n_y,
# length, dnu, nu0; M (6,) t0_x, t0_y, t1_x, t1_y, length, largest mitred-normal length.
@njit(cache=True, error_model="numpy")
def pose_at_packed(V, S, M, sm, lm):  # pragma: no cover
    return pose_at_one(V[:, 5], S[:, 6], V[:, 0:2], S[:, 0:2], V[:, 2:4], V[:, 4], M[0:2], M[2:4], M[4], sm, lm)


@njit(cache=True, error_model="numpy")
def project_packed(V, S, M, px, py):  # pragma: no cover
    return project_one(V[:, 0:2], S[:, 4:6], S[:, 2:4], S[:, 6], V[:, 5], S[:, 0:2], S[:, 7], S[:, 8], M[0:2],
                       M[2:4], V[:, 2:4], M[4], px, py)


@njit(cache=True, error_model="numpy")
def pose_at_points_packed(V, S, M, s, lat, out_x, out_y, out_yaw):  # pragma: no cover
    for m in range(len(s)):
        out_x[m], out_y[m], out_yaw[m] = pose_at_packed(V, S, M, s[m], lat[m])


@njit(cache=True, error_model="numpy")
def project_points_packed(V, S, M, P, out_s, out_lat):  # pragma: no cover
    for m in range(len(P)):
        out_s[m], out_lat[m] = project_packed(V, S, M, P[m, 0], P[m, 1])


@njit(cache=True, error_model="numpy")
def project_heading_points_packed(V, S, M, P, out_s, out_lat, out_yaw):  # pragma: no cover
    for m in range(len(P)):
        s, lat = project_packed(V, S, M, P[m, 0], P[m, 1])
        out_s[m], out_lat[m] = s, lat
        out_yaw[m] = pose_at_packed(V, S, M, s, 0.0)[2]


@njit(cache=True, error_model="numpy")
def rank_strips_packed(P, box, V, S, M, strips, rank):  # pragma: no cover
    """RoadMap.surface_at for one polyline's strips: points inside ``box`` (lo_x, lo_y, hi_x, hi_y) are projected on
    the polyline and ``rank`` is raised to each strip's rank (strips: rows s0, s1, lat0, lat1, rank, tolerances
    applied)."""
    for m in range(len(P)):
        px, py = P[m, 0], P[m, 1]
        if not (px >= box[0] and py >= box[1] and px <= box[2] and py <= box[3]):
            continue
        s, lat = project_packed(V, S, M, px, py)
        for q in range(len(strips)):
            if s >= strips[q, 0] and s <= strips[q, 1] and lat >= strips[q, 2] and lat <= strips[q, 3]:
                r = int(strips[q, 4])
                if r > rank[m]:
                    rank[m] = r


@njit(cache=True, error_model="numpy")
def rank_point(px, py, r, boxes, voff, V, S, M, toff, strips, aoff, apts, abox, arank):  # pragma: no cover
    """The surface rank of world point (px, py), at least ``r``, over all strip groups and areas (see
    :func:`surface_rank_all` for the packed layout)."""
    G = len(boxes)
    for g in range(G):
        if not (px >= boxes[g, 0] and py >= boxes[g, 1] and px <= boxes[g, 2] and py <= boxes[g, 3]):
            continue
        s, lat = project_packed(V[voff[g]:voff[g + 1]], S[voff[g] - g:voff[g + 1] - g - 1], M[g], px, py)
        for q in range(toff[g], toff[g + 1]):
            if s >= strips[q, 0] and s <= strips[q, 1] and lat >= strips[q, 2] and lat <= strips[q, 3]:
                rq = int(strips[q, 4])
                if rq > r:
                    r = rq
    for q in range(len(abox)):
        if not (px >= abox[q, 0] and py >= abox[q, 1] and px <= abox[q, 2] and py <= abox[q, 3]):
            continue
        if arank[q] <= r:
            continue
        k0, k1 = aoff[q], aoff[q + 1]
        K = k1 - k0
        c = 0
        for k in range(K):
            x0, y0 = apts[k0 + k, 0], apts[k0 + k, 1]
            x1, y1 = apts[k0 + (k + 1) % K, 0], apts[k0 + (k + 1) % K, 1]
            if (y0 > py) != (y1 > py):
                if px < x0 + (py - y0) * (x1 - x0) / (y1 - y0):
                    c += 1
        if c % 2 == 1:
            r = arank[q]
    return r


@njit(cache=True, error_model="numpy")
def surface_rank_all(P, boxes, voff, V, S, M, toff, strips, aoff, apts, abox, arank, rank):  # pragma: no cover
    """RoadMap.surface_at's rank of every point over ALL the map's strip groups and areas in one call (issue 13):
    group g is polyline rows V[voff[g]:voff[g+1]] (segments S[voff[g]-g:voff[g+1]-g-1], M[g]) with box boxes[g] and
    strips rows toff[g]:toff[g+1]; area q is polygon apts[aoff[q]:aoff[q+1]] with box abox[q] and rank arank[q].
    Per group the arithmetic of :func:`rank_strips_packed`; per area that of ``roads._in_polygon`` (even-odd)."""
    for m in range(len(P)):
        rank[m] = rank_point(P[m, 0], P[m, 1], rank[m], boxes, voff, V, S, M, toff, strips, aoff, apts, abox, arank)


@njit(cache=True, error_model="numpy")
def ground_update(St, cols, dt, zlut, boxes, voff, V, S, M, toff, strips, aoff, apts, abox, arank):  # pragma: no cover
    """The simulator's ground step on a builtin map (``World._update_z``) over its state array ``St``: z = the
    ground height (``zlut[rank]``, RoadMap.ground_height) under each actor's centre, vz = (z - old z) / dt (0 when
    dt is NaN), pitch = roll = 0.  ``cols``: the state columns x, y, z, vz, pitch, roll."""
    cx, cy, cz, cvz, cp, cr = cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
    for m in range(St.shape[0]):
        z = zlut[rank_point(St[m, cx], St[m, cy], 0, boxes, voff, V, S, M, toff, strips, aoff, apts, abox, arank)]
        St[m, cvz] = 0.0 if math.isnan(dt) else (z - St[m, cz]) / dt
        St[m, cz] = z
        St[m, cp] = 0.0
        St[m, cr] = 0.0
