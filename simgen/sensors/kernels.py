"""Fused per-pixel camera kernels (numba, parallel over pixels).

The camera's work after the ray casts is a handful of arithmetic per pixel; as separate numpy passes it costs
several times the casts themselves.  These kernels do it in two parallel passes with no temporaries:

1. :func:`prepare` — flip normals towards the viewer, mark hits that face the sun, and
   :func:`shadow_rays` writes the compacted shadow-ray buffer for them;
2. :func:`finish` — albedo (material table, actor paint, cell-noise texture on static surfaces), sun with
   ray-traced shadows, sky ambient, specular, emissive lamps, sky for misses, fog, tone map and gamma, plus
   z-depth and the semantic image.

:mod:`simgen.sensors.shading` derives the lighting inputs from the weather.  Results are deterministic (each
pixel is computed independently; no fastmath).
"""
from __future__ import annotations

import os

import numpy as np
from numba import config, njit, prange

# open3d ships an older TBB that numba rejects with a warning; use numba's own thread pool unless told otherwise.
# (workqueue allows one parallel kernel at a time per process: the cameras run on one thread.)
if "NUMBA_THREADING_LAYER" not in os.environ:
    config.THREADING_LAYER = "workqueue"


# Tone map sqrt(1 - exp(-x)) (exponential curve, gamma 2) tabulated over u = sqrt(x): a table step is at most
# 1/1024 in u, i.e. under a quarter of an 8-bit level even in the darks, and costs one sqrt instead of exp + sqrt.
_TM_SCALE = 1024.0
_TM_LUT = (np.sqrt(1.0 - np.exp(-(np.arange(4 * 1024 + 2) / _TM_SCALE) ** 2)) * 255.0 + 0.5).astype(np.float32)


@njit(cache=True, inline="always")
def _tonemap(x, lut):
    u = np.sqrt(max(x, 0.0)) * _TM_SCALE
    if u >= lut.shape[0] - 2:
        return np.uint8(255)
    i = int(u)
    f = u - i
    return np.uint8(lut[i] + f * (lut[i + 1] - lut[i]))


@njit(parallel=True, cache=True)
def fill_rays(d_body, R, o, rays, d):
    """World ray directions d = R d_body and the (N,6) cast buffer [o, d] in one pass."""
    n = d_body.shape[0]
    for i in prange(n):
        for c in range(3):
            v = R[c, 0] * d_body[i, 0] + R[c, 1] * d_body[i, 1] + R[c, 2] * d_body[i, 2]
            d[i, c] = v
            rays[i, 3 + c] = v
            rays[i, c] = o[c]


@njit(cache=True)
def compact(flags):
    """Indices of the set flags, and for every element its rank among them (-1 where unset)."""
    n = flags.shape[0]
    rank = np.empty(n, np.int64)
    idx = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        if flags[i]:
            rank[i] = k
            idx[k] = i
            k += 1
        else:
            rank[i] = -1
    return idx[:k], rank


@njit(parallel=True, cache=True)
def prepare(t, normal, d, sun_dir, sun_up):
    """In place: normals face the viewer.  Returns uint8 flags: 1 = hit facing the sun."""
    n = t.shape[0]
    facing = np.zeros(n, np.uint8)
    for i in prange(n):
        if np.isfinite(t[i]):
            dot = normal[i, 0] * d[i, 0] + normal[i, 1] * d[i, 1] + normal[i, 2] * d[i, 2]
            if dot > 0:
                normal[i, 0] = -normal[i, 0]
                normal[i, 1] = -normal[i, 1]
                normal[i, 2] = -normal[i, 2]
            if sun_up and normal[i, 0] * sun_dir[0] + normal[i, 1] * sun_dir[1] + normal[i, 2] * sun_dir[2] > 0:
                facing[i] = 1
    return facing


@njit(parallel=True, cache=True)
def shadow_rays(idx, o, d, t, normal, sun_dir, eps):
    """(M,6) float32 rays from hit points (lifted ``eps`` along the normal) towards the sun."""
    m = idx.shape[0]
    out = np.empty((m, 6), np.float32)
    for j in prange(m):
        i = idx[j]
        for c in range(3):
            out[j, c] = o[c] + d[i, c] * t[i] + normal[i, c] * eps
            out[j, 3 + c] = sun_dir[c]
    return out


@njit(cache=True, inline="always")
def _cell(px, py, pz, scale, table):
    qx = np.int32(np.floor(px * scale))
    qy = np.int32(np.floor(py * scale))
    qz = np.int32(np.floor(pz * scale))
    h = np.int32(qx * np.int32(73856093)) ^ np.int32(qy * np.int32(19349663)) ^ np.int32(qz * np.int32(83492791))
    h = h ^ (h >> 13)
    return table[h & 0xFFFF]


@njit(parallel=True, cache=True)
def finish(o, d, t, normal, material, instance, tri, sem_hit, lit_idx, occ, z_of_ray,
           colour_lut, specular_lut, actor_colour, lamp_on, lamp_lo, lamp_hi, wear, road_paint_id, asphalt_id, noise_table,
           sun_dir, sun_rgb, ambient, zenith, horizon, fog_beta, fog_start, fog_rgb, exposure,
           paint_id, clothing_id, sky_class, far_m,
           light_pos, light_dir, light_rgb, light_cos, lamp_glow, headlight_id, taillight_id, tm_lut,
           rgb, depth, semantic):
    """Write rgb (N,3) uint8, depth (N,) float32 and semantic (N,) uint8 for every ray.

    ``lit_idx[i]`` is the index of pixel i's shadow ray (-1: not facing the sun); ``occ`` the occlusion result.
    Artificial lights (street lamps, headlights): ``light_pos`` (L,3), ``light_dir`` (L,3) spot axis (zero for
    omni), ``light_rgb`` (L,3) intensity (W/sr-like, inverse-square falloff), ``light_cos`` (L,) cosine of the
    spot half-angle (-1 for omni); no shadows from these.  ``lamp_glow`` > 0 makes lamp lenses emissive.
    """
    n = t.shape[0]
    for i in prange(n):
        r = 0.0
        g = 0.0
        b = 0.0
        dist = np.inf
        if np.isfinite(t[i]):
            dist = t[i]
            m = material[i]
            inst = instance[i]
            if (m == paint_id or m == clothing_id) and inst > 0:
                ar = actor_colour[inst, 0]
                ag = actor_colour[inst, 1]
                ab = actor_colour[inst, 2]
            else:
                ar = colour_lut[m, 0]
                ag = colour_lut[m, 1]
                ab = colour_lut[m, 2]
            if inst == 0:
                px = o[0] + d[i, 0] * dist
                py = o[1] + d[i, 1] * dist
                pz = o[2] + d[i, 2] * dist
                if m == road_paint_id and wear > 0 and _cell(px, py, pz, np.float32(3.0), noise_table) < 0.85 * wear:
                    ar = colour_lut[asphalt_id, 0]  # worn: the paint is gone in patches
                    ag = colour_lut[asphalt_id, 1]
                    ab = colour_lut[asphalt_id, 2]
                v = 0.88 + 0.16 * _cell(px, py, pz, np.float32(2.0), noise_table) + 0.08 * _cell(px, py, pz, np.float32(14.0), noise_table)
                ar *= v
                ag *= v
                ab *= v
            nx = normal[i, 0]
            ny = normal[i, 1]
            nz = normal[i, 2]
            lit = 0.0
            li = lit_idx[i]
            if li >= 0 and not occ[li]:
                lit = 1.0
            ndl = max(nx * sun_dir[0] + ny * sun_dir[1] + nz * sun_dir[2], 0.0) * lit
            hemi = 0.55 + 0.45 * nz
            r = ar * (ndl * sun_rgb[0] + hemi * ambient[0])
            g = ag * (ndl * sun_rgb[1] + hemi * ambient[1])
            b = ab * (ndl * sun_rgb[2] + hemi * ambient[2])
            sp = specular_lut[m]
            if sp > 0 and lit > 0:
                hx = sun_dir[0] - d[i, 0]
                hy = sun_dir[1] - d[i, 1]
                hz = sun_dir[2] - d[i, 2]
                hn = np.sqrt(hx * hx + hy * hy + hz * hz) + 1e-9
                c = min(max((nx * hx + ny * hy + nz * hz) / hn, 0.0), 1.0) ** 32 * sp * 0.5
                r += c * sun_rgb[0]
                g += c * sun_rgb[1]
                b += c * sun_rgb[2]
            n_lights = light_pos.shape[0]
            if n_lights > 0:
                px = o[0] + d[i, 0] * dist
                py = o[1] + d[i, 1] * dist
                pz = o[2] + d[i, 2] * dist
                for j in range(n_lights):
                    vx = light_pos[j, 0] - px
                    vy = light_pos[j, 1] - py
                    vz = light_pos[j, 2] - pz
                    d2 = vx * vx + vy * vy + vz * vz
                    if d2 > 3600.0 or d2 < 1e-4:
                        continue
                    inv = 1.0 / np.sqrt(d2)
                    ndl2 = (nx * vx + ny * vy + nz * vz) * inv
                    if ndl2 <= 0:
                        continue
                    if light_cos[j] > -1.0:
                        c = -(light_dir[j, 0] * vx + light_dir[j, 1] * vy + light_dir[j, 2] * vz) * inv
                        if c < light_cos[j]:
                            continue
                        ndl2 *= min(1.0, (c - light_cos[j]) / (1.0 - light_cos[j]) * 3.0)
                    f = ndl2 / d2
                    r += ar * light_rgb[j, 0] * f
                    g += ag * light_rgb[j, 1] * f
                    b += ab * light_rgb[j, 2] * f
            if lamp_glow > 0 and (m == headlight_id or m == taillight_id):
                r += colour_lut[m, 0] * lamp_glow
                g += colour_lut[m, 1] * lamp_glow
                b += colour_lut[m, 2] * lamp_glow
            if m >= lamp_lo and m <= lamp_hi and inst == 0:
                if lamp_on[tri[i]]:
                    r += colour_lut[m, 0] * 4.0
                    g += colour_lut[m, 1] * 4.0
                    b += colour_lut[m, 2] * 4.0
                else:
                    r *= 0.15
                    g *= 0.15
                    b *= 0.15
            depth[i] = dist * z_of_ray[i]
            semantic[i] = sem_hit[i]
        else:
            e = min(max(d[i, 2], 0.0), 1.0)
            s = np.sqrt(e)
            r = horizon[0] + (zenith[0] - horizon[0]) * s
            g = horizon[1] + (zenith[1] - horizon[1]) * s
            b = horizon[2] + (zenith[2] - horizon[2]) * s
            glow = min(max(d[i, 0] * sun_dir[0] + d[i, 1] * sun_dir[1] + d[i, 2] * sun_dir[2], 0.0), 1.0) ** 64 * 0.6
            r += glow * sun_rgb[0]
            g += glow * sun_rgb[1]
            b += glow * sun_rgb[2]
            depth[i] = far_m
            semantic[i] = sky_class
        if fog_beta > 0:
            f = 1.0
            if np.isfinite(dist):
                f = 1.0 - np.exp(-fog_beta * max(dist - fog_start, 0.0))
            r = r * (1 - f) + fog_rgb[0] * f
            g = g * (1 - f) + fog_rgb[1] * f
            b = b * (1 - f) + fog_rgb[2] * f
        rgb[i, 0] = _tonemap(r * exposure, tm_lut)
        rgb[i, 1] = _tonemap(g * exposure, tm_lut)
        rgb[i, 2] = _tonemap(b * exposure, tm_lut)
