"""The ``carla`` backend: plays simgen scenarios and rigs in a CARLA 0.9.15/0.9.16 server and returns the same
:class:`~simgen.records.Frame` contents as the builtin backend.

The package is split by concern: :mod:`~simgen.backends.carla_server` (connection and server management),
:mod:`.blueprints` (which blueprint renders what), :mod:`.spawning` (actor plans, spawning, settling),
:mod:`.control` (behaviour and motion registries, lights, triggers), :mod:`.sensors` (sensor spawning, frame
matching, decoding, instance ids, amodal estimate), :mod:`.session` (one episode), :mod:`.common` (shared
constants and records); :mod:`~simgen.backends.carla_frames` is the one place frames are converted.

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
  (:func:`substep_settings`).  Actors spawned 0.15 m up drop and bounce for 3-4 ticks: they are held still for
  ``max(4, 0.25 s)`` of ticks after spawning (``settle_ticks``), then the sensors are spawned; frame *k* is the
  *k*-th tick after that, at ``time_s = k / tick_hz``.
- **Actors**: the same actors as the builtin backend: the builtin :class:`~simgen.sim.world.World` is built from
  the same seed stream (``simgen.seeding.streams``), so placements, traffic, dimensions asked for and colours are
  identical; sensors get the same jittered mountings.  Each actor gets the CARLA blueprint of its kind
  (:mod:`.blueprints`: vehicles by documented ``base_type`` with fallbacks, door-opening vehicles only with
  ``has_dynamic_doors=true``, props from CARLA's catalogue, a ball as a logged stand-in) whose bounding box is
  closest to those dimensions (ties broken at random from the episode seed); the dimensions *reported* (static
  info and every frame) are CARLA's bounding box of a rotation-0 probe, i.e. what was rendered (a spawned
  static prop's own ``bounding_box`` carries its world rotation and is not used).  Spawning uses ``spawn_actor``
  and classifies failures: a lost server is :class:`CarlaServerLost` (the retry path), a refused spot a RunError.  Lane placements are
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
- **Instance ids**: the instance camera's id (G + 256 B, 16 bits: larger actor ids wrap) is Unreal's object id in
  CARLA 0.9.15 and CARLA's actor id where available in later releases; neither is trusted blindly.  Pixels are
  grouped by (semantic tag, id) and each group is resolved geometrically once: its
  pixels are back-projected with the depth image and assigned to the simgen actor whose box holds most of them
  (ids found to be static scenery are cached as 0).  The semantic LiDAR's ``object_idx`` is CARLA's actor id and
  maps directly.
- **amodal_pixels is an estimate** (CARLA cannot render an actor with the others hidden): the actor's visible
  pixels plus the *occluded* part of its projected 3-D box silhouette (pixels where something nearer than the box's
  far face is seen) times the actor's *fill ratio* — the share of the silhouette it covers where that can be
  observed (pixels showing the actor, or showing ground or something beyond the box).  On worlds generated from
  OpenDRIVE untagged surfaces (tag 0: the procedural road meshes) count as ground.  With less than a quarter of
  the silhouette observable a per-kind prior fill ratio is used.  Unoccluded actors get exactly their visible count;
  visible fractions of occluded actors are approximate.  See docs/carla.md.
- **Static info** reports the CARLA bounding-box dims; ``colour`` is the colour set on the blueprint's ``color``
  attribute (linear RGB), NaN where the blueprint has none (walkers, props).

Frames: everything CARLA returns is converted by :mod:`simgen.backends.carla_frames` only.
"""
from __future__ import annotations

import logging

import numpy as np

from simgen.backends.carla.blueprints import (  # noqa: F401 - re-exported
    BALL_STAND_INS, BASE_TYPES, DEBRIS_PROPS, PROP_CHOICE, VEHICLE_CHOICE, choose_blueprint, has_dynamic_doors,
    linear_to_srgb8, needs_dynamic_doors, prop_candidates, srgb8_to_linear, vehicle_candidates,
)
from simgen.backends.carla.common import (  # noqa: F401 - re-exported
    DOOR_OPEN_RAD, DRIVES, FAR_M, GROUND_CLASSES, GROUND_CLASSES_GENERATED, INSTALL_HINT, INSTANCE_ID_BITS, KMH,
    LIGHT_NAMES, MAX_SUBSTEP_S, MAX_SUBSTEPS, PRIOR_FILL, SEM_LIDAR_DTYPE, SETTLE_MIN_TICKS, SETTLE_S, SPAWN_LIFT_M,
    SUPPORTED_SERVERS, THING_CLASSES, TM_FOLLOW_GAP_M, SensorTimeout, _Actor, _Plan, footprints, spawn_or_none,
    substep_settings,
)
from simgen.backends.carla.control import (  # noqa: F401 - re-exported
    BEHAVIOURS, MOTIONS, PHYSICS_BEHAVIOURS, _TriggerShim, behaviour, motion, physics_unsupported,
)
from simgen.backends.carla.sensors import (  # noqa: F401 - re-exported
    FrameCollector, InstanceResolver, decode_bgra, decode_depth, decode_instance, decode_semantic, decode_semantic_lidar,
    estimate_amodal, lidar_postprocess,
)
from simgen.backends.carla.session import CarlaSession
from simgen.backends.carla.spawning import _TownPlanner  # noqa: F401 - re-exported
from simgen.backends.carla_server import CarlaServer, CarlaServerLost, find_carla_root, port_plan, retrying  # noqa: F401
from simgen.errors import InputError
from simgen.spec.rig import RigSpec
from simgen.spec.scenario import ScenarioSpec

log = logging.getLogger(__name__)


def _load_carla():
    """The ``carla`` module, or InputError with the install hint (tests patch this to inject a double)."""
    try:
        import carla  # noqa: PLC0415 - optional dependency, imported at the edge
    except ImportError as exc:
        raise InputError(INSTALL_HINT, key="--backend") from exc
    return carla


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
