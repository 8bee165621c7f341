"""Ray casting against the builtin world with open3d's RaycastingScene (Embree).

Design: the static world (ground, markings, buildings, trees, poles, lights) is one Embree scene built once
per episode.  Each actor has its own scene in its *local* frame, also built once.  A ray that may meet an
actor (culled by the actor's bounding sphere, or by its projected box for cameras) is transformed into that
actor's frame at the ray's own time and cast there.  So there is no per-tick BVH rebuild, actors can be posed
at any instant (a spinning LiDAR sees each actor where it was when each ray fired), and the per-actor casts
are exactly the actor's *amodal* footprint (what it would cover with nothing in front of it).

Frames: rays and hits are in the world frame (x east, y north, z up, metres).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgen._o3d import o3d
from simgen.records import rotation_zyx
from simgen.world.mesh import Mesh

_T = o3d.core.Tensor


def _scene_of(mesh: Mesh):
    scene = o3d.t.geometry.RaycastingScene()
    if mesh.n_triangles:
        scene.add_triangles(_T(np.ascontiguousarray(mesh.vertices, np.float32)), _T(np.ascontiguousarray(mesh.triangles, np.uint32)))
    return scene


@dataclass
class ActorGeometry:
    """One actor's mesh in its local frame (origin bottom centre, x forward), with its Embree scene."""

    id: int
    mesh: Mesh  # semantic already resolved (no zeros)
    colour: np.ndarray  # (3,) paint colour
    dims: np.ndarray  # (3,) l, w, h
    scene: object = None

    def __post_init__(self):
        self.scene = _scene_of(self.mesh)
        self.radius = float(np.linalg.norm(self.dims) / 2)  # bounding sphere around the box centre


class StaticGeometry:
    """The static world as one scene, with per-triangle material and semantic class."""

    def __init__(self, mesh: Mesh, lamp_triangles: dict[str, dict[str, np.ndarray]] | None = None):
        self.mesh = mesh
        self.scene = _scene_of(mesh)
        self.lamp_triangles = lamp_triangles or {}  # light id -> {"red": tri idx, ...}
        # per-triangle tables with a trailing 0 so that index -1 (a miss) reads 0
        self.semantic_ext = np.append(mesh.semantic, np.uint8(0))
        self.material_ext = np.append(mesh.material, np.uint8(0))


@dataclass
class Hits:
    """Nearest hit per ray (world frame).  ``t`` is inf where nothing was hit."""

    t: np.ndarray  # (N,) float32 distance along the (unit) ray
    normal: np.ndarray  # (N,3) float32 unit normal facing the ray origin
    semantic: np.ndarray  # (N,) uint8
    instance: np.ndarray  # (N,) uint32, 0 = static world / nothing
    material: np.ndarray  # (N,) uint8
    tri: np.ndarray  # (N,) int64 triangle index in its mesh (static or actor), -1 for misses


def _rays(o: np.ndarray, d: np.ndarray):
    buf = np.empty((len(d), 6), np.float32)
    buf[:, :3] = o
    buf[:, 3:] = d
    return _T.from_numpy(buf)


def cast_static(geom: StaticGeometry, o: np.ndarray, d: np.ndarray, rays: np.ndarray | None = None) -> Hits:
    """Cast rays (origins o, unit directions d) at the static world.  ``rays`` may give the same rays as a
    ready (N,6) float32 C-contiguous buffer, which avoids a copy."""
    r = geom.scene.cast_rays(_T.from_numpy(rays) if rays is not None else _rays(o, d))
    t = r["t_hit"].numpy()
    hit = np.isfinite(t)
    prim = r["primitive_ids"].numpy().astype(np.int64)
    n = r["primitive_normals"].numpy()
    prim[~hit] = -1
    # a miss indexes the appended sentinel entry (0) of the per-triangle tables
    sem = geom.semantic_ext[prim]
    mat = geom.material_ext[prim]
    return Hits(t, n, sem, np.zeros(len(t), np.uint32), mat, prim)


def local_from_world(pose: np.ndarray):
    """Rotation (…,3,3) and translation (…,3) taking world points into an actor frame (local = R (world - t)), from
    (…,4) x,y,z,yaw or (…,6) x,y,z,yaw,pitch,roll bottom-centre poses (convention: :mod:`simgen.records`)."""
    if pose.shape[-1] == 6 and np.any(pose[..., 4:6]):
        return np.swapaxes(rotation_zyx(pose[..., 3], pose[..., 4], pose[..., 5]), -1, -2), pose[..., :3]
    c, s = np.cos(pose[..., 3]), np.sin(pose[..., 3])
    R = np.zeros(pose.shape[:-1] + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, s, -s, c, 1.0  # R_local_from_world
    return R, pose[..., :3]


def box_centre(pose: np.ndarray, height) -> np.ndarray:
    """(…,3) box centre of (…,4|6) bottom-centre poses: half the ``height`` up the actor's own z axis."""
    R, p = local_from_world(pose)
    return p + np.asarray(height, float)[..., None] / 2 * R[..., 2, :]  # row 2 of R_local_from_world = z axis


def cast_actor(actor: ActorGeometry, o: np.ndarray, d: np.ndarray, pose: np.ndarray, *, occlusion_only: bool = False):
    """Cast world rays at one actor posed at ``pose`` ((4|6,) or per ray (N,4|6): x, y, z bottom centre, yaw
    [, pitch, roll]).

    Returns (t, normal_world, tri) or, with ``occlusion_only``, a boolean array.
    """
    R, p = local_from_world(pose)
    if R.ndim == 2:
        ol = (o - p) @ R.T
        dl = d @ R.T
    else:
        ol = np.einsum("nij,nj->ni", R, o - p)
        dl = np.einsum("nij,nj->ni", R, d)
    rays = _rays(ol, dl)
    if occlusion_only:
        return actor.scene.test_occlusions(rays).numpy().astype(bool)
    r = actor.scene.cast_rays(rays)
    t = r["t_hit"].numpy()
    nl = r["primitive_normals"].numpy()
    nw = nl @ R if R.ndim == 2 else np.einsum("nji,nj->ni", R, nl)  # R^T n
    return t, nw, r["primitive_ids"].numpy().astype(np.int64)


def sphere_candidates(o: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float, max_t: float) -> np.ndarray:
    """Indices of rays (unit d) that pass within ``radius`` of ``centre`` between 0 and max_t."""
    v = centre - o
    proj = v @ d.T if v.ndim == 1 else np.einsum("ni,ni->n", v, d)
    if v.ndim == 1:
        dist2 = v @ v - proj**2
    else:
        dist2 = np.einsum("ni,ni->n", v, v) - proj**2
    return np.nonzero((dist2 <= radius * radius) & (proj >= -radius) & (proj <= max_t + radius))[0]


def merge_actor_hits(h: Hits, idx: np.ndarray, t: np.ndarray, n: np.ndarray, tri: np.ndarray, actor: ActorGeometry) -> None:
    """Where the actor's hit (rays ``idx``) is nearer than the current one, take it (in place)."""
    closer = np.isfinite(t) & (t < h.t[idx])
    if not np.any(closer):
        return
    j = idx[closer]
    tr = tri[closer]
    h.t[j] = t[closer]
    h.normal[j] = n[closer]
    h.semantic[j] = actor.mesh.semantic[tr]
    h.material[j] = actor.mesh.material[tr]
    h.instance[j] = actor.id
    h.tri[j] = tr


def face_ray(h: Hits, d: np.ndarray) -> None:
    """Flip normals to face the ray origin (meshes are two-sided for shading)."""
    flip = np.einsum("ni,ni->n", h.normal, d) > 0
    h.normal[flip] *= -1
