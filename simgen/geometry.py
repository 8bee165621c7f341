"""The one place for frame maths: poses, transforms, box corners and pinhole projection.

Conventions (see README "Frames"):
- world, ego and LiDAR frames: right-handed, x forward, y left, z up (ISO 8855), metres;
- rotations given as (roll, pitch, yaw) are intrinsic z-y'-x'' rotations (yaw about z, then pitch about the new
  y, then roll about the new x), right-handed: positive yaw turns left, positive pitch tips the nose *down*;
- camera optical frame: x right, y down, z forward (OpenCV); ``T_body_from_optical`` maps it to the camera body
  frame (x forward, y left, z up);
- transforms are named by what they map: ``T_world_from_ego`` takes ego-frame points to the world frame.

Everything is vectorised: functions accept a leading batch dimension where noted.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

T_BODY_FROM_OPTICAL = np.array(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
T_OPTICAL_FROM_BODY = T_BODY_FROM_OPTICAL.T.copy()


def rotation_matrix(roll, pitch, yaw) -> np.ndarray:
    """(…,3,3) rotation for intrinsic yaw-pitch-roll angles in radians."""
    r, p, y = np.broadcast_arrays(np.asarray(roll, float), np.asarray(pitch, float), np.asarray(yaw, float))
    flat = np.stack([y.ravel(), p.ravel(), r.ravel()], axis=-1)
    return Rotation.from_euler("ZYX", flat).as_matrix().reshape(y.shape + (3, 3))


def pose_matrix(x, y, z, yaw, pitch=0.0, roll=0.0) -> np.ndarray:
    """(…,4,4) homogeneous transform from a position (m) and yaw/pitch/roll (rad)."""
    x, y, z, yaw, pitch, roll = np.broadcast_arrays(*(np.asarray(a, float) for a in (x, y, z, yaw, pitch, roll)))
    T = np.zeros(x.shape + (4, 4))
    if not (np.any(pitch) or np.any(roll)):  # ground vehicles: yaw only (fast path for per-ray poses)
        c, s = np.cos(yaw), np.sin(yaw)
        T[..., 0, 0], T[..., 0, 1], T[..., 1, 0], T[..., 1, 1], T[..., 2, 2] = c, -s, s, c, 1.0
    else:
        T[..., :3, :3] = rotation_matrix(roll, pitch, yaw)
    T[..., 0, 3], T[..., 1, 3], T[..., 2, 3] = x, y, z
    T[..., 3, 3] = 1.0
    return T


def euler_from_matrix(T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(roll, pitch, yaw) in radians of a (…,3,3) or (…,4,4) transform."""
    R = np.asarray(T)[..., :3, :3]
    ypr = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_euler("ZYX").reshape(R.shape[:-2] + (3,))
    return ypr[..., 2], ypr[..., 1], ypr[..., 0]


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid (…,4,4) transforms."""
    T = np.asarray(T, float)
    Ti = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    Ti[..., :3, :3] = Rt
    Ti[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    Ti[..., 3, 3] = 1.0
    return Ti


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (4,4) transform to (N,3) points, or (N,4,4) transforms to (N,3) points one each."""
    T = np.asarray(T)
    pts = np.asarray(pts)
    if T.ndim == 2:
        return pts @ T[:3, :3].T + T[:3, 3]
    return np.einsum("nij,nj->ni", T[:, :3, :3], pts) + T[:, :3, 3]


def wrap_angle(a):
    """Wrap radians to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


# Unit box corners, KITTI-like order: 0-3 bottom (front-left, front-right, rear-right, rear-left), 4-7 top.
_UNIT_CORNERS = np.array(
    [[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1], [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], float
) / 2.0


def box_corners(T_frame_from_box: np.ndarray, size_lwh: np.ndarray) -> np.ndarray:
    """Corners (…,8,3) of boxes given their centre pose (…,4,4) and size (…,3) as length, width, height."""
    local = _UNIT_CORNERS * np.asarray(size_lwh, float)[..., None, :]
    T = np.asarray(T_frame_from_box, float)
    return np.einsum("...ij,...kj->...ki", T[..., :3, :3], local) + T[..., None, :3, 3]


def points_in_box(points: np.ndarray, T_frame_from_box: np.ndarray, size_lwh, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of (N,3) points inside one box (centre pose, size), with an optional margin in metres."""
    local = transform_points(invert(T_frame_from_box), points)
    half = np.asarray(size_lwh, float) / 2 + margin
    return np.all(np.abs(local) <= half, axis=-1)


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Pinhole K (3,3) from CARLA's horizontal field of view; square pixels, principal point at the centre.

    Pixel (i, j) covers [i, i+1) x [j, j+1); its centre is at (i + 0.5, j + 0.5).
    """
    f = width / (2.0 * np.tan(np.deg2rad(fov_deg) / 2.0))
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project(K: np.ndarray, pts_optical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N,3) optical-frame points to pixels; returns (N,2) uv and (N,) depth z (m)."""
    z = pts_optical[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (pts_optical[..., :2] / z[..., None]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    return uv, z


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H*W,3) unit ray directions in the optical frame through every pixel centre, row-major."""
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    uu, vv = np.meshgrid(u, v)
    d = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], axis=-1).reshape(-1, 3)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def clip_polygon_near(corners_optical: np.ndarray, near: float = 0.05) -> np.ndarray:
    """Points of a box's edges clipped to z >= near (for projecting boxes that straddle the image plane).

    Returns the corners in front plus the intersections of the 12 box edges with the plane z = near.
    """
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
    c = corners_optical
    pts = [c[c[:, 2] >= near]]
    a, b = c[[e[0] for e in edges]], c[[e[1] for e in edges]]
    za, zb = a[:, 2] - near, b[:, 2] - near
    cross = za * zb < 0
    if np.any(cross):
        t = za[cross] / (za[cross] - zb[cross])
        pts.append(a[cross] + t[:, None] * (b[cross] - a[cross]))
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def distort_normalized(xy: np.ndarray, dist, r_max: float | None = None) -> np.ndarray:
    """Brown–Conrady (OpenCV order k1, k2, p1, p2, k3) on normalised image coordinates (N,2).

    Beyond ``r_max`` (the field of view's edge) the polynomial is continued radially and monotonically, so
    points far outside the image never fold back into it.
    """
    k1, k2, p1, p2, k3 = (float(v) for v in dist)
    xy = np.asarray(xy, float)
    r = np.linalg.norm(xy, axis=-1)
    scale = np.ones_like(r)
    if r_max is not None:
        far = r > r_max
        scale[far] = r[far] / r_max
        xy = np.where(far[..., None], xy / scale[..., None], xy)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1) * scale[..., None]


def project_distorted(K: np.ndarray, dist, pts_optical: np.ndarray, r_max: float | None = None):
    """Like :func:`project` with lens distortion (``dist`` None or all zeros: plain pinhole)."""
    if dist is None or not np.any(dist):
        return project(K, pts_optical)
    z = pts_optical[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = pts_optical[..., :2] / z[..., None]
    xyd = distort_normalized(xy, dist, r_max)
    return xyd * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]]), z


def distorted_pixel_rays(K: np.ndarray, dist, width: int, height: int) -> tuple[np.ndarray, float]:
    """Unit optical-frame rays through every pixel centre of a distorted camera, and the normalised radius of
    the field of view's edge (for :func:`distort_normalized`'s r_max)."""
    if dist is None or not np.any(dist):
        d = pixel_rays(K, width, height)
    else:
        u, v = np.meshgrid(np.arange(width, dtype=np.float64) + 0.5, np.arange(height, dtype=np.float64) + 0.5)
        und = undistort_pixels(np.stack([u.ravel(), v.ravel()], axis=1), K, dist)
        d = np.concatenate([und, np.ones((len(und), 1))], axis=1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
    xy = d[:, :2] / d[:, 2:3]
    return d, float(np.linalg.norm(xy, axis=1).max() * 1.02)


def undistort_normalized(xy_d: np.ndarray, dist, iterations: int = 30) -> np.ndarray:
    """Invert Brown–Conrady on normalised coordinates (N,2) by Newton's method with the analytic Jacobian.

    (OpenCV's fixed-point iteration stops short in the periphery of strongly distorted lenses; Newton converges
    wherever the model is locally invertible.)
    """
    k1, k2, p1, p2, k3 = (float(v) for v in dist)
    xd = np.asarray(xy_d, np.float64)
    x, y = xd[:, 0].copy(), xd[:, 1].copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        rad = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2**3
        D = 2 * k1 + 4 * k2 * r2 + 6 * k3 * r2 * r2
        fx = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd[:, 0]
        fy = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - xd[:, 1]
        a = rad + D * x * x + 2 * p1 * y + 6 * p2 * x
        b = D * x * y + 2 * p1 * x + 2 * p2 * y
        c = D * x * y + 2 * p1 * x + 2 * p2 * y
        d = rad + D * y * y + 6 * p1 * y + 2 * p2 * x
        det = a * d - b * c
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        dx = (d * fx - b * fy) / det
        dy = (-c * fx + a * fy) / det
        n = np.hypot(dx, dy)
        lim = 0.25 * (1.0 + np.hypot(x, y))  # damped: no step longer than a quarter of the radius (+0.25)
        sc = np.where(n > lim, lim / np.maximum(n, 1e-300), 1.0)
        x -= dx * sc
        y -= dy * sc
        if max(np.abs(fx).max(initial=0.0), np.abs(fy).max(initial=0.0)) < 1e-12:
            break
    return np.stack([x, y], axis=1)


def undistort_pixels(uv: np.ndarray, K: np.ndarray, dist) -> np.ndarray:
    """Normalised undistorted coordinates (N,2) of distorted pixel positions (N,2)."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    xy_d = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1]], axis=1)
    return undistort_normalized(xy_d, dist)


def box_edge_points(corners: np.ndarray, n: int = 9) -> np.ndarray:
    """(12*n, 3) points along the 12 edges of a box given by its 8 corners (KITTI order, see box_corners)."""
    edges = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)])
    t = np.linspace(0.0, 1.0, n)[None, :, None]
    a, b = corners[edges[:, 0]][:, None, :], corners[edges[:, 1]][:, None, :]
    return (a + t * (b - a)).reshape(-1, 3)
