"""Semantic classes and actor kinds.

Class ids follow CARLA 0.9.14+ (``sensor.camera.semantic_segmentation`` tags) with the Cityscapes palette, so
datasets written by the builtin and the carla backend agree.  Actor *kinds* are what a scenario file names
(``car``, ``van``, ``child`` ...); each maps to one semantic class and a realistic range of dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# id -> (name, RGB palette colour)
CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("Unlabeled", (0, 0, 0)),
    1: ("Roads", (128, 64, 128)),
    2: ("SideWalks", (244, 35, 232)),
    3: ("Building", (70, 70, 70)),
    4: ("Wall", (102, 102, 156)),
    5: ("Fence", (190, 153, 153)),
    6: ("Pole", (153, 153, 153)),
    7: ("TrafficLight", (250, 170, 30)),
    8: ("TrafficSign", (220, 220, 0)),
    9: ("Vegetation", (107, 142, 35)),
    10: ("Terrain", (152, 251, 152)),
    11: ("Sky", (70, 130, 180)),
    12: ("Pedestrian", (220, 20, 60)),
    13: ("Rider", (255, 0, 0)),
    14: ("Car", (0, 0, 142)),
    15: ("Truck", (0, 0, 70)),
    16: ("Bus", (0, 60, 100)),
    17: ("Train", (0, 80, 100)),
    18: ("Motorcycle", (0, 0, 230)),
    19: ("Bicycle", (119, 11, 32)),
    20: ("Static", (110, 190, 160)),
    21: ("Dynamic", (170, 120, 50)),
    22: ("Other", (55, 90, 80)),
    23: ("Water", (45, 60, 150)),
    24: ("RoadLine", (157, 234, 50)),
    25: ("Ground", (81, 0, 81)),
    26: ("Bridge", (150, 100, 100)),
    27: ("RailTrack", (230, 150, 140)),
    28: ("GuardRail", (180, 165, 180)),
}

UNLABELED, ROADS, SIDEWALKS, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = range(9)
VEGETATION, TERRAIN, SKY, PEDESTRIAN, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(9, 20)
STATIC, DYNAMIC, OTHER, WATER, ROADLINE, GROUND, BRIDGE, RAILTRACK, GUARDRAIL = range(20, 29)

CLASS_NAMES = {k: v[0] for k, v in CLASSES.items()}
PALETTE = np.zeros((256, 3), np.uint8)
for _k, (_n, _c) in CLASSES.items():
    PALETTE[_k] = _c


@dataclass(frozen=True)
class ActorKind:
    """A kind of actor a scenario may place: its semantic class and dimension ranges (metres)."""

    name: str
    semantic: int
    length_m: tuple[float, float]
    width_m: tuple[float, float]
    height_m: tuple[float, float]
    vehicle: bool  # driven by the kinematic bicycle model on lanes
    max_speed_mps: float

    def default_dims(self) -> tuple[float, float, float]:
        return tuple((lo + hi) / 2 for lo, hi in (self.length_m, self.width_m, self.height_m))


# Dimension ranges from typical European/US fleet figures (car: compact to large saloon, etc.).
ACTOR_KINDS: dict[str, ActorKind] = {
    k.name: k
    for k in [
        ActorKind("car", CAR, (3.8, 5.0), (1.70, 1.95), (1.40, 1.65), True, 70.0),
        ActorKind("van", CAR, (4.8, 6.0), (1.90, 2.10), (1.90, 2.60), True, 50.0),
        ActorKind("truck", TRUCK, (7.0, 10.0), (2.40, 2.55), (3.00, 3.80), True, 35.0),
        ActorKind("bus", BUS, (10.5, 12.5), (2.50, 2.55), (3.00, 3.30), True, 30.0),
        ActorKind("motorcycle", MOTORCYCLE, (1.9, 2.3), (0.70, 0.90), (1.40, 1.60), True, 60.0),
        ActorKind("cyclist", BICYCLE, (1.6, 1.9), (0.55, 0.70), (1.60, 1.85), True, 15.0),
        ActorKind("pedestrian", PEDESTRIAN, (0.45, 0.65), (0.50, 0.70), (1.55, 1.95), False, 8.0),
        ActorKind("child", PEDESTRIAN, (0.30, 0.45), (0.35, 0.50), (1.00, 1.35), False, 6.0),
        ActorKind("ball", DYNAMIC, (0.22, 0.30), (0.22, 0.30), (0.22, 0.30), False, 15.0),
        ActorKind("debris", STATIC, (0.4, 1.5), (0.4, 1.2), (0.15, 0.6), False, 0.0),
        # Animals (quadrupeds; they move like walkers).  CARLA 0.9.14+ has no animal tag: its documentation puts
        # animals under "Dynamic" (21: things whose position changes over time), so that is their semantic id.
        # Sizes: roe/white-tailed deer (body length incl. head, shoulder-to-antler height) and medium/large dogs.
        ActorKind("deer", DYNAMIC, (1.3, 1.9), (0.35, 0.50), (1.20, 1.70), False, 15.0),
        ActorKind("dog", DYNAMIC, (0.60, 1.10), (0.22, 0.38), (0.50, 0.85), False, 12.0),
        ActorKind("animal", DYNAMIC, (0.60, 1.90), (0.22, 0.50), (0.50, 1.70), False, 15.0),
    ]
}

ANIMAL_KINDS = ("deer", "dog", "animal")

# Masses (kg) by kind for the impact metrics (delta-v by momentum conservation): typical kerb masses plus one
# occupant for road vehicles, rider included for two-wheelers, an adult / a 6-year-old child for walkers.
MASS_KG: dict[str, float] = {
    "car": 1500.0, "van": 2200.0, "truck": 12000.0, "bus": 13000.0, "motorcycle": 280.0, "cyclist": 95.0,
    "pedestrian": 75.0, "child": 23.0, "ball": 0.45, "debris": 15.0, "deer": 60.0, "dog": 30.0, "animal": 45.0,
}
