"""Spinning ray-cast LiDAR with CARLA ``sensor.lidar.ray_cast`` attributes and meanings.

Each tick the sensor fires ``points_per_second / tick_hz`` rays, ``channels`` lasers spread evenly from
``upper_fov`` to ``lower_fov`` (degrees), sweeping ``horizontal_fov`` degrees at ``rotation_frequency`` Hz (so a
tick covers ``rotation_frequency / tick_hz`` of a sweep; the phase carries over between ticks).  Every ray has
its own firing time in (t_prev, t]: the ego pose (hence ray origin and direction) and every actor's pose are
interpolated to that time, so motion during the sweep shows in the points and each point's label is exact.
Points are returned in the sensor frame at their firing time (as a real sensor reports them, not deskewed).

Returns: a hit farther than ``range`` is no return.  ``noise_stddev`` perturbs the range along the ray.
Intensity = reflectivity · |cos(incidence)| · exp(−atmosphere_attenuation_rate · distance), where CARLA uses the
attenuation term alone; material reflectivity and incidence are simgen's addition (documented in README).
Drop-off as CARLA documents it: a fraction ``dropoff_general_rate`` of points is dropped at random, and a point
with intensity below ``dropoff_intensity_limit`` is dropped with probability
``dropoff_zero_intensity · (1 − intensity / dropoff_intensity_limit)``.
"""
from __future__ import annotations

import numpy as np

from simgen.records import LidarData
from simgen.sensors import render
from simgen.spec.rig import SensorSpec
from simgen.geometry import wrap_angle
from simgen.sensors.lidar_weather import apply_lidar_weather
from simgen.world import materials as M


def _interp_poses(p0: np.ndarray, p1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N,4|6) poses x,y,z,yaw[,pitch,roll] interpolated between p0 (w=0) and p1 (w=1) per ray weight w (N,);
    angles along the shorter arc."""
    out = p0[None, :] + w[:, None] * (p1 - p0)[None, :]
    out[:, 3:] = p0[3:] + w[:, None] * wrap_angle(p1[3:] - p0[3:])[None, :]
    return out


def _ego_T(p: np.ndarray) -> np.ndarray:
    from simgen.records import pose_transform

    return pose_transform(p)


class Lidar:
    def __init__(self, spec: SensorSpec, tick_hz: float, T_ego_from_sensor: np.ndarray | None = None):
        a = spec.lidar
        self.name = spec.name
        self.attr = a
        self.tick_hz = tick_hz
        self.T_ego_from_sensor = spec.mount.matrix() if T_ego_from_sensor is None else T_ego_from_sensor
        n = int(round(a.points_per_second / tick_hz))
        self.n_az = max(1, n // a.channels)
        self.elev = np.deg2rad(np.linspace(a.upper_fov, a.lower_fov, a.channels))
        self.sweep_per_tick = min(1.0, a.rotation_frequency / tick_hz)
        self.phase = 0.0  # fraction of the sweep done

    def _rays_sensor(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Directions (N,3) in the sensor frame, firing fraction of the tick (N,), channel (N,)."""
        a = self.attr
        j = np.arange(self.n_az)
        frac_tick = (j + 1) / self.n_az
        sweep = (self.phase + self.sweep_per_tick * frac_tick) % 1.0
        az = np.deg2rad(a.horizontal_fov) * (sweep - 0.5) if a.horizontal_fov < 360 else 2 * np.pi * sweep
        self.phase = (self.phase + self.sweep_per_tick) % 1.0
        self._az = az  # sensor-frame azimuth of each column (used for culling)
        ce, se = np.cos(self.elev), np.sin(self.elev)
        d = np.stack([ce[None, :] * np.cos(az)[:, None], ce[None, :] * np.sin(az)[:, None],
                      np.broadcast_to(se[None, :], (self.n_az, len(self.elev)))], axis=-1).reshape(-1, 3)
        w = np.repeat(frac_tick, len(self.elev))
        ch = np.tile(np.arange(len(self.elev), dtype=np.uint16), self.n_az)
        return d, w, ch

    def capture(self, t_prev: float, t: float, ego_prev: np.ndarray, ego_now: np.ndarray,
                static: render.StaticGeometry, actors: list[render.ActorGeometry], poses_prev: np.ndarray,
                poses_now: np.ndarray, *, rng: np.random.Generator, reflectivity_scale: float = 1.0,
                weather=None, precipitation_kind: str = "rain") -> LidarData:
        """Sweep over (t_prev, t].  ``ego_*`` and ``poses_*`` are (4|6,)/(A,4|6) bottom-centre poses x, y, z, yaw
        [, pitch, roll] (:mod:`simgen.records`)."""
        a = self.attr
        d_s, w, ch = self._rays_sensor()
        ego = _interp_poses(ego_prev, ego_now, w)
        T_we = _ego_T(ego)  # (N,4,4)
        T_ws = T_we @ self.T_ego_from_sensor
        R = T_ws[:, :3, :3]
        o = T_ws[:, :3, 3]
        d = np.einsum("nij,nj->ni", R, d_s)
        h = render.cast_static(static, o, d)
        max_t = a.range
        C = len(self.elev)
        upright = np.allclose(self.T_ego_from_sensor[:3, 2], [0.0, 0.0, 1.0])
        if upright:  # every ray of azimuth column j shares one world bearing (the ego level)
            col = np.arange(0, len(d), C)
            ca, sa = np.cos(self._az), np.sin(self._az)
            bearing = np.arctan2(R[col, 1, 0] * ca + R[col, 1, 1] * sa, R[col, 0, 0] * ca + R[col, 0, 1] * sa)
            # an ego pitched or rolled on a slope tilts the sensor's up axis by tau: a ray at elevation e then bears
            # up to atan(|tan e| tan tau) away from its column's bearing; widen the column cull by that much
            cos_tau = float(np.clip(R[:, 2, 2].min(), -1.0, 1.0))
            tilt_margin = 0.0 if cos_tau >= 1.0 else float(np.arctan(np.abs(np.tan(self.elev)).max()
                                                                      * np.tan(np.arccos(cos_tau))))
            o_mid = o[len(o) // 2]
            sweep_shift = float(np.linalg.norm(o[-1] - o[0]))
        for k, act in enumerate(actors):
            p0, p1 = poses_prev[k], poses_now[k]
            centre = 0.5 * (render.box_centre(p0, act.dims[2]) + render.box_centre(p1, act.dims[2]))
            rad = act.radius + 0.5 * np.linalg.norm(p1[:3] - p0[:3])
            if upright:
                rel = centre - o_mid
                dist = float(np.hypot(rel[0], rel[1]))
                if dist - rad - sweep_shift > max_t:
                    continue
                if dist > rad + sweep_shift:
                    half = np.arcsin(min(1.0, (rad + sweep_shift) / dist)) + 1e-3 + tilt_margin
                    cols = np.nonzero(np.abs(wrap_angle(bearing - np.arctan2(rel[1], rel[0]))) <= half)[0]
                    if len(cols) == 0:
                        continue
                    cand = (cols[:, None] * C + np.arange(C)[None, :]).ravel()
                    idx = cand[render.sphere_candidates(o[cand], d[cand], centre, rad, max_t)]
                else:
                    idx = render.sphere_candidates(o, d, centre, rad, max_t)
            else:
                idx = render.sphere_candidates(o, d, centre, rad, max_t)
            if len(idx) == 0:
                continue
            pose = _interp_poses(p0, p1, w[idx])
            t_hit, n, tri = render.cast_actor(act, o[idx], d[idx], pose)
            render.merge_actor_hits(h, idx, t_hit, n, tri, act)
        render.face_ray(h, d)
        hit = np.isfinite(h.t) & (h.t <= a.range)
        rng_m = np.where(hit, h.t, np.inf).astype(np.float64)
        cos_inc = np.abs(np.einsum("ni,ni->n", h.normal, d))
        refl = np.clip(M.REFLECTIVITY_LUT[h.material] * reflectivity_scale, 0, 1)
        intensity = np.where(hit, refl * cos_inc * np.exp(-a.atmosphere_attenuation_rate * np.where(hit, h.t, 0.0)), 0.0)
        intensity = intensity.astype(np.float32)
        false_ret = np.zeros(len(d), np.uint8)
        keep = hit
        if weather is not None:  # fog (Hahner et al. 2021), rain clutter and extinction, wet roads
            rng_m, intensity, keep, false_ret = apply_lidar_weather(
                rng_m, intensity, hit, h.semantic, d_s, weather, rng=rng, max_range=a.range,
                precipitation_kind=precipitation_kind)
            intensity = intensity.astype(np.float32)
        if a.noise_stddev > 0:
            rng_m = rng_m + rng.normal(0.0, a.noise_stddev, len(rng_m))
        # drop-off: draw for every ray so the random stream does not depend on what was hit
        u1 = rng.random(len(keep))
        u2 = rng.random(len(keep))
        keep = keep & (u1 >= a.dropoff_general_rate)
        if a.dropoff_intensity_limit > 0:
            p_drop = a.dropoff_zero_intensity * np.clip(1.0 - intensity / a.dropoff_intensity_limit, 0.0, 1.0)
            keep &= u2 >= p_drop
        idx = np.nonzero(keep)[0]
        xyz = (d_s[idx] * rng_m[idx, None]).astype(np.float32)
        times = t_prev + w[idx] * (t - t_prev)
        T_end = _ego_T(ego_now) @ self.T_ego_from_sensor
        T_start = _ego_T(ego_prev) @ self.T_ego_from_sensor
        fr = false_ret[idx]
        real = fr == 0  # false returns (fog backscatter, drops) carry no surface's labels
        return LidarData(T_end, T_start, xyz, intensity[idx], np.where(real, h.semantic[idx], 0).astype(np.uint8),
                         np.where(real, h.instance[idx], 0).astype(np.uint32), times.astype(np.float64), ch[idx], fr)
