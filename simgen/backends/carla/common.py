"""What every part of the carla backend shares: constants, CARLA's class ids, the tick settings, and the two
records of an actor (:class:`_Plan`: what to spawn, in simgen terms; :class:`_Actor`: what was spawned)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from simgen.backends.carla_server import CarlaServerLost, is_server_failure
from simgen.classes import ActorKind
from simgen.errors import InputError, RunError
from simgen.spec.scenario import Behaviour, Event

log = logging.getLogger("simgen.backends.carla")

INSTALL_HINT = "the carla backend needs the CARLA client: pip install 'simgen[carla]'"
SUPPORTED_SERVERS = ("0.9.15", "0.9.16")
MAX_SUBSTEP_S = 0.01  # CARLA: substeps should be at most 0.01 s (at least below 0.01666)
MAX_SUBSTEPS = 16  # CARLA accepts 1..16
SPAWN_LIFT_M = 0.15  # actors are spawned this far above the ground (CARLA's own spawn points lift them too)
SETTLE_S = 0.25  # ... and take 3-4 ticks (bouncing) to come to rest: this long is ticked, held, before frame 0
SETTLE_MIN_TICKS = 4
INSTANCE_ID_BITS = 16  # the instance camera encodes ids as G + 256 B: ids >= 65536 wrap
FAR_M = 1000.0
TM_FOLLOW_GAP_M = 2.0  # builtin IDM jam distance
KMH = 3.6

# classes that can belong to an actor (CARLA 0.9.14+ ids) and surfaces that never occlude one
THING_CLASSES = np.array([12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22], np.uint8)
GROUND_CLASSES = np.array([1, 2, 10, 11, 23, 24, 25], np.uint8)
# on a world generated from OpenDRIVE the procedural road meshes may be untagged (0: carla#2807, #4113); there the
# only untagged static meshes are those roads, so 0 counts as ground (never as an occluder)
GROUND_CLASSES_GENERATED = np.append(GROUND_CLASSES, np.uint8(0))
# prior share of a box silhouette an actor covers, when too little of it can be observed (rough shape estimates)
PRIOR_FILL = {"car": 0.8, "van": 0.85, "truck": 0.85, "bus": 0.9, "motorcycle": 0.5, "cyclist": 0.45,
              "pedestrian": 0.45, "child": 0.45, "ball": 0.78, "debris": 0.6}
LIGHT_NAMES = ("red", "yellow", "green")

SEM_LIDAR_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("cos", "<f4"), ("idx", "<u4"), ("tag", "<u4")])
DRIVES = ("auto", "carla", "simgen")
DOOR_OPEN_RAD = math.radians(70.0)  # the builtin simulator's full door opening


class SensorTimeout(RunError):
    """A sensor's data for a tick did not arrive within the timeout (never silently replaced by another tick's)."""


def substep_settings(dt: float) -> tuple[float, int]:
    """(max_substep_delta_time, max_substeps) for a fixed tick of ``dt`` seconds: substeps of at most 0.01 s, at
    most 16 of them, covering the whole tick.  InputError when the tick is too long for that (tick_hz < 6.25)."""
    n = max(1, math.ceil(dt / MAX_SUBSTEP_S - 1e-9))
    if n > MAX_SUBSTEPS:
        raise InputError(f"a tick of {dt:.3f} s needs {n} physics substeps of 0.01 s; CARLA allows {MAX_SUBSTEPS}; "
                         f"use tick_hz >= {1.0 / (MAX_SUBSTEP_S * MAX_SUBSTEPS):g}", key="tick_hz")
    return MAX_SUBSTEP_S, n


def footprints(pose: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(A,4,2) oriented footprints of boxes (pose x, y, ·, yaw; dims l, w, ·), corner order of the builtin world."""
    c, s = np.cos(pose[:, 3]), np.sin(pose[:, 3])
    l2, w2 = dims[:, 0] / 2, dims[:, 1] / 2
    local = np.stack([np.stack([l2, w2], -1), np.stack([l2, -w2], -1), np.stack([-l2, -w2], -1), np.stack([-l2, w2], -1)], 1)
    R = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # row-vector rotation, as World._footprints
    return np.einsum("akd,ade->ake", local, R) + pose[:, None, :2]


@dataclass
class _Plan:
    """An actor to spawn, in simgen terms (world frame, metres, radians); ``row`` is its index in the builtin World."""

    sid: int
    name: str
    kind: ActorKind
    is_ego: bool
    dims: np.ndarray
    colour: np.ndarray
    x: float
    y: float
    z: float  # ground height under the actor
    yaw: float
    speed: float
    behaviour: Behaviour
    events: tuple[Event, ...]
    lane: str | None = None
    lane_s: float = 0.0
    lateral: float = 0.0
    walk_left: float | None = None
    traffic: bool = False
    row: int = 0


@dataclass
class _Actor:
    plan: _Plan
    actor: object
    cid: int
    blueprint: str
    dims: np.ndarray
    T_actor_from_bottom: np.ndarray
    colour: np.ndarray
    driver: str  # vehicle | walker | prop
    behaviour: Behaviour = field(default_factory=Behaviour)
    mode: str = "idle"  # tm | profile | ramp | straight | hold | walk | kinematic | idle
    speed_cmd: float = 0.0
    decel: float = 0.0
    heading: float = 0.0  # world yaw of straight / walking motion (rad)
    walk_left: float | None = None
    walked: float = 0.0
    hesitate_until: float | None = None
    t0: float = 0.0  # time the current behaviour started (s)
    door_sign: float = 0.0  # open_door: +1 left front door, -1 right front door
    door_opened: bool = False
    dynamic_doors: bool = False  # the blueprint has has_dynamic_doors=true (open_door animates it)
    crashed: bool = False
    kin_pose: np.ndarray | None = None  # props: x, y, z (box bottom), yaw
    kin_velocity: np.ndarray | None = None  # props: commanded world velocity (m/s); CARLA reports 0 for teleports

    @property
    def sid(self) -> int:
        return self.plan.sid

    @property
    def name(self) -> str:
        return self.plan.name


def spawn_or_none(world, bp, transform, attach_to=None, what: str = ""):
    """``world.spawn_actor`` with its failure classified: the actor, or None when CARLA refused the spot (blocked,
    collision at the spawn position, ...).  A lost server raises :class:`CarlaServerLost` (so the restart-and-retry
    path runs).  ``try_spawn_actor`` cannot be used: LibCarla's World::TrySpawnActor swallows every exception,
    time-outs of a dead server included, and returns None, which would read as "the spot is blocked"."""
    try:
        if attach_to is None:
            return world.spawn_actor(bp, transform)
        return world.spawn_actor(bp, transform, attach_to=attach_to)
    except Exception as exc:  # noqa: BLE001 - classified here
        if is_server_failure(exc):
            raise CarlaServerLost(f"CARLA server lost while spawning {what or bp.id}: {exc}") from exc
        log.info("CARLA refused to spawn %s: %s", what or bp.id, exc)
        return None
