"""The embedded simulator: actors on a road map, stepped at a fixed tick.

Vehicles use a kinematic bicycle model steered by pure pursuit along a path (their lane, or a route through a
junction) with a lateral offset (lane changes); their longitudinal control is IDM car-following with stops at
red lights, or a scripted behaviour (hard braking ...).  Pedestrians move kinematically.  Events fire on
triggers (time, distance, time-to-collision, another event) with an optional delay and switch an actor's
behaviour.  Actor–actor collisions are detected with oriented footprints (separating axes) every tick.

Speed (issue 13): lane followers and plain walkers are stepped together over arrays by compiled loops
(:mod:`simgen.sim.kernels`), the other actors by their per-actor code, in actor order; ``World.array_step = False``
steps everyone per actor (the reference the tests compare against).

Units: metres, seconds, radians; world frame x east, y north, z up.  All randomness comes from the
``numpy.random.Generator`` handed in.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from simgen.classes import ACTOR_KINDS, ActorKind
from simgen.errors import InputError
from simgen.geometry import wrap_angle
from simgen.records import ActorStates  # noqa: F401 - moved to simgen.records; re-exported for old imports
from simgen.spec.scenario import Behaviour, EgoSpec, Event, Placement, ScenarioSpec
from simgen.world.roads import _RANK_Z, Polyline, RoadMap, get_map
from simgen.classes import PEDESTRIAN, ROADS

# IDM parameters (Treiber et al. 2000), typical urban values.
IDM_A_MAX = 1.5  # m/s^2
IDM_B = 2.0  # comfortable deceleration, m/s^2
IDM_T = 1.4  # time headway, s
IDM_S0 = 2.0  # jam distance, m
MAX_STEER = 0.6  # rad
_STILL = frozenset(("parked", "stand", "open_door"))  # behaviours that stand still
_chain = itertools.chain.from_iterable
_DIMS = operator.attrgetter("dims")
_PLAN_SIG = operator.attrgetter("behaviour", "path", "crashed", "lc", "stop_points", "junction_entries")
_PER_ACTOR = frozenset(("synchronize", "reverse", "walk"))  # built-ins stepped by per-actor Python
_LIGHT_CODE = {"yellow": 1, "red": 2}  # light phase codes of the compiled stop-line test (others: 0)
CAR_COLOURS = np.array(
    [[0.8, 0.8, 0.82], [0.05, 0.05, 0.06], [0.5, 0.52, 0.55], [0.6, 0.05, 0.05], [0.05, 0.15, 0.5],
     [0.9, 0.9, 0.9], [0.25, 0.3, 0.28], [0.7, 0.55, 0.1], [0.1, 0.35, 0.15], [0.35, 0.2, 0.1]], np.float32)
CLOTHING_COLOURS = np.array(
    [[0.1, 0.12, 0.3], [0.5, 0.1, 0.1], [0.2, 0.2, 0.2], [0.6, 0.6, 0.55], [0.1, 0.35, 0.2], [0.7, 0.45, 0.1]], np.float32)


@dataclass
class Actor:
    """One simulated actor (the ego is actor id 1)."""

    id: int
    name: str
    kind: ActorKind
    dims: np.ndarray  # (3,) length, width, height
    colour: np.ndarray  # (3,) paint / clothing colour, linear RGB
    x: float
    y: float
    yaw: float
    speed: float
    behaviour: Behaviour
    events: tuple[Event, ...] = ()
    path: Polyline | None = None
    lane: str | None = None
    s: float = 0.0
    lateral: float = 0.0  # current lateral target offset from the path (m, left +)
    accel: float = 0.0
    steer: float = 0.0
    z: float = 0.0
    vz: float = 0.0  # vertical velocity over the last tick, dz/dt (m/s): kerbs, slopes
    pitch: float = 0.0  # ground-following attitude (rad; simgen.records convention: + nose down), set by _update_z
    roll: float = 0.0  # (rad; + left side up)
    is_ego: bool = False
    walk_left_m: float | None = None
    walk_heading: float = 0.0
    lc: dict | None = None  # lane change in progress
    crashed: bool = False
    stop_points: list = field(default_factory=list)  # [(s on path, light id)]
    behaviour_t0: float = 0.0  # simulation time the current behaviour started
    door: float = 0.0  # door opening angle (rad) for open_door: > 0 the left front door, < 0 the right one
    walked_m: float = 0.0
    hesitate_until: float | None = None
    aeb_latched: bool = False  # emergency braking engaged: brake to a stop and hold while blocked
    sync: dict | None = None  # synchronize in progress: own/reference points (see World._sync_start)
    junction_entries: list = field(default_factory=list)  # [(s on path, junction id)] of unsignalised junctions

    @property
    def is_vehicle(self) -> bool:
        return self.kind.vehicle

    @property
    def wheelbase(self) -> float:
        return max(0.8, 0.6 * float(self.dims[0]))

    def __copy__(self):  # a copy gets its own state row (it would share the original's otherwise)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._row = self._row.copy()
        return new


# The moving state of an actor lives in one float64 row (issue 13, third round): a World keeps the rows of its actors
# as one (N, len(STATE_COLUMNS)) array (World._S) and each Actor's row is a view of it, so the tick's compiled
# loops read and write the whole state at once instead of gathering it from the actors and writing it back; the
# attributes below read and write the row (Python floats out, float64 in: the same IEEE doubles either way).
STATE_COLUMNS = ("x", "y", "yaw", "speed", "s", "lateral", "accel", "steer", "z", "vz", "pitch", "roll", "door",
                 "walked_m")
_COL = {name: c for c, name in enumerate(STATE_COLUMNS)}
_C_DRIVE = np.array([_COL[k] for k in ("x", "y", "yaw", "speed", "s", "accel", "steer")])  # kernels.drive's rows
_C_POSE = np.array([_COL[k] for k in ("x", "y", "z", "yaw")])  # ActorStates.pose
_C_GROUND = np.array([_COL[k] for k in ("x", "y", "z", "vz", "pitch", "roll")])  # kernels.ground_update
_C_STATES = np.array([_COL[k] for k in ("x", "y", "z", "yaw", "speed", "vz", "accel", "door", "pitch", "roll")])


def _state_property(name: str, c: int) -> property:
    def get(self):
        return self._row.item(c)

    def set_(self, v):
        self._row[c] = v

    return property(get, set_, doc=f"state column {c} ({name}): a view of the World's state array")


for _name, _c in _COL.items():
    setattr(Actor, _name, _state_property(_name, _c))

_DIMS_EPOCH = [0]  # bumped whenever an actor is given a new dims array (World._static_arrays rebuilds then)


def _get_dims(self):
    return self._dims


def _set_dims(self, v):
    self._dims = v
    _DIMS_EPOCH[0] += 1


Actor.dims = property(_get_dims, _set_dims, doc="(3,) length, width, height; assign a new array to change them "
                      "(never edited in place: the World's static arrays follow assignments)")


def _bumps(name):
    base = getattr(list, name)

    def method(self, *args, **kwargs):
        self.version += 1
        return base(self, *args, **kwargs)

    method.__name__ = name
    return method


class ActorList(list):
    """The list of a World's actors: a plain list that counts its changes (``version``), so the World sees an
    actor added, removed or replaced without comparing the actors one by one every tick."""

    version = 0
    for _m in ("append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "__setitem__",
               "__delitem__", "__iadd__", "__imul__"):
        locals()[_m] = _bumps(_m)
    del _m
_actor_dataclass_init = Actor.__init__


def _actor_init(self, *args, **kwargs):
    self._row = np.zeros(len(STATE_COLUMNS))  # own row until a World takes the actor into its state array
    _actor_dataclass_init(self, *args, **kwargs)


_actor_init.__doc__ = _actor_dataclass_init.__doc__
Actor.__init__ = _actor_init


class World:
    """Builds the actors of a concrete scenario on its map and steps them."""

    #: step lane followers and plain walkers over arrays (compiled); False steps every actor with its per-actor
    #: Python code, the reference the array step is tested against (same results to rounding)
    array_step: bool = True

    def __init__(self, spec: ScenarioSpec, *, rng: np.random.Generator, source: str = "<scenario>"):
        self.spec = spec
        self.source = source
        try:
            self.map: RoadMap = get_map(spec.map, file=source)
        except KeyError as e:
            raise InputError(str(e.args[0]), file=source, key="map") from None
        self.dt = 1.0 / spec.tick_hz
        self.time_s = 0.0
        self.frame = 0
        self.actors: list[Actor] = ActorList()
        self.fired: dict[str, float] = {}  # event key -> time its conditions first held
        self.applied: set[str] = set()
        self.event_log: list[tuple[float, str, str]] = []  # (time, actor, event)
        self.collisions_total: set[tuple[int, int]] = set()
        self.impacts: list[dict] = []  # one record per first contact of a pair (see World._collisions)
        self._stepping: int | None = None  # index of the actor being stepped (None between steps)
        self._reserved: dict[int, int] = {}  # junction id -> index of the vehicle holding it
        self._rng = rng
        self._bank = None  # concatenated paths of the lane followers (World._path_bank)
        self._plan = None  # per-actor parameters of the array step (World._tick_plan)
        self._tick_cache = None  # World._static_arrays() while a step is under way
        self._light_index = {tl.id: k for k, tl in enumerate(self.map.traffic_lights)}
        self._S = np.zeros((0, len(STATE_COLUMNS)))  # the actors' state rows (STATE_COLUMNS), see _bind_state
        self._place_all()
        self._update_z()

    # ------------------------------------------------------------------ placement
    def _err(self, key: str, msg: str) -> InputError:
        return InputError(msg, file=self.source, key=key)

    def _lane(self, lane_id: str, key: str):
        if lane_id not in self.map.lanes:
            near = ", ".join(sorted(k for k, l in self.map.lanes.items() if l.kind != "connector"))
            raise self._err(key, f"unknown lane {lane_id!r} on map {self.map.name!r}; lanes: {near}")
        return self.map.lanes[lane_id]

    def _resolve(self, place: Placement, key: str, placed: dict[str, Actor], own_dims=None):
        """→ (x, y, yaw, lane id or None, path or None, s on path)."""
        yaw_off = np.deg2rad(place.yaw_deg)
        if place.road is not None:
            return self._resolve_road(place, key, yaw_off)
        if place.conflict_of is not None:
            return self._resolve_conflict(place, key, placed, yaw_off)
        if place.relative_to is not None and (place.before_junction_m is not None or
                                              getattr(self.map, "source_file", "")):
            ref = placed.get(place.relative_to)
            if ref is None:
                raise self._err(f"{key}.relative_to", f"actor {place.relative_to!r} must be placed before it is referenced")
            return self._resolve_on_route(place, key, ref, yaw_off)
        if place.lane is not None:
            lane = self._lane(place.lane, f"{key}.lane")
            if place.s_m > lane.centre.length:
                raise self._err(f"{key}.s_m", f"got {place.s_m}; allowed: 0 to {lane.centre.length:.0f} (length of lane {lane.id})")
            x, y, yaw = lane.centre.pose_at(place.s_m, place.lateral_m)
            return float(x), float(y), float(yaw) + yaw_off, lane.id, place.s_m, place.lateral_m
        if place.relative_to is not None:
            ref = placed.get(place.relative_to)
            if ref is None:
                raise self._err(f"{key}.relative_to", f"actor {place.relative_to!r} must be placed before it is referenced")
            if ref.lane is None:
                raise self._err(f"{key}.relative_to", f"actor {place.relative_to!r} is not on a lane; place relative to a lane actor")
            lane = self.map.lanes[ref.lane]
            step = "left" if place.lane_offset > 0 else "right"
            for _ in range(abs(place.lane_offset)):
                nxt = getattr(lane, step)
                if nxt is None:
                    raise self._err(f"{key}.lane_offset", f"got {place.lane_offset}; lane {lane.id} has no lane to its {step}")
                lane = self.map.lanes[nxt]
            s_ref, _ = lane.centre.project(np.array([ref.x, ref.y]))
            s = float(s_ref) + place.ahead_m
            if not -50.0 <= s <= lane.centre.length + 50.0:
                raise self._err(f"{key}.ahead_m", f"got {place.ahead_m}; that is off the end of lane {lane.id} (length {lane.centre.length:.0f} m)")
            x, y, yaw = lane.centre.pose_at(s, place.lateral_m)
            return float(x), float(y), float(yaw) + yaw_off, lane.id, s, place.lateral_m
        if place.behind is not None:
            occ, view = placed.get(place.behind), placed.get(place.as_seen_from)
            for ref, key2 in ((occ, "behind"), (view, "as_seen_from")):
                if ref is None:
                    raise self._err(f"{key}.{key2}", f"actor {getattr(place, key2)!r} must be placed before it is referenced")
            u = np.array([occ.x - view.x, occ.y - view.y])
            dist = float(np.linalg.norm(u))
            if dist < 1e-6:
                raise self._err(f"{key}.behind", f"{place.behind!r} and {place.as_seen_from!r} are at the same place")
            u /= dist
            ext = abs(np.cos(occ.yaw) * u[0] + np.sin(occ.yaw) * u[1]) * occ.dims[0] / 2 + \
                abs(-np.sin(occ.yaw) * u[0] + np.cos(occ.yaw) * u[1]) * occ.dims[1] / 2
            own = 0.5 * max(own_dims[0], own_dims[1]) if own_dims is not None else 0.5
            p = np.array([occ.x, occ.y]) + u * (ext + place.gap_m + own) + np.array([-u[1], u[0]]) * place.lateral_m
            return self._at_xy(p, float(np.arctan2(u[1], u[0])) + yaw_off)
        if place.crosswalk is not None:
            cws = {c.id: c for c in self.map.crosswalks}
            if place.crosswalk not in cws:
                raise self._err(f"{key}.crosswalk", f"unknown crosswalk {place.crosswalk!r} on map {self.map.name!r}; crosswalks: {', '.join(cws) or 'none'}")
            c = cws[place.crosswalk]
            v = np.asarray(c.end, float) - np.asarray(c.start, float)
            u = v / np.linalg.norm(v)
            p = np.asarray(c.start, float) + place.along * v + np.array([-u[1], u[0]]) * place.lateral_m
            return self._at_xy(p, float(np.arctan2(u[1], u[0])) + yaw_off)
        if place.sidewalk is not None:
            sws = {w.id: w for w in self.map.sidewalks}
            if place.sidewalk not in sws:
                raise self._err(f"{key}.sidewalk", f"unknown sidewalk {place.sidewalk!r} on map {self.map.name!r}; sidewalks: {', '.join(sws) or 'none'}")
            w = sws[place.sidewalk]
            if place.s_m > w.centre.length:
                raise self._err(f"{key}.s_m", f"got {place.s_m}; allowed: 0 to {w.centre.length:.0f} (length of sidewalk {w.id})")
            x, y, yaw = w.centre.pose_at(place.s_m, place.lateral_m)
            return self._at_xy(np.array([float(x), float(y)]), float(yaw) + yaw_off)
        return self._at_xy(np.array([place.x, place.y], float), yaw_off)

    # ---- placements on imported (OpenDRIVE) maps and along routes
    def _resolve_road(self, place: Placement, key: str, yaw_off: float):
        """OpenDRIVE road id, lane id, road s and lateral offset (towards +t) on an imported map."""
        finder = getattr(self.map, "lane_at_road_s", None)
        if finder is None:
            raise self._err(f"{key}.road", f"map {self.map.name!r} is not an OpenDRIVE map; use lane: (and s_m) "
                            "with its lane ids")
        roads = self.map.info["roads"]
        if place.road not in roads:
            raise self._err(f"{key}.road", f"unknown road {place.road} in {self.map.name}; roads: "
                            + ", ".join(str(r) for r in sorted(roads)))
        rd = roads[place.road]
        if not 0.0 <= place.s_m <= rd.length:
            raise self._err(f"{key}.s_m", f"got {place.s_m}; allowed: 0 to {rd.length:.1f} (length of road {rd.id})")
        hit = finder(place.road, place.lane_id, place.s_m)
        if hit is None:
            ids = sorted({l for _, _, ls in rd.sections for l, _ in ls if l != 0})
            raise self._err(f"{key}.lane_id", f"road {rd.id} of {self.map.name} has no drivable lane {place.lane_id} "
                            f"at s={place.s_m:g}; its lanes: {', '.join(map(str, ids))}")
        lane, arc = hit
        fwd = lane.s_road[-1] >= lane.s_road[0]
        lat = (place.offset_m if fwd else -place.offset_m) + place.lateral_m
        x, y, yaw = lane.centre.pose_at(arc, lat)
        return float(x), float(y), float(yaw) + yaw_off, lane.id, float(arc), lat

    def _route_lanes(self, a: Actor):
        """(lanes of ``a``'s route, start s of each on ``a.path``)."""
        seq = self.map.lane_sequence(a.lane, list(a.behaviour.turns)) if a.lane else []
        starts, acc = [], 0.0
        for ln in seq:
            starts.append(acc)
            acc += ln.centre.length
        return seq, np.array(starts)

    def _resolve_on_route(self, place: Placement, key: str, ref: Actor, yaw_off: float):
        """``ahead_m`` (or ``before_junction_m`` before the next junction) along ``ref``'s route."""
        if ref.path is None or ref.lane is None:
            raise self._err(f"{key}.relative_to", f"actor {place.relative_to!r} is not on a lane; place relative to a lane actor")
        seq, starts = self._route_lanes(ref)
        if place.before_junction_m is not None:
            ahead = [i for i, ln in enumerate(seq) if ln.kind == "connector" and starts[i] > ref.s - 1e-6]
            if not ahead:
                raise self._err(f"{key}.before_junction_m", f"the route of {place.relative_to!r} (from lane {ref.lane}) "
                                "reaches no junction")
            s = float(starts[ahead[0]]) - place.before_junction_m
        else:
            s = ref.s + place.ahead_m
        if not -50.0 <= s <= ref.path.length:
            raise self._err(f"{key}.ahead_m", f"that is off the route of {place.relative_to!r} "
                            f"({s:.0f} m along it; route length {ref.path.length:.0f} m)")
        x, y, yaw = ref.path.pose_at(s)
        i = int(np.searchsorted(starts, s, side="right") - 1) if len(starts) else -1
        lane = seq[i] if 0 <= i < len(seq) else self.map.lanes[ref.lane]
        step = "left" if place.lane_offset > 0 else "right"
        for _ in range(abs(place.lane_offset)):
            nxt = getattr(lane, step)
            if nxt is None:
                raise self._err(f"{key}.lane_offset", f"got {place.lane_offset}; lane {lane.id} has no lane to its {step}")
            lane = self.map.lanes[nxt]
        s_l, _ = lane.centre.project(np.array([float(x), float(y)]))
        x, y, yaw = lane.centre.pose_at(float(s_l), place.lateral_m)
        return float(x), float(y), float(yaw) + yaw_off, lane.id, float(s_l), place.lateral_m

    def _resolve_conflict(self, place: Placement, key: str, placed: dict, yaw_off: float):
        """Where actor A's route first crosses actor B's route, ``before_m`` back along A's route."""
        a_id, b_id = place.conflict_of
        refs = []
        for r in (a_id, b_id):
            act = placed.get(r)
            if act is None:
                raise self._err(f"{key}.conflict_of", f"actor {r!r} must be placed before it is referenced")
            if act.path is None:
                raise self._err(f"{key}.conflict_of", f"actor {r!r} has no route (not a vehicle on a lane)")
            refs.append(act)
        s_a = route_crossing(refs[0].path, refs[1].path, s_from=refs[0].s)
        if s_a is None:
            raise self._err(f"{key}.conflict_of", f"the routes of {a_id!r} and {b_id!r} do not cross")
        s = s_a - place.before_m
        x, y, yaw = refs[0].path.pose_at(s, place.lateral_m)
        res = self._at_xy(np.array([float(x), float(y)]), float(yaw) + yaw_off)
        return res

    def _at_xy(self, p: np.ndarray, yaw: float):
        xy = p.reshape(1, 2)
        lane_id = self.map.lane_at(xy)[0]
        if lane_id is not None and self.map.lanes[lane_id].kind == "connector":
            lane_id = None  # inside a junction: not lane-bound
        s, lat = 0.0, 0.0
        if lane_id is not None:
            s_, lat_ = self.map.lanes[lane_id].centre.project(xy[0])
            s, lat = float(s_), float(lat_)
        return float(p[0]), float(p[1]), yaw, lane_id, s, lat

    def _new_actor(self, name, kind_name, dims_spec, colour, place_res, speed, behaviour, events, key, is_ego=False):
        kind = ACTOR_KINDS[kind_name]
        dims, col = sample_appearance(kind, dims_spec, colour, self._rng, self.spec.appearance.colour_jitter)
        x, y, yaw, lane_id, s, lat = place_res
        a = Actor(
            id=len(self.actors) + 1, name=name, kind=kind, dims=dims, colour=col, x=x, y=y, yaw=float(wrap_angle(yaw)),
            speed=float(speed), behaviour=behaviour, events=tuple(events), lane=lane_id, is_ego=is_ego,
        )
        if lane_id is not None and kind.vehicle:
            self._set_path(a, lane_id, behaviour.turns, behaviour.reverse)
        self._start_behaviour(a, behaviour)
        self.actors.append(a)
        return a

    def _set_path(self, a: Actor, lane_id: str, turns=(), reverse: bool = False) -> None:
        lane = self.map.lanes[lane_id]
        a.lane = lane_id
        if reverse:  # wrong-way: the lane's centre line against its direction of travel
            a.path = Polyline(lane.centre.points[::-1].copy())
            a.stop_points = []
        else:
            try:
                a.path = self.map.route(lane_id, list(turns), min_length_m=lane.centre.length + 400.0)
            except ValueError as e:
                raise InputError(f"{a.name}: {e}", file=self.source, key=f"{a.name}.behaviour.turns") from None
            a.stop_points = self._route_stops(lane_id, turns)
            a.junction_entries = self._route_junctions(lane_id, turns)
        s, lat = a.path.project(np.array([a.x, a.y]))
        a.s = float(s)
        a.lateral = float(lat)
        if reverse and np.cos(a.yaw - float(a.path.pose_at(a.s)[2])) < 0.0:
            raise InputError(f"{a.name}: reverse: true drives lane {lane_id} against its direction, facing that way (a "
                             "wrong-way driver), so the actor must face against the lane (place it with yaw_deg: 180); "
                             "to back up with the heading kept use type: reverse", file=self.source,
                             key=f"{a.name}.behaviour.reverse")

    def _place_all(self) -> None:
        spec = self.spec
        placed: dict[str, Actor] = {}
        ego: EgoSpec = spec.ego
        res = self._resolve(ego.place, "ego.place", placed, ACTOR_KINDS[ego.kind].default_dims())
        placed["ego"] = self._new_actor("ego", ego.kind, ego.dims, None, res, ego.speed_mps, ego.behaviour, ego.events, "ego", is_ego=True)
        for i, a in enumerate(spec.actors):
            key = f"actors[{i}]"
            res = self._resolve(a.place, f"{key}.place", placed, ACTOR_KINDS[a.kind].default_dims())
            placed[a.id] = self._new_actor(a.id, a.kind, a.dims, a.colour, res, a.speed_mps, a.behaviour, a.events, key)
        for a in self.actors:  # synchronize with an actor placed later
            if a.behaviour.type == "synchronize" and a.sync is None:
                self._sync_start(a, a.behaviour)
        self._check_placements()
        self._spawn_traffic()
        self._fp_keep = None  # footprints kept while spawning (nobody moves then)

    def _footprints(self, actors=None) -> np.ndarray:
        actors = self.actors if actors is None else actors
        if not len(actors):
            return np.zeros((0, 4, 2))
        pose = np.ascontiguousarray(np.array([a._row for a in actors], float)[:, :3])  # x, y, yaw (STATE_COLUMNS)
        lw = np.ascontiguousarray(np.array([a.dims for a in actors], float).reshape(-1, 3)[:, :2])
        return _rects(pose[:, :2], pose[:, 2], lw)

    def _probe_footprints(self, x: float, y: float, yaw: float, dims: np.ndarray) -> np.ndarray:
        """``self._footprints(self.actors + [a probe box at x, y, yaw of dims])``: the actors' footprints are kept
        while the list only grows (the traffic spawner tries many probes against the same actors, and nobody moves
        while it does); the rows of :func:`_rects` are independent, so appending rows changes none."""
        A = self.actors
        got = getattr(self, "_fp_keep", None)
        if got is None or len(got[0]) > len(A) or any(p is not q for p, q in zip(got[0], A)):
            got = self._fp_keep = (list(A), self._footprints())
        elif len(got[0]) < len(A):  # actors appended since: their footprints are added
            got = self._fp_keep = (list(A), np.concatenate([got[1], self._footprints(A[len(got[0]):])]))
        probe = _rect1(x, y, yaw, float(dims[0]), float(dims[1]))
        return np.concatenate([got[1], probe]) if len(got[1]) else probe

    def _static_arrays(self) -> dict:
        """Per-actor arrays that do not change while the actor list stays the same (widths, lengths, kinds):
        built once, rebuilt only if actors are added, removed or given new dims arrays (dims are never edited in place)."""
        if self._tick_cache is not None:  # within a step nothing is added, removed or resized
            return self._tick_cache
        A = self.actors
        if type(A) is ActorList:  # its version counts every change of the list; the epoch every new dims array
            key = (id(A), A.version, _DIMS_EPOCH[0])
        else:  # a plain list put in its place: compare the actors (and their dims arrays) one by one
            key = (id(A), *map(id, A), *map(id, map(_DIMS, A)))
        cache = getattr(self, "_static_cache", None)
        if cache is None or cache["key"] != key:
            dims = np.array([(a.dims[0], a.dims[1]) for a in self.actors], float).reshape(-1, 2)
            cache = {"key": key, "dims": dims, "length": dims[:, 0].copy(), "half_w": dims[:, 1] / 2,
                     "vehicle": np.array([a.kind.vehicle for a in self.actors], bool),
                     "ped": np.array([a.kind.semantic == PEDESTRIAN for a in self.actors], bool),
                     "ids": np.array([a.id for a in self.actors]),
                     "r": 0.5 * np.hypot(dims[:, 0], dims[:, 1])}
            self._static_cache = cache
            self._bind_state()
        return cache

    def _bind_state(self) -> None:
        """Gather the actors' state rows into one array ``self._S`` (N, len(STATE_COLUMNS)) and make each actor's row
        a view of it.  Called whenever the actor list changes (:meth:`_static_arrays`), so array code that first asks
        for the static arrays reads and writes every actor's state through ``self._S``."""
        A = self.actors
        S = np.array([a._row for a in A], float).reshape(-1, len(STATE_COLUMNS))  # the current values
        for a, row in zip(A, S):
            a._row = row
        self._S = S

    def _check_placements(self) -> None:
        fps = self._footprints()
        keys = ["ego"] + [f"actors[{i}] ({a.id})" for i, a in enumerate(self.spec.actors)]
        sem = self.map.surface_at(np.array([[a.x, a.y] for a in self.actors]))
        for i, a in enumerate(self.actors):
            if a.kind.vehicle and a.behaviour.type != "parked" and sem[i] != ROADS:
                raise self._err(f"{keys[i]}.place", f"a {a.kind.name} placed at ({a.x:.1f}, {a.y:.1f}) is off the road; allowed: on a driving lane or shoulder")
            if a.kind.vehicle and a.behaviour.type == "parked" and sem[i] != ROADS:
                raise self._err(f"{keys[i]}.place", f"a parked {a.kind.name} at ({a.x:.1f}, {a.y:.1f}) is off the road; park it on a lane or the shoulder")
        hit = overlapping_pairs(fps, margin=0.05)
        if len(hit):
            i, j = hit[0]
            raise self._err(f"{keys[j]}.place", f"overlaps {self.actors[i].name} at ({self.actors[j].x:.1f}, {self.actors[j].y:.1f}); move one of them")

    def _spawn_traffic(self) -> None:
        tr = self.spec.traffic
        if tr.vehicles == 0 and tr.pedestrians == 0:
            return
        rng = self._rng
        ego = self.actors[0]
        lanes = [l for l in self.map.lanes.values() if l.kind == "driving"]
        tries = 0
        added = 0
        while added < tr.vehicles and tries < tr.vehicles * 50:
            tries += 1
            lane = lanes[rng.integers(len(lanes))]
            s_e, _ = lane.centre.project(np.array([ego.x, ego.y]))
            s = float(s_e) + rng.uniform(-tr.radius_m, tr.radius_m)
            if not 5.0 < s < lane.centre.length - 5.0:
                continue
            kind = tr.kinds[rng.integers(len(tr.kinds))]
            speed = float(rng.uniform(*tr.speed_mps))
            if getattr(self.map, "junction_ids", None) and lane.signal is None and any(
                    self.map.lanes[n].junction is not None for n in lane.successors.values()) and \
                    lane.centre.length - s < speed * speed / (2 * IDM_B) + 15.0:
                continue  # not where it could no longer give way at the junction ahead (imported maps)
            x, y, yaw = lane.centre.pose_at(s, 0.0)
            cand = dict(x=float(x), y=float(y), yaw=float(yaw))
            k = ACTOR_KINDS[kind]
            dims = np.array([rng.uniform(*k.length_m), rng.uniform(*k.width_m), rng.uniform(*k.height_m)])
            fp = self._probe_footprints(cand["x"], cand["y"], cand["yaw"], dims + [8.0, 0.0, 0.0])
            if np.any(overlapping_pairs(fp, margin=0.3)[:, 1] == len(self.actors)) if len(self.actors) else False:
                continue
            a = Actor(len(self.actors) + 1, f"traffic_{added}", k, dims, CAR_COLOURS[rng.integers(len(CAR_COLOURS))],
                      cand["x"], cand["y"], cand["yaw"], speed, Behaviour(type="lane_follow", speed_mps=speed))
            self._set_path(a, lane.id)
            self._start_behaviour(a, a.behaviour)
            self.actors.append(a)
            added += 1
        sidewalks = list(self.map.sidewalks)
        added = 0
        tries = 0
        while sidewalks and added < tr.pedestrians and tries < tr.pedestrians * 50:
            tries += 1
            sw = sidewalks[rng.integers(len(sidewalks))]
            s_e, _ = sw.centre.project(np.array([ego.x, ego.y]))
            s = float(s_e) + rng.uniform(-tr.radius_m, tr.radius_m)
            if not 1.0 < s < sw.centre.length - 1.0:
                continue
            lat = rng.uniform(-0.3, 0.3) * sw.width_m
            x, y, yaw = sw.centre.pose_at(s, lat)
            if rng.random() < 0.5:
                yaw = yaw + np.pi
            kind = "child" if rng.random() < 0.15 else "pedestrian"
            k = ACTOR_KINDS[kind]
            dims = np.array([rng.uniform(*k.length_m), rng.uniform(*k.width_m), rng.uniform(*k.height_m)])
            fp = self._probe_footprints(float(x), float(y), float(yaw), dims + 0.5)
            if np.any(overlapping_pairs(fp)[:, 1] == len(self.actors)):
                continue
            speed = float(rng.uniform(0.9, 1.6))
            a = Actor(len(self.actors) + 1, f"walker_{added}", k, dims, CLOTHING_COLOURS[rng.integers(len(CLOTHING_COLOURS))],
                      float(x), float(y), float(wrap_angle(yaw)), speed, Behaviour(type="walk", speed_mps=speed))
            self._start_behaviour(a, a.behaviour)
            self.actors.append(a)
            added += 1

    # ------------------------------------------------------------------ behaviours
    def _start_behaviour(self, a: Actor, b: Behaviour) -> None:
        prev = a.behaviour
        a.behaviour = b
        a.behaviour_t0 = self.time_s
        if b.type in ("parked", "stand", "open_door"):
            a.speed = 0.0
        if a.kind.vehicle and a.lane is not None and (b.turns != prev.turns or b.reverse != prev.reverse) and b.type != "lane_change":
            self._set_path(a, a.lane, b.turns, b.reverse)
        if b.type == "walk":
            a.walked_m = 0.0
            a.hesitate_until = None
        if b.type == "walk":
            a.walk_heading = float(wrap_angle(a.yaw + np.deg2rad(b.heading_deg)))
            a.yaw = a.walk_heading
            a.walk_left_m = b.distance_m
            if b.speed_mps is not None:
                a.speed = b.speed_mps
        a.sync = None
        if b.type == "synchronize" and any(x.name == b.reference for x in self.actors):
            self._sync_start(a, b)  # else once everyone is placed (_place_all) or at its first step
        if b.type == "reverse":
            a.walk_left_m = b.distance_m
        if b.type == "lane_change":
            lane = self.map.lanes.get(a.lane) if a.lane else None
            target = getattr(lane, b.direction) if lane else None
            if "road" in b.params and "lane_id" in b.params:  # an explicit OpenDRIVE target lane (OpenSCENARIO import)
                target = self._odr_lane(int(b.params["road"]), int(b.params["lane_id"]), a) or target
            if target is None:
                raise InputError(f"{a.name} cannot change lanes {b.direction}: lane {a.lane} has no lane to its {b.direction}",
                                 file=self.source, key=f"{a.name}.events")
            tl = self.map.lanes[target]
            s_t, lat_now = tl.centre.project(np.array([a.x, a.y]))
            a.lc = dict(target=target, t0=self.time_s, dur=b.duration_s, start=float(lat_now))
            # switch the path now and steer the lateral offset from where the actor is to 0 on the target lane
            a.path = self.map.route(target, [], min_length_m=tl.centre.length + 400.0)
            a.lane = target
            a.s, a.lateral = float(a.path.project(np.array([a.x, a.y]))[0]), float(lat_now)
            a.stop_points = self._route_stops(target, [])

    def _odr_lane(self, road: int, lane_id: int, a: Actor) -> str | None:
        """The lane ``r{road}_l{lane_id}_s*`` of an imported map nearest to actor ``a`` (None if the map has none)."""
        pre = f"r{road}_l{lane_id}_s"
        best, dist = None, np.inf
        for k, ln in self.map.lanes.items():
            if k.startswith(pre):
                s, d = ln.centre.project(np.array([a.x, a.y]))
                if 0.0 <= float(s) <= ln.centre.length and abs(float(d)) < dist:
                    best, dist = k, abs(float(d))
        return best

    def _route_junctions(self, lane_id: str, turns=()) -> list:
        """[(s on the route, junction id)] where the route enters a junction not controlled by a light (imported
        maps: vehicles there give way to whoever is already inside, so crossing traffic does not collide)."""
        if not getattr(self.map, "junction_ids", None):
            return []
        out, acc, prev = [], 0.0, None
        try:
            seq = self.map.lane_sequence(lane_id, list(turns))
        except ValueError:
            return []
        for ln in seq:
            if ln.junction is not None and (prev is None or prev.junction is None) and not (prev and prev.signal):
                out.append((acc, acc + ln.centre.length, ln.junction))
            prev = ln
            acc += ln.centre.length
        return out

    def _junction_occupants(self, pos: np.ndarray) -> dict:
        """Junction id -> indices of the vehicles whose centre is inside its outline now."""
        ids = getattr(self.map, "junction_ids", None)
        if not ids:
            return {}
        veh = np.array([a.kind.vehicle and a.kind.name != "ball" for a in self.actors], np.bool_)
        P = np.ascontiguousarray(pos, float)
        inside = np.empty(len(P), np.bool_)
        out = {}
        for jid, outline in zip(ids, self.map.junctions):  # even-odd test of the vehicles (compiled loop)
            _sim_kernels().in_polygon(P, np.ascontiguousarray(outline, float), veh, inside)
            if inside.any():
                out[jid] = set(np.flatnonzero(inside).tolist())
        return out

    def _route_stops(self, lane_id: str, turns=()) -> list:
        """[(s on the route, light id)] of every signalised stop line along the route from ``lane_id``."""
        out, acc = [], 0.0
        try:
            seq = self.map.lane_sequence(lane_id, list(turns))
        except ValueError:
            seq = [self.map.lanes[lane_id]]
        for ln in seq:
            if ln.stop_s is not None and ln.signal:
                out.append((acc + ln.stop_s, ln.signal))
            acc += ln.centre.length
        return out

    def _target_speed(self, a: Actor) -> float:
        b = a.behaviour
        if b.speed_mps is not None:
            return b.speed_mps
        return max(a.speed, 0.1) if a.speed > 0 else 10.0

    def _junction_wait(self, a: Actor, i: int, v: float, busy: dict, gap: float, dv: float) -> tuple[float, float]:
        """The IDM leader (gap, dv) of actor ``i`` after its unsignalised junctions, first come first served: a
        vehicle that can no longer stop comfortably reserves the junction until it has left it; the others treat
        its entry as a standing obstacle.  Shared by the per-actor reference and the array step."""
        for s_in, s_out, jid in a.junction_entries:
            d = s_in - a.s - a.dims[0] / 2
            if not -0.5 < d < 40.0:
                continue
            holder = self._reserved.get(jid)
            others = (busy.get(jid, set()) - {i}) or (holder is not None and holder != i)
            if not others:
                if d < v * v / (2 * IDM_B) + 3.0:
                    self._reserved[jid] = i
            elif d < gap:
                gap, dv = d, v
        return gap, dv

    def _idm_accel(self, a: Actor, i: int, pos: np.ndarray, vel: np.ndarray, lights: dict[str, str]) -> float:
        v0 = max(self._target_speed(a), 0.1)
        v = a.speed
        acc_free = IDM_A_MAX * (1 - (v / v0) ** 4)
        gap, dv = np.inf, 0.0
        aeb_ttc = np.inf
        b = a.behaviour
        if a.path is not None and len(self.actors) > 1 and (b.obstacles != "none" or b.aeb):
            s_all, d_all, tan = a.path.project_heading(pos[:, :2])
            st = self._tick_static if self._stepping is not None else self._static_arrays()
            # one compiled loop over the others: ahead within 120 m and overlapping laterally; AEB sees everything
            # in the path, whatever the driver heeds; once engaged it holds while the obstacle is right ahead
            gap, dv, aeb_ttc = _sim_kernels().idm_leader(
                i, s_all, d_all, tan, np.ascontiguousarray(vel, float), st["half_w"], st["length"], st["vehicle"],
                float(a.s), float(a.lateral), float(a.dims[0]), float(a.dims[1]) / 2, float(v), bool(b.aeb),
                bool(a.aeb_latched), {"none": 0, "vehicles": 1}.get(b.obstacles, 2))
        a.aeb_latched = b.aeb and aeb_ttc < b.aeb_ttc_s
        if a.aeb_latched:
            return -b.aeb_decel_mps2
        if b.obstacles != "none" and a.junction_entries:
            # unsignalised junctions, first come first served: a vehicle that can no longer stop comfortably
            # reserves the junction until it has left it; the others wait at its entry
            gap, dv = self._junction_wait(a, i, v, getattr(self, "_occupied", {}), gap, dv)
        if b.obey_lights or b.type == "stop_at_line":
            for stop_s, light in a.stop_points:
                st = "red" if b.type == "stop_at_line" else lights.get(light)
                d = stop_s - a.s - a.dims[0] / 2
                if st in ("red", "yellow") and d > -0.5:
                    # yellow: stop only if we can do so comfortably
                    if st == "yellow" and d < v * v / (2 * IDM_B * 1.5):
                        continue
                    if d < gap:
                        gap, dv = d, v
        if not np.isfinite(gap):
            return acc_free
        s_star = IDM_S0 + max(0.0, v * IDM_T + v * dv / (2 * np.sqrt(IDM_A_MAX * IDM_B)))
        acc = IDM_A_MAX * (1 - (v / v0) ** 4 - (s_star / max(gap, 0.1)) ** 2)
        return float(max(acc, -9.0))

    # ------------------------------------------------------------------ stepping
    def light_states(self, t: float | None = None) -> dict[str, str]:
        """Phase of every traffic light at time t: groups NS and EW alternate (green, yellow, all-red)."""
        if not self.map.traffic_lights:  # no light: nothing to compute (overrides apply to known lights only)
            return {}
        t = (self.time_s if t is None else t) + self.spec.traffic_light_offset_s
        g, y, r = self.spec.traffic_light_cycle_s
        out = {}
        for tl in self.map.traffic_lights:  # each group's slot of its junction's cycle: green, yellow, all-red
            n = max(2, tl.n_phases)
            period = n * (g + y + r)
            ph = (t - tl.slot * (g + y + r)) % period
            out[tl.id] = "green" if ph < g else "yellow" if ph < g + y else "red"
        # states set during the run (OpenSCENARIO's TrafficSignalStateAction): (from time, light id, state)
        t_raw = t - self.spec.traffic_light_offset_s
        for t_from, lid, state in getattr(self, "light_overrides", ()):
            if t_from <= t_raw + 1e-9 and lid in out:
                out[lid] = state
        return out

    def ttc_to_ego(self, a: Actor) -> float:
        """Time-to-collision (s) from the ego to actor ``a`` along the line joining them (inf if not closing)."""
        ego = self.actors[0]
        rel = np.array([a.x - ego.x, a.y - ego.y])
        dist = np.linalg.norm(rel) - (ego.dims[0] + a.dims[0]) / 2
        ve = ego.speed * np.array([np.cos(ego.yaw), np.sin(ego.yaw)])
        va = a.speed * np.array([np.cos(a.yaw), np.sin(a.yaw)])
        closing = -np.dot(va - ve, rel) / max(np.linalg.norm(rel), 1e-6)
        return float(dist / closing) if closing > 1e-3 else float("inf")

    def check_events(self) -> None:
        """Fire events whose triggers hold now (after their delay) and start their behaviours.  Public: the carla
        backend evaluates triggers with it on the states CARLA reports."""
        by_name = None  # built when a trigger names an actor
        for a in self.actors:
            if not a.events:
                continue
            for j, e in enumerate(a.events):
                key = e.name or f"{a.name}#{j}"
                if key in self.applied:
                    continue
                if key not in self.fired:
                    w = e.when
                    ok = True
                    if w.time_s is not None:
                        ok &= self.time_s >= w.time_s - 1e-9
                    if by_name is None and (w.distance_m is not None or w.ttc_s is not None or
                                            w.position is not None or w.custom is not None):
                        by_name = {x.name: x for x in self.actors}
                    if w.distance_m is not None:
                        p = by_name[w.actor] if w.actor else a
                        q = by_name[w.to]
                        ok &= float(np.hypot(p.x - q.x, p.y - q.y)) <= w.distance_m
                    if w.ttc_s is not None:
                        p = by_name[w.actor] if w.actor else a
                        ok &= p is not self.actors[0] and self.ttc_to_ego(p) <= w.ttc_s
                    if w.after is not None:
                        ok &= w.after in self.applied
                    if w.position is not None:
                        p = by_name[w.actor] if w.actor else a
                        ok &= float(np.hypot(p.x - w.position[0], p.y - w.position[1])) <= w.radius_m
                    if w.custom is not None and ok:
                        from simgen.sim.behaviours import TRIGGERS

                        ok &= bool(TRIGGERS[w.custom](self, by_name[w.actor] if w.actor else a, dict(w.params)))
                    if ok:
                        self.fired[key] = self.time_s
                if key in self.fired and self.time_s >= self.fired[key] + e.when.delay_s - 1e-9:
                    self.applied.add(key)
                    self.event_log.append((self.time_s, a.name, key))
                    if not a.crashed:
                        self._start_behaviour(a, e.do)

    def step(self) -> list[tuple[int, int]]:
        """Advance one tick; returns the actor-id pairs in collision after the step.

        Lane-following vehicles (lane_follow, stop_at_line, lane_change, brake, stop, scripted) are advanced
        together over arrays by compiled loops (:mod:`simgen.sim.kernels`: leader search, IDM, pure pursuit,
        bicycle, s re-projected); every other actor (walkers, synchronize, reverse, registered behaviours) runs its
        per-actor Python code.  The results are written back in actor order, interleaved with the per-actor code,
        so an actor stepped in Python sees the others exactly as the one-by-one loop did: those before it moved,
        those after it not yet (the array update of a lane follower depends only on the state at the tick's start).
        """
        dt = self.dt
        self.check_events()
        t0 = self.time_s
        A = self.actors
        self._tick_cache = None
        st = self._tick_static = self._tick_cache = self._static_arrays()  # fixed for the tick; binds self._S
        S = self._S
        # motion starts here (after events): x, y, yaw, speed, s, lateral of every actor
        st0 = S[:, :6].copy()
        pre = st0[:, :4]
        lights = self.light_states()
        pos = st0[:, :2]
        self._occupied = self._junction_occupants(pos)
        for jid, holder in list(self._reserved.items()):  # a holder releases its junction once through it
            h = A[holder]
            if h.crashed or not any(j == jid and h.s - h.dims[0] / 2 < s_out for _, s_out, j in h.junction_entries):
                del self._reserved[jid]
        plan = self._tick_plan(A)
        modes = plan["modes"]
        rows = self._lane_follow_arrays(A, plan, st, st0, lights, dt) if plan["sel_l"] else None
        walk = self._walk_arrays(plan, st0, dt) if plan["walkers"] else None
        if not plan["per_actor"]:  # nothing stepped in Python: write the array results straight into the state
            if rows is not None:
                S[plan["sel"][:, None], _C_DRIVE] = rows
            if walk is not None:
                w = plan["walk_sel"]
                S[w, _COL["x"]] = walk[:, 0]
                S[w, _COL["y"]] = walk[:, 1]
                S[w, _COL["walked_m"]] += walk[:, 2]
                if plan["walk_dist"]:
                    self._walk_finish(walk)
            for i in plan["still"]:
                self._step_still(A[i], dt)
        else:
            self._step_in_order(A, modes, plan, rows, walk, pre, pos, lights, dt)
        self._stepping = None
        self.time_s = round(self.time_s + dt, 9)
        self.frame += 1
        # x, y, yaw, speed after the motion: the ground query and the collision tests both start from them
        post = S[:, :4].copy()
        self._update_z(dt, post)
        out = self._collisions(pre, t0, post)
        self._tick_cache = None
        return out

    def _step_still(self, a: Actor, dt: float) -> None:
        b = a.behaviour
        a.accel, a.speed = 0.0, 0.0
        if b.type == "open_door" and not a.crashed:  # signed: > 0 left door, < 0 right door
            sgn = 1.0 if b.direction == "left" else -1.0
            a.door = sgn * min(np.deg2rad(70.0), abs(a.door) + np.deg2rad(70.0) * dt / b.duration_s)

    def _step_in_order(self, A, modes, plan, rows, walk, pre, pos, lights, dt: float) -> None:
        """Actor by actor: array results written back, the others stepped by their Python code."""
        from simgen.sim.behaviours import BEHAVIOURS

        S = self._S
        cx, cy, cw = _COL["x"], _COL["y"], _COL["walked_m"]
        self._vel0 = None
        for seg in plan["segments"]:  # runs of array-stepped actors are written at once, in actor order
            i = seg[1]
            if seg[0] == 1:
                _, _, dk, di, wk, wi = seg
                if len(di):
                    S[di[:, None], _C_DRIVE] = rows[dk]
                if len(wi):
                    S[wi, cx] = walk[wk, 0]
                    S[wi, cy] = walk[wk, 1]
                    S[wi, cw] += walk[wk, 2]
                    if plan["walk_dist"]:
                        self._walk_finish(walk, set(wi.tolist()))
            elif seg[0] == 3:
                self._step_still(A[i], dt)
            else:
                self._step_python(A[i], i, BEHAVIOURS, pre, pos, lights, dt)

    def _step_python(self, a: Actor, i: int, BEHAVIOURS, pre, pos, lights, dt: float) -> None:
        """One actor stepped by its per-actor Python code (plugins, synchronize, reverse, walks, and everything when
        ``array_step`` is off)."""
        b = a.behaviour
        self._stepping = i
        plugin = BEHAVIOURS.get(b.type)
        if plugin is not None:
            ctrl = plugin(self, a, dt, dict(b.params))
            if a.kind.vehicle and a.path is not None:
                if ctrl.lateral_m is not None:
                    a.lateral = float(ctrl.lateral_m)
                self._bicycle(a, float(ctrl.accel_mps2 or 0.0), dt)
            else:
                if ctrl.speed_mps is not None:
                    a.speed = float(ctrl.speed_mps)
                if ctrl.heading_rad is not None:
                    a.yaw = float(wrap_angle(ctrl.heading_rad))
                a.x += a.speed * np.cos(a.yaw) * dt
                a.y += a.speed * np.sin(a.yaw) * dt
            return
        if b.type == "synchronize":
            self._sync_step(a, b, dt)
            return
        if b.type == "reverse":
            self._reverse_step(a, b, dt)
            return
        if b.type == "walk" or not a.kind.vehicle or a.path is None:
            self._walk(a, b, dt)
            return
        # the per-actor form of the arrays' work (array_step off: the reference)
        if self._vel0 is None:
            self._vel0 = np.stack([pre[:, 3] * np.cos(pre[:, 2]), pre[:, 3] * np.sin(pre[:, 2])], 1)
        self._step_lane_follower(a, i, pos, self._vel0, lights, dt)

    def _step_lane_follower(self, a: Actor, i: int, pos, vel, lights, dt: float) -> None:
        """One lane follower, per actor (the reference form of what :meth:`_lane_follow_arrays` does for all)."""
        b = a.behaviour
        if b.type in ("brake", "stop"):
            acc = -b.decel_mps2
        elif b.type == "scripted":
            v_next = float(np.interp(self.time_s + dt - a.behaviour_t0, *np.array(b.speed_profile).T))
            acc = (v_next - a.speed) / dt
        else:
            acc = self._idm_accel(a, i, pos, vel, lights)
        self._lane_change_lateral(a, dt)
        self._bicycle(a, acc, dt)

    def _lane_change_lateral(self, a: Actor, dt: float) -> None:
        """Lateral target for lane changes: smooth (cosine) blend of the offset to 0 over the duration."""
        if a.lc is not None:
            u = min(1.0, (self.time_s + dt - a.lc["t0"]) / a.lc["dur"])
            a.lateral = a.lc["start"] * 0.5 * (1 + np.cos(np.pi * u))
            if u >= 1.0:
                a.lc = None
                a.lateral = 0.0
                if a.behaviour.type == "lane_change":
                    a.behaviour = dataclasses.replace(a.behaviour, type="lane_follow")

    def _walk_arrays(self, plan, st0, dt: float) -> np.ndarray:
        """:meth:`_walk` for the walkers without a pause (with or without a distance) at once: rows x, y, step."""
        out = np.empty((len(plan["walk_sel"]), 3))
        left = plan["walk_left"]
        for k, i in plan["walk_dist"]:
            left[k] = self.actors[i].walk_left_m
        _sim_kernels().walk_steps(plan["walk_sel"], st0, left, dt, out)
        return out

    def _walk_finish(self, walk, only=None) -> None:
        """After :meth:`_walk_arrays` results are in the state: the distance left of walkers with a distance, and
        speed and acceleration 0 for those who had none left (``World._walk``); ``only``: these actor indices."""
        plan = self._plan
        left = plan["walk_left"]
        for k, i in plan["walk_dist"]:
            if only is not None and i not in only:
                continue
            a = self.actors[i]
            if left[k] <= 0:
                a.speed, a.accel = 0.0, 0.0
            else:
                a.walk_left_m = float(left[k]) - float(walk[k, 2])

    def _modes(self, A, behaviours) -> list[int]:
        """Per actor: 1 IDM lane follower, 2 lane follower with a given acceleration (brake, stop, scripted),
        3 standing (crashed, parked, stand, open_door), 4 walker without a pause (walk with or without a distance,
        over arrays), 0 per-actor Python (synchronize, reverse, plugins, other walks, anything else off a path).
        With ``array_step`` off every moving actor is 0: the per-actor reference of the array step."""
        out = []
        if not self.array_step:
            return [3 if a.crashed or a.behaviour.type in _STILL else 0 for a in A]
        for a in A:
            b = a.behaviour
            bt = b.type
            if a.crashed or bt in _STILL:
                out.append(3)
            elif bt == "walk" and not (b.hesitate_at_m is not None and b.hesitate_s > 0) and a.hesitate_until is None:
                out.append(4)
            elif bt in _PER_ACTOR or a.path is None or not a.kind.vehicle or behaviours.get(bt) is not None:
                out.append(0)
            elif bt in ("brake", "stop", "scripted"):
                out.append(2)
            else:
                out.append(1)
        return out

    def _tick_plan(self, A) -> dict:
        """What the array step needs that changes only with an actor's behaviour, path, crash, lane change, stop
        points or junction entries: rebuilt when one of those objects is replaced (compared by identity)."""
        from simgen.sim.behaviours import BEHAVIOURS

        sig = list(map(_PLAN_SIG, A))
        plan = self._plan
        if plan is not None and plan["sig"] == sig and plan["registry"] == len(BEHAVIOURS) and \
                plan["array_step"] == self.array_step:
            return plan
        N = len(A)
        modes = self._modes(A, BEHAVIOURS)
        sel_l = [i for i, m in enumerate(modes) if m == 1 or m == 2]
        pidx, P = self._path_bank(A, sel_l)
        acc0 = np.zeros(N)
        spd = np.full(N, np.nan)  # behaviour speeds (NaN: none given, the actor's own speed is kept)
        aeb = np.zeros(N, np.bool_)
        obst = np.zeros(N, np.int64)
        stop_red = np.zeros(N, np.int64)
        ttc_s, aeb_dec = np.full(N, -np.inf), np.zeros(N)
        lead, scripted, junction, latch = [], [], [], []
        for i in sel_l:
            a = A[i]
            b = a.behaviour
            if modes[i] == 2:
                if b.type == "scripted":
                    scripted.append((i, np.array(b.speed_profile, float).T))
                else:
                    acc0[i] = -b.decel_mps2
                continue
            if b.speed_mps is not None:
                spd[i] = b.speed_mps
            if N > 1 and (b.obstacles != "none" or b.aeb):
                lead.append(i)
                aeb[i] = b.aeb
                obst[i] = 0 if b.obstacles == "none" else 1 if b.obstacles == "vehicles" else 2
            if b.aeb or a.aeb_latched:
                latch.append(i)
            if b.aeb:
                ttc_s[i], aeb_dec[i] = b.aeb_ttc_s, b.aeb_decel_mps2
            if (b.obey_lights or b.type == "stop_at_line") and a.stop_points:
                stop_red[i] = 2 if b.type == "stop_at_line" else 1
            if b.obstacles != "none" and a.junction_entries:
                junction.append(i)
        sp_off = np.zeros(N + 1, np.int64)
        sp_s, sp_light = [], []
        lidx = self._light_index
        for i in range(N):
            if stop_red[i]:
                for s_, light in A[i].stop_points:
                    sp_s.append(s_)
                    sp_light.append(lidx.get(light, len(lidx)))
            sp_off[i + 1] = len(sp_s)
        # actor order as runs: (1, first, drive rows, drive actors, walk rows, walk actors) for array-stepped actors,
        # (3, i) standing, (m, i) per-actor Python: _step_in_order writes a run of array results at once
        segments, run = [], None
        krow = {i: k for k, i in enumerate(sel_l)}
        kwalk = {i: k for k, i in enumerate(i for i, m in enumerate(modes) if m == 4)}
        for i, m in enumerate(modes):
            if m in (1, 2, 4):
                if run is None:
                    run = (i, [], [], [], [])
                    segments.append(run)
                if m == 4:
                    run[3].append(kwalk[i])
                    run[4].append(i)
                else:
                    run[1].append(krow[i])
                    run[2].append(i)
                continue
            run = None
            segments.append((m, i))
        segments = [(1, seg[0], *(np.array(v, np.int64) for v in seg[1:])) if len(seg) == 5 else seg
                    for seg in segments]
        plan = self._plan = {
            "segments": segments,
            "sig": sig, "registry": len(BEHAVIOURS), "array_step": self.array_step, "modes": modes, "sel_l": sel_l,
            "sel": np.array(sel_l, np.int64), "mode": np.array(modes, np.int64), "per_actor": 0 in modes,
            "still": [i for i, m in enumerate(modes) if m == 3], "walkers": [i for i, m in enumerate(modes) if m == 4],
            "walk_sel": np.array([i for i, m in enumerate(modes) if m == 4], np.int64), "pidx": pidx, "P": P,
            "walk_left": np.full(modes.count(4), np.nan),  # distance left per walker (NaN: walks on and on)
            "walk_dist": [(k, i) for k, i in enumerate(i for i, m in enumerate(modes) if m == 4)
                          if A[i].walk_left_m is not None],
            "acc0": acc0, "spd": spd,
            "lead": np.array(lead, np.int64), "aeb": aeb, "aeb_idx": [i for i in lead if aeb[i]], "obst": obst,
            "stop_red": stop_red, "any_stop": bool(stop_red.any()), "ttc_s": ttc_s, "aeb_dec": aeb_dec,
            "scripted": scripted, "junction": junction, "latch": latch,
            "lc": [i for i in sel_l if A[i].lc is not None], "latched": np.zeros(N, np.bool_),
            "light_code": np.zeros(len(self._light_index) + 1, np.int64),
            "sp": (sp_off, np.array(sp_s, float), np.array(sp_light, np.int64)),
        }
        return plan

    def _path_bank(self, A, sel) -> tuple[np.ndarray, tuple]:
        """(pidx (N,), concatenated path arrays) for the actors ``sel``; rebuilt only when one's path changes."""
        paths = [A[i].path for i in sel]
        bank = self._bank
        if bank is not None and len(bank[0]) == len(paths) and all(p is q for p, q in zip(paths, bank[0])):
            pidx = np.full(len(A), -1, np.int64)
            pidx[sel] = bank[1]
            return pidx, bank[2]
        uniq: dict[int, int] = {}
        polys = []
        local = []
        for p in paths:
            k = uniq.get(id(p))
            if k is None:
                k = uniq[id(p)] = len(polys)
                polys.append(p)
            local.append(k)
        if not polys:  # no lane follower: a one-segment dummy keeps the arrays' types
            polys = [Polyline(np.array([[0.0, 0.0], [1.0, 0.0]]))]
        voff = np.zeros(len(polys) + 1, np.int64)
        voff[1:] = np.cumsum([len(p.points) for p in polys])
        cat = lambda name: np.ascontiguousarray(np.concatenate([getattr(p, name) for p in polys]))  # noqa: E731
        arrays = (cat("points"), cat("_n"), cat("_u"), cat("_seg"), cat("_cum"), cat("_d"), cat("_dnu"), cat("_nu0"),
                  cat("_nv"), cat("_yv"), voff, np.array([p._t0 for p in polys]).reshape(-1, 2),
                  np.array([p._t1 for p in polys]).reshape(-1, 2), np.array([p.length for p in polys], float),
                  np.array([np.hypot(*p._nv.T).max() for p in polys], float))
        local = np.array(local, np.int64)
        self._bank = (paths, local, arrays)
        pidx = np.full(len(A), -1, np.int64)
        pidx[sel] = local
        return pidx, arrays

    def _lane_follow_arrays(self, A, plan, st, st0, lights, dt) -> list:
        """Leader search, IDM and the bicycle for every lane follower at once (compiled loops); per actor of
        ``plan["sel_l"]`` a row (x, y, yaw, speed, s, accel, steer)."""
        K = _sim_kernels()
        N = len(A)
        acc_in = plan["acc0"]
        if plan["scripted"]:
            acc_in = acc_in.copy()
            for i, prof in plan["scripted"]:
                v_next = float(np.interp(self.time_s + dt - A[i].behaviour_t0, *prof))
                acc_in[i] = (v_next - A[i].speed) / dt
        latched = plan["latched"]
        for i in plan["aeb_idx"]:
            latched[i] = A[i].aeb_latched
        gdt = np.empty((3, N))  # gap, dv, AEB time-to-collision
        pidx, P = plan["pidx"], plan["P"]
        ttc_s = plan["ttc_s"]
        light_code = plan["light_code"]
        if plan["any_stop"]:
            for lid, k in self._light_index.items():
                light_code[k] = _LIGHT_CODE.get(lights.get(lid), 0)
        out = np.empty((len(plan["sel"]), 7))
        if not (plan["latch"] or plan["junction"] or plan["lc"]):  # nothing in Python between the two loops
            K.lead_drive(plan["lead"], st0, st["half_w"], st["vehicle"], latched, plan["obst"], *P, gdt, plan["sel"],
                         plan["mode"], st0.copy(), acc_in, plan["spd"], plan["aeb"], ttc_s, plan["aeb_dec"],
                         plan["stop_red"], *plan["sp"], light_code, st["length"], pidx, dt, out)
            return out
        K.leaders(plan["lead"], st0, st["half_w"], st["length"], st["vehicle"], plan["aeb"], latched, plan["obst"],
                  pidx, *P, gdt)
        for i in plan["latch"]:  # AEB engages (or holds) below its time-to-collision
            A[i].aeb_latched = bool(gdt[2, i] < ttc_s[i])
        busy = self._occupied
        for i in plan["junction"]:  # unsignalised junctions, first come first served: in actor order
            if gdt[2, i] < ttc_s[i]:
                continue
            gdt[0, i], gdt[1, i] = self._junction_wait(A[i], i, A[i].speed, busy, gdt[0, i], gdt[1, i])
        state = st0.copy()
        for i in plan["lc"]:
            self._lane_change_lateral(A[i], dt)
            state[i, 5] = A[i].lateral
        K.drive(plan["sel"], plan["mode"], state, acc_in, gdt, plan["spd"], plan["aeb"], ttc_s, plan["aeb_dec"],
                plan["stop_red"], *plan["sp"], light_code, st["length"], pidx, *P[:-1], dt, out)
        return out

    def _walk(self, a: Actor, b: Behaviour, dt: float) -> None:
        """Straight-line walking/rolling at the actor's speed, with an optional pause (hesitation) part-way."""
        if a.walk_left_m is not None and a.walk_left_m <= 0:
            a.speed, a.accel = 0.0, 0.0
            return
        if a.hesitate_until is not None:
            if self.time_s + 1e-9 < a.hesitate_until:
                a.speed = 0.0
                return
            a.hesitate_until = None
            a.speed = b.speed_mps if b.speed_mps is not None else 1.4
        step = a.speed * dt
        pause = b.hesitate_at_m is not None and b.hesitate_s > 0 and a.walked_m < b.hesitate_at_m <= a.walked_m + step
        if pause:
            step = b.hesitate_at_m - a.walked_m
        if a.walk_left_m is not None:
            step = min(step, a.walk_left_m)
            a.walk_left_m -= step
        a.x += step * np.cos(a.yaw)
        a.y += step * np.sin(a.yaw)
        a.walked_m += step
        if pause:
            a.hesitate_until = self.time_s + dt + b.hesitate_s
            a.speed = 0.0

    def _bicycle(self, a: Actor, acc: float, dt: float) -> None:
        """Kinematic bicycle (reference point: box centre) with pure-pursuit steering towards the path."""
        # scalar maths (math, not numpy: one actor's numbers; the same formulas)
        v = float(a.speed)
        look = max(4.0, 0.9 * v)
        tx, ty, _ = a.path.pose_at(float(a.s + look), float(a.lateral))
        alpha = _wrap1(math.atan2(ty - a.y, tx - a.x) - a.yaw)
        L = a.wheelbase
        steer = min(max(math.atan2(2 * L * math.sin(alpha), look), -MAX_STEER), MAX_STEER)
        v_new = max(0.0, v + acc * dt)
        a.accel = (v_new - v) / dt
        v_mid = 0.5 * (v + v_new)
        beta = math.atan(0.5 * math.tan(steer))  # slip angle at the centre for a centred reference point
        a.x += v_mid * math.cos(a.yaw + beta) * dt
        a.y += v_mid * math.sin(a.yaw + beta) * dt
        a.yaw = _wrap1(a.yaw + v_mid * math.cos(beta) * math.tan(steer) / L * dt)
        a.speed, a.steer = v_new, steer
        a.s = float(a.path.project(np.array([a.x, a.y], float))[0])

    def _update_z(self, dt: float | None = None, post: np.ndarray | None = None) -> None:
        """Put every actor on the ground; with ``dt`` (a tick), record the vertical velocity dz/dt of that tick, so
        the reported velocity agrees with the poses (a pedestrian stepping up a kerb rises 0.15 m in one tick).

        On imported (.xodr) maps the ground has real slopes: a vehicle takes the attitude of the ground under it
        (:func:`ground_attitude`: pitch and roll of the plane through its four corners' ground heights, resting on
        that plane's highest contact); walkers and props stay upright on the highest ground under their footprint.
        The builtin maps keep z = ground height at the centre and pitch = roll = 0 exactly.  The bicycle model
        stays planar (x, y, yaw): the attitude is a ground-following output, not simulated dynamics.  ``post``: the
        actors' rows x, y, yaw, ... when the caller has them (World.step)."""
        A = self.actors
        if not getattr(self.map, "source_file", ""):
            # builtin maps: z is the ground height at the centre, pitch = roll = 0; one compiled query for everyone
            # (an actor that did not move gets the height it has, so its vz is 0 as below), over the state array
            if not A:
                return
            self._static_arrays()  # binds self._S
            S = self._S
            if type(self.map).ground_height is RoadMap.ground_height:  # the ground query and the writes: one loop
                _sim_kernels().ground_update(S, _C_GROUND, math.nan if dt is None else float(dt), _RANK_Z,
                                             *self.map._ground_pack())
                return
            xy = np.ascontiguousarray(S[:, :2] if post is None else post[:, :2])
            gh = self.map.ground_height
            z = gh(xy) if len(A) <= 64 else np.concatenate([gh(xy[k:k + 64]) for k in range(0, len(A), 64)])
            cz, cvz = _COL["z"], _COL["vz"]
            if dt is None:
                S[:, cvz] = 0.0
            else:
                S[:, cvz] = (z - S[:, cz]) / dt
            S[:, cz] = z
            S[:, _COL["pitch"]] = 0.0
            S[:, _COL["roll"]] = 0.0
            return
        pose = np.array([(a.x, a.y, a.yaw) for a in self.actors], float).reshape(-1, 3)
        # the ground is fixed: only actors whose pose (or box) changed since the last call need a new height
        st = self._static_arrays()
        key = st["key"]
        prev = getattr(self, "_z_cache", None)
        if prev is not None and prev[0] == key:
            moved = np.any(pose != prev[1], axis=1)
            z, pr = prev[2].copy(), prev[3].copy()
        else:
            moved = np.ones(len(pose), bool)
            z, pr = np.zeros(len(pose)), np.zeros((len(pose), 2))
        if moved.any():
            rows = np.flatnonzero(moved)
            xy = pose[rows, :2]
            if getattr(self.map, "source_file", ""):
                z[rows], pr[rows] = ground_attitude(self.map.ground_height, xy, pose[rows, 2], st["dims"][rows],
                                                    st["vehicle"][rows])
            else:
                z[rows] = self.map.ground_height(xy)
        self._z_cache = (key, pose, z, pr)
        for k in np.flatnonzero(~moved):  # actors that did not move keep z and attitude: vz is 0 for them
            A[k].vz = 0.0
        for k in np.flatnonzero(moved):
            a, zi = A[k], float(z[k])
            a.vz = 0.0 if dt is None else (zi - a.z) / dt
            a.z = zi
            a.pitch, a.roll = float(pr[k, 0]), float(pr[k, 1])

    def _collisions(self, pre: np.ndarray | None = None, t0: float | None = None,
                    post: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Actor pairs in contact after the step.  Walkers passing each other are not collisions (they step aside in
        reality; the kinematic walkers do not model it).  A ball stops; what hits it does not.

        A pair that was not in contact before is tested over the whole tick (swept footprints, :func:`first_contact`):
        its first contact time is found between the ticks, an impact record is kept (:meth:`_impact`) and the parties
        that crash are put back where they were at that instant, so the recorded state is the contact state rather
        than one tick's worth of overlap."""
        new: dict[tuple[int, int], float] = {}
        moved_back = True
        if pre is not None and len(self.actors) > 1:
            moved_back = False
            if post is None:
                self._static_arrays()  # binds self._S
                post = self._S[:, :4].copy()
            st = self._static_arrays()
            dims = st["dims"]
            # pairs not in contact before whose bounding circles (they contain the footprint at any yaw), centres
            # moving linearly within the tick, come within reach (never two pedestrians) are tested over the tick
            # (first_contact); one compiled loop over the pairs
            done = np.zeros((len(post), len(post)), np.bool_)
            if self.collisions_total:
                where = {int(k): n for n, k in enumerate(st["ids"])}
                for ia, ib in self.collisions_total:
                    if ia in where and ib in where:
                        done[where[ia], where[ib]] = True  # the pair (i, j) as recorded
            hits, pairs_now = _sim_kernels().contacts(pre, post, st["r"], st["ped"], done, dims, 16, 40)
            if len(hits):
                i, j, f = hits[:, 0].astype(np.int64), hits[:, 1].astype(np.int64), hits[:, 2]
                order = np.argsort(f, kind="stable")
                rewind: dict[int, float] = {}
                for a_i, b_i, fk in zip(i[order], j[order], f[order]):
                    a, b = self.actors[a_i], self.actors[b_i]
                    self.impacts.append(self._impact(a_i, b_i, float(fk), pre, post, dims, t0))
                    new[(a.id, b.id)] = float(fk)
                    for x_i, x, other in ((a_i, a, b), (b_i, b, a)):
                        if other.kind.name == "ball" and x.kind.name != "ball":
                            continue
                        if (x.kind.vehicle or x.speed > 0 or pre[x_i, 3] > 0) and not x.crashed:
                            x.crashed = True
                            rewind[x_i] = min(rewind.get(x_i, 1.0), float(fk))
                for x_i, fk in rewind.items():  # the contact state: where the crashed parties were at first contact
                    x = self.actors[x_i]
                    p = _lerp_pose(pre[x_i:x_i + 1, :3], post[x_i:x_i + 1, :3], np.array([fk]))[0]
                    x.x, x.y, x.yaw = float(p[0]), float(p[1]), float(p[2])
                    if x.path is not None:
                        x.s = float(x.path.project(np.array([x.x, x.y]))[0])
                if rewind:  # back on the ground there; the tick's vertical velocity follows the moved pose
                    moved_back = True
                    rows = list(rewind)
                    zs = self.map.ground_height(np.array([[self.actors[k].x, self.actors[k].y] for k in rows]))
                    for k, z in zip(rows, zs):
                        x = self.actors[k]
                        x.vz += (float(z) - x.z) / self.dt
                        x.z = float(z)
        pairs = pairs_now if moved_back is False else self._overlaps_now()
        out = []
        for i_, j_ in pairs:
            a, b = self.actors[i_], self.actors[j_]
            if a.kind.semantic == PEDESTRIAN and b.kind.semantic == PEDESTRIAN:
                continue
            out.append((a.id, b.id))
            for x, other in ((a, b), (b, a)):
                if other.kind.name == "ball" and x.kind.name != "ball":
                    continue
                if x.kind.vehicle or x.speed > 0:
                    x.crashed = True
            self.collisions_total.add((a.id, b.id))
        for pair in new:  # a contact within the tick that no longer overlaps (e.g. a car through a ball)
            if pair not in out:
                out.append(pair)
            self.collisions_total.add(pair)
        return out

    def _overlaps_now(self, post: np.ndarray | None = None) -> np.ndarray:
        """``overlapping_pairs(self._footprints())`` (compiled: footprints and tests in one loop); ``post``: the
        actors' poses (rows x, y, yaw, ...) when the caller has them."""
        if len(self.actors) < 2:
            return np.zeros((0, 2), np.int64)
        dims = self._static_arrays()["dims"]  # binds self._S
        pose = np.ascontiguousarray(self._S[:, :3]) if post is None else post
        return _sim_kernels().box_pairs(pose, dims, 0.0)

    def _impact(self, ai: int, bi: int, f: float, pre: np.ndarray, post: np.ndarray, dims: np.ndarray, t0: float) -> dict:
        """Impact metrics of a first contact at fraction ``f`` of the tick that started at ``t0``.

        Velocities at contact are interpolated between the tick's ends.  Delta-v assumes a perfectly plastic
        collision (both parties move on with their common centre-of-mass velocity; no restitution, friction or
        rotation): dv_a = m_b / (m_a + m_b) * |v_a - v_b|, masses by kind (:data:`simgen.classes.MASS_KG`).  The
        contact point is the centroid of the footprints' overlap just after first contact.  With the ego as a
        party it is party ``a``, and ``ego_side`` says which of its edges was hit; on its front (or rear) edge
        ``ego_point_pct`` is where across its width: 0 % its right edge, 100 % its left edge (looking forward)."""
        from simgen.classes import MASS_KG

        if self.actors[bi].is_ego:
            ai, bi = bi, ai
        a, b = self.actors[ai], self.actors[bi]
        w = np.array([f])

        def vel(k):
            v0 = pre[k, 3] * np.array([np.cos(pre[k, 2]), np.sin(pre[k, 2])])
            v1 = post[k, 3] * np.array([np.cos(post[k, 2]), np.sin(post[k, 2])])
            return v0 + f * (v1 - v0)

        va, vb = vel(ai), vel(bi)
        ma, mb = MASS_KG.get(a.kind.name, 1000.0), MASS_KG.get(b.kind.name, 1000.0)
        rel = float(np.linalg.norm(va - vb))
        fc = min(1.0, f + 1e-3)  # a hair past first contact: the overlap is a thin sliver along the contact
        pa = _lerp_pose(pre[ai:ai + 1, :3], post[ai:ai + 1, :3], np.array([fc]))
        pb = _lerp_pose(pre[bi:bi + 1, :3], post[bi:bi + 1, :3], np.array([fc]))
        A = _rects(pa[:, :2], pa[:, 2], dims[ai:ai + 1])[0]
        B = _rects(pb[:, :2], pb[:, 2], dims[bi:bi + 1])[0]
        point = polygon_centroid(clip_convex(A, B))
        if point is None:
            point = 0.5 * (pa[0, :2] + pb[0, :2])
        rec = {
            "time_s": float(t0 + f * self.dt), "frame": int(self.frame), "actor_a": a.name, "actor_b": b.name,
            "id_a": int(a.id), "id_b": int(b.id), "kind_a": a.kind.name, "kind_b": b.kind.name,
            "speed_a_mps": float(np.linalg.norm(va)), "speed_b_mps": float(np.linalg.norm(vb)),
            "relative_speed_mps": rel, "mass_a_kg": ma, "mass_b_kg": mb,
            "delta_v_a_mps": mb / (ma + mb) * rel, "delta_v_b_mps": ma / (ma + mb) * rel,
            "point_x": float(point[0]), "point_y": float(point[1]), "ego_side": "", "ego_point_pct": float("nan"),
        }
        if a.is_ego:
            c, s_ = np.cos(pa[0, 2]), np.sin(pa[0, 2])
            d = point - pa[0, :2]
            lx, ly = c * d[0] + s_ * d[1], -s_ * d[0] + c * d[1]
            L, W = dims[ai]
            gaps = {"front": L / 2 - lx, "rear": lx + L / 2, "left": W / 2 - ly, "right": ly + W / 2}
            side = min(gaps, key=gaps.get)
            rec["ego_side"] = side
            if side in ("front", "rear"):
                rec["ego_point_pct"] = float(np.clip((ly + W / 2) / W, 0.0, 1.0) * 100.0)
        return rec

    # ------------------------------------------------------------------ synchronised arrival, reversing
    def _motion_line(self, a: Actor) -> np.ndarray:
        """(N,2) polyline of where ``a`` is heading: its path ahead, or a 500 m ray along its heading."""
        if a.kind.vehicle and a.path is not None:
            pts = a.path.points
            s_pts = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
            ahead = pts[s_pts > a.s]
            return np.vstack([[a.x, a.y], ahead]) if len(ahead) else np.array([[a.x, a.y], a.path.pose_at(a.s + 500.0)[:2]])
        d = np.array([np.cos(a.yaw), np.sin(a.yaw)])
        return np.array([[a.x, a.y], [a.x + 500.0 * d[0], a.y + 500.0 * d[1]]])

    def _sync_start(self, a: Actor, b: Behaviour) -> None:
        """Set up ``synchronize``: own point (``at``, or where the two actors' paths cross, shifted ``offset_m`` along
        own path) and the reference's point (``reference_at``, or the unshifted crossing)."""
        by_name = {x.name: x for x in self.actors}
        ref = by_name.get(b.reference)
        key = f"{a.name}.behaviour"
        if ref is None:
            raise self._err(f"{key}.reference", f"unknown actor {b.reference!r} (is it placed?)")
        if b.at is not None:
            p = np.array(b.at, float)
        else:
            p = path_crossing(self._motion_line(a), self._motion_line(ref))
            if p is None:
                raise self._err(f"{key}.at", f"the paths of {a.name} and {ref.name} do not cross ahead of both; give "
                                "at: [x, y] (and reference_at)")
        q = np.array(b.reference_at, float) if b.reference_at is not None else p.copy()
        if b.offset_m:
            line = self._motion_line(a)
            seg = np.diff(line, axis=0)
            k = int(np.argmin(np.hypot(*(line[:-1] + 0.5 * seg - p).T)))
            u = seg[k] / max(np.linalg.norm(seg[k]), 1e-9)
            p = p + b.offset_m * u
        vf = b.final_speed_mps if b.final_speed_mps is not None else (b.speed_mps if b.speed_mps is not None else a.speed)
        a.sync = {"ref": ref, "p": p, "q": q, "vf": float(vf)}
        if not (a.kind.vehicle and a.path is not None):
            a.yaw = float(np.arctan2(p[1] - a.y, p[0] - a.x))

    def _remaining(self, x: Actor, point: np.ndarray) -> float:
        """Distance (m) ``x`` still has to go to ``point``: along its path, or along its heading."""
        if x.kind.vehicle and x.path is not None:
            return float(x.path.project(point)[0]) - x.s
        return float(np.cos(x.yaw) * (point[0] - x.x) + np.sin(x.yaw) * (point[1] - x.y))

    def sync_arrival_time(self, a: Actor) -> float | None:
        """Seconds until the reference of ``a``'s synchronize reaches its point at its current speed (None: never)."""
        sy = a.sync
        ref = sy["ref"]
        d_ref = self._remaining(ref, sy["q"])
        if a.behaviour.arrive == "contact":  # the reference's front reaches own footprint at own point
            dy = a.yaw - ref.yaw
            d_ref -= ref.dims[0] / 2 + abs(np.cos(dy)) * a.dims[0] / 2 + abs(np.sin(dy)) * a.dims[1] / 2
        v = abs(ref.speed)
        if v < 0.05 or d_ref <= 0:
            return None
        # within a step the reference may already have moved this tick: its time then counts from the tick's end
        moved = self._stepping is not None and self.actors.index(ref) < self._stepping
        return d_ref / v + (self.dt if moved else 0.0)

    def _sync_step(self, a: Actor, b: Behaviour, dt: float) -> None:
        """Steer own speed so that own remaining distance / time matches the reference's predicted arrival time,
        ending at ``final_speed_mps``: the commanded speed is the one of a linear ramp to the final speed that covers
        the remaining distance in that time (v = 2 d / T - v_final).  At the point, hand over to lane_follow (vehicles)
        or walk (others) at the final speed."""
        if a.sync is None:
            self._sync_start(a, b)
        sy = a.sync
        d_own = self._remaining(a, sy["p"])
        vf = sy["vf"]
        if d_own <= 0.0:
            self.event_log.append((self.time_s, a.name, f"{a.name}:synchronized"))
            nb = dataclasses.replace(b, type="lane_follow" if (a.kind.vehicle and a.path is not None) else "walk",
                                     speed_mps=vf, heading_deg=0.0)
            self._start_behaviour(a, nb)
            a.speed = vf if nb.type == "walk" else a.speed
            if nb.type == "walk":
                self._walk(a, nb, dt)
            else:
                self._bicycle(a, float(np.clip((vf - a.speed) / dt, -9.0, 6.0)), dt)
            return
        T = self.sync_arrival_time(a)
        v_cmd = a.speed if T is None else max(0.0, 2.0 * d_own / T - vf)
        v_cmd = min(v_cmd, a.kind.max_speed_mps)
        if a.kind.vehicle and a.path is not None:
            self._bicycle(a, float(np.clip((v_cmd - a.speed) / dt, -9.0, 6.0)), dt)
            return
        v_new = float(np.clip(v_cmd, max(0.0, a.speed - 6.0 * dt), a.speed + 6.0 * dt))
        step = 0.5 * (a.speed + v_new) * dt
        a.accel = (v_new - a.speed) / dt
        a.speed = v_new
        a.x += step * np.cos(a.yaw)
        a.y += step * np.sin(a.yaw)

    def _reverse_step(self, a: Actor, b: Behaviour, dt: float) -> None:
        """Back up, keeping the heading: along the path behind it (vehicles on a lane; the yaw follows the lane's
        direction) or straight back, at up to ``speed_mps`` (default 2 m/s), for ``distance_m`` (default: on and on),
        accelerating at IDM a and stopping at IDM b.  The speed is negative: velocities point backwards."""
        target = b.speed_mps if b.speed_mps is not None else 2.0
        v = max(0.0, -a.speed)
        left = a.walk_left_m
        v_new = min(target, v + IDM_A_MAX * dt)
        if left is not None:
            v_new = min(v_new, float(np.sqrt(max(0.0, 2.0 * IDM_B * left))))
        step = 0.5 * (v + v_new) * dt
        if left is not None:
            step = min(step, left)
            a.walk_left_m = left - step
        if a.kind.vehicle and a.path is not None:
            a.s -= step
            x, y, yaw = a.path.pose_at(a.s, a.lateral)
            a.x, a.y, a.yaw = float(x), float(y), float(yaw)
        else:
            a.x -= step * np.cos(a.yaw)
            a.y -= step * np.sin(a.yaw)
        a.accel = (-v_new + v) / dt
        a.speed = -v_new

    def states(self) -> ActorStates:
        (ids, names, kinds, semantic, dims), pose, vel, accel, door, pr = self._state_arrays()
        return ActorStates(ids=ids.copy(), names=names, kinds=kinds, semantic=semantic.copy(), pose=pose,
                           velocity=vel, accel=accel, dims=dims.copy(), door=door, pitch_roll=pr)

    def _state_arrays(self) -> tuple:
        """(ids, names, kinds, semantic, dims) shared for the actor list (callers copy what they hand on), then new
        pose (N,4), velocity (N,3), accel, door, pitch_roll arrays: what :meth:`states` returns."""
        A = self.actors
        st = self._static_arrays()
        ident = st.get("states_ident")
        if ident is None:  # what does not change while the actor list stays the same: built once
            ident = st["states_ident"] = (np.array([a.id for a in A], np.int32), tuple(a.name for a in A),
                                          tuple(a.kind.name for a in A),
                                          np.array([a.kind.semantic for a in A], np.uint8),
                                          np.array([a.dims for a in A], float).reshape(-1, 3))
        n = len(A)
        pose, vel, accel, door, pr = np.empty((n, 4)), np.empty((n, 3)), np.empty(n), np.empty(n), np.empty((n, 2))
        # self._S (bound by _static_arrays: everything that moves, one row per actor) into the arrays, one loop
        _sim_kernels().states_out(self._S, _C_STATES, pose, vel, accel, door, pr)
        return ident, pose, vel, accel, door, pr


_SIM_KERNELS = None


def _sim_kernels():
    global _SIM_KERNELS
    if _SIM_KERNELS is None:
        from simgen.sim import kernels

        _SIM_KERNELS = kernels
    return _SIM_KERNELS


def _wrap1(a: float) -> float:
    """:func:`simgen.geometry.wrap_angle` for one Python float (same floor-modulo formula)."""
    return (float(a) + math.pi) % (2 * math.pi) - math.pi


def sample_appearance(kind: ActorKind, dims_spec, colour, rng: np.random.Generator, colour_jitter: float):
    """(dims l/w/h, colour) of a new actor: given values, or drawn within the kind's ranges and palette.  The
    same draws in the same order whatever is given, so every backend builds the same actors from one stream."""
    lo = np.array([kind.length_m[0], kind.width_m[0], kind.height_m[0]])
    hi = np.array([kind.length_m[1], kind.width_m[1], kind.height_m[1]])
    dims = lo + rng.random(3) * (hi - lo)
    pal = CAR_COLOURS if kind.vehicle else CLOTHING_COLOURS
    col = pal[rng.integers(len(pal))]
    jitter = rng.normal(0.0, 0.15, 3)
    if dims_spec is not None:
        dims = np.array([dims_spec.length_m, dims_spec.width_m, dims_spec.height_m], float)
    if colour is not None:
        return dims, np.array(colour, np.float32)
    return dims, np.clip(col + colour_jitter * jitter, 0.0, 1.0).astype(np.float32)


def route_crossing(a: Polyline, b: Polyline, s_from: float = 0.0) -> float | None:
    """Arc length on ``a`` (at or after ``s_from``) where it first crosses ``b``, or None (vectorised over the
    segment pairs; paths that merge tangentially count where their centre lines first touch)."""
    pa, pb = a.points, b.points
    p, r = pa[:-1], np.diff(pa, axis=0)
    q, t = pb[:-1], np.diff(pb, axis=0)
    rxs = r[:, None, 0] * t[None, :, 1] - r[:, None, 1] * t[None, :, 0]
    qp = q[None, :, :] - p[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (qp[..., 0] * t[None, :, 1] - qp[..., 1] * t[None, :, 0]) / rxs
        v = (qp[..., 0] * r[:, None, 1] - qp[..., 1] * r[:, None, 0]) / rxs
    hit = (np.abs(rxs) > 1e-12) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    ia, ib = np.nonzero(hit)
    if len(ia) == 0:
        return None
    s = a.vertex_s[ia] + u[ia, ib] * a._seg[ia]
    s = s[s >= s_from - 1e-6]
    return float(s.min()) if len(s) else None


_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, 1)``, cached per n (read-only arrays; callers index them, never write)."""
    got = _PAIRS.get(n)
    if got is None:
        i, j = np.triu_indices(n, 1)
        i.flags.writeable = False
        j.flags.writeable = False
        got = _PAIRS[n] = (i, j)
    return got


def overlapping_pairs(fp: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Index pairs (i < j) of oriented 2-D footprints (N,4,2) that overlap (separating axis test; compiled loop,
    the arithmetic of :func:`overlapping_pairs_numpy`)."""
    fp = np.ascontiguousarray(np.asarray(fp, float).reshape(-1, 4, 2))
    if len(fp) < 2:
        return np.zeros((0, 2), int)
    return _sim_kernels().overlap_pairs(fp, float(margin)).astype(int)


def overlapping_pairs_numpy(fp: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Index pairs (i < j) of oriented 2-D footprints (N,4,2) that overlap (separating axis test; numpy)."""
    n = len(fp)
    if n < 2:
        return np.zeros((0, 2), int)
    i, j = _pair_indices(n)
    # quick reject on bounding circles
    c = fp.mean(axis=1)
    r = np.linalg.norm(fp - c[:, None], axis=2).max(axis=1)
    near = np.linalg.norm(c[i] - c[j], axis=1) <= r[i] + r[j] + margin
    i, j = i[near], j[near]
    if len(i) == 0:
        return np.zeros((0, 2), int)
    A, B = fp[i], fp[j]
    axes = np.concatenate([A[:, [1, 2]] - A[:, [0, 1]], B[:, [1, 2]] - B[:, [0, 1]]], axis=1)  # (P,4,2)
    axes = axes / np.linalg.norm(axes, axis=2, keepdims=True)
    pa = np.einsum("pkd,pcd->pkc", axes, A)
    pb = np.einsum("pkd,pcd->pkc", axes, B)
    sep = (pa.max(2) + margin < pb.min(2)) | (pb.max(2) + margin < pa.min(2))
    hit = ~sep.any(axis=1)
    return np.stack([i[hit], j[hit]], axis=1)


# ---------------------------------------------------------------------------------------------- ground attitude
_CONTACT_UV = np.array([(u, v) for u in (1.0, 0.0, -1.0) for v in (1.0, 0.0, -1.0)])  # footprint samples, half-sizes


def ground_attitude(ground_height, xy: np.ndarray, yaw: np.ndarray, lw: np.ndarray, tilt: np.ndarray):
    """(z (M,), pitch_roll (M,2)) of boxes (centres xy (M,2), yaw (M,), length/width lw (M,2)) resting on the ground
    ``ground_height((K,2) xy) -> (K,)``, vectorised over the boxes (one ground query for all of them).

    Rows with ``tilt`` take the ground's attitude: the least-squares plane z = a + b*u + c*v through the ground under
    the four corners (u forward, v left, in the box's yaw frame) gives pitch = -atan(b) and roll =
    asin(c / sqrt(1 + b^2 + c^2)) (ZYX, + nose down, + left up: the box's bottom face then lies in that plane); the
    plane is lifted to the highest ground above it among nine footprint samples (corners, edge midpoints, centre),
    so the box touches the ground and no sample sinks into it (a crest, a kerb).  Other rows stay level on the
    highest ground among those samples."""
    M = len(xy)
    if M == 0:
        return np.zeros(0), np.zeros((0, 2))
    c, s = np.cos(yaw), np.sin(yaw)
    u = _CONTACT_UV[None, :, 0] * (lw[:, :1] / 2)  # (M,9)
    v = _CONTACT_UV[None, :, 1] * (lw[:, 1:2] / 2)
    px = xy[:, :1] + u * c[:, None] - v * s[:, None]
    py = xy[:, 1:2] + u * s[:, None] + v * c[:, None]
    g = np.asarray(ground_height(np.stack([px, py], -1).reshape(-1, 2)), float).reshape(M, 9)
    z = g.max(axis=1)
    pr = np.zeros((M, 2))
    if np.any(tilt):
        corner = (_CONTACT_UV[:, 0] != 0) & (_CONTACT_UV[:, 1] != 0)  # FL, FR, RL, RR
        gc, uc, vc = g[:, corner], _CONTACT_UV[corner, 0], _CONTACT_UV[corner, 1]
        a = gc.mean(axis=1)
        b = (gc @ uc) / (4 * lw[:, 0] / 2)  # symmetric corners: least squares is this closed form
        cc = (gc @ vc) / (4 * lw[:, 1] / 2)
        lift = np.max(g - (a[:, None] + b[:, None] * u + cc[:, None] * v), axis=1)
        t = np.asarray(tilt, bool)
        z = np.where(t, a + lift, z)
        pr[t, 0] = -np.arctan(b[t])
        pr[t, 1] = np.arcsin(cc[t] / np.sqrt(1.0 + b[t] ** 2 + cc[t] ** 2))
    return z, pr


# ---------------------------------------------------------------------------------------------- swept contacts
def _rects(xy: np.ndarray, yaw: np.ndarray, lw: np.ndarray) -> np.ndarray:
    """(P,4,2) corners of oriented rectangles (centres xy (P,2), yaw (P,), length/width lw (P,2)); the corner order
    of :meth:`World._footprints`."""
    c, s = np.cos(yaw), np.sin(yaw)
    l2, w2 = lw[:, 0] / 2, lw[:, 1] / 2
    lx = np.stack([l2, l2, -l2, -l2], 1)
    ly = np.stack([w2, -w2, -w2, w2], 1)
    return np.stack([lx * c[:, None] - ly * s[:, None] + xy[:, :1], lx * s[:, None] + ly * c[:, None] + xy[:, 1:2]], -1)


def _rect1(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """:func:`_rects` of one box, (1, 4, 2), in scalar arithmetic (the same formulas, term by term)."""
    c, s = math.cos(yaw), math.sin(yaw)
    l2, w2 = length / 2, width / 2
    out = []
    for lx, ly in ((l2, w2), (l2, -w2), (-l2, -w2), (-l2, w2)):
        out.append((lx * c - ly * s + x, lx * s + ly * c + y))
    return np.array(out, float).reshape(1, 4, 2)


def _lerp_pose(p0: np.ndarray, p1: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Poses (P,3) x, y, yaw at fractions f (P,) between p0 and p1 (yaw along the shorter arc)."""
    out = p0 + f[:, None] * (p1 - p0)
    out[:, 2] = p0[:, 2] + f * wrap_angle(p1[:, 2] - p0[:, 2])
    return out


def sat_overlap(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(P,) whether convex quadrilaterals A[p] and B[p] (P,4,2) overlap (separating axis test; touching counts)."""
    axes = np.concatenate([A[:, [1, 2]] - A[:, [0, 1]], B[:, [1, 2]] - B[:, [0, 1]]], axis=1)
    axes = axes / np.maximum(np.linalg.norm(axes, axis=2, keepdims=True), 1e-12)
    pa = np.einsum("pkd,pcd->pkc", axes, A)
    pb = np.einsum("pkd,pcd->pkc", axes, B)
    sep = (pa.max(2) < pb.min(2)) | (pb.max(2) < pa.min(2))
    return ~sep.any(axis=1)


def first_contact(a0, a1, da, b0, b1, db, *, samples: int = 16, iters: int = 40) -> np.ndarray:
    """Fraction of a tick (0..1) at which the footprints of pairs first touch, NaN where they never do: the
    method of :func:`first_contact_numpy` in a compiled loop, pair by pair."""
    a0, a1, b0, b1 = (np.ascontiguousarray(np.asarray(v, float).reshape(-1, 3)) for v in (a0, a1, b0, b1))
    da, db = (np.ascontiguousarray(np.asarray(v, float).reshape(-1, 2)) for v in (da, db))
    out = np.empty(len(a0))
    if len(a0):
        _sim_kernels().first_contact(a0, a1, da, b0, b1, db, int(samples), int(iters), out)
    return out


def first_contact_numpy(a0, a1, da, b0, b1, db, *, samples: int = 16, iters: int = 40) -> np.ndarray:
    """Fraction of a tick (0..1) at which the footprints of pairs first touch, NaN where they never do.

    Poses a0/a1 and b0/b1 (P,3: x, y, yaw) at the tick's start and end are interpolated linearly (yaw along the
    shorter arc); the footprints (sizes da, db: (P,2) length, width) are tested with the separating axis test at
    ``samples`` evenly spaced fractions (so a thin object passing right through within the tick is found too), and
    the first overlap is refined by bisection to 2**-iters of a tick.  Vectorised over pairs."""
    a0, a1, b0, b1 = (np.asarray(v, float) for v in (a0, a1, b0, b1))
    da, db = np.asarray(da, float), np.asarray(db, float)
    P = len(a0)
    out = np.full(P, np.nan)
    if P == 0:
        return out

    def hit(f):
        pa, pb = _lerp_pose(a0, a1, f), _lerp_pose(b0, b1, f)
        return sat_overlap(_rects(pa[:, :2], pa[:, 2], da), _rects(pb[:, :2], pb[:, 2], db))

    fs = np.linspace(0.0, 1.0, samples + 1)
    rep = lambda v: np.repeat(v, samples + 1, axis=0)  # noqa: E731 - all samples of all pairs in one SAT call
    pa = _lerp_pose(rep(a0), rep(a1), np.tile(fs, P))
    pb = _lerp_pose(rep(b0), rep(b1), np.tile(fs, P))
    grid = sat_overlap(_rects(pa[:, :2], pa[:, 2], rep(da)), _rects(pb[:, :2], pb[:, 2], rep(db))).reshape(P, samples + 1)
    any_hit = grid.any(1)
    if not any_hit.any():
        return out
    k = np.argmax(grid, axis=1)
    out[any_hit] = fs[k[any_hit]]
    sel = np.flatnonzero(any_hit & (k > 0))  # bisect only the pairs that touch, between the last miss and first hit
    if len(sel):
        a0, a1, b0, b1, da, db = a0[sel], a1[sel], b0[sel], b1[sel], da[sel], db[sel]
        lo, hi = fs[k[sel] - 1], fs[k[sel]]
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            h = hit(mid)
            hi = np.where(h, mid, hi)
            lo = np.where(h, lo, mid)
        out[sel] = hi
    return out


def clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection polygon (K,2) of two convex polygons (Sutherland-Hodgman); empty (0,2) when they do not meet."""
    def ccw(p):
        area = np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
        return p if area >= 0 else p[::-1]

    out = list(ccw(np.asarray(subject, float)))
    C = ccw(np.asarray(clip, float))
    for k in range(len(C)):
        if not out:
            break
        e0, e1 = C[k], C[(k + 1) % len(C)]
        edge = e1 - e0
        inside = lambda q: edge[0] * (q[1] - e0[1]) - edge[1] * (q[0] - e0[0]) >= 0.0  # noqa: E731
        pts, out = out, []
        for m in range(len(pts)):
            cur, prev = pts[m], pts[m - 1]
            ci, pi = inside(cur), inside(prev)
            if ci != pi:
                d = cur - prev
                den = edge[0] * d[1] - edge[1] * d[0]
                if abs(den) > 1e-15:
                    t = (edge[0] * (e0[1] - prev[1]) - edge[1] * (e0[0] - prev[0])) / den
                    out.append(prev + np.clip(t, 0.0, 1.0) * d)
            if ci:
                out.append(cur)
    return np.array(out, float).reshape(-1, 2)


def polygon_centroid(poly: np.ndarray) -> np.ndarray | None:
    """Area centroid of a simple polygon (K,2) (shoelace); the mean of its distinct vertices when it has no area;
    None when empty."""
    if len(poly) == 0:
        return None
    x, y = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cr = x * yn - xn * y
    area = 0.5 * cr.sum()
    if abs(area) < 1e-12:
        return np.unique(np.round(poly, 12), axis=0).mean(axis=0)
    return np.array([((x + xn) * cr).sum(), ((y + yn) * cr).sum()]) / (6.0 * area)


def path_crossing(P: np.ndarray, Q: np.ndarray) -> np.ndarray | None:
    """First point (along P) where polylines P (N,2) and Q (M,2) cross, or None.  Vectorised over segment pairs."""
    p0, p1 = P[:-1], P[1:]
    q0, q1 = Q[:-1], Q[1:]
    r = (p1 - p0)[:, None, :]
    s = (q1 - q0)[None, :, :]
    qp = q0[None, :, :] - p0[:, None, :]
    den = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / den
        u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / den
    ok = (np.abs(den) > 1e-12) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    if not ok.any():
        return None
    seg_len = np.hypot(*(p1 - p0).T)
    s_along = np.concatenate([[0.0], np.cumsum(seg_len)])[:-1][:, None] + t * seg_len[:, None]
    s_along = np.where(ok, s_along, np.inf)
    i, j = np.unravel_index(np.argmin(s_along), s_along.shape)
    return p0[i] + t[i, j] * (p1[i] - p0[i])


# ---------------------------------------------------------------------------------------------- end conditions
class EndMonitor:
    """Evaluates a scenario's ``end:`` conditions tick by tick on plain observations (frame index, time, ego speed,
    collision pairs, events fired), so both backends and the pre-simulation use the same rules.  ``reason`` is the
    first condition that held (None until then); ``frame``/``time_s`` when it held."""

    def __init__(self, end, ego_id: int = 1):
        self.end = tuple(end)
        self.ego_id = ego_id
        self.reason: str | None = None
        self.frame: int | None = None
        self.time_s: float | None = None
        self._still_since: float | None = None
        self._collision_t: dict[str, float] = {}
        self._event_t: dict[str, float] = {}

    def update(self, k: int, t: float, ego_speed: float, collisions, events) -> bool:
        """``events``: (time fired, actor, event key) tuples fired this tick.  True once an end condition holds."""
        if self.reason is not None:
            return True
        eps = 1e-9
        for pair in collisions:
            self._collision_t.setdefault("any", t)
            if self.ego_id in pair:
                self._collision_t.setdefault("ego", t)
        for te, _, key in events:
            self._event_t.setdefault(key, float(te))
        if abs(ego_speed) < min((c.speed_below_mps for c in self.end if c.ego_standstill_s is not None), default=0.05):
            if self._still_since is None:
                self._still_since = t
        else:
            self._still_since = None
        for c in self.end:
            ok = False
            if c.ego_standstill_s is not None:
                ok = self._still_since is not None and t - self._still_since >= c.ego_standstill_s - eps
            elif c.collision is not None:
                ok = c.collision in self._collision_t and t >= self._collision_t[c.collision] + c.delay_s - eps
            elif c.event is not None:
                ok = c.event in self._event_t and t >= self._event_t[c.event] + c.delay_s - eps
            elif c.time_s is not None:
                ok = t >= c.time_s - eps
            if ok:
                self.reason, self.frame, self.time_s = c.describe(), int(k), float(t)
                return True
        return False


def predict_end(world: World, cap: int) -> tuple[int, EndMonitor]:
    """Step a (fresh) World until its scenario's end conditions hold or ``cap`` frames are reached, as a backend's
    session would (frame 0 is the initial state).  Returns the number of frames and the monitor."""
    mon = EndMonitor(world.spec.end)
    if mon.update(0, world.time_s, abs(world.actors[0].speed), [], []):
        return 1, mon
    for k in range(1, cap):
        n_ev = len(world.event_log)
        col = world.step()
        if mon.update(k, world.time_s, abs(world.actors[0].speed), col, world.event_log[n_ev:]):
            return k + 1, mon
    return cap, mon
