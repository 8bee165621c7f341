"""Scenario spec: what happens, where, to whom; sampled per episode into a concrete scenario.

Loading goes: YAML (safe) → ``--set`` overrides → parameter sampling and ``$`` substitution → strict typed
validation (this module) → placement resolution against the map (``simgen.sim.world``), which rejects
off-road and overlapping placements before anything runs.  The concrete scenario is stored in every episode.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from simgen.classes import ACTOR_KINDS
from simgen.errors import InputError
from simgen.spec.params import check_parameters, sample_parameters, substitute
from simgen.spec.schema import Ctx, apply_overrides, check_keys, check_range, from_dict, load_yaml, to_dict

SPEED = {"range": (0.0, 70.0)}  # m/s; 250 km/h is absurd for any scenario here
DIST = {"range": (-2000.0, 2000.0)}


@dataclass(frozen=True)
class Weather:
    """CARLA ``WeatherParameters`` names and ranges."""

    cloudiness: float = field(default=10.0, metadata={"range": (0.0, 100.0)})
    precipitation: float = field(default=0.0, metadata={"range": (0.0, 100.0)})
    precipitation_deposits: float = field(default=0.0, metadata={"range": (0.0, 100.0)})
    wind_intensity: float = field(default=10.0, metadata={"range": (0.0, 100.0)})
    sun_azimuth_angle: float = field(default=135.0, metadata={"range": (0.0, 360.0)})
    sun_altitude_angle: float = field(default=45.0, metadata={"range": (-90.0, 90.0)})
    fog_density: float = field(default=0.0, metadata={"range": (0.0, 100.0)})
    fog_distance: float = field(default=0.0, metadata={"range": (0.0, 10000.0)})
    fog_falloff: float = field(default=0.2, metadata={"range": (0.0, 10.0)})
    wetness: float = field(default=0.0, metadata={"range": (0.0, 100.0)})
    scattering_intensity: float = field(default=1.0, metadata={"range": (0.0, 10.0)})
    mie_scattering_scale: float = field(default=0.03, metadata={"range": (0.0, 10.0)})
    rayleigh_scattering_scale: float = field(default=0.0331, metadata={"range": (0.0, 10.0)})


@dataclass(frozen=True)
class Placement:
    """Where an actor starts.  Exactly one mode:

    - ``lane`` (+ ``s_m``): distance along a lane from its start;
    - ``relative_to`` (+ ``ahead_m``, ``lane_offset``): ``ahead_m`` metres ahead (negative: behind) of another
      actor along that actor's lane, ``lane_offset`` lanes to its left (+1) or right (-1);
    - ``behind`` (+ ``as_seen_from``, ``gap_m``): hidden behind actor ``behind`` as seen from ``as_seen_from``
      (default ego), ``gap_m`` metres beyond its far side on the line of sight — the way to stage occlusion;
    - ``crosswalk`` (+ ``along``): on a crosswalk, ``along`` from 0 (its start kerb) to 1 (its end kerb), facing
      across the road;
    - ``sidewalk`` (+ ``s_m``): on a sidewalk's centre line, facing along it;
    - ``x``/``y``: absolute world position;
    - ``road`` + ``lane_id`` (+ ``s_m``, ``offset_m``): OpenDRIVE terms on an imported map: road id, lane id
      (-1, 1, ...), ``s_m`` the road's reference-line s, ``offset_m`` the OpenDRIVE lateral offset from the lane
      centre (positive towards +t, i.e. left of the road's reference direction);
    - ``relative_to`` + ``before_junction_m``: on that actor's route (its lane and ``turns``), that many metres
      before the route enters the next junction (``lane_offset`` lanes to the side);
    - ``conflict_of: [A, B]`` (+ ``before_m``): where the route of actor A first crosses the route of actor B,
      ``before_m`` metres back along A's route, heading along it.

    ``lateral_m`` shifts the actor sideways (left positive) from the lane centre / line of sight / sidewalk
    centre, e.g. onto the shoulder.  ``yaw_deg`` is added to the mode's heading (absolute for x/y).
    """

    lane: str | None = None
    s_m: float = field(default=0.0, metadata={"range": (0.0, 5000.0)})
    relative_to: str | None = None
    ahead_m: float = field(default=0.0, metadata=DIST)
    lane_offset: int = field(default=0, metadata={"range": (-6, 6)})
    behind: str | None = None
    as_seen_from: str = "ego"
    gap_m: float = field(default=1.0, metadata={"range": (0.0, 100.0)})
    crosswalk: str | None = None
    along: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    sidewalk: str | None = None
    lateral_m: float = field(default=0.0, metadata={"range": (-40.0, 40.0)})
    x: float | None = field(default=None, metadata=DIST)
    y: float | None = field(default=None, metadata=DIST)
    yaw_deg: float = field(default=0.0, metadata={"range": (-360.0, 360.0)})
    road: int | None = None
    lane_id: int | None = field(default=None, metadata={"range": (-100, 100)})
    offset_m: float = field(default=0.0, metadata={"range": (-40.0, 40.0)})
    before_junction_m: float | None = field(default=None, metadata={"range": (0.0, 2000.0)})
    conflict_of: tuple[str, str] | None = None
    before_m: float = field(default=0.0, metadata={"range": (-500.0, 2000.0)})

    @property
    def mode(self) -> str:
        modes = [m for m, on in (("lane", self.lane is not None), ("relative_to", self.relative_to is not None),
                                 ("behind", self.behind is not None), ("crosswalk", self.crosswalk is not None),
                                 ("sidewalk", self.sidewalk is not None),
                                 ("xy", self.x is not None or self.y is not None), ("road", self.road is not None),
                                 ("conflict_of", self.conflict_of is not None)) if on]
        return modes[0] if len(modes) == 1 else ",".join(modes)

    def validate(self, ctx: Ctx) -> None:
        if "," in self.mode or not self.mode:
            raise ctx.error("give exactly one of: lane (with s_m), relative_to (with ahead_m or before_junction_m), "
                            "behind, crosswalk, sidewalk, x and y, road (with lane_id, s_m), or conflict_of"
                            + (f"; got {self.mode.replace(',', ' and ')}" if self.mode else ""))
        if self.mode == "xy" and (self.x is None or self.y is None):
            raise ctx.error("x and y must be given together")
        if self.mode == "road" and (self.lane_id is None or self.lane_id == 0):
            raise ctx.key("lane_id").error(f"got {self.lane_id!r}; allowed: a non-zero OpenDRIVE lane id (-1, 1, ...) "
                                           "with road")
        if self.lane_id is not None and self.mode != "road":
            raise ctx.key("lane_id").error("lane_id goes with road (an OpenDRIVE road id)")
        if self.before_junction_m is not None and self.mode != "relative_to":
            raise ctx.key("before_junction_m").error("before_junction_m goes with relative_to (whose route is meant)")
        if self.before_junction_m is not None and self.ahead_m != 0.0:
            raise ctx.key("before_junction_m").error("give ahead_m or before_junction_m, not both")
        if self.conflict_of is not None and (len(self.conflict_of) != 2 or self.conflict_of[0] == self.conflict_of[1]):
            raise ctx.key("conflict_of").error(f"got {list(self.conflict_of)!r}; allowed: two different actor ids")

    @property
    def references(self) -> list[str]:
        return [r for r in (self.relative_to, self.behind) if r is not None] + ([self.as_seen_from] if self.behind else []) \
            + (list(self.conflict_of) if self.conflict_of else [])


@dataclass(frozen=True)
class Behaviour:
    """What an actor does; ``type`` names a registered behaviour (``simgen scenarios behaviours`` lists them).

    Built in:
    - ``lane_follow``: IDM car-following along its lane (or ``turns`` through junctions, e.g. [left]) at
      ``speed_mps``; ``obstacles`` it reacts to (all, vehicles, none); stops at red lights unless
      ``obey_lights: false`` (a red-light runner); ``reverse: true`` drives the lane against its direction
      (wrong-way driver); ``aeb: true`` adds automatic emergency braking at ``aeb_decel_mps2`` when the
      time-to-collision to what is ahead drops below ``aeb_ttc_s``.
    - ``scripted``: follows its lane/route with the speed given by ``speed_profile`` [[t_s, v_mps], ...]
      (linear between points, time from the start of the behaviour), ignoring other actors.
    - ``brake``: decelerate at ``decel_mps2`` to a stop.  ``stop``: the same, named for scripted stops.
    - ``stop_at_line``: IDM that treats its lane's stop line as a red light whatever the signal.
    - ``lane_change``: move ``direction`` (left/right) one lane over ``duration_s``, then lane_follow.
    - ``parked`` / ``stand``: stay still.  ``open_door``: parked, with a door (``direction`` side) opening over
      ``duration_s``.
    - ``walk``: move straight at ``speed_mps`` towards ``heading_deg`` (relative to the actor's heading; 90 = to
      its left) for ``distance_m`` (default: on and on); ``hesitate_at_m``/``hesitate_s`` make it stop there
      for a while, then go on.  Used for pedestrians, cyclists crossing, and a ball rolling into the road.
    - anything registered with :func:`simgen.sim.behaviours.register_behaviour`; its options go in ``params``.
    """

    type: str = "lane_follow"
    speed_mps: float | None = field(default=None, metadata=SPEED)
    decel_mps2: float = field(default=6.0, metadata={"gt": 0.0, "range": (0.0, 12.0)})
    direction: Literal["left", "right"] = "left"
    duration_s: float = field(default=3.0, metadata={"gt": 0.0, "range": (0.0, 30.0)})
    heading_deg: float = field(default=0.0, metadata={"range": (-360.0, 360.0)})
    distance_m: float | None = field(default=None, metadata={"range": (0.0, 1000.0)})
    obstacles: Literal["all", "vehicles", "none"] = "all"
    obey_lights: bool = True
    turns: tuple[Literal["straight", "left", "right"], ...] = ()
    reverse: bool = False
    aeb: bool = False
    aeb_ttc_s: float = field(default=1.2, metadata={"gt": 0.0, "range": (0.0, 10.0)})
    aeb_decel_mps2: float = field(default=9.0, metadata={"gt": 0.0, "range": (0.0, 12.0)})
    speed_profile: tuple[tuple[float, float], ...] = ()
    hesitate_at_m: float | None = field(default=None, metadata={"range": (0.0, 1000.0)})
    hesitate_s: float = field(default=0.0, metadata={"range": (0.0, 60.0)})
    params: dict = field(default_factory=dict)
    # synchronize (OpenSCENARIO SynchronizeAction): reach own point `at` when `reference` reaches `reference_at`
    reference: str = "ego"  # masterEntityRef
    at: tuple[float, float] | None = None  # own target point (world x, y); None: the crossing of the two paths
    reference_at: tuple[float, float] | None = None  # the reference's point; None: the same point as `at`
    final_speed_mps: float | None = field(default=None, metadata=SPEED)  # speed at the point (default: start speed)
    arrive: Literal["centre", "contact"] = "centre"
    offset_m: float = field(default=0.0, metadata={"range": (-100.0, 100.0)})  # shifts own point along own path

    def validate(self, ctx: Ctx) -> None:
        from simgen.sim.behaviours import BEHAVIOURS, is_behaviour

        if not is_behaviour(self.type):
            raise ctx.key("type").error(f"got {self.type!r}; allowed: {', '.join(sorted(BEHAVIOURS))}")
        if self.type == "scripted" and not self.speed_profile:
            raise ctx.key("speed_profile").error("scripted needs speed_profile: [[t_s, v_mps], ...]")
        ts = [t for t, _ in self.speed_profile]
        if any(b <= a for a, b in zip(ts, ts[1:])) or any(v < 0 or v > 70 for _, v in self.speed_profile):
            raise ctx.key("speed_profile").error("times must increase and speeds be 0 to 70 m/s")
        if self.type != "synchronize":
            for k in ("at", "reference_at", "final_speed_mps"):
                if getattr(self, k) is not None:
                    raise ctx.key(k).error(f"{k} belongs to type: synchronize (got type: {self.type})")
        if self.type == "reverse" and self.reverse:
            raise ctx.key("reverse").error("type: reverse already backs up; reverse: true is for lane_follow (wrong way)")


@dataclass(frozen=True)
class Trigger:
    """When an event fires (all given conditions must hold; at least one must be given).

    ``time_s``: simulation time reached.  ``distance_m``: the distance between the actor (or ``actor``) and
    ``to`` (default ego) drops below this.  ``ttc_s``: time-to-collision from ego to the actor drops below this.
    ``after``: the named event has fired.  ``position`` [x, y]: the actor (or ``actor``) is within ``radius_m``
    of that world point.  ``custom``: a trigger registered with
    :func:`simgen.sim.behaviours.register_trigger`, with its options in ``params``.  ``delay_s``: wait this
    long after the conditions hold.
    """

    time_s: float | None = field(default=None, metadata={"range": (0.0, 3600.0)})
    distance_m: float | None = field(default=None, metadata={"range": (0.0, 1000.0)})
    actor: str | None = None
    to: str = "ego"
    ttc_s: float | None = field(default=None, metadata={"range": (0.0, 60.0)})
    after: str | None = None
    position: tuple[float, float] | None = field(default=None, metadata=DIST)
    radius_m: float = field(default=2.0, metadata={"gt": 0.0, "range": (0.0, 100.0)})
    custom: str | None = None
    params: dict = field(default_factory=dict)
    delay_s: float = field(default=0.0, metadata={"range": (0.0, 3600.0)})

    def validate(self, ctx: Ctx) -> None:
        if all(v is None for v in (self.time_s, self.distance_m, self.ttc_s, self.after, self.position, self.custom)):
            raise ctx.error("a trigger needs at least one of time_s, distance_m, ttc_s, after, position, custom")
        if self.custom is not None:
            from simgen.sim.behaviours import TRIGGERS, is_trigger

            if not is_trigger(self.custom):
                raise ctx.key("custom").error(f"got {self.custom!r}; allowed: {', '.join(sorted(TRIGGERS)) or 'none registered'}")


@dataclass(frozen=True)
class EndCondition:
    """One way an episode ends (``end:`` lists them; the first that holds ends the episode, like an OpenSCENARIO
    StopTrigger whose condition groups are OR-ed).  Give exactly one of:

    - ``ego_standstill_s``: the ego's speed has stayed below ``speed_below_mps`` for this long (0: at once);
    - ``collision``: ``ego`` (a collision involving the ego) or ``any``; ``delay_s`` after the first such tick;
    - ``event``: the named event has fired; ``delay_s`` after it fired;
    - ``time_s``: simulation time reached.

    The episode's last frame is the tick at which the condition holds; ``duration_s`` / ``--frames`` is a cap.
    """

    ego_standstill_s: float | None = field(default=None, metadata={"range": (0.0, 3600.0)})
    speed_below_mps: float = field(default=0.05, metadata={"gt": 0.0, "range": (0.0, 5.0)})
    collision: Literal["ego", "any"] | None = None
    event: str | None = None
    time_s: float | None = field(default=None, metadata={"range": (0.0, 3600.0)})
    delay_s: float = field(default=0.0, metadata={"range": (0.0, 3600.0)})

    @property
    def kind(self) -> str:
        given = [k for k in ("ego_standstill_s", "collision", "event", "time_s") if getattr(self, k) is not None]
        return ",".join(given)

    def validate(self, ctx: Ctx) -> None:
        if "," in self.kind or not self.kind:
            raise ctx.error("give exactly one of ego_standstill_s, collision, event, time_s"
                            + (f"; got {self.kind.replace(',', ' and ')}" if self.kind else ""))
        if self.delay_s and self.kind not in ("collision", "event"):
            raise ctx.key("delay_s").error(f"delay_s goes with collision or event, not {self.kind}")

    def describe(self) -> str:
        if self.kind == "ego_standstill_s":
            return f"ego standstill for {self.ego_standstill_s:g} s"
        if self.kind == "collision":
            return f"collision ({self.collision})" + (f" + {self.delay_s:g} s" if self.delay_s else "")
        if self.kind == "event":
            return f"event {self.event}" + (f" + {self.delay_s:g} s" if self.delay_s else "")
        return f"time {self.time_s:g} s"


@dataclass(frozen=True)
class Event:
    when: Trigger
    do: Behaviour
    name: str | None = None


@dataclass(frozen=True)
class Dims:
    length_m: float = field(metadata={"gt": 0.0, "range": (0.0, 30.0)})
    width_m: float = field(metadata={"gt": 0.0, "range": (0.0, 5.0)})
    height_m: float = field(metadata={"gt": 0.0, "range": (0.0, 6.0)})


@dataclass(frozen=True)
class ActorSpec:
    id: str
    kind: str = field(metadata={"choices": tuple(ACTOR_KINDS)})
    place: Placement
    speed_mps: float = field(default=0.0, metadata=SPEED)
    behaviour: Behaviour = Behaviour()
    events: tuple[Event, ...] = ()
    dims: Dims | None = None
    colour: tuple[float, float, float] | None = None

    def validate(self, ctx: Ctx) -> None:
        import re

        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.id):
            raise ctx.key("id").error(f"got {self.id!r}; allowed: letters, digits, _ starting with a letter")
        if self.colour is not None and not all(0.0 <= c <= 1.0 for c in self.colour):
            raise ctx.key("colour").error(f"got {list(self.colour)}; allowed: three numbers 0 to 1 (RGB)")
        kind = ACTOR_KINDS[self.kind]
        if self.speed_mps > kind.max_speed_mps:
            raise ctx.key("speed_mps").error(f"got {self.speed_mps}; allowed: 0 to {kind.max_speed_mps} for a {self.kind}")


@dataclass(frozen=True)
class EgoSpec:
    place: Placement
    kind: str = field(default="car", metadata={"choices": ("car", "van", "truck", "bus")})
    speed_mps: float = field(default=10.0, metadata=SPEED)
    behaviour: Behaviour = Behaviour()
    dims: Dims | None = None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Traffic:
    """Background traffic placed at random (from the episode's seed) on the map's driving lanes/sidewalks."""

    vehicles: int = field(default=0, metadata={"range": (0, 200)})
    pedestrians: int = field(default=0, metadata={"range": (0, 200)})
    speed_mps: tuple[float, float] = (8.0, 14.0)
    radius_m: float = field(default=120.0, metadata={"gt": 0.0, "range": (0.0, 1000.0)})
    kinds: tuple[str, ...] = ("car", "car", "car", "van", "truck", "bus", "motorcycle")

    def validate(self, ctx: Ctx) -> None:
        lo, hi = self.speed_mps
        if not 0 <= lo <= hi <= 40:
            raise ctx.key("speed_mps").error(f"got {list(self.speed_mps)}; allowed: [lo, hi] with 0 <= lo <= hi <= 40")
        for i, k in enumerate(self.kinds):
            if k not in ACTOR_KINDS or not ACTOR_KINDS[k].vehicle:
                raise ctx.key("kinds").index(i).error(f"got {k!r}; allowed: {', '.join(n for n, a in ACTOR_KINDS.items() if a.vehicle)}")


@dataclass(frozen=True)
class Scenery:
    density: float = field(default=1.0, metadata={"range": (0.0, 5.0)})


@dataclass(frozen=True)
class Road:
    """Road surface look: ``wear`` 0 (new) to 1 (faded markings, patchy asphalt); colours linear RGB 0-1."""

    wear: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    asphalt_brightness: float = field(default=1.0, metadata={"range": (0.3, 3.0)})
    marking_colour: tuple[float, float, float] = field(default=(0.85, 0.85, 0.82), metadata={"range": (0.0, 1.0)})


@dataclass(frozen=True)
class Appearance:
    """Actor appearance: paint colours are drawn per actor from a palette and jittered by ``colour_jitter``;
    ``gloss`` scales paint and glass specularity (material)."""

    colour_jitter: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    gloss: float = field(default=1.0, metadata={"range": (0.0, 3.0)})


@dataclass(frozen=True)
class SensorJitter:
    """Per-episode random perturbation of every sensor's mounting (uniform within ± these)."""

    position_m: float = field(default=0.0, metadata={"range": (0.0, 0.5)})
    angle_deg: float = field(default=0.0, metadata={"range": (0.0, 10.0)})


@dataclass(frozen=True)
class CameraEffectsSpec:
    """Photometric camera effects (labels unaffected): see simgen/sensors/effects.py."""

    noise: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    vignetting: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    chromatic_aberration_px: float = field(default=0.0, metadata={"range": (0.0, 10.0)})
    motion_blur: bool = False
    exposure_ev: float = field(default=0.0, metadata={"range": (-5.0, 5.0)})
    jpeg_quality: int | None = field(default=None, metadata={"range": (1, 100)})
    rain_streaks: bool = True


@dataclass(frozen=True)
class Ramp:
    """A value that changes during the episode: linear from its episode value at ``start_s`` to ``to`` at
    ``end_s`` (e.g. fog from 0 to 80 over 10 s, or dusk to night with time_of_day_h)."""

    key: str
    to: float
    start_s: float = field(default=0.0, metadata={"range": (0.0, 3600.0)})
    end_s: float = field(default=10.0, metadata={"range": (0.0, 3600.0)})

    def validate(self, ctx: Ctx) -> None:
        if self.key not in RAMPABLE:
            raise ctx.key("key").error(f"got {self.key!r}; allowed: {', '.join(RAMPABLE)}")
        if self.end_s <= self.start_s:
            raise ctx.key("end_s").error(f"got {self.end_s}; allowed: greater than start_s ({self.start_s})")
        check_range(self.to, ctx.key("to"), _field_metadata(ScenarioSpec, self.key))  # the target key's own range


def _field_metadata(cls, dotted: str) -> dict:
    """The ``field(metadata=...)`` of a dotted key such as ``weather.fog_density`` (``{}`` if it has none)."""
    from simgen.spec.schema import _hints

    meta: dict = {}
    for part in dotted.split("."):
        f = {f.name: f for f in fields(cls)}[part]
        meta, cls = dict(f.metadata), _hints(cls)[part]
    return meta


RAMPABLE = tuple([f"weather.{f.name}" for f in fields(Weather)] + ["time_of_day_h", "road.wear", "road.asphalt_brightness"]
                 + [f"camera_effects.{k}" for k in ("noise", "vignetting", "chromatic_aberration_px", "exposure_ev")])


@dataclass(frozen=True)
class ScenarioSpec:
    name: str = field(metadata={"nonempty": True, "max_len": 200})
    map: str
    ego: EgoSpec
    description: str = ""
    pre_crash_type: str = ""
    tick_hz: float = field(default=20.0, metadata={"range": (1.0, 200.0)})
    duration_s: float = field(default=8.0, metadata={"gt": 0.0, "range": (0.0, 3600.0)})
    parameters: dict[str, Any] = field(default_factory=dict)
    weather: Weather = Weather()
    scenery: Scenery = Scenery()
    traffic: Traffic = Traffic()
    actors: tuple[ActorSpec, ...] = ()
    traffic_light_cycle_s: tuple[float, float, float] = (12.0, 3.0, 2.0)  # green, yellow, all-red
    traffic_light_offset_s: float = field(default=0.0, metadata={"range": (0.0, 3600.0)})  # phase at t=0
    time_of_day_h: float | None = field(default=None, metadata={"range": (0.0, 24.0)})  # sets the sun (overrides weather)
    precipitation_type: Literal["rain", "snow"] = "rain"  # what weather.precipitation is (CARLA has rain only)
    road: Road = Road()
    appearance: Appearance = Appearance()
    sensor_jitter: SensorJitter = SensorJitter()
    camera_effects: CameraEffectsSpec = CameraEffectsSpec()
    randomize: dict[str, Any] = field(default_factory=dict)  # dotted key -> distribution (sampled per episode)
    ramps: tuple[Ramp, ...] = ()
    plugins: tuple[str, ...] = ()  # Python modules (or .py files next to the scenario) registering behaviours
    end: tuple[EndCondition, ...] = ()  # end conditions (any ends the episode); duration_s is then a cap

    def validate(self, ctx: Ctx) -> None:
        from simgen.world.roads import MAPS, is_map_file

        for i, (what, lo, v) in enumerate(zip(("green", "yellow", "all-red"), (0.0, 0.0, 0.0), self.traffic_light_cycle_s)):
            if not (v > lo if i == 0 else v >= lo) or v > 3600:
                raise ctx.key("traffic_light_cycle_s").index(i).error(
                    f"got {v} ({what}); allowed: " + ("greater than 0" if i == 0 else "0") + " to 3600 s")

        if is_map_file(self.map):
            from simgen.world.xodr import load_xodr

            if not Path(self.map).is_file():
                raise ctx.key("map").error(f"map file {self.map!r} not found (a path is relative to the scenario file)")
            load_xodr(self.map)  # a bad map file is an error naming it, before anything runs
        elif self.map not in MAPS and not is_carla_town(self.map):
            raise ctx.key("map").error(f"got {self.map!r}; allowed: {', '.join(MAPS)}, a path to an OpenDRIVE .xodr "
                                       "file, or a CARLA town (Town01 ... Town15: carla backend, or builtin with "
                                       "$SIMGEN_CARLA_ROOT set)")
        ids = {"ego"}
        for i, a in enumerate(self.actors):
            if a.id in ids:
                raise ctx.key("actors").index(i).key("id").error(f"duplicate actor id {a.id!r}" + (" (ego is reserved)" if a.id == "ego" else ""))
            ids.add(a.id)
        events = {}
        all_events = [("ego", j, e) for j, e in enumerate(self.ego.events)] + [
            (a.id, j, e) for a in self.actors for j, e in enumerate(a.events)
        ]
        for owner, j, e in all_events:
            if e.name:
                if e.name in events:
                    raise ctx.error(f"duplicate event name {e.name!r}")
                events[e.name] = e
        for i, a in enumerate(self.actors):
            for key in ("relative_to", "behind", "as_seen_from"):
                ref = getattr(a.place, key)
                if key == "as_seen_from" and a.place.behind is None:
                    continue
                if ref is not None and ref not in ids:
                    raise ctx.key("actors").index(i).key(f"place.{key}").error(f"unknown actor {ref!r}; known: {', '.join(sorted(ids))}")
            for ref in a.place.conflict_of or ():
                if ref not in ids:
                    raise ctx.key("actors").index(i).key("place.conflict_of").error(f"unknown actor {ref!r}; known: {', '.join(sorted(ids))}")
        for owner, j, e in all_events:
            base = ctx.key("ego") if owner == "ego" else ctx.key("actors").index([a.id for a in self.actors].index(owner))
            ectx = base.key("events").index(j).key("when")
            for k in ("actor", "to"):
                v = getattr(e.when, k)
                if v is not None and v not in ids:
                    raise ectx.key(k).error(f"unknown actor {v!r}; known: {', '.join(sorted(ids))}")
            if owner == "ego" and e.when.ttc_s is not None and e.when.actor is None:
                raise ectx.key("ttc_s").error("a ttc_s trigger on an ego event needs actor: (TTC is measured from the ego to it)")
            if e.when.after is not None and e.when.after not in events:
                raise ectx.key("after").error(f"unknown event {e.when.after!r}; known: {', '.join(events) or 'none'}")
        # cycles between events ("after" chains)
        for name in events:
            seen, cur = [], name
            while cur is not None:
                if cur in seen:
                    raise ctx.error(f"events form a cycle: {' -> '.join(seen + [cur])}")
                seen.append(cur)
                cur = events[cur].when.after if cur in events else None
        for i, c in enumerate(self.end):  # end conditions name known events
            if c.event is not None and c.event not in events:
                raise ctx.key("end").index(i).key("event").error(f"unknown event {c.event!r}; known: {', '.join(events) or 'none'}")
        behaviours = [("ego", ctx.key("ego").key("behaviour"), self.ego.behaviour)] + [
            (a.id, ctx.key("actors").index(i).key("behaviour"), a.behaviour) for i, a in enumerate(self.actors)]
        for owner, j, e in all_events:
            base = ctx.key("ego") if owner == "ego" else ctx.key("actors").index([a.id for a in self.actors].index(owner))
            behaviours.append((owner, base.key("events").index(j).key("do"), e.do))
        for owner, bctx, b in behaviours:  # synchronize names a known reference other than itself
            if b.type == "synchronize":
                if b.reference not in ids:
                    raise bctx.key("reference").error(f"unknown actor {b.reference!r}; known: {', '.join(sorted(ids))}")
                if b.reference == owner:
                    raise bctx.key("reference").error("an actor cannot synchronise with itself")

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.duration_s * self.tick_hz)))


def is_carla_town(name: str) -> bool:
    """CARLA's own maps (Town01, Town10HD_Opt, ...), which only the carla backend can load."""
    import re

    return re.fullmatch(r"Town\d\d[A-Za-z_]*", name) is not None


@dataclass(frozen=True)
class ScenarioSource:
    """A scenario file as written (before sampling), with overrides applied."""

    path: str
    raw: dict

    @property
    def name(self) -> str:
        return str(self.raw.get("name", Path(self.path).stem))


PLUGIN_ENV = "SIMGEN_ALLOW_PLUGINS"
PLUGIN_GROUP = "simgen.plugins"  # entry-point group of installed plugins
OPT_IN = f"pass --allow-plugins (or set {PLUGIN_ENV}=1) if you trust it"


def plugins_allowed(flag: bool | None = None) -> bool:
    """The user's opt-in to plugin code: ``flag`` (``--allow-plugins``) or ``SIMGEN_ALLOW_PLUGINS=1``."""
    import os

    return bool(flag) or os.environ.get(PLUGIN_ENV, "").strip().lower() in ("1", "true", "yes")


def _plugin_list(raw: dict, path: str) -> list[str]:
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list):
        raise InputError(f"got {plugins!r}; allowed: a list of .py files in the scenario's folder or installed "
                         f"plugin names", file=path, key="plugins")
    for i, name in enumerate(plugins):
        if not isinstance(name, str) or not name.strip() or len(name) > 1000:
            raise InputError(f"got {name!r}; allowed: a .py file in the scenario's folder or an installed plugin name",
                             file=path, key=f"plugins[{i}]")
    return plugins


def _plugin_file(name: str, base: Path, path: str, key: str) -> Path:
    """A plugin file, resolved (symlinks too) and confined to the scenario's folder ``base``."""
    rel = Path(name)
    where = f"allowed: a .py file in the scenario's folder ({base}) or below it"
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"got {name!r}: outside the scenario's folder; {where}", file=path, key=key)
    root = base.resolve()
    file = (root / rel).resolve()
    if not file.is_relative_to(root):
        raise InputError(f"got {name!r}: resolves to {file}, outside the scenario's folder; {where}", file=path, key=key)
    if not file.is_file():
        raise InputError(f"plugin file {str(file)!r} not found", file=path, key=key)
    return file


def _plugin_entry_point(name: str, path: str, key: str):
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == name]
    if not found:
        raise InputError(f"got {name!r}: not an installed plugin (entry point group {PLUGIN_GROUP}: "
                         f"{', '.join(sorted(ep.name for ep in entry_points(group=PLUGIN_GROUP))) or 'none installed'}); "
                         "allowed: a .py file in the scenario's folder or an installed plugin name", file=path, key=key)
    return found[0]


def load_plugins(raw: dict, path: str, *, allow: bool | None = None, base: str | Path | None = None) -> None:
    """Run the scenario's ``plugins``: Python code that registers behaviours and triggers.

    A plugin is code, so nothing runs unless the user opted in (``allow``, i.e. ``--allow-plugins``, or
    ``SIMGEN_ALLOW_PLUGINS=1``).  An entry is a ``.py`` file inside the scenario's folder (``base``, default the
    folder of ``path``; no ``..``, no absolute path, no symlink leading out of it) or the name of an installed
    plugin (an entry point in group ``simgen.plugins``).  Plain module names are not imported.  Every entry is
    checked before any of them runs.
    """
    import importlib.util

    plugins = _plugin_list(raw, path)
    if not plugins:
        return
    if not plugins_allowed(allow):
        raise InputError(f"this file asks to run Python code ({plugins[0]!r}); plugins are code: {OPT_IN}",
                         file=path, key="plugins[0]")
    base = Path(path).parent if base is None else Path(base)
    todo = []
    for i, name in enumerate(plugins):
        key = f"plugins[{i}]"
        if name.endswith(".py") or "/" in name or "\\" in name:
            todo.append((key, name, _plugin_file(name, base, path, key)))
        else:
            todo.append((key, name, _plugin_entry_point(name, path, key)))
    for key, name, target in todo:
        try:
            if isinstance(target, Path):
                import hashlib

                tag = hashlib.sha1(str(target).encode()).hexdigest()[:8]
                spec = importlib.util.spec_from_file_location(f"simgen_plugin_{target.stem}_{tag}", target)
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
            else:
                target.load()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken plugin is the user's input
            raise InputError(f"cannot import plugin {name!r}: {type(e).__name__}: {e}", file=path, key=key) from None


def load_stored_plugins(scenario: dict, *, where: str, scenario_file: str | None, allow: bool | None = None) -> None:
    """Load the plugins a stored (episode) scenario names, for replay: relative to the folder of the scenario file
    the episode was made from (``scenario_file``; for episodes that do not record it, a library scenario of the
    same name), with the same opt-in as a run."""
    plugins = _plugin_list(scenario, where)
    if not plugins:
        return
    base = None
    if scenario_file and Path(scenario_file).is_file():
        base = Path(scenario_file).parent
    else:
        from simgen.paths import SCENARIOS

        lib = SCENARIOS / f"{scenario.get('name', '')}.yaml"
        if str(scenario.get("name", "")).isidentifier() and lib.is_file():
            base = lib.parent
    if base is None:
        if not plugins_allowed(allow):  # the opt-in error comes first
            load_plugins(scenario, where, allow=allow)
        raise InputError(f"the scenario file this episode was made from ({scenario_file or 'not recorded'}) is "
                         "not there, so its plugins cannot be found", file=where, key="plugins[0]")
    load_plugins(scenario, where, allow=allow, base=base)


def _check_set_parameters(raw: dict, overrides: list[str], path: str) -> None:
    """``--set parameters.NAME=...`` must name a declared parameter (a misspelt one would be silently unused)."""
    params = raw.get("parameters") or {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        parts = [p for p in key.split(".") if p]
        if len(parts) >= 2 and parts[0] == "parameters" and isinstance(params, dict) and parts[1] not in params:
            raise InputError(f"--set {key}: unknown parameter {parts[1]!r}; known: {', '.join(map(str, params)) or 'none'}",
                             file=path, key=f"parameters.{parts[1]}")


def load_scenario_source(path: str | Path, overrides: list[str] = (), *, allow_plugins: bool | None = None) -> ScenarioSource:
    """Read a scenario file: YAML, ``--set`` overrides, parameter declarations and keys are checked, and only then
    are its plugins run (with the user's opt-in, see :func:`load_plugins`); the behaviour and trigger names are
    checked when the scenario is concretised."""
    if str(path).lower().endswith(".xosc"):  # OpenSCENARIO 1.x: converted to the same raw mapping
        from simgen.spec.xosc import load_xosc

        raw = load_xosc(path, list(overrides))
    else:
        raw = load_yaml(path, what="scenario file")
    _check_set_parameters(raw, list(overrides), str(path))
    raw = apply_overrides(raw, list(overrides), file=str(path))
    check_parameters(raw.get("parameters", {}) or {}, file=str(path))
    check_keys(ScenarioSpec, raw, Ctx(str(path)))
    src = ScenarioSource(str(path), raw)
    if _plugin_list(raw, str(path)):
        if not plugins_allowed(allow_plugins):
            load_plugins(raw, str(path), allow=allow_plugins)  # raises the opt-in error
        from simgen.sim.behaviours import plugin_names_deferred

        with plugin_names_deferred():  # the whole file is checked before any plugin code runs
            concretise(src, rng=np.random.default_rng(0))
        load_plugins(raw, str(path), allow=allow_plugins)
    return src


def concretise(src: ScenarioSource, *, rng: np.random.Generator, grid_index: int = 0) -> tuple[ScenarioSpec, dict]:
    """Sample parameters, then the ``randomize:`` section, and validate the result.

    ``randomize`` maps dotted scenario keys (``weather.fog_density``, ``time_of_day_h``, ``scenery.density``,
    ``road.wear``, ``actors.lead.speed_mps`` ...) to distributions in the parameter syntax; each episode draws a
    value and writes it at that key, so it is validated like the file.  Returns the concrete spec and all
    sampled values (randomised ones as ``randomize.<key>``).
    """
    raw = dict(src.raw)
    params = raw.get("parameters", {}) or {}
    values = sample_parameters(params, rng=rng, file=src.path, grid_index=grid_index)  # grid: point of this episode
    body = substitute({k: v for k, v in raw.items() if k not in ("parameters", "randomize")}, values, file=src.path)
    rand = raw.get("randomize") or {}
    if not isinstance(rand, dict):
        raise InputError(f"got {rand!r}; allowed: a mapping of dotted keys to distributions", file=src.path, key="randomize")
    if rand:
        names = {k: "r" + str(i) for i, k in enumerate(rand)}
        for key in rand:
            if key.split(".")[0] in ("randomize", "parameters", "ramps", "name", "map"):
                raise InputError(f"cannot randomize {key!r}", file=src.path, key=f"randomize.{key}")
        drawn = sample_parameters({names[k]: substitute(v, values, file=src.path) for k, v in rand.items()}, rng=rng,
                                  file=src.path)
        body = apply_overrides(body, [f"{k}={_yaml_scalar(drawn[names[k]])}" for k in rand], file=src.path)
        values.update({f"randomize.{k}": drawn[names[k]] for k in rand})
    body["parameters"] = {k: v for k, v in values.items() if not k.startswith("randomize.")}
    body = _resolve_map_path(body, src.path)
    spec = from_dict(ScenarioSpec, body, Ctx(src.path))
    return spec, values


def _resolve_map_path(body: dict, path: str) -> dict:
    """A ``map:`` that is an .xodr path is relative to the scenario file: make it absolute (episodes store it so)."""
    m = body.get("map")
    if isinstance(m, str) and m.lower().endswith(".xodr") and not Path(m).is_absolute():
        base = Path(path).parent if path and not str(path).startswith("<") else Path.cwd()
        body = dict(body, map=str((base / m).resolve()))
    return body


def _yaml_scalar(v) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def scenario_to_dict(spec: ScenarioSpec) -> dict:
    return to_dict(spec)


def scenario_from_dict(data: dict, *, file: str = "<stored scenario>") -> ScenarioSpec:
    """Rebuild a concrete spec (e.g. from an episode file); parameters are already plain values."""
    return from_dict(ScenarioSpec, data, Ctx(file))


def scenario_error(src_path: str, key: str, msg: str) -> InputError:
    return InputError(msg, file=src_path, key=key)
