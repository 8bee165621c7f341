"""Shared machinery of the exporters: episode discovery, streaming readers, deskewing, filters, class maps,
deterministic atomic file writing and the output-folder policy.

Frames and conventions (see ``simgen.geometry``): world, ego and LiDAR frames x forward, y left, z up; camera
optical frame x right, y down, z forward.  simgen's intrinsics and 2-D boxes use *continuous* pixel coordinates
(pixel i spans [i, i+1), its centre is i + 0.5).  KITTI and nuScenes use the OpenCV convention (the centre of
pixel i is at i), so :func:`opencv_K` and :func:`to_opencv_box` shift by half a pixel; COCO's bbox convention is
the continuous one and needs no shift.

Nothing here holds more than one frame's images or points in memory: per-frame arrays are read from HDF5 on
demand; per-actor label tables are read in blocks of :data:`BLOCK` frames (the files' own chunk size).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from simgen.errors import InputError
from simgen.geometry import T_BODY_FROM_OPTICAL, invert, transform_points, wrap_angle
from simgen.records import pose_transform

BLOCK = 256
DESKEW_MODES = ("full", "ego", "none")
# Namespace of every deterministic token/uuid the exporters make (uuid5 of stable keys).
SIMGEN_NS = uuid.UUID("6f1c0a52-6f0e-5b3c-9d0e-73696d67656e")


# ----------------------------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class EpisodeRef:
    """A complete episode file found under the input: its path, its path relative to the input, a stable uid."""

    path: Path
    rel: str
    uid: str


def find_episodes(src: str | Path) -> tuple[list[EpisodeRef], list[str]]:
    """Complete episode files under ``src`` (a run folder, a batch folder or one ``.h5`` file), sorted by path.

    Discovery is :func:`simgen.io.episode.find_episodes` (every file opened with the validating reader): unfinished
    ``.partial`` files, files that are not simgen episodes and incomplete ones (interrupted runs) are skipped; a
    complete episode that fails validation is refused (``EpisodeError``, an ``InputError``).
    Returns (episodes, skipped) where ``skipped`` holds one line per skipped file.
    """
    from simgen.io import episode as episode_io

    src = Path(src)
    paths, passed_over = episode_io.find_episodes(src)  # InputError if src is missing; EpisodeError if corrupt
    root = src.parent if src.is_file() else src
    skipped = [f"{p.relative_to(root).as_posix()}: {why}" for p, why in passed_over]
    found = []
    for p in paths:
        rel = p.relative_to(root).as_posix()
        with episode_io.Episode(p) as ep:
            a = ep.f.attrs
            key = "|".join(str(a.get(k, "")) for k in ("scenario_name", "seed_entropy", "seed_spawn_key",
                                                        "episode_index", "n_frames"))
        uid = hashlib.sha256(f"{rel}|{key}".encode()).hexdigest()[:16]
        found.append(EpisodeRef(p, rel, uid))
    if not found:
        extra = f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""
        raise InputError(f"no complete simgen episode files (**/*.h5) found{extra}", file=str(src))
    return found, skipped


def split_of(n_episodes: int, val_fraction: float) -> list[str]:
    """Train/val per episode position: the one rule in :func:`simgen.io.splits.split_of`, shared with
    :class:`simgen.io.FrameDataset`, so a model trained on the loader's split never sees an exported val episode."""
    from simgen.io.splits import split_of as shared

    return shared(n_episodes, val_fraction)


# ------------------------------------------------------------------------------------------------ deskewing
def sensor_poses_at(w: np.ndarray, T_world_from_sensor_start: np.ndarray, T_world_from_sensor: np.ndarray,
                    T_ego_from_sensor: np.ndarray) -> np.ndarray:
    """(N,4,4) T_world_from_sensor at sweep fractions ``w`` (0 = sweep start, 1 = frame time).

    The *ego* pose is interpolated (translation linearly, rotation by slerp) and the rigid mount applied, which is
    exact for simgen's builtin backend (it interpolates the ego's x, y, z, yaw linearly) and a first-order model for
    any other source.
    """
    T_se = invert(T_ego_from_sensor)
    E0 = np.asarray(T_world_from_sensor_start, float) @ T_se
    E1 = np.asarray(T_world_from_sensor, float) @ T_se
    w = np.asarray(w, float)
    rel = Rotation.from_matrix(E0[:3, :3].T @ E1[:3, :3]).as_rotvec()
    E = np.zeros((len(w), 4, 4))
    E[:, :3, :3] = E0[:3, :3] @ Rotation.from_rotvec(w[:, None] * rel[None, :]).as_matrix()
    E[:, :3, 3] = E0[:3, 3] + w[:, None] * (E1[:3, 3] - E0[:3, 3])
    E[:, 3, 3] = 1.0
    return E @ np.asarray(T_ego_from_sensor, float)


def sweep_fraction(time_s: np.ndarray, t_start: float, t_end: float) -> np.ndarray:
    """Per-point fraction of the sweep (0 at ``t_start``, 1 at ``t_end``), clipped to [0, 1]."""
    span = max(float(t_end) - float(t_start), 1e-12)
    return np.clip((np.asarray(time_s, float) - float(t_start)) / span, 0.0, 1.0)


def interp_actor_poses(p0: np.ndarray, p1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N,4|6) bottom-centre poses x, y, z, yaw [, pitch, roll] interpolated per point: p0, p1 (N,4|6), w (N,)
    (angles the short way), as the builtin backend interpolates them."""
    out = p0 + w[:, None] * (p1 - p0)
    out[:, 3:] = p0[:, 3:] + w[:, None] * wrap_angle(p1[:, 3:] - p0[:, 3:])
    return out


def deskew(xyz: np.ndarray, time_s: np.ndarray, *, T_world_from_sensor_start: np.ndarray,
           T_world_from_sensor: np.ndarray, T_ego_from_sensor: np.ndarray, t_start: float, t_end: float,
           instance: np.ndarray | None = None, actor_ids: np.ndarray | None = None,
           actor_pose_start: np.ndarray | None = None, actor_pose_end: np.ndarray | None = None) -> np.ndarray:
    """LiDAR points (N,3), each in the sensor frame at its own firing time, re-expressed in the sensor frame at
    the frame time ``t_end`` (the pose ``T_world_from_sensor``), so that one pose per scan is right.

    Ego motion is removed for every point.  When ``instance``/``actor_ids``/``actor_pose_*`` are given (mode
    ``full``), points on actors are also carried rigidly with their actor from its pose at the firing time to its
    pose at ``t_end`` (actor poses (A,4) bottom-centre x, y, z, yaw, or (A,6) with pitch and roll, at ``t_start``
    and ``t_end``, interpolated like the builtin backend does), so points and frame-time boxes agree exactly.
    Returns float64 (N,3).
    """
    xyz = np.asarray(xyz, float)
    if len(xyz) == 0:
        return xyz.reshape(0, 3)
    w = sweep_fraction(time_s, t_start, t_end)
    uw, inv = np.unique(w, return_inverse=True)
    T_ws = sensor_poses_at(uw, T_world_from_sensor_start, T_world_from_sensor, T_ego_from_sensor)[inv.ravel()]
    world = transform_points(T_ws, xyz)
    if instance is not None and actor_ids is not None and len(actor_ids) > 1:
        ids = np.asarray(actor_ids, np.int64)
        lut = np.full(int(max(ids.max(), 0)) + 2, -1, np.int64)
        lut[ids[1:]] = np.arange(1, len(ids))  # index 0 is the ego: never moved
        inst = np.asarray(instance, np.int64)
        idx = np.where(inst < len(lut) - 1, lut[np.minimum(inst, len(lut) - 1)], -1)
        on = np.nonzero(idx > 0)[0]
        if len(on):
            a = idx[on]
            P = interp_actor_poses(actor_pose_start[a], actor_pose_end[a], w[on])
            T_wa_fire = pose_transform(P)
            local = transform_points(invert(T_wa_fire), world[on])
            T_wa_end = pose_transform(actor_pose_end[a])
            world[on] = transform_points(T_wa_end, local)
    return transform_points(invert(T_world_from_sensor), world)


# ------------------------------------------------------------------------------------------------- reading
class _Rows:
    """Row k of a (n_frames, ...) dataset, read one block of frames at a time."""

    def __init__(self, ds):
        self.ds, self.lo, self.buf = ds, -1, None

    def __getitem__(self, k: int):
        lo = (k // BLOCK) * BLOCK
        if lo != self.lo:
            self.buf, self.lo = self.ds[lo:lo + BLOCK], lo
        return self.buf[k - lo]


class EpisodeReader:
    """Streaming access to one episode file for exporters (one frame's images/points at a time)."""

    def __init__(self, ref: EpisodeRef):
        from simgen.io.episode import Episode

        self.ref = ref
        self.ep = Episode(ref.path)
        f = self.f = self.ep.f
        self.n = self.ep.n_frames
        a = f.attrs
        self.tick_hz = float(a.get("tick_hz", 0.0)) or None
        self.map_name = str(a.get("map", ""))
        self.scenario_name = str(a.get("scenario_name", ""))
        self.actor_ids = f["actors/id"][:].astype(np.int64)
        self.kinds = [str(k) for k in f["actors/kind"].asstr()[:]]
        self.names = [str(k) for k in f["actors/name"].asstr()[:]]
        self.dims = f["actors/dims"][:].astype(np.float64)  # (A,3) l, w, h
        self.A = len(self.actor_ids)
        self.cameras = self.ep.sensors("camera")
        self.lidars = self.ep.sensors("lidar")
        self._rows: dict[str, _Rows] = {}

    def close(self) -> None:
        self.ep.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def row(self, name: str, k: int):
        r = self._rows.get(name)
        if r is None:
            r = self._rows[name] = _Rows(self.f[name])
        return r[k]

    def has(self, name: str) -> bool:
        return name in self.f

    def T_ego_from_sensor(self, sensor: str) -> np.ndarray:
        return self.f[f"sensors/{sensor}/T_ego_from_sensor"][:]

    def time_s(self, k: int) -> float:
        return float(self.row("frames/time_s", k))

    def T_world_from_ego(self, k: int) -> np.ndarray:
        return self.row("frames/T_world_from_ego", k)

    def rgb(self, cam: str, k: int) -> np.ndarray:
        return self.f[f"sensors/{cam}/rgb"][k]

    def instance_image(self, cam: str, k: int) -> np.ndarray:
        return self.f[f"sensors/{cam}/instance"][k]

    def K(self, cam: str, k: int) -> np.ndarray:
        return self.row(f"sensors/{cam}/K", k)

    def image_size(self, cam: str) -> tuple[int, int]:
        H, W = self.f[f"sensors/{cam}/rgb"].shape[1:3]
        return int(W), int(H)

    def labels(self, sensor: str, k: int, keys) -> dict:
        return {key: self.row(f"labels/{sensor}/{key}", k) for key in keys}

    def objects(self, k: int, keys=("center_world", "center_ego", "yaw_world", "velocity_world", "seen")) -> dict:
        return {key: self.row(f"labels/objects/{key}", k) for key in keys}

    def pose6(self, k: int) -> np.ndarray:
        """(A,6) bottom-centre poses x, y, z, yaw, pitch, roll of frame k (pitch = roll = 0 in files older than
        format_version 3, which stored none: level)."""
        pr = self.row("actors/pitch_roll", k) if self.has("actors/pitch_roll") else np.zeros((self.A, 2))
        return np.concatenate([self.row("actors/pose", k), pr], axis=1)

    def quat_world(self, k: int) -> np.ndarray:
        """(A,4) w, x, y, z of every box's full orientation in the world frame (the yaw alone before format 3)."""
        if self.has("labels/objects/quat_world"):
            return self.row("labels/objects/quat_world", k).astype(float)
        yaw = self.row("labels/objects/yaw_world", k).astype(float)
        return np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)

    def actor_poses(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(A,6) bottom-centre poses x, y, z, yaw, pitch, roll at the sweep start and at frame k (the sweep before
        frame 0 starts from the pose extrapolated back at constant velocity, as the builtin backend does)."""
        now = self.pose6(k)
        if k > 0:
            return self.pose6(k - 1), now
        prev = now.copy()
        dt = 1.0 / self.tick_hz if self.tick_hz else 0.0
        prev[:, :3] -= self.row("actors/velocity", 0) * dt
        return prev, now

    def lidar(self, name: str, k: int, deskew_mode: str = "full") -> dict:
        """Frame k of LiDAR ``name``: xyz (N,3 float64, sensor frame at the frame time unless mode 'none'),
        intensity, semantic, instance, channel, time_s and the sensor pose at the frame time."""
        if deskew_mode not in DESKEW_MODES:
            raise InputError(f"got {deskew_mode!r}; allowed: {', '.join(DESKEW_MODES)}", key="--deskew")
        g = self.f[f"sensors/{name}"]
        a, b = (int(v) for v in g["offsets"][k:k + 2])
        out = {key: g[key][a:b] for key in ("xyz", "intensity", "semantic", "instance", "time_s", "channel")}
        T_end = self.row(f"sensors/{name}/T_world_from_sensor", k)
        T_start = self.row(f"sensors/{name}/T_world_from_sensor_start", k)
        out["T_world_from_sensor"] = T_end
        xyz = out["xyz"].astype(np.float64)
        if deskew_mode != "none":
            t_end = self.time_s(k)
            t_start = t_end - (1.0 / self.tick_hz if self.tick_hz else 0.0)
            kw = {}
            if deskew_mode == "full":
                p0, p1 = self.actor_poses(k)
                kw = dict(instance=out["instance"], actor_ids=self.actor_ids, actor_pose_start=p0, actor_pose_end=p1)
            xyz = deskew(xyz, out["time_s"], T_world_from_sensor_start=T_start, T_world_from_sensor=T_end,
                         T_ego_from_sensor=self.T_ego_from_sensor(name), t_start=t_start, t_end=t_end, **kw)
        out["xyz"] = xyz
        return out


# ---------------------------------------------------------------------------------------------- lens model
def camera_distortion(reader: "EpisodeReader", cam: str) -> np.ndarray | None:
    """Brown-Conrady coefficients (k1, k2, p1, p2, k3) of a camera from its stored attributes, or None (pinhole)."""
    attrs = json.loads(reader.f[f"sensors/{cam}"].attrs.get("attributes_json", "{}"))
    d = np.asarray(attrs.get("distortion") or [0.0] * 5, float)
    return d if np.any(d) else None


class Rectifier:
    """Resamples a distorted camera's images to the pinhole camera with the same K (KITTI's and nuScenes' images are
    rectified).  Uses simgen's own lens model (``simgen.geometry.distort_normalized``), so rectified pixels agree
    with pinhole projections through K.  ``image`` interpolates bilinearly, ``labels`` takes the nearest pixel."""

    def __init__(self, K: np.ndarray, dist: np.ndarray, width: int, height: int):
        from simgen.geometry import distort_normalized, distorted_pixel_rays

        _, r_max = distorted_pixel_rays(K, dist, width, height)
        u, v = np.meshgrid(np.arange(width, dtype=np.float64) + 0.5, np.arange(height, dtype=np.float64) + 0.5)
        xy = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]], axis=-1).reshape(-1, 2)
        xyd = distort_normalized(xy, dist, r_max)
        # source position in OpenCV pixel coordinates (centre of pixel i at i) for cv2.remap
        self.map_x = (xyd[:, 0] * K[0, 0] + K[0, 2] - 0.5).reshape(height, width).astype(np.float32)
        self.map_y = (xyd[:, 1] * K[1, 1] + K[1, 2] - 0.5).reshape(height, width).astype(np.float32)

    def image(self, img: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.remap(img, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def labels(self, img: np.ndarray) -> np.ndarray:
        import cv2

        src = img.astype(np.int32) if img.dtype == np.uint32 else img
        return cv2.remap(src, self.map_x, self.map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0).astype(img.dtype)


class Rectifiers:
    """One :class:`Rectifier` per (episode, camera), built on first use; ``get`` returns None for pinhole cameras."""

    def __init__(self):
        self.cache: dict = {}

    def get(self, reader: "EpisodeReader", cam: str, k: int = 0) -> "Rectifier | None":
        key = (reader.ref.uid, cam)
        if key not in self.cache:
            dist = camera_distortion(reader, cam)
            W, H = reader.image_size(cam)
            self.cache[key] = None if dist is None else Rectifier(reader.K(cam, k), dist, W, H)
        return self.cache[key]


# ------------------------------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filters:
    """Object filters shared by all formats.

    ``min_visible``: visible fraction of the amodal footprint in the relevant camera (NaN counts as 0);
    ``min_points``: LiDAR returns on the object in the export's LiDAR; ``max_distance``: metres from the ego origin
    to the box centre; ``classes``: actor kinds and/or the format's class names to keep.
    """

    min_visible: float | None = None
    min_points: int | None = None
    max_distance: float | None = None
    classes: frozenset | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.min_visible, self.min_points, self.max_distance, self.classes))

    def quality(self, visible_fraction, n_points, distance) -> np.ndarray:
        """(A,) bool: passes the visibility / points / distance filters."""
        d = np.asarray(distance, float)
        ok = np.ones(d.shape, bool)
        if self.min_visible is not None:
            ok &= np.nan_to_num(np.asarray(visible_fraction, float), nan=0.0) >= self.min_visible
        if self.min_points is not None:
            ok &= np.asarray(n_points) >= self.min_points
        if self.max_distance is not None:
            ok &= d <= self.max_distance
        return ok

    def class_ok(self, kind: str, name: str | None) -> bool:
        return self.classes is None or kind in self.classes or (name is not None and name in self.classes)


def parse_filters(min_visible=None, min_points=None, max_distance=None, classes=None) -> Filters:
    if min_visible is not None and not 0.0 <= float(min_visible) <= 1.0:
        raise InputError(f"got {min_visible}; allowed: 0 to 1", key="--min-visible")
    if min_points is not None and int(min_points) < 0:
        raise InputError(f"got {min_points}; allowed: 0 or more", key="--min-points")
    if max_distance is not None and not float(max_distance) > 0:
        raise InputError(f"got {max_distance}; allowed: greater than 0 (metres)", key="--max-distance")
    cls = None
    if classes is not None:
        items = [c.strip() for c in (classes.split(",") if isinstance(classes, str) else classes)]
        if not items or any(not c for c in items):
            raise InputError(f"got {classes!r}; allowed: a comma-separated list of actor kinds or class names",
                             key="--classes")
        cls = frozenset(items)
    return Filters(None if min_visible is None else float(min_visible), None if min_points is None else int(min_points),
                   None if max_distance is None else float(max_distance), cls)


# ----------------------------------------------------------------------------------------------- class maps
KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
NUSCENES_CATEGORIES = {
    "human.pedestrian.adult": "Adult pedestrian, walking or standing.",
    "human.pedestrian.child": "Child pedestrian.",
    "human.pedestrian.wheelchair": "Person in a wheelchair.",
    "human.pedestrian.stroller": "Stroller or pram pushed by a pedestrian.",
    "human.pedestrian.personal_mobility": "Person on a scooter, skateboard, segway or similar.",
    "human.pedestrian.police_officer": "Police officer on foot.",
    "human.pedestrian.construction_worker": "Construction worker on foot.",
    "animal": "Any animal.",
    "vehicle.car": "Passenger vehicle: saloon, hatchback, estate, van, SUV.",
    "vehicle.motorcycle": "Motorcycle or scooter, with or without rider.",
    "vehicle.bicycle": "Bicycle, with or without rider.",
    "vehicle.bus.bendy": "Articulated bus.",
    "vehicle.bus.rigid": "Rigid (single-body) bus.",
    "vehicle.truck": "Vehicle built to carry cargo: lorry, pick-up, semi-tractor.",
    "vehicle.construction": "Construction or agricultural vehicle.",
    "vehicle.emergency.ambulance": "Ambulance.",
    "vehicle.emergency.police": "Police car or van.",
    "vehicle.trailer": "Trailer pulled by a vehicle.",
    "movable_object.barrier": "Temporary barrier.",
    "movable_object.trafficcone": "Traffic cone.",
    "movable_object.pushable_pullable": "Object a pedestrian can push or pull: cart, bin, dolly.",
    "movable_object.debris": "Loose object on the road: branch, bag, debris.",
    "static_object.bicycle_rack": "Bicycle rack.",
}
CLASS_MAP_SECTIONS = ("kitti", "coco", "nuscenes")
DEFAULT_CLASS_MAP = Path(__file__).with_name("class_map_default.yaml")


def load_class_map(path: str | Path | None, section: str) -> dict[str, str | None]:
    """kind -> class name (or None: drop) for ``section``, from the default map overlaid with ``path``.

    Strict: the file must be a mapping whose keys are sections (kitti, coco, nuscenes), each a mapping from known
    actor kinds to an allowed class name or null.  Kinds a user file leaves out keep the default mapping.
    """
    from simgen.classes import ACTOR_KINDS
    from simgen.spec.schema import load_yaml

    def check(data, file) -> dict:
        if not isinstance(data, dict):
            raise InputError(f"got {type(data).__name__}; allowed: a mapping with keys {', '.join(CLASS_MAP_SECTIONS)}",
                             file=file)
        for sec, body in data.items():
            if sec not in CLASS_MAP_SECTIONS:
                raise InputError(f"unknown section {sec!r}; allowed: {', '.join(CLASS_MAP_SECTIONS)}", file=file, key=str(sec))
            if not isinstance(body, dict):
                raise InputError(f"got {type(body).__name__}; allowed: a mapping of actor kind to class name or null",
                                 file=file, key=sec)
            for kind, name in body.items():
                if kind not in ACTOR_KINDS:
                    raise InputError(f"unknown actor kind {kind!r}; allowed: {', '.join(ACTOR_KINDS)}", file=file,
                                     key=f"{sec}.{kind}")
                if name is None:
                    continue
                if not isinstance(name, str) or not name.strip():
                    raise InputError(f"got {name!r}; allowed: a class name or null", file=file, key=f"{sec}.{kind}")
                allowed = {"kitti": KITTI_TYPES, "nuscenes": tuple(NUSCENES_CATEGORIES)}.get(sec)
                if allowed is not None and name not in allowed:
                    raise InputError(f"got {name!r}; allowed: {', '.join(allowed)} or null", file=file,
                                     key=f"{sec}.{kind}")
        return data

    base = check(load_yaml(DEFAULT_CLASS_MAP, what="class map"), str(DEFAULT_CLASS_MAP))
    out = dict(base.get(section, {}))
    if path is not None:
        user = check(load_yaml(path, what="class map"), str(path))
        out.update(user.get(section, {}))
    missing = [k for k in ACTOR_KINDS if k not in out]
    if missing:
        raise InputError(f"no mapping for kinds {', '.join(missing)}", file=str(path or DEFAULT_CLASS_MAP), key=section)
    return out


# --------------------------------------------------------------------------------------------- conventions
def opencv_K(K: np.ndarray) -> np.ndarray:
    """simgen K (pixel centres at i + 0.5) -> OpenCV/KITTI/nuScenes K (pixel centres at integers)."""
    K = np.array(K, float)
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def to_opencv_box(box) -> np.ndarray:
    """simgen continuous 2-D box (x0, y0, x1, y1) -> the same edges in OpenCV pixel coordinates."""
    return np.asarray(box, float) - 0.5


def T_optical_from_sensor(T_ego_from_camera: np.ndarray, T_ego_from_sensor: np.ndarray) -> np.ndarray:
    """Maps points in a sensor's body frame to a camera's optical frame (both rigidly mounted on the ego)."""
    return invert(np.asarray(T_ego_from_camera) @ T_BODY_FROM_OPTICAL) @ np.asarray(T_ego_from_sensor)


def quat_wxyz(R: np.ndarray) -> np.ndarray:
    """(…,3,3) rotation -> (…,4) unit quaternion w, x, y, z with w >= 0."""
    q = Rotation.from_matrix(np.asarray(R, float).reshape(-1, 3, 3)).as_quat()  # x, y, z, w
    q = np.concatenate([q[:, 3:], q[:, :3]], axis=1)
    q[q[:, 0] < 0] *= -1
    return q.reshape(np.asarray(R).shape[:-2] + (4,))


def encode_image(rgb: np.ndarray, ext: str) -> bytes:
    """Deterministic PNG (lossless; zlib level 1 + RLE: encoding dominates export time) or JPEG (quality 95) bytes of an
    RGB uint8 image."""
    import cv2

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    params = ([cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE] if ext == ".png"
              else [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise RuntimeError(f"image encoding to {ext} failed")
    return buf.tobytes()


def fmt_num(x: float, nd: int) -> str:
    """Fixed-point text without a negative zero."""
    s = f"{float(x):.{nd}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def jnum(x, nd: int = 6):
    """JSON-ready float rounded to ``nd`` decimals (no negative zero)."""
    v = round(float(x), nd)
    return 0.0 if v == 0 else v


def token(*parts) -> str:
    """Deterministic 32-hex token (uuid5 of the stable key ``parts``)."""
    return uuid.uuid5(SIMGEN_NS, "/".join(str(p) for p in parts)).hex


# ---------------------------------------------------------------------------------------------- writing
def write_bytes(path: Path, data: bytes) -> None:
    """Write via ``NAME.partial`` + rename, so a reader never sees a half-written file (no fsync: cheap)."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


class ImageWriter:
    """Encodes and writes images on worker threads (OpenCV releases the GIL) while the caller reads the next frame.
    At most ``2 * workers`` images are in flight, so memory stays bounded; errors surface on the next call or on
    :meth:`close`.  File contents do not depend on the order the threads finish in."""

    def __init__(self, workers: int | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="simgen-export")
        self.pending: list = []

    def write(self, path: Path, rgb: np.ndarray, ext: str) -> None:
        still = []
        for f in self.pending:
            if f.done():
                f.result()  # re-raises a failed write
            else:
                still.append(f)
        self.pending = still
        while len(self.pending) >= 2 * self.workers:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(lambda: write_bytes(path, encode_image(rgb, ext))))

    def close(self) -> None:
        try:
            for f in self.pending:
                f.result()
        finally:
            self.pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JsonArrayWriter:
    """Streams a JSON array of records to ``path`` (one compact record per line), renamed into place on close."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.fh = open(self.tmp, "w", encoding="utf-8")
        self.fh.write("[")
        self.n = 0

    def add(self, record: dict) -> None:
        self.fh.write(("\n" if self.n == 0 else ",\n") + json.dumps(record, separators=(",", ":")))
        self.n += 1

    def close(self) -> None:
        self.fh.write("\n]\n" if self.n else "]\n")
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


MARKER = "simgen_export.json"


def prepare_out(out: Path, owned: list[str], *, overwrite: bool, src: Path) -> None:
    """Refuse a non-empty output folder unless ``overwrite``; with it, remove only this format's own entries
    (``owned`` top-level names) and the marker file, nothing else.  Output and input folders may not overlap."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a directory", file=str(out))
    src_r, out_r = Path(src).resolve(), out.resolve()
    if src_r == out_r or out_r in src_r.parents or src_r in out_r.parents:
        raise InputError(f"output folder overlaps the input {src}; choose another --out", file=str(out))
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError("output directory is not empty; choose another --out or pass --overwrite", file=str(out))
        for name in owned + [MARKER]:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, disable=not enabled, file=sys.stderr)


def count_frames(ctx, *, camera: bool, lidar: bool) -> int:
    """Frames an export will write, after checking the chosen camera and LiDAR exist in every episode
    (``camera``/``lidar``: whether the format needs one)."""
    total = 0
    for ref in ctx.episodes:
        with EpisodeReader(ref) as r:
            check_sensor(r, ctx.camera, "camera", required=camera, option="--camera")
            check_sensor(r, ctx.lidar, "lidar", required=lidar, option="--lidar")
            total += len(ctx.frames(r.n))
    return total


def check_sensor(reader: EpisodeReader, name: str | None, kind: str, *, required: bool, option: str) -> str | None:
    """The sensor to use: ``name`` if given (must exist with that type), else the rig's first of ``kind``."""
    have = reader.cameras if kind == "camera" else reader.lidars
    if name is not None:
        if name not in have:
            raise InputError(f"no {kind} {name!r} in {reader.ref.rel}; allowed: {', '.join(have) or '(none)'}",
                             key=option)
        return name
    if not have:
        if required:
            raise InputError(f"the rig of {reader.ref.rel} has no {kind}; this format needs one", key=option)
        return None
    return have[0]
