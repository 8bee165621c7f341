"""Compiled (numba) loops of the builtin simulator's per-tick work (issue 13: sensor-free simulation, fast).

Each is the same arithmetic as the numpy expression it replaces in :mod:`simgen.sim.world`, written as one loop
over the actors so that a tick does not pay numpy's per-call overhead dozens of times per actor.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def idm_leader(i, s_all, d_all, tan, vel, half_w, lengths, vehicle, a_s, a_lat, a_len, a_half_w, v, aeb,
               aeb_latched, obstacles):  # pragma: no cover
    """The leader search of ``World._idm_accel`` for actor ``i`` over all actors projected on its path.

    ``obstacles``: 0 none, 1 vehicles, 2 all.  Returns (gap, dv, aeb_ttc): gap inf and dv 0 without a leader
    that the driver heeds; aeb_ttc inf unless AEB is on and something is ahead (0 while latched and within 10 m).
    """
    gap, dv = np.inf, 0.0
    aeb_ttc = np.inf
    any_ahead = False
    min_gap_ahead = np.inf
    for k in range(len(s_all)):
        if k == i:
            continue
        ds = s_all[k] - a_s
        if not (ds > 0 and ds < 120 and abs(d_all[k] - a_lat) < half_w[k] + a_half_w + 0.2):
            continue
        g = ds - (lengths[k] + a_len) / 2
        v_lead = vel[k, 0] * math.cos(tan[k]) + vel[k, 1] * math.sin(tan[k])
        any_ahead = True
        if g < min_gap_ahead:
            min_gap_ahead = g
        closing = v - v_lead
        if aeb and closing > 0:
            t = max(g, 0.0) / closing
            if t < aeb_ttc:
                aeb_ttc = t
        if obstacles == 2 or (obstacles == 1 and vehicle[k]):
            if g < gap:
                gap, dv = g, v - v_lead
    if aeb and any_ahead and aeb_latched and min_gap_ahead < 10.0:
        aeb_ttc = 0.0
    if not aeb:
        aeb_ttc = np.inf
    return gap, dv, aeb_ttc


# ---------------------------------------------------------------------------------------------------------------
# The whole per-tick update of the lane-following vehicles, over arrays (issue 13, second round).
#
# Paths are concatenated: path p's vertices are rows voff[p]:voff[p+1] of the vertex arrays (points, nv, yv, cum)
# and its segments rows voff[p]-p:voff[p+1]-p-1 of the segment arrays (seg, d, u, n, dnu, nu0).  Slices of those
# are handed to the one-point Polyline kernels, so a projection here is the very arithmetic of Polyline.project.
# ---------------------------------------------------------------------------------------------------------------
from simgen.world.polyline_kernels import pose_at_one as _pose_at_one, project_one as _project_one  # noqa: E402

# the same one-point Polyline kernels, inlined into the loops below (numba IR inlining: no call, and no reference
# counting of a dozen array arguments per call; about 30 % faster per projection)
pose_at_one = njit(inline="always", error_model="numpy")(_pose_at_one.py_func)
project_one = njit(inline="always", error_model="numpy")(_project_one.py_func)

IDM_A_MAX = 1.5
IDM_B = 2.0
IDM_T = 1.4
IDM_S0 = 2.0
MAX_STEER = 0.6


@njit(cache=True, error_model="numpy")
def _wrap1(a):  # pragma: no cover - simgen.sim.world._wrap1 (Python's floor modulo)
    return (a + math.pi) % (2 * math.pi) - math.pi


@njit(cache=True, error_model="numpy")
def leaders(sel, st, half_w, length, vehicle, aeb, latched, obst, pidx,
            pts, nrm, uu, seg, cum, dd, dnu, nu0, nv, yv, voff, t0, t1, plen, pmit, gdt):  # pragma: no cover
    """:func:`idm_leader` for every actor in ``sel`` (indices), the others projected on its path only when they
    can pass its test.  A point that projects to (s, d) lies within |d| * mitre of the path's point at s (``pmit``:
    the path's largest mitred-normal length; the Euclidean fallback and the end extensions keep that bound), so a
    point farther than (|lateral| + half widths + 0.2) * mitre from the bounding box of the path between s and
    s + 120 cannot be a leader, and skipping it changes nothing.

    ``st``: (N, 6) x, y, yaw, speed, s, lateral at the tick's start; ``gdt``: (3, N) out, gap, dv, AEB
    time-to-collision (inf, 0, inf for actors not in ``sel``)."""
    N = st.shape[0]
    x, y, yaw, speed, s_a, lat_a = st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4], st[:, 5]
    gap_out, dv_out, ttc_out = gdt[0], gdt[1], gdt[2]
    vx, vy = np.empty(N), np.empty(N)
    for k in range(N):
        vx[k], vy[k] = speed[k] * math.cos(yaw[k]), speed[k] * math.sin(yaw[k])
        gap_out[k], dv_out[k], ttc_out[k] = np.inf, 0.0, np.inf
    for m in range(len(sel)):
        i = sel[m]
        p = pidx[i]
        v0, v1 = voff[p], voff[p + 1]
        g0, g1 = v0 - p, v1 - p - 1
        P, NV, YV, CUM = pts[v0:v1], nv[v0:v1], yv[v0:v1], cum[v0:v1]
        SG, D, U, NR, DNU, NU0 = seg[g0:g1], dd[g0:g1], uu[g0:g1], nrm[g0:g1], dnu[g0:g1], nu0[g0:g1]
        T0, T1, LEN = t0[p], t1[p], plen[p]
        a_s, a_lat, a_hw, a_len, v = s_a[i], lat_a[i], half_w[i], length[i], speed[i]
        # bounding box of the path between a_s and a_s + 120 (its ends and the vertices in between)
        bx0, by0, _ = pose_at_one(CUM, SG, P, D, NV, YV, T0, T1, LEN, a_s, 0.0)
        bx1, by1 = bx0, by0
        ex_, ey_, _ = pose_at_one(CUM, SG, P, D, NV, YV, T0, T1, LEN, a_s + 120.0, 0.0)
        bx0, bx1, by0, by1 = min(bx0, ex_), max(bx1, ex_), min(by0, ey_), max(by1, ey_)
        for q in range(np.searchsorted(CUM, a_s, side="left"), len(CUM)):
            if CUM[q] >= a_s + 120.0:
                break
            bx0, bx1 = min(bx0, P[q, 0]), max(bx1, P[q, 0])
            by0, by1 = min(by0, P[q, 1]), max(by1, P[q, 1])
        gap, dv = np.inf, 0.0
        aeb_ttc = np.inf
        any_ahead = False
        min_gap_ahead = np.inf
        for k in range(N):
            if k == i:
                continue
            wsum = half_w[k] + a_hw + 0.2
            reach = (abs(a_lat) + wsum) * pmit[p] + 1e-3
            if x[k] < bx0 - reach or x[k] > bx1 + reach or y[k] < by0 - reach or y[k] > by1 + reach:
                continue
            sk, dk = project_one(P, NR, U, SG, CUM, D, DNU, NU0, T0, T1, NV, LEN, x[k], y[k])
            ds = sk - a_s
            if not (ds > 0 and ds < 120 and abs(dk - a_lat) < wsum):
                continue
            tan = pose_at_one(CUM, SG, P, D, NV, YV, T0, T1, LEN, sk, 0.0)[2]
            g = ds - (length[k] + a_len) / 2
            v_lead = vx[k] * math.cos(tan) + vy[k] * math.sin(tan)
            any_ahead = True
            if g < min_gap_ahead:
                min_gap_ahead = g
            closing = v - v_lead
            if aeb[i] and closing > 0:
                t = max(g, 0.0) / closing
                if t < aeb_ttc:
                    aeb_ttc = t
            if obst[i] == 2 or (obst[i] == 1 and vehicle[k]):
                if g < gap:
                    gap, dv = g, v - v_lead
        if aeb[i] and any_ahead and latched[i] and min_gap_ahead < 10.0:
            aeb_ttc = 0.0
        if not aeb[i]:
            aeb_ttc = np.inf
        gap_out[i], dv_out[i], ttc_out[i] = gap, dv, aeb_ttc


@njit(cache=True, error_model="numpy")
def drive(sel, mode, st, acc_in, gdt, spd, aeb, ttc_s, aeb_dec, stop_red, sp_off, sp_s, sp_light, light_code,
          length, pidx, pts, nrm, uu, seg, cum, dd, dnu, nu0, nv, yv, voff, t0, t1, plen, dt, out):  # pragma: no cover
    """IDM (mode 1: gap/dv from :func:`leaders`, red/yellow stop lines, latched AEB) or a given acceleration
    (mode 2), then ``World._bicycle``: pure pursuit, kinematic bicycle, s re-projected.  In place on x, y, yaw,
    speed, s for the actors in ``sel``.  ``stop_red``: 0 ignore stop lines, 1 obey the lights, 2 every stop line
    is red (stop_at_line).

    ``st``: (N, 6) x, y, yaw, speed, s, lateral (advanced in place); ``gdt``: gap, dv, AEB time-to-collision from
    :func:`leaders` (junction waits added); ``spd``: the behaviours' speeds (NaN: keep the actor's own, as
    ``World._target_speed``); AEB engages below ``ttc_s``.  ``out`` (len(sel), 7): x, y, yaw, speed, s, accel,
    steer of each actor of ``sel``."""
    sq = math.sqrt(IDM_A_MAX * IDM_B)
    x, y, yaw, speed, s, lat = st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4], st[:, 5]
    gap, dv, ttc = gdt[0], gdt[1], gdt[2]
    for m in range(len(sel)):
        i = sel[m]
        v = speed[i]
        if mode[i] == 1:
            if aeb[i] and ttc[i] < ttc_s[i]:  # AEB engages (or holds)
                acc = -aeb_dec[i]
            else:
                g, dvi = gap[i], dv[i]
                if stop_red[i] > 0:
                    half = length[i] / 2
                    for q in range(sp_off[i], sp_off[i + 1]):
                        st = 2 if stop_red[i] == 2 else light_code[sp_light[q]]
                        dq = sp_s[q] - s[i] - half
                        if st > 0 and dq > -0.5:
                            if st == 1 and dq < v * v / (2 * IDM_B * 1.5):
                                continue
                            if dq < g:
                                g, dvi = dq, v
                v0 = spd[i]
                if np.isnan(v0):
                    v0 = max(v, 0.1) if v > 0 else 10.0
                v0 = max(v0, 0.1)
                r = v / v0
                acc_free = IDM_A_MAX * (1 - r * r * r * r)
                if not np.isfinite(g):
                    acc = acc_free
                else:
                    s_star = IDM_S0 + max(0.0, v * IDM_T + v * dvi / (2 * sq))
                    q2 = s_star / max(g, 0.1)
                    acc = max(IDM_A_MAX * (1 - r * r * r * r - q2 * q2), -9.0)
        else:
            acc = acc_in[i]
        p = pidx[i]
        v0_, v1_ = voff[p], voff[p + 1]
        g0, g1 = v0_ - p, v1_ - p - 1
        P, NV, YV, CUM = pts[v0_:v1_], nv[v0_:v1_], yv[v0_:v1_], cum[v0_:v1_]
        SG, D, U, NR, DNU, NU0 = seg[g0:g1], dd[g0:g1], uu[g0:g1], nrm[g0:g1], dnu[g0:g1], nu0[g0:g1]
        look = max(4.0, 0.9 * v)
        tx, ty, _ = pose_at_one(CUM, SG, P, D, NV, YV, t0[p], t1[p], plen[p], s[i] + look, lat[i])
        alpha = _wrap1(math.atan2(ty - y[i], tx - x[i]) - yaw[i])
        L = max(0.8, 0.6 * length[i])
        steer = min(max(math.atan2(2 * L * math.sin(alpha), look), -MAX_STEER), MAX_STEER)
        v_new = max(0.0, v + acc * dt)
        v_mid = 0.5 * (v + v_new)
        beta = math.atan(0.5 * math.tan(steer))
        x[i] += v_mid * math.cos(yaw[i] + beta) * dt
        y[i] += v_mid * math.sin(yaw[i] + beta) * dt
        yaw[i] = _wrap1(yaw[i] + v_mid * math.cos(beta) * math.tan(steer) / L * dt)
        speed[i] = v_new
        s[i] = project_one(P, NR, U, SG, CUM, D, DNU, NU0, t0[p], t1[p], NV, plen[p], x[i], y[i])[0]
        out[m, 0], out[m, 1], out[m, 2], out[m, 3], out[m, 4] = x[i], y[i], yaw[i], v_new, s[i]
        out[m, 5], out[m, 6] = (v_new - v) / dt, steer


# ---------------------------------------------------------------------------------------------- footprints, SAT
@njit(cache=True, error_model="numpy")
def _corners(x, y, yaw, l, w, out):  # pragma: no cover - simgen.sim.world._rects for one box
    c, s = math.cos(yaw), math.sin(yaw)
    l2, w2 = l / 2, w / 2
    lx = (l2, l2, -l2, -l2)
    ly = (w2, -w2, -w2, w2)
    for k in range(4):
        out[k, 0] = lx[k] * c - ly[k] * s + x
        out[k, 1] = lx[k] * s + ly[k] * c + y


@njit(cache=True, error_model="numpy")
def _sat(A, B, margin):  # pragma: no cover - simgen.sim.world.sat_overlap / overlapping_pairs for one pair
    for q in range(4):
        if q < 2:
            ex, ey = A[q + 1, 0] - A[q, 0], A[q + 1, 1] - A[q, 1]
        else:
            ex, ey = B[q - 1, 0] - B[q - 2, 0], B[q - 1, 1] - B[q - 2, 1]
        nrm = max(math.sqrt(ex * ex + ey * ey), 1e-12)
        ex, ey = ex / nrm, ey / nrm
        amin, amax, bmin, bmax = np.inf, -np.inf, np.inf, -np.inf
        for c in range(4):
            pa = ex * A[c, 0] + ey * A[c, 1]
            pb = ex * B[c, 0] + ey * B[c, 1]
            amin, amax = min(amin, pa), max(amax, pa)
            bmin, bmax = min(bmin, pb), max(bmax, pb)
        if amax + margin < bmin or bmax + margin < amin:
            return False
    return True


@njit(cache=True, error_model="numpy")
def overlap_pairs(fp, margin):  # pragma: no cover
    """simgen.sim.world.overlapping_pairs: bounding circles, then the separating axis test; (P,2) pairs i < j."""
    n = len(fp)
    cx, cy, r = np.empty(n), np.empty(n), np.empty(n)
    for k in range(n):
        mx = (fp[k, 0, 0] + fp[k, 1, 0] + fp[k, 2, 0] + fp[k, 3, 0]) / 4
        my = (fp[k, 0, 1] + fp[k, 1, 1] + fp[k, 2, 1] + fp[k, 3, 1]) / 4
        rr = 0.0
        for c in range(4):
            rr = max(rr, math.sqrt((fp[k, c, 0] - mx) ** 2 + (fp[k, c, 1] - my) ** 2))
        cx[k], cy[k], r[k] = mx, my, rr
    out = np.empty((max(n * (n - 1) // 2, 1), 2), np.int64)
    m = 0
    for i in range(n):
        for j in range(i + 1, n):
            if math.sqrt((cx[i] - cx[j]) ** 2 + (cy[i] - cy[j]) ** 2) > r[i] + r[j] + margin:
                continue
            if _sat(fp[i], fp[j], margin):
                out[m, 0], out[m, 1] = i, j
                m += 1
    return out[:m]


@njit(cache=True, error_model="numpy")
def box_pairs(pose, dims, margin):  # pragma: no cover
    """overlap_pairs on the footprints of boxes: pose rows x, y, yaw (more columns ignored), dims rows length,
    width."""
    n = len(pose)
    fp = np.empty((n, 4, 2))
    for k in range(n):
        _corners(pose[k, 0], pose[k, 1], pose[k, 2], dims[k, 0], dims[k, 1], fp[k])
    return overlap_pairs(fp, margin)


@njit(cache=True, error_model="numpy")
def swept_near(pre, post, r, ped):  # pragma: no cover
    """Pairs (i < j, not two pedestrians) whose bounding circles come within reach during the tick (centres moving
    linearly): the broad phase of ``World._collisions``."""
    n = len(r)
    out = np.empty((max(n * (n - 1) // 2, 1), 2), np.int64)
    m = 0
    for i in range(n):
        for j in range(i + 1, n):
            if ped[i] and ped[j]:
                continue
            d0x, d0y = pre[i, 0] - pre[j, 0], pre[i, 1] - pre[j, 1]
            ddx, ddy = (post[i, 0] - post[j, 0]) - d0x, (post[i, 1] - post[j, 1]) - d0y
            u = -(d0x * ddx + d0y * ddy) / max(ddx * ddx + ddy * ddy, 1e-12)
            u = min(max(u, 0.0), 1.0)
            cx, cy = d0x + u * ddx, d0y + u * ddy
            if math.sqrt(cx * cx + cy * cy) <= r[i] + r[j] + 1e-6:
                out[m, 0], out[m, 1] = i, j
                m += 1
    return out[:m]


@njit(cache=True, error_model="numpy")
def _lerp_hit(a0, a1, da, b0, b1, db, f, A, B):  # pragma: no cover
    ya = a0[2] + f * _wrap_pi(a1[2] - a0[2])
    yb = b0[2] + f * _wrap_pi(b1[2] - b0[2])
    _corners(a0[0] + f * (a1[0] - a0[0]), a0[1] + f * (a1[1] - a0[1]), ya, da[0], da[1], A)
    _corners(b0[0] + f * (b1[0] - b0[0]), b0[1] + f * (b1[1] - b0[1]), yb, db[0], db[1], B)
    return _sat(A, B, 0.0)


@njit(cache=True, error_model="numpy")
def _wrap_pi(a):  # pragma: no cover - simgen.geometry.wrap_angle
    return (a + math.pi) % (2 * math.pi) - math.pi


@njit(cache=True, error_model="numpy")
def _contact_fraction(a0, a1, da, b0, b1, db, samples, iters, A, B):  # pragma: no cover
    """First-contact fraction of one pair (NaN: none): sampled SAT over the tick, then bisection."""
    k = -1
    for q in range(samples + 1):
        if _lerp_hit(a0, a1, da, b0, b1, db, q / samples, A, B):
            k = q
            break
    if k < 0:
        return np.nan
    if k == 0:
        return 0.0
    lo, hi = (k - 1) / samples, k / samples
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if _lerp_hit(a0, a1, da, b0, b1, db, mid, A, B):
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True, error_model="numpy")
def first_contact(a0, a1, da, b0, b1, db, samples, iters, out):  # pragma: no cover
    """simgen.sim.world.first_contact, pair by pair."""
    A, B = np.empty((4, 2)), np.empty((4, 2))
    for p in range(len(a0)):
        out[p] = _contact_fraction(a0[p], a1[p], da[p], b0[p], b1[p], db[p], samples, iters, A, B)


@njit(cache=True, error_model="numpy")
def swept_contacts(pre, post, r, ped, done, dims, samples, iters):  # pragma: no cover
    """The swept test of ``World._collisions`` in one loop: pairs (i < j, not two pedestrians, not ``done``:
    already in contact before) whose bounding circles come within reach during the tick (:func:`swept_near`) are
    tested over the tick (:func:`first_contact`).  Returns rows (i, j, fraction) of the pairs that touch, in pair
    order."""
    near = swept_near(pre, post, r, ped)
    out = np.empty((len(near), 3))
    A, B = np.empty((4, 2)), np.empty((4, 2))
    m = 0
    for q in range(len(near)):
        i, j = near[q, 0], near[q, 1]
        if done[i, j]:
            continue
        f = _contact_fraction(pre[i], post[i], dims[i], pre[j], post[j], dims[j], samples, iters, A, B)
        if not np.isnan(f):
            out[m, 0], out[m, 1], out[m, 2] = i, j, f
            m += 1
    return out[:m]


@njit(cache=True, error_model="numpy")
def in_polygon(P, poly, mask, out):  # pragma: no cover
    """simgen.world.roads._in_polygon (even-odd rule, the same arithmetic) for the points P[k] with mask[k]; out[k]
    True where inside (False where not tested)."""
    K = len(poly)
    for m in range(len(P)):
        out[m] = False
        if not mask[m]:
            continue
        x, y = P[m, 0], P[m, 1]
        c = 0
        for k in range(K):
            x0, y0 = poly[k, 0], poly[k, 1]
            x1, y1 = poly[(k + 1) % K, 0], poly[(k + 1) % K, 1]
            if (y0 > y) != (y1 > y):
                if x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
                    c += 1
        out[m] = c % 2 == 1


@njit(cache=True, error_model="numpy")
def walk_plain(sel, st, dt, out):  # pragma: no cover
    """``World._walk`` for plain walkers (no distance, no pause): a straight step at the actor's speed along its
    heading.  ``out`` (len(sel), 3): x, y, step length."""
    for m in range(len(sel)):
        i = sel[m]
        step = st[i, 3] * dt
        out[m, 0] = st[i, 0] + step * math.cos(st[i, 2])
        out[m, 1] = st[i, 1] + step * math.sin(st[i, 2])
        out[m, 2] = step


@njit(cache=True, error_model="numpy")
def states_out(St, cols, pose, vel, accel, door, pr):  # pragma: no cover
    """``World.states()`` from the state array: ``cols`` are the columns x, y, z, yaw, speed, vz, accel, door, pitch,
    roll; velocity = speed * (cos yaw, sin yaw), vz (the numpy expression's arithmetic)."""
    for m in range(St.shape[0]):
        x, y, z, yaw = St[m, cols[0]], St[m, cols[1]], St[m, cols[2]], St[m, cols[3]]
        v = St[m, cols[4]]
        pose[m, 0], pose[m, 1], pose[m, 2], pose[m, 3] = x, y, z, yaw
        vel[m, 0] = v * math.cos(yaw)
        vel[m, 1] = v * math.sin(yaw)
        vel[m, 2] = St[m, cols[5]]
        accel[m] = St[m, cols[6]]
        door[m] = St[m, cols[7]]
        pr[m, 0] = St[m, cols[8]]
        pr[m, 1] = St[m, cols[9]]


from simgen.world.polyline_kernels import ground_update  # noqa: E402,F401 - the World's ground step (builtin maps)


@njit(cache=True, error_model="numpy")
def lead_drive(lead, st0, half_w, vehicle, latched, obst, pts, nrm, uu, seg, cum, dd, dnu, nu0, nv, yv, voff, t0,
               t1, plen, pmit, gdt, sel, mode, state, acc_in, spd, aeb, ttc_s, aeb_dec, stop_red, sp_off, sp_s,
               sp_light, light_code, length, pidx, dt, out):  # pragma: no cover
    """:func:`leaders` then :func:`drive` in one call, for the ticks that need no Python between the two (no AEB
    latch to update, no junction waits, no lane change): the same two loops, one dispatch."""
    leaders(lead, st0, half_w, length, vehicle, aeb, latched, obst, pidx, pts, nrm, uu, seg, cum, dd, dnu, nu0, nv,
            yv, voff, t0, t1, plen, pmit, gdt)
    drive(sel, mode, state, acc_in, gdt, spd, aeb, ttc_s, aeb_dec, stop_red, sp_off, sp_s, sp_light, light_code,
          length, pidx, pts, nrm, uu, seg, cum, dd, dnu, nu0, nv, yv, voff, t0, t1, plen, dt, out)


@njit(cache=True, error_model="numpy")
def contacts(pre, post, r, ped, done, dims, samples, iters):  # pragma: no cover
    """:func:`swept_contacts` and the overlaps after the tick (:func:`box_pairs` on ``post``, margin 0) in one
    call: ``World._collisions`` uses the second unless a crashed party is put back to its contact state."""
    return swept_contacts(pre, post, r, ped, done, dims, samples, iters), box_pairs(post, dims, 0.0)


@njit(cache=True, error_model="numpy")
def walk_steps(sel, st, left, dt, out):  # pragma: no cover
    """``World._walk`` for walkers without a pause: a straight step at the actor's speed along its heading, at
    most the distance ``left`` (NaN: no distance); none when nothing is left.  ``out`` (len(sel), 3): x, y, step
    length."""
    for m in range(len(sel)):
        i = sel[m]
        L = left[m]
        if L <= 0.0:
            out[m, 0], out[m, 1], out[m, 2] = st[i, 0], st[i, 1], 0.0
            continue
        step = st[i, 3] * dt
        if not math.isnan(L) and L < step:
            step = L
        out[m, 0] = st[i, 0] + step * math.cos(st[i, 2])
        out[m, 1] = st[i, 1] + step * math.sin(st[i, 2])
        out[m, 2] = step
