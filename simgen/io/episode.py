"""One HDF5 file per episode: streamed frame by frame, chunked and compressed, atomic.

The file is written as ``NAME.h5.partial`` and renamed to ``NAME.h5`` only after the last frame is written, the
root attribute ``complete`` is set and the file is flushed and fsync'd: an interrupted run never leaves a file
that looks complete.  Images are chunked one frame per chunk, so a loader reading frame k decompresses only
frame k.  Variable-length LiDAR returns are concatenated with an ``offsets`` index (frame k is
``offsets[k]:offsets[k+1]``).  The layout is documented in README.md ("Episode file layout").
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

import simgen
from simgen.labels import FrameLabels
from simgen.backends.base import Frame
from simgen.spec.schema import to_dict

LIGHT_CODES = {"red": 0, "yellow": 1, "green": 2, "off": 3}
_IMG = dict(compression="gzip", compression_opts=1, shuffle=True)
_IMG_LEVEL = 1
try:  # ISA-L emits standard zlib streams (what HDF5's deflate filter reads) about 4x faster than zlib
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a declared dependency; zlib is the portable fallback
    import zlib as _zlib


def _encode_chunk(arr: np.ndarray) -> bytes:
    """One image chunk through HDF5's shuffle + deflate filters, done here so it can run in a worker thread
    (zlib releases the GIL) while the next frame renders; the result goes in with ``write_direct_chunk``."""
    a = np.ascontiguousarray(arr)
    n = a.dtype.itemsize
    raw = a.view(np.uint8).reshape(-1, n).T.tobytes() if n > 1 else a.tobytes()
    return _zlib.compress(raw, _IMG_LEVEL)
_TAB = dict(compression="gzip", compression_opts=4, shuffle=True)


class _Appender:
    """Appends rows to a 1-D-chunked dataset in whole chunks only (a partial compressed chunk would be
    decompressed and recompressed on every append); full chunks are compressed in the writer's thread pool."""

    def __init__(self, ds, pool, pending: list, level: int):
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
                    self._appenders[ds.name] = _Appender(ds, self._pool, self._pending, _IMG_LEVEL)
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
        """Drop the partial file (used on errors and Ctrl-C)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        try:
            self.f.close()
        except Exception:  # noqa: BLE001 - best effort on an already broken file
            pass
        self.tmp.unlink(missing_ok=True)


class Episode:
    """Reads an episode file: ``ep.camera(name, k)``, ``ep.lidar(name, k)``, ``ep.boxes(k)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.f = h5py.File(self.path, "r")
        if self.f.attrs.get("format") != "simgen-episode":
            raise ValueError(f"{path}: not a simgen episode file")
        if not bool(self.f.attrs.get("complete", False)):
            raise ValueError(f"{path}: episode is incomplete (interrupted run)")
        self.n_frames = int(self.f.attrs["n_frames"])
        self.static = json.loads(self.f.attrs["static_json"])

    def sensors(self, kind: str | None = None) -> list[str]:
        return [n for n, g in self.f["sensors"].items() if kind is None or g.attrs["type"] == kind]

    def camera(self, name: str, k: int) -> dict:
        g = self.f[f"sensors/{name}"]
        return {key: g[key][k] for key in ("rgb", "depth", "semantic", "instance", "K", "T_world_from_sensor")}

    def lidar(self, name: str, k: int) -> dict:
        g = self.f[f"sensors/{name}"]
        a, b = g["offsets"][k], g["offsets"][k + 1]
        out = {key: g[key][a:b] for key in ("xyz", "intensity", "semantic", "instance", "time_s", "channel", "false_return")
               if key in g}
        out["T_world_from_sensor"] = g["T_world_from_sensor"][k]
        out["T_world_from_sensor_start"] = g["T_world_from_sensor_start"][k]
        return out

    def boxes(self, k: int) -> dict:
        g = self.f["labels/objects"]
        out = {key: g[key][k] for key in g}
        out["size"] = self.f["actors/dims"][:]
        out["id"] = self.f["actors/id"][:]
        out["semantic"] = self.f["actors/semantic"][:]
        out["kind"] = self.f["actors/kind"].asstr()[:]
        return out

    def labels(self, sensor: str, k: int) -> dict:
        g = self.f[f"labels/{sensor}"]
        return {key: g[key][k] for key in g}

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
