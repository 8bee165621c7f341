"""Sensor rig spec: the same file means the same thing on every backend.

Attribute names and meanings are CARLA's blueprint attributes (``sensor.camera.*``: image_size_x, image_size_y,
fov; ``sensor.lidar.ray_cast``: channels, range, points_per_second, ...).  Mounting poses are in the ego frame
(x forward, y left, z up, metres; the ego origin is the centre of the vehicle's bottom face) with roll/pitch/yaw
in degrees, right-handed (positive pitch looks down, positive yaw looks left).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from simgen.errors import InputError
from simgen.spec.schema import Ctx, from_dict, load_yaml


@dataclass(frozen=True)
class Mount:
    x: float = 0.0
    y: float = 0.0
    z: float = field(default=1.6, metadata={"range": (-5.0, 10.0)})
    roll_deg: float = field(default=0.0, metadata={"range": (-180.0, 180.0)})
    pitch_deg: float = field(default=0.0, metadata={"range": (-90.0, 90.0)})
    yaw_deg: float = field(default=0.0, metadata={"range": (-180.0, 180.0)})

    def validate(self, ctx: Ctx) -> None:
        for k in ("x", "y"):
            if abs(getattr(self, k)) > 20:
                raise ctx.key(k).error(f"got {getattr(self, k)}; allowed: -20 to 20 (metres from the ego origin)")

    def matrix(self) -> np.ndarray:
        """T_ego_from_sensor (4,4); the sensor body frame is x forward, y left, z up."""
        from simgen.geometry import pose_matrix

        return pose_matrix(self.x, self.y, self.z, np.deg2rad(self.yaw_deg), np.deg2rad(self.pitch_deg), np.deg2rad(self.roll_deg))


@dataclass(frozen=True)
class CameraAttributes:
    """Defaults are CARLA's blueprint defaults, so an omitted attribute means the same on every backend."""

    image_size_x: int = field(default=800, metadata={"range": (16, 8192)})
    image_size_y: int = field(default=600, metadata={"range": (16, 8192)})
    fov: float = field(default=90.0, metadata={"gt": 0.0, "lt": 180.0})
    # Brown–Conrady lens distortion (OpenCV order k1, k2, p1, p2, k3) — simgen's attribute: the builtin backend
    # casts rays through the distorted pixels, so every image layer and label stays aligned.
    distortion: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def validate(self, ctx: Ctx) -> None:
        if any(abs(v) > 2.0 for v in self.distortion):
            raise ctx.key("distortion").error(f"got {list(self.distortion)}; allowed: coefficients within ±2")
        k1, k2, p1, p2, k3 = self.distortion
        if any(self.distortion):
            # the radial model r_d = r (1 + k1 r^2 + k2 r^4 + k3 r^6) must stay increasing up to the image corner
            f = self.image_size_x / (2.0 * np.tan(np.deg2rad(self.fov) / 2.0))
            r_corner = np.hypot(self.image_size_x / 2, self.image_size_y / 2) / f
            r = np.linspace(0.0, 6.0, 6001)
            g = r * (1 + k1 * r**2 + k2 * r**4 + k3 * r**6)
            dg = np.diff(g)
            stop = int(np.argmax(dg <= 0)) if np.any(dg <= 0) else len(dg)
            reach = g[: stop + 1].max()
            if reach < r_corner * (1.0 + 2 * (abs(p1) + abs(p2))) + 1e-3:
                raise ctx.key("distortion").error(
                    f"got {list(self.distortion)}; the lens model folds over before the image corner (it reaches "
                    f"normalised radius {reach:.2f}, the corner needs {r_corner:.2f}); allowed: coefficients whose "
                    "radial curve keeps increasing over the image (smaller |k1|/|k3|, or a narrower fov)")


@dataclass(frozen=True)
class LidarAttributes:
    """``sensor.lidar.ray_cast`` attributes; defaults are CARLA's blueprint defaults (range 10 m!)."""

    channels: int = field(default=32, metadata={"range": (1, 256)})
    range: float = field(default=10.0, metadata={"gt": 0.0, "lt": 1000.0})
    points_per_second: int = field(default=56_000, metadata={"range": (100, 10_000_000)})
    rotation_frequency: float = field(default=10.0, metadata={"gt": 0.0, "lt": 100.0})
    upper_fov: float = field(default=10.0, metadata={"range": (-90.0, 90.0)})
    lower_fov: float = field(default=-30.0, metadata={"range": (-90.0, 90.0)})
    horizontal_fov: float = field(default=360.0, metadata={"gt": 0.0, "range": (0.0, 360.0)})
    atmosphere_attenuation_rate: float = field(default=0.004, metadata={"range": (0.0, 1.0)})
    dropoff_general_rate: float = field(default=0.45, metadata={"range": (0.0, 1.0)})
    dropoff_intensity_limit: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    dropoff_zero_intensity: float = field(default=0.4, metadata={"range": (0.0, 1.0)})
    noise_stddev: float = field(default=0.0, metadata={"range": (0.0, 1.0)})

    def validate(self, ctx: Ctx) -> None:
        if self.upper_fov <= self.lower_fov:
            raise ctx.key("upper_fov").error(f"got {self.upper_fov}; allowed: greater than lower_fov ({self.lower_fov})")


@dataclass(frozen=True)
class SensorSpec:
    name: str
    type: Literal["camera", "lidar"]
    mount: Mount = Mount()
    attributes: dict = field(default_factory=dict)

    def validate(self, ctx: Ctx) -> None:
        import re

        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", self.name):
            raise ctx.key("name").error(f"got {self.name!r}; allowed: letters, digits and _ starting with a letter")
        cls = CameraAttributes if self.type == "camera" else LidarAttributes
        parsed = from_dict(cls, dict(self.attributes), ctx.key("attributes"))
        object.__setattr__(self, "attributes", parsed)

    @property
    def camera(self) -> CameraAttributes:
        assert isinstance(self.attributes, CameraAttributes)
        return self.attributes

    @property
    def lidar(self) -> LidarAttributes:
        assert isinstance(self.attributes, LidarAttributes)
        return self.attributes


@dataclass(frozen=True)
class RigSpec:
    name: str
    sensors: tuple[SensorSpec, ...] = field(metadata={"min_items": 1})
    description: str = ""

    def validate(self, ctx: Ctx) -> None:
        seen = set()
        for i, s in enumerate(self.sensors):
            if s.name in seen:
                raise ctx.key("sensors").index(i).key("name").error(f"duplicate sensor name {s.name!r}")
            seen.add(s.name)

    @property
    def cameras(self) -> list[SensorSpec]:
        return [s for s in self.sensors if s.type == "camera"]

    @property
    def lidars(self) -> list[SensorSpec]:
        return [s for s in self.sensors if s.type == "lidar"]


def rig_to_dict(rig: RigSpec) -> dict:
    from simgen.spec.schema import to_dict

    return to_dict(rig)


def load_rig(path: str | Path) -> RigSpec:
    data = load_yaml(path, what="rig file")
    return rig_from_dict(data, file=str(path))


def rig_from_dict(data: dict, *, file: str) -> RigSpec:
    if "sensors" not in data and "name" in data and "type" in data:
        raise InputError("this looks like a single sensor, not a rig; put it under 'sensors:'", file=file)
    return from_dict(RigSpec, data, Ctx(file))


def default_rig_path() -> Path:
    from simgen.paths import ASSETS

    return ASSETS / "rigs" / "default.yaml"
