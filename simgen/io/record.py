"""The recorded per-tick actor states of an episode: a versioned, backend-neutral record for replay.

Every episode file carries the record (format_version 1, see README "Episode file layout"):

- ``actors/{id,name,kind,semantic,dims,colour}``: who is in the episode (fixed), ego = id 1 at index 0;
- ``actors/pose`` (N,A,4: x, y, z bottom centre, yaw), ``actors/velocity`` (N,A,3), ``actors/accel`` (N,A),
  ``actors/door`` (N,A, signed door angle);
- ``frames/time_s``, ``lights/{id,state}``, ``collisions``, ``events/*``;
- attrs ``scenario_yaml`` (the concrete scenario), ``rig_yaml``, ``seed_entropy``/``seed_spawn_key``, ``tick_hz``.

Nothing in it depends on the backend that produced it, so a record from the carla backend can be re-rendered by
the builtin one and vice versa.  :meth:`Record.check` is the sanity check replay runs first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from simgen.errors import InputError
from simgen.sim.world import ActorStates

LIGHT_NAMES = {0: "red", 1: "yellow", 2: "green", 3: "off"}
SUPPORTED = (1, 2)  # 2 changed only the image and LiDAR codec (LZ4), not the record


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
        if not np.all(np.isfinite(self.pose)):
            bad.append("non-finite poses")
        if bad:
            raise InputError("not a valid record: " + "; ".join(bad), file=self.path)

    def frame(self, k: int):
        """(ActorStates, lights, collisions, events, time_s) of frame k."""
        st = ActorStates(ids=self.ids, names=self.names, kinds=self.kinds, semantic=self.semantic,
                         pose=self.pose[k].copy(), velocity=self.velocity[k].copy(), accel=self.accel[k].copy(),
                         dims=self.dims, door=self.door[k].copy())
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
    path = str(path)
    if not Path(path).exists():
        raise InputError("episode file not found", file=path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"cannot open as HDF5: {e}", file=path) from None
    with f:
        if f.attrs.get("format") != "simgen-episode":
            raise InputError("not a simgen episode file", file=path)
        if not bool(f.attrs.get("complete", False)):
            raise InputError("episode is incomplete (an interrupted run); it cannot be replayed", file=path)
        ver = int(f.attrs.get("format_version", 0))
        if ver not in SUPPORTED:
            raise InputError(f"record format_version {ver}; this simgen reads {SUPPORTED}", file=path)
        ev = list(zip(f["events/frame"][:].tolist(), f["events/time_s"][:].tolist(),
                      f["events/actor"].asstr()[:].tolist(), f["events/name"].asstr()[:].tolist()))
        A = len(f["actors/id"])
        rec = Record(
            path=path, format_version=ver,
            scenario=yaml.safe_load(f.attrs["scenario_yaml"]), rig=yaml.safe_load(f.attrs["rig_yaml"]),
            seed_entropy=int(f.attrs["seed_entropy"]), seed_spawn_key=tuple(json.loads(f.attrs["seed_spawn_key"])),
            tick_hz=float(f.attrs["tick_hz"]), time_s=f["frames/time_s"][:],
            ids=f["actors/id"][:], names=tuple(f["actors/name"].asstr()[:]), kinds=tuple(f["actors/kind"].asstr()[:]),
            semantic=f["actors/semantic"][:], dims=f["actors/dims"][:].astype(float), colour=f["actors/colour"][:],
            pose=f["actors/pose"][:], velocity=f["actors/velocity"][:], accel=f["actors/accel"][:],
            door=f["actors/door"][:].astype(float) if "actors/door" in f else np.zeros((len(f["frames/time_s"]), A)),
            light_ids=tuple(f["lights/id"].asstr()[:]), light_state=f["lights/state"][:],
            collisions=f["collisions"][:], events=ev,
        )
    rec.check()
    return rec
