"""The one place where CARLA's left-handed frames become simgen's right-handed ones (and back).

CARLA (Unreal Engine) world and actor frames: x forward, y RIGHT, z up, metres; ``carla.Rotation`` in degrees with
pitch positive nose UP, yaw positive turning towards +y (clockwise seen from above), roll about x.  Its camera and
LiDAR sensor frames are the actor frame (x forward, y right, z up); LiDAR points arrive in that frame.

simgen world, ego, LiDAR and camera *body* frames: x forward, y LEFT, z up (ISO 8855), metres; angles in radians,
right-handed (positive yaw turns left, positive pitch tips the nose DOWN, see :mod:`simgen.geometry`).

The two differ by a mirror of the y axis, S = diag(1, -1, 1):

- points, locations, vectors (velocities, accelerations, extents' centres): ``p_simgen = S p_carla``;
- rigid transforms: ``T_simgen = S T_carla S`` (a proper rotation again);
- rotations: simgen (roll, pitch, yaw) = (+roll, -pitch, -yaw) of CARLA's, converted to radians;
- a bounding box's extent is a half-size, so dims (length, width, height) = 2 * (extent.x, extent.y, extent.z).

When a builtin map is loaded into CARLA from its OpenDRIVE export, the OpenDRIVE inertial frame is simgen's world
frame and CARLA places it at ``Location(x, -y, z)``: a simgen world point (1, -2, 3) is CARLA ``Location(1, 2, 3)``.

Everything here is plain numpy on the numbers; functions that *build* ``carla`` objects take the module as an
argument, so this module imports without the ``carla`` package.
"""
from __future__ import annotations

import numpy as np

from simgen.geometry import euler_from_matrix, pose_matrix

S = np.diag([1.0, -1.0, 1.0])
S4 = np.diag([1.0, -1.0, 1.0, 1.0])


# ------------------------------------------------------------------ points and vectors
def xyz_from_carla(v) -> np.ndarray:
    """(3,) simgen xyz of a ``carla.Location`` / ``carla.Vector3D`` (or anything with .x .y .z)."""
    return np.array([v.x, -v.y, v.z], float)


def points_from_carla(p: np.ndarray) -> np.ndarray:
    """(N,3) CARLA-frame points (or vectors) to the simgen frame (y negated); any float dtype kept."""
    p = np.array(p, copy=True)
    p[..., 1] *= -1
    return p


points_to_carla = points_from_carla  # the mirror is its own inverse


def location_to_carla(xyz, carla):
    """``carla.Location`` of a simgen point (3,)."""
    return carla.Location(x=float(xyz[0]), y=float(-xyz[1]), z=float(xyz[2]))


def vector_to_carla(xyz, carla):
    """``carla.Vector3D`` of a simgen vector (3,) (e.g. a velocity in m/s)."""
    return carla.Vector3D(x=float(xyz[0]), y=float(-xyz[1]), z=float(xyz[2]))


# ------------------------------------------------------------------ rotations
def rpy_from_carla(rot) -> tuple[float, float, float]:
    """simgen (roll, pitch, yaw) in radians of a ``carla.Rotation`` (degrees)."""
    return float(np.deg2rad(rot.roll)), float(np.deg2rad(-rot.pitch)), float(np.deg2rad(-rot.yaw))


def rotation_to_carla(roll: float, pitch: float, yaw: float, carla):
    """``carla.Rotation`` (degrees) of simgen (roll, pitch, yaw) in radians."""
    return carla.Rotation(pitch=float(np.rad2deg(-pitch)), yaw=float(np.rad2deg(-yaw)), roll=float(np.rad2deg(roll)))


def rotation_matrix_from_carla(pitch_deg, yaw_deg, roll_deg) -> np.ndarray:
    """(…,3,3) CARLA-frame rotation matrix of CARLA angles (degrees), as Unreal composes them (what
    ``carla.Transform.get_matrix()`` returns); vectorised."""
    p, y, r = (np.deg2rad(np.asarray(a, float)) for a in (pitch_deg, yaw_deg, roll_deg))
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    R = np.stack([
        np.stack([cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr], -1),
        np.stack([cp * sy, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr], -1),
        np.stack([sp, -cp * sr, cp * cr], -1),
    ], -2)
    return R


# ------------------------------------------------------------------ transforms
def matrix_from_carla(tf) -> np.ndarray:
    """(4,4) simgen transform of a ``carla.Transform`` (maps the actor's simgen-convention local frame to the simgen
    world frame).  For a sensor this is T_world_from_sensor with the sensor body frame x fwd, y left, z up."""
    roll, pitch, yaw = rpy_from_carla(tf.rotation)
    loc = tf.location
    return pose_matrix(loc.x, -loc.y, loc.z, yaw, pitch, roll)


def matrices_from_carla(xyz: np.ndarray, pyr_deg: np.ndarray) -> np.ndarray:
    """(N,4,4) simgen transforms from (N,3) CARLA locations and (N,3) CARLA (pitch, yaw, roll) in degrees."""
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    a = np.deg2rad(np.asarray(pyr_deg, float).reshape(-1, 3))
    return pose_matrix(xyz[:, 0], -xyz[:, 1], xyz[:, 2], -a[:, 1], -a[:, 0], a[:, 2])


def matrix_to_carla(T: np.ndarray, carla):
    """``carla.Transform`` of a simgen (4,4) rigid transform (the inverse of :func:`matrix_from_carla`)."""
    roll, pitch, yaw = euler_from_matrix(np.asarray(T, float))
    return carla.Transform(location_to_carla(np.asarray(T)[:3, 3], carla),
                           rotation_to_carla(float(roll), float(pitch), float(yaw), carla))


def pose_to_carla(x: float, y: float, z: float, yaw: float, carla, pitch: float = 0.0, roll: float = 0.0):
    """``carla.Transform`` of a simgen pose (metres, radians)."""
    return carla.Transform(carla.Location(x=float(x), y=float(-y), z=float(z)),
                           rotation_to_carla(roll, pitch, yaw, carla))


# ------------------------------------------------------------------ bounding boxes
def bbox_dims(bb) -> np.ndarray:
    """(3,) length, width, height (m) of a ``carla.BoundingBox`` (extent is the half-size)."""
    e = bb.extent
    return 2.0 * np.array([e.x, e.y, e.z], float)


def bbox_centre(bb) -> np.ndarray:
    """(3,) box centre in the actor's local frame, simgen convention (y left)."""
    return xyz_from_carla(bb.location)


def T_actor_from_box_bottom(bb, with_rotation: bool = True) -> np.ndarray:
    """(4,4) simgen transform from the frame at the centre of the box's bottom face (x fwd, y left, z up) to the
    actor's local frame; includes the box's own rotation unless ``with_rotation`` is False.  The carla backend
    passes False: vehicles' and walkers' boxes have none, and a ``static.prop``'s box carries the actor's WORLD
    rotation (BoundingBoxCalculator), which is not a rotation relative to the actor."""
    c = bbox_centre(bb)
    roll, pitch, yaw = rpy_from_carla(bb.rotation) if with_rotation else (0.0, 0.0, 0.0)
    T = pose_matrix(c[0], c[1], c[2], yaw, pitch, roll)
    bottom = pose_matrix(0.0, 0.0, -float(bb.extent.z), 0.0)
    return T @ bottom
