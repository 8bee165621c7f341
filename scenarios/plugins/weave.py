"""Worked example of simgen's Python scenario API: a weaving (drunk or drowsy) driver.

Listed in a scenario as ``plugins: [plugins/weave.py]`` (a path relative to the scenario file), this module is
imported when the scenario is loaded and registers:

- behaviour ``weave``: hold a cruising speed along the actor's lane or route while drifting from side to side
  around the lane centre.  Options (in the behaviour's ``params``): ``speed_mps`` (default: the current speed),
  ``amplitude_m`` (peak commanded lateral offset, default 1.0; the car lags behind the command, more so at
  short periods), ``period_s`` (one full sway, default 4), ``first`` (``left`` or ``right``: the side it drifts
  to first, default left), ``speed_gain`` (1/s, how firmly the speed is held, default 0.5).
- trigger ``ego_behind_within``: true while the ego is behind the actor, measured along the actor's path, by
  less than ``gap_m`` (default 30) and no further than ``lateral_m`` (default 5) to either side of it - the
  moment a following driver would notice the car ahead.

A behaviour returns a :class:`~simgen.sim.behaviours.Control` every tick; the simulator keeps the vehicle
kinematics (bicycle model steering towards the path at ``lateral_m``), collisions, events and recording.
"""
from __future__ import annotations

import math

import numpy as np

from simgen.sim.behaviours import Control, register_behaviour, register_trigger


@register_behaviour("weave")
def weave(world, actor, dt, params):
    """Cruise at ``speed_mps`` and sway around the lane centre (two sines, so the sway is not perfectly even)."""
    t = world.time_s - actor.behaviour_t0
    period = float(params.get("period_s", 4.0))
    amplitude = float(params.get("amplitude_m", 1.0))
    side = -1.0 if params.get("first", "left") == "right" else 1.0
    phase = 2.0 * math.pi * t / period
    # the main sway plus a slower, smaller wander; starts at 0 so the car does not jump sideways
    lateral = side * amplitude * (0.8 * math.sin(phase) + 0.2 * math.sin(0.37 * phase))
    target = float(params.get("speed_mps", actor.speed))
    accel = float(np.clip(float(params.get("speed_gain", 0.5)) * (target - actor.speed), -3.0, 1.5))
    return Control(accel_mps2=accel, lateral_m=lateral)


@register_trigger("ego_behind_within")
def ego_behind_within(world, actor, params):
    """The ego is behind ``actor`` along its path by less than ``gap_m`` and within ``lateral_m`` of it."""
    ego = world.actors[0]
    if actor is ego or actor.path is None:
        return False
    s_ego, lat_ego = actor.path.project(np.array([ego.x, ego.y]))
    behind = actor.s - float(s_ego)
    return 0.0 < behind < float(params.get("gap_m", 30.0)) and \
        abs(float(lat_ego) - actor.lateral) <= float(params.get("lateral_m", 5.0))
