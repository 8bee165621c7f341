"""Per-frame ground truth from a :class:`simgen.backends.base.Frame` (never from a backend).

For every actor (dense over the episode's actors; index 0 is the ego, whose labels are empty):
- 3-D boxes (centre, size l/w/h, yaw, velocity) in world, ego and each sensor's frame (sensor frames as centre +
  quaternion w, x, y, z, since sensors may be pitched);
- per camera: tight 2-D box of the instance mask, 2-D box of the projected 3-D box (clipped to the image),
  visible and amodal pixel counts, visible fraction = visible / amodal (exact: the amodal count is the actor's
  footprint cast with nothing in front), truncation = share of the projected box's area outside the image,
  KITTI-style occlusion level;
- per LiDAR: number of returns on the actor (from the per-point instance ids);
- ``seen``: whether any sensor sees the actor.  Unseen actors stay in the arrays, flagged, never dropped.

2-D boxes are (x0, y0, x1, y1) in continuous pixel coordinates (pixel i spans [i, i+1)); NaN where undefined.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from simgen.records import CameraData, Frame
from simgen.geometry import (T_BODY_FROM_OPTICAL, box_corners, box_edge_points, clip_polygon_near, invert, pose_matrix,
                             project_distorted)


def occlusion_level(visible_fraction: np.ndarray, lidar_points: np.ndarray, in_view: np.ndarray) -> np.ndarray:
    """KITTI convention: 0 fully visible, 1 partly occluded, 2 largely occluded, 3 unknown.

    ≥ 0.8 of the amodal footprint visible → 0, ≥ 0.3 → 1, any pixel or any LiDAR return → 2, otherwise 3.
    """
    v = np.nan_to_num(visible_fraction, nan=0.0)
    lvl = np.full(v.shape, 3, np.uint8)
    lvl[(v > 0) | (lidar_points > 0)] = 2
    lvl[v >= 0.3] = 1
    lvl[v >= 0.8] = 0
    lvl[~in_view & (lidar_points == 0)] = 3
    return lvl


@dataclass
class CameraLabels:
    bbox_mask: np.ndarray  # (A,4) float32
    bbox_proj: np.ndarray  # (A,4) float32, clipped to the image
    visible_pixels: np.ndarray  # (A,) int32
    amodal_pixels: np.ndarray  # (A,) int32
    visible_fraction: np.ndarray  # (A,) float32, NaN where amodal is 0
    truncation: np.ndarray  # (A,) float32, NaN where the box is not in front of the camera
    occlusion: np.ndarray  # (A,) uint8
    in_fov: np.ndarray  # (A,) bool: the projected box overlaps the image
    center_sensor: np.ndarray  # (A,3) optical frame
    quat_sensor: np.ndarray  # (A,4) w,x,y,z, box → optical frame


@dataclass
class LidarLabels:
    n_points: np.ndarray  # (A,) int32
    center_sensor: np.ndarray  # (A,3) sensor frame at the frame time
    quat_sensor: np.ndarray  # (A,4)


@dataclass
class FrameLabels:
    center_world: np.ndarray  # (A,3) box centre
    yaw_world: np.ndarray  # (A,)
    size: np.ndarray  # (A,3) l, w, h
    velocity_world: np.ndarray  # (A,3)
    center_ego: np.ndarray
    yaw_ego: np.ndarray
    velocity_ego: np.ndarray
    seen: np.ndarray  # (A,) bool
    cameras: dict[str, CameraLabels]
    lidars: dict[str, LidarLabels]


def box_poses(frame: Frame) -> np.ndarray:
    """(A,4,4) T_world_from_box (box centre) for every actor."""
    p, dims = frame.actors.pose, frame.actors.dims
    return pose_matrix(p[:, 0], p[:, 1], p[:, 2] + dims[:, 2] / 2, p[:, 3])


def _quat_wxyz(R: np.ndarray) -> np.ndarray:
    q = Rotation.from_matrix(R).as_quat()  # x, y, z, w
    return np.concatenate([q[:, 3:], q[:, :3]], axis=1)


def camera_labels(cam: CameraData, T_world_from_box: np.ndarray, dims: np.ndarray, ids: np.ndarray) -> CameraLabels:
    A = len(ids)
    H, W = cam.instance.shape
    T_opt_from_world = invert(cam.T_world_from_sensor @ T_BODY_FROM_OPTICAL)
    T_opt_from_box = T_opt_from_world @ T_world_from_box
    corners = box_corners(T_opt_from_box, dims)  # (A,8,3) optical frame
    bbox_proj = np.full((A, 4), np.nan, np.float32)
    trunc = np.full(A, np.nan, np.float32)
    distorted = cam.distortion is not None and np.any(cam.distortion)
    for k in range(A):
        pts = clip_polygon_near(corners[k], near=0.05)
        if distorted:  # the lens bends box edges: project points along them
            pts = box_edge_points(corners[k], 17)
            pts = pts[pts[:, 2] >= 0.05]
        if len(pts) == 0:
            continue
        uv, _ = project_distorted(cam.K, cam.distortion, pts, cam.r_max)
        x0, y0 = uv.min(axis=0)
        x1, y1 = uv.max(axis=0)
        area = max((x1 - x0) * (y1 - y0), 1e-9)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        inside = max(cx1 - cx0, 0) * max(cy1 - cy0, 0)
        trunc[k] = 1.0 - inside / area
        if inside > 0:
            bbox_proj[k] = (cx0, cy0, cx1, cy1)
    in_fov = ~np.isnan(bbox_proj[:, 0])
    max_id = int(ids.max()) if A else 0
    inst = cam.instance
    counts = np.bincount(np.minimum(inst.ravel(), max_id + 1), minlength=max_id + 2)
    slices = ndimage.find_objects(np.where(inst <= max_id, inst, 0).astype(np.int32), max_label=max_id)
    bbox_mask = np.full((A, 4), np.nan, np.float32)
    vis = np.zeros(A, np.int32)
    for k, i in enumerate(ids):
        sl = slices[i - 1] if 0 < i <= len(slices) else None
        if sl is not None:
            bbox_mask[k] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            vis[k] = counts[i]
    amodal = np.array([cam.amodal_pixels.get(int(i), 0) for i in ids], np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        vf = np.where(amodal > 0, vis / np.maximum(amodal, 1), np.nan).astype(np.float32)
    q = _quat_wxyz(T_opt_from_box[:, :3, :3]) if A else np.zeros((0, 4))
    return CameraLabels(bbox_mask, bbox_proj, vis, amodal, vf, trunc, np.zeros(A, np.uint8), in_fov,
                        T_opt_from_box[:, :3, 3].astype(np.float32), q.astype(np.float32))


def annotate(frame: Frame) -> FrameLabels:
    st = frame.actors
    ids = st.ids
    A = len(ids)
    T_wb = box_poses(frame)
    T_ew = invert(frame.T_world_from_ego)
    T_eb = T_ew @ T_wb
    yaw_ego = np.arctan2(T_eb[:, 1, 0], T_eb[:, 0, 0])
    vel_ego = st.velocity @ T_ew[:3, :3].T
    lidars: dict[str, LidarLabels] = {}
    total_pts = np.zeros(A, np.int32)
    for name, ld in frame.lidars.items():
        max_id = int(ids.max())
        counts = np.bincount(np.minimum(ld.instance, max_id + 1).astype(np.int64), minlength=max_id + 2)
        n = counts[ids].astype(np.int32)
        n[0] = 0
        total_pts += n
        T_sb = invert(ld.T_world_from_sensor) @ T_wb
        lidars[name] = LidarLabels(n, T_sb[:, :3, 3].astype(np.float32), _quat_wxyz(T_sb[:, :3, :3]).astype(np.float32))
    cameras: dict[str, CameraLabels] = {}
    seen = total_pts > 0
    for name, cam in frame.cameras.items():
        cl = camera_labels(cam, T_wb, st.dims, ids)
        cl.visible_pixels[0] = 0
        cl.amodal_pixels[0] = 0
        cl.visible_fraction[0] = np.nan
        cl.in_fov[0] = False
        cameras[name] = cl
        seen |= cl.visible_pixels > 0
    for cl in cameras.values():
        cl.occlusion = occlusion_level(cl.visible_fraction, total_pts, cl.in_fov)
    seen[0] = False
    return FrameLabels(
        center_world=T_wb[:, :3, 3].astype(np.float32), yaw_world=st.pose[:, 3].astype(np.float32),
        size=st.dims.astype(np.float32), velocity_world=st.velocity.astype(np.float32),
        center_ego=T_eb[:, :3, 3].astype(np.float32), yaw_ego=yaw_ego.astype(np.float32),
        velocity_ego=vel_ego.astype(np.float32), seen=seen, cameras=cameras, lidars=lidars,
    )
