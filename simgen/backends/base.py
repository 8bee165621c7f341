"""The backend contract: what a backend produces each tick, independent of how it simulates.

A backend ``open``s a session for a concrete scenario and a rig; ``Session.step()`` advances one tick and returns
a :class:`~simgen.records.Frame` of plain arrays.  Annotators and writers only ever see Frames and specs (data flows one way).
Backends are registered by name in :data:`BACKENDS` and imported lazily (``carla`` stays optional).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

# moved to simgen.records (issue 14); re-exported here so older imports keep working
from simgen.records import ActorInfo, ActorStates, CameraData, Frame, LidarData, StaticInfo  # noqa: F401


@runtime_checkable
class Session(Protocol):
    """One episode of a backend: everything the runner (:func:`simgen.runner.run_episode`) uses, by name."""

    n_frames: int  # frames the episode will produce

    def step(self) -> Frame:
        """Advance one tick and return its frame (frame k is at time k / tick_hz)."""
        ...

    def static_info(self) -> StaticInfo:
        """The map, every actor (ids, kinds, rendered dims, colours) and the traffic-light ids."""
        ...

    def provenance(self) -> dict:
        """Backend-specific facts stored with the episode (versions, blueprints ...); {} when there are none."""
        ...

    def close(self) -> None:
        """Release everything the session holds (idempotent, never raises)."""
        ...


@runtime_checkable
class Backend(Protocol):
    name: str

    def open(self, scenario, rig, *, seed: np.random.SeedSequence, source: str, n_frames: int | None = None,
             record=None) -> Session:
        """``seed``: the episode's ``sim`` stream (:func:`simgen.seeding.episode_streams`); ``record``
        (simgen.io.record.Record): re-render recorded actor states instead of simulating."""
        ...

    def close(self) -> None:
        """Release what the backend holds across episodes (e.g. stop a CARLA server it launched)."""
        ...


BACKENDS = {"builtin": "simgen.backends.builtin:BuiltinBackend", "carla": "simgen.backends.carla:CarlaBackend"}


def get_backend(name: str, **options) -> Backend:
    from simgen.errors import InputError

    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}", key="--backend")
    mod, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(mod), cls)(**options)
