"""Seed streams that depend only on a SeedSequence's identity (entropy + spawn key), under names.

``SeedSequence.spawn`` is stateful: a second call returns different children.  Every subsystem that derives
streams uses :func:`streams`, which spawns from a fresh copy, so checking an episode before running it (or
replaying it later) yields exactly the streams the run used.

The streams of an episode have names, defined once here (their order is their spawn-key index, and it must never
change: it is what makes a seed reproduce an existing dataset):

- :func:`episode_streams` — ``params`` (sampling the scenario's parameters) and ``sim`` (the simulation);
- :func:`sim_streams` of ``sim`` — ``world`` (the builtin World: placements, traffic, dimensions, colours),
  ``backend`` (the backend's own draws: the builtin backend's scenery, the carla backend's blueprint choice and
  Traffic Manager seed) and ``sensors`` (one stream per rig sensor, then one for the mounting jitter).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


def streams(seed: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The first ``n`` children of ``seed``, whatever has been spawned from it already."""
    return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key).spawn(n)


class EpisodeStreams(NamedTuple):
    params: np.random.SeedSequence
    sim: np.random.SeedSequence


class SimStreams(NamedTuple):
    world: np.random.SeedSequence
    backend: np.random.SeedSequence
    sensors: np.random.SeedSequence


class SensorStreams(NamedTuple):
    per_sensor: dict  # sensor name -> SeedSequence
    mounting: np.random.SeedSequence


def episode_streams(seed: np.random.SeedSequence) -> EpisodeStreams:
    """An episode's named streams (children of the episode's own SeedSequence)."""
    return EpisodeStreams(*streams(seed, len(EpisodeStreams._fields)))


def sim_streams(sim: np.random.SeedSequence) -> SimStreams:
    """The simulation's named streams (children of ``episode_streams(seed).sim``); the same for every backend."""
    return SimStreams(*streams(sim, len(SimStreams._fields)))


def sensor_streams(sensors: np.random.SeedSequence, names: list[str]) -> SensorStreams:
    """One stream per sensor (rig order) and one for the mounting jitter, from ``sim_streams(...).sensors``."""
    ss = streams(sensors, len(names) + 1)
    return SensorStreams(dict(zip(names, ss)), ss[-1])
