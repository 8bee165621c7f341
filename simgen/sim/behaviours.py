"""Registries of behaviours and triggers, and the Python API for adding your own.

Scenario YAML names behaviours by ``type`` and custom triggers by ``custom``; both are looked up here.  The
built-in behaviours are implemented by :class:`simgen.sim.world.World`; a registered behaviour is a function
called every tick that returns a :class:`Control`, so the simulator keeps the kinematics (bicycle model for
vehicles, straight-line motion for walkers) and collision handling.

A plugin is code: a scenario's ``plugins:`` run only with the user's opt-in (``--allow-plugins`` or
``SIMGEN_ALLOW_PLUGINS=1``), from a file inside the scenario's folder or an installed ``simgen.plugins`` entry
point (see :func:`simgen.spec.scenario.load_plugins`).

Worked example (a file next to the scenario, listed under ``plugins:`` in it)::

    # scenarios/plugins/weave.py
    import math
    from simgen.sim.behaviours import Control, register_behaviour, register_trigger

    @register_behaviour("weave")
    def weave(world, actor, dt, params):
        '''Drive along the lane, swaying sideways: amplitude_m, period_s.'''
        t = world.time_s - actor.behaviour_t0
        lateral = params.get("amplitude_m", 0.8) * math.sin(2 * math.pi * t / params.get("period_s", 3.0))
        return Control(accel_mps2=0.0, lateral_m=lateral)

    @register_trigger("ego_slower_than")
    def ego_slower_than(world, actor, params):
        return world.actors[0].speed < params["speed_mps"]

and in the scenario::

    plugins: [plugins/weave.py]
    actors:
      - id: drunk
        kind: car
        place: {relative_to: ego, ahead_m: 25, lane_offset: 1}
        speed_mps: 12
        behaviour: {type: lane_follow, speed_mps: 12}
        events:
          - when: {custom: ego_slower_than, params: {speed_mps: 14}}
            do: {type: weave, params: {amplitude_m: 1.2, period_s: 2.5}}
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable


@dataclass
class Control:
    """What a registered behaviour asks for this tick.

    Vehicles on a path: ``accel_mps2`` (longitudinal) and ``lateral_m`` (target offset from the path, left
    positive).  Walkers and free movers: ``speed_mps`` and ``heading_rad`` (world yaw).  ``None`` keeps the
    current value.
    """

    accel_mps2: float | None = None
    lateral_m: float | None = None
    speed_mps: float | None = None
    heading_rad: float | None = None


BehaviourFn = Callable[..., Control]
TriggerFn = Callable[..., bool]

BUILTIN_BEHAVIOURS = ("lane_follow", "scripted", "brake", "stop", "stop_at_line", "lane_change", "parked", "stand",
                      "open_door", "walk", "synchronize", "reverse")
BEHAVIOURS: dict[str, BehaviourFn | None] = {name: None for name in BUILTIN_BEHAVIOURS}
TRIGGERS: dict[str, TriggerFn] = {}


def register_behaviour(name: str):
    """Decorator: make ``fn(world, actor, dt, params) -> Control`` available as behaviour ``type: name``."""

    def deco(fn: BehaviourFn) -> BehaviourFn:
        if name in BUILTIN_BEHAVIOURS:
            raise ValueError(f"{name!r} is a built-in behaviour")
        BEHAVIOURS[name] = fn
        return fn

    return deco


def register_trigger(name: str):
    """Decorator: make ``fn(world, actor, params) -> bool`` available as ``when: {custom: name}``."""

    def deco(fn: TriggerFn) -> TriggerFn:
        TRIGGERS[name] = fn
        return fn

    return deco


_DEFERRED = [0]  # > 0 while names are being checked before a scenario's plugins have run


@contextlib.contextmanager
def plugin_names_deferred():
    """While active, behaviour ``type`` and trigger ``custom`` names that are not registered pass validation: a
    scenario is checked in full *before* its plugins run, and their names are checked again after."""
    _DEFERRED[0] += 1
    try:
        yield
    finally:
        _DEFERRED[0] -= 1


def is_behaviour(name: str) -> bool:
    return name in BEHAVIOURS or _DEFERRED[0] > 0


def is_trigger(name: str) -> bool:
    return name in TRIGGERS or _DEFERRED[0] > 0


from simgen.spec import xosc_runtime as _xosc_runtime  # noqa: E402,F401 - OpenSCENARIO's trigger and speed behaviour
