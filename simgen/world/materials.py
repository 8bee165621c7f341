"""Surface materials shared by the mesh generators, the camera shader and the LiDAR intensity model.

Every triangle of every mesh carries a material id (uint8).  ``PAINT`` is special: its colour is the owning
actor's paint colour, chosen per actor.  Colours are linear RGB in [0, 1]; ``reflectivity`` is the diffuse
near-infrared (905 nm) reflectivity used for LiDAR intensity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    id: int
    name: str
    colour: tuple[float, float, float]
    reflectivity: float
    specular: float = 0.0


_MATERIALS = [
    Material(0, "default", (0.5, 0.5, 0.5), 0.3),
    Material(1, "paint", (0.6, 0.1, 0.1), 0.5, 0.5),  # colour replaced by the actor's paint colour
    Material(2, "glass", (0.05, 0.07, 0.09), 0.05, 0.8),
    Material(3, "tyre", (0.03, 0.03, 0.03), 0.05),
    Material(4, "metal", (0.55, 0.56, 0.58), 0.6, 0.4),
    Material(5, "skin", (0.72, 0.52, 0.40), 0.4),
    Material(6, "clothing", (0.15, 0.18, 0.35), 0.3),  # colour may be replaced by the actor's paint colour
    Material(7, "hair", (0.10, 0.07, 0.05), 0.2),
    Material(8, "asphalt", (0.10, 0.10, 0.11), 0.12),
    Material(9, "road_paint", (0.85, 0.85, 0.82), 0.75),
    Material(10, "concrete", (0.55, 0.54, 0.52), 0.35),
    Material(11, "kerb", (0.65, 0.65, 0.63), 0.4),
    Material(12, "facade", (0.62, 0.50, 0.40), 0.35),
    Material(13, "roof", (0.30, 0.22, 0.20), 0.2),
    Material(14, "window", (0.10, 0.14, 0.20), 0.08, 0.7),
    Material(15, "bark", (0.25, 0.17, 0.10), 0.3),
    Material(16, "foliage", (0.12, 0.30, 0.08), 0.45),
    Material(17, "pole_metal", (0.45, 0.45, 0.47), 0.5, 0.3),
    Material(18, "sign_face", (0.85, 0.85, 0.85), 0.9),  # retro-reflective
    Material(19, "light_housing", (0.08, 0.08, 0.08), 0.2),
    Material(20, "lamp_red", (0.9, 0.05, 0.05), 0.6),
    Material(21, "lamp_yellow", (0.95, 0.7, 0.05), 0.6),
    Material(22, "lamp_green", (0.05, 0.85, 0.3), 0.6),
    Material(23, "grass", (0.20, 0.35, 0.12), 0.5),
    Material(24, "headlight", (0.95, 0.95, 0.9), 0.7, 0.6),
    Material(25, "taillight", (0.6, 0.02, 0.02), 0.6, 0.6),
    Material(26, "plastic", (0.12, 0.12, 0.13), 0.25),
    Material(27, "rubber_ball", (0.9, 0.25, 0.1), 0.4),
    Material(28, "wood", (0.45, 0.32, 0.18), 0.35),
    Material(29, "road_paint_yellow", (0.80, 0.60, 0.10), 0.7),  # yellow lane marks of imported maps
]

MATERIALS: dict[str, Material] = {m.name: m for m in _MATERIALS}
N_MATERIALS = 256

DEFAULT, PAINT, GLASS, TYRE, METAL, SKIN, CLOTHING, HAIR, ASPHALT, ROAD_PAINT = range(10)
CONCRETE, KERB, FACADE, ROOF, WINDOW, BARK, FOLIAGE, POLE_METAL, SIGN_FACE, LIGHT_HOUSING = range(10, 20)
LAMP_RED, LAMP_YELLOW, LAMP_GREEN, GRASS, HEADLIGHT, TAILLIGHT, PLASTIC, RUBBER_BALL, WOOD, YELLOW_PAINT = range(20, 30)

# Lookup tables indexed by material id (vectorised shading uses these).
COLOUR_LUT = np.full((N_MATERIALS, 3), 0.5, np.float32)
REFLECTIVITY_LUT = np.full(N_MATERIALS, 0.3, np.float32)
SPECULAR_LUT = np.zeros(N_MATERIALS, np.float32)
for _m in _MATERIALS:
    COLOUR_LUT[_m.id] = _m.colour
    REFLECTIVITY_LUT[_m.id] = _m.reflectivity
    SPECULAR_LUT[_m.id] = _m.specular
