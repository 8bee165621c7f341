"""The per-frame object table every exporter formats: one place where the class map and the filters are applied.

:class:`EpisodeObjects` (one per episode and export) resolves each actor's output class name once (the class map,
or simgen's semantic class names for formats without one) and which actors the class map and ``--classes`` keep.
Its :meth:`EpisodeObjects.frame` reads frame k's labels (``labels/objects``, the export LiDAR's and the chosen
cameras' label tables, through :class:`annotators.export.common.EpisodeReader`) into a :class:`FrameObjects`:
arrays dense over the episode's actors (index 0, the ego, is never kept), with

- ``keep``: class map, ``--classes`` and the quality filters (``--min-visible`` on the best of the table's
  cameras, ``--min-points`` on the export LiDAR's returns, ``--max-distance``) all passed;
- ``cams[name].keep``: the same with that camera's own visible fraction (formats that annotate per image);
- ``visible_fraction`` (best camera, NaN counted as 0), ``seen`` (a LiDAR return or a visible pixel),
  ``n_points`` (LiDAR returns on the actor, from the per-point instance ids), ``distance`` (ego origin to the box
  centre), the boxes in world, ego, LiDAR and camera frames.

Cameras whose exported image is rectified (``pinhole=``) get their projected boxes, truncation and in-view flags
recomputed for the pinhole camera with the same K, with the ground truth's own projection
(:func:`annotators.ground_truth.project_boxes`), and their mask boxes from the rectified instance image.
:func:`points_in_boxes` counts any point cloud's points inside boxes (vectorised; used for nuScenes'
``num_lidar_pts``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from annotators.ground_truth import mask_boxes, project_boxes
from simgen.geometry import box_corners

OBJECT_KEYS = ("center_world", "center_ego", "yaw_world", "velocity_world")
CAMERA_KEYS = ("bbox_proj", "bbox_mask", "visible_pixels", "visible_fraction", "truncation", "occlusion", "in_fov",
               "center_sensor", "quat_sensor")


def quat_wxyz_to_R(q: np.ndarray) -> np.ndarray:
    """(…,4) quaternions w, x, y, z -> (…,3,3) rotation matrices."""
    q = np.asarray(q, float)
    return Rotation.from_quat(np.concatenate([q[..., 1:], q[..., :1]], axis=-1).reshape(-1, 4)).as_matrix().reshape(
        q.shape[:-1] + (3, 3))


@dataclass
class CameraObjects:
    """One camera's view of the frame's actors (arrays over the episode's actors)."""

    bbox_proj: np.ndarray  # (A,4) projected 3-D box clipped to the image (continuous pixels), NaN: misses it
    bbox_mask: np.ndarray  # (A,4) tight box of the visible pixels, NaN: none
    visible_pixels: np.ndarray  # (A,)
    visible_fraction: np.ndarray  # (A,) NaN where the amodal footprint is empty
    truncation: np.ndarray  # (A,)
    occlusion: np.ndarray  # (A,) KITTI level 0-3
    in_fov: np.ndarray  # (A,) bool
    center_sensor: np.ndarray  # (A,3) box centre in the optical frame
    quat_sensor: np.ndarray  # (A,4) w, x, y, z box -> optical frame
    keep: np.ndarray  # (A,) bool: class map, --classes and the filters with this camera's visible fraction


@dataclass
class FrameObjects:
    """Frame k's object table (see the module docstring)."""

    k: int
    ids: np.ndarray  # (A,) actor ids
    kinds: list  # (A,) actor kinds
    names: list  # (A,) output class name or None (dropped by the class map)
    dims: np.ndarray  # (A,3) l, w, h
    center_world: np.ndarray  # (A,3) box centre
    yaw_world: np.ndarray  # (A,)
    velocity_world: np.ndarray  # (A,3)
    quat_world: np.ndarray  # (A,4) w, x, y, z: full orientation (yaw, pitch, roll; the yaw alone before format 3)
    center_ego: np.ndarray  # (A,3)
    distance: np.ndarray  # (A,) metres, ego origin to box centre
    n_points: np.ndarray  # (A,) returns on the actor in the export LiDAR (0 without one)
    visible_fraction: np.ndarray  # (A,) best of the table's cameras, NaN as 0
    seen: np.ndarray  # (A,) bool: a LiDAR return or a visible pixel in the table's cameras
    class_ok: np.ndarray  # (A,) bool: mapped to a class and allowed by --classes (never the ego)
    keep: np.ndarray  # (A,) bool: class_ok and the quality filters (best camera)
    cams: dict = field(default_factory=dict)  # camera name -> CameraObjects

    def indices(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Actor indices where ``mask`` (default ``keep``) holds, ascending."""
        return np.nonzero(self.keep if mask is None else mask)[0]


class EpisodeObjects:
    """The object tables of one episode for one export (class names and class filter resolved once)."""

    def __init__(self, reader, *, class_map: dict | None, filters, cameras=(), lidar: str | None = None,
                 pinhole: dict | None = None):
        from simgen.classes import CLASSES

        self.r, self.filters, self.lidar = reader, filters, lidar
        self.cameras = list(cameras)
        self.pinhole = dict(pinhole or {})  # camera -> Rectifier: labels for the rectified (pinhole) image
        r = reader
        if class_map is not None:
            self.names = [class_map.get(kind) for kind in r.kinds]
        else:  # formats labelled with simgen's semantic classes
            sem = r.f["actors/semantic"][:]
            self.names = [CLASSES.get(int(c), ("?",))[0] for c in sem]
        ok = np.array([n is not None and filters.class_ok(kind, n) for kind, n in zip(r.kinds, self.names)], bool)
        if len(ok):
            ok[0] = False  # the ego
        self.class_ok = ok

    def frame(self, k: int) -> FrameObjects:
        r, flt = self.r, self.filters
        o = r.objects(k, OBJECT_KEYS)
        center_ego = o["center_ego"].astype(float)
        dist = np.linalg.norm(center_ego, axis=1)
        npts = (r.row(f"labels/{self.lidar}/n_points", k).astype(np.int64) if self.lidar
                else np.zeros(r.A, np.int64))
        cams, vf_best, seen = {}, np.zeros(r.A), npts > 0
        for cam in self.cameras:
            L = r.labels(cam, k, CAMERA_KEYS)
            rect = self.pinhole.get(cam)
            if rect is not None:  # the exported image is the pinhole image with the same K
                W, H = r.image_size(cam)
                T = np.tile(np.eye(4), (r.A, 1, 1))
                T[:, :3, :3] = quat_wxyz_to_R(L["quat_sensor"])
                T[:, :3, 3] = L["center_sensor"]
                L["bbox_proj"], L["truncation"], L["in_fov"] = project_boxes(r.K(cam, k), None, None,
                                                                             box_corners(T, r.dims), W, H)
                L["bbox_mask"] = mask_boxes(rect.labels(r.instance_image(cam, k)), r.actor_ids)[0]
            vf = np.nan_to_num(L["visible_fraction"].astype(float), nan=0.0)
            vf_best = np.fmax(vf_best, vf)
            seen = seen | (L["visible_pixels"] > 0)
            cams[cam] = CameraObjects(**L, keep=self.class_ok & flt.quality(L["visible_fraction"], npts, dist))
        keep = self.class_ok & flt.quality(vf_best, npts, dist)
        return FrameObjects(k=k, ids=r.actor_ids, kinds=r.kinds, names=self.names, dims=r.dims,
                            center_world=o["center_world"].astype(float), yaw_world=o["yaw_world"].astype(float),
                            velocity_world=o["velocity_world"].astype(float), quat_world=r.quat_world(k),
                            center_ego=center_ego, distance=dist,
                            n_points=npts, visible_fraction=vf_best, seen=seen, class_ok=self.class_ok, keep=keep,
                            cams=cams)


def points_in_boxes(points: np.ndarray, T_frame_from_box: np.ndarray, size_lwh: np.ndarray) -> np.ndarray:
    """(B,) number of ``points`` (N,3) inside each box (centre pose (B,4,4) in the points' frame, size (B,3)),
    faces included (|local| <= size / 2 on every axis, as nuscenes-devkit's ``points_in_box``).  Candidates come
    from a k-d tree ball around each box (scipy ``cKDTree``), then one vectorised test."""
    from scipy.spatial import cKDTree

    T = np.asarray(T_frame_from_box, float).reshape(-1, 4, 4)
    half = np.asarray(size_lwh, float).reshape(-1, 3) / 2.0
    B = len(T)
    pts = np.asarray(points, float).reshape(-1, 3)
    if B == 0 or len(pts) == 0:
        return np.zeros(B, np.int64)
    hits = cKDTree(pts).query_ball_point(T[:, :3, 3], np.linalg.norm(half, axis=1) * (1 + 1e-9) + 1e-9)
    n = np.fromiter((len(h) for h in hits), np.int64, B)
    box = np.repeat(np.arange(B), n)
    idx = np.concatenate([np.asarray(h, np.int64) for h in hits]) if n.sum() else np.zeros(0, np.int64)
    local = np.einsum("nji,nj->ni", T[box, :3, :3], pts[idx] - T[box, :3, 3])  # R^T (p - c)
    inside = np.all(np.abs(local) <= half[box], axis=1)
    return np.bincount(box[inside], minlength=B).astype(np.int64)
