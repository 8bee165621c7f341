"""Compiled (numba) loops for the criticality annotator (issue 13: a sensor-free episode in milliseconds).

Same arithmetic as the numpy expressions in :mod:`annotators.criticality`, one loop over frames and actors, so
that an episode's gaps, TTCs and post-encroachment times cost microseconds instead of dozens of numpy calls.
``tests/annotators/test_criticality.py`` checks the two forms against each other on random footprints.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from simgen.sim.kernels import _sat  # the simulator's separating axis test of two footprints (touching = overlap)


@njit(cache=True)
def _seg_dist(px, py, ax, ay, bx, by):  # pragma: no cover
    abx, aby = bx - ax, by - ay
    t = ((px - ax) * abx + (py - ay) * aby) / max(abx * abx + aby * aby, 1e-12)
    t = min(max(t, 0.0), 1.0)
    dx, dy = px - (ax + t * abx), py - (ay + t * aby)
    return math.sqrt(dx * dx + dy * dy)


@njit(cache=True)
def gaps_ttc_kernel(fp, pose, vel):  # pragma: no cover
    """fp (N,A,4,2) footprints, pose (N,A,4), vel (N,A,3) -> gap, ttc (N,A); column 0 (the ego) NaN."""
    N, A = fp.shape[0], fp.shape[1]
    gap = np.empty((N, A))
    ttc = np.empty((N, A))
    for n in range(N):
        E = fp[n, 0]
        gap[n, 0], ttc[n, 0] = np.nan, np.nan
        for a in range(1, A):
            O = fp[n, a]
            g = np.inf
            for c in range(4):
                for e in range(4):
                    f = (e + 1) % 4
                    g = min(g, _seg_dist(E[c, 0], E[c, 1], O[e, 0], O[e, 1], O[f, 0], O[f, 1]))
                    g = min(g, _seg_dist(O[c, 0], O[c, 1], E[e, 0], E[e, 1], E[f, 0], E[f, 1]))
            if _sat(E, O, 0.0):
                g = 0.0
            rx, ry = pose[n, a, 0] - pose[n, 0, 0], pose[n, a, 1] - pose[n, 0, 1]
            d = max(math.sqrt(rx * rx + ry * ry), 1e-9)
            closing = -((vel[n, a, 0] - vel[n, 0, 0]) * rx / d + (vel[n, a, 1] - vel[n, 0, 1]) * ry / d)
            gap[n, a] = g
            ttc[n, a] = g / closing if closing > 1e-3 else np.inf
    return gap, ttc


@njit(cache=True)
def pet_kernel(xy):  # pragma: no cover
    """xy (N,A,2) centres per frame.  Per actor j >= 1: (ego frame, actor frame) of the closest approach of the two
    trajectories (first minimum in row-major order over (ego frame, actor frame)), its distance, and whether the
    actor moved at all (bounding box of its centres >= 0.5 m on some axis)."""
    N, A = xy.shape[0], xy.shape[1]
    ie = np.zeros(A, np.int64)
    ia = np.zeros(A, np.int64)
    dmin = np.full(A, np.inf)
    moved = np.zeros(A, np.bool_)
    for j in range(1, A):
        lo0, hi0, lo1, hi1 = np.inf, -np.inf, np.inf, -np.inf
        for k in range(N):
            lo0, hi0 = min(lo0, xy[k, j, 0]), max(hi0, xy[k, j, 0])
            lo1, hi1 = min(lo1, xy[k, j, 1]), max(hi1, xy[k, j, 1])
        moved[j] = max(hi0 - lo0, hi1 - lo1) >= 0.5
        best = np.inf
        for p in range(N):
            for q in range(N):
                dx, dy = xy[p, 0, 0] - xy[q, j, 0], xy[p, 0, 1] - xy[q, j, 1]
                d = math.sqrt(dx * dx + dy * dy)
                if d < best:
                    best, ie[j], ia[j] = d, p, q
        dmin[j] = best
    return ie, ia, dmin, moved
