"""The backend contract: what a backend produces each tick, independent of how it simulates.

A backend ``open``s a session for a concrete scenario and a rig; ``Session.step()`` advances one tick and returns
a :class:`~simgen.records.Frame` of plain arrays.  Annotators and writers only ever see Frames and specs (data flows one way).
Backends are registered by name in :data:`BACKENDS` and imported lazily (``carla`` stays optional).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# moved to simgen.records (issue 14); re-exported here so older imports keep working
from simgen.records import ActorStates, CameraData, Frame, LidarData  # noqa: F401


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
