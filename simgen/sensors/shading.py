"""Lighting from CARLA-style weather: sun direction, sky, ambient light, fog; and the camera shading model.

Sun: ``sun_altitude_angle`` (degrees above the horizon) and ``sun_azimuth_angle`` (degrees clockwise from
north = +y, as on a compass).  Shading is Lambert diffuse from the sun with ray-traced shadows, a hemispheric
sky ambient term, a small specular lobe, emissive lamps, exponential fog by distance, an exponential tone
map and gamma 2 (sqrt).  All arrays are float32 and vectorised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgen.spec.scenario import Weather
from simgen.world import materials as M


@dataclass(frozen=True)
class Lighting:
    sun_dir: np.ndarray  # (3,) unit vector towards the sun, world frame
    sun_rgb: np.ndarray  # (3,) direct sun irradiance (0 at night or under full cloud)
    ambient_rgb: np.ndarray  # (3,) sky ambient
    zenith_rgb: np.ndarray
    horizon_rgb: np.ndarray
    fog_beta: float  # extinction coefficient, 1/m
    fog_start_m: float
    fog_rgb: np.ndarray
    exposure: float

    @staticmethod
    def from_weather(w: Weather) -> "Lighting":
        alt = np.deg2rad(w.sun_altitude_angle)
        az = np.deg2rad(w.sun_azimuth_angle)
        sun_dir = np.array([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)], np.float32)
        day = float(np.clip((w.sun_altitude_angle + 6.0) / 16.0, 0.0, 1.0))  # civil twilight ramp
        low = float(np.clip(w.sun_altitude_angle / 25.0, 0.0, 1.0))  # reddening near the horizon
        cloud = w.cloudiness / 100.0
        sun_rgb = np.array([1.0, 0.85 + 0.12 * low, 0.65 + 0.3 * low], np.float32) * 2.6 * day * (1 - 0.85 * cloud) * (alt > 0)
        zenith = np.array([0.18, 0.35, 0.75], np.float32) * (1 - cloud) + np.array([0.55, 0.57, 0.6], np.float32) * cloud
        horizon = np.array([0.65, 0.72, 0.85], np.float32) * (1 - cloud) + np.array([0.7, 0.7, 0.72], np.float32) * cloud
        # CARLA's scattering controls, relative to their defaults: Rayleigh (air molecules) saturates the blue sky,
        # Mie (haze, pollen) whitens the horizon, scattering_intensity scales the light fog scatters to the camera.
        grey = np.float32(zenith.mean())
        zenith = grey + (zenith - grey) * np.float32(np.clip(w.rayleigh_scattering_scale / 0.0331, 0.0, 3.0))
        horizon = horizon + np.float32(0.12 * np.clip(w.mie_scattering_scale / 0.03 - 1.0, -1.0, 5.0))
        night = np.array([0.01, 0.012, 0.03], np.float32)
        zenith = zenith * day + night * (1 - day)
        horizon = horizon * day + night * 1.5 * (1 - day)
        ambient = (0.35 * zenith + 0.25 * horizon) * (1.0 + 0.6 * cloud)
        fog_beta = (w.fog_density / 100.0) ** 1.5 * 0.06
        fog_rgb = (horizon * 0.9 + 0.05 * day) * w.scattering_intensity
        exposure = 1.3 + 2.7 * (1 - day)  # the eye/camera adapts at night
        return Lighting(sun_dir, sun_rgb, ambient.astype(np.float32), zenith, horizon, float(fog_beta),
                        float(w.fog_distance), fog_rgb.astype(np.float32), float(exposure))

    def sky(self, d: np.ndarray) -> np.ndarray:
        """(N,3) sky radiance for unit world directions."""
        e = np.clip(d[:, 2:3], 0.0, 1.0)
        col = self.horizon_rgb + (self.zenith_rgb - self.horizon_rgb) * np.sqrt(e)
        glow = np.clip(d @ self.sun_dir, 0.0, 1.0) ** 64
        return col + glow[:, None] * self.sun_rgb * 0.6


_NOISE_TABLE = np.random.default_rng(20261123).random(1 << 16).astype(np.float32)  # fixed: textures never change


def _cell_noise(p: np.ndarray, scale: float) -> np.ndarray:
    """(N,) value in [0, 1) per lattice cell of size 1/scale metres (integer spatial hash into a fixed table)."""
    q = np.floor(p * np.float32(scale)).astype(np.int32)
    h = q[:, 0] * np.int32(73856093)
    h ^= q[:, 1] * np.int32(19349663)
    h ^= q[:, 2] * np.int32(83492791)
    h ^= h >> 13
    return _NOISE_TABLE[h & 0xFFFF]


def procedural_variation(p: np.ndarray, scale: float = 2.0) -> np.ndarray:
    """(N,) multiplicative albedo variation in about [0.88, 1.12] from world positions: two octaves of cell
    noise (0.5 m and 7 cm cells) so asphalt, concrete and facades are not flat colours."""
    v = _cell_noise(p, scale)
    v *= np.float32(0.16)
    v += np.float32(0.88)
    v += np.float32(0.08) * _cell_noise(p, scale * 7.0)
    return v


def albedo(material: np.ndarray, instance: np.ndarray, actor_colour: np.ndarray) -> np.ndarray:
    """(N,3) base colour: material table, with paint/clothing replaced by the owning actor's colour.

    ``actor_colour`` is indexed by instance id (row 0 unused).
    """
    col = M.COLOUR_LUT[material]
    own = ((material == M.PAINT) | (material == M.CLOTHING)) & (instance > 0)
    if np.any(own):
        col[own] = actor_colour[instance[own]]
    return col


def shade(light: Lighting, d: np.ndarray, t: np.ndarray, normal: np.ndarray, base: np.ndarray,
          lit: np.ndarray, specular: np.ndarray, emissive: np.ndarray) -> np.ndarray:
    """Linear radiance (N,3) for hit rays.

    ``lit``: (N,) 1 where the sun is visible from the hit; ``specular``: (N,) strength; ``emissive``: (N,3).
    """
    ndl = normal @ light.sun_dir
    np.maximum(ndl, 0.0, out=ndl)
    ndl *= lit
    hemi = normal[:, 2] * np.float32(0.45)
    hemi += np.float32(0.55)
    irr = ndl[:, None] * light.sun_rgb
    irr += hemi[:, None] * light.ambient_rgb
    irr *= base
    spec_idx = np.nonzero((specular > 0) & (lit > 0))[0]
    if len(spec_idx):
        n = normal[spec_idx]
        h = light.sun_dir[None, :] - d[spec_idx]
        h /= np.linalg.norm(h, axis=1, keepdims=True) + np.float32(1e-9)
        c = np.clip(np.einsum("ni,ni->n", n, h), 0, 1) ** 32 * specular[spec_idx]
        irr[spec_idx] += c[:, None] * (light.sun_rgb * np.float32(0.5))
    if emissive is not None:
        irr += emissive
    return irr


def apply_fog(light: Lighting, rad: np.ndarray, dist: np.ndarray) -> np.ndarray:
    if light.fog_beta <= 0:
        return rad
    f = 1.0 - np.exp(-light.fog_beta * np.clip(dist - light.fog_start_m, 0.0, None))
    f = np.where(np.isfinite(dist), f, 1.0).astype(np.float32)
    return rad * (1 - f[:, None]) + light.fog_rgb * f[:, None]


def tonemap(rad: np.ndarray, exposure: float) -> np.ndarray:
    """Linear radiance → 8-bit sRGB-ish (exponential tone map, gamma 2)."""
    x = 1.0 - np.exp(-np.asarray(rad, np.float32) * np.float32(exposure))
    return (np.sqrt(x) * 255.0 + 0.5).astype(np.uint8)
