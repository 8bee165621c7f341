"""Lighting from CARLA-style weather: sun direction, sky, ambient light, fog; and the camera shading model.

Sun: ``sun_altitude_angle`` (degrees above the horizon) and ``sun_azimuth_angle`` (degrees clockwise from
north = +y, as on a compass).  :class:`Lighting` turns the weather into the quantities the camera kernel
(:mod:`simgen.sensors.kernels`) shades with: Lambert diffuse from the sun with ray-traced shadows, a
hemispheric sky ambient term, a small specular lobe, emissive lamps, exponential fog by distance, an
exponential tone map and gamma 2.  The fixed noise table behind the procedural surface texture is here too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgen.spec.scenario import Weather


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


_NOISE_TABLE = np.random.default_rng(20261123).random(1 << 16).astype(np.float32)  # fixed: textures never change
