"""Compiled (numba) loops of the builtin simulator's per-tick work (issue 13: sensor-free simulation, fast).

Each is the same arithmetic as the numpy expression it replaces in :mod:`simgen.sim.world`, written as one loop
over the actors so that a tick does not pay numpy's per-call overhead dozens of times per actor.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
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
