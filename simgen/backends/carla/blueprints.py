"""Blueprint choice: which CARLA blueprint renders a simgen actor kind, measured how, coloured how.

Vehicles by ``base_type`` as CARLA documents it, with fallbacks (id keywords, a stand-in's base type, wheel
count); walkers by age; props from CARLA's props catalogue only (no ball exists: a documented stand-in, logged).
Door-opening actors get a blueprint with ``has_dynamic_doors=true``.  Sizes are measured once per server version by
spawning a probe at rotation 0 far below the map (a static prop's box is only its own box at rotation 0)."""
from __future__ import annotations

import logging

import numpy as np

from simgen.backends.carla.common import spawn_or_none

log = logging.getLogger("simgen.backends.carla")

# Vehicle blueprints per simgen kind, in order: the ``base_type`` values that mean it (VehicleParameters.h documents
# car / truck / van / motorcycle and the misspelt "bycicle"; "bicycle" and "bus" are accepted too in case a release
# uses them), then blueprint-id keywords (from the 0.9.16 vehicle catalogue), then base types of a stand-in, then
# the number of wheels.  The first of these that leaves any blueprint decides; the box fit picks among them.
VEHICLE_CHOICE = {
    "car": (("car",), (), (), 4),
    "van": (("van",), ("sprinter", "t2", "ambulance", ".van"), (), 4),
    "truck": (("truck",), ("truck", "carlacola", "firetruck"), (), 4),
    "bus": (("bus",), ("fusorosa", "bus"), ("truck", "van"), 4),
    "motorcycle": (("motorcycle",), ("motorcycle", "motorbike", "harley", "kawasaki", "ninja", "vespa", "yamaha", "yzf"), (), 2),
    "cyclist": (("bycicle", "bicycle"), ("bicycle", "crossbike", "century", "omafiets", "diamondback", "gazelle"), (), 2),
}
BASE_TYPES = {k: v[0][0] for k, v in VEHICLE_CHOICE.items()}  # the documented base type of each kind
# Props from CARLA's props catalogue (Docs/catalogue_props.md).  It has no ball: a ball is rendered as the first of
# BALL_STAND_INS the server offers (a roughly round object of about a ball's size), logged, see docs/carla.md.
BALL_STAND_INS = ("static.prop.motorhelmet", "static.prop.bike helmet")
DEBRIS_PROPS = ("static.prop.dirtdebris01", "static.prop.dirtdebris02", "static.prop.dirtdebris03", "static.prop.brokentile01",
                "static.prop.brokentile02", "static.prop.brokentile03", "static.prop.brokentile04", "static.prop.box01",
                "static.prop.box02", "static.prop.box03", "static.prop.creasedbox01", "static.prop.creasedbox02",
                "static.prop.creasedbox03", "static.prop.trashbag", "static.prop.barrel", "static.prop.ironplank")
PROP_CHOICE = {"ball": BALL_STAND_INS, "debris": DEBRIS_PROPS}


def linear_to_srgb8(c) -> tuple[int, int, int]:
    """8-bit sRGB of a linear-RGB colour in [0, 1] (CARLA's blueprint ``color`` attribute is 8-bit sRGB)."""
    c = np.clip(np.asarray(c, float), 0.0, 1.0)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return tuple(int(v) for v in np.round(s * 255.0))


def srgb8_to_linear(rgb) -> np.ndarray:
    s = np.asarray(rgb, float) / 255.0
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4).astype(np.float32)


def choose_blueprint(candidates: dict[str, np.ndarray], target_lwh, rng: np.random.Generator, tol: float = 0.15) -> str:
    """Blueprint id whose bounding-box dims (l, w, h) are closest to ``target_lwh`` (sum of |log ratio|); among
    those within ``tol`` of the best score one is drawn from ``rng`` (variety without giving up the fit)."""
    if not candidates:
        raise ValueError("no candidate blueprints")
    ids = sorted(candidates)
    dims = np.array([candidates[i] for i in ids], float)
    score = np.abs(np.log(np.maximum(dims, 1e-3) / np.maximum(np.asarray(target_lwh, float), 1e-3))).sum(axis=1)
    near = np.flatnonzero(score <= score.min() + tol)
    return ids[int(near[rng.integers(len(near))])]


def _base_type(b) -> str:
    return b.get_attribute("base_type").as_str().strip().lower() if b.has_attribute("base_type") else ""


def _wheels(b) -> int | None:
    return b.get_attribute("number_of_wheels").as_int() if b.has_attribute("number_of_wheels") else None


def vehicle_candidates(kind: str, bps: list) -> tuple[list, str]:
    """(vehicle blueprints for a simgen vehicle ``kind``, how they were found): by ``base_type``; when that filter
    is empty, by blueprint-id keywords; then by a stand-in's base type (a bus: the trucks); then by wheel count."""
    base, keywords, stand_in, wheels = VEHICLE_CHOICE[kind]
    for how, pick in (("base_type", lambda b: _base_type(b) in base),
                      ("id keyword", lambda b: any(k in b.id.lower() for k in keywords)),
                      ("stand-in base_type " + "/".join(stand_in), lambda b: _base_type(b) in stand_in),
                      (f"wheel count ({wheels})", lambda b: _wheels(b) == wheels)):
        out = [b for b in bps if pick(b)]
        if out:
            return out, how
    return [], "nothing"


def prop_candidates(kind: str, props: list) -> list:
    """Documented props for a simgen prop kind, in preference order (a ball: the first stand-in available only)."""
    by_id = {b.id: b for b in props}
    out = [by_id[i] for i in PROP_CHOICE.get(kind, ()) if i in by_id]
    return out[:1] if kind == "ball" else out


def needs_dynamic_doors(plan) -> bool:
    """Whether a planned vehicle opens a door during the episode (its behaviour or an event's)."""
    return plan.kind.vehicle and any(b.type == "open_door" for b in [plan.behaviour] + [e.do for e in plan.events])


def has_dynamic_doors(bp) -> bool:
    return bp.has_attribute("has_dynamic_doors") and bp.get_attribute("has_dynamic_doors").as_str().lower() == "true"


class BlueprintsMixin:
    """CarlaSession's blueprint lookups (needs ``world``, ``server_version``, ``backend``, ``_destroy``)."""

    def _candidates(self, kind: str) -> list:
        """Blueprints that can render a simgen ``kind`` (see :func:`vehicle_candidates`, :func:`prop_candidates`)."""
        lib = self.world.get_blueprint_library()
        if kind in VEHICLE_CHOICE:
            bps, how = vehicle_candidates(kind, list(lib.filter("vehicle.*")))
            if how != "base_type" and bps:
                log.warning("no CARLA vehicle blueprint has a base_type meaning %r; chose among %s by %s", kind,
                            ", ".join(sorted(b.id for b in bps)), how)
            return bps
        if kind in ("pedestrian", "child"):
            bps = list(lib.filter("walker.pedestrian.*"))
            age = "child" if kind == "child" else "adult"
            aged = [b for b in bps if b.has_attribute("age") and b.get_attribute("age").as_str() == age]
            return aged or bps
        bps = prop_candidates(kind, list(lib.filter("static.prop.*")))
        if kind == "ball" and bps:
            log.warning("CARLA has no ball prop: a ball is rendered as %s (its box is what is labelled; docs/carla.md)", bps[0].id)
        return bps

    def _probe(self, bps: list) -> dict[str, object]:
        """Bounding boxes (``carla.BoundingBox``) of blueprints, measured by spawning each once far below the map and
        destroying it again (cached per server version)."""
        carla = self.carla
        out, todo = {}, []
        for b in bps:
            key = (self.server_version, b.id)
            if key in self.backend._bp_boxes:
                out[b.id] = self.backend._bp_boxes[key]
            else:
                todo.append(b)
        probes = []
        try:
            for i, b in enumerate(todo):
                # at rotation 0: a static.prop's box then is its own box (CARLA gives props their world rotation)
                tf = carla.Transform(carla.Location(x=40.0 * (i % 25), y=40.0 * (i // 25), z=-2000.0), carla.Rotation())
                a = spawn_or_none(self.world, b, tf, what=f"a probe of {b.id}")
                if a is None:
                    log.warning("could not probe blueprint %s", b.id)
                    continue
                probes.append(a)
                self.backend._bp_boxes[(self.server_version, b.id)] = out[b.id] = a.bounding_box
        finally:
            if probes:
                self._destroy([a.id for a in probes])
        return out
