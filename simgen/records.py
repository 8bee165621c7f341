"""The records every layer exchanges: what a backend produces each tick, independent of how it simulates.

Data flows one way: backends (simulators, CARLA) and sensors produce these records; annotators and writers only
read them.  Nothing here imports a backend, a sensor model or a writer, so every layer can import this module
without an import arrow pointing back up the layering.

- :class:`ActorStates`: per-tick arrays of every actor (the ego is id 1);
- :class:`CameraData`, :class:`LidarData`: one sensor's data at the frame's time;
- :class:`Frame`: one tick (actors, lights, collisions, events, sensor data, environment values applied);
- :class:`ActorInfo`, :class:`StaticInfo`: per-episode facts a session reports once (``Session.static_info()``).

Orientation convention (one definition for the whole project): an actor's attitude is intrinsic Z-Y-X Euler
angles yaw, pitch, roll (radians) in ISO 8855 axes (x forward, y left, z up), i.e.
``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (``scipy.spatial.transform.Rotation.from_euler("ZYX", [yaw, pitch, roll])``).
So positive pitch is nose *down* and positive roll is the left side *up* (the right side down).  ``pose`` stays
(A,4) x, y, z, yaw for its many readers; ``pitch_roll`` (A,2) adds the rest (None = level).  Pose arrays with six
columns (x, y, z, yaw, pitch, roll; :attr:`ActorStates.pose6`) are what the sensors take; :func:`pose_transform`
turns either width into (…,4,4) transforms.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from simgen.geometry import pose_matrix, wrap_angle


def rotation_zyx(yaw, pitch, roll) -> np.ndarray:
    """(…,3,3) R_world_from_actor = Rz(yaw) Ry(pitch) Rx(roll) in closed form: what
    ``scipy.spatial.transform.Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()`` gives, without its
    per-call cost (the renderer needs it per actor and per LiDAR ray)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    R = np.empty(np.broadcast(cy, cp, cr).shape + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 0, 2] = cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr
    R[..., 1, 0], R[..., 1, 1], R[..., 1, 2] = sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr
    R[..., 2, 0], R[..., 2, 1], R[..., 2, 2] = -sp, cp * sr, cp * cr
    return R


def pose_transform(pose: np.ndarray) -> np.ndarray:
    """(…,4,4) T_world_from_actor of (…,4) x, y, z, yaw or (…,6) x, y, z, yaw, pitch, roll poses (bottom centre)."""
    p = np.asarray(pose, float)
    if p.shape[-1] == 6 and np.any(p[..., 4:6]):
        T = np.zeros(p.shape[:-1] + (4, 4))
        T[..., :3, :3] = rotation_zyx(p[..., 3], p[..., 4], p[..., 5])
        T[..., :3, 3] = p[..., :3]
        T[..., 3, 3] = 1.0
        return T
    return pose_matrix(p[..., 0], p[..., 1], p[..., 2], p[..., 3])  # level: yaw only (exactly as before)


def box_transform(pose: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(A,4,4) T_world_from_box at the box *centre* of bottom-centre poses (A,4 or A,6) with sizes (A,3) l, w, h:
    the centre is half the height up the actor's own z axis (which a pitched or rolled actor tilts)."""
    T = pose_transform(pose)
    T[..., :3, 3] += T[..., :3, 2] * (np.asarray(dims, float)[..., 2:3] / 2)
    return T


def quat_wxyz(R: np.ndarray) -> np.ndarray:
    """(…,4) unit quaternions w, x, y, z (scalar first, w >= 0) of (…,3,3) rotations."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, float)
    if R.size == 0:
        return np.zeros(R.shape[:-2] + (4,))
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()  # x, y, z, w
    q = np.concatenate([q[:, 3:], q[:, :3]], axis=1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(R.shape[:-2] + (4,))


@dataclass(frozen=True)
class ActorStates:
    """Per-tick snapshot of every actor, as arrays (index i is actor ``ids[i]``)."""

    ids: np.ndarray  # (A,) int32 instance ids, ego = 1
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    semantic: np.ndarray  # (A,) uint8
    pose: np.ndarray  # (A,4) x, y, z (bottom centre), yaw
    velocity: np.ndarray  # (A,3) m/s, world frame
    accel: np.ndarray  # (A,) longitudinal, m/s^2
    dims: np.ndarray  # (A,3) length, width, height
    door: np.ndarray | None = None  # (A,) door opening angle (rad); 0 closed, > 0 left door, < 0 right door
    pitch_roll: np.ndarray | None = None  # (A,2) pitch, roll (rad, module docstring); None = level (zeros)

    @property
    def attitude(self) -> np.ndarray:
        """(A,2) pitch, roll in radians (zeros where the backend reports none)."""
        if self.pitch_roll is None:
            return np.zeros((len(self.ids), 2))
        return np.asarray(self.pitch_roll, float).reshape(-1, 2)

    @property
    def pose6(self) -> np.ndarray:
        """(A,6) x, y, z (bottom centre), yaw, pitch, roll."""
        return np.concatenate([np.asarray(self.pose, float).reshape(-1, 4), self.attitude], axis=1)

    def rotations(self) -> np.ndarray:
        """(A,3,3) R_world_from_actor (ZYX yaw-pitch-roll, ISO 8855 axes)."""
        return pose_transform(self.pose6)[:, :3, :3]

    def quaternions(self) -> np.ndarray:
        """(A,4) w, x, y, z of :meth:`rotations` (scalar first, w >= 0)."""
        return quat_wxyz(self.rotations())

    def box_poses(self) -> np.ndarray:
        """(A,4,4) T_world_from_box at each actor's box centre, with the full orientation."""
        return box_transform(self.pose6, self.dims)

    def interpolate(self, other: "ActorStates", w: float) -> "ActorStates":
        """Poses between self (w=0) and other (w=1); yaw along the shorter arc; pitch and roll linearly."""
        p = self.pose + w * (other.pose - self.pose)
        p[:, 3] = self.pose[:, 3] + w * wrap_angle(other.pose[:, 3] - self.pose[:, 3])
        v = self.velocity + w * (other.velocity - self.velocity)
        pr = None
        if self.pitch_roll is not None or other.pitch_roll is not None:
            a, b = self.attitude, other.attitude
            pr = a + w * wrap_angle(b - a)
        return dataclasses.replace(other, pose=p, velocity=v, pitch_roll=pr)


@dataclass
class CameraData:
    """One camera's images at the frame's time.  Optical frame: x right, y down, z forward."""

    K: np.ndarray  # (3,3)
    T_world_from_sensor: np.ndarray  # (4,4) camera body frame (x fwd, y left, z up) to world
    rgb: np.ndarray  # (H,W,3) uint8
    depth: np.ndarray  # (H,W) float32, metres along the optical axis (z-depth); 1000 where nothing is hit
    semantic: np.ndarray  # (H,W) uint8 CARLA class ids
    instance: np.ndarray  # (H,W) uint32 actor ids, 0 = none
    amodal_pixels: dict[int, int] = field(default_factory=dict)  # actor id -> pixels it covers with nothing in front
    distortion: np.ndarray | None = None  # (5,) Brown–Conrady k1, k2, p1, p2, k3; None = pinhole
    r_max: float | None = None  # normalised radius of the field of view's edge (for projecting with distortion)


@dataclass
class LidarData:
    """One LiDAR sweep over (t_prev, t].  Points are in the sensor frame *at each point's firing time*."""

    T_world_from_sensor: np.ndarray  # (4,4) at the frame time t (end of the sweep)
    T_world_from_sensor_start: np.ndarray  # (4,4) at t_prev (start of the sweep); interpolate for deskewing
    xyz: np.ndarray  # (N,3) float32
    intensity: np.ndarray  # (N,) float32 in [0,1]
    semantic: np.ndarray  # (N,) uint8
    instance: np.ndarray  # (N,) uint32
    time_s: np.ndarray  # (N,) float64 absolute simulation time of each return
    channel: np.ndarray  # (N,) uint16 laser index, 0 = top
    false_return: np.ndarray | None = None  # (N,) uint8: 0 a real surface, 1 fog backscatter, 2 rain/snow clutter


@dataclass
class Frame:
    index: int
    time_s: float
    T_world_from_ego: np.ndarray  # (4,4), with the ego's pitch and roll on slopes (= pose_transform(actors.pose6[0]))
    actors: ActorStates  # every actor including the ego (id 1)
    lights: dict[str, str]  # traffic light id -> red/yellow/green
    collisions: list[tuple[int, int]]
    events: list[tuple[float, str, str]]  # events fired during this tick: (time, actor, event)
    T_ego_from_sensor: dict[str, np.ndarray]
    cameras: dict[str, CameraData] = field(default_factory=dict)
    lidars: dict[str, LidarData] = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)  # environment values used by this frame (weather ...)


@dataclass(frozen=True)
class ActorInfo:
    """What does not change about an actor during an episode (``dims`` are what was rendered)."""

    id: int
    name: str
    kind: str
    semantic: int
    dims: tuple[float, float, float]  # length, width, height (m)
    colour: tuple[float, float, float]  # linear RGB; NaN where the backend has no colour for it
    is_ego: bool

    def to_dict(self) -> dict:
        return {"id": int(self.id), "name": self.name, "kind": self.kind, "semantic": int(self.semantic),
                "dims": [float(x) for x in self.dims], "colour": [float(x) for x in self.colour], "is_ego": bool(self.is_ego)}


@dataclass(frozen=True)
class StaticInfo:
    """What a session reports once per episode (``Session.static_info()``): the map, every actor, the lights.

    Writers take its :meth:`to_dict` form (that is what the episode file stores as ``static_json``); item access
    (``info["actors"]``) reads that form too, for code written against the older dict."""

    map: str
    actors: tuple[ActorInfo, ...]
    traffic_lights: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"map": self.map, "actors": [a.to_dict() for a in self.actors], "traffic_lights": list(self.traffic_lights)}

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def get(self, key: str, default=None):
        return self.to_dict().get(key, default)
