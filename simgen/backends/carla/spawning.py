"""Actor spawning: plans (from the builtin World on builtin maps, from waypoints on CARLA towns), spawning with
classified failures, settling before frame 0, destruction."""
from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from simgen.backends.carla.blueprints import PROP_CHOICE, choose_blueprint, has_dynamic_doors, linear_to_srgb8, needs_dynamic_doors, srgb8_to_linear
from simgen.backends.carla.common import SETTLE_MIN_TICKS, SETTLE_S, SPAWN_LIFT_M, _Actor, _Plan, spawn_or_none
from simgen.backends.carla_frames import (
    T_actor_from_box_bottom, bbox_dims, location_to_carla, matrix_from_carla, matrix_to_carla, vector_to_carla, xyz_from_carla,
)
from simgen.classes import ACTOR_KINDS
from simgen.errors import InputError, RunError
from simgen.geometry import invert, pose_matrix
from simgen.spec.scenario import Behaviour

log = logging.getLogger("simgen.backends.carla")


class SpawningMixin:
    """CarlaSession's actor plans, spawning, settling and destruction."""

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
