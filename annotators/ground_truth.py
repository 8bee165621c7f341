"""Per-frame ground truth from a :class:`simgen.backends.base.Frame` (never from a backend).

For every actor (dense over the episode's actors; index 0 is the ego, whose labels are empty):
- 3-D boxes (centre, size l/w/h, yaw, velocity) in world, ego and each sensor's frame, with the full orientation
  (yaw, pitch, roll of actors on slopes; convention in :mod:`simgen.records`) as quaternions w, x, y, z next to
  the yaw in the world and ego frames, and as centre + quaternion in each sensor's frame;
- per camera: tight 2-D box of the instance mask, 2-D box of the projected 3-D box (clipped to the image),
  visible and amodal pixel counts, visible fraction = visible / amodal (exact: the amodal count is the actor's
  footprint cast with nothing in front), truncation = share of the projected box's area outside the image,
  KITTI-style occlusion level;
- per LiDAR: number of returns on the actor (from the per-point instance ids);
- ``seen``: whether any sensor sees the actor.  Unseen actors stay in the arrays, flagged, never dropped.

2-D boxes are (x0, y0, x1, y1) in continuous pixel coordinates (pixel i spans [i, i+1)); NaN where undefined.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from simgen.geometry import T_BODY_FROM_OPTICAL, box_corners, invert, project_distorted
from simgen.labels import CameraLabels, FrameLabels, LidarLabels  # noqa: F401  (re-exported: the old import path)
from simgen.records import CameraData, Frame, quat_wxyz

NEAR_M = 0.05  # near plane (m) boxes are clipped to before projection
_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)])
_EDGE_SAMPLES = 17  # points per box edge projected through a distorted lens (which bends the edges)


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


def box_poses(frame: Frame) -> np.ndarray:
    """(A,4,4) T_world_from_box (box centre, full orientation: yaw, pitch, roll) for every actor."""
    return frame.actors.box_poses()


def _quat_wxyz(R: np.ndarray) -> np.ndarray:
    return quat_wxyz(R)


def project_boxes(K: np.ndarray, dist, r_max, corners: np.ndarray, width: int, height: int,
                  near: float = NEAR_M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one box projection of the project (ground truth and exporters): boxes given by their corners (A,8,3)
    in a camera's optical frame, through K (3,3) and the lens ``dist`` (Brown-Conrady k1, k2, p1, p2, k3; None or
    zeros: pinhole; ``r_max`` see :func:`simgen.geometry.distort_normalized`), into a ``width`` x ``height`` image.

    Pinhole: the box is clipped to z >= ``near`` (the corners in front plus the 12 edges' crossings of that plane),
    so its projection is the hull of those points.  Distorted: the lens bends edges, so points along them are
    projected.  Returns (bbox_proj (A,4) float32 clipped to the image, NaN where it misses it; truncation (A,)
    float32 = share of the unclipped projected box's area outside the image, NaN where nothing is in front;
    in_fov (A,) bool = the projected box overlaps the image).  Vectorised over boxes.
    """
    c = np.asarray(corners, float).reshape(-1, 8, 3)
    A = len(c)
    if dist is not None and np.any(dist):
        t = np.linspace(0.0, 1.0, _EDGE_SAMPLES)[None, None, :, None]
        a, b = c[:, _EDGES[:, 0]][:, :, None, :], c[:, _EDGES[:, 1]][:, :, None, :]
        pts = (a + t * (b - a)).reshape(A, -1, 3)
        valid = pts[..., 2] >= near
    else:
        a, b = c[:, _EDGES[:, 0]], c[:, _EDGES[:, 1]]
        za, zb = a[..., 2] - near, b[..., 2] - near
        cross = za * zb < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            tt = np.where(cross, za / np.where(cross, za - zb, 1.0), 0.0)
        pts = np.concatenate([c, a + tt[..., None] * (b - a)], axis=1)  # (A,20,3)
        valid = np.concatenate([c[..., 2] >= near, cross], axis=1)
    pts = np.where(valid[..., None], pts, np.array([0.0, 0.0, 1.0]))  # masked points: harmless, ignored below
    uv, _ = project_distorted(K, dist, pts.reshape(-1, 3), r_max)
    uv = uv.reshape(A, -1, 2)
    lo = np.where(valid[..., None], uv, np.inf).min(axis=1) if A else np.zeros((0, 2))
    hi = np.where(valid[..., None], uv, -np.inf).max(axis=1) if A else np.zeros((0, 2))
    x0, y0, x1, y1 = lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]
    has = valid.any(axis=1)
    with np.errstate(invalid="ignore"):
        area = np.maximum((x1 - x0) * (y1 - y0), 1e-9)
        cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
        cx1, cy1 = np.minimum(x1, width), np.minimum(y1, height)
        inside = np.maximum(cx1 - cx0, 0) * np.maximum(cy1 - cy0, 0)
        trunc = np.where(has, 1.0 - inside / area, np.nan).astype(np.float32)
    in_fov = has & (inside > 0)
    bbox = np.where(in_fov[:, None], np.stack([cx0, cy0, cx1, cy1], axis=1), np.nan).astype(np.float32)
    return bbox.reshape(A, 4), trunc, in_fov


def mask_boxes(instance: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tight boxes (A,4) float32 of each id's pixels in an instance image, NaN where it has none; pixel counts
    (A,) int32).  Boxes are in continuous pixel coordinates (pixel i spans [i, i+1))."""
    ids = np.asarray(ids, np.int64)
    A = len(ids)
    max_id = int(max(ids.max(initial=0), 0))
    inst = np.asarray(instance)
    counts = np.bincount(np.minimum(inst.ravel(), max_id + 1).astype(np.int64), minlength=max_id + 2)
    slices = ndimage.find_objects(np.where(inst <= max_id, inst, 0).astype(np.int32), max_label=max_id)
    bbox = np.full((A, 4), np.nan, np.float32)
    vis = np.zeros(A, np.int32)
    for k, i in enumerate(ids):  # find_objects' result is a list of slices: reading it is per label
        sl = slices[i - 1] if 0 < i <= len(slices) else None
        if sl is not None:
            bbox[k] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            vis[k] = counts[i]
    return bbox, vis


def camera_labels(cam: CameraData, T_world_from_box: np.ndarray, dims: np.ndarray, ids: np.ndarray) -> CameraLabels:
    A = len(ids)
    H, W = cam.instance.shape
    T_opt_from_world = invert(cam.T_world_from_sensor @ T_BODY_FROM_OPTICAL)
    T_opt_from_box = T_opt_from_world @ T_world_from_box
    corners = box_corners(T_opt_from_box, dims)  # (A,8,3) optical frame
    bbox_proj, trunc, in_fov = project_boxes(cam.K, cam.distortion, cam.r_max, corners, W, H)
    bbox_mask, vis = mask_boxes(cam.instance, ids)
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
        quat_world=_quat_wxyz(T_wb[:, :3, :3]).astype(np.float32), quat_ego=_quat_wxyz(T_eb[:, :3, :3]).astype(np.float32),
    )
