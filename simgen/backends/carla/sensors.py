"""Sensors: spawning the rig's CARLA sensors, matching their data by frame id, decoding it (vectorised), and
turning it into the Frame's CameraData / LidarData (instance ids resolved, amodal pixels estimated)."""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from simgen.backends.carla.common import (
    FAR_M, GROUND_CLASSES, GROUND_CLASSES_GENERATED, INSTANCE_ID_BITS, PRIOR_FILL, SEM_LIDAR_DTYPE, THING_CLASSES, SensorTimeout,
)
from simgen.backends.carla_frames import matrix_from_carla, matrix_to_carla, points_from_carla
from simgen.backends.carla_server import CarlaServerLost, is_server_failure
from simgen.errors import RunError
from simgen.geometry import T_BODY_FROM_OPTICAL, box_corners, clip_polygon_near, intrinsics_from_fov, invert, project
from simgen.records import CameraData, LidarData

log = logging.getLogger("simgen.backends.carla")


def _image_array(raw, height: int, width: int) -> np.ndarray:
    a = np.frombuffer(raw, dtype=np.uint8)
    if a.size != height * width * 4:
        raise RunError(f"image buffer has {a.size} bytes; expected {height}x{width}x4")
    return a.reshape(height, width, 4)


def decode_bgra(raw, height: int, width: int) -> np.ndarray:
    """(H,W,3) uint8 RGB from CARLA's BGRA image buffer."""
    return np.ascontiguousarray(_image_array(raw, height, width)[:, :, 2::-1])


def decode_depth(raw, height: int, width: int) -> np.ndarray:
    """(H,W) float32 z-depth in metres from CARLA's depth camera: 1000 · (R + 256 G + 65536 B) / (256³ − 1)."""
    a = _image_array(raw, height, width).astype(np.float64)
    norm = (a[:, :, 2] + a[:, :, 1] * 256.0 + a[:, :, 0] * 65536.0) / (256.0 ** 3 - 1.0)
    return (FAR_M * norm).astype(np.float32)


def decode_semantic(raw, height: int, width: int) -> np.ndarray:
    """(H,W) uint8 CARLA semantic tag (the R channel)."""
    return np.ascontiguousarray(_image_array(raw, height, width)[:, :, 2])


def decode_instance(raw, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance camera: (semantic tag (H,W) uint8 from R, object id (H,W) uint32 = G + 256 B)."""
    a = _image_array(raw, height, width)
    return np.ascontiguousarray(a[:, :, 2]), a[:, :, 1].astype(np.uint32) | (a[:, :, 0].astype(np.uint32) << 8)


def decode_semantic_lidar(raw, counts: list[int]) -> dict[str, np.ndarray]:
    """Semantic LiDAR buffer → xyz (N,3) float32 in the simgen sensor frame (y left), cos_inc (N,), object_idx
    (N,) uint32 CARLA actor ids, tag (N,) uint8, channel (N,) uint16 (points come grouped by channel, 0 = top)."""
    rec = np.frombuffer(raw, dtype=SEM_LIDAR_DTYPE)
    if len(rec) != sum(counts):
        raise RunError(f"semantic LiDAR buffer has {len(rec)} points; the channel counts add up to {sum(counts)}")
    xyz = points_from_carla(np.stack([rec["x"], rec["y"], rec["z"]], axis=-1).astype(np.float32))
    channel = np.repeat(np.arange(len(counts), dtype=np.uint16), counts)
    return {"xyz": xyz, "cos_inc": rec["cos"].copy(), "object_idx": rec["idx"].copy(), "tag": rec["tag"].astype(np.uint8),
            "channel": channel}


def lidar_postprocess(xyz: np.ndarray, attrs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CARLA ``sensor.lidar.ray_cast`` post-processing applied to exact points: returns (keep mask, intensity,
    noisy xyz).  Intensity = exp(−atmosphere_attenuation_rate · range); drop-off and range noise as in CARLA's
    RayCastLidar (random numbers drawn for every point so the stream does not depend on what was hit)."""
    n = len(xyz)
    d = np.linalg.norm(xyz, axis=1).astype(np.float64)
    intensity = np.exp(-attrs.atmosphere_attenuation_rate * d).astype(np.float32)
    u_gen, u_int = rng.random(n), rng.random(n)
    noise = rng.normal(0.0, attrs.noise_stddev, n) if attrs.noise_stddev > 0 else np.zeros(n)
    keep = u_gen >= attrs.dropoff_general_rate
    if attrs.dropoff_intensity_limit > 0:
        alpha = attrs.dropoff_zero_intensity / attrs.dropoff_intensity_limit
        beta = 1.0 - attrs.dropoff_zero_intensity
        keep &= (intensity > attrs.dropoff_intensity_limit) | (u_int < alpha * intensity + beta)
    unit = xyz / np.maximum(d, 1e-9)[:, None]
    out = (xyz + unit * noise[:, None]).astype(np.float32)
    return keep, intensity, out


class FrameCollector:
    """Collects sensor data by frame id from CARLA's callback threads; :meth:`wait` returns one frame's data.

    Data for a frame at or before the last one handed out (or abandoned) is late and discarded.  Data for later
    frames is buffered (out-of-order arrivals).  A second item from one sensor for one frame keeps the first.
    """

    def __init__(self, keys: list[str]):
        self.keys = frozenset(keys)
        self._cv = threading.Condition()
        self._buf: dict[int, dict[str, object]] = {}
        self._done = -1
        self.discarded_late = 0
        self.duplicates = 0

    def callback(self, key: str):
        if key not in self.keys:
            raise KeyError(key)
        return lambda data: self.put(key, data)

    def put(self, key: str, data) -> None:
        frame = int(data.frame)
        with self._cv:
            if frame <= self._done:
                self.discarded_late += 1
                return
            slot = self._buf.setdefault(frame, {})
            if key in slot:
                self.duplicates += 1
                return
            slot[key] = data
            self._cv.notify_all()

    def wait(self, frame: int, timeout_s: float) -> dict[str, object]:
        """Every sensor's data for ``frame``; SensorTimeout naming the missing sensors after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                slot = self._buf.get(frame, {})
                if self.keys <= slot.keys():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(self.keys - slot.keys())
                    self._abandon(frame)
                    raise SensorTimeout(f"frame {frame}: no data from {', '.join(missing)} within {timeout_s:g} s "
                                        f"(got {', '.join(sorted(slot)) or 'nothing'})")
                self._cv.wait(left)
            got = self._buf.pop(frame)
            self._abandon(frame)
            return got

    def _abandon(self, frame: int) -> None:
        self._done = max(self._done, frame)
        for f in [f for f in self._buf if f <= frame]:
            self.discarded_late += len(self._buf.pop(f))


def _pixel_points_world(K, T_world_from_sensor, rows, cols, depth) -> np.ndarray:
    """World points (N,3) of pixels (rows, cols) with z-depth ``depth`` (m)."""
    x = (cols + 0.5 - K[0, 2]) / K[0, 0] * depth
    y = (rows + 0.5 - K[1, 2]) / K[1, 1] * depth
    p_opt = np.stack([x, y, depth], axis=-1)
    T = T_world_from_sensor @ T_BODY_FROM_OPTICAL
    return p_opt @ T[:3, :3].T + T[:3, 3]


class InstanceResolver:
    """Maps the instance camera's object ids to simgen actor ids (0 = not an actor), geometrically, with a cache.

    An id is assigned to the actor whose box (inflated by ``margin_m``) contains at least ``min_share`` of its
    back-projected pixels; ids of non-actor classes, or whose pixels fall outside every box, map to 0.  Decisions
    based on enough pixels are cached for the episode (CARLA's ids are stable for an actor's lifetime).
    """

    def __init__(self, direct: dict[int, int], margin_m: float = 0.3, min_share: float = 0.6, cache_min_px: int = 30):
        # CARLA actor id -> simgen id (valid where the camera reports actor ids).  The camera's id is 16 bits
        # (G + 256 B), so actor ids >= 65536 arrive wrapped: the hint is keyed by the wrapped id, and ids two
        # actors of the episode share after wrapping give no hint (geometry decides for them).
        mask = (1 << INSTANCE_ID_BITS) - 1
        wrapped: dict[int, list[int]] = {}
        for cid, sid in direct.items():
            wrapped.setdefault(int(cid) & mask, []).append(int(sid))
        self.direct = {w: v[0] for w, v in wrapped.items() if len(v) == 1}
        self.wrapped = any(int(c) > mask for c in direct)
        self.cache: dict[int, int] = {}
        self.margin, self.min_share, self.cache_min_px = margin_m, min_share, cache_min_px

    def resolve(self, raw: np.ndarray, tag: np.ndarray, depth: np.ndarray, K: np.ndarray, T_world_from_sensor: np.ndarray,
                T_world_from_box: np.ndarray, dims: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """simgen ids (H,W) of the instance camera's ids ``raw`` (H,W) and tags ``tag`` (H,W).  Pixels are grouped
        by (tag, id), not id alone: a wrapped actor id can equal a static mesh's id, never with the same tag."""
        raw = (raw.astype(np.uint32) & np.uint32(0xFFFF)) | (tag.astype(np.uint32) << np.uint32(16))
        uniq, inv = np.unique(raw.ravel(), return_inverse=True)
        out = np.zeros(len(uniq), np.uint32)
        todo = []
        for k, u in enumerate(uniq.tolist()):
            if u & 0xFFFF == 0:
                continue
            if u in self.cache:
                out[k] = self.cache[u]
            else:
                todo.append(k)
        if todo and len(ids):
            todo_arr = np.array(todo)
            pix_of = np.full(len(uniq), -1, np.int64)
            pix_of[todo_arr] = np.arange(len(todo_arr))
            sel = pix_of[inv] >= 0
            is_thing = np.isin(tag.ravel(), THING_CLASSES)
            grp = pix_of[inv[sel]]
            n_pix = np.bincount(grp, minlength=len(todo))
            n_thing = np.bincount(grp[is_thing[sel]], minlength=len(todo))
            use = sel.copy()
            use[sel] = is_thing[sel]
            flat = np.flatnonzero(use)
            H, W = raw.shape
            rows, cols = flat // W, flat % W
            pw = _pixel_points_world(K, T_world_from_sensor, rows.astype(float), cols.astype(float), depth.ravel()[flat].astype(float))
            T_box_from_world = invert(T_world_from_box)
            local = np.einsum("aij,nj->ani", T_box_from_world[:, :3, :3], pw) + T_box_from_world[:, None, :3, 3]
            inside = np.all(np.abs(local) <= dims[:, None, :] / 2 + self.margin, axis=-1)  # (A, N)
            g = pix_of[inv[flat]]
            counts = np.zeros((len(todo), len(ids)), np.int64)
            for a in range(len(ids)):
                counts[:, a] = np.bincount(g[inside[a]], minlength=len(todo))
            for t, k in enumerate(todo):
                u = int(uniq[k])
                n = int(n_pix[t])
                best = int(np.argmax(counts[t])) if counts.shape[1] else 0
                share = counts[t, best] / n if n else 0.0
                direct = self.direct.get(u & 0xFFFF)
                if direct is not None:
                    da = np.flatnonzero(ids == direct)
                    if len(da) and n and counts[t, da[0]] / n >= 0.5:
                        best, share = int(da[0]), counts[t, da[0]] / n
                if n and share >= self.min_share and counts[t, best] >= 3:
                    out[k] = ids[best]
                    if n >= self.cache_min_px:
                        self.cache[u] = int(ids[best])
                elif n >= self.cache_min_px and (n_thing[t] == 0 or share < 0.05):
                    self.cache[u] = 0
        return out[inv].reshape(raw.shape)


def _convex_mask(uv: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """(r1-r0, c1-c0) bool: pixels of the ROI whose centre lies in the convex hull of points ``uv`` (N,2)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = uv[ConvexHull(uv).vertices]  # counter-clockwise in (u, v)
    except (QhullError, ValueError):
        return np.zeros((r1 - r0, c1 - c0), bool)
    u = np.arange(c0, c1) + 0.5
    v = np.arange(r0, r1) + 0.5
    inside = np.ones((len(v), len(u)), bool)
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        e = b - a
        inside &= (e[0] * (v[:, None] - a[1]) - e[1] * (u[None, :] - a[0])) >= -1e-9
    return inside


def estimate_amodal(K: np.ndarray, T_world_from_sensor: np.ndarray, T_world_from_box: np.ndarray, dims: np.ndarray,
                    ids: np.ndarray, kinds: tuple[str, ...], instance: np.ndarray, depth: np.ndarray,
                    semantic: np.ndarray, skip: set[int] = frozenset(), ground: np.ndarray = GROUND_CLASSES) -> dict[int, int]:
    """Estimated pixels each actor would cover with nothing in front (see the module docstring).  ``ground``: the
    semantic tags that never occlude (GROUND_CLASSES_GENERATED on worlds generated from OpenDRIVE)."""
    H, W = instance.shape
    vis_total = np.bincount(np.minimum(instance.ravel(), int(ids.max()) + 1 if len(ids) else 1).astype(np.int64),
                            minlength=(int(ids.max()) + 2) if len(ids) else 2)
    T_opt_from_world = invert(T_world_from_sensor @ T_BODY_FROM_OPTICAL)
    corners = box_corners(T_opt_from_world @ T_world_from_box, dims) if len(ids) else np.zeros((0, 8, 3))
    out: dict[int, int] = {}
    for k, aid in enumerate(ids.tolist()):
        if aid in skip:
            continue
        visible = int(vis_total[aid])
        pts = clip_polygon_near(corners[k], near=0.05)
        if len(pts) == 0:
            out[aid] = visible
            continue
        uv, _ = project(K, pts)
        uv = uv[np.all(np.isfinite(uv), axis=1)]
        c0, r0 = np.maximum(np.floor(uv.min(axis=0)).astype(int), 0)
        c1, r1 = np.minimum(np.ceil(uv.max(axis=0)).astype(int) + 1, [W, H])
        if c0 >= c1 or r0 >= r1:
            out[aid] = visible
            continue
        sil = _convex_mask(uv, r0, r1, c0, c1)
        n_sil = int(sil.sum())
        if n_sil == 0:
            out[aid] = visible
            continue
        inst = instance[r0:r1, c0:c1]
        mine = sil & (inst == aid)
        other = sil & (inst != aid)
        absent = other & ((depth[r0:r1, c0:c1] > corners[k, :, 2].max()) | np.isin(semantic[r0:r1, c0:c1], ground))
        occluded = int((other & ~absent).sum())
        observed = int(mine.sum()) + int(absent.sum())
        fill = int(mine.sum()) / observed if observed >= max(20, 0.25 * n_sil) else PRIOR_FILL.get(kinds[k], 0.7)
        out[aid] = max(visible, int(round(visible + fill * occluded)))
    return out


class SensorsMixin:
    """CarlaSession's sensors: spawning, and each frame's camera and LiDAR data."""

    def _spawn_sensors(self) -> None:
        carla = self.carla
        lib = self.world.get_blueprint_library()
        specs = []
        for s in self.rig.sensors:
            if s.type == "camera":
                a = s.camera
                attrs = {"image_size_x": a.image_size_x, "image_size_y": a.image_size_y, "fov": a.fov}
                for stream, bp_id in (("rgb", "sensor.camera.rgb"), ("depth", "sensor.camera.depth"),
                                      ("semantic", "sensor.camera.semantic_segmentation"),
                                      ("instance", "sensor.camera.instance_segmentation")):
                    specs.append((s, stream, bp_id, attrs))
            else:
                a = s.lidar
                attrs = {k: getattr(a, k) for k in ("channels", "range", "points_per_second", "rotation_frequency",
                                                    "upper_fov", "lower_fov", "horizontal_fov")}
                specs.append((s, "lidar", "sensor.lidar.ray_cast_semantic", attrs))
        keys = [f"{s.name}:{stream}" for s, stream, _, _ in specs]
        self.collector = FrameCollector(keys)
        for (s, stream, bp_id, attrs), key in zip(specs, keys):
            bp = lib.find(bp_id)
            for k, v in attrs.items():
                if not bp.has_attribute(k):
                    raise RunError(f"blueprint {bp_id} has no attribute {k!r} (rig {self.rig.name}, sensor {s.name})")
                bp.set_attribute(k, str(v))
            if bp.has_attribute("sensor_tick"):
                bp.set_attribute("sensor_tick", "0.0")
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", f"simgen/{key}")
            tf = matrix_to_carla(self.ego.T_actor_from_bottom @ self._mounts[s.name], carla)  # the jittered mounting
            try:
                sensor = self.world.spawn_actor(bp, tf, attach_to=self.ego.actor)
            except Exception as exc:
                if is_server_failure(exc):
                    raise CarlaServerLost(f"CARLA server lost while spawning sensor {key}: {exc}") from exc
                raise
            self._spawned.append(sensor.id)
            self._sensors.append(sensor)
            sensor.listen(self.collector.callback(key))
        self._K = {s.name: intrinsics_from_fov(s.camera.image_size_x, s.camera.image_size_y, s.camera.fov) for s in self.rig.cameras}
        self._resolver = InstanceResolver(self._by_cid)
        if self._resolver.wrapped:
            log.warning("CARLA actor ids above 65535 wrap in the instance camera (16-bit ids); they are resolved by "
                        "semantic tag and geometry")

    def _camera(self, s, data: dict, states, T_wb: np.ndarray) -> CameraData:
        a = s.camera
        H, W = a.image_size_y, a.image_size_x
        rgb_d, dep_d, sem_d, ins_d = (data[f"{s.name}:{x}"] for x in ("rgb", "depth", "semantic", "instance"))
        for d in (rgb_d, dep_d, sem_d, ins_d):
            if int(d.width) != W or int(d.height) != H:
                raise RunError(f"camera {s.name}: image is {d.width}x{d.height}, the rig says {W}x{H}")
        rgb = decode_bgra(rgb_d.raw_data, H, W)
        depth = decode_depth(dep_d.raw_data, H, W)
        sem = decode_semantic(sem_d.raw_data, H, W)
        tag, raw_id = decode_instance(ins_d.raw_data, H, W)
        T_ws = matrix_from_carla(rgb_d.transform)
        K = self._K[s.name]
        inst = self._resolver.resolve(raw_id, sem, depth, K, T_ws, T_wb, states.dims, states.ids)
        amodal = estimate_amodal(K, T_ws, T_wb, states.dims, states.ids, states.kinds, inst, depth, sem, skip={self.ego.sid},
                                 ground=GROUND_CLASSES_GENERATED if self.builtin_map else GROUND_CLASSES)
        return CameraData(K.copy(), T_ws, rgb, depth, sem, inst, amodal)

    def _carla_to_sid(self, cids: np.ndarray) -> np.ndarray:
        """simgen ids (uint32, 0 = not an actor of the episode) of CARLA actor ids; vectorised."""
        keys, vals = self._cid_keys, self._cid_vals
        if len(keys) == 0 or len(cids) == 0:
            return np.zeros(len(cids), np.uint32)
        pos = np.clip(np.searchsorted(keys, cids), 0, len(keys) - 1)
        return np.where(keys[pos] == cids, vals[pos], 0).astype(np.uint32)

    def _lidar(self, s, data: dict, t: float) -> LidarData:
        d = data[f"{s.name}:lidar"]
        counts = [int(d.get_point_count(c)) for c in range(int(d.channels))]
        pts = decode_semantic_lidar(d.raw_data, counts)
        keep, intensity, xyz = lidar_postprocess(pts["xyz"], s.lidar, self._sensor_rngs[s.name])
        idx = np.flatnonzero(keep)
        inst = self._carla_to_sid(pts["object_idx"][idx])
        T_ws = matrix_from_carla(d.transform)
        T_start = self._prev_lidar_pose.get(s.name, T_ws)
        self._prev_lidar_pose[s.name] = T_ws
        return LidarData(T_ws, T_start, xyz[idx], intensity[idx], pts["tag"][idx], inst,
                         np.full(len(idx), t, np.float64), pts["channel"][idx],
                         false_return=np.zeros(len(idx), np.uint8))  # CARLA simulates no fog/rain returns
