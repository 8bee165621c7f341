"""The ``carla`` backend: plays simgen scenarios and rigs in a CARLA 0.9.15/0.9.16 server and returns the same
:class:`~simgen.backends.base.Frame` contents as the builtin backend.

Usage: ``simgen run SCENARIO --backend carla [--carla-host H --carla-port P]``.  The ``carla`` client package is
optional; without it, constructing the backend raises :class:`~simgen.errors.InputError` saying how to install it.

Episode set-up (``CarlaBackend.open``), every step of which is undone on exit (normal end, error, Ctrl-C, and
errors inside ``open`` itself): every actor and sensor spawned is destroyed in one batch of
``carla.command.DestroyActor``, the world's previous settings are restored, the Traffic Manager is put back in
asynchronous mode if the world was asynchronous, frozen traffic lights are released.

- **Connection**: a client with a timeout; client and server versions are compared (a warning on mismatch); an
  unreachable or crashed server is retried on a fresh one when simgen manages the server
  (:mod:`simgen.backends.carla_server`).
- **Map**: a builtin map is exported to OpenDRIVE (:mod:`simgen.world.opendrive`) and loaded with
  ``client.generate_opendrive_world`` (skipped when the server already runs that exact OpenDRIVE); a CARLA town
  ("Town03", ...) is loaded with ``client.load_world``.
- **Time**: synchronous mode, ``fixed_delta_seconds = 1 / tick_hz``, physics substeps of at most 0.01 s with
  ``max_substep_delta_time * max_substeps >= fixed_delta_seconds`` and ``max_substeps <= 16``
  (:func:`substep_settings`).  Frame *k* is the *k*-th tick after spawning, at ``time_s = k / tick_hz``.
- **Actors**: the same actors as the builtin backend: the builtin :class:`~simgen.sim.world.World` is built from
  the same seed stream (``simgen.seeding.streams``), so placements, traffic, dimensions asked for and colours are
  identical; sensors get the same jittered mountings.  Each actor gets the CARLA blueprint of its kind whose
  bounding box is closest to those dimensions (ties broken at random from the episode seed); the dimensions
  *reported* (static info and every frame) are CARLA's bounding box, i.e. what was rendered.  Lane placements are
  checked against ``map.get_waypoint_xodr`` through the one lane mapping in
  :class:`~simgen.world.opendrive.OpenDriveLayout`: a mismatch of more than 0.5 m is an error.
- **Who moves the actors** (``drive``):

  - ``"carla"``: CARLA's controllers, with simgen's semantics.  ``lane_follow`` → Traffic Manager autopilot (in
    synchronous mode, seeded from the episode seed) with the desired speed, no automatic lane changes,
    ``obey_lights``/``obstacles`` mapped to the TM's ignore percentages, the builtin route through junctions
    (``turns``, then straight on) given with ``set_path``; ``scripted`` → the TM with the profile's speed each
    tick, ignoring everything; ``lane_change`` → ``force_lane_change`` (the TM decides the manoeuvre's length, not
    ``duration_s``); ``brake``/``stop`` → autopilot off, throttle released and a target-velocity ramp
    ``v ← max(0, v − decel·dt)`` each tick, then the hand brake; ``parked``/``stand`` → hand brake / zero walker
    speed; ``open_door`` → hand brake and ``open_door``; ``walk`` (and any pedestrian motion) → ``WalkerControl``
    towards the heading for ``distance_m``, with the hesitation pause; vehicles off any lane move straight by
    target velocity; props (ball, debris) are moved kinematically with ``set_transform``.  Triggers are evaluated
    before each tick by ``World.check_events`` itself on the observed states (the builtin World kept in step with
    CARLA; a small shim of it on a CARLA town), so their semantics are the builtin ones by construction.  Collisions
    are the builtin's footprint test on the reported boxes; crashed actors stop, as in the builtin simulator.
  - ``"simgen"``: the builtin simulator steps the scenario (every behaviour, plugin and trigger) and CARLA renders
    it: vehicles and props are teleported to its poses with physics off, walkers are put one tick short of their
    pose and walked into it (so they animate).  Events, lights and collisions are the simulator's; velocities too.
  - ``"auto"`` (default): ``"carla"`` unless the scenario uses something CARLA's controllers cannot play
    (:func:`physics_unsupported`: wrong-way driving, AEB, ``stop_at_line``, plugin behaviours), then ``"simgen"``
    with a warning.  ``open(..., record=...)`` replays a recorded episode the ``"simgen"`` way.

  Traffic-light phases are the scenario's cycle (``World.light_states``), set on CARLA's lights through the API
  (lights frozen).  Weather (with ramps and time of day, :mod:`simgen.sim.environment`) is set before every tick
  it changes; ``Frame.applied`` lists the values used.  Lens distortion (``distortion``) is not supported: CARLA
  renders pinhole cameras (an InputError says so).
- **Sensors** from the same rig: per camera ``sensor.camera.rgb``, ``.depth``, ``.semantic_segmentation`` and
  ``.instance_segmentation`` with the rig's attributes; per LiDAR a ``sensor.lidar.ray_cast_semantic`` with the
  rig's geometry attributes.  All data is queued by frame id; a step waits (with a timeout) for every sensor's
  data *of that frame*: data of an older frame is discarded, out-of-order arrivals are buffered, and a missing
  sensor is an error (:class:`SensorTimeout`), never a mix of ticks.  Decoding is vectorised: BGRA → RGB; depth
  ``1000 · (R + 256 G + 65536 B) / (256³ − 1)`` metres (z-depth, 1000 where nothing is hit); semantic tag in R.
- **LiDAR model**: CARLA's ``ray_cast`` sensor drops rays at random, adds range noise and computes intensity as
  ``exp(−atmosphere_attenuation_rate · d)``; its points cannot be joined one-to-one with the labels of a second
  (semantic) sensor.  simgen therefore casts only the semantic LiDAR (exact ``object_idx``/``object_tag`` per
  point) and applies the ray_cast post-processing of CARLA's ``RayCastLidar.cpp`` to those points with the
  sensor's seeded random stream: general drop-off, intensity drop-off (keep if I > limit, else with probability
  ``(zero/limit)·I + 1 − zero``), Gaussian noise along the ray.  Every returned point therefore has its true label.
  Points arrive in the sensor frame with y to the right and are mirrored to y left.  CARLA casts a tick's rays at
  the end-of-tick state, so every point's ``time_s`` is the frame time (``T_world_from_sensor_start`` is the
  sensor pose at the previous frame, as the Frame contract defines it; frame 0 repeats its own pose).
- **Instance ids**: the instance camera's id (G + 256 B) is Unreal's object id in CARLA 0.9.15 and CARLA's actor
  id where available in later releases; neither is trusted blindly.  Each id is resolved geometrically once: its
  pixels are back-projected with the depth image and assigned to the simgen actor whose box holds most of them
  (ids found to be static scenery are cached as 0).  The semantic LiDAR's ``object_idx`` is CARLA's actor id and
  maps directly.
- **amodal_pixels is an estimate** (CARLA cannot render an actor with the others hidden): the actor's visible
  pixels plus the *occluded* part of its projected 3-D box silhouette (pixels where something nearer than the box's
  far face is seen) times the actor's *fill ratio* — the share of the silhouette it covers where that can be
  observed (pixels showing the actor, or showing ground or something beyond the box).  With less than a quarter of
  the silhouette observable a per-kind prior fill ratio is used.  Unoccluded actors get exactly their visible count;
  visible fractions of occluded actors are approximate.  See docs/carla.md.
- **Static info** reports the CARLA bounding-box dims; ``colour`` is the colour set on the blueprint's ``color``
  attribute (linear RGB), NaN where the blueprint has none (walkers, props).

Frames: everything CARLA returns is converted by :mod:`simgen.backends.carla_frames` only.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from simgen.records import ActorInfo, CameraData, Frame, LidarData, StaticInfo
from simgen.backends.carla_frames import (
    T_actor_from_box_bottom, bbox_dims, location_to_carla, matrix_from_carla, matrix_to_carla, points_from_carla,
    vector_to_carla, xyz_from_carla,
)
from simgen.backends.carla_server import CarlaServer, CarlaServerLost, find_carla_root, is_server_failure, port_plan, retrying
from simgen.classes import ACTOR_KINDS, ActorKind
from simgen.errors import InputError, RunError
from simgen.geometry import T_BODY_FROM_OPTICAL, box_corners, clip_polygon_near, intrinsics_from_fov, invert, pose_matrix, project
from simgen.spec.rig import RigSpec
from simgen.spec.scenario import Behaviour, Event, ScenarioSpec

log = logging.getLogger(__name__)

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
# Vehicle blueprints per simgen kind, in order: the ``base_type`` values that mean it (VehicleParameters.h documents
# car / truck / van / motorcycle and the misspelt "bycicle"; "bicycle" and "bus" are accepted too in case a release
# uses them), then blueprint-id keywords (from the 0.9.16 vehicle catalogue), then base types of a stand-in, then
# the number of wheels.  The first of these that leaves any blueprint decides; the box fit picks among them.
VEHICLE_CHOICE = {
    "car": (("car",), (), (), 4),
    "van": (("van",), ("sprinter", "t2", "ambulance", ".van"), (), 4),
    "truck": (("truck",), ("truck", "carlacola", "firetruck"), (), 4),
    "bus": (("bus",), ("fusorosa", "bus"), ("truck", "van"), 4),
    "motorcycle": (("motorcycle",), ("motorcycle", "motorbike", "harley", "kawasaki", "ninja", "vespa", "yamaha", "yzf"), (), 2),
    "cyclist": (("bycicle", "bicycle"), ("bicycle", "crossbike", "century", "omafiets", "diamondback", "gazelle"), (), 2),
}
BASE_TYPES = {k: v[0][0] for k, v in VEHICLE_CHOICE.items()}  # the documented base type of each kind
# Props from CARLA's props catalogue (Docs/catalogue_props.md).  It has no ball: a ball is rendered as the first of
# BALL_STAND_INS the server offers (a roughly round object of about a ball's size), logged, see docs/carla.md.
BALL_STAND_INS = ("static.prop.motorhelmet", "static.prop.bike helmet")
DEBRIS_PROPS = ("static.prop.dirtdebris01", "static.prop.dirtdebris02", "static.prop.dirtdebris03", "static.prop.brokentile01",
                "static.prop.brokentile02", "static.prop.brokentile03", "static.prop.brokentile04", "static.prop.box01",
                "static.prop.box02", "static.prop.box03", "static.prop.creasedbox01", "static.prop.creasedbox02",
                "static.prop.creasedbox03", "static.prop.trashbag", "static.prop.barrel", "static.prop.ironplank")
PROP_CHOICE = {"ball": BALL_STAND_INS, "debris": DEBRIS_PROPS}
LIGHT_NAMES = ("red", "yellow", "green")

SEM_LIDAR_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("cos", "<f4"), ("idx", "<u4"), ("tag", "<u4")])


class SensorTimeout(RunError):
    """A sensor's data for a tick did not arrive within the timeout (never silently replaced by another tick's)."""


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


def _load_carla():
    """The ``carla`` module, or InputError with the install hint (tests patch this to inject a double)."""
    try:
        import carla  # noqa: PLC0415 - optional dependency, imported at the edge
    except ImportError as exc:
        raise InputError(INSTALL_HINT, key="--backend") from exc
    return carla


# =====================================================================================================================
# Pure helpers (no CARLA needed)
# =====================================================================================================================


def substep_settings(dt: float) -> tuple[float, int]:
    """(max_substep_delta_time, max_substeps) for a fixed tick of ``dt`` seconds: substeps of at most 0.01 s, at
    most 16 of them, covering the whole tick.  InputError when the tick is too long for that (tick_hz < 6.25)."""
    n = max(1, math.ceil(dt / MAX_SUBSTEP_S - 1e-9))
    if n > MAX_SUBSTEPS:
        raise InputError(f"a tick of {dt:.3f} s needs {n} physics substeps of 0.01 s; CARLA allows {MAX_SUBSTEPS}; "
                         f"use tick_hz >= {1.0 / (MAX_SUBSTEP_S * MAX_SUBSTEPS):g}", key="tick_hz")
    return MAX_SUBSTEP_S, n


def _image_array(raw, height: int, width: int) -> np.ndarray:
    a = np.frombuffer(raw, dtype=np.uint8)
    if a.size != height * width * 4:
        raise RunError(f"image buffer has {a.size} bytes; expected {height}x{width}x4")
    return a.reshape(height, width, 4)


def decode_bgra(raw, height: int, width: int) -> np.ndarray:
    """(H,W,3) uint8 RGB from CARLA's BGRA image buffer."""
    return np.ascontiguousarray(_image_array(raw, height, width)[:, :, 2::-1])


def decode_depth(raw, height: int, width: int) -> np.ndarray:
    """(H,W) float32 z-depth in metres from CARLA's depth camera: 1000 · (R + 256 G + 65536 B) / (256³ − 1)."""
    a = _image_array(raw, height, width).astype(np.float64)
    norm = (a[:, :, 2] + a[:, :, 1] * 256.0 + a[:, :, 0] * 65536.0) / (256.0 ** 3 - 1.0)
    return (FAR_M * norm).astype(np.float32)


def decode_semantic(raw, height: int, width: int) -> np.ndarray:
    """(H,W) uint8 CARLA semantic tag (the R channel)."""
    return np.ascontiguousarray(_image_array(raw, height, width)[:, :, 2])


def decode_instance(raw, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance camera: (semantic tag (H,W) uint8 from R, object id (H,W) uint32 = G + 256 B)."""
    a = _image_array(raw, height, width)
    return np.ascontiguousarray(a[:, :, 2]), a[:, :, 1].astype(np.uint32) | (a[:, :, 0].astype(np.uint32) << 8)


def decode_semantic_lidar(raw, counts: list[int]) -> dict[str, np.ndarray]:
    """Semantic LiDAR buffer → xyz (N,3) float32 in the simgen sensor frame (y left), cos_inc (N,), object_idx
    (N,) uint32 CARLA actor ids, tag (N,) uint8, channel (N,) uint16 (points come grouped by channel, 0 = top)."""
    rec = np.frombuffer(raw, dtype=SEM_LIDAR_DTYPE)
    if len(rec) != sum(counts):
        raise RunError(f"semantic LiDAR buffer has {len(rec)} points; the channel counts add up to {sum(counts)}")
    xyz = points_from_carla(np.stack([rec["x"], rec["y"], rec["z"]], axis=-1).astype(np.float32))
    channel = np.repeat(np.arange(len(counts), dtype=np.uint16), counts)
    return {"xyz": xyz, "cos_inc": rec["cos"].copy(), "object_idx": rec["idx"].copy(), "tag": rec["tag"].astype(np.uint8),
            "channel": channel}


def lidar_postprocess(xyz: np.ndarray, attrs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CARLA ``sensor.lidar.ray_cast`` post-processing applied to exact points: returns (keep mask, intensity,
    noisy xyz).  Intensity = exp(−atmosphere_attenuation_rate · range); drop-off and range noise as in CARLA's
    RayCastLidar (random numbers drawn for every point so the stream does not depend on what was hit)."""
    n = len(xyz)
    d = np.linalg.norm(xyz, axis=1).astype(np.float64)
    intensity = np.exp(-attrs.atmosphere_attenuation_rate * d).astype(np.float32)
    u_gen, u_int = rng.random(n), rng.random(n)
    noise = rng.normal(0.0, attrs.noise_stddev, n) if attrs.noise_stddev > 0 else np.zeros(n)
    keep = u_gen >= attrs.dropoff_general_rate
    if attrs.dropoff_intensity_limit > 0:
        alpha = attrs.dropoff_zero_intensity / attrs.dropoff_intensity_limit
        beta = 1.0 - attrs.dropoff_zero_intensity
        keep &= (intensity > attrs.dropoff_intensity_limit) | (u_int < alpha * intensity + beta)
    unit = xyz / np.maximum(d, 1e-9)[:, None]
    out = (xyz + unit * noise[:, None]).astype(np.float32)
    return keep, intensity, out


def linear_to_srgb8(c) -> tuple[int, int, int]:
    """8-bit sRGB of a linear-RGB colour in [0, 1] (CARLA's blueprint ``color`` attribute is 8-bit sRGB)."""
    c = np.clip(np.asarray(c, float), 0.0, 1.0)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return tuple(int(v) for v in np.round(s * 255.0))


def srgb8_to_linear(rgb) -> np.ndarray:
    s = np.asarray(rgb, float) / 255.0
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4).astype(np.float32)


def choose_blueprint(candidates: dict[str, np.ndarray], target_lwh, rng: np.random.Generator, tol: float = 0.15) -> str:
    """Blueprint id whose bounding-box dims (l, w, h) are closest to ``target_lwh`` (sum of |log ratio|); among
    those within ``tol`` of the best score one is drawn from ``rng`` (variety without giving up the fit)."""
    if not candidates:
        raise ValueError("no candidate blueprints")
    ids = sorted(candidates)
    dims = np.array([candidates[i] for i in ids], float)
    score = np.abs(np.log(np.maximum(dims, 1e-3) / np.maximum(np.asarray(target_lwh, float), 1e-3))).sum(axis=1)
    near = np.flatnonzero(score <= score.min() + tol)
    return ids[int(near[rng.integers(len(near))])]


def _base_type(b) -> str:
    return b.get_attribute("base_type").as_str().strip().lower() if b.has_attribute("base_type") else ""


def _wheels(b) -> int | None:
    return b.get_attribute("number_of_wheels").as_int() if b.has_attribute("number_of_wheels") else None


def vehicle_candidates(kind: str, bps: list) -> tuple[list, str]:
    """(vehicle blueprints for a simgen vehicle ``kind``, how they were found): by ``base_type``; when that filter
    is empty, by blueprint-id keywords; then by a stand-in's base type (a bus: the trucks); then by wheel count."""
    base, keywords, stand_in, wheels = VEHICLE_CHOICE[kind]
    for how, pick in (("base_type", lambda b: _base_type(b) in base),
                      ("id keyword", lambda b: any(k in b.id.lower() for k in keywords)),
                      ("stand-in base_type " + "/".join(stand_in), lambda b: _base_type(b) in stand_in),
                      (f"wheel count ({wheels})", lambda b: _wheels(b) == wheels)):
        out = [b for b in bps if pick(b)]
        if out:
            return out, how
    return [], "nothing"


def prop_candidates(kind: str, props: list) -> list:
    """Documented props for a simgen prop kind, in preference order (a ball: the first stand-in available only)."""
    by_id = {b.id: b for b in props}
    out = [by_id[i] for i in PROP_CHOICE.get(kind, ()) if i in by_id]
    return out[:1] if kind == "ball" else out


def needs_dynamic_doors(plan) -> bool:
    """Whether a planned vehicle opens a door during the episode (its behaviour or an event's)."""
    return plan.kind.vehicle and any(b.type == "open_door" for b in [plan.behaviour] + [e.do for e in plan.events])


def has_dynamic_doors(bp) -> bool:
    return bp.has_attribute("has_dynamic_doors") and bp.get_attribute("has_dynamic_doors").as_str().lower() == "true"


def footprints(pose: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(A,4,2) oriented footprints of boxes (pose x, y, ·, yaw; dims l, w, ·), corner order of the builtin world."""
    c, s = np.cos(pose[:, 3]), np.sin(pose[:, 3])
    l2, w2 = dims[:, 0] / 2, dims[:, 1] / 2
    local = np.stack([np.stack([l2, w2], -1), np.stack([l2, -w2], -1), np.stack([-l2, -w2], -1), np.stack([-l2, w2], -1)], 1)
    R = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # row-vector rotation, as World._footprints
    return np.einsum("akd,ade->ake", local, R) + pose[:, None, :2]


# ------------------------------------------------------------------------------------------------ frame matching
class FrameCollector:
    """Collects sensor data by frame id from CARLA's callback threads; :meth:`wait` returns one frame's data.

    Data for a frame at or before the last one handed out (or abandoned) is late and discarded.  Data for later
    frames is buffered (out-of-order arrivals).  A second item from one sensor for one frame keeps the first.
    """

    def __init__(self, keys: list[str]):
        self.keys = frozenset(keys)
        self._cv = threading.Condition()
        self._buf: dict[int, dict[str, object]] = {}
        self._done = -1
        self.discarded_late = 0
        self.duplicates = 0

    def callback(self, key: str):
        if key not in self.keys:
            raise KeyError(key)
        return lambda data: self.put(key, data)

    def put(self, key: str, data) -> None:
        frame = int(data.frame)
        with self._cv:
            if frame <= self._done:
                self.discarded_late += 1
                return
            slot = self._buf.setdefault(frame, {})
            if key in slot:
                self.duplicates += 1
                return
            slot[key] = data
            self._cv.notify_all()

    def wait(self, frame: int, timeout_s: float) -> dict[str, object]:
        """Every sensor's data for ``frame``; SensorTimeout naming the missing sensors after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                slot = self._buf.get(frame, {})
                if self.keys <= slot.keys():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(self.keys - slot.keys())
                    self._abandon(frame)
                    raise SensorTimeout(f"frame {frame}: no data from {', '.join(missing)} within {timeout_s:g} s "
                                        f"(got {', '.join(sorted(slot)) or 'nothing'})")
                self._cv.wait(left)
            got = self._buf.pop(frame)
            self._abandon(frame)
            return got

    def _abandon(self, frame: int) -> None:
        self._done = max(self._done, frame)
        for f in [f for f in self._buf if f <= frame]:
            self.discarded_late += len(self._buf.pop(f))


# ----------------------------------------------------------------------------------------- instance ids and amodal
def _pixel_points_world(K, T_world_from_sensor, rows, cols, depth) -> np.ndarray:
    """World points (N,3) of pixels (rows, cols) with z-depth ``depth`` (m)."""
    x = (cols + 0.5 - K[0, 2]) / K[0, 0] * depth
    y = (rows + 0.5 - K[1, 2]) / K[1, 1] * depth
    p_opt = np.stack([x, y, depth], axis=-1)
    T = T_world_from_sensor @ T_BODY_FROM_OPTICAL
    return p_opt @ T[:3, :3].T + T[:3, 3]


class InstanceResolver:
    """Maps the instance camera's object ids to simgen actor ids (0 = not an actor), geometrically, with a cache.

    An id is assigned to the actor whose box (inflated by ``margin_m``) contains at least ``min_share`` of its
    back-projected pixels; ids of non-actor classes, or whose pixels fall outside every box, map to 0.  Decisions
    based on enough pixels are cached for the episode (CARLA's ids are stable for an actor's lifetime).
    """

    def __init__(self, direct: dict[int, int], margin_m: float = 0.3, min_share: float = 0.6, cache_min_px: int = 30):
        # CARLA actor id -> simgen id (valid where the camera reports actor ids).  The camera's id is 16 bits
        # (G + 256 B), so actor ids >= 65536 arrive wrapped: the hint is keyed by the wrapped id, and ids two
        # actors of the episode share after wrapping give no hint (geometry decides for them).
        mask = (1 << INSTANCE_ID_BITS) - 1
        wrapped: dict[int, list[int]] = {}
        for cid, sid in direct.items():
            wrapped.setdefault(int(cid) & mask, []).append(int(sid))
        self.direct = {w: v[0] for w, v in wrapped.items() if len(v) == 1}
        self.wrapped = any(int(c) > mask for c in direct)
        self.cache: dict[int, int] = {}
        self.margin, self.min_share, self.cache_min_px = margin_m, min_share, cache_min_px

    def resolve(self, raw: np.ndarray, tag: np.ndarray, depth: np.ndarray, K: np.ndarray, T_world_from_sensor: np.ndarray,
                T_world_from_box: np.ndarray, dims: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """simgen ids (H,W) of the instance camera's ids ``raw`` (H,W) and tags ``tag`` (H,W).  Pixels are grouped
        by (tag, id), not id alone: a wrapped actor id can equal a static mesh's id, never with the same tag."""
        raw = (raw.astype(np.uint32) & np.uint32(0xFFFF)) | (tag.astype(np.uint32) << np.uint32(16))
        uniq, inv = np.unique(raw.ravel(), return_inverse=True)
        out = np.zeros(len(uniq), np.uint32)
        todo = []
        for k, u in enumerate(uniq.tolist()):
            if u & 0xFFFF == 0:
                continue
            if u in self.cache:
                out[k] = self.cache[u]
            else:
                todo.append(k)
        if todo and len(ids):
            todo_arr = np.array(todo)
            pix_of = np.full(len(uniq), -1, np.int64)
            pix_of[todo_arr] = np.arange(len(todo_arr))
            sel = pix_of[inv] >= 0
            is_thing = np.isin(tag.ravel(), THING_CLASSES)
            grp = pix_of[inv[sel]]
            n_pix = np.bincount(grp, minlength=len(todo))
            n_thing = np.bincount(grp[is_thing[sel]], minlength=len(todo))
            use = sel.copy()
            use[sel] = is_thing[sel]
            flat = np.flatnonzero(use)
            H, W = raw.shape
            rows, cols = flat // W, flat % W
            pw = _pixel_points_world(K, T_world_from_sensor, rows.astype(float), cols.astype(float), depth.ravel()[flat].astype(float))
            T_box_from_world = invert(T_world_from_box)
            local = np.einsum("aij,nj->ani", T_box_from_world[:, :3, :3], pw) + T_box_from_world[:, None, :3, 3]
            inside = np.all(np.abs(local) <= dims[:, None, :] / 2 + self.margin, axis=-1)  # (A, N)
            g = pix_of[inv[flat]]
            counts = np.zeros((len(todo), len(ids)), np.int64)
            for a in range(len(ids)):
                counts[:, a] = np.bincount(g[inside[a]], minlength=len(todo))
            for t, k in enumerate(todo):
                u = int(uniq[k])
                n = int(n_pix[t])
                best = int(np.argmax(counts[t])) if counts.shape[1] else 0
                share = counts[t, best] / n if n else 0.0
                direct = self.direct.get(u & 0xFFFF)
                if direct is not None:
                    da = np.flatnonzero(ids == direct)
                    if len(da) and n and counts[t, da[0]] / n >= 0.5:
                        best, share = int(da[0]), counts[t, da[0]] / n
                if n and share >= self.min_share and counts[t, best] >= 3:
                    out[k] = ids[best]
                    if n >= self.cache_min_px:
                        self.cache[u] = int(ids[best])
                elif n >= self.cache_min_px and (n_thing[t] == 0 or share < 0.05):
                    self.cache[u] = 0
        return out[inv].reshape(raw.shape)


def _convex_mask(uv: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """(r1-r0, c1-c0) bool: pixels of the ROI whose centre lies in the convex hull of points ``uv`` (N,2)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = uv[ConvexHull(uv).vertices]  # counter-clockwise in (u, v)
    except (QhullError, ValueError):
        return np.zeros((r1 - r0, c1 - c0), bool)
    u = np.arange(c0, c1) + 0.5
    v = np.arange(r0, r1) + 0.5
    inside = np.ones((len(v), len(u)), bool)
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        e = b - a
        inside &= (e[0] * (v[:, None] - a[1]) - e[1] * (u[None, :] - a[0])) >= -1e-9
    return inside


def estimate_amodal(K: np.ndarray, T_world_from_sensor: np.ndarray, T_world_from_box: np.ndarray, dims: np.ndarray,
                    ids: np.ndarray, kinds: tuple[str, ...], instance: np.ndarray, depth: np.ndarray,
                    semantic: np.ndarray, skip: set[int] = frozenset(), ground: np.ndarray = GROUND_CLASSES) -> dict[int, int]:
    """Estimated pixels each actor would cover with nothing in front (see the module docstring).  ``ground``: the
    semantic tags that never occlude (GROUND_CLASSES_GENERATED on worlds generated from OpenDRIVE)."""
    H, W = instance.shape
    vis_total = np.bincount(np.minimum(instance.ravel(), int(ids.max()) + 1 if len(ids) else 1).astype(np.int64),
                            minlength=(int(ids.max()) + 2) if len(ids) else 2)
    T_opt_from_world = invert(T_world_from_sensor @ T_BODY_FROM_OPTICAL)
    corners = box_corners(T_opt_from_world @ T_world_from_box, dims) if len(ids) else np.zeros((0, 8, 3))
    out: dict[int, int] = {}
    for k, aid in enumerate(ids.tolist()):
        if aid in skip:
            continue
        visible = int(vis_total[aid])
        pts = clip_polygon_near(corners[k], near=0.05)
        if len(pts) == 0:
            out[aid] = visible
            continue
        uv, _ = project(K, pts)
        uv = uv[np.all(np.isfinite(uv), axis=1)]
        c0, r0 = np.maximum(np.floor(uv.min(axis=0)).astype(int), 0)
        c1, r1 = np.minimum(np.ceil(uv.max(axis=0)).astype(int) + 1, [W, H])
        if c0 >= c1 or r0 >= r1:
            out[aid] = visible
            continue
        sil = _convex_mask(uv, r0, r1, c0, c1)
        n_sil = int(sil.sum())
        if n_sil == 0:
            out[aid] = visible
            continue
        inst = instance[r0:r1, c0:c1]
        mine = sil & (inst == aid)
        other = sil & (inst != aid)
        absent = other & ((depth[r0:r1, c0:c1] > corners[k, :, 2].max()) | np.isin(semantic[r0:r1, c0:c1], ground))
        occluded = int((other & ~absent).sum())
        observed = int(mine.sum()) + int(absent.sum())
        fill = int(mine.sum()) / observed if observed >= max(20, 0.25 * n_sil) else PRIOR_FILL.get(kinds[k], 0.7)
        out[aid] = max(visible, int(round(visible + fill * occluded)))
    return out


# =====================================================================================================================
# Backend and session
# =====================================================================================================================

DRIVES = ("auto", "carla", "simgen")
# behaviours CARLA's own controllers can play (drive="carla"); the rest need the builtin simulator (drive="simgen")
PHYSICS_BEHAVIOURS = ("lane_follow", "scripted", "brake", "stop", "lane_change", "parked", "stand", "open_door", "walk")
DOOR_OPEN_RAD = math.radians(70.0)  # the builtin simulator's full door opening


def physics_unsupported(spec: ScenarioSpec, builtin_map: bool) -> list[str]:
    """What in a scenario CARLA's own controllers (``drive="carla"``) cannot play; empty when everything can."""
    items = [("ego", spec.ego.behaviour, spec.ego.events)] + [(a.id, a.behaviour, a.events) for a in spec.actors]
    out = []
    for who, b0, events in items:
        for b in [b0] + [e.do for e in events]:
            if b.type not in PHYSICS_BEHAVIOURS:
                out.append(f"{who}: behaviour {b.type!r}")
            if b.reverse:
                out.append(f"{who}: reverse (wrong-way driving)")
            if b.aeb:
                out.append(f"{who}: aeb")
            if b.turns and not builtin_map:
                out.append(f"{who}: turns on a CARLA town")
    return sorted(set(out))


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


class _TriggerShim:
    """Duck-types what ``World.check_events`` reads, over CARLA-observed states (CARLA towns have no builtin
    World), so trigger semantics come from the one implementation in :mod:`simgen.sim.world`."""

    def __init__(self, plans: list[_Plan]):
        import types

        self.actors = [types.SimpleNamespace(name=p.name, events=p.events, x=p.x, y=p.y, yaw=p.yaw, speed=p.speed,
                                             dims=np.asarray(p.dims, float), crashed=False, behaviour=p.behaviour)
                       for p in plans]
        self.fired: dict[str, float] = {}
        self.applied: set[str] = set()
        self.event_log: list = []
        self.time_s = 0.0

    def _start_behaviour(self, a, b) -> None:
        a.behaviour = b

    def ttc_to_ego(self, a) -> float:
        from simgen.sim.world import World

        return World.ttc_to_ego(self, a)


class CarlaBackend:
    """``--backend carla``.  Options: ``host``, ``port`` (RPC), ``timeout_s`` (client RPC timeout),
    ``tm_port`` (default RPC + 6000), ``sensor_timeout_s`` (wait for a tick's sensor data), ``tick_timeout_s``,
    ``drive`` ("auto", "carla": CARLA's controllers, "simgen": the builtin simulator decides the motion),
    ``carla_root`` (launch and manage a server from this CARLA folder; $CARLA_ROOT is used when no server answers),
    ``quality`` (Low/Epic), ``gpu`` (graphics adapter of a launched server), ``open_attempts`` (fresh-server
    retries when opening an episode fails because the server is lost), ``carla_module`` (tests only)."""

    name = "carla"

    def __init__(self, host: str = "127.0.0.1", port: int = 2000, *, timeout_s: float = 20.0, tm_port: int | None = None,
                 sensor_timeout_s: float = 10.0, tick_timeout_s: float = 60.0, drive: str = "auto",
                 carla_root: str | None = None, quality: str = "Epic", gpu: int | None = None, open_attempts: int = 2,
                 carla_module=None):
        if drive not in DRIVES:
            raise InputError(f"got {drive!r}; allowed: {', '.join(DRIVES)}", key="drive")
        self.carla = carla_module if carla_module is not None else _load_carla()
        self.host, self.port = host, int(port)
        self.timeout_s = float(timeout_s)
        self.tm_port = int(tm_port) if tm_port is not None else port_plan(0, self.port)["tm"]
        self.sensor_timeout_s = float(sensor_timeout_s)
        self.tick_timeout_s = float(tick_timeout_s)
        self.drive = drive
        self.open_attempts = int(open_attempts)
        root = find_carla_root(carla_root)
        self.server = CarlaServer(self.carla, host, self.port, root=root, quality=quality, gpu=gpu,
                                  health_timeout_s=min(self.timeout_s, 10.0))
        self._bp_boxes: dict[tuple, object] = {}  # (server version, blueprint id) -> carla.BoundingBox

    def open(self, scenario: ScenarioSpec, rig: RigSpec, *, seed: np.random.SeedSequence, source: str = "<scenario>",
             n_frames: int | None = None, record=None) -> "CarlaSession":
        """Open an episode; with ``record`` (a :class:`simgen.io.record.Record`) the recorded actor states are
        re-rendered instead of simulated (``simgen replay --backend carla``)."""

        def attempt(i: int) -> CarlaSession:
            host, port = self.server.ensure()
            return CarlaSession(self, scenario, rig, seed=seed, source=source, n_frames=n_frames, host=host, port=port,
                                record=record)

        def on_failure(i: int, exc: BaseException) -> None:
            if self.server.managed:
                self.server.restart()

        return retrying(attempt, self.open_attempts, on_failure=on_failure)

    def close(self) -> None:
        """Stop a server this backend launched."""
        self.server.stop()


class CarlaSession:
    """One episode in CARLA.  ``step()`` ticks once and returns that tick's Frame; ``close()`` cleans up.

    ``drive``: "carla" — CARLA's controllers move the actors (Traffic Manager, target velocities, walker
    controls) and simgen's trigger logic switches their behaviours; "simgen" — the builtin simulator steps the
    scenario and CARLA's actors are placed where it says (vehicles and props teleported with physics off, walkers
    walked into place); "replay" — like "simgen" with the states of a recorded episode.
    """

    def __init__(self, backend: CarlaBackend, scenario: ScenarioSpec, rig: RigSpec, *, seed: np.random.SeedSequence,
                 source: str, n_frames: int | None, host: str, port: int, record=None):
        from simgen.backends.builtin import jittered_mounts
        from simgen.seeding import sensor_streams, sim_streams, streams
        from simgen.world.roads import MAPS

        self.backend, self.carla = backend, backend.carla
        self.scenario, self.rig, self.source = scenario, rig, source
        self.record = record
        self.n_frames = n_frames or (record.n_frames if record is not None else scenario.n_frames)
        self.dt = 1.0 / scenario.tick_hz
        self.builtin_map = scenario.map in MAPS
        self._closed = False
        self._spawned: list[int] = []  # CARLA ids of everything spawned, in order
        self._sensors: list = []
        self._orig_settings = None
        self._world_for_restore = None
        self._tm = None
        self._tm_sync_set = False
        self._lights_frozen = False
        self.cleanup_errors: list[str] = []
        self.actors: list[_Actor] = []
        for s in rig.cameras:
            if any(s.camera.distortion):
                raise InputError("the carla backend renders pinhole cameras; lens distortion is not supported yet",
                                 key=f"sensors.{s.name}.attributes.distortion")
        self.drive = self._choose_drive(backend.drive)
        sim = sim_streams(seed)  # the builtin backend's streams: same World, same sensor rngs
        self._s_world = sim.world
        s_bp, s_tm = streams(sim.backend, 2)
        self._rng_bp = np.random.default_rng(s_bp)
        self._tm_seed = int(s_tm.generate_state(1, np.uint32)[0])
        ss = sensor_streams(sim.sensors, [s.name for s in rig.sensors])
        self._sensor_rngs = {name: np.random.default_rng(x) for name, x in ss.per_sensor.items()}
        self._mounts = jittered_mounts(rig, scenario.sensor_jitter, np.random.default_rng(ss.mounting))
        self._k = 0
        self._t_now = 0.0
        self._prev_lidar_pose: dict[str, np.ndarray] = {}
        self._last_states = None
        self._lights_cmd: dict[str, str] = {}
        self._weather_set = None
        try:
            self._open(host, port)
        except BaseException:
            self.close()
            raise

    def _choose_drive(self, want: str) -> str:
        if self.record is not None:
            if not self.builtin_map:
                raise InputError("replaying an episode in CARLA needs a builtin map", key="map")
            return "replay"
        unsupported = physics_unsupported(self.scenario, self.builtin_map)
        if want == "simgen" or (want == "auto" and unsupported):
            if not self.builtin_map:
                raise InputError(f"CARLA's controllers cannot play {'; '.join(unsupported)}, and drive='simgen' needs a builtin map",
                                 file=self.source)
            if want == "auto":
                log.warning("%s: CARLA's controllers cannot play %s; the builtin simulator drives the actors (drive='simgen')",
                            self.scenario.name, "; ".join(unsupported))
            return "simgen"
        if unsupported:
            raise InputError(f"drive='carla' cannot play {'; '.join(unsupported)}; use drive='simgen' or 'auto'", file=self.source)
        return "carla"

    # ------------------------------------------------------------------------------------------------ set-up
    def _open(self, host: str, port: int) -> None:
        carla, be = self.carla, self.backend
        self.client = carla.Client(host, port)
        self.client.set_timeout(be.timeout_s)
        self.server_version = str(self.client.get_server_version())
        self.client_version = str(self.client.get_client_version())
        if self.server_version != self.client_version:
            warnings.warn(f"CARLA client {self.client_version} and server {self.server_version} differ; use matching versions",
                          RuntimeWarning, stacklevel=3)
        if not self.server_version.startswith(SUPPORTED_SERVERS):
            warnings.warn(f"CARLA server {self.server_version}: simgen's carla backend targets {' / '.join(SUPPORTED_SERVERS)}",
                          RuntimeWarning, stacklevel=3)
        world = self.client.get_world()
        self._orig_settings = world.get_settings()
        self._world_for_restore = world
        self.world = self._load_map(world)
        self._world_for_restore = self.world
        self.map = self.world.get_map()
        self._configure_time()
        if self.drive == "carla":
            self._tm = self.client.get_trafficmanager(be.tm_port)
            self._tm.set_synchronous_mode(True)
            self._tm_sync_set = True
            self._tm.set_random_device_seed(self._tm_seed)
        self._applied = self._apply_environment(0.0)
        plans = self._plans()
        self._setup_lights()
        self._spawn_actors(plans)
        self.settle_ticks = self._settle()
        self._spawn_sensors()
        if self.drive == "carla":
            self._trig = self.sim_world if self.builtin_map else _TriggerShim([a.plan for a in self.actors])
            self._trig_actor = {a.sid: self._trig.actors[a.plan.row] for a in self.actors} if self.builtin_map else \
                {a.sid: wa for a, wa in zip(self.actors, self._trig.actors)}
            for act in self.actors:
                self._trig_actor[act.sid].dims = np.asarray(act.dims, float)  # trigger distances use the rendered boxes
                self._start_behaviour(act, act.plan.behaviour, initial=True)
        else:
            for act in self.actors:
                if act.driver != "walker":
                    act.actor.set_simulate_physics(False)  # placed each tick where the simulator says

    def _load_map(self, world):
        carla, name = self.carla, self.scenario.map
        if self.builtin_map:
            from simgen.world.opendrive import build_layout, opendrive_xml

            self.layout = build_layout(name)
            xodr = opendrive_xml(name)
            try:
                same = world.get_map().to_opendrive() == xodr
            except Exception:  # noqa: BLE001 - a map without OpenDRIVE text: load ours
                same = False
            if same:
                return world
            params = carla.OpendriveGenerationParameters(
                vertex_distance=2.0, max_road_length=50.0, wall_height=0.0, additional_width=0.0,
                smooth_junctions=True, enable_mesh_visibility=True, enable_pedestrian_navigation=True)
            return self.client.generate_opendrive_world(xodr, params, True)
        self.layout = None
        current = world.get_map().name.rsplit("/", 1)[-1]
        if current == name:
            return world
        return self.client.load_world(name, True)

    def _configure_time(self) -> None:
        st = self.world.get_settings()
        st.synchronous_mode = True
        st.fixed_delta_seconds = self.dt
        st.substepping = True
        st.max_substep_delta_time, st.max_substeps = substep_settings(self.dt)
        self.world.apply_settings(st)

    def _apply_environment(self, t: float) -> dict[str, float]:
        """Weather (and sun from time of day) at time t on the server; returns the values applied (Frame.applied)."""
        from simgen.sim import environment

        spec_t = environment.at(self.scenario, t)
        if spec_t.weather != self._weather_set:
            w = self.carla.WeatherParameters()
            for f in dataclasses.fields(spec_t.weather):
                if hasattr(w, f.name):
                    setattr(w, f.name, float(getattr(spec_t.weather, f.name)))
            self.world.set_weather(w)
            self._weather_set = spec_t.weather
        return environment.applied(spec_t, list(self.scenario.randomize))

    # ------------------------------------------------------------------------------------------------ actors
    def _plans(self) -> list[_Plan]:
        if self.builtin_map:
            return self._plans_builtin()
        return _TownPlanner(self).plans()

    def _plans_builtin(self) -> list[_Plan]:
        from simgen.sim.world import World

        w = World(self.scenario, rng=np.random.default_rng(self._s_world), source=self.source)
        if self.record is not None:
            self.record.apply_to(w)
        self.sim_world = w
        n_scn = 1 + len(self.scenario.actors)
        plans = []
        for i, a in enumerate(w.actors):
            s, lat = 0.0, 0.0
            if a.lane is not None:
                s, lat = (float(v) for v in w.map.lanes[a.lane].centre.project(np.array([a.x, a.y])))
            plans.append(_Plan(a.id, a.name, a.kind, a.is_ego, np.asarray(a.dims, float), np.asarray(a.colour, np.float32),
                               a.x, a.y, a.z, a.yaw, a.speed, a.behaviour, tuple(a.events), a.lane, s, lat,
                               a.walk_left_m, traffic=i >= n_scn, row=i))
        self._check_waypoints(plans)
        return plans

    def _check_waypoints(self, plans: list[_Plan]) -> None:
        """Lane placements through CARLA's waypoints: the OpenDRIVE lane of the simgen lane must be where the builtin
        map says (else the export and the builtin map disagree)."""
        for p in plans:
            if p.lane is None or p.lane not in self.layout.lanes:
                continue
            if not 0.0 <= p.lane_s <= self.sim_world.map.lanes[p.lane].centre.length:
                continue  # placed beyond the lane's end (allowed by relative placements): nothing to compare
            ref = self.layout.lane_ref(p.lane)
            s_road = float(self.layout.road_s(p.lane, p.lane_s))
            wp = self.map.get_waypoint_xodr(ref.road_id, ref.lane_id, s_road)
            if wp is None:
                raise RunError(f"CARLA has no waypoint for lane {p.lane} (OpenDRIVE road {ref.road_id}, lane {ref.lane_id}, s={s_road:.1f})")
            cx, cy, _ = self.sim_world.map.lanes[p.lane].centre.pose_at(p.lane_s)
            got = xyz_from_carla(wp.transform.location)
            if math.hypot(got[0] - cx, got[1] - cy) > 0.5:
                raise RunError(f"lane {p.lane} at s={p.lane_s:.1f}: CARLA's waypoint is at ({got[0]:.2f}, {got[1]:.2f}), the builtin "
                               f"map's lane centre at ({cx:.2f}, {cy:.2f}); the OpenDRIVE export and the map disagree")

    def _candidates(self, kind: str) -> list:
        """Blueprints that can render a simgen ``kind`` (see :func:`vehicle_candidates`, :func:`prop_candidates`)."""
        lib = self.world.get_blueprint_library()
        if kind in VEHICLE_CHOICE:
            bps, how = vehicle_candidates(kind, list(lib.filter("vehicle.*")))
            if how != "base_type" and bps:
                log.warning("no CARLA vehicle blueprint has a base_type meaning %r; chose among %s by %s", kind,
                            ", ".join(sorted(b.id for b in bps)), how)
            return bps
        if kind in ("pedestrian", "child"):
            bps = list(lib.filter("walker.pedestrian.*"))
            age = "child" if kind == "child" else "adult"
            aged = [b for b in bps if b.has_attribute("age") and b.get_attribute("age").as_str() == age]
            return aged or bps
        bps = prop_candidates(kind, list(lib.filter("static.prop.*")))
        if kind == "ball" and bps:
            log.warning("CARLA has no ball prop: a ball is rendered as %s (its box is what is labelled; docs/carla.md)", bps[0].id)
        return bps

    def _probe(self, bps: list) -> dict[str, object]:
        """Bounding boxes (``carla.BoundingBox``) of blueprints, measured by spawning each once far below the map and
        destroying it again (cached per server version)."""
        carla = self.carla
        out, todo = {}, []
        for b in bps:
            key = (self.server_version, b.id)
            if key in self.backend._bp_boxes:
                out[b.id] = self.backend._bp_boxes[key]
            else:
                todo.append(b)
        probes = []
        try:
            for i, b in enumerate(todo):
                # at rotation 0: a static.prop's box then is its own box (CARLA gives props their world rotation)
                tf = carla.Transform(carla.Location(x=40.0 * (i % 25), y=40.0 * (i // 25), z=-2000.0), carla.Rotation())
                a = spawn_or_none(self.world, b, tf, what=f"a probe of {b.id}")
                if a is None:
                    log.warning("could not probe blueprint %s", b.id)
                    continue
                probes.append(a)
                self.backend._bp_boxes[(self.server_version, b.id)] = out[b.id] = a.bounding_box
        finally:
            if probes:
                self._destroy([a.id for a in probes])
        return out

    def _spawn_actors(self, plans: list[_Plan]) -> None:
        carla = self.carla
        by_kind: dict[str, list] = {}
        for p in plans:
            if p.kind.name not in by_kind:
                by_kind[p.kind.name] = self._candidates(p.kind.name)
        lib = {b.id: b for bps in by_kind.values() for b in bps}
        boxes = self._probe(list(lib.values()))
        for p in plans:
            pool = by_kind[p.kind.name]
            if not pool:
                if p.kind.name in PROP_CHOICE:
                    raise RunError(f"the CARLA server offers none of {', '.join(PROP_CHOICE[p.kind.name])} to render a "
                                   f"{p.kind.name} ({p.name}); see docs/carla.md")
                raise RunError(f"the CARLA server offers no blueprint for a {p.kind.name} ({p.name})")
            if needs_dynamic_doors(p):  # open_door animates only these (CARLA PR 5258)
                pool = [b for b in pool if has_dynamic_doors(b)]
                if not pool:
                    raise RunError(f"{p.name} opens a door, but no {p.kind.name} blueprint on this CARLA server has "
                                   f"has_dynamic_doors=true (CARLA animates doors only on those); use a car or van")
            cand = {b.id: bbox_dims(boxes[b.id]) for b in pool if b.id in boxes}
            if not cand:
                raise RunError(f"the CARLA server offers no blueprint for a {p.kind.name} ({p.name})")
            bp_id = choose_blueprint(cand, p.dims, self._rng_bp)
            bp = lib[bp_id]
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", "hero" if p.is_ego else f"simgen/{p.name}")
            colour = np.full(3, np.nan, np.float32)
            if bp.has_attribute("color"):
                rgb = linear_to_srgb8(p.colour)
                bp.set_attribute("color", ",".join(str(v) for v in rgb))
                colour = srgb8_to_linear(rgb)
            if bp.has_attribute("is_invincible"):
                bp.set_attribute("is_invincible", "false")
            # put the box's bottom centre at the planned footprint centre, SPAWN_LIFT_M above the ground
            lift = SPAWN_LIFT_M if self.drive == "carla" or not p.kind.vehicle else 0.0
            T_bottom = pose_matrix(p.x, p.y, p.z + lift, p.yaw)
            T_bottom_actor = T_actor_from_box_bottom(boxes[bp_id], with_rotation=False)
            tf = matrix_to_carla(T_bottom @ invert(T_bottom_actor), carla)
            a = spawn_or_none(self.world, bp, tf, what=f"{p.name} ({bp_id})")
            if a is None:
                if p.traffic:
                    warnings.warn(f"CARLA could not spawn traffic actor {p.name} ({bp_id}); it is left out", RuntimeWarning, stacklevel=2)
                    continue
                raise RunError(f"CARLA could not spawn {p.name} ({bp_id}) at ({p.x:.1f}, {p.y:.1f}): the spot is blocked")
            self._spawned.append(a.id)
            # dims and box offset from the rotation-0 probe, never from the spawned actor's bounding_box: for
            # static.prop.* CARLA reports a box rotated to the actor's world rotation with an extent built from the
            # world-rotated parts (carla#8663), which would give the yaw twice and inflate the dims
            driver = "vehicle" if p.kind.vehicle else ("walker" if p.kind.name in ("pedestrian", "child") else "prop")
            act = _Actor(p, a, a.id, bp_id, bbox_dims(boxes[bp_id]), T_bottom_actor, colour, driver)
            act.speed_cmd, act.heading, act.walk_left = p.speed, p.yaw, p.walk_left
            act.dynamic_doors = has_dynamic_doors(bp)
            if driver == "prop":
                act.kin_pose = np.array([p.x, p.y, p.z, p.yaw])
                a.set_simulate_physics(False)
            self.actors.append(act)
        if not self.actors or not self.actors[0].plan.is_ego:
            raise RunError("the ego was not spawned")
        self.ego = self.actors[0]
        self._by_cid = {a.cid: a.sid for a in self.actors}
        keys = np.array(sorted(self._by_cid), np.int64)
        self._cid_keys, self._cid_vals = keys, np.array([self._by_cid[k] for k in keys.tolist()], np.uint32)
        self._ids = np.array([a.sid for a in self.actors], np.int32)
        self._rows = np.array([a.plan.row for a in self.actors], int)
        self._row = {a.sid: i for i, a in enumerate(self.actors)}
        self._dims = np.array([a.dims for a in self.actors], float)

    def _settle(self) -> int:
        """Tick, with every actor held still, until actors spawned SPAWN_LIFT_M up have come to rest (CARLA drops
        and bounces them for 3-4 ticks); then give the vehicles their initial speed.  Frame 0 is the first tick
        after this.  Returns the number of ticks."""
        carla = self.carla
        for act in self.actors:
            self._hold(act)
        n = max(SETTLE_MIN_TICKS, math.ceil(SETTLE_S / self.dt - 1e-9))
        for _ in range(n):
            self._tick()
        if self.drive == "carla":
            for act in self.actors:  # initial motion
                if act.driver == "vehicle":
                    act.actor.apply_control(carla.VehicleControl(throttle=0.0, brake=0.0, hand_brake=False))
                    if act.speed_cmd > 0:
                        v = act.speed_cmd * np.array([math.cos(act.heading), math.sin(act.heading), 0.0])
                        act.actor.set_target_velocity(vector_to_carla(v, carla))
        return n

    # ------------------------------------------------------------------------------------------------ sensors
    def _spawn_sensors(self) -> None:
        carla = self.carla
        lib = self.world.get_blueprint_library()
        specs = []
        for s in self.rig.sensors:
            if s.type == "camera":
                a = s.camera
                attrs = {"image_size_x": a.image_size_x, "image_size_y": a.image_size_y, "fov": a.fov}
                for stream, bp_id in (("rgb", "sensor.camera.rgb"), ("depth", "sensor.camera.depth"),
                                      ("semantic", "sensor.camera.semantic_segmentation"),
                                      ("instance", "sensor.camera.instance_segmentation")):
                    specs.append((s, stream, bp_id, attrs))
            else:
                a = s.lidar
                attrs = {k: getattr(a, k) for k in ("channels", "range", "points_per_second", "rotation_frequency",
                                                    "upper_fov", "lower_fov", "horizontal_fov")}
                specs.append((s, "lidar", "sensor.lidar.ray_cast_semantic", attrs))
        keys = [f"{s.name}:{stream}" for s, stream, _, _ in specs]
        self.collector = FrameCollector(keys)
        for (s, stream, bp_id, attrs), key in zip(specs, keys):
            bp = lib.find(bp_id)
            for k, v in attrs.items():
                if not bp.has_attribute(k):
                    raise RunError(f"blueprint {bp_id} has no attribute {k!r} (rig {self.rig.name}, sensor {s.name})")
                bp.set_attribute(k, str(v))
            if bp.has_attribute("sensor_tick"):
                bp.set_attribute("sensor_tick", "0.0")
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", f"simgen/{key}")
            tf = matrix_to_carla(self.ego.T_actor_from_bottom @ self._mounts[s.name], carla)  # the jittered mounting
            try:
                sensor = self.world.spawn_actor(bp, tf, attach_to=self.ego.actor)
            except Exception as exc:
                if is_server_failure(exc):
                    raise CarlaServerLost(f"CARLA server lost while spawning sensor {key}: {exc}") from exc
                raise
            self._spawned.append(sensor.id)
            self._sensors.append(sensor)
            sensor.listen(self.collector.callback(key))
        self._K = {s.name: intrinsics_from_fov(s.camera.image_size_x, s.camera.image_size_y, s.camera.fov) for s in self.rig.cameras}
        self._resolver = InstanceResolver(self._by_cid)
        if self._resolver.wrapped:
            log.warning("CARLA actor ids above 65535 wrap in the instance camera (16-bit ids); they are resolved by "
                        "semantic tag and geometry")

    # ------------------------------------------------------------------------------------------------ lights
    def _setup_lights(self) -> None:
        carla = self.carla
        tls = list(self.world.get_actors().filter("traffic.traffic_light*"))
        self._tl_actor: dict[str, object] = {}
        if self.builtin_map:
            m = self.sim_world.map
            by_odr = {}
            for a in tls:
                try:
                    by_odr[str(a.get_opendrive_id())] = a
                except Exception:  # noqa: BLE001 - no OpenDRIVE id available
                    pass
            taken: set[int] = set()
            for tl in m.traffic_lights:
                sid = self.layout.signals.get(tl.id)
                a = by_odr.get(sid)
                if a is None:  # OpenDRIVE-standalone lights may lack their id: nearest light actor to the pole
                    pole = location_to_carla(np.asarray(tl.position, float), carla)
                    cands = [(x.get_location().distance(pole), x) for x in tls if x.id not in taken]
                    cands = [c for c in cands if c[0] < 15.0]
                    a = min(cands, key=lambda c: c[0])[1] if cands else None
                if a is None:
                    warnings.warn(f"traffic light {tl.id} has no CARLA traffic-light actor: its phases are labelled and obeyed "
                                  "by simgen's logic but not rendered", RuntimeWarning, stacklevel=2)
                    continue
                taken.add(a.id)
                self._tl_actor[tl.id] = a
            self.world.freeze_all_traffic_lights(True)
            self._lights_frozen = True
            self.light_ids = [tl.id for tl in m.traffic_lights]
        else:
            for a in tls:
                try:
                    odr = str(a.get_opendrive_id())
                except Exception:  # noqa: BLE001
                    odr = ""
                self._tl_actor[f"tl_{odr or a.id}"] = a
            self.light_ids = sorted(self._tl_actor)

    def _set_lights(self, want: dict[str, str]) -> dict[str, str]:
        """Command the CARLA lights of a builtin map to ``want`` (id -> red/yellow/green); returns it."""
        code = {"red": self.carla.TrafficLightState.Red, "yellow": self.carla.TrafficLightState.Yellow,
                "green": self.carla.TrafficLightState.Green}
        for lid, st in want.items():
            if self._lights_cmd.get(lid) != st and lid in self._tl_actor:
                self._tl_actor[lid].set_state(code[st])
        self._lights_cmd = dict(want)
        return want

    def _town_lights(self) -> dict[str, str]:
        """States of a CARLA town's own lights (Off/Unknown are labelled red: the episode format has no code for them)."""
        states = {}
        for lid, a in self._tl_actor.items():
            st = str(a.get_state()).rsplit(".", 1)[-1].lower()
            if st not in LIGHT_NAMES:
                if lid not in self._lights_cmd:
                    log.warning("traffic light %s is %s; labelled red", lid, st)
                st = "red"
            states[lid] = st
        self._lights_cmd = states
        return states

    # ------------------------------------------------------------------------------------------------ drive="carla"
    def _route_path(self, lane_id: str | None, turns=()) -> list:
        """Locations through the junctions on the builtin route from ``lane_id`` (``turns`` at each choice, then
        straight on), for the Traffic Manager's ``set_path``."""
        if not self.builtin_map or lane_id is None:
            return []
        m = self.sim_world.map
        if lane_id not in m.lanes:
            return []
        locs = []
        for lane in m.lane_sequence(lane_id, turns)[1:]:
            if lane.kind == "connector":
                exit_lane = m.lanes[lane.successors["straight"]]
                for s in (1.0, min(20.0, exit_lane.centre.length)):
                    x, y, _ = exit_lane.centre.pose_at(s)
                    locs.append(location_to_carla([x, y, 0.0], self.carla))
        return locs

    def _start_behaviour(self, act: _Actor, b: Behaviour, initial: bool = False) -> None:
        """Switch an actor to behaviour ``b`` (the builtin ``World._start_behaviour`` semantics, CARLA mechanisms)."""
        tm = self._tm
        act.behaviour = b
        act.t0 = self._t_now
        if act.mode in ("tm", "profile") and b.type not in ("lane_follow", "lane_change", "scripted"):
            act.actor.set_autopilot(False, self.backend.tm_port)
        if b.type in ("parked", "stand", "open_door"):
            act.speed_cmd = 0.0
            act.mode = "hold"
            self._hold(act)
            if b.type == "open_door" and act.driver == "vehicle":
                act.door_sign = 1.0 if b.direction == "left" else -1.0
                self._open_door(act)
            return
        if b.type == "walk":
            act.walked, act.hesitate_until = 0.0, None
            if not initial:
                act.heading = float(self._yaw_now(act) + math.radians(b.heading_deg))
                act.walk_left = b.distance_m
                if b.speed_mps is not None:
                    act.speed_cmd = b.speed_mps
            act.mode = "walk" if act.driver == "walker" else ("kinematic" if act.driver == "prop" else "straight")
            self._coast(act)
            return
        if b.type in ("brake", "stop"):
            act.decel = b.decel_mps2
            if not initial:
                act.speed_cmd = self._speed_now(act)
            act.mode = "ramp"
            self._coast(act)
            return
        # lane_follow / lane_change / scripted
        target = b.speed_mps if b.speed_mps is not None else (max(act.speed_cmd, 0.1) if act.speed_cmd > 0 else 10.0)
        if act.driver != "vehicle" or (self.builtin_map and act.plan.lane is None):
            # as in the builtin simulator: off-lane vehicles and non-vehicles keep their speed and move straight
            if not initial:
                act.heading = self._yaw_now(act)
            act.mode = "walk" if act.driver == "walker" else ("kinematic" if act.driver == "prop" else "straight")
            self._coast(act)
            return
        a = act.actor
        if act.mode not in ("tm", "profile"):
            a.set_autopilot(True, self.backend.tm_port)
        tm.auto_lane_change(a, False)
        tm.distance_to_leading_vehicle(a, TM_FOLLOW_GAP_M)
        if b.type == "scripted":  # follows its lane with the profile's speed, ignoring everything else
            act.mode = "profile"
            tm.set_desired_speed(a, float(np.interp(0.0, *np.array(b.speed_profile).T)) * KMH)
            for f in (tm.ignore_lights_percentage, tm.ignore_vehicles_percentage, tm.ignore_walkers_percentage):
                f(a, 100.0)
        else:
            act.mode = "tm"
            tm.set_desired_speed(a, float(target * KMH))
            tm.ignore_lights_percentage(a, 0.0 if b.obey_lights else 100.0)
            tm.ignore_vehicles_percentage(a, 100.0 if b.obstacles == "none" else 0.0)
            tm.ignore_walkers_percentage(a, 0.0 if b.obstacles == "all" else 100.0)
        if b.type == "lane_change":
            if self.builtin_map:
                lane = self.sim_world.map.lanes.get(act.plan.lane) if act.plan.lane else None
                nxt = getattr(lane, b.direction) if lane is not None else None
                if nxt is None:
                    raise InputError(f"{act.name} cannot change lanes {b.direction}: lane {act.plan.lane} has no lane to its {b.direction}",
                                     file=self.source, key=f"{act.name}.events")
                act.plan.lane = nxt
            tm.force_lane_change(a, b.direction == "right")  # TM: True = to the right (LocalizationStage)
        path = self._route_path(act.plan.lane, b.turns)
        if path:
            tm.set_path(a, path)

    def _open_door(self, act: _Actor) -> None:
        """Open the door (CARLA animates it; only blueprints with has_dynamic_doors=true, which the blueprint choice
        guarantees for door-opening actors).  ``door_opened`` is what the door labels follow: never open if shut."""
        door = getattr(self.carla, "VehicleDoor", None)
        if act.door_opened or not act.dynamic_doors:
            return
        if door is None or not hasattr(act.actor, "open_door"):
            raise RunError(f"{act.name}: this CARLA client has no VehicleDoor / open_door (CARLA 0.9.13+ needed)")
        act.actor.open_door(door.FL if act.door_sign > 0 else door.FR)
        act.door_opened = True

    def _coast(self, act: _Actor) -> None:
        """Release the throttle a Traffic Manager may have left applied (the target velocity then rules the motion)."""
        if act.driver == "vehicle":
            act.actor.apply_control(self.carla.VehicleControl(throttle=0.0, steer=0.0, brake=0.0))

    def _hold(self, act: _Actor) -> None:
        carla = self.carla
        if act.driver == "vehicle":
            act.actor.apply_control(carla.VehicleControl(throttle=0.0, brake=1.0, hand_brake=True))
            act.actor.set_target_velocity(carla.Vector3D(0.0, 0.0, 0.0))
        elif act.driver == "walker":
            act.actor.apply_control(carla.WalkerControl(direction=carla.Vector3D(1.0, 0.0, 0.0), speed=0.0))

    def _yaw_now(self, act: _Actor) -> float:
        if self._last_states is None:
            return act.heading
        return float(self._last_states.pose[self._row[act.sid], 3])

    def _speed_now(self, act: _Actor) -> float:
        if self._last_states is None:
            return act.speed_cmd
        return float(np.linalg.norm(self._last_states.velocity[self._row[act.sid], :2]))

    def _physics_events(self, t_prev: float) -> list:
        """Triggers at ``t_prev`` on the observed states, by ``World.check_events`` itself (the builtin World,
        kept in step with CARLA, or a shim on a town); started behaviours are handed to CARLA's controllers."""
        from simgen.sim.world import World

        st, w = self._last_states, self._trig
        before = {}
        for i, act in enumerate(self.actors):
            wa = self._trig_actor[act.sid]
            wa.x, wa.y, wa.yaw = float(st.pose[i, 0]), float(st.pose[i, 1]), float(st.pose[i, 3])
            wa.speed = float(np.linalg.norm(st.velocity[i, :2]))
            wa.crashed = act.crashed
            before[act.sid] = wa.behaviour
        w.time_s = t_prev
        n = len(w.event_log)
        World.check_events(w)
        for act in self.actors:
            wa = self._trig_actor[act.sid]
            if wa.behaviour is not before[act.sid]:
                self._start_behaviour(act, wa.behaviour)
        return list(w.event_log[n:])

    def _controls(self, first: bool) -> None:
        """Per-tick commands for the motion of the coming tick (one batch)."""
        carla, cmd = self.carla, self.carla.command
        dt = self.dt
        batch = []
        for act in self.actors:
            if act.crashed and act.mode not in ("hold", "idle"):
                if act.mode in ("tm", "profile"):
                    act.actor.set_autopilot(False, self.backend.tm_port)
                act.mode, act.speed_cmd = "hold", 0.0
                self._hold(act)
                continue
            if act.mode == "profile":
                v = float(np.interp(self._t_now + dt - act.t0, *np.array(act.behaviour.speed_profile).T))
                self._tm.set_desired_speed(act.actor, v * KMH)
            elif act.mode == "ramp":
                if not first:
                    act.speed_cmd = max(0.0, act.speed_cmd - act.decel * dt)
                yaw = self._yaw_now(act)
                if act.driver == "vehicle":
                    v = act.speed_cmd * np.array([math.cos(yaw), math.sin(yaw), 0.0])
                    batch.append(cmd.ApplyTargetVelocity(act.cid, vector_to_carla(v, carla)))
                    if act.speed_cmd == 0.0:
                        batch.append(cmd.ApplyVehicleControl(act.cid, carla.VehicleControl(throttle=0.0, brake=1.0, hand_brake=True)))
                        act.mode = "hold"
                elif act.driver == "walker":
                    batch.append(cmd.ApplyWalkerControl(act.cid, self._walker_control(yaw, act.speed_cmd)))
                else:
                    act.heading = yaw
                    self._kinematic(act, batch)
            elif act.mode in ("walk", "straight", "kinematic"):
                speed = self._walk_speed(act, dt)
                if act.mode == "walk":
                    batch.append(cmd.ApplyWalkerControl(act.cid, self._walker_control(act.heading, speed)))
                elif act.mode == "straight":
                    v = speed * np.array([math.cos(act.heading), math.sin(act.heading), 0.0])
                    batch.append(cmd.ApplyTargetVelocity(act.cid, vector_to_carla(v, carla)))
                else:
                    self._kinematic(act, batch, speed)
        if batch:
            for r in self.client.apply_batch_sync(batch, False):
                if getattr(r, "error", None):
                    log.warning("CARLA command failed: %s", r.error)

    def _walk_speed(self, act: _Actor, dt: float) -> float:
        """Commanded speed for the coming tick of a straight mover: distance budget and hesitation as in the
        builtin ``World._walk``."""
        b = act.behaviour
        if act.hesitate_until is not None:
            if self._t_now + 1e-9 < act.hesitate_until:
                return 0.0
            act.hesitate_until = None
            act.speed_cmd = b.speed_mps if b.speed_mps is not None else 1.4
        step = act.speed_cmd * dt
        pause = b.type == "walk" and b.hesitate_at_m is not None and b.hesitate_s > 0 and act.walked < b.hesitate_at_m <= act.walked + step
        if pause:
            step = b.hesitate_at_m - act.walked
        if act.walk_left is not None:
            step = min(step, max(act.walk_left, 0.0))
            act.walk_left -= step
        act.walked += step
        if pause:
            act.hesitate_until = self._t_now + dt + b.hesitate_s
        return step / dt

    def _walker_control(self, yaw: float, speed: float):
        carla = self.carla
        return carla.WalkerControl(direction=vector_to_carla([math.cos(yaw), math.sin(yaw), 0.0], carla), speed=float(speed))

    def _kinematic(self, act: _Actor, batch: list, speed: float | None = None) -> None:
        v = act.speed_cmd if speed is None else speed
        p = act.kin_pose
        p[0] += v * self.dt * math.cos(act.heading)
        p[1] += v * self.dt * math.sin(act.heading)
        p[3] = act.heading
        T = pose_matrix(p[0], p[1], p[2], p[3]) @ invert(act.T_actor_from_bottom)
        batch.append(self.carla.command.ApplyTransform(act.cid, matrix_to_carla(T, self.carla)))
        act.kin_velocity = v * np.array([math.cos(act.heading), math.sin(act.heading), 0.0])

    def _door_angles(self, t: float) -> np.ndarray:
        """Door opening (rad, signed as in the builtin World) of actors playing open_door: the builtin schedule
        (full opening over ``duration_s``); CARLA's own door animation may run at another pace."""
        out = np.zeros(len(self.actors))
        for i, act in enumerate(self.actors):
            if act.door_opened and act.behaviour.type == "open_door":
                out[i] = act.door_sign * min(DOOR_OPEN_RAD, DOOR_OPEN_RAD * (t - act.t0) / act.behaviour.duration_s)
        return out

    # ------------------------------------------------------------------------------------------------ drive="simgen"/"replay"
    def _follow(self, target) -> None:
        """Place the CARLA actors where ``target`` (the spawned rows of an ActorStates) says before the tick:
        vehicles and props teleported (physics off), walkers put one tick short of the target and walked into it
        (so they animate)."""
        carla, cmd = self.carla, self.carla.command
        batch = []
        for i, act in enumerate(self.actors):
            x, y, z, yaw = target.pose[i]
            v = target.velocity[i]
            if act.driver == "walker":
                speed = float(np.hypot(v[0], v[1]))
                T = pose_matrix(x - v[0] * self.dt, y - v[1] * self.dt, z, yaw) @ invert(act.T_actor_from_bottom)
                batch.append(cmd.ApplyTransform(act.cid, matrix_to_carla(T, carla)))
                heading = math.atan2(v[1], v[0]) if speed > 1e-3 else yaw
                batch.append(cmd.ApplyWalkerControl(act.cid, self._walker_control(heading, speed)))
            else:
                T = pose_matrix(x, y, z, yaw) @ invert(act.T_actor_from_bottom)
                batch.append(cmd.ApplyTransform(act.cid, matrix_to_carla(T, carla)))
            door = target.door[i] if target.door is not None else 0.0
            if door and act.driver == "vehicle" and not act.door_opened:
                act.door_sign = 1.0 if door > 0 else -1.0
                self._open_door(act)
        for r in self.client.apply_batch_sync(batch, False):
            if getattr(r, "error", None):
                log.warning("CARLA command failed: %s", r.error)

    def _target(self):
        """(ActorStates of the spawned actors, lights, collisions, events, time) from the simulator or the record."""
        k = self._k
        if self.drive == "simgen":
            w = self.sim_world
            n_ev = len(w.event_log)
            collisions = w.step() if k > 0 else []
            st, lights, events, t = w.states(), w.light_states(), list(w.event_log[n_ev:]), w.time_s
        else:
            st, lights, collisions, events, t = self.record.frame(k)
        rows = self._rows
        keep = set(self._ids.tolist())
        st = dataclasses.replace(st, ids=st.ids[rows], names=tuple(st.names[r] for r in rows),
                                 kinds=tuple(st.kinds[r] for r in rows), semantic=st.semantic[rows], pose=st.pose[rows],
                                 velocity=st.velocity[rows], accel=st.accel[rows], dims=st.dims[rows],
                                 door=st.door[rows] if st.door is not None else None)
        collisions = [(a, b) for a, b in collisions if a in keep and b in keep]
        return st, lights, collisions, events, float(t)

    # ------------------------------------------------------------------------------------------------ stepping
    def static_info(self) -> StaticInfo:
        return StaticInfo(self.scenario.map, tuple(
            ActorInfo(a.sid, a.name, a.plan.kind.name, int(a.plan.kind.semantic), tuple(float(x) for x in a.dims),
                      tuple(float(x) for x in a.colour), bool(a.plan.is_ego)) for a in self.actors),
            tuple(self.light_ids))

    def provenance(self) -> dict:
        """CARLA-specific facts worth storing with the episode (versions, drive mode, blueprints chosen)."""
        return {"server_version": self.server_version, "client_version": self.client_version, "drive": self.drive,
                "blueprints": {a.name: a.blueprint for a in self.actors}}

    def _tick(self) -> int:
        try:
            return int(self.world.tick(self.backend.tick_timeout_s))
        except RuntimeError as exc:
            if is_server_failure(exc):
                raise CarlaServerLost(f"CARLA server lost at frame {self._k}: {exc}") from exc
            raise

    def step(self) -> Frame:
        if self._closed:
            raise RunError("the CARLA session is closed")
        k, dt = self._k, self.dt
        follow = None
        if self.drive == "carla":
            events = []
            if k > 0:
                self._t_now = (k - 1) * dt
                events = self._physics_events(self._t_now)
            t = k * dt
            lights = self._set_lights(self.sim_world.light_states(t)) if self.builtin_map else self._town_lights()
            self._controls(first=(k == 0))
        else:
            follow, lights, collisions, events, t = self._target()
            self._set_lights(lights)
            self._follow(follow)
        applied = self._apply_environment(t)
        frame_id = self._tick()
        snap = self.world.get_snapshot()
        if int(snap.frame) != frame_id:
            raise RunError(f"world snapshot is of frame {snap.frame}, the tick returned frame {frame_id}")
        data = self.collector.wait(frame_id, self.backend.sensor_timeout_s)
        states = self._states(snap, follow, t)
        if follow is None:
            collisions = self._collisions(states)
        T_we = matrix_from_carla(snap.find(self.ego.cid).get_transform()) @ self.ego.T_actor_from_bottom
        frame = Frame(index=k, time_s=t, T_world_from_ego=T_we, actors=states, lights=dict(lights), collisions=collisions,
                      events=events, T_ego_from_sensor=dict(self._mounts), applied=applied)
        T_wb = pose_matrix(states.pose[:, 0], states.pose[:, 1], states.pose[:, 2] + states.dims[:, 2] / 2, states.pose[:, 3])
        for s in self.rig.cameras:
            frame.cameras[s.name] = self._camera(s, data, states, T_wb)
        for s in self.rig.lidars:
            frame.lidars[s.name] = self._lidar(s, data, t)
        self._last_states = states
        self._k += 1
        return frame

    def _states(self, snap, follow, t: float):
        """Actor states of the rendered frame: poses from CARLA's snapshot (what was rendered); velocities and
        accelerations from CARLA (drive="carla") or from the simulator/record the actors were placed by."""
        from simgen.records import ActorStates

        A = len(self.actors)
        pose, vel, acc = np.zeros((A, 4)), np.zeros((A, 3)), np.zeros(A)
        for i, act in enumerate(self.actors):
            s = snap.find(act.cid)
            if s is None:
                raise RunError(f"actor {act.name} (CARLA id {act.cid}) is missing from frame {snap.frame}")
            T = matrix_from_carla(s.get_transform()) @ act.T_actor_from_bottom
            pose[i] = (T[0, 3], T[1, 3], T[2, 3], math.atan2(T[1, 0], T[0, 0]))
            if follow is not None:
                continue
            v = act.kin_velocity if act.driver == "prop" else None
            vel[i] = v if v is not None else xyz_from_carla(s.get_velocity())
            acc[i] = float(xyz_from_carla(s.get_acceleration()) @ T[:3, 0]) if v is None else 0.0
        if follow is not None:
            vel, acc = follow.velocity.copy(), follow.accel.copy()
            door = follow.door.copy() if follow.door is not None else np.zeros(A)
            shut = np.array([not a.door_opened for a in self.actors], bool)
            door[shut] = 0.0  # never label a door open that CARLA did not open
        else:
            door = self._door_angles(t)
        return ActorStates(ids=self._ids.copy(), names=tuple(a.name for a in self.actors), kinds=tuple(a.plan.kind.name for a in self.actors),
                           semantic=np.array([a.plan.kind.semantic for a in self.actors], np.uint8), pose=pose, velocity=vel,
                           accel=acc, dims=self._dims.copy(), door=door)

    def _collisions(self, states) -> list[tuple[int, int]]:
        """The builtin footprint test on the rendered boxes (drive="carla"); crashed actors stop as in the builtin World."""
        from simgen.sim.world import overlapping_pairs

        out = []
        for i, j in overlapping_pairs(footprints(states.pose, states.dims)):
            out.append((int(states.ids[i]), int(states.ids[j])))
            for r in (i, j):
                act = self.actors[r]
                if act.plan.kind.vehicle or float(np.linalg.norm(states.velocity[r, :2])) > 0:
                    act.crashed = True
        return out

    def _camera(self, s, data: dict, states, T_wb: np.ndarray) -> CameraData:
        a = s.camera
        H, W = a.image_size_y, a.image_size_x
        rgb_d, dep_d, sem_d, ins_d = (data[f"{s.name}:{x}"] for x in ("rgb", "depth", "semantic", "instance"))
        for d in (rgb_d, dep_d, sem_d, ins_d):
            if int(d.width) != W or int(d.height) != H:
                raise RunError(f"camera {s.name}: image is {d.width}x{d.height}, the rig says {W}x{H}")
        rgb = decode_bgra(rgb_d.raw_data, H, W)
        depth = decode_depth(dep_d.raw_data, H, W)
        sem = decode_semantic(sem_d.raw_data, H, W)
        tag, raw_id = decode_instance(ins_d.raw_data, H, W)
        T_ws = matrix_from_carla(rgb_d.transform)
        K = self._K[s.name]
        inst = self._resolver.resolve(raw_id, sem, depth, K, T_ws, T_wb, states.dims, states.ids)
        amodal = estimate_amodal(K, T_ws, T_wb, states.dims, states.ids, states.kinds, inst, depth, sem, skip={self.ego.sid},
                                 ground=GROUND_CLASSES_GENERATED if self.builtin_map else GROUND_CLASSES)
        return CameraData(K.copy(), T_ws, rgb, depth, sem, inst, amodal)

    def _carla_to_sid(self, cids: np.ndarray) -> np.ndarray:
        """simgen ids (uint32, 0 = not an actor of the episode) of CARLA actor ids; vectorised."""
        keys, vals = self._cid_keys, self._cid_vals
        if len(keys) == 0 or len(cids) == 0:
            return np.zeros(len(cids), np.uint32)
        pos = np.clip(np.searchsorted(keys, cids), 0, len(keys) - 1)
        return np.where(keys[pos] == cids, vals[pos], 0).astype(np.uint32)

    def _lidar(self, s, data: dict, t: float) -> LidarData:
        d = data[f"{s.name}:lidar"]
        counts = [int(d.get_point_count(c)) for c in range(int(d.channels))]
        pts = decode_semantic_lidar(d.raw_data, counts)
        keep, intensity, xyz = lidar_postprocess(pts["xyz"], s.lidar, self._sensor_rngs[s.name])
        idx = np.flatnonzero(keep)
        inst = self._carla_to_sid(pts["object_idx"][idx])
        T_ws = matrix_from_carla(d.transform)
        T_start = self._prev_lidar_pose.get(s.name, T_ws)
        self._prev_lidar_pose[s.name] = T_ws
        return LidarData(T_ws, T_start, xyz[idx], intensity[idx], pts["tag"][idx], inst,
                         np.full(len(idx), t, np.float64), pts["channel"][idx],
                         false_return=np.zeros(len(idx), np.uint8))  # CARLA simulates no fog/rain returns

    # ------------------------------------------------------------------------------------------------ clean-up
    def _destroy(self, ids: list[int]) -> None:
        if not ids:
            return
        cmd = self.carla.command
        failed = list(ids)
        try:
            res = self.client.apply_batch_sync([cmd.DestroyActor(i) for i in ids], False)
            failed = [i for i, r in zip(ids, res) if getattr(r, "error", None)]
        except Exception as exc:  # noqa: BLE001 - fall back to one by one below
            self.cleanup_errors.append(f"batch destroy: {exc}")
        for i in failed:
            try:
                a = self.world.get_actor(i)
                if a is not None:
                    a.destroy()
            except Exception as exc:  # noqa: BLE001
                self.cleanup_errors.append(f"destroy {i}: {exc}")

    def close(self) -> None:
        """Destroy everything spawned, restore the world's settings (idempotent; never raises: problems are logged
        and kept in ``cleanup_errors``)."""
        if self._closed:
            return
        self._closed = True

        def attempt(what, fn):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - clean-up is best effort, on a possibly dead server
                self.cleanup_errors.append(f"{what}: {exc}")
                log.warning("CARLA clean-up: %s failed: %s", what, exc)

        for s in self._sensors:
            attempt("stop sensor", s.stop)
        if self._spawned:
            attempt("destroy actors", lambda: self._destroy(list(reversed(self._spawned))))
            self._spawned = []
        if self._lights_frozen:
            attempt("unfreeze traffic lights", lambda: self.world.freeze_all_traffic_lights(False))
        if self._tm is not None and self._tm_sync_set and self._orig_settings is not None and not self._orig_settings.synchronous_mode:
            attempt("traffic manager async", lambda: self._tm.set_synchronous_mode(False))
        if self._orig_settings is not None and self._world_for_restore is not None:
            attempt("restore settings", lambda: self._world_for_restore.apply_settings(self._orig_settings))


# =====================================================================================================================
# CARLA towns
# =====================================================================================================================


class _TownPlanner:
    """Actor plans on a CARLA town.  Lanes are named ``"ROAD:LANE"`` (OpenDRIVE road and lane ids of the town),
    ``s_m`` is the road's s; ``relative_to`` walks the waypoint graph; x/y are simgen world coordinates (the town's
    CARLA y negated).  Dimensions and colours are drawn as the builtin World draws them."""

    def __init__(self, session: CarlaSession):
        self.se = session
        self.rng = np.random.default_rng(session._s_world)
        self.map = session.map

    def _err(self, key, msg):
        return InputError(msg, file=self.se.source, key=key)

    def _waypoint(self, place, key, placed):
        if place.lane is not None:
            try:
                road, lane = (int(v) for v in place.lane.split(":"))
            except ValueError:
                raise self._err(f"{key}.lane", f"got {place.lane!r}; on a CARLA town lanes are 'ROAD:LANE' (OpenDRIVE ids)") from None
            wp = self.map.get_waypoint_xodr(road, lane, float(place.s_m))
            if wp is None:
                raise self._err(f"{key}.lane", f"{self.se.scenario.map} has no lane {place.lane} at s={place.s_m}")
            return wp
        if place.relative_to is not None:
            ref = placed.get(place.relative_to)
            if ref is None or ref[1] is None:
                raise self._err(f"{key}.relative_to", f"actor {place.relative_to!r} must be placed on a lane before it is referenced")
            wp = ref[1]
            for _ in range(abs(place.lane_offset)):
                wp = wp.get_left_lane() if place.lane_offset > 0 else wp.get_right_lane()
                if wp is None:
                    raise self._err(f"{key}.lane_offset", f"got {place.lane_offset}; there is no such lane")
            if place.ahead_m > 0:
                nxt = wp.next(place.ahead_m)
            elif place.ahead_m < 0:
                nxt = wp.previous(-place.ahead_m)
            else:
                nxt = [wp]
            if not nxt:
                raise self._err(f"{key}.ahead_m", f"got {place.ahead_m}; the lane ends before that")
            return nxt[0]
        return None

    def _pose(self, place, wp):
        if wp is not None:
            T = matrix_from_carla(wp.transform)
            yaw = math.atan2(T[1, 0], T[0, 0])
            x = T[0, 3] - place.lateral_m * math.sin(yaw)
            y = T[1, 3] + place.lateral_m * math.cos(yaw)
            return x, y, T[2, 3], yaw + math.radians(place.yaw_deg)
        loc = location_to_carla([place.x, place.y, 0.0], self.se.carla)
        g = self.map.get_waypoint(loc)
        z = xyz_from_carla(g.transform.location)[2] if g is not None else 0.0
        return float(place.x), float(place.y), float(z), math.radians(place.yaw_deg)

    def _new(self, sid, name, kind_name, dims_spec, colour, pose, speed, behaviour, events, lane, traffic=False):
        from simgen.sim.world import sample_appearance

        kind = ACTOR_KINDS[kind_name]
        dims, colour = sample_appearance(kind, dims_spec, colour, self.rng, self.se.scenario.appearance.colour_jitter)
        x, y, z, yaw = pose
        walk_left = None
        if behaviour.type == "walk":
            yaw += math.radians(behaviour.heading_deg)
            walk_left = behaviour.distance_m
            speed = behaviour.speed_mps if behaviour.speed_mps is not None else speed
        return _Plan(sid, name, kind, sid == 1, dims, np.asarray(colour, np.float32), x, y, z, yaw, float(speed), behaviour,
                     tuple(events), lane, 0.0, 0.0, walk_left, traffic, row=sid - 1)

    def plans(self) -> list[_Plan]:
        sc = self.se.scenario
        placed: dict[str, tuple] = {}
        out = []
        wp = self._waypoint(sc.ego.place, "ego.place", placed)
        pose = self._pose(sc.ego.place, wp)
        out.append(self._new(1, "ego", sc.ego.kind, sc.ego.dims, None, pose, sc.ego.speed_mps, sc.ego.behaviour, sc.ego.events,
                             sc.ego.place.lane or (f"{wp.road_id}:{wp.lane_id}" if wp is not None else None)))
        placed["ego"] = (pose, wp)
        for i, a in enumerate(sc.actors):
            key = f"actors[{i}]"
            wp = self._waypoint(a.place, f"{key}.place", placed)
            pose = self._pose(a.place, wp)
            lane = f"{wp.road_id}:{wp.lane_id}" if wp is not None else None
            out.append(self._new(len(out) + 1, a.id, a.kind, a.dims, a.colour, pose, a.speed_mps, a.behaviour, a.events, lane))
            placed[a.id] = (pose, wp)
        tr = sc.traffic
        ego = out[0]
        spawns = [matrix_from_carla(tf) for tf in self.map.get_spawn_points()]
        spawns = [T for T in spawns if math.hypot(T[0, 3] - ego.x, T[1, 3] - ego.y) <= tr.radius_m]
        order = self.rng.permutation(len(spawns)) if spawns else []
        for n, j in enumerate(order[: tr.vehicles]):
            T = spawns[j]
            kind = tr.kinds[self.rng.integers(len(tr.kinds))]
            speed = float(self.rng.uniform(*tr.speed_mps))
            pose = (T[0, 3], T[1, 3], T[2, 3], math.atan2(T[1, 0], T[0, 0]))
            out.append(self._new(len(out) + 1, f"traffic_{n}", kind, None, None, pose, speed,
                                 Behaviour(type="lane_follow", speed_mps=speed), (), None, traffic=True))
        if tr.pedestrians:
            self.se.world.set_pedestrians_seed(int(self.rng.integers(2 ** 31)))
        for n in range(tr.pedestrians):
            loc = self.se.world.get_random_location_from_navigation()
            if loc is None:
                continue
            p = xyz_from_carla(loc)
            speed = float(self.rng.uniform(0.9, 1.6))
            yaw = float(self.rng.uniform(-math.pi, math.pi))
            kind = "child" if self.rng.random() < 0.15 else "pedestrian"
            out.append(self._new(len(out) + 1, f"walker_{n}", kind, None, None, (p[0], p[1], p[2], yaw), speed,
                                 Behaviour(type="walk", speed_mps=speed), (), None, traffic=True))
        return out
