"""Control: who moves the actors and how, lights, and the triggers.

Behaviours are dispatched through one registry, :data:`BEHAVIOURS` (behaviour type → handler that starts it with
CARLA's mechanisms), and the per-tick motion through :data:`MOTIONS` (motion mode → handler adding that tick's
commands to the batch).  A new behaviour is one ``@behaviour("name")`` handler here (and one in the builtin
simulator); :data:`PHYSICS_BEHAVIOURS` (what ``drive="carla"`` can play) is the registry's keys.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import types
import warnings
from typing import Callable

import numpy as np

from simgen.backends.carla.common import DOOR_OPEN_RAD, KMH, LIGHT_NAMES, TM_FOLLOW_GAP_M, _Actor, _Plan
from simgen.backends.carla_frames import location_to_carla, matrix_to_carla, vector_to_carla
from simgen.errors import InputError, RunError
from simgen.geometry import invert, pose_matrix
from simgen.spec.scenario import Behaviour, ScenarioSpec

log = logging.getLogger("simgen.backends.carla")

# behaviour type -> handler(session, actor, behaviour, initial)
BEHAVIOURS: dict[str, Callable] = {}
# motion mode -> handler(session, actor, batch, first) adding this tick's commands
MOTIONS: dict[str, Callable] = {}
TM_MODES = ("tm", "profile")  # modes in which the Traffic Manager drives (autopilot on)
TM_BEHAVIOURS = ("lane_follow", "lane_change", "scripted")


def behaviour(*names: str):
    """Register a handler that starts the behaviour types ``names`` on a CARLA actor."""
    def deco(fn):
        for n in names:
            BEHAVIOURS[n] = fn
        return fn
    return deco


def motion(*modes: str):
    """Register the per-tick handler of motion modes ``modes``."""
    def deco(fn):
        for m in modes:
            MOTIONS[m] = fn
        return fn
    return deco


def _straight_mode(act: _Actor) -> str:
    """How a non-Traffic-Manager mover goes straight: walkers walk, props are moved kinematically, vehicles by target
    velocity."""
    return "walk" if act.driver == "walker" else ("kinematic" if act.driver == "prop" else "straight")


# ------------------------------------------------------------------------------------------------ behaviours
@behaviour("parked", "stand")
def _start_hold(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    act.speed_cmd = 0.0
    act.mode = "hold"
    se._hold(act)


@behaviour("open_door")
def _start_open_door(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    _start_hold(se, act, b, initial)
    if act.driver == "vehicle":
        act.door_sign = 1.0 if b.direction == "left" else -1.0
        se._open_door(act)


@behaviour("walk")
def _start_walk(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    act.walked, act.hesitate_until = 0.0, None
    if not initial:
        act.heading = float(se._yaw_now(act) + math.radians(b.heading_deg))
        act.walk_left = b.distance_m
        if b.speed_mps is not None:
            act.speed_cmd = b.speed_mps
    act.mode = _straight_mode(act)
    se._coast(act)


@behaviour("brake", "stop")
def _start_brake(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    act.decel = b.decel_mps2
    if not initial:
        act.speed_cmd = se._speed_now(act)
    act.mode = "ramp"
    se._coast(act)


def _start_tm(se, act: _Actor, b: Behaviour, initial: bool) -> bool:
    """Hand a vehicle on a lane to the Traffic Manager; False (and straight motion) for anything else, as the builtin
    simulator moves off-lane vehicles and non-vehicles straight at their speed."""
    if act.driver != "vehicle" or (se.builtin_map and act.plan.lane is None):
        if not initial:
            act.heading = se._yaw_now(act)
        act.mode = _straight_mode(act)
        se._coast(act)
        return False
    tm, a = se._tm, act.actor
    if act.mode not in TM_MODES:
        a.set_autopilot(True, se.backend.tm_port)
    tm.auto_lane_change(a, False)
    tm.distance_to_leading_vehicle(a, TM_FOLLOW_GAP_M)
    return True


def _tm_follow_settings(se, act: _Actor, b: Behaviour) -> None:
    tm, a = se._tm, act.actor
    target = b.speed_mps if b.speed_mps is not None else (max(act.speed_cmd, 0.1) if act.speed_cmd > 0 else 10.0)
    act.mode = "tm"
    tm.set_desired_speed(a, float(target * KMH))
    tm.ignore_lights_percentage(a, 0.0 if b.obey_lights else 100.0)
    tm.ignore_vehicles_percentage(a, 100.0 if b.obstacles == "none" else 0.0)
    tm.ignore_walkers_percentage(a, 0.0 if b.obstacles == "all" else 100.0)


def _tm_route(se, act: _Actor, b: Behaviour) -> None:
    path = se._route_path(act.plan.lane, b.turns)
    if path:
        se._tm.set_path(act.actor, path)


@behaviour("lane_follow")
def _start_lane_follow(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    if _start_tm(se, act, b, initial):
        _tm_follow_settings(se, act, b)
        _tm_route(se, act, b)


@behaviour("scripted")
def _start_scripted(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    """Follows its lane with the profile's speed, ignoring everything else."""
    if _start_tm(se, act, b, initial):
        tm, a = se._tm, act.actor
        act.mode = "profile"
        tm.set_desired_speed(a, float(np.interp(0.0, *np.array(b.speed_profile).T)) * KMH)
        for f in (tm.ignore_lights_percentage, tm.ignore_vehicles_percentage, tm.ignore_walkers_percentage):
            f(a, 100.0)
        _tm_route(se, act, b)


@behaviour("lane_change")
def _start_lane_change(se, act: _Actor, b: Behaviour, initial: bool) -> None:
    """``force_lane_change``: the TM decides the manoeuvre's length, not ``duration_s``."""
    if not _start_tm(se, act, b, initial):
        return
    _tm_follow_settings(se, act, b)
    if se.builtin_map:
        lane = se.sim_world.map.lanes.get(act.plan.lane) if act.plan.lane else None
        nxt = getattr(lane, b.direction) if lane is not None else None
        if nxt is None:
            raise InputError(f"{act.name} cannot change lanes {b.direction}: lane {act.plan.lane} has no lane to its {b.direction}",
                             file=se.source, key=f"{act.name}.events")
        act.plan.lane = nxt
    se._tm.force_lane_change(act.actor, b.direction == "right")  # TM: True = to the right (LocalizationStage)
    _tm_route(se, act, b)


PHYSICS_BEHAVIOURS = tuple(BEHAVIOURS)  # behaviours CARLA's own controllers can play (drive="carla")


# ------------------------------------------------------------------------------------------------ per-tick motion
@motion("profile")
def _tick_profile(se, act: _Actor, batch: list, first: bool) -> None:
    v = float(np.interp(se._t_now + se.dt - act.t0, *np.array(act.behaviour.speed_profile).T))
    se._tm.set_desired_speed(act.actor, v * KMH)


@motion("ramp")
def _tick_ramp(se, act: _Actor, batch: list, first: bool) -> None:
    """brake/stop: v <- max(0, v - decel dt) by target velocity, then the hand brake."""
    carla, cmd = se.carla, se.carla.command
    if not first:
        act.speed_cmd = max(0.0, act.speed_cmd - act.decel * se.dt)
    yaw = se._yaw_now(act)
    if act.driver == "vehicle":
        v = act.speed_cmd * np.array([math.cos(yaw), math.sin(yaw), 0.0])
        batch.append(cmd.ApplyTargetVelocity(act.cid, vector_to_carla(v, carla)))
        if act.speed_cmd == 0.0:
            batch.append(cmd.ApplyVehicleControl(act.cid, carla.VehicleControl(throttle=0.0, brake=1.0, hand_brake=True)))
            act.mode = "hold"
    elif act.driver == "walker":
        batch.append(cmd.ApplyWalkerControl(act.cid, se._walker_control(yaw, act.speed_cmd)))
    else:
        act.heading = yaw
        se._kinematic(act, batch)


@motion("walk", "straight", "kinematic")
def _tick_straight(se, act: _Actor, batch: list, first: bool) -> None:
    carla, cmd = se.carla, se.carla.command
    speed = se._walk_speed(act, se.dt)
    if act.mode == "walk":
        batch.append(cmd.ApplyWalkerControl(act.cid, se._walker_control(act.heading, speed)))
    elif act.mode == "straight":
        v = speed * np.array([math.cos(act.heading), math.sin(act.heading), 0.0])
        batch.append(cmd.ApplyTargetVelocity(act.cid, vector_to_carla(v, carla)))
    else:
        se._kinematic(act, batch, speed)


def physics_unsupported(spec: ScenarioSpec, builtin_map: bool) -> list[str]:
    """What in a scenario CARLA's own controllers (``drive="carla"``) cannot play; empty when everything can."""
    items = [("ego", spec.ego.behaviour, spec.ego.events)] + [(a.id, a.behaviour, a.events) for a in spec.actors]
    out = []
    for who, b0, events in items:
        for b in [b0] + [e.do for e in events]:
            if b.type not in BEHAVIOURS:
                out.append(f"{who}: behaviour {b.type!r}")
            if b.reverse:
                out.append(f"{who}: reverse (wrong-way driving)")
            if b.aeb:
                out.append(f"{who}: aeb")
            if b.turns and not builtin_map:
                out.append(f"{who}: turns on a CARLA town")
    return sorted(set(out))


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


class ControlMixin:
    """CarlaSession's lights, behaviours (drive="carla"), per-tick commands and placement (drive="simgen"/replay)."""

    def _start_behaviour(self, act: _Actor, b: Behaviour, initial: bool = False) -> None:
        """Switch an actor to behaviour ``b`` (the builtin ``World._start_behaviour`` semantics, CARLA mechanisms),
        through the :data:`BEHAVIOURS` registry."""
        act.behaviour = b
        act.t0 = self._t_now
        if act.mode in TM_MODES and b.type not in TM_BEHAVIOURS:
            act.actor.set_autopilot(False, self.backend.tm_port)
        BEHAVIOURS[b.type](self, act, b, initial)

    def _controls(self, first: bool) -> None:
        """Per-tick commands for the motion of the coming tick (one batch), through the :data:`MOTIONS` registry."""
        batch = []
        for act in self.actors:
            if act.crashed and act.mode not in ("hold", "idle"):
                if act.mode in TM_MODES:
                    act.actor.set_autopilot(False, self.backend.tm_port)
                act.mode, act.speed_cmd = "hold", 0.0
                self._hold(act)
                continue
            handler = MOTIONS.get(act.mode)
            if handler is not None:
                handler(self, act, batch, first)
        if batch:
            for r in self.client.apply_batch_sync(batch, False):
                if getattr(r, "error", None):
                    log.warning("CARLA command failed: %s", r.error)

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
                    z = float(np.interp(s, exit_lane.centre.vertex_s, exit_lane.z)) if exit_lane.z is not None else 0.0
                    locs.append(location_to_carla([x, y, z], self.carla))
        return locs

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

    def _follow(self, target) -> None:
        """Place the CARLA actors where ``target`` (the spawned rows of an ActorStates) says before the tick:
        vehicles and props teleported (physics off), walkers put one tick short of the target and walked into it
        (so they animate)."""
        carla, cmd = self.carla, self.carla.command
        batch = []
        for i, act in enumerate(self.actors):
            x, y, z, yaw = target.pose[i]
            pitch, roll = target.attitude[i]  # the simulator's ground-following attitude (walkers: 0)
            v = target.velocity[i]
            if act.driver == "walker":
                speed = float(np.hypot(v[0], v[1]))
                T = pose_matrix(x - v[0] * self.dt, y - v[1] * self.dt, z, yaw) @ invert(act.T_actor_from_bottom)
                batch.append(cmd.ApplyTransform(act.cid, matrix_to_carla(T, carla)))
                heading = math.atan2(v[1], v[0]) if speed > 1e-3 else yaw
                batch.append(cmd.ApplyWalkerControl(act.cid, self._walker_control(heading, speed)))
            else:
                T = pose_matrix(x, y, z, yaw, pitch, roll) @ invert(act.T_actor_from_bottom)
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
                                 door=st.door[rows] if st.door is not None else None,
                                 pitch_roll=st.pitch_roll[rows] if st.pitch_roll is not None else None)
        collisions = [(a, b) for a, b in collisions if a in keep and b in keep]
        return st, lights, collisions, events, float(t)
