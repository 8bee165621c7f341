"""One HDF5 file per episode: streamed frame by frame, chunked and compressed, atomic.

The file is written as ``NAME.h5.partial`` and renamed to ``NAME.h5`` only after the last frame is written, the
root attribute ``complete`` is set and the file is flushed and fsync'd: an interrupted run never leaves a file
that looks complete.  Images are chunked one frame per chunk, so a loader reading frame k decompresses only
frame k.  Variable-length LiDAR returns are concatenated with an ``offsets`` index (frame k is
``offsets[k]:offsets[k+1]``).  The layout is documented in README.md ("Episode file layout").
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the LZ4 filter the image and LiDAR arrays are stored with
import lz4.block
import numpy as np

import simgen
from simgen.errors import InputError
from simgen.labels import FrameLabels
from simgen.records import Frame
from simgen.spec.schema import to_dict

LIGHT_CODES = {"red": 0, "yellow": 1, "green": 2, "off": 3}
# Images and LiDAR arrays: HDF5's byte-shuffle filter, then LZ4 (registered HDF5 filter 32004, provided to every
# reader by ``hdf5plugin``; importing simgen.io registers it).  LZ4 decodes a 1280x720 RGB frame in about 3 ms
# against about 17 ms for deflate through HDF5, for files about 25 % larger (measured: docs/performance.md).
_IMG = dict(compression=hdf5plugin.LZ4.filter_id, compression_opts=(0,), shuffle=True)
_LZ4_BLOCK = 1 << 30  # the filter's default block size (cd_values[0] = 0); every chunk here is one block


def _shuffled(arr: np.ndarray) -> bytes:
    """The bytes HDF5's shuffle filter produces for ``arr`` (byte planes; a no-op for one-byte types)."""
    a = np.ascontiguousarray(arr)
    n = a.dtype.itemsize
    return a.view(np.uint8).reshape(-1, n).T.tobytes() if n > 1 else a.tobytes()


def _encode_chunk(arr: np.ndarray) -> bytes:
    """One chunk through HDF5's shuffle + LZ4 filters, done here so it can run in a worker thread (python-lz4
    releases the GIL) while the next frame renders; the result goes in with ``write_direct_chunk``.

    The LZ4 filter's chunk layout: big-endian int64 original size, int32 block size, then per block an int32
    compressed size and the raw LZ4 block; a block whose compressed size is not smaller than its original is
    stored as is (its size equals the block size, which is how the filter tells it apart)."""
    raw = _shuffled(arr)
    n = len(raw)
    block = min(n, _LZ4_BLOCK)
    out = [struct.pack(">qi", n, block)]
    for i in range(0, n, block):
        piece = raw[i:i + block]
        comp = lz4.block.compress(piece, store_size=False)
        if len(comp) >= len(piece):
            comp = piece
        out += [struct.pack(">i", len(comp)), comp]
    return b"".join(out)


_TAB = dict(compression="gzip", compression_opts=4, shuffle=True)


class _Appender:
    """Appends rows to a 1-D-chunked dataset in whole chunks only (a partial compressed chunk would be
    decompressed and recompressed on every append); full chunks are compressed in the writer's thread pool."""

    def __init__(self, ds, pool, pending: list):
        self.ds, self.pool, self.pending = ds, pool, pending
        self.chunk = ds.chunks[0]
        self.buf: list[np.ndarray] = []
        self.n_buf = 0
        self.n_written = 0  # rows already placed in the dataset

    def append(self, arr: np.ndarray) -> None:
        if len(arr) == 0:
            return
        self.buf.append(np.asarray(arr, self.ds.dtype))
        self.n_buf += len(arr)
        if self.n_buf >= self.chunk:
            data = np.concatenate(self.buf)
            n_full = (len(data) // self.chunk) * self.chunk
            self.ds.resize(self.n_written + n_full, axis=0)
            for i in range(0, n_full, self.chunk):
                offset = (self.n_written + i,) + (0,) * (self.ds.ndim - 1)
                self.pending.append((self.ds, offset, self.pool.submit(_encode_chunk, data[i:i + self.chunk])))
            self.n_written += n_full
            rest = data[n_full:]
            self.buf, self.n_buf = ([rest] if len(rest) else []), len(rest)

    def finish(self) -> None:
        if self.n_buf:
            data = np.concatenate(self.buf)
            self.ds.resize(self.n_written + len(data), axis=0)
            self.ds[self.n_written:] = data
            self.n_written += len(data)
            self.buf, self.n_buf = [], 0


class EpisodeWriter:
    def __init__(self, path: str | Path, *, n_frames: int, rig, meta: dict, static_info: dict):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.n = n_frames
        self.rig = rig
        self.f = h5py.File(self.tmp, "w", libver="latest")
        try:
            self._create(n_frames, rig, meta, static_info)
        except BaseException:  # e.g. a full disk while laying out the datasets: leave no file (and no open id)
            self.abort()
            raise

    def _create(self, n_frames: int, rig, meta: dict, static_info: dict) -> None:
        self.k = 0
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="simgen-compress")
        self._pending: list = []  # (dataset, chunk offset, future of compressed bytes)
        self._appenders: dict[str, _Appender] = {}
        self._rows: dict[str, list] = {}
        self._cache: dict = {}
        self._offsets = {s.name: 0 for s in rig.lidars}
        f = self.f
        f.attrs["format"] = "simgen-episode"
        f.attrs["format_version"] = simgen.FORMAT_VERSION
        f.attrs["simgen_version"] = simgen.__version__
        f.attrs["complete"] = False
        f.attrs["n_frames"] = n_frames
        for k, v in meta.items():
            f.attrs[k] = v if isinstance(v, (int, float, str, bool, np.integer, np.floating)) else json.dumps(v)
        f.attrs["static_json"] = json.dumps(static_info)
        actors = static_info["actors"]
        A = len(actors)
        self.A = A
        g = f.create_group("actors")
        g["id"] = np.array([a["id"] for a in actors], np.int32)
        g["name"] = np.array([a["name"] for a in actors], dtype=h5py.string_dtype())
        g["kind"] = np.array([a["kind"] for a in actors], dtype=h5py.string_dtype())
        g["semantic"] = np.array([a["semantic"] for a in actors], np.uint8)
        g["dims"] = np.array([a["dims"] for a in actors], np.float64).reshape(A, 3)  # exact: replay rebuilds meshes
        g["colour"] = np.array([a["colour"] for a in actors], np.float32).reshape(A, 3)
        self._ds("actors/pose", (n_frames, A, 4), np.float64)
        self._ds("actors/velocity", (n_frames, A, 3), np.float64)
        self._ds("actors/accel", (n_frames, A), np.float64)
        self._ds("actors/door", (n_frames, A), np.float32)
        self._ds("actors/pitch_roll", (n_frames, A, 2), np.float64)
        self._ds("frames/index", (n_frames,), np.int32)
        self._ds("frames/time_s", (n_frames,), np.float64)
        self._ds("frames/T_world_from_ego", (n_frames, 4, 4), np.float64)
        lights = static_info.get("traffic_lights", [])
        f["lights/id"] = np.array(lights, dtype=h5py.string_dtype())
        self._ds("lights/state", (n_frames, len(lights)), np.uint8)
        self.lights = lights
        self._grow("collisions", (3,), np.int32)  # frame, id_a, id_b
        self._grow("events/frame", (), np.int32)
        self._grow("events/time_s", (), np.float64)
        self._grow("events/actor", (), h5py.string_dtype())
        self._grow("events/name", (), h5py.string_dtype())
        for name in ("center_world", "velocity_world", "center_ego", "velocity_ego"):
            self._ds(f"labels/objects/{name}", (n_frames, A, 3), np.float32)
        for name in ("yaw_world", "yaw_ego"):
            self._ds(f"labels/objects/{name}", (n_frames, A), np.float32)
        for name in ("quat_world", "quat_ego"):
            self._ds(f"labels/objects/{name}", (n_frames, A, 4), np.float32)
        self._ds("labels/objects/seen", (n_frames, A), bool)
        for s in rig.sensors:
            sg = f.create_group(f"sensors/{s.name}")
            sg.attrs["type"] = s.type
            sg.attrs["attributes_json"] = json.dumps(to_dict(s.attributes))
            sg["T_ego_from_sensor"] = s.mount.matrix()
            self._ds(f"sensors/{s.name}/T_world_from_sensor", (n_frames, 4, 4), np.float64)
            lg = f"labels/{s.name}"
            self._ds(f"{lg}/center_sensor", (n_frames, A, 3), np.float32)
            self._ds(f"{lg}/quat_sensor", (n_frames, A, 4), np.float32)
            if s.type == "camera":
                W, H = s.camera.image_size_x, s.camera.image_size_y
                self._ds(f"sensors/{s.name}/rgb", (n_frames, H, W, 3), np.uint8, chunks=(1, H, W, 3), **_IMG)
                self._ds(f"sensors/{s.name}/depth", (n_frames, H, W), np.float32, chunks=(1, H, W), **_IMG)
                self._ds(f"sensors/{s.name}/semantic", (n_frames, H, W), np.uint8, chunks=(1, H, W), **_IMG)
                self._ds(f"sensors/{s.name}/instance", (n_frames, H, W), np.uint16, chunks=(1, H, W), **_IMG)
                self._ds(f"sensors/{s.name}/K", (n_frames, 3, 3), np.float64)
                for name, shape, dt in [("bbox_mask", (4,), np.float32), ("bbox_proj", (4,), np.float32),
                                        ("visible_pixels", (), np.int32), ("amodal_pixels", (), np.int32),
                                        ("visible_fraction", (), np.float32), ("truncation", (), np.float32),
                                        ("occlusion", (), np.uint8), ("in_fov", (), bool)]:
                    self._ds(f"{lg}/{name}", (n_frames, A) + shape, dt)
            else:
                self._ds(f"sensors/{s.name}/T_world_from_sensor_start", (n_frames, 4, 4), np.float64)
                self._ds(f"sensors/{s.name}/offsets", (n_frames + 1,), np.int64)
                f[f"sensors/{s.name}/offsets"][0] = 0
                for name, shape, dt in [("xyz", (3,), np.float32), ("intensity", (), np.float32), ("semantic", (), np.uint8),
                                        ("instance", (), np.uint32), ("time_s", (), np.float64), ("channel", (), np.uint16),
                                        ("false_return", (), np.uint8)]:
                    ds = self._grow(f"sensors/{s.name}/{name}", shape, dt, chunk=65536, **_IMG)
                    self._appenders[ds.name] = _Appender(ds, self._pool, self._pending)
                self._ds(f"{lg}/n_points", (n_frames, A), np.int32)

    def _ds(self, name, shape, dtype, chunks=None, **kw):
        if chunks is None and len(shape) >= 2 and shape[0] > 0:
            chunks = (min(shape[0], 256),) + tuple(shape[1:]) if np.prod(shape[1:]) > 0 else None
            kw = {**_TAB, **kw} if chunks else kw
        return self.f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, **kw)

    def _grow(self, name, shape, dtype, chunk=1024, **kw):
        return self.f.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                                     chunks=(chunk,) + shape, **(kw or _TAB))

    @staticmethod
    def _append(ds, arr) -> None:
        n = ds.shape[0]
        ds.resize(n + len(arr), axis=0)
        ds[n:] = arr

    ROW_BLOCK = 32  # frames of small per-frame arrays gathered before one write per dataset

    def _put(self, name: str, k: int, value) -> None:
        """Queue ``value`` for dataset ``name`` at frame ``k`` (written in blocks by :meth:`_flush_rows`)."""
        self._rows.setdefault(name, []).append((k, np.asarray(value)))

    def _dataset(self, name: str):
        ds = self._cache.get(name)
        if ds is None:
            ds = self._cache[name] = self.f[name]
        return ds

    def _flush_rows(self) -> None:
        for name, rows in self._rows.items():
            ks = [k for k, _ in rows]
            if name.endswith("/offsets_tail"):  # offsets[k + 1] (offsets[0] = 0 is written at creation)
                name, ks = name[: -len("_tail")], [k + 1 for k in ks]
                rows = [(k, v) for k, (_, v) in zip(ks, rows)]
            ds = self._dataset(name)
            data = np.stack([v for _, v in rows]).astype(ds.dtype, copy=False)
            if ks == list(range(ks[0], ks[0] + len(ks))):
                ds[ks[0]:ks[0] + len(ks)] = data
            else:  # pragma: no cover - frames are written in order
                for k, v in rows:
                    ds[k] = v
        self._rows.clear()

    def _flush_pending(self) -> None:
        for ds, offset, fut in self._pending:
            ds.id.write_direct_chunk(offset, fut.result())
        self._pending.clear()

    def write(self, frame: Frame, labels: FrameLabels) -> None:
        self._flush_pending()  # the previous frame's images, compressed meanwhile
        f, k = self.f, self.k
        assert k < self.n, "more frames than declared"
        self._put("frames/index", k, frame.index)
        self._put("frames/time_s", k, frame.time_s)
        self._put("frames/T_world_from_ego", k, frame.T_world_from_ego)
        self._put("actors/pose", k, frame.actors.pose)
        self._put("actors/velocity", k, frame.actors.velocity)
        self._put("actors/accel", k, frame.actors.accel)
        if frame.actors.door is not None:
            self._put("actors/door", k, frame.actors.door)
        self._put("actors/pitch_roll", k, frame.actors.attitude)
        if k == 0:
            for name, T in frame.T_ego_from_sensor.items():  # the mounting actually used (jitter included)
                f[f"sensors/{name}/T_ego_from_sensor"][...] = T
        for key, v in frame.applied.items():
            name = "applied/" + key
            if name not in f:
                f.create_dataset(name, shape=(self.n,), dtype=np.float64, fillvalue=np.nan)
            self._put(name, k, v)
        if self.lights:
            self._put("lights/state", k, [LIGHT_CODES[frame.lights[i]] for i in self.lights])
        if frame.collisions:
            self._append(f["collisions"], np.array([(k, a, b) for a, b in frame.collisions], np.int32))
        if frame.events:
            self._append(f["events/frame"], np.full(len(frame.events), k, np.int32))
            self._append(f["events/time_s"], np.array([e[0] for e in frame.events]))
            self._append(f["events/actor"], np.array([e[1] for e in frame.events], dtype=object))
            self._append(f["events/name"], np.array([e[2] for e in frame.events], dtype=object))
        lo = "labels/objects/"
        for name in ("center_world", "velocity_world", "center_ego", "velocity_ego", "yaw_world", "yaw_ego", "seen"):
            self._put(lo + name, k, getattr(labels, name))
        for name, yaw in (("quat_world", labels.yaw_world), ("quat_ego", labels.yaw_ego)):
            q = getattr(labels, name)
            self._put(lo + name, k, _yaw_quat(yaw) if q is None else q)
        for name, cam in frame.cameras.items():
            g = f"sensors/{name}/"
            if k == 0:  # lens model, for projecting boxes into the image (see simgen.geometry.project_distorted)
                f[g].attrs["distortion"] = np.zeros(5) if cam.distortion is None else np.asarray(cam.distortion, float)
                f[g].attrs["r_max"] = float(cam.r_max or 0.0)
            self._put(g + "T_world_from_sensor", k, cam.T_world_from_sensor)
            self._put(g + "K", k, cam.K)
            for key, arr in (("rgb", cam.rgb), ("depth", cam.depth), ("semantic", cam.semantic),
                             ("instance", cam.instance.astype(np.uint16))):
                ds = self._dataset(g + key)
                self._pending.append((ds, (k,) + (0,) * (ds.ndim - 1), self._pool.submit(_encode_chunk, arr)))
            cl = labels.cameras[name]
            for attr in ("bbox_mask", "bbox_proj", "visible_pixels", "amodal_pixels", "visible_fraction", "truncation",
                         "occlusion", "in_fov", "center_sensor", "quat_sensor"):
                self._put(f"labels/{name}/{attr}", k, getattr(cl, attr))
        for name, ld in frame.lidars.items():
            g = f"sensors/{name}/"
            self._put(g + "T_world_from_sensor", k, ld.T_world_from_sensor)
            self._put(g + "T_world_from_sensor_start", k, ld.T_world_from_sensor_start)
            if ld.false_return is None:
                ld.false_return = np.zeros(len(ld.xyz), np.uint8)
            for attr in ("xyz", "intensity", "semantic", "instance", "time_s", "channel", "false_return"):
                self._appenders["/sensors/" + name + "/" + attr].append(getattr(ld, attr))
            self._offsets[name] += len(ld.xyz)
            self._put(g + "offsets_tail", k, self._offsets[name])
            ll = labels.lidars[name]
            for attr in ("n_points", "center_sensor", "quat_sensor"):
                self._put(f"labels/{name}/{attr}", k, getattr(ll, attr))
        self.k += 1
        if self.k % self.ROW_BLOCK == 0:
            self._flush_rows()

    def close(self, extra_attrs: dict | None = None) -> Path:
        """Finish: mark complete, flush, fsync and rename into place.  Returns the final path."""
        if self.k != self.n:
            raise RuntimeError(f"episode has {self.k} of {self.n} frames")
        self._flush_rows()
        for ap in self._appenders.values():
            ap.finish()
        self._flush_pending()
        self._pool.shutdown()
        for key, v in (extra_attrs or {}).items():
            self.f.attrs[key] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
        self.f.attrs["complete"] = True
        self.f.flush()
        self.f.close()
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (used on errors and Ctrl-C).

        The file is emptied *before* HDF5 closes it: closing writes HDF5's cached metadata, and on a full disk
        that write fails, the library keeps the file open, and its clean-up at interpreter exit then crashes
        (a segfault after "Can't flush cache"; h5py issue 914).  Truncating gives the episode's space back
        first, so the close can write what it must and succeeds."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        try:
            os.truncate(self.tmp, 0)
        except OSError:
            pass
        getattr(self, "_pending", []).clear()
        self._cache, self._appenders = {}, {}
        f = getattr(self, "f", None)
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - best effort on an already broken file
                pass
        self.tmp.unlink(missing_ok=True)


def _yaw_quat(yaw) -> np.ndarray:
    """(…,4) w, x, y, z quaternions of rotations about z by ``yaw`` (float32)."""
    yaw = np.asarray(yaw, float)
    q = np.zeros(yaw.shape + (4,), np.float32)
    q[..., 0], q[..., 3] = np.cos(yaw / 2), np.sin(yaw / 2)
    return q * np.where(q[..., :1] < 0, -1, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------- reading
SUPPORTED_VERSIONS = (1, 2, 3)  # 2: images and LiDAR arrays in LZ4 (hdf5plugin), layout unchanged; 3: orientation
# (actors/pitch_roll, labels/objects/quat_world and quat_ego: required from 3 on; older files read as level)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# The layout a reader relies on (README "Episode file layout"), as shapes over symbols: N frames (the n_frames
# attribute), A actors (actors/id), and per-file or per-sensor sizes bound by their first use (L lights, M
# collisions, E events, H x W image, P points); "N+1" is N + 1.  STR marks string datasets, the rest are numeric.
_REQUIRED = {
    "frames/index": ("N",), "frames/time_s": ("N",), "frames/T_world_from_ego": ("N", 4, 4),
    "actors/id": ("A",), "actors/name": ("A",), "actors/kind": ("A",), "actors/semantic": ("A",),
    "actors/dims": ("A", 3), "actors/colour": ("A", 3),
    "actors/pose": ("N", "A", 4), "actors/velocity": ("N", "A", 3), "actors/accel": ("N", "A"),
    "lights/id": ("L",), "lights/state": ("N", "L"), "collisions": ("M", 3),
    "events/frame": ("E",), "events/time_s": ("E",), "events/actor": ("E",), "events/name": ("E",),
    **{f"labels/objects/{k}": ("N", "A", 3) for k in ("center_world", "velocity_world", "center_ego", "velocity_ego")},
    **{f"labels/objects/{k}": ("N", "A") for k in ("yaw_world", "yaw_ego", "seen")},
}
_V3 = {"actors/pitch_roll": ("N", "A", 2), "labels/objects/quat_world": ("N", "A", 4),
       "labels/objects/quat_ego": ("N", "A", 4)}
_OPTIONAL = {"actors/door": ("N", "A"), "criticality/gap_m": ("N", "A"), "criticality/ttc_s": ("N", "A"),
             "criticality/ego_accel_mps2": ("N",), "criticality/ego_jerk_mps3": ("N",)}
_SENSOR = {"T_ego_from_sensor": (4, 4), "T_world_from_sensor": ("N", 4, 4)}
_CAMERA = {"rgb": ("N", "H", "W", 3), "depth": ("N", "H", "W"), "semantic": ("N", "H", "W"),
           "instance": ("N", "H", "W"), "K": ("N", 3, 3)}
_CAMERA_LABELS = {"bbox_mask": ("N", "A", 4), "bbox_proj": ("N", "A", 4), "visible_pixels": ("N", "A"),
                  "amodal_pixels": ("N", "A"), "visible_fraction": ("N", "A"), "truncation": ("N", "A"),
                  "occlusion": ("N", "A"), "in_fov": ("N", "A"), "center_sensor": ("N", "A", 3),
                  "quat_sensor": ("N", "A", 4)}
_LIDAR = {"T_world_from_sensor_start": ("N", 4, 4), "offsets": ("N+1",), "xyz": ("P", 3), "intensity": ("P",),
          "semantic": ("P",), "instance": ("P",), "time_s": ("P",), "channel": ("P",)}
_LIDAR_OPTIONAL = {"false_return": ("P",)}
_LIDAR_LABELS = {"n_points": ("N", "A"), "center_sensor": ("N", "A", 3), "quat_sensor": ("N", "A", 4)}
_STR = {"actors/name", "actors/kind", "lights/id", "events/actor", "events/name"}
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


class EpisodeError(InputError):
    """An episode file that cannot be used: missing, not HDF5, not a simgen episode, incomplete or corrupt.

    One line naming the file and what is wrong (exit 2 in the CLI).  ``incomplete`` is true for a file an
    interrupted run left (``complete`` is False), ``foreign`` for a file that is not a simgen episode at all;
    both are skipped, not refused, when scanning a folder (:func:`find_episodes`)."""

    def __init__(self, message: str, *, file, key: str | None = None, incomplete: bool = False, foreign: bool = False):
        super().__init__(" ".join(str(message).split()), file=str(file), key=key)
        self.incomplete, self.foreign = incomplete, foreign


def _h5_reason(e: BaseException) -> str:
    """h5py's message, first part only (its text can span lines and quote internal addresses)."""
    text = " ".join(str(e).split()) or e.__class__.__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class Episode:
    """THE reader of episode files: opening validates the whole layout, reads are turned into one-line errors.

    ``Episode(path)`` checks, before anything is served: the file is HDF5 with ``format == "simgen-episode"``, a
    supported integer ``format_version``, ``complete`` a real boolean True (a string "False" is refused),
    ``n_frames`` an integer >= 1, every dataset of the layout present with shapes consistent with ``n_frames``
    and the actor, light and sensor counts, LiDAR ``offsets`` starting at 0, non-decreasing and ending at the
    number of points, and the JSON attributes parse.  Any failure raises :class:`EpisodeError`.  A chunk that
    fails to read later (bit rot in compressed data) raises EpisodeError naming the file and the dataset from
    every method here; code reading ``ep.f`` directly wraps its reads in ``with ep.guard(name):``.

    ``ep.camera(name, k)``, ``ep.lidar(name, k)``, ``ep.boxes(k)``, ``ep.labels(sensor, k)``, ``ep.read(name,
    sel)``, ``ep.attr(name)``, ``ep.attr_json(name)``; ``ep.f`` is the open ``h5py.File``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise EpisodeError("episode file not found", file=self.path)
        if not self.path.is_file():
            raise EpisodeError("not a file (expected an episode .h5 file)", file=self.path)
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(8)
        except OSError as e:
            raise EpisodeError(f"cannot read: {e.strerror or e}", file=self.path) from None
        if head != HDF5_SIGNATURE:
            raise EpisodeError("not an HDF5 file (no HDF5 signature)", file=self.path, foreign=True)
        try:
            self.f = h5py.File(self.path, "r")
        except _READ_ERRORS as e:
            raise EpisodeError(f"cannot open as HDF5 (truncated or corrupt): {_h5_reason(e)}", file=self.path) from None
        try:
            self._validate()
        except BaseException:
            self.f.close()
            raise

    # ---------------------------------------------------------------------------------------------- errors
    def error(self, message: str, key: str | None = None, **kw) -> EpisodeError:
        return EpisodeError(message, file=self.path, key=key, **kw)

    @contextlib.contextmanager
    def guard(self, what: str | None = None):
        """Turn h5py read failures (bit rot, a missing object) inside the block into an EpisodeError."""
        try:
            yield
        except EpisodeError:
            raise
        except _READ_ERRORS as e:
            where = f"dataset {what}: " if what else ""
            raise self.error(f"{where}cannot read ({_h5_reason(e)}); the file is corrupt") from None

    def read(self, name: str, sel=()):
        """``f[name][sel]`` (the whole dataset by default), read errors as EpisodeError."""
        with self.guard(name):
            return self.f[name][sel]

    # ------------------------------------------------------------------------------------------ validation
    def attr(self, name: str, default=None):
        with self.guard(f"attribute {name}"):
            return self.f.attrs.get(name, default)

    def attr_json(self, name: str, default=None):
        v = self.attr(name)
        if v is None:
            return default
        try:
            return json.loads(v)
        except (TypeError, ValueError):
            raise self.error(f"attribute {name} is not valid JSON", key=name) from None

    def _validate(self) -> None:
        with self.guard():
            keys = set(self.f.attrs.keys())
        fmt = self.attr("format")
        if fmt != "simgen-episode":
            raise self.error("not a simgen episode file (no format = 'simgen-episode' attribute)", foreign=True)
        ver = self.attr("format_version")
        if not _is_int(ver):
            raise self.error(f"attribute format_version is {ver!r}; allowed: an integer", key="format_version")
        if int(ver) not in SUPPORTED_VERSIONS:
            raise self.error(f"format_version {int(ver)}; this simgen reads {', '.join(map(str, SUPPORTED_VERSIONS))}",
                             key="format_version")
        complete = self.attr("complete")
        if not isinstance(complete, (bool, np.bool_)):
            raise self.error(f"attribute complete is {type(complete).__name__} {complete!r}; allowed: a boolean "
                             "(true when the episode was finished)", key="complete")
        if not complete:
            raise self.error("episode is incomplete (interrupted run)", incomplete=True)
        n = self.attr("n_frames")
        if not _is_int(n) or int(n) < 1:
            raise self.error(f"attribute n_frames is {n!r}; allowed: an integer >= 1", key="n_frames")
        self.n_frames = N = int(n)
        for k in sorted(keys):
            if k.endswith("_json"):
                self.attr_json(k)
        self.static = self.attr_json("static_json")
        if not isinstance(self.static, dict) or not isinstance(self.static.get("actors"), list):
            raise self.error("attribute static_json has no actors list", key="static_json")
        sizes = {"N": N, "N+1": N + 1}
        self._check_all(_REQUIRED, "", sizes, required=True)
        self._check_all(_OPTIONAL, "", sizes, required=False)
        self._check_all(_V3, "", sizes, required=int(ver) >= 3)
        A = sizes["A"]
        if len(self.static["actors"]) != A:
            raise self.error(f"static_json lists {len(self.static['actors'])} actors but actors/id has {A}",
                             key="static_json")
        with self.guard("applied"):
            applied = self.f.get("applied")
            if applied is not None:
                if not isinstance(applied, h5py.Group):
                    raise self.error("applied is not a group", key="applied")
                for name in applied:
                    self._check(f"applied/{name}", ("N",), sizes, required=True)
        with self.guard("sensors"):
            if not isinstance(self.f.get("sensors"), h5py.Group):
                raise self.error("missing group sensors", key="sensors")
            groups = dict(self.f["sensors"].items())
        self._types: dict[str, str] = {}
        for name, g in groups.items():
            key = f"sensors/{name}"
            with self.guard(key):
                typ = g.attrs.get("type") if isinstance(g, h5py.Group) else None
                attrs_json = g.attrs.get("attributes_json") if isinstance(g, h5py.Group) else None
            if typ not in ("camera", "lidar"):
                raise self.error(f"sensor type is {typ!r}; allowed: camera, lidar", key=f"{key}.type")
            try:
                json.loads(attrs_json)
            except (TypeError, ValueError):
                raise self.error("sensor attributes_json missing or not valid JSON", key=f"{key}.attributes_json") from None
            self._types[name] = typ
            local = dict(sizes)
            self._check_all(_SENSOR, key + "/", local, required=True)
            if typ == "camera":
                self._check_all(_CAMERA, key + "/", local, required=True)
                self._check_all(_CAMERA_LABELS, f"labels/{name}/", local, required=True)
            else:
                self._check_all(_LIDAR, key + "/", local, required=True)
                self._check_all(_LIDAR_OPTIONAL, key + "/", local, required=False)
                self._check_all(_LIDAR_LABELS, f"labels/{name}/", local, required=True)
                off = self.read(key + "/offsets")
                if off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] != local["P"]:
                    raise self.error(f"offsets must start at 0, never decrease and end at the number of points "
                                     f"({local['P']}); got {off[0]} .. {off[-1]}"
                                     f"{' (decreasing)' if np.any(np.diff(off) < 0) else ''}", key=key + "/offsets")
        t = self.read("frames/time_s")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise self.error("frame times are not finite and increasing", key="frames/time_s")

    def _check_all(self, table: dict, prefix: str, sizes: dict, *, required: bool) -> None:
        for name, shape in table.items():
            self._check(prefix + name, shape, sizes, required=required)

    def _check(self, name: str, shape: tuple, sizes: dict, *, required: bool) -> None:
        with self.guard(name):
            ds = self.f.get(name)
            if ds is None:
                if required:
                    raise self.error("missing dataset", key=name)
                return
            if not isinstance(ds, h5py.Dataset):
                raise self.error("is not a dataset", key=name)
            got, kind = ds.shape, ds.dtype.kind
        want_str = name in _STR
        if want_str != (kind in "OSU") or (not want_str and kind not in "fiub"):
            raise self.error(f"has dtype {ds.dtype}; expected {'strings' if want_str else 'numbers'}", key=name)
        if got is None or len(got) != len(shape):
            raise self.error(f"has shape {got}; expected {len(shape)} dimensions", key=name)
        for dim, (g, w) in enumerate(zip(got, shape)):
            if isinstance(w, str) and w not in sizes:
                sizes[w] = g  # first use binds the symbol
            expect = sizes[w] if isinstance(w, str) else w
            if g != expect:
                what = {"N": "n_frames", "N+1": "n_frames + 1", "A": "actors", "L": "lights", "P": "points",
                        "H": "image height", "W": "image width"}.get(w, str(w))
                raise self.error(f"has shape {got}; dimension {dim} should be {expect} ({what})", key=name)

    # ----------------------------------------------------------------------------------------------- reads
    def sensors(self, kind: str | None = None) -> list[str]:
        return [n for n, t in self._types.items() if kind is None or t == kind]

    def sensor_type(self, name: str) -> str:
        return self._types[name]

    def camera(self, name: str, k: int) -> dict:
        g = f"sensors/{name}/"
        return {key: self.read(g + key, k) for key in ("rgb", "depth", "semantic", "instance", "K", "T_world_from_sensor")}

    def lidar(self, name: str, k: int) -> dict:
        g = f"sensors/{name}/"
        off = self.read(g + "offsets", slice(k, k + 2))
        a, b = int(off[0]), int(off[1])
        out = {key: self.read(g + key, slice(a, b)) for key in
               ("xyz", "intensity", "semantic", "instance", "time_s", "channel", "false_return") if key in self.f[g]}
        out["T_world_from_sensor"] = self.read(g + "T_world_from_sensor", k)
        out["T_world_from_sensor_start"] = self.read(g + "T_world_from_sensor_start", k)
        return out

    def pitch_roll(self, k) -> np.ndarray:
        """(A,2) pitch, roll of frame k (or (n,A,2) for a slice; simgen.records convention); zeros (level) in files
        older than format_version 3, which stored none."""
        if "actors/pitch_roll" in self.f:
            return self.read("actors/pitch_roll", k)
        return np.zeros(np.shape(self.read("actors/pose", k))[:-1] + (2,))

    def boxes(self, k: int) -> dict:
        """3-D boxes of frame k: ``labels/objects/*`` plus size, id, semantic, kind; ``quat_world``/``quat_ego``
        (w, x, y, z) are the yaw alone in files older than format_version 3 (level boxes)."""
        g = "labels/objects/"
        out = {key: self.read(g + key, k) for key in self.f[g]}
        for name, yaw in (("quat_world", "yaw_world"), ("quat_ego", "yaw_ego")):
            if name not in out:
                out[name] = _yaw_quat(out[yaw])
        out["size"] = self.read("actors/dims")
        out["id"] = self.read("actors/id")
        out["semantic"] = self.read("actors/semantic")
        with self.guard("actors/kind"):
            out["kind"] = self.f["actors/kind"].asstr()[:]
        return out

    def labels(self, sensor: str, k: int) -> dict:
        g = f"labels/{sensor}/"
        return {key: self.read(g + key, k) for key in self.f[g]}

    def verify(self) -> None:
        """Read every dataset once, chunk by chunk (bounded memory), so bit rot in compressed data is found now
        rather than midway through a long job; raises EpisodeError naming the first unreadable dataset."""
        names: list[str] = []
        with self.guard():
            self.f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            with self.guard(name):
                ds = self.f[name]
                if ds.chunks is None or ds.size == 0:
                    ds[()]
                else:
                    for sel in ds.iter_chunks():
                        ds[sel]

    def strings(self, name: str) -> list[str]:
        """A string dataset (``actors/name``, ``actors/kind``, ``lights/id``, ``events/*``) as a list of str."""
        with self.guard(name):
            return [str(x) for x in self.f[name].asstr()[:]]

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------ finding episodes
def find_episodes(src: str | Path, *, skip_corrupt: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Episode files under ``src`` (one file, a run folder or a batch folder searched recursively for ``*.h5``),
    validated by :class:`Episode`, sorted by their path relative to ``src``.

    Returns ``(episodes, skipped)``; ``skipped`` holds ``(path, reason)`` for files that are fine to pass over:
    unfinished ``*.h5.partial`` files, incomplete episodes (an interrupted run) and files that are not simgen
    episodes (not HDF5, or no simgen format marker).  A simgen episode that is corrupt raises
    :class:`EpisodeError` (bad input), unless ``skip_corrupt``, which lists it among the skipped instead.
    Raises InputError when ``src`` does not exist."""
    src = Path(src)
    if not src.exists():
        raise InputError("not found (expected an episode .h5 file, a run folder or a folder of runs)", file=str(src))
    if src.is_file():
        cands, root = [src], src.parent
    else:
        cands, root = [p for p in src.rglob("*") if p.is_file() and p.name.endswith((".h5", ".h5.partial"))], src
    cands.sort(key=lambda p: p.relative_to(root).as_posix())
    good, skipped = [], []
    for p in cands:
        if p.name.endswith(".partial"):
            skipped.append((p, "unfinished (.partial)"))
            continue
        try:
            Episode(p).close()
        except EpisodeError as e:
            if e.incomplete:
                skipped.append((p, "incomplete (interrupted run)"))
            elif e.foreign:
                skipped.append((p, "not a simgen episode"))
            elif skip_corrupt:
                skipped.append((p, f"corrupt: {e}"))
            else:
                raise
            continue
        good.append(p)
    return good, skipped


def iter_episodes(src: str | Path, *, skip_corrupt: bool = False):
    """Open the episodes :func:`find_episodes` finds, one at a time (each closed before the next opens)."""
    for p in find_episodes(src, skip_corrupt=skip_corrupt)[0]:
        with Episode(p) as ep:
            yield ep
