"""A test double of the parts of the CARLA 0.9.15/0.9.16 Python API that the carla backend uses.

Built on the REAL ``carla`` package's offline value types (Transform, Location, Rotation, Vector3D, BoundingBox,
WeatherParameters, WorldSettings, VehicleControl, WalkerControl, TrafficLightState and the ``carla.command``
classes): only the server side is faked.  ``make_module(server)`` returns a namespace that is the real ``carla``
module with ``Client`` bound to a :class:`FakeServer`.

What the fake server does, in CARLA's own (left-handed) frame and units:

- keeps world settings, maps (``load_world`` of a named town parses its OpenDRIVE with an independent
  line/arc/lane-width evaluator; ``generate_opendrive_world`` reads the file it is given with the real offline
  ``carla.Map(name, text)``, CARLA's own parser, as a server does: waypoints come from the file, not from simgen),
  a blueprint library with MADE-UP vehicle/walker/prop sizes (test data, not CARLA's), actors, a Traffic Manager
  that records its calls and drives autopilot vehicles straight at their desired speed, traffic lights generated
  from the OpenDRIVE signals of type 1000001;
- ``world.tick()`` advances a crude kinematic world (target velocities, walker controls, brakes, teleports) and
  then renders every listening sensor: cameras by ray casting the actors' boxes and the ground plane z = 0 (RGB,
  depth in CARLA's 24-bit encoding, semantic tag in R, instance tag/id in R/G/B), the semantic LiDAR by casting
  its rays (points in the sensor frame, y right, grouped by channel);
- delivers sensor data through the ``listen`` callbacks, with injectable faults (:class:`Faults`): late delivery
  (from a timer thread), missing data, data stamped with the wrong frame, stale copies of an older frame,
  reversed delivery order, a crash (RuntimeError from ``tick`` and every later call), KeyboardInterrupt from
  ``tick``, failing spawns, traffic lights without OpenDRIVE ids, and Unreal object ids (not actor ids) in the
  instance camera.
- records calls (``server.calls``) and every settings change (``server.settings_log``) for call-sequence tests.
"""
from __future__ import annotations

import fnmatch
import math
import threading
import types
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

import carla  # the real client package: offline value types only

SEM_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("cos", "<f4"), ("idx", "<u4"), ("tag", "<u4")])
CRASH_MSG = "time-out of 10000ms while waiting for the simulator, make sure the simulator is ready and connected to 127.0.0.1:2000"
UNREAL_ID_OFFSET = 20000  # instance ids reported in "unreal" mode: actor id + this (as CARLA 0.9.15 reports UE ids)
GROUND_INSTANCE_ID = 7  # the ground's object id in the instance camera (a static mesh, not an actor)


# ----------------------------------------------------------------------------------------------------- catalogue
# (id, base_type, extent (half sizes), bbox centre offset in the actor frame, has colour, has_dynamic_doors, wheels).
# base_type values are the ones CARLA's VehicleParameters.h documents (car / truck / van / motorcycle and the
# misspelt "bycicle"); there is no "bus" or "bicycle" base type, so the bus is typed "truck" here.
VEHICLES = [
    ("vehicle.fake.compact", "car", (2.1, 0.9, 0.75), (0.1, 0.0, 0.75), True, False, 4),
    ("vehicle.fake.saloon", "car", (2.4, 0.95, 0.72), (0.0, 0.0, 0.72), True, True, 4),
    ("vehicle.fake.van", "van", (2.6, 1.0, 1.1), (0.0, 0.0, 1.1), True, True, 4),
    ("vehicle.fake.truck", "truck", (4.2, 1.25, 1.7), (0.0, 0.0, 1.7), True, False, 4),
    ("vehicle.fake.fusorosa", "truck", (5.7, 1.27, 1.6), (0.0, 0.0, 1.6), False, False, 4),
    ("vehicle.fake.motorbike", "motorcycle", (1.05, 0.4, 0.75), (0.0, 0.0, 0.75), False, False, 2),
    ("vehicle.fake.bicycle", "bycicle", (0.85, 0.3, 0.85), (0.0, 0.0, 0.85), False, False, 2),
]
WALKERS = [
    ("walker.pedestrian.0001", "adult", (0.25, 0.25, 0.9)),
    ("walker.pedestrian.0002", "adult", (0.27, 0.27, 0.93)),
    ("walker.pedestrian.0009", "child", (0.2, 0.2, 0.6)),
]
# props named as in CARLA's props catalogue (which has no ball); sizes made up
PROPS = [("static.prop.box01", (0.35, 0.35, 0.35)), ("static.prop.plasticbag", (0.12, 0.1, 0.12)),
         ("static.prop.motorhelmet", (0.16, 0.14, 0.15)), ("static.prop.dirtdebris01", (0.5, 0.4, 0.05))]
TAG_OF_BASE = {"car": 14, "van": 14, "truck": 15, "motorcycle": 18, "bycicle": 19}
TAG_OF_ID = {"vehicle.fake.fusorosa": 16}
PALETTE = {0: (0, 0, 0), 1: (128, 64, 128), 11: (70, 130, 180), 12: (220, 20, 60), 14: (0, 0, 142), 15: (0, 0, 70),
           16: (0, 60, 100), 18: (0, 0, 230), 19: (119, 11, 32), 20: (110, 190, 160)}


class FakeAttribute:
    def __init__(self, id_, value: str):
        self.id, self.value = id_, str(value)

    def as_str(self):
        return self.value

    def as_int(self):
        return int(float(self.value))

    def as_float(self):
        return float(self.value)

    def as_bool(self):
        return self.value.lower() == "true"

    def __str__(self):
        return self.value


class FakeBlueprint:
    def __init__(self, id_, attrs: dict, *, extent=(0.1, 0.1, 0.1), centre=(0, 0, 0), tag=0, kind="other"):
        self.id, self.tags = id_, id_.split(".")
        self._attrs = {k: FakeAttribute(k, v) for k, v in attrs.items()}
        self.extent, self.centre, self.tag, self.kind = extent, centre, tag, kind

    def copy(self):
        b = FakeBlueprint(self.id, {k: a.value for k, a in self._attrs.items()}, extent=self.extent, centre=self.centre,
                          tag=self.tag, kind=self.kind)
        return b

    def has_attribute(self, k):
        return k in self._attrs

    def get_attribute(self, k):
        if k not in self._attrs:
            raise IndexError(f"blueprint {self.id!r} has no attribute {k!r}")
        return self._attrs[k]

    def set_attribute(self, k, v):
        if k not in self._attrs:
            raise IndexError(f"blueprint {self.id!r} has no attribute {k!r}")
        if not isinstance(v, str):
            raise TypeError("CARLA blueprint attributes are set as strings")
        self._attrs[k].value = v

    def attrs(self) -> dict[str, str]:
        return {k: a.value for k, a in self._attrs.items()}


def _catalogue() -> list[FakeBlueprint]:
    out = []
    for id_, base, ext, cen, colour, doors, wheels in VEHICLES:
        attrs = {"role_name": "", "base_type": base, "number_of_wheels": wheels, "generation": 2,
                 "has_dynamic_doors": "true" if doors else "false"}
        if colour:
            attrs["color"] = "10,10,10"
        out.append(FakeBlueprint(id_, attrs, extent=ext, centre=cen, tag=TAG_OF_ID.get(id_, TAG_OF_BASE[base]), kind="vehicle"))
    for id_, age, ext in WALKERS:
        out.append(FakeBlueprint(id_, {"role_name": "", "age": age, "is_invincible": "true", "speed": "1.4"}, extent=ext,
                                 centre=(0, 0, 0), tag=12, kind="walker"))
    for id_, ext in PROPS:
        out.append(FakeBlueprint(id_, {"role_name": "", "size": "small"}, extent=ext, centre=(0, 0, ext[2]), tag=20, kind="prop"))
    cam = {"image_size_x": "800", "image_size_y": "600", "fov": "90", "sensor_tick": "0.0", "role_name": ""}
    for s in ("rgb", "depth", "semantic_segmentation", "instance_segmentation"):
        out.append(FakeBlueprint(f"sensor.camera.{s}", dict(cam), kind="camera"))
    lid = {"channels": "32", "range": "10.0", "points_per_second": "56000", "rotation_frequency": "10.0", "upper_fov": "10.0",
           "lower_fov": "-30.0", "horizontal_fov": "360.0", "sensor_tick": "0.0", "role_name": ""}
    out.append(FakeBlueprint("sensor.lidar.ray_cast_semantic", lid, kind="lidar"))
    out.append(FakeBlueprint("sensor.lidar.ray_cast", {**lid, "noise_stddev": "0.0", "dropoff_general_rate": "0.45",
                                                       "atmosphere_attenuation_rate": "0.004"}, kind="lidar_raw"))
    return out


class FakeBlueprintLibrary:
    def __init__(self, bps):
        self._bps = bps

    def filter(self, pattern):
        return [b.copy() for b in self._bps if fnmatch.fnmatch(b.id, pattern)]

    def find(self, id_):
        for b in self._bps:
            if b.id == id_:
                return b.copy()
        raise IndexError(f"no blueprint {id_!r}")

    def __iter__(self):
        return iter([b.copy() for b in self._bps])


# ----------------------------------------------------------------------------------------------------- OpenDRIVE
class _Road:
    """Independent OpenDRIVE evaluator: planView lines/arcs, constant laneOffset, constant lane widths."""

    def __init__(self, el):
        self.id = int(el.get("id"))
        self.length = float(el.get("length"))
        self.geoms = []
        for g in el.find("planView"):
            arc = g.find("arc")
            self.geoms.append((float(g.get("s")), float(g.get("x")), float(g.get("y")), float(g.get("hdg")),
                               float(g.get("length")), float(arc.get("curvature")) if arc is not None else 0.0))
        lanes = el.find("lanes")
        lo = lanes.find("laneOffset")
        self.offset = float(lo.get("a")) if lo is not None else 0.0
        self.widths, self.types = {}, {}
        for side in ("left", "right"):
            s_el = lanes.find("laneSection").find(side)
            if s_el is None:
                continue
            for ln in s_el.findall("lane"):
                lid = int(ln.get("id"))
                self.widths[lid] = float(ln.find("width").get("a"))
                self.types[lid] = ln.get("type")

    def pose(self, s):
        s = min(max(s, 0.0), self.length)
        g = [g for g in self.geoms if g[0] <= s + 1e-9][-1]
        s0, x, y, h, _, k = g
        ds = s - s0
        if abs(k) < 1e-12:
            return x + ds * math.cos(h), y + ds * math.sin(h), h
        h1 = h + k * ds
        return x + (math.sin(h1) - math.sin(h)) / k, y - (math.cos(h1) - math.cos(h)) / k, h1

    def lane_t(self, lane_id):
        sign = 1 if lane_id > 0 else -1
        t = self.offset
        for k in range(1, abs(lane_id)):
            t += sign * self.widths[sign * k]
        return t + sign * self.widths[lane_id] / 2


class FakeWaypoint:
    def __init__(self, map_, road: _Road, lane_id: int, s: float):
        self._map, self._road, self.lane_id, self.s = map_, road, lane_id, s
        self.road_id, self.section_id, self.junction_id, self.is_junction = road.id, 0, -1, False
        self.lane_width = road.widths[lane_id]
        self.lane_type = road.types[lane_id]
        x, y, h = road.pose(s)
        t = road.lane_t(lane_id)
        px, py = x - t * math.sin(h), y + t * math.cos(h)
        yaw = h + (math.pi if lane_id > 0 else 0.0)  # lanes left of the reference drive against it (RHT)
        self.transform = carla.Transform(carla.Location(x=px, y=-py, z=0.0), carla.Rotation(yaw=-math.degrees(yaw)))

    def _step(self, d):
        ds = d if self.lane_id < 0 else -d
        s = self.s + ds
        if s < 0 or s > self._road.length:
            return []
        return [FakeWaypoint(self._map, self._road, self.lane_id, s)]

    def next(self, d):
        return self._step(d)

    def previous(self, d):
        return self._step(-d)

    def _side(self, left: bool):
        step = (1 if left else -1) * (1 if self.lane_id < 0 else -1)
        lid = self.lane_id + step
        if lid == 0:
            lid += step
        return FakeWaypoint(self._map, self._road, lid, self.s) if lid in self._road.widths else None

    def get_left_lane(self):
        return self._side(True)

    def get_right_lane(self):
        return self._side(False)


class FakeMap:
    def __init__(self, name: str, xodr: str):
        self.name, self._xodr = name, xodr
        root = ET.fromstring(xodr)
        self.roads = {r.id: r for r in (_Road(el) for el in root.findall("road"))}
        self.signals = []  # (road, s, t, id)
        for el in root.findall("road"):
            sigs = el.find("signals")
            for sg in (sigs.findall("signal") if sigs is not None else []):
                if sg.get("type") == "1000001":
                    self.signals.append((self.roads[int(el.get("id"))], float(sg.get("s")), float(sg.get("t")), sg.get("id")))

    def to_opendrive(self):
        return self._xodr

    def light_poles(self):
        """(CARLA location, OpenDRIVE id) of every 1000001 signal."""
        out = []
        for road, s, t, sid in self.signals:
            x, y, h = road.pose(s)
            out.append((carla.Location(x - t * math.sin(h), -(y + t * math.cos(h)), 0.15), sid))
        return out

    def get_waypoint_xodr(self, road_id, lane_id, s):
        road = self.roads.get(int(road_id))
        if road is None or int(lane_id) not in road.widths or not 0 <= s <= road.length + 1e-6:
            return None
        return FakeWaypoint(self, road, int(lane_id), float(s))

    def get_waypoint(self, location, project_to_road=True):
        best = None
        for road in self.roads.values():
            for lid, typ in road.types.items():
                if typ != "driving":
                    continue
                for s in np.linspace(0, road.length, max(2, int(road.length // 2))):
                    wp = FakeWaypoint(self, road, lid, float(s))
                    d = wp.transform.location.distance(location)
                    if best is None or d < best[0]:
                        best = (d, wp)
        return best[1] if best else None

    def get_spawn_points(self):
        out = []
        for road in self.roads.values():
            for lid, typ in sorted(road.types.items()):
                if typ == "driving":
                    for s in np.arange(10.0, road.length - 10.0, 30.0):
                        tf = FakeWaypoint(self, road, lid, float(s)).transform
                        out.append(carla.Transform(carla.Location(tf.location.x, tf.location.y, 0.5), tf.rotation))
        return out


class ParsedMap:
    """The map of a world generated from OpenDRIVE: CARLA's own parser (the real offline ``carla.Map(name,
    text)``, which is what a server's ``generate_opendrive_world`` uses), so waypoints, lanes and spawn points are
    the server's for any file, including elevation, lane sections and spirals."""

    def __init__(self, name: str, xodr: str):
        self.name, self._xodr = name, xodr
        self._m = carla.Map(name.rsplit("/", 1)[-1], xodr)

    def to_opendrive(self):
        return self._xodr

    def light_poles(self):
        return [(lm.transform.location, str(lm.id)) for lm in self._m.get_all_landmarks_of_type("1000001")]

    def get_waypoint_xodr(self, road_id, lane_id, s):
        return self._m.get_waypoint_xodr(int(road_id), int(lane_id), float(s))

    def get_waypoint(self, location, project_to_road=True):
        return self._m.get_waypoint(location, project_to_road)

    def get_spawn_points(self):
        return self._m.get_spawn_points()

    def get_topology(self):
        return self._m.get_topology()

    def generate_waypoints(self, d):
        return self._m.generate_waypoints(d)


# ----------------------------------------------------------------------------------------------------- actors
def _settings_copy(s):
    c = carla.WorldSettings()
    for k in ("synchronous_mode", "no_rendering_mode", "fixed_delta_seconds", "substepping", "max_substep_delta_time",
              "max_substeps", "max_culling_distance", "deterministic_ragdolls"):
        setattr(c, k, getattr(s, k))
    return c


def _mat(tf) -> np.ndarray:
    return np.array(tf.get_matrix(), float)


def _tf_from_mat(M) -> carla.Transform:
    yaw = math.degrees(math.atan2(M[1, 0], M[0, 0]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, M[2, 0]))))
    roll = math.degrees(math.atan2(-M[2, 1], M[2, 2]))
    return carla.Transform(carla.Location(*M[:3, 3]), carla.Rotation(pitch=pitch, yaw=yaw, roll=roll))


class FakeActor:
    def __init__(self, server, id_, bp: FakeBlueprint, transform, parent=None):
        self._server, self.id, self.type_id = server, id_, bp.id
        self.attributes = bp.attrs()
        self.kind, self.tag = bp.kind, bp.tag
        self._box = carla.BoundingBox(carla.Location(*bp.centre), carla.Vector3D(*bp.extent))  # the true geometry
        self.doors_open: set[str] = set()
        self.parent = parent
        self._tf = transform  # world transform, or relative to the parent when attached
        self.velocity = np.zeros(3)
        self.accel = np.zeros(3)
        self.alive = True
        self.autopilot = False
        self.control = None
        self.walker_control = None
        self.simulate_physics = True
        self.callback = None
        self.h_angle = 0.0
        self.semantic_tags = [bp.tag]

    def _check(self):
        self._server._rpc()

    @property
    def bounding_box(self):
        """As CARLA reports it.  Vehicles and walkers: the local box.  ``static.prop.*`` (BoundingBoxCalculator,
        carla#8663, 0.9.15+): the box's rotation is the actor's WORLD rotation and its extent and centre are built
        from the world-rotated parts, i.e. the world-axis-aligned box around the rotated one; only at rotation 0 is
        it the prop's own box."""
        if self.kind != "prop":
            return self._box
        tf = self.world_transform()
        R = _mat(tf)[:3, :3]
        c, e = self._box.location, self._box.extent
        cw = R @ np.array([c.x, c.y, c.z])
        ew = np.abs(R) @ np.array([e.x, e.y, e.z])
        r = tf.rotation
        bb = carla.BoundingBox(carla.Location(*cw), carla.Vector3D(*ew))
        bb.rotation = carla.Rotation(pitch=r.pitch, yaw=r.yaw, roll=r.roll)
        return bb

    @property
    def is_alive(self):
        return self.alive

    def get_transform(self):
        self._check()
        return self.world_transform()

    def world_transform(self):
        if self.parent is None:
            return self._tf
        return _tf_from_mat(_mat(self.parent.world_transform()) @ _mat(self._tf))

    def get_location(self):
        return self.get_transform().location

    def get_velocity(self):
        return carla.Vector3D(*self.velocity)

    def set_transform(self, tf):
        self._check()
        self._tf = tf

    def set_target_velocity(self, v):
        self._check()
        self.velocity = np.array([v.x, v.y, v.z], float)

    def set_simulate_physics(self, on):
        self._check()
        self.simulate_physics = bool(on)

    def set_autopilot(self, enabled=True, tm_port=8000):
        self._check()
        self._server.calls.append(("set_autopilot", self.id, bool(enabled), int(tm_port)))
        self.autopilot = bool(enabled)
        if enabled and tm_port not in self._server.tms:
            raise RuntimeError(f"no traffic manager on port {tm_port}")

    def apply_control(self, control):
        self._check()
        if isinstance(control, carla.WalkerControl):
            self.walker_control = control
        else:
            self.control = control

    def open_door(self, door):
        """CARLA accepts the call for any vehicle but animates only blueprints with has_dynamic_doors=true."""
        self._check()
        self._server.calls.append(("open_door", self.id, str(door)))
        if self.attributes.get("has_dynamic_doors") == "true":
            self.doors_open.add(str(door))

    def listen(self, cb):
        self._check()
        self.callback = cb

    def stop(self):
        self._check()
        self.callback = None
        self._server.calls.append(("stop", self.id))

    def is_listening(self):
        return self.callback is not None

    def destroy(self):
        self._check()
        return self._server._destroy(self.id)


class FakeTrafficLight(FakeActor):
    def __init__(self, server, id_, transform, odr_id: str):
        bp = FakeBlueprint("traffic.traffic_light", {}, extent=(0.3, 0.3, 2.0), centre=(0, 0, 2.0), tag=7, kind="light")
        super().__init__(server, id_, bp, transform)
        self._odr = odr_id
        self.state = carla.TrafficLightState.Red
        self.frozen = False

    def get_opendrive_id(self):
        return self._odr

    def set_state(self, st):
        self._check()
        self.state = st
        self._server.calls.append(("tl_set_state", self.id, str(st)))

    def get_state(self):
        return self.state

    def freeze(self, on):
        self.frozen = bool(on)


class FakeActorList(list):
    def filter(self, pattern):
        return FakeActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))


class FakeTrafficManager:
    def __init__(self, server, port):
        self._server, self.port = server, port
        self.sync = False
        self.seed = None
        self.desired = {}

    def _rec(self, name, *args):
        self._server._rpc()
        self._server.calls.append(("tm." + name,) + args)

    def set_synchronous_mode(self, on):
        self._rec("set_synchronous_mode", bool(on))
        self.sync = bool(on)

    def set_random_device_seed(self, seed):
        self._rec("set_random_device_seed", int(seed))
        self.seed = int(seed)

    def set_desired_speed(self, actor, kmh):
        self._rec("set_desired_speed", actor.id, float(kmh))
        self.desired[actor.id] = float(kmh) / 3.6

    def auto_lane_change(self, actor, on):
        self._rec("auto_lane_change", actor.id, bool(on))

    def distance_to_leading_vehicle(self, actor, d):
        self._rec("distance_to_leading_vehicle", actor.id, float(d))

    def ignore_lights_percentage(self, actor, p):
        self._rec("ignore_lights_percentage", actor.id, float(p))

    def ignore_vehicles_percentage(self, actor, p):
        self._rec("ignore_vehicles_percentage", actor.id, float(p))

    def ignore_walkers_percentage(self, actor, p):
        self._rec("ignore_walkers_percentage", actor.id, float(p))

    def force_lane_change(self, actor, direction):
        self._rec("force_lane_change", actor.id, bool(direction))

    def set_path(self, actor, path):
        self._rec("set_path", actor.id, [(p.x, p.y, p.z) for p in path])

    def get_port(self):
        return self.port


@dataclass
class FakeResponse:
    actor_id: int
    error: str = ""

    def has_error(self):
        return bool(self.error)


@dataclass
class FakeImage:
    frame: int
    timestamp: float
    transform: object
    width: int
    height: int
    fov: float
    raw_data: bytes


@dataclass
class FakeSemanticLidarMeasurement:
    frame: int
    timestamp: float
    transform: object
    channels: int
    horizontal_angle: float
    raw_data: bytes
    counts: list

    def get_point_count(self, ch):
        return self.counts[ch]


class FakeActorSnapshot:
    def __init__(self, a: FakeActor):
        self.id = a.id
        self._tf, self._v, self._a = a.world_transform(), carla.Vector3D(*a.velocity), carla.Vector3D(*a.accel)

    def get_transform(self):
        return self._tf

    def get_velocity(self):
        return self._v

    def get_acceleration(self):
        return self._a


class FakeSnapshot:
    def __init__(self, frame, elapsed, actors):
        self.frame, self.elapsed_seconds = frame, elapsed
        self.timestamp = carla.Timestamp(frame, elapsed, 0.0, 0.0)
        self._snaps = {a.id: FakeActorSnapshot(a) for a in actors}

    def find(self, id_):
        return self._snaps.get(id_)

    def has_actor(self, id_):
        return id_ in self._snaps


# ----------------------------------------------------------------------------------------------------- faults
@dataclass
class Faults:
    """Sensor keys are the suffix of the sensor's role name, e.g. ``"front:depth"``; ticks count from 0 at the first
    tick with a listening sensor (ticks before that, e.g. to let spawned actors settle, do not count)."""

    crash_at_tick: int | None = None
    interrupt_at_tick: int | None = None
    drop: set = field(default_factory=set)  # {(key, tick)}: never delivered
    late: dict = field(default_factory=dict)  # {(key, tick): seconds}: delivered from a timer thread
    wrong_frame: set = field(default_factory=set)  # {(key, tick)}: delivered stamped with the previous frame id
    stale: set = field(default_factory=set)  # {(key, tick)}: a copy of the previous tick's data arrives after this tick's
    reverse_order: bool = False
    fail_spawn: set = field(default_factory=set)  # blueprint ids whose spawn raises (as a blocked spot does)
    crash_at_spawn: int | None = None  # the server dies during this spawn_actor call (0 = the first)
    blocked_spawns: set = field(default_factory=set)  # spawn_actor calls (0 = the first) refused: collision at the spot
    no_opendrive_ids: bool = False
    instance_ids: str = "unreal"  # "unreal": actor id + UNREAL_ID_OFFSET; "actor": the actor id


# ----------------------------------------------------------------------------------------------------- server
class FakeServer:
    def __init__(self, *, version="0.9.16", towns: dict | None = None, faults: Faults | None = None,
                 first_actor_id: int = 25, untagged_generated_roads: bool = True, vehicle_clearance_m: float = 0.0,
                 base_types: bool = True, real_parser: bool = True):
        """``untagged_generated_roads``: roads of an OpenDRIVE-generated world carry semantic tag 0 (procedural meshes
        are not tagged, carla#2807/#4113), towns' roads tag 1.  ``vehicle_clearance_m``: vehicles are rendered from
        this height up (the ground under a car shows through, as with a real body), their bounding box still reaching
        the ground.  ``base_types=False``: vehicle blueprints without the base_type attribute (older servers).  ``real_parser``: ``generate_opendrive_world`` reads the file with the
        real offline ``carla.Map`` (CARLA's parser, as a server does); False: with the independent evaluator."""
        self.version = version
        self.real_parser = bool(real_parser)
        self.untagged_generated_roads = untagged_generated_roads
        self.vehicle_clearance_m = float(vehicle_clearance_m)
        self.road_tag = 1
        self.spawn_calls = 0
        self.sensor_ticks = 0
        self.faults = faults or Faults()
        self.towns = dict(towns or {})
        self.settings = carla.WorldSettings()
        self.settings_log: list = []
        self.calls: list = []
        self.actors: dict[int, FakeActor] = {}
        self.spawned: list[int] = []
        self.destroyed: list[int] = []
        self.tms: dict[int, FakeTrafficManager] = {}
        self.next_id = first_actor_id - 1
        self.frame = 5000
        self.elapsed = 0.0
        self.ticks = 0
        self.dead = False
        self.weather = carla.WeatherParameters()
        self.frozen_all = None
        self.lock = threading.RLock()
        self.alive_if = None  # test hook: a callable; when it returns False the server is dead (e.g. its process died)
        self.timers: list[threading.Timer] = []
        self.map = FakeMap("Carla/Maps/Town10HD_Opt", self.towns.get("Town10HD_Opt", _EMPTY_XODR))
        self._last_sensor_data: dict[str, object] = {}
        cat = _catalogue()
        if not base_types:
            for b in cat:
                b._attrs.pop("base_type", None)
        self._lib = FakeBlueprintLibrary(cat)
        self._snapshot = FakeSnapshot(self.frame, self.elapsed, [])
        self.client_version = version
        self._make_lights()

    # -- infrastructure
    def _rpc(self):
        if self.alive_if is not None:
            alive = bool(self.alive_if())
            if not alive:
                self.dead = True
            elif self.dead:  # a fresh server came up: an empty world with default settings
                self.dead = False
                for a in list(self.actors.values()):
                    if not isinstance(a, FakeTrafficLight):
                        self._destroy(a.id)
                self.settings = carla.WorldSettings()
                self.tms.clear()
        if self.dead:
            raise RuntimeError(CRASH_MSG)

    def _new_id(self):
        self.next_id += 1
        return self.next_id

    def _destroy(self, id_):
        a = self.actors.pop(id_, None)
        if a is None:
            return False
        a.alive = False
        a.callback = None
        self.destroyed.append(id_)
        return True

    def live_spawned(self) -> list[int]:
        """Actors spawned through the API that are still alive (traffic lights belong to the map)."""
        return [i for i in self.spawned if i in self.actors]

    def _make_lights(self):
        for a in [a for a in self.actors.values() if isinstance(a, FakeTrafficLight)]:
            self.actors.pop(a.id)
        for loc, sid in self.map.light_poles():
            tl = FakeTrafficLight(self, self._new_id(), carla.Transform(carla.Location(loc.x, loc.y, loc.z)),
                                  "" if self.faults.no_opendrive_ids else sid)
            self.actors[tl.id] = tl

    def _load(self, name, xodr):
        self._rpc()
        for a in list(self.actors.values()):
            if not isinstance(a, FakeTrafficLight):
                self._destroy(a.id)
        # a generated world's map is read by CARLA's own parser (as the server does); named towns by the evaluator
        self.map = ParsedMap(name, xodr) if (name == "OpenDriveMap" and self.real_parser) else FakeMap(name, xodr)
        self.road_tag = 0 if (name == "OpenDriveMap" and self.untagged_generated_roads) else 1
        self.settings = carla.WorldSettings()  # reset_settings=True: back to asynchronous defaults
        self._make_lights()
        self.frame += 1

    # -- stepping
    def tick(self):
        with self.lock:
            self._rpc()
            listening = any(a.callback is not None for a in self.actors.values())
            n = self.sensor_ticks if listening else -1  # fault ticks count from the first tick with sensors
            if self.faults.crash_at_tick == n:
                self.dead = True
                raise RuntimeError(CRASH_MSG)
            if self.faults.interrupt_at_tick == n:
                raise KeyboardInterrupt
            if not self.settings.synchronous_mode:
                raise AssertionError("tick() in asynchronous mode")
            dt = self.settings.fixed_delta_seconds
            self._physics(dt)
            self.frame += 1
            self.elapsed += dt
            self.ticks += 1
            if listening:
                self.sensor_ticks += 1
            frame = self.frame
            self.calls.append(("tick", frame))
            self._snapshot = FakeSnapshot(frame, self.elapsed, [a for a in self.actors.values()])
            self._deliver(n, frame)
            return frame

    def _physics(self, dt):
        for a in self.actors.values():
            if a.parent is not None or a.kind in ("camera", "lidar", "light"):
                continue
            v0 = a.velocity.copy()
            M = _mat(a._tf)
            fwd = M[:3, 0]
            if a.kind == "vehicle":
                if a.autopilot:
                    tm = next(iter(self.tms.values()))
                    want = tm.desired.get(a.id, 30 / 3.6)
                    sp = float(np.linalg.norm(a.velocity))
                    sp = min(want, sp + 3.0 * dt) if sp < want else max(want, sp - 3.0 * dt)
                    a.velocity = fwd * sp
                elif a.control is not None and (a.control.hand_brake or a.control.brake > 0):
                    sp = max(0.0, float(np.linalg.norm(a.velocity)) - 8.0 * dt)
                    a.velocity = fwd * sp if not a.control.hand_brake else np.zeros(3)
            elif a.kind == "walker" and a.walker_control is not None:
                c = a.walker_control
                d = np.array([c.direction.x, c.direction.y, c.direction.z])
                a.velocity = d / max(np.linalg.norm(d), 1e-9) * c.speed
                if c.speed > 0:
                    yaw = math.degrees(math.atan2(d[1], d[0]))
                    a._tf = carla.Transform(a._tf.location, carla.Rotation(yaw=yaw))
            if a.kind == "prop" and not a.simulate_physics:
                a.velocity = np.zeros(3)
            if a.kind in ("vehicle", "walker") and a.simulate_physics:
                # spawned above the ground: it drops and bounces, settling over a few ticks (as CARLA's do)
                bottom = a._tf.location.z + a._box.location.z - a._box.extent.z
                if abs(bottom) > 1e-3:  # at rest within a millimetre
                    loc = a._tf.location
                    a._tf = carla.Transform(carla.Location(loc.x, loc.y, loc.z - bottom - 0.3 * bottom), a._tf.rotation)
            loc = a._tf.location
            a._tf = carla.Transform(carla.Location(loc.x + a.velocity[0] * dt, loc.y + a.velocity[1] * dt, loc.z + a.velocity[2] * dt),
                                    a._tf.rotation)
            a.accel = (a.velocity - v0) / dt

    # -- sensors
    def _boxes(self):
        out = []
        for a in self.actors.values():
            if a.kind in ("vehicle", "walker", "prop"):
                M = _mat(a.world_transform())
                c, e = a._box.location, a._box.extent
                c, e = np.array([c.x, c.y, c.z]), np.array([e.x, e.y, e.z])
                if a.kind == "vehicle" and self.vehicle_clearance_m > 0:
                    c[2] += self.vehicle_clearance_m / 2
                    e[2] -= self.vehicle_clearance_m / 2
                centre = M[:3, :3] @ c + M[:3, 3]
                raw = a.id + UNREAL_ID_OFFSET if self.faults.instance_ids == "unreal" else a.id
                out.append((a, M[:3, :3], centre, e, raw))
                for door in a.doors_open:  # an open front door: a panel standing out of that side (CARLA: left = -y)
                    side = -1.0 if door.endswith("FL") else 1.0
                    dc = np.array([c[0] + 0.25 * e[0], side * (e[1] + 0.45), c[2]])
                    out.append((a, M[:3, :3], M[:3, :3] @ dc + M[:3, 3], np.array([0.45, 0.04, 0.6 * e[2]]), raw))
        return out

    def _cast(self, o, d, boxes, max_t=np.inf):
        """Nearest hit of rays o (3,) + t d (N,3): t (N,), box index (-1 ground, -2 none), normal (N,3)."""
        n = len(d)
        t = np.full(n, np.inf)
        which = np.full(n, -2)
        normal = np.zeros((n, 3))
        down = d[:, 2] < -1e-12
        tg = np.where(down, -o[2] / np.where(down, d[:, 2], -1.0), np.inf)
        hit = down & (tg > 1e-6)
        t[hit], which[hit], normal[hit] = tg[hit], -1, (0, 0, 1)
        for k, (_, R, c, e, _) in enumerate(boxes):
            ol = R.T @ (o - c)
            dl = d @ R
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-e - ol) / dl
                t2 = (e - ol) / dl
            tmin = np.nanmax(np.minimum(t1, t2), axis=1)
            tmax = np.nanmin(np.maximum(t1, t2), axis=1)
            ok = (tmax >= tmin) & (tmin > 1e-6) & (tmin < t)
            if np.any(ok):
                t[ok], which[ok] = tmin[ok], k
                entry = np.minimum(t1, t2)
                axis = np.argmax(np.where(np.isnan(entry), -np.inf, entry)[ok], axis=1)  # the face entered last
                nl = np.zeros((int(ok.sum()), 3))
                nl[np.arange(len(axis)), axis] = -np.sign(dl[ok][np.arange(len(axis)), axis])
                normal[ok] = nl @ R.T
        which[t > max_t] = -2
        t[t > max_t] = np.inf
        return t, which, normal

    def _render_camera(self, sensor, kind, boxes, cache):
        w, h, fov = (int(sensor.attributes["image_size_x"]), int(sensor.attributes["image_size_y"]),
                     float(sensor.attributes["fov"]))
        tf = sensor.world_transform()
        key = (tuple(np.round(_mat(tf).ravel(), 9)), w, h, fov)
        if key not in cache:
            M = _mat(tf)
            f = w / (2 * math.tan(math.radians(fov) / 2))
            u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
            d_cam = np.stack([np.ones(w * h), (u.ravel() - w / 2) / f, -(v.ravel() - h / 2) / f], -1)  # x fwd, y right, z up
            d = d_cam @ M[:3, :3].T
            t, which, _ = self._cast(M[:3, 3], d, boxes)
            cache[key] = (t.reshape(h, w), which.reshape(h, w))  # t is the z-depth: d has unit forward component
        t, which = cache[key]
        tag = np.full((h, w), 11, np.uint8)
        ids = np.zeros((h, w), np.int64)
        tag[which == -1] = self.road_tag
        ids[which == -1] = GROUND_INSTANCE_ID
        for k, (a, _, _, _, raw) in enumerate(boxes):
            m = which == k
            tag[m] = a.tag
            ids[m] = raw
        bgra = np.zeros((h, w, 4), np.uint8)
        bgra[..., 3] = 255
        if kind == "rgb":
            lut = np.zeros((256, 3), np.uint8)
            for k_, c in PALETTE.items():
                lut[k_] = c
            bgra[..., 2], bgra[..., 1], bgra[..., 0] = lut[tag, 0], lut[tag, 1], lut[tag, 2]
        elif kind == "depth":
            norm = np.clip(np.where(np.isfinite(t), t, 1000.0) / 1000.0, 0, 1)
            code = np.round(norm * (256 ** 3 - 1)).astype(np.int64)
            bgra[..., 2], bgra[..., 1], bgra[..., 0] = code & 255, (code >> 8) & 255, (code >> 16) & 255
        elif kind == "semantic_segmentation":
            bgra[..., 2] = tag
        else:  # the id is 16 bits (G + 256 B): larger ids wrap, as CARLA's do
            bgra[..., 2], bgra[..., 1], bgra[..., 0] = tag, ids & 255, (ids >> 8) & 255
        return FakeImage(self.frame, self.elapsed, tf, w, h, fov, bgra.tobytes())

    def _render_lidar(self, sensor, boxes):
        at = sensor.attributes
        ch, rng_m, pps, rot = int(at["channels"]), float(at["range"]), int(at["points_per_second"]), float(at["rotation_frequency"])
        up, lo, hfov = float(at["upper_fov"]), float(at["lower_fov"]), float(at["horizontal_fov"])
        dt = self.settings.fixed_delta_seconds
        n = int(round(pps * dt / ch))
        vert = np.array([up - i * (up - lo) / max(ch - 1, 1) for i in range(ch)])
        step = rot * hfov * dt / max(n, 1)
        horiz = np.fmod(sensor.h_angle + step * np.arange(n), hfov) - hfov / 2
        sensor.h_angle = math.fmod(sensor.h_angle + rot * hfov * dt, hfov)
        V, Hh = np.meshgrid(np.radians(vert), np.radians(horiz), indexing="ij")  # (ch, n): grouped by channel
        d_l = np.stack([np.cos(V) * np.cos(Hh), np.cos(V) * np.sin(Hh), np.sin(V)], -1).reshape(-1, 3)
        tf = sensor.world_transform()
        M = _mat(tf)
        t, which, normal = self._cast(M[:3, 3], d_l @ M[:3, :3].T, boxes, max_t=rng_m)
        hit = which > -2
        chan = np.repeat(np.arange(ch), n)
        pts = d_l[hit] * t[hit, None]
        rec = np.zeros(int(hit.sum()), SEM_DTYPE)
        rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
        dw = (d_l @ M[:3, :3].T)[hit]
        rec["cos"] = -np.einsum("ij,ij->i", dw, normal[hit])  # signed, as CARLA's: (sensor - hit)/|..| . normal
        w = which[hit]
        rec["idx"] = np.array([boxes[k][0].id if k >= 0 else 0 for k in w], np.uint32)
        rec["tag"] = np.array([boxes[k][0].tag if k >= 0 else self.road_tag for k in w], np.uint32)
        counts = np.bincount(chan[hit], minlength=ch).tolist()
        return FakeSemanticLidarMeasurement(self.frame, self.elapsed, tf, ch, sensor.h_angle, rec.tobytes(), counts)

    def _deliver(self, tick, frame):
        sensors = [a for a in self.actors.values() if a.callback is not None]
        if self.faults.reverse_order:
            sensors = sensors[::-1]
        boxes = self._boxes()
        cache = {}
        later = []
        for s in sensors:
            key = s.attributes.get("role_name", "").split("/", 1)[-1]
            if s.type_id.startswith("sensor.camera."):
                data = self._render_camera(s, s.type_id.rsplit(".", 1)[-1], boxes, cache)
            else:
                data = self._render_lidar(s, boxes)
            prev = self._last_sensor_data.get(key)
            self._last_sensor_data[key] = data
            if (key, tick) in self.faults.drop:
                continue
            if (key, tick) in self.faults.wrong_frame:
                data.frame = frame - 1
            cb = s.callback
            if (key, tick) in self.faults.late:
                tm = threading.Timer(self.faults.late[(key, tick)], cb, args=(data,))
                tm.daemon = True
                self.timers.append(tm)
                tm.start()
            else:
                cb(data)
            if (key, tick) in self.faults.stale and prev is not None:
                later.append((cb, prev))
        for cb, prev in later:
            cb(prev)


_EMPTY_XODR = ('<?xml version="1.0"?><OpenDRIVE><header revMajor="1" revMinor="7"/><road id="1" length="100" junction="-1">'
               '<planView><geometry s="0" x="0" y="0" hdg="0" length="100"><line/></geometry></planView>'
               '<lanes><laneSection s="0"><center><lane id="0" type="none"/></center><right><lane id="-1" type="driving">'
               '<width sOffset="0" a="3.5" b="0" c="0" d="0"/></lane></right></laneSection></lanes></road></OpenDRIVE>')


class FakeWorld:
    def __init__(self, server: FakeServer):
        self._s = server
        self.id = 1

    def get_settings(self):
        self._s._rpc()
        return _settings_copy(self._s.settings)

    def apply_settings(self, st):
        self._s._rpc()
        self._s.settings = _settings_copy(st)
        self._s.settings_log.append(_settings_copy(st))
        self._s.calls.append(("apply_settings", bool(st.synchronous_mode), st.fixed_delta_seconds))
        return self._s.frame

    def tick(self, seconds=10.0):
        return self._s.tick()

    def get_snapshot(self):
        self._s._rpc()
        return self._s._snapshot

    def get_map(self):
        self._s._rpc()
        return self._s.map

    def get_blueprint_library(self):
        self._s._rpc()
        return self._s._lib

    def set_weather(self, w):
        self._s._rpc()
        self._s.weather = w
        self._s.calls.append(("set_weather",))

    def get_weather(self):
        return self._s.weather

    def get_actors(self, ids=None):
        self._s._rpc()
        acts = list(self._s.actors.values())
        if ids is not None:
            acts = [a for a in acts if a.id in set(ids)]
        return FakeActorList(acts)

    def get_actor(self, id_):
        self._s._rpc()
        return self._s.actors.get(id_)

    def try_spawn_actor(self, bp, transform, attach_to=None):
        """As LibCarla's World::TrySpawnActor: every exception, a lost server's time-out included, becomes None."""
        try:
            return self.spawn_actor(bp, transform, attach_to=attach_to)
        except Exception:  # noqa: BLE001 - CARLA swallows everything here
            return None

    def spawn_actor(self, bp, transform, attach_to=None):
        s = self._s
        s._rpc()
        n, s.spawn_calls = s.spawn_calls, s.spawn_calls + 1
        if s.faults.crash_at_spawn == n:
            s.dead = True
            raise RuntimeError(CRASH_MSG)
        if bp.id in s.faults.fail_spawn or n in s.faults.blocked_spawns:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        if not isinstance(transform, carla.Transform):
            raise TypeError("spawn_actor needs a carla.Transform")
        if attach_to is not None and attach_to.id not in s.actors:
            raise RuntimeError("parent actor is not alive")
        a = FakeActor(s, s._new_id(), bp, transform, parent=attach_to)
        s.actors[a.id] = a
        s.spawned.append(a.id)
        s.calls.append(("spawn", a.id, bp.id, attach_to.id if attach_to is not None else None))
        return a

    def freeze_all_traffic_lights(self, on):
        self._s._rpc()
        self._s.frozen_all = bool(on)
        self._s.calls.append(("freeze_all_traffic_lights", bool(on)))

    def set_pedestrians_seed(self, seed):
        self._s.calls.append(("set_pedestrians_seed", int(seed)))

    def get_random_location_from_navigation(self):
        return None


class FakeClient:
    def __init__(self, server: FakeServer | None, host="127.0.0.1", port=2000, worker_threads=0):
        self._s, self.host, self.port = server, host, port
        self.timeout = None

    def _srv(self):
        if self._s is None:
            raise RuntimeError(f"time-out of 2000ms while waiting for the simulator, make sure the simulator is ready and connected to {self.host}:{self.port}")
        self._s._rpc()
        return self._s

    def set_timeout(self, s):
        self.timeout = float(s)

    def get_server_version(self):
        return self._srv().version

    def get_client_version(self):
        return self._srv().client_version

    def get_world(self):
        return FakeWorld(self._srv())

    def load_world(self, name, reset_settings=True, map_layers=None):
        s = self._srv()
        if name not in s.towns:
            raise RuntimeError(f"map '{name}' not found")
        s.calls.append(("load_world", name))
        s._load(f"Carla/Maps/{name}", s.towns[name])
        return FakeWorld(s)

    def generate_opendrive_world(self, xodr, parameters=None, reset_settings=True):
        s = self._srv()
        if not isinstance(parameters, carla.OpendriveGenerationParameters):
            raise TypeError("parameters must be carla.OpendriveGenerationParameters")
        ET.fromstring(xodr)  # must parse
        s.calls.append(("generate_opendrive_world", len(xodr)))
        s.generated = (xodr, parameters)  # the last generated world's text and parameters, for tests
        s._load("OpenDriveMap", xodr)
        return FakeWorld(s)

    def get_trafficmanager(self, port=8000):
        s = self._srv()
        if port not in s.tms:
            s.tms[port] = FakeTrafficManager(s, port)
        s.calls.append(("get_trafficmanager", int(port)))
        return s.tms[port]

    def apply_batch_sync(self, commands, do_tick=False):
        s = self._srv()
        out = []
        for c in commands:
            a = s.actors.get(c.actor_id)
            name = type(c).__name__
            s.calls.append(("batch", name, c.actor_id))
            if a is None:
                out.append(FakeResponse(c.actor_id, f"actor {c.actor_id} not found"))
                continue
            if name == "DestroyActor":
                s._destroy(c.actor_id)
            elif name == "ApplyTargetVelocity":
                a.set_target_velocity(c.velocity)
            elif name == "ApplyWalkerControl":
                a.apply_control(c.control)
            elif name == "ApplyVehicleControl":
                a.apply_control(c.control)
            elif name == "ApplyTransform":
                a.set_transform(c.transform)
            else:
                out.append(FakeResponse(c.actor_id, f"command {name} not supported by the double"))
                continue
            out.append(FakeResponse(c.actor_id))
        if do_tick:
            s.tick()
        return out

    def apply_batch(self, commands, do_tick=False):
        self.apply_batch_sync(commands, do_tick)


def make_module(server: FakeServer | None) -> types.SimpleNamespace:
    """The real ``carla`` module's names, with ``Client`` connected to ``server`` (None: nothing answers)."""
    ns = types.SimpleNamespace(**{k: getattr(carla, k) for k in dir(carla) if not k.startswith("__")})
    ns.Client = lambda host="127.0.0.1", port=2000, worker_threads=0: FakeClient(server, host, port, worker_threads)
    return ns
