"""The backend contract: what a backend produces each tick, independent of how it simulates.

A backend ``open``s a session for a concrete scenario and a rig; ``Session.step()`` advances one tick and returns
a :class:`Frame` of plain arrays.  Annotators and writers only ever see Frames and specs (data flows one way).
Backends are registered by name in :data:`BACKENDS` and imported lazily (``carla`` stays optional).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from simgen.sim.world import ActorStates


@dataclass
class CameraData:
    """One camera's images at the frame's time.  Optical frame: x right, y down, z forward."""

    K: np.ndarray  # (3,3)
    T_world_from_sensor: np.ndarray  # (4,4) camera body frame (x fwd, y left, z up) to world
    rgb: np.ndarray  # (H,W,3) uint8
    depth: np.ndarray  # (H,W) float32, metres along the optical axis (z-depth); 1000 where nothing is hit
    semantic: np.ndarray  # (H,W) uint8 CARLA class ids
    instance: np.ndarray  # (H,W) uint32 actor ids, 0 = none
    amodal_pixels: dict[int, int] = field(default_factory=dict)  # actor id -> pixels it covers with nothing in front
    distortion: np.ndarray | None = None  # (5,) Brown–Conrady k1, k2, p1, p2, k3; None = pinhole
    r_max: float | None = None  # normalised radius of the field of view's edge (for projecting with distortion)


@dataclass
class LidarData:
    """One LiDAR sweep over (t_prev, t].  Points are in the sensor frame *at each point's firing time*."""

    T_world_from_sensor: np.ndarray  # (4,4) at the frame time t (end of the sweep)
    T_world_from_sensor_start: np.ndarray  # (4,4) at t_prev (start of the sweep); interpolate for deskewing
    xyz: np.ndarray  # (N,3) float32
    intensity: np.ndarray  # (N,) float32 in [0,1]
    semantic: np.ndarray  # (N,) uint8
    instance: np.ndarray  # (N,) uint32
    time_s: np.ndarray  # (N,) float64 absolute simulation time of each return
    channel: np.ndarray  # (N,) uint16 laser index, 0 = top
    false_return: np.ndarray | None = None  # (N,) uint8: 0 a real surface, 1 fog backscatter, 2 rain/snow clutter


@dataclass
class Frame:
    index: int
    time_s: float
    T_world_from_ego: np.ndarray  # (4,4)
    actors: ActorStates  # every actor including the ego (id 1)
    lights: dict[str, str]  # traffic light id -> red/yellow/green
    collisions: list[tuple[int, int]]
    events: list[tuple[float, str, str]]  # events fired during this tick: (time, actor, event)
    T_ego_from_sensor: dict[str, np.ndarray]
    cameras: dict[str, CameraData] = field(default_factory=dict)
    lidars: dict[str, LidarData] = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)  # environment values used by this frame (weather ...)


class Session(Protocol):
    n_frames: int

    def step(self) -> Frame: ...

    def close(self) -> None: ...

    def static_info(self) -> dict: ...


class Backend(Protocol):
    name: str

    def open(self, scenario, rig, *, seed: np.random.SeedSequence, source: str, n_frames: int | None = None,
             record=None) -> Session:
        """``record`` (simgen.io.record.Record): re-render recorded actor states instead of simulating."""
        ...


BACKENDS = {"builtin": "simgen.backends.builtin:BuiltinBackend", "carla": "simgen.backends.carla:CarlaBackend"}


def get_backend(name: str, **options) -> Backend:
    from simgen.errors import InputError

    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}", key="--backend")
    mod, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(mod), cls)(**options)
