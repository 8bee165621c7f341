"""The environment at a given time: weather, time of day and sensor-effect values after ramps.

A scenario's episode values (after ``randomize:``) hold at t = 0; each ``ramps:`` entry moves one value linearly
to its target between ``start_s`` and ``end_s``.  ``time_of_day_h``, when set, places the sun (it overrides the
weather's sun angles) with a simple solar model: latitude 45° N at an equinox (solar declination 0), so the sun
rises at 06:00 in the east, culminates at 45° at 12:00 in the south and sets at 18:00.

:func:`applied` gives every value a frame used, recorded per frame in the episode (``applied/<key>``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from simgen.spec.scenario import ScenarioSpec, Weather

LATITUDE_DEG = 45.0


def sun_from_time_of_day(hour: float, latitude_deg: float = LATITUDE_DEG) -> tuple[float, float]:
    """(altitude, compass azimuth clockwise from north) in degrees at an equinox."""
    H = np.deg2rad(15.0 * (hour - 12.0))
    lat = np.deg2rad(latitude_deg)
    alt = np.arcsin(np.cos(lat) * np.cos(H))
    az = np.arctan2(-np.sin(H), -np.sin(lat) * np.cos(H))
    return float(np.rad2deg(alt)), float(np.rad2deg(az) % 360.0)


def _get(spec: ScenarioSpec, key: str):
    obj = spec
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def value_at(spec: ScenarioSpec, key: str, t: float):
    v = _get(spec, key)
    for r in spec.ramps:
        if r.key == key:
            v0 = float(v if v is not None else (12.0 if key == "time_of_day_h" else 0.0))
            u = float(np.clip((t - r.start_s) / (r.end_s - r.start_s), 0.0, 1.0))
            v = v0 + u * (r.to - v0)
    return v


def at(spec: ScenarioSpec, t: float) -> ScenarioSpec:
    """The spec with every ramped value set to its value at time t (and the sun placed by time of day)."""
    out = spec
    groups: dict[str, dict] = {}
    for r in spec.ramps:
        head, _, tail = r.key.partition(".")
        if tail:
            groups.setdefault(head, {})[tail] = value_at(spec, r.key, t)
        else:
            out = dataclasses.replace(out, **{head: value_at(spec, r.key, t)})
    for head, vals in groups.items():
        out = dataclasses.replace(out, **{head: dataclasses.replace(getattr(out, head), **vals)})
    if out.time_of_day_h is not None:
        alt, az = sun_from_time_of_day(out.time_of_day_h)
        out = dataclasses.replace(out, weather=dataclasses.replace(out.weather, sun_altitude_angle=alt, sun_azimuth_angle=az))
    return out


def varies(spec: ScenarioSpec) -> bool:
    return bool(spec.ramps)


def applied(spec_t: ScenarioSpec, randomized: list[str]) -> dict[str, float]:
    """Every value a frame used: all weather fields, time of day, road look, camera effects, randomised keys."""
    out = {f"weather.{f.name}": float(getattr(spec_t.weather, f.name)) for f in dataclasses.fields(Weather)}
    if spec_t.time_of_day_h is not None:
        out["time_of_day_h"] = float(spec_t.time_of_day_h)
    out["road.wear"] = float(spec_t.road.wear)
    out["road.asphalt_brightness"] = float(spec_t.road.asphalt_brightness)
    ce = spec_t.camera_effects
    for k in ("noise", "vignetting", "chromatic_aberration_px", "exposure_ev"):
        out[f"camera_effects.{k}"] = float(getattr(ce, k))
    for key in randomized:
        if key not in out:
            try:
                v = _get(spec_t, key)
            except AttributeError:
                continue  # e.g. list items (actors.lead.speed_mps): recorded in parameters_json
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key] = float(v)
    return out
