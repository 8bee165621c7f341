"""Triangle meshes with per-triangle material and semantic class.

A :class:`Mesh` is plain arrays so that it can be merged, transformed and handed to Embree without copies.
Object frame convention for actor meshes: x forward, y left, z up, metres, origin at the centre of the
bottom face of the object's bounding box (the ground contact point).  An actor mesh built for dimensions
(l, w, h) spans exactly [-l/2, l/2] x [-w/2, w/2] x [0, h]: its tight bounding box *is* the label box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Mesh:
    vertices: np.ndarray  # (V, 3) float32, metres
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside
    material: np.ndarray  # (T,) uint8 material ids (simgen.world.materials)
    semantic: np.ndarray  # (T,) uint8 semantic class ids; 0 means "use the owning object's class"

    def __post_init__(self) -> None:
        assert self.vertices.ndim == 2 and self.vertices.shape[1] == 3
        assert self.triangles.ndim == 2 and self.triangles.shape[1] == 3
        assert len(self.material) == len(self.triangles) == len(self.semantic)

    @staticmethod
    def build(vertices, triangles, material, semantic=0) -> "Mesh":
        """Make a mesh; ``material``/``semantic`` may be scalars applied to every triangle."""
        tri = np.asarray(triangles, np.int32).reshape(-1, 3)
        n = len(tri)
        return Mesh(
            np.asarray(vertices, np.float32).reshape(-1, 3),
            tri,
            np.broadcast_to(np.asarray(material, np.uint8), (n,)).copy(),
            np.broadcast_to(np.asarray(semantic, np.uint8), (n,)).copy(),
        )

    @staticmethod
    def empty() -> "Mesh":
        return Mesh.build(np.zeros((0, 3)), np.zeros((0, 3)), 0)

    @property
    def n_triangles(self) -> int:
        return len(self.triangles)

    def transformed(self, T: np.ndarray) -> "Mesh":
        """Apply a 4x4 homogeneous transform to the vertices."""
        v = self.vertices @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
        return Mesh(v.astype(np.float32), self.triangles, self.material, self.semantic)

    def with_semantic_default(self, semantic: int) -> "Mesh":
        """Replace the 0 ("owner's class") entries with ``semantic``."""
        sem = np.where(self.semantic == 0, np.uint8(semantic), self.semantic)
        return Mesh(self.vertices, self.triangles, self.material, sem)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def merge(meshes: list[Mesh]) -> Mesh:
    """Concatenate meshes into one (indices are offset)."""
    meshes = [m for m in meshes if m.n_triangles]
    if not meshes:
        return Mesh.empty()
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.vertices for m in meshes]).astype(np.float32),
        np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]).astype(np.int32),
        np.concatenate([m.material for m in meshes]),
        np.concatenate([m.semantic for m in meshes]),
    )
