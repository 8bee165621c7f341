"""A map-style frame dataset over every complete episode under a run or batch folder, for PyTorch-style loaders.

``FrameDataset(root, sensors=..., fields=..., filters=...)`` has ``len`` and integer indexing; item ``i`` is one
frame as a flat ``dict`` of plain numpy arrays (keys below).  It needs no torch, and it is a
``torch.utils.data.Dataset`` by duck typing: ``DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate)``
works as it is.  Each worker process opens its own HDF5 handles on first use; the dataset holds nothing
unpicklable before that, and pickling it (as DataLoader does for each worker) drops any handles it holds.

Order and index
    Episodes are taken in the order of their paths relative to ``root`` (sorted POSIX strings), frames in order
    within an episode.  ``sample["global_index"]`` is the frame's position in that enumeration of every frame of
    every complete episode under ``root``: it does not depend on ``sensors``, ``fields``, ``filters`` or
    ``split``.
    ``sample["index"]`` is the position in this dataset.

Frames of reference (one per kind of label, the same for every episode)
    - ``boxes/*``: 3-D boxes in the **ego frame** (x forward, y left, z up, origin at the centre of the ego's
      bottom face) at the frame time: ``center`` is the box centre, ``size`` is l, w, h, ``yaw`` the heading about
      z, ``quat`` (w, x, y, z) the full orientation (pitch and roll on slopes, relative to the ego, which tilts
      too; the yaw alone for files older than format_version 3), ``velocity`` the actor's velocity expressed in
      ego axes.  ``T_world_from_ego`` is given.
    - ``<lidar>/xyz``: points in the **LiDAR sensor frame**, each at its own firing time (not deskewed), as stored;
      ``<lidar>/T_ego_from_sensor`` maps them to the ego frame (ignoring the motion during the sweep).
    - ``<camera>/*`` labels: **pixels** in continuous coordinates (pixel i spans [i, i+1)); ``<camera>/K`` projects
      the optical frame (x right, y down, z forward); ``<camera>/T_ego_from_sensor`` is the camera *body* frame
      (x forward, y left, z up), optical = body @ ``simgen.geometry.T_BODY_FROM_OPTICAL``.
    Per-actor arrays (``boxes/*``, camera and LiDAR labels) share one actor order: the non-ego actors, only
    those some sensor sees when ``only_seen`` (the default).  ``boxes/id`` is the actor id, which is also the
    value of the instance images and of ``<lidar>/point_instance``.

Fields (``fields=``; per selected sensor of the matching type)
    camera: ``rgb`` (H,W,3) u8, ``depth`` (H,W) f32 metres, ``semantic`` (H,W) u8, ``instance`` (H,W) u16,
    ``camera_labels`` (``bbox`` visible 2-D box x0,y0,x1,y1, ``bbox_proj`` projected 3-D box, ``visible_fraction``,
    ``truncation``, ``occlusion``, ``in_fov``); LiDAR: ``xyz`` (P,3) f32, ``intensity`` (P,), ``point_semantic``,
    ``point_instance``, ``point_time`` (s), ``point_channel``, ``false_return``, ``lidar_labels`` (``n_points`` per
    actor); ``points`` means ``xyz`` + ``intensity``; ``boxes``; ``all`` means every field.  Always present:
    ``index``, ``global_index``, ``episode`` (path relative to root), ``frame``, ``time_s``, ``T_world_from_ego``,
    and per selected sensor ``<sensor>/T_ego_from_sensor`` (+ ``<camera>/K``).  Only the fields asked for are
    read: rgb alone decodes no depth, semantic or instance layer.

Filters (``filters=FrameFilter(...)`` or a list of them, all of which must hold) keep the frames in which at least
``min_actors`` non-ego actors satisfy every actor condition given, in an episode whose scenario parameters
satisfy ``params``.  They are evaluated once, at construction, from the small per-frame arrays
(``actors/kind``, ``labels/objects/center_ego``, ``labels/<camera>/visible_fraction``, ``labels/<lidar>/n_points``
and the ``parameters_json`` attribute); no image is decoded.

Episodes that cannot be used (not a simgen episode, incomplete, unreadable, missing an asked-for sensor or array,
inconsistent LiDAR offsets, image chunks missing or past the end of the file) are skipped at construction with one
warning (:class:`SkippedEpisodeWarning`) naming each, or refused with ``strict=True``
(:class:`simgen.errors.InputError`).  A frame whose data still fails to decode during an epoch (a damaged chunk
the checks at construction cannot see without decoding everything) is returned as ``None`` with one warning per
episode (:func:`collate` drops it), or raises with ``strict=True``.
"""
from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simgen.errors import InputError
from simgen.io.splits import SPLITS, split_of

CAMERA_FIELDS = ("rgb", "depth", "semantic", "instance", "camera_labels")
# field name -> array under sensors/<lidar>/
LIDAR_POINT_FIELDS = {"xyz": "xyz", "intensity": "intensity", "point_semantic": "semantic",
                      "point_instance": "instance", "point_time": "time_s", "point_channel": "channel",
                      "false_return": "false_return"}
LIDAR_FIELDS = tuple(LIDAR_POINT_FIELDS) + ("lidar_labels",)
FIELDS = CAMERA_FIELDS + LIDAR_FIELDS + ("boxes",)
ALIASES = {"points": ("xyz", "intensity"), "all": FIELDS}
DEFAULT_FIELDS = ("rgb", "points", "boxes")
# camera label arrays: sample key -> array under labels/<camera>/
CAMERA_LABELS = {"bbox": "bbox_mask", "bbox_proj": "bbox_proj", "visible_fraction": "visible_fraction",
                 "truncation": "truncation", "occlusion": "occlusion", "in_fov": "in_fov"}
BOX_KEYS = ("center", "size", "yaw", "velocity", "id", "semantic", "kind")
POINT_KEYS = frozenset(LIDAR_POINT_FIELDS)
ACTOR_KEYS = frozenset(CAMERA_LABELS) | {"n_points"}


class SkippedEpisodeWarning(UserWarning):
    """An episode under the dataset's root was left out (the message names it and says why)."""


class FrameReadWarning(UserWarning):
    """A frame failed to decode during iteration and was returned as None (the message names the episode)."""


# ------------------------------------------------------------------------------------------------------ filters
@dataclass(frozen=True)
class FrameFilter:
    """Keep frames where at least ``min_actors`` non-ego actors meet every actor condition given, and the
    episode's sampled scenario parameters meet ``params``.

    - ``classes``: actor kinds (``simgen.classes.ACTOR_KINDS``: car, van, truck, bus, motorcycle, cyclist,
      pedestrian, ...);
    - ``min_distance`` / ``max_distance``: metres from the ego origin to the box centre (3-D), inclusive;
    - ``min_visible`` / ``max_visible``: ``visible_fraction`` in ``camera`` (default: the dataset's only or first
      camera), inclusive; an actor with no visible fraction (outside the view) meets neither;
    - ``min_points``: LiDAR returns on the actor in ``lidar`` (default: the only or first LiDAR);
    - ``params``: ``{name: value}`` (equal) or ``{name: (low, high)}`` (inclusive, either end None for open);
      an episode without the parameter fails.

    "A pedestrian more than half occluded within 30 m":
    ``FrameFilter(classes=("pedestrian",), max_visible=0.5, max_distance=30)``.
    """

    classes: tuple[str, ...] | None = None
    min_distance: float | None = None
    max_distance: float | None = None
    min_visible: float | None = None
    max_visible: float | None = None
    camera: str | None = None
    min_points: int | None = None
    lidar: str | None = None
    params: dict | None = field(default=None, hash=False)
    min_actors: int = 1

    @property
    def actor_conditions(self) -> bool:
        return any(v is not None for v in (self.classes, self.min_distance, self.max_distance, self.min_visible,
                                           self.max_visible, self.min_points))

    def check(self, cameras: list[str], lidars: list[str], param_names: set[str]) -> None:
        """Refuse values that cannot mean anything (InputError naming the key and what is allowed)."""
        from simgen.classes import ACTOR_KINDS

        if self.classes is not None:
            if isinstance(self.classes, str):
                raise InputError(f"got the string {self.classes!r}; allowed: a list of actor kinds",
                                 key="filters.classes")
            bad = sorted(set(self.classes) - set(ACTOR_KINDS))
            if bad:
                raise InputError(f"unknown class {bad[0]!r}; allowed: {', '.join(ACTOR_KINDS)}", key="filters.classes")
        for name in ("min_distance", "max_distance"):
            v = getattr(self, name)
            if v is not None and not float(v) >= 0:
                raise InputError(f"got {v}; allowed: 0 or more (metres)", key=f"filters.{name}")
        for name in ("min_visible", "max_visible"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= float(v) <= 1.0:
                raise InputError(f"got {v}; allowed: 0 to 1", key=f"filters.{name}")
        if self.min_points is not None and int(self.min_points) < 0:
            raise InputError(f"got {self.min_points}; allowed: 0 or more", key="filters.min_points")
        if int(self.min_actors) < 1:
            raise InputError(f"got {self.min_actors}; allowed: 1 or more", key="filters.min_actors")
        if self.min_visible is not None or self.max_visible is not None:
            if not cameras:
                raise InputError("a visibility filter needs a camera; the dataset has none", key="filters.camera")
            if self.camera is not None and self.camera not in cameras:
                raise InputError(f"got {self.camera!r}; allowed: {', '.join(cameras)}", key="filters.camera")
        if self.min_points is not None:
            if not lidars:
                raise InputError("a min_points filter needs a LiDAR; the dataset has none", key="filters.lidar")
            if self.lidar is not None and self.lidar not in lidars:
                raise InputError(f"got {self.lidar!r}; allowed: {', '.join(lidars)}", key="filters.lidar")
        for name, v in (self.params or {}).items():
            if name not in param_names:
                raise InputError(f"no episode has the parameter {name!r}; allowed: "
                                 f"{', '.join(sorted(param_names)) or '(the episodes have no parameters)'}",
                                 key="filters.params")
            if isinstance(v, (tuple, list)) and len(v) != 2:
                raise InputError(f"got {v!r} for {name!r}; allowed: a value or (low, high)", key="filters.params")

    def params_ok(self, params: dict) -> bool:
        for name, want in (self.params or {}).items():
            if name not in params:
                return False
            v = params[name]
            if isinstance(want, (tuple, list)):
                lo, hi = want
                try:
                    if (lo is not None and not v >= lo) or (hi is not None and not v <= hi):
                        return False
                except TypeError:
                    return False
            elif v != want:
                return False
        return True

    def frames(self, kinds: np.ndarray, center_ego: np.ndarray, visible: np.ndarray | None,
               n_points: np.ndarray | None, params: dict) -> np.ndarray:
        """(N,) bool over an episode's frames.  kinds (A,), center_ego (N,A,3), visible / n_points (N,A)."""
        N = center_ego.shape[0]
        if not self.params_ok(params):
            return np.zeros(N, bool)
        if not self.actor_conditions:
            return np.ones(N, bool)
        ok = np.ones(center_ego.shape[:2], bool)
        ok[:, 0] = False  # column 0 is the ego
        if self.classes is not None:
            ok &= np.isin(kinds, list(self.classes))[None, :]
        if self.min_distance is not None or self.max_distance is not None:
            d = np.linalg.norm(center_ego.astype(np.float64), axis=2)
            if self.min_distance is not None:
                ok &= d >= self.min_distance
            if self.max_distance is not None:
                ok &= d <= self.max_distance
        if self.min_visible is not None:
            ok &= visible >= self.min_visible  # NaN compares False
        if self.max_visible is not None:
            ok &= visible <= self.max_visible
        if self.min_points is not None:
            ok &= n_points >= self.min_points
        return ok.sum(axis=1) >= int(self.min_actors)


# ------------------------------------------------------------------------------------------------------ helpers
def episode_paths(root: str | Path) -> tuple[Path, list[tuple[Path, str]]]:
    """(base, [(path, rel)]): the ``*.h5`` files under ``root`` (or ``root`` itself when it is a file), sorted by
    path relative to ``base`` (POSIX form).  ``*.h5.partial`` files never match."""
    root = Path(root)
    if not root.exists():
        raise InputError("not found (expected a run folder, a folder of runs or an episode .h5 file)", file=str(root))
    if root.is_file():
        return root.parent, [(root, root.name)]
    files = [(p, p.relative_to(root).as_posix()) for p in root.rglob("*.h5") if p.is_file()]
    return root, sorted(files, key=lambda t: t[1])


def _expand_fields(fields) -> tuple[str, ...]:
    if isinstance(fields, str):
        fields = (fields,)
    out: list[str] = []
    for f in fields:
        if f in ALIASES:
            out += [x for x in ALIASES[f] if x not in out]
        elif f in FIELDS:
            if f not in out:
                out.append(f)
        else:
            raise InputError(f"unknown field {f!r}; allowed: {', '.join(FIELDS + tuple(ALIASES))}", key="fields")
    return tuple(out)


def _open_episode(path: Path):
    """Open through simgen's reader.  Errors it raises for a bad file come back as (None, reason)."""
    from simgen.io.episode import Episode

    try:
        return Episode(path), None
    except (InputError, OSError, ValueError, KeyError, RuntimeError) as e:
        msg = str(e)
        prefix = f"{path}: "
        return None, (msg[len(prefix):] if msg.startswith(prefix) else msg) or type(e).__name__


def _chunks_in_file(ds, file_size: int) -> str | None:
    """None when every chunk of ``ds`` is allocated and lies inside the file; else the problem."""
    n_expected = int(np.prod([-(-s // c) for s, c in zip(ds.shape, ds.chunks)]))
    end = [0]
    n = [0]

    def visit(info):
        n[0] += 1
        end[0] = max(end[0], info.byte_offset + info.size)

    try:
        ds.id.chunk_iter(visit)
    except (AttributeError, RuntimeError):  # pragma: no cover - HDF5 < 1.12.3 has no chunk iteration
        n[0] = ds.id.get_num_chunks()
        for i in range(n[0]):
            info = ds.id.get_chunk_info(i)
            end[0] = max(end[0], info.byte_offset + info.size)
    if n[0] < n_expected:
        return f"{ds.name}: {n_expected - n[0]} of {n_expected} chunks missing"
    if end[0] > file_size:
        return f"{ds.name}: data past the end of the file (truncated copy?)"
    return None


@dataclass
class _EpisodeInfo:
    path: str
    rel: str
    n_frames: int
    split: str
    cameras: tuple[str, ...]
    lidars: tuple[str, ...]


class _Open:
    """One episode opened in this process: the Episode, its datasets by name and its small per-frame arrays."""

    def __init__(self, ep, fields: tuple[str, ...], cameras, lidars, only_seen: bool):
        f = ep.f
        self.ep = ep
        self.ds = {}
        self.time_s = f["frames/time_s"][:]
        self.T_world_from_ego = f["frames/T_world_from_ego"][:]
        self.T_ego_from_sensor = {s: f[f"sensors/{s}/T_ego_from_sensor"][:] for s in (*cameras, *lidars)}
        self.K = {c: f[f"sensors/{c}/K"][:] for c in cameras}
        actor_fields = "boxes" in fields or "camera_labels" in fields or "lidar_labels" in fields
        self.actors = actor_fields
        if actor_fields:
            lo = f["labels/objects"]
            self.seen = lo["seen"][:]
            self.box = {"center": lo["center_ego"][:], "yaw": lo["yaw_ego"][:], "velocity": lo["velocity_ego"][:]}
            if "quat_ego" in lo:
                self.box["quat"] = lo["quat_ego"][:]
            else:  # before format_version 3: level boxes, the yaw alone
                y = self.box["yaw"].astype(np.float32)
                self.box["quat"] = np.stack([np.cos(y / 2), 0 * y, 0 * y, np.sin(y / 2)], -1).astype(np.float32)
            self.static = {"size": f["actors/dims"][:].astype(np.float32), "id": f["actors/id"][:],
                           "semantic": f["actors/semantic"][:], "kind": np.asarray(f["actors/kind"].asstr()[:], str)}
            self.only_seen = only_seen
        self.cam_labels = {}
        if "camera_labels" in fields:
            for c in cameras:
                g = f[f"labels/{c}"]
                self.cam_labels[c] = {key: g[src][:] for key, src in CAMERA_LABELS.items()}
        self.n_points = {}
        if "lidar_labels" in fields:
            self.n_points = {s: f[f"labels/{s}/n_points"][:] for s in lidars}
        self.offsets = {s: f[f"sensors/{s}/offsets"][:] for s in lidars}
        for c in cameras:
            for key in ("rgb", "depth", "semantic", "instance"):
                if key in fields:
                    self.ds[f"{c}/{key}"] = f[f"sensors/{c}/{key}"]
        for s in lidars:
            for key, src in LIDAR_POINT_FIELDS.items():
                if key in fields:
                    self.ds[f"{s}/{key}"] = f[f"sensors/{s}/{src}"]

    def close(self) -> None:
        try:
            self.ep.close()
        except Exception:  # noqa: BLE001 - closing a handle that is already broken
            pass


# ------------------------------------------------------------------------------------------------------ dataset
class FrameDataset:
    """Every frame of every usable episode under ``root``; see the module docstring for keys, frames of
    reference, filters and the handling of bad episodes.

    ``sensors``: names to read (default: the sensors every usable episode has).  ``fields``: see the module
    docstring (default ``("rgb", "points", "boxes")``).  ``split``: ``"train"``, ``"val"`` or None (all), the
    by-episode split of :func:`simgen.io.splits.split_of` with ``val_fraction``, the split the exporters use.
    ``only_seen``: per-actor arrays hold only actors some sensor sees.  ``max_open``: episodes kept open per
    process (least recently used are closed).
    """

    def __init__(self, root, sensors=None, fields=DEFAULT_FIELDS, filters=None, *, split: str | None = None,
                 val_fraction: float = 0.2, only_seen: bool = True, strict: bool = False, max_open: int = 16):
        self.root = str(root)
        self.fields = _expand_fields(fields)
        if split is not None and split not in SPLITS:
            raise InputError(f"got {split!r}; allowed: {', '.join(SPLITS)} or None", key="split")
        self.split = split
        self.val_fraction = float(val_fraction)
        self.only_seen = bool(only_seen)
        self.strict = bool(strict)
        self.max_open = max(1, int(max_open))
        if filters is None:
            filters = ()
        elif isinstance(filters, FrameFilter):
            filters = (filters,)
        filters = tuple(filters)
        for flt in filters:
            if not isinstance(flt, FrameFilter):
                raise InputError(f"got {type(flt).__name__}; allowed: FrameFilter or a list of them", key="filters")
        self.filters = filters
        self.skipped: list[str] = []  # "rel: reason" for each episode left out
        self._scan(sensors)
        self._open: OrderedDict[int, _Open] = OrderedDict()
        self._pid = os.getpid()
        self._warned: set[int] = set()

    # ---------------------------------------------------------------- construction
    def _skip(self, rel: str, reason: str, path: str) -> None:
        if self.strict:
            raise InputError(f"unusable episode: {reason} (strict=True refuses it)", file=path)
        self.skipped.append(f"{rel}: {reason}")

    def _scan(self, sensors) -> None:
        base, files = episode_paths(self.root)
        opened = []  # (path, rel, Episode) of the files that open as complete episodes, in path order
        for path, rel in files:
            ep, why = _open_episode(path)
            if ep is None:
                self._skip(rel, why, str(path))
                continue
            opened.append((path, rel, ep))
        if not opened:
            extra = f" ({len(self.skipped)} skipped, first: {self.skipped[0]})" if self.skipped else ""
            raise InputError(f"no usable simgen episode files (**/*.h5) found{extra}", file=self.root)
        splits = split_of(len(opened), self.val_fraction, key="val_fraction")
        try:
            kinds = {}
            for _, _, ep in opened:
                for name in ep.sensors():
                    kinds.setdefault(name, set()).add(ep.f[f"sensors/{name}"].attrs["type"])
            if sensors is None:
                common = set.intersection(*(set(ep.sensors()) for _, _, ep in opened))
                names = sorted(common)
            else:
                names = [sensors] if isinstance(sensors, str) else list(sensors)
                unknown = [n for n in names if n not in kinds]
                if unknown:
                    raise InputError(f"no episode has the sensor {unknown[0]!r}; allowed: {', '.join(sorted(kinds))}",
                                     key="sensors")
            self.cameras = tuple(n for n in names if "camera" in kinds[n])
            self.lidars = tuple(n for n in names if "lidar" in kinds[n])
            param_names = set()
            params = {}
            for _, rel, ep in opened:
                params[rel] = json.loads(ep.f.attrs.get("parameters_json", "{}") or "{}")
                param_names |= set(params[rel])
            for flt in self.filters:
                flt.check(list(self.cameras), list(self.lidars), param_names)
            self.episodes: list[_EpisodeInfo] = []
            ep_of, frame_of, glob = [], [], []
            n_global = 0
            for (path, rel, ep), sp in zip(opened, splits):
                N = int(ep.n_frames)
                why = self._check(ep)
                if why:
                    self._skip(rel, why, str(path))
                    n_global += N
                    continue
                info = _EpisodeInfo(str(path), rel, N, sp, self.cameras, self.lidars)
                keep = np.ones(N, bool)
                if self.filters:
                    keep &= self._filter_mask(ep, params[rel])
                if self.split is None or sp == self.split:
                    e = len(self.episodes)
                    ks = np.flatnonzero(keep)
                    ep_of.append(np.full(len(ks), e, np.int32))
                    frame_of.append(ks.astype(np.int32))
                    glob.append(n_global + ks.astype(np.int64))
                self.episodes.append(info)
                n_global += N
        finally:
            for _, _, ep in opened:
                ep.close()
        if not self.episodes:
            raise InputError(f"no usable simgen episode under it ({len(self.skipped)} skipped, first: "
                             f"{self.skipped[0]})", file=self.root)
        self._ep_of = np.concatenate(ep_of) if ep_of else np.zeros(0, np.int32)
        self._frame_of = np.concatenate(frame_of) if frame_of else np.zeros(0, np.int32)
        self._global = np.concatenate(glob) if glob else np.zeros(0, np.int64)
        if self.skipped:
            lines = "; ".join(self.skipped)
            warnings.warn(f"FrameDataset({self.root}): skipped {len(self.skipped)} episode(s): {lines}",
                          SkippedEpisodeWarning, stacklevel=3)

    def _check(self, ep) -> str | None:
        """Why this episode cannot serve the asked-for sensors and fields (None when it can)."""
        f, N = ep.f, int(ep.n_frames)
        try:
            have = set(ep.sensors())
            for s in (*self.cameras, *self.lidars):
                if s not in have:
                    return f"has no sensor {s!r} (it has {', '.join(sorted(have))})"
            need = ["frames/time_s", "frames/T_world_from_ego", "labels/objects/center_ego"]
            if "boxes" in self.fields or "camera_labels" in self.fields or "lidar_labels" in self.fields:
                need += [f"labels/objects/{k}" for k in ("seen", "yaw_ego", "velocity_ego")]
            for c in self.cameras:
                need += [f"sensors/{c}/K", f"labels/{c}/visible_fraction"]
                need += [f"sensors/{c}/{k}" for k in ("rgb", "depth", "semantic", "instance") if k in self.fields]
                if "camera_labels" in self.fields:
                    need += [f"labels/{c}/{v}" for v in CAMERA_LABELS.values()]
            for s in self.lidars:
                need += [f"labels/{s}/n_points"]
            for name in need:
                if name not in f:
                    return f"missing {name}"
                if f[name].shape[:1] != (N,):
                    return f"{name} has {f[name].shape[0]} rows for {N} frames"
            size = os.path.getsize(ep.path)
            for c in self.cameras:
                for k in ("rgb", "depth", "semantic", "instance"):
                    if k in self.fields:
                        why = _chunks_in_file(f[f"sensors/{c}/{k}"], size)
                        if why:
                            return why
            for s in self.lidars:
                if f"sensors/{s}/offsets" not in f:
                    return f"missing sensors/{s}/offsets"
                o = f[f"sensors/{s}/offsets"][:]
                if len(o) != N + 1 or o[0] != 0 or np.any(np.diff(o) < 0):
                    return f"sensors/{s}/offsets is not an increasing index from 0"
                for key, src in LIDAR_POINT_FIELDS.items():
                    if key in self.fields:
                        name = f"sensors/{s}/{src}"
                        if name not in f:
                            return f"missing {name}"
                        if f[name].shape[0] != o[-1]:
                            return f"{name} has {f[name].shape[0]} points, offsets say {o[-1]}"
                        why = _chunks_in_file(f[name], size)
                        if why:
                            return why
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            return f"unreadable ({type(e).__name__}: {e})"
        return None

    def _filter_mask(self, ep, params: dict) -> np.ndarray:
        f = ep.f
        kinds = np.asarray(f["actors/kind"].asstr()[:], str)
        center = f["labels/objects/center_ego"][:]
        keep = np.ones(center.shape[0], bool)
        for flt in self.filters:
            vis = pts = None
            if flt.min_visible is not None or flt.max_visible is not None:
                vis = f[f"labels/{flt.camera or self.cameras[0]}/visible_fraction"][:]
            if flt.min_points is not None:
                pts = f[f"labels/{flt.lidar or self.lidars[0]}/n_points"][:]
            keep &= flt.frames(kinds, center, vis, pts, params)
        return keep

    # ---------------------------------------------------------------- map-style protocol
    def __len__(self) -> int:
        return len(self._ep_of)

    def locate(self, i: int) -> tuple[str, int]:
        """(episode path relative to root, frame) of item ``i``."""
        i = self._index(i)
        return self.episodes[self._ep_of[i]].rel, int(self._frame_of[i])

    def episode_split(self) -> dict[str, str]:
        """{episode path relative to root: 'train' | 'val'} for every usable episode (whatever ``split`` is)."""
        return {e.rel: e.split for e in self.episodes}

    def _index(self, i) -> int:
        try:
            i = int(i)
        except (TypeError, ValueError):
            raise TypeError(f"FrameDataset indices are integers, not {type(i).__name__}") from None
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} frames")
        return i

    def _get_open(self, e: int) -> _Open:
        if os.getpid() != self._pid:  # a forked worker: never use the parent's HDF5 handles
            self._open = OrderedDict()
            self._pid = os.getpid()
        op = self._open.get(e)
        if op is not None:
            self._open.move_to_end(e)
            return op
        info = self.episodes[e]
        ep, why = _open_episode(Path(info.path))
        if ep is None:
            raise OSError(why)
        try:
            op = _Open(ep, self.fields, self.cameras, self.lidars, self.only_seen)
        except BaseException:
            ep.close()
            raise
        self._open[e] = op
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return op

    def __getitem__(self, i):
        i = self._index(i)
        e, k = int(self._ep_of[i]), int(self._frame_of[i])
        try:
            return self._read(i, e, k)
        except (OSError, KeyError, ValueError, RuntimeError, InputError) as exc:
            info = self.episodes[e]
            if self.strict:
                raise InputError(f"frame {k} failed to read: {type(exc).__name__}: {exc}", file=info.path) from None
            if e not in self._warned:
                self._warned.add(e)
                warnings.warn(f"FrameDataset: {info.rel} frame {k} failed to read ({type(exc).__name__}: {exc}); "
                              f"returning None for it (and for any other frame of this episode that fails)",
                              FrameReadWarning, stacklevel=2)
            op = self._open.pop(e, None)
            if op is not None:
                op.close()
            return None

    def _read(self, i: int, e: int, k: int) -> dict:
        op = self._get_open(e)
        info = self.episodes[e]
        out = {"index": i, "global_index": int(self._global[i]), "episode": info.rel, "frame": k,
               "time_s": float(op.time_s[k]), "T_world_from_ego": op.T_world_from_ego[k]}
        sel = None
        if op.actors:
            sel = np.flatnonzero(op.seen[k]) if self.only_seen else np.arange(1, op.seen.shape[1])
            sel = sel[sel != 0]
            if "boxes" in self.fields:
                for key in ("center", "yaw", "quat", "velocity"):
                    out[f"boxes/{key}"] = op.box[key][k, sel]
                for key in ("size", "semantic", "kind"):
                    out[f"boxes/{key}"] = op.static[key][sel]
            out["boxes/id"] = op.static["id"][sel]
        for c in self.cameras:
            out[f"{c}/K"] = op.K[c][k]
            out[f"{c}/T_ego_from_sensor"] = op.T_ego_from_sensor[c]
            for key in ("rgb", "depth", "semantic", "instance"):
                ds = op.ds.get(f"{c}/{key}")
                if ds is not None:
                    out[f"{c}/{key}"] = ds[k]
            if c in op.cam_labels:
                for key, arr in op.cam_labels[c].items():
                    out[f"{c}/{key}"] = arr[k, sel]
        for s in self.lidars:
            out[f"{s}/T_ego_from_sensor"] = op.T_ego_from_sensor[s]
            a, b = int(op.offsets[s][k]), int(op.offsets[s][k + 1])
            for key in LIDAR_POINT_FIELDS:
                ds = op.ds.get(f"{s}/{key}")
                if ds is not None:
                    out[f"{s}/{key}"] = ds[a:b]
            if s in op.n_points:
                out[f"{s}/n_points"] = op.n_points[s][k, sel]
        return out

    # ---------------------------------------------------------------- pickling and handles
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # HDF5 handles never travel; each process opens its own
        state["_warned"] = set()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the episodes this process has open (they reopen on the next read)."""
        while self._open:
            _, op = self._open.popitem()
            op.close()

    def __del__(self):
        try:
            if getattr(self, "_pid", None) == os.getpid():
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ---------------------------------------------------------------- shuffling
    def permutation(self, seed: int, epoch: int = 0) -> np.ndarray:
        """A shuffled order of all indices, the same for the same (seed, epoch) on every machine."""
        return np.random.default_rng([int(seed), int(epoch)]).permutation(len(self))

    def sampler(self, seed: int = 0) -> "SeededSampler":
        """An index sampler for ``DataLoader(ds, sampler=ds.sampler(seed))``; call ``set_epoch(n)`` per epoch."""
        return SeededSampler(len(self), seed)

    def __repr__(self) -> str:
        n_ep = len(np.unique(self._ep_of))
        return (f"FrameDataset({self.root!r}, {len(self)} frames from {n_ep} episodes, "
                f"cameras={list(self.cameras)}, lidars={list(self.lidars)}, fields={list(self.fields)}"
                + (f", split={self.split!r}" if self.split else "") + ")")


class SeededSampler:
    """Deterministic shuffling: iterates ``np.random.default_rng([seed, epoch]).permutation(n)``.  Works as a
    ``torch.utils.data.Sampler`` (an iterable of indices with a length)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


# ------------------------------------------------------------------------------------------------------ collate
def _row_group(key: str) -> str | None:
    """Which variable-length group a sample key belongs to: '<lidar>' (per point), 'boxes' (per actor), or None."""
    head, _, tail = key.rpartition("/")
    if not head:
        return None
    if head == "boxes" or tail in ACTOR_KEYS:
        return "boxes"
    if tail in POINT_KEYS:
        return head
    return None


def collate(samples, tensors: bool = False) -> dict:
    """Batch a list of samples (``None`` entries, frames that failed to read, are dropped).

    - fixed-size arrays (images, K, poses) are stacked: (B, ...);
    - per-point arrays (``<lidar>/xyz``, ...) are concatenated: (sum P, ...), with ``<lidar>/batch`` (sum P,)
      int64 giving each point's position in the batch;
    - per-actor arrays (``boxes/*`` and camera / LiDAR labels) are concatenated likewise, with ``boxes/batch``;
    - numbers become (B,) arrays; strings (``episode``) a list.
    With ``tensors=True`` numeric arrays become ``torch`` tensors (torch must be installed).
    """
    samples = [s for s in samples if s is not None]
    if not samples:
        return {}
    out: dict = {}
    groups: dict[str, np.ndarray] = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        grp = _row_group(key)
        if grp is not None:
            out[key] = np.concatenate(vals, axis=0)
            if grp not in groups:
                groups[grp] = np.repeat(np.arange(len(vals), dtype=np.int64), [len(v) for v in vals])
        elif isinstance(vals[0], str):
            out[key] = vals
        else:
            out[key] = np.stack([np.asarray(v) for v in vals])
    for grp, b in groups.items():
        out[f"{grp}/batch"] = b
    if tensors:
        import torch

        out = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) and v.dtype.kind in "biuf" else v
               for k, v in out.items()}
    return out
