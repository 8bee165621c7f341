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
    end = ends.get(ev, {})
    if "log" in end:  # e.g. a synchronize: the World logs "<actor>:synchronized" when it arrives
        return any(k == end["log"] for _, _, k in world.event_log)
    if "also" in end and not _event_ended(world, end["also"], ends):  # an event played as two
        return False
    after = end.get("after_s")
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
    if t == "ttc_point":  # to a position: the distance along the heading / the speed
        gap = (c["x"] - e.x) * math.cos(e.yaw) + (c["y"] - e.y) * math.sin(e.yaw)
        if c.get("freespace"):
            gap -= e.dims[0] / 2
        if gap <= 0 or e.speed <= 1e-6:
            return False
        return _cmp(gap / e.speed, c["rule"], c["value"])
    if t == "collision_kind":
        others = {a.id for a in world.actors if a.kind.name in c["kinds"] and a is not e}
        return any(e.id in p and (set(p) - {e.id}) & others for p in world.collisions_total)
    if t == "reldist":
        ref = _actor(world, c["to"])
        if c.get("lateral"):  # across e's heading
            d = abs(-(ref.x - e.x) * math.sin(e.yaw) + (ref.y - e.y) * math.cos(e.yaw))
            if c.get("freespace"):
                d = max(0.0, d - (e.dims[1] + ref.dims[1]) / 2)
        elif c.get("longitudinal"):
            d = abs(_long_gap(world, e, ref, c.get("freespace", False)))
        else:
            d = math.hypot(ref.x - e.x, ref.y - e.y)
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
    if t == "unlatched":  # an Act StopTrigger: true until its groups have held once
        st = _state(world)["latched"]
        if not st.get(key):
            st[key] = _groups(world, c["groups"], ends, f"{key}/latch")
        return not st[key]
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
    hold = _groups(world, params["groups"], params.get("ends", {}), params["id"])
    g = params.get("global")
    if g is None or not hold:
        return hold
    # a global action (a traffic signal's state): done here, the event recorded as fired; the owner's
    # behaviour is not replaced
    lights = getattr(world, "light_overrides", None)
    if lights is None:
        lights = world.light_overrides = []
    lights.append((world.time_s, g["light"], g["state"]))
    world.applied.add(params["id"])
    world.event_log.append((world.time_s, actor.name, params["id"]))
    return False


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


def _speed_at(world, params: dict, v0: float, vref0: float | None, t: float) -> tuple[float, bool]:
    """A SpeedAction's speed ``t`` s after its start (from ``v0``), and whether it has reached its target."""
    if "of" in params:
        ref = _actor(world, params["of"]).speed if params.get("continuous") or vref0 is None else vref0
        target = ref * params["target"] if params["rel"] == "factor" else ref + params["target"]
    else:
        target = params["target"]
    if params["shape"] == "step" or params["value"] == 0:
        duration = 0.0
    elif params["dimension"] == "time":
        duration = params["value"]
    else:  # rate: |dv| / rate (m/s per s)
        duration = abs(target - v0) / abs(params["value"])
    v = v0 + (target - v0) * (_shape(params["shape"], t / duration) if duration > 0 else 1.0)
    return max(0.0, v), duration == 0 or t >= duration - 1e-9


def _offset_at(world, p: dict, lat0: float, t: float) -> tuple[float, bool]:
    """A LaneOffsetAction's lateral offset ``t`` s after its start (from ``lat0``), and whether it is done.  The
    duration follows from maxLateralAcc: sinusoidal 1/2(1 - cos(pi u)) peaks at pi^2 d / (2 T^2), cubic and linear
    (played like cubic) at 6 d / T^2."""
    target = p["target"] + (_actor(world, p["of"]).lateral if "of" in p else 0.0)
    d = abs(target - lat0)
    if p["shape"] == "step" or d < 1e-9:
        return target, True
    if p["shape"] == "sinusoidal":
        dur = math.pi * math.sqrt(d / (2 * p["max_acc"]))
    else:
        dur = math.sqrt(6 * d / p["max_acc"])
    shape = "cubic" if p["shape"] == "linear" else p["shape"]
    return lat0 + (target - lat0) * _shape(shape, t / dur), t >= dur - 1e-9


def _begin(world, actor, key: tuple, **extra) -> dict:
    """Per-behaviour start state (speed, lateral offset, reference speed), reset when the behaviour restarts."""
    st = _state(world)["start"]
    cur = st.get(key)
    if cur is None or cur["t0"] != actor.behaviour_t0:
        cur = st[key] = dict(t0=actor.behaviour_t0, v0=actor.speed, lat0=actor.lateral, **extra)
    return cur


@register_behaviour("xosc_speed")
def xosc_speed(world, actor, dt, params) -> Control:
    """SpeedAction: from the speed at the start to the target along the shape, over a time or at a rate; and/or
    LaneOffsetAction (``offset``): the lateral offset from the one at the start to the target."""
    st = _state(world)
    sp = params if "target" in params else None
    ref0 = _actor(world, sp["of"]).speed if sp is not None and "of" in sp else None
    b = _begin(world, actor, (actor.name, params["event"]), vref0=ref0)
    t = world.time_s + dt - actor.behaviour_t0
    v, done = _speed_at(world, sp, b["v0"], b["vref0"], t) if sp is not None else (actor.speed, True)
    lateral = None
    if "offset" in params:
        lateral, lat_done = _offset_at(world, params["offset"], b["lat0"], t)
        done = done and lat_done
    if done and params["event"] not in st["done"]:
        st["done"][params["event"]] = world.time_s + dt
    if actor.lc is not None:  # a lane change in progress goes on (to the target lane's centre + lc_offset)
        u = min(1.0, (world.time_s + dt - actor.lc["t0"]) / actor.lc["dur"])
        blend = 0.5 * (1 + np.cos(np.pi * u))
        lateral = actor.lc["start"] * blend + params.get("lc_offset", 0.0) * (1 - blend)
        if u >= 1.0:
            actor.lc = None
            lateral = params.get("lc_offset", 0.0)
    if not actor.kind.vehicle or actor.path is None:
        return Control(speed_mps=v)
    return Control(accel_mps2=(v - actor.speed) / dt, lateral_m=lateral)


@register_behaviour("xosc_trajectory")
def xosc_trajectory(world, actor, dt, params) -> Control:
    """FollowTrajectoryAction: along the trajectory's points, at the actor's speed (or a SpeedAction of the same
    event, ``speed``), or where the vertex times put it (``times_abs`` simulation time / ``times_rel`` since the
    start).  Vehicles on a path take the trajectory (extended 200 m along its end) as their path; walkers are
    steered onto it.  After its end the actor keeps its speed and heading."""
    from simgen.world.roads import Polyline

    st = _state(world)
    b = _begin(world, actor, ("traj", actor.name, params["event"]))
    if "poly" not in b:
        pts = np.asarray(params["points"], float)
        keep = np.concatenate([[True], np.hypot(*np.diff(pts, axis=0).T) > 1e-6])
        pts = pts[keep]
        b["poly"] = poly = Polyline(pts)
        b["s"] = float(params["start_s"]) if "start_s" in params else float(poly.project(np.array([actor.x, actor.y]))[0])
        b["cum"] = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(np.asarray(params["points"], float), axis=0).T))])
        if actor.kind.vehicle and actor.path is not None:
            x, y, h = poly.pose_at(poly.length)
            ext = np.array([[x + 200.0 * np.cos(h), y + 200.0 * np.sin(h)]])
            actor.path = Polyline(np.concatenate([pts, ext]))
            actor.s, actor.lateral = (float(v) for v in actor.path.project(np.array([actor.x, actor.y])))
            actor.stop_points, actor.junction_entries = [], []
    poly = b["poly"]
    t = world.time_s + dt - actor.behaviour_t0
    times = params.get("times_abs") or params.get("times_rel")
    if times is not None:
        # relative times count from the start; with an initialDistanceOffset, from the time at that distance
        t_start = float(np.interp(params.get("start_s", 0.0), b["cum"], times)) - times[0] if "start_s" in params else 0.0
        now = world.time_s + dt if "times_abs" in params else t + times[0] + t_start
        s_next = float(np.interp(now, times, b["cum"]))
        v = max(0.0, (s_next - b["s"]) / dt)
    elif "speed" in params:
        v = _speed_at(world, params["speed"], b["v0"], None, t)[0]
        s_next = b["s"] + v * dt
    else:
        v = actor.speed
        s_next = b["s"] + v * dt
    if s_next >= poly.length - 1e-9 and params["event"] not in st["done"]:
        st["done"][params["event"]] = world.time_s + dt
    b["s"] = s_next
    if actor.kind.vehicle and actor.path is not None:
        return Control(accel_mps2=(v - actor.speed) / dt, lateral_m=0.0)
    if s_next > poly.length:  # past the end: straight on at the same speed
        return Control(speed_mps=v)
    x, y, _ = poly.pose_at(s_next)
    dx, dy = float(x) - actor.x, float(y) - actor.y
    step = math.hypot(dx, dy)
    if step < 1e-9:
        return Control(speed_mps=0.0)
    return Control(speed_mps=step / dt, heading_rad=math.atan2(dy, dx))
