"""One episode in CARLA (:class:`CarlaSession`): connection, map, time settings, weather, stepping and clean-up;
blueprints, spawning, sensors and control come from the mixins of the modules named after them."""
from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np

from simgen.backends.carla.blueprints import BlueprintsMixin
from simgen.backends.carla.common import SUPPORTED_SERVERS, _Actor, footprints, substep_settings
from simgen.backends.carla.control import ControlMixin, _TriggerShim, physics_unsupported
from simgen.backends.carla.sensors import SensorsMixin
from simgen.backends.carla.spawning import SpawningMixin
from simgen.backends.carla_frames import matrix_from_carla, xyz_from_carla
from simgen.backends.carla_server import CarlaServerLost, is_server_failure
from simgen.errors import InputError, RunError
from simgen.geometry import euler_from_matrix
from simgen.records import ActorInfo, Frame, StaticInfo
from simgen.spec.rig import RigSpec
from simgen.spec.scenario import ScenarioSpec

log = logging.getLogger("simgen.backends.carla")


class CarlaSession(BlueprintsMixin, SpawningMixin, SensorsMixin, ControlMixin):
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
        from simgen.world.roads import MAPS, is_map_file

        self.backend, self.carla = backend, backend.carla
        self.scenario, self.rig, self.source = scenario, rig, source
        self.record = record
        self.n_frames = n_frames or (record.n_frames if record is not None else scenario.n_frames)
        self.dt = 1.0 / scenario.tick_hz
        # an imported .xodr map is played like a builtin one: the builtin World plans the actors on the same
        # lanes (both sides read the file with CARLA's parser) and the server generates its world from the file
        self.imported_map = is_map_file(scenario.map)
        self.builtin_map = scenario.map in MAPS or self.imported_map
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
            if self.imported_map:
                from simgen.world.roads import get_map
                from simgen.world.xodr import XodrLayout

                self.layout = XodrLayout(get_map(name, file=self.source))
                try:
                    xodr = open(name, encoding="utf-8", errors="replace").read()
                except OSError as e:
                    raise InputError(f"cannot read OpenDRIVE map {name}: {e.strerror}", file=self.source, key="map") from None
            else:
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
        T_wb = states.box_poses()  # full orientation: actors on slopes carry CARLA's pitch and roll
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
        pitch_roll = np.zeros((A, 2))
        for i, act in enumerate(self.actors):
            s = snap.find(act.cid)
            if s is None:
                raise RunError(f"actor {act.name} (CARLA id {act.cid}) is missing from frame {snap.frame}")
            T = matrix_from_carla(s.get_transform()) @ act.T_actor_from_bottom
            roll, pitch, yaw = euler_from_matrix(T)  # simgen ZYX (simgen.records): + pitch nose down, + roll left up
            pose[i] = (T[0, 3], T[1, 3], T[2, 3], float(yaw))
            pitch_roll[i] = (float(pitch), float(roll))
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
                           accel=acc, dims=self._dims.copy(), door=door, pitch_roll=pitch_roll)

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
