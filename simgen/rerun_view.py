"""``simgen view EPISODE.h5 --rerun [--out FILE.rrd]``: the episode as a Rerun recording.

The same content as the MCAP export (docs/export.md, "Rerun"), as Rerun entities on two timelines, ``sim_time``
(the frame's simulation time) and ``frame`` (the frame index):

- ``world`` (z up) holds ``world/ego`` (the ego pose per frame), each sensor under it at its mount, and
  ``world/objects``: the 3-D boxes of every actor (class-coloured, labelled, with id, kind, visibility and velocity
  as extra per-box values);
- each camera ``world/ego/CAM/optical`` is a pinhole (OpenCV-style optical axes) with the ``rgb`` image (JPEG),
  ``semantic`` and ``instance`` segmentation images (exact ids; class and actor names on hover), ``depth``
  (millimetres, 0 = none beyond 65.535 m) and the visible-mask 2-D ``boxes``;
- each LiDAR ``world/ego/LIDAR/points`` holds the cloud at the frame time (deskewed like the exporters) coloured
  by class, with ``intensity``, ``instance``, ``channel`` and per-point ``time`` (relative to the frame) as extra
  values;
- ``criticality/...`` scalar series (TTC and gap per actor, ego speed, acceleration, jerk, minimum TTC) and
  ``events`` (scenario events and collisions) as a text log.

Rerun is an optional extra (``pip install 'simgen[rerun]'``).  The file is written as ``NAME.rrd.partial`` frame
by frame and renamed when complete.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from simgen.errors import InputError

INSTALL_HINT = "Rerun is not installed; install it with: pip install 'simgen[rerun]' (or pip install rerun-sdk)"


def _import_rerun():
    import os

    # The recording is written without the RRD footer (see write_recording); hide Rerun's warning about that
    # unless the user configured Rerun's logging themselves.
    os.environ.setdefault("RUST_LOG", "warn,re_log_encoding::rrd::file_sink=error")
    try:
        import rerun as rr
    except ImportError:
        raise InputError(INSTALL_HINT, key="--rerun") from None
    return rr


def write_recording(path: str, *, out: str | None = None, camera: str | None = None, lidar: str | None = None,
                    max_frames: int | None = None, overwrite: bool = False, progress: bool = True,
                    deskew: str = "full") -> Path:
    """Write the Rerun recording of episode ``path`` to ``out`` (default: next to it, ``.rrd``); returns the path."""
    from annotators.export.common import EpisodeReader, EpisodeRef, check_sensor, encode_image
    from annotators.export.mcap import depth_mm

    from simgen.io.output import check_path_arg, make_dir

    rr = _import_rerun()
    check_path_arg(path, "EPISODE")
    if out is not None:
        check_path_arg(out, "--out")
    src = Path(path)
    if not src.exists():
        raise InputError("episode file not found", file=path)
    dest = Path(out) if out else src.with_suffix(".rrd")
    if dest.suffix.lower() != ".rrd":
        raise InputError(f"got {dest.name!r}; allowed: a file name ending in .rrd", key="--out")
    if dest.is_dir():
        raise InputError("is a folder; allowed: a file path", file=str(dest), key="--out")
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise InputError("exists; pass --overwrite to replace it (or choose another --out)", file=str(dest))
    if max_frames is not None and max_frames < 1:
        raise InputError(f"got {max_frames}; allowed: 1 or more", key="--max-frames")
    uid = hashlib.sha256(src.resolve().as_posix().encode()).hexdigest()[:16]
    try:
        reader = EpisodeReader(EpisodeRef(src, src.name, uid))
    except (OSError, ValueError) as e:  # not HDF5 / not a simgen episode / incomplete
        raise InputError(f"cannot read episode: {e}", file=path) from None
    with reader as r:
        cams = [check_sensor(r, camera, "camera", required=False, option="--camera")] if camera else list(r.cameras)
        lids = [check_sensor(r, lidar, "lidar", required=False, option="--lidar")] if lidar else list(r.lidars)
        n = r.n if max_frames is None else min(r.n, max_frames)
        make_dir(dest.parent)
        tmp = dest.with_name(dest.name + ".partial")
        rec = rr.RecordingStream("simgen", recording_id=f"{r.scenario_name or 'episode'}-{uid}")
        rec.set_log_time_enabled(False)
        rec.set_log_tick_enabled(False)
        # No footer (chunk manifest): with one, rerun-sdk 0.41 keeps memory proportional to the data written until
        # the end (measured ~0.1 MB a frame on the small rig), without one memory stays flat.  The viewer and
        # rerun.chunk.RrdReader(...).stream() read the file either way.
        rec.save(tmp, write_footer=False)
        try:
            _static(rr, rec, r, cams, lids)
            events = _event_table(r)
            from tqdm import tqdm

            for k in tqdm(range(n), desc="view rerun", unit="frame", leave=False, disable=not progress):
                _frame(rr, rec, r, k, cams, lids, deskew, events, encode_image, depth_mm)
            rec.flush()
            rec.disconnect()
            tmp.replace(dest)
        except BaseException:
            rec.disconnect()
            tmp.unlink(missing_ok=True)
            raise
    return dest


def _T(rr, T: np.ndarray, **kw):
    T = np.asarray(T, float)
    return rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3], **kw)


def _static(rr, rec, r, cams, lids) -> None:
    from simgen.classes import CLASSES
    from simgen.geometry import T_BODY_FROM_OPTICAL

    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    rec.log("world", rr.AnnotationContext([rr.AnnotationInfo(id=int(i), label=name, color=col)
                                           for i, (name, col) in CLASSES.items()]), static=True)
    for s in cams + lids:
        rec.log(f"world/ego/{s}", _T(rr, r.T_ego_from_sensor(s)), static=True)
    for c in cams:
        rec.log(f"world/ego/{c}/optical", _T(rr, T_BODY_FROM_OPTICAL), static=True)
        labels = [rr.AnnotationInfo(id=int(i), label=f"{i} {nm} ({kd})")
                  for i, nm, kd in zip(r.actor_ids, r.names, r.kinds)]
        rec.log(f"world/ego/{c}/optical/instance", rr.AnnotationContext(labels), static=True)


def _frame(rr, rec, r, k, cams, lids, deskew, events, encode_image, depth_mm) -> None:
    t = r.time_s(k)
    rec.set_time("frame", sequence=int(k))
    rec.set_time("sim_time", duration=float(t))
    rec.log("world/ego", _T(rr, r.T_world_from_ego(k)))
    f = r.f
    sem_ids = f["actors/semantic"][:].astype(np.uint16)
    for c in cams:
        base = f"world/ego/{c}/optical"
        W, H = r.image_size(c)
        rec.log(base, rr.Pinhole(image_from_camera=np.asarray(r.K(c, k), float), resolution=[W, H],
                                 camera_xyz=rr.ViewCoordinates.RDF))
        g = f[f"sensors/{c}"]
        rec.log(f"{base}/rgb", rr.EncodedImage(contents=encode_image(r.rgb(c, k), ".jpg"), media_type="image/jpeg"))
        rec.log(f"{base}/semantic", rr.SegmentationImage(np.ascontiguousarray(g["semantic"][k])))
        rec.log(f"{base}/instance", rr.SegmentationImage(np.ascontiguousarray(g["instance"][k], np.uint16)))
        rec.log(f"{base}/depth", rr.DepthImage(depth_mm(g["depth"][k]), meter=1000.0))
        lab = r.labels(c, k, ("bbox_mask", "visible_pixels", "visible_fraction"))
        js = [j for j in range(1, r.A) if lab["visible_pixels"][j] > 0]
        boxes = np.asarray([lab["bbox_mask"][j] for j in js], np.float32).reshape(-1, 4)
        rec.log(f"{base}/boxes", rr.Boxes2D(array=boxes, array_format=rr.Box2DFormat.XYXY,
                                           class_ids=[int(sem_ids[j]) for j in js],
                                           labels=[f"{r.actor_ids[j]} {r.kinds[j]} v{lab['visible_fraction'][j]:.2f}"
                                                   for j in js]),
                rr.AnyValues(actor_id=np.asarray([int(r.actor_ids[j]) for j in js], np.int64)))
    for l in lids:
        ld = r.lidar(l, k, deskew)
        rec.log(f"world/ego/{l}/points",
                rr.Points3D(np.asarray(ld["xyz"], np.float32), class_ids=np.asarray(ld["semantic"], np.uint16),
                            radii=0.03),
                rr.AnyValues(intensity=np.asarray(ld["intensity"], np.float32),
                             instance=np.asarray(ld["instance"], np.uint32),
                             channel=np.asarray(ld["channel"], np.uint16),
                             time=(np.asarray(ld["time_s"], np.float64) - t).astype(np.float32)))
    o = r.objects(k, keys=("center_world", "yaw_world", "velocity_world", "seen"))
    q = r.quat_world(k)  # w, x, y, z: the full orientation (pitch and roll on slopes; the yaw alone before format 3)
    quats = np.concatenate([q[:, 1:], q[:, :1]], axis=1)  # rerun wants x, y, z, w
    vis = np.zeros(r.A)
    for c in cams:
        vis = np.fmax(vis, np.nan_to_num(r.row(f"labels/{c}/visible_fraction", k).astype(float), nan=0.0))
    vel = np.asarray(o["velocity_world"], float)
    rec.log("world/objects",
            rr.Boxes3D(centers=np.asarray(o["center_world"], float), half_sizes=r.dims / 2.0,
                       quaternions=[rr.Quaternion(xyzw=q) for q in quats], class_ids=sem_ids,
                       labels=[f"{i} {nm} ({kd})" for i, nm, kd in zip(r.actor_ids, r.names, r.kinds)]),
            rr.AnyValues(actor_id=np.asarray(r.actor_ids, np.int64), kind=list(r.kinds),
                         visible_fraction=vis.astype(np.float32), seen=np.asarray(o["seen"], bool),
                         velocity_x=vel[:, 0], velocity_y=vel[:, 1], velocity_z=vel[:, 2],
                         speed_mps=np.linalg.norm(vel, axis=1)))
    if "criticality" in f:
        g = f["criticality"]
        ttc = np.asarray(r.row("criticality/ttc_s", k), float)
        gap = np.asarray(r.row("criticality/gap_m", k), float)
        for j in range(1, r.A):
            if np.isfinite(ttc[j]):
                rec.log(f"criticality/ttc_s/{r.names[j]}", rr.Scalars(float(ttc[j])))
            if np.isfinite(gap[j]):
                rec.log(f"criticality/gap_m/{r.names[j]}", rr.Scalars(float(gap[j])))
        fin = ttc[1:][np.isfinite(ttc[1:])]
        if len(fin):
            rec.log("criticality/min_ttc_s", rr.Scalars(float(fin.min())))
        for key in ("ego_accel_mps2", "ego_jerk_mps3"):
            if key in g:
                rec.log(f"criticality/{key}", rr.Scalars(float(r.row(f"criticality/{key}", k))))
    rec.log("criticality/ego_speed_mps", rr.Scalars(float(np.linalg.norm(r.row("actors/velocity", k)[0]))))
    for te, text, warn in events.get(int(k), ()):
        rec.set_time("sim_time", duration=float(te))
        rec.log("events", rr.TextLog(text, level=rr.TextLogLevel.WARN if warn else rr.TextLogLevel.INFO))


def _event_table(r) -> dict[int, list[tuple[float, str, bool]]]:
    """frame -> [(time_s, text, is_collision)] of the scenario events and collisions (small tables, read once)."""
    f = r.f
    out: dict[int, list] = {}
    if "events/frame" in f:
        for fr, te, actor, name in zip(f["events/frame"][:], f["events/time_s"][:], f["events/actor"].asstr()[:],
                                       f["events/name"].asstr()[:]):
            out.setdefault(int(fr), []).append((float(te), f"{name} ({actor})", False))
    if "collisions" in f:
        names = {int(i): n for i, n in zip(r.actor_ids, r.names)}
        times = f["frames/time_s"]
        for fr, a, b in f["collisions"][:]:
            out.setdefault(int(fr), []).append((float(times[int(fr)]),
                                                f"collision {names.get(int(a), a)} - {names.get(int(b), b)}", True))
    return out
