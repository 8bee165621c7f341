"""Run-time side of the OpenSCENARIO import: the trigger ``xosc_condition`` (an OR of AND-ed condition groups
with edges and delays) and the behaviour ``xosc_speed`` (SpeedAction shapes and targets).  Registered with
simgen's behaviour/trigger registry when :mod:`simgen.sim.behaviours` is imported."""
from __future__ import annotations

import math

import numpy as np

from simgen.sim.behaviours import Control, register_behaviour, register_trigger


def _state(world) -> dict:
    st = getattr(world, "_xosc", None)
    if st is None:
        st = world._xosc = {"prev": {}, "since": {}, "latched": {}, "done": {}, "start": {}, "odo": {}, "still": {}}
    return st


def _cmp(a: float, rule: str, b: float) -> bool:
    return {"greaterThan": a > b, "lessThan": a < b, "equalTo": abs(a - b) < 1e-9, "greaterOrEqual": a >= b,
            "lessOrEqual": a <= b, "notEqualTo": abs(a - b) >= 1e-9}[rule]


def _actor(world, name):
    return next(a for a in world.actors if a.name == name)


def _long_gap(world, a, b, freespace: bool) -> float:
    """Signed distance from a to b along a's heading (positive: b ahead)."""
    d = (b.x - a.x) * math.cos(a.yaw) + (b.y - a.y) * math.sin(a.yaw)
    if freespace:
        d -= math.copysign((a.dims[0] + b.dims[0]) / 2, d)
    return d


def _event_ended(world, ev, ends) -> bool:
    st = _state(world)
    if ev in st["done"]:
        return True
    if ev not in world.applied:
        return False
    after = ends.get(ev, {}).get("after_s")
    if after is not None:
        t = next(t for t, _, k in world.event_log if k == ev)
        return world.time_s >= t + after - 1e-9
    return False


def _holds_entity(world, c, e, ends) -> bool:
    st = _state(world)
    t = c["type"]
    if t == "headway":
        ref = _actor(world, c["to"])
        gap = _long_gap(world, e, ref, c.get("freespace", False))
        # headway from e to the entity ahead of it; a reference behind has no headway (never greater than)
        if gap <= 0 or e.speed <= 1e-6:
            return c["rule"] in ("lessThan", "lessOrEqual") and False
        return _cmp(gap / e.speed, c["rule"], c["value"])
    if t == "ttc":
        ref = _actor(world, c["to"])
        gap = _long_gap(world, e, ref, True)
        closing = e.speed - ref.speed * math.cos(ref.yaw - e.yaw)
        if gap <= 0 or closing <= 1e-6:
            return False
        return _cmp(gap / closing, c["rule"], c["value"])
    if t == "reldist":
        ref = _actor(world, c["to"])
        d = abs(_long_gap(world, e, ref, c.get("freespace", False))) if c.get("longitudinal") else math.hypot(ref.x - e.x, ref.y - e.y)
        return _cmp(d, c["rule"], c["value"])
    if t == "speed":
        return _cmp(e.speed, c["rule"], c["value"])
    if t == "relspeed":
        return _cmp(e.speed - _actor(world, c["to"]).speed, c["rule"], c["value"])
    if t == "distance":
        return _cmp(math.hypot(c["x"] - e.x, c["y"] - e.y), c["rule"], c["value"])
    if t == "reach":
        return math.hypot(c["x"] - e.x, c["y"] - e.y) <= c["value"]
    if t == "traveled":
        return st["odo"].get(e.name, 0.0) >= c["value"] - 1e-9
    if t == "standstill":
        since = st["still"].get(e.name)
        return since is not None and world.time_s - since >= c["duration"] - 1e-9
    if t == "collision":
        ids = {e.id, _actor(world, c["to"]).id}
        return any(set(p) == ids for p in world.collisions_total)
    if t == "endofroad":
        return e.path is not None and e.s >= e.path.length - 1e-3
    raise KeyError(t)


def _raw(world, c, ends, key="") -> bool:
    t = c["type"]
    if t == "time":
        return _cmp(world.time_s, c["rule"], c["value"])
    if t == "const":
        return bool(c["value"])
    if t == "latched":
        st = _state(world)["latched"]
        if not st.get(key):
            st[key] = _groups(world, c["groups"], ends, f"{key}/latch")
        return st[key]
    if t == "event_started":
        return c["event"] in world.applied
    if t == "event_ended":
        return _event_ended(world, c["event"], ends)
    if t == "events_ended":
        return all(_event_ended(world, ev, ends) for ev in c["events"])
    if t == "any_event_started":
        return any(ev in world.applied for ev in c["events"])
    res = [_holds_entity(world, c, _actor(world, n), ends) for n in c["entities"]]
    return all(res) if c.get("all") else any(res)


def _cond(world, c, ends, key) -> bool:
    st = _state(world)
    now = _raw(world, c, ends, key)
    prev = st["prev"].get(key)
    st["prev"][key] = now
    edge = c.get("edge") or "none"
    hit = now if edge == "none" else (prev is False and now) if edge == "rising" else \
        (prev is True and not now) if edge == "falling" else (prev is not None and prev != now)
    delay = c.get("delay", 0.0)
    if delay <= 0:
        return hit
    if hit and key not in st["since"]:
        st["since"][key] = world.time_s
    return key in st["since"] and world.time_s >= st["since"][key] + delay - 1e-9


def _groups(world, groups, ends, tag) -> bool:
    ok = False
    for i, g in enumerate(groups):  # every condition is evaluated each tick (edges need their history)
        res = [_cond(world, c, ends, f"{tag}/{i}/{j}") for j, c in enumerate(g)]
        ok |= all(res)
    return ok


def _odometer(world) -> None:
    st = _state(world)
    if st.get("odo_t") == world.time_s:
        return
    last = st.setdefault("pos", {})
    for a in world.actors:
        p = last.get(a.name)
        if p is not None:
            st["odo"][a.name] = st["odo"].get(a.name, 0.0) + math.hypot(a.x - p[0], a.y - p[1])
        last[a.name] = (a.x, a.y)
        if abs(a.speed) < 1e-3:
            st["still"].setdefault(a.name, world.time_s)
        else:
            st["still"].pop(a.name, None)
    st["odo_t"] = world.time_s


@register_trigger("xosc_condition")
def xosc_condition(world, actor, params) -> bool:
    """An OpenSCENARIO StartTrigger: OR of condition groups, each an AND; per-condition edge and delay."""
    _odometer(world)
    return _groups(world, params["groups"], params.get("ends", {}), params["id"])


def _shape(shape: str, u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    if shape == "step":
        return 1.0
    if shape == "linear":
        return u
    if shape == "cubic":
        return 3 * u * u - 2 * u ** 3
    if shape == "sinusoidal":
        return 0.5 * (1 - math.cos(math.pi * u))
    raise KeyError(shape)


@register_behaviour("xosc_speed")
def xosc_speed(world, actor, dt, params) -> Control:
    """SpeedAction: from the speed at the start to the target along the shape, over a time or at a rate."""
    st = _state(world)
    key = (actor.name, params["event"])
    if key not in st["start"] or st["start"][key][0] != actor.behaviour_t0:
        st["start"][key] = (actor.behaviour_t0, actor.speed)
    _, v0 = st["start"][key]
    if "of" in params:
        ref = _actor(world, params["of"]).speed
        if not params.get("continuous") and "ref" in st["start"].get(key + ("ref",), ()):
            ref = st["start"][key + ("ref",)]
        target = ref * params["target"] if params["rel"] == "factor" else ref + params["target"]
    else:
        target = params["target"]
    if params["shape"] == "step" or params["value"] == 0:
        duration = 0.0
    elif params["dimension"] == "time":
        duration = params["value"]
    else:  # rate: |dv| / rate (m/s per s)
        duration = abs(target - v0) / abs(params["value"])
    t = world.time_s + dt - actor.behaviour_t0
    v = v0 + (target - v0) * (_shape(params["shape"], t / duration) if duration > 0 else 1.0)
    if (duration == 0 or t >= duration - 1e-9) and params["event"] not in st["done"]:
        st["done"][params["event"]] = world.time_s + dt
    lateral = None
    if actor.lc is not None:  # a lane change in progress goes on
        u = min(1.0, (world.time_s + dt - actor.lc["t0"]) / actor.lc["dur"])
        lateral = actor.lc["start"] * 0.5 * (1 + np.cos(np.pi * u))
        if u >= 1.0:
            actor.lc = None
            lateral = 0.0
    if not actor.kind.vehicle or actor.path is None:
        return Control(speed_mps=max(0.0, v))
    return Control(accel_mps2=(max(0.0, v) - actor.speed) / dt, lateral_m=lateral)
