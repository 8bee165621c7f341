"""The recorded per-tick actor states of an episode: a versioned, backend-neutral record for replay.

Every episode file carries the record (format_version 1, see README "Episode file layout"):

- ``actors/{id,name,kind,semantic,dims,colour}``: who is in the episode (fixed), ego = id 1 at index 0;
- ``actors/pose`` (N,A,4: x, y, z bottom centre, yaw), ``actors/pitch_roll`` (N,A,2, format_version >= 3; zeros
  for older files), ``actors/velocity`` (N,A,3), ``actors/accel`` (N,A), ``actors/door`` (N,A, signed door angle);
- ``frames/time_s``, ``lights/{id,state}``, ``collisions``, ``events/*``;
- attrs ``scenario_yaml`` (the concrete scenario), ``rig_yaml``, ``seed_entropy``/``seed_spawn_key``, ``tick_hz``.

Nothing in it depends on the backend that produced it, so a record from the carla backend can be re-rendered by
the builtin one and vice versa.  :meth:`Record.check` is the sanity check replay runs first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simgen.errors import InputError
from simgen.records import ActorStates

LIGHT_NAMES = {0: "red", 1: "yellow", 2: "green", 3: "off"}
SUPPORTED = (1, 2, 3)  # 2 changed only the image and LiDAR codec (LZ4), not the record; 3 added actors/pitch_roll


@dataclass
class Record:
    path: str
    format_version: int
    scenario: dict  # the concrete scenario as stored
    rig: dict
    seed_entropy: int
    seed_spawn_key: tuple[int, ...]
    tick_hz: float
    time_s: np.ndarray
    ids: np.ndarray
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    semantic: np.ndarray
    dims: np.ndarray
    colour: np.ndarray
    pose: np.ndarray
    velocity: np.ndarray
    accel: np.ndarray
    door: np.ndarray
    light_ids: tuple[str, ...]
    light_state: np.ndarray
    collisions: np.ndarray
    events: list[tuple[int, float, str, str]]
    index: int = 0  # attrs episode_index
    parameters: dict = None  # attrs parameters_json (the sampled scenario parameters)
    run_seed: int = 0
    pitch_roll: np.ndarray | None = None  # (N,A,2); None = level (files before format_version 3)

    @property
    def n_frames(self) -> int:
        return len(self.time_s)

    @property
    def episode_seed(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed_entropy, spawn_key=self.seed_spawn_key)

    def check(self) -> None:
        """Sanity check: shapes agree, time is regular at tick_hz, ids unique and the ego first."""
        N, A = self.pose.shape[:2]
        bad = []
        if self.velocity.shape[:2] != (N, A) or self.accel.shape != (N, A) or len(self.ids) != A:
            bad.append("actor arrays disagree in shape")
        if len(set(self.ids.tolist())) != A or (A and self.ids[0] != 1):
            bad.append("actor ids are not unique with the ego (1) first")
        if N > 1 and not np.allclose(np.diff(self.time_s), 1.0 / self.tick_hz, atol=1e-6):
            bad.append("frame times are not regular at tick_hz")
        if self.seed_entropy < 0:
            bad.append("negative seed_entropy")
        if not np.all(np.isfinite(self.pose)):
            bad.append("non-finite poses")
        if self.pitch_roll is not None and (self.pitch_roll.shape != (N, A, 2) or not np.all(np.isfinite(self.pitch_roll))):
            bad.append("actors/pitch_roll is not finite (N, A, 2)")
        if bad:
            raise InputError("not a valid record: " + "; ".join(bad), file=self.path)

    def frame(self, k: int):
        """(ActorStates, lights, collisions, events, time_s) of frame k."""
        st = ActorStates(ids=self.ids, names=self.names, kinds=self.kinds, semantic=self.semantic,
                         pose=self.pose[k].copy(), velocity=self.velocity[k].copy(), accel=self.accel[k].copy(),
                         dims=self.dims, door=self.door[k].copy(),
                         pitch_roll=None if self.pitch_roll is None else self.pitch_roll[k].copy())
        lights = {lid: LIGHT_NAMES[int(v)] for lid, v in zip(self.light_ids, self.light_state[k])} if len(self.light_ids) else {}
        coll = [(int(a), int(b)) for f, a, b in self.collisions if f == k]
        ev = [(t, a, n) for f, t, a, n in self.events if f == k]
        return st, lights, coll, ev, float(self.time_s[k])

    def apply_to(self, world) -> None:
        """Make a freshly built World's actors match the record (dims, colours, kinds), for rendering."""
        from simgen.classes import ACTOR_KINDS

        if len(world.actors) != len(self.ids):
            raise InputError(f"the scenario now builds {len(world.actors)} actors but the record has {len(self.ids)}; "
                             "--set may change weather, light and sensors in a replay, not who is in it", file=self.path)
        for a, i, n, k, d, c in zip(world.actors, self.ids, self.names, self.kinds, self.dims, self.colour):
            a.id, a.name, a.kind = int(i), n, ACTOR_KINDS[k]
            a.dims, a.colour = np.array(d, float), np.array(c, np.float32)


def read_record(path: str | Path) -> Record:
    """The record of an episode file, read through the validating :class:`~simgen.io.episode.Episode` reader
    (a missing, incomplete or corrupt file raises EpisodeError, an InputError)."""
    from simgen.io.episode import Episode

    path = str(path)
    with Episode(path) as ep:
        ver = int(ep.attr("format_version"))
        if ver not in SUPPORTED:
            raise ep.error(f"record format_version {ver}; this simgen reads {SUPPORTED}", key="format_version")
        ev = list(zip(ep.read("events/frame").tolist(), ep.read("events/time_s").tolist(),
                      ep.strings("events/actor"), ep.strings("events/name")))
        N, A = ep.n_frames, len(ep.read("actors/id"))
        rec = Record(
            path=path, format_version=ver,
            scenario=_yaml_attr(ep, "scenario_yaml"), rig=_yaml_attr(ep, "rig_yaml"),
            seed_entropy=_int_attr(ep, "seed_entropy"), seed_spawn_key=_spawn_key(ep),
            tick_hz=_float_attr(ep, "tick_hz"), time_s=ep.read("frames/time_s"),
            ids=ep.read("actors/id"), names=tuple(ep.strings("actors/name")), kinds=tuple(ep.strings("actors/kind")),
            semantic=ep.read("actors/semantic"), dims=ep.read("actors/dims").astype(float),
            colour=ep.read("actors/colour"), pose=ep.read("actors/pose"), velocity=ep.read("actors/velocity"),
            accel=ep.read("actors/accel"),
            door=ep.read("actors/door").astype(float) if "actors/door" in ep.f else np.zeros((N, A)),
            light_ids=tuple(ep.strings("lights/id")), light_state=ep.read("lights/state"),
            collisions=ep.read("collisions"), events=ev,
            index=_int_attr(ep, "episode_index", 0), parameters=ep.attr_json("parameters_json", {}),
            run_seed=_int_attr(ep, "run_seed", 0),
            pitch_roll=ep.read("actors/pitch_roll") if "actors/pitch_roll" in ep.f else None,
        )
    rec.check()
    return rec


def _yaml_attr(ep, name: str) -> dict:
    from simgen.spec.schema import parse_yaml

    text = ep.attr(name)
    # the limits of a scenario file (alias bombs, depth): an episode's stored YAML is input too
    d = parse_yaml(text, file=f"{ep.path}: attribute {name}") if isinstance(text, str) else None
    if not isinstance(d, dict):
        raise ep.error(f"attribute {name} is missing or not a YAML mapping", key=name)
    return d


def _int_attr(ep, name: str, default=None) -> int:
    v = ep.attr(name, default)
    try:
        if v is None or isinstance(v, (bool, np.bool_, float, np.floating)):
            raise ValueError
        return int(v)
    except (TypeError, ValueError):
        raise ep.error(f"attribute {name} is {v!r}; allowed: an integer", key=name) from None


def _float_attr(ep, name: str) -> float:
    v = ep.attr(name)
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(v, (bool, np.bool_, str)) or not np.isfinite(x) or x <= 0:
        raise ep.error(f"attribute {name} is {v!r}; allowed: a number > 0", key=name)
    return x


def _spawn_key(ep) -> tuple[int, ...]:
    key = ep.attr_json("seed_spawn_key")
    if not isinstance(key, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in key):
        raise ep.error(f"attribute seed_spawn_key is {key!r}; allowed: a JSON list of integers >= 0", key="seed_spawn_key")
    return tuple(key)
