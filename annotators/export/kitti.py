"""KITTI 3-D object detection layout (``training/{image_2,velodyne,label_2,calib}`` + ``ImageSets``).

One KITTI sample per exported frame, ids ``000000``, ``000001`` ... over the episodes in path order.

Frames: the *rectified camera frame* is the chosen camera's optical frame (x right, y down, z forward), so
``R0_rect`` is the identity and ``P0 = P1 = P2 = P3 = K [I | 0]`` (one camera; K in KITTI's pixel convention,
centre of pixel i at i).  ``Tr_velo_to_cam`` maps the LiDAR frame to that camera frame and ``Tr_imu_to_velo`` maps
simgen's ego frame (standing in for KITTI's IMU) to the LiDAR frame.  ``x_img = P2 · R0_rect · Tr_velo_to_cam · x``.

Labels (15 space-separated columns, one object per line): type, truncated (0..1), occluded (0 fully visible,
1 partly, 2 largely occluded, 3 unknown), alpha, bbox left top right bottom (pixels), h w l (m), location x y z
(bottom centre of the box in the camera frame, m), rotation_y.  KITTI angles: ``rotation_y`` is the yaw about the
camera's y axis, 0 when the object faces the camera's +x (right) and pi/2 when it faces the camera (-z); the
heading vector is (cos ry, 0, -sin ry).  ``alpha = rotation_y - atan2(x, z)`` (observation angle), both wrapped to
[-pi, pi).  KITTI's model has no pitch or roll: with a tilted camera, boxes are approximate (a warning says so).

Which objects: actors whose projected box overlaps the image and that some pixel or LiDAR return sees.  Objects
that fail the filters (``--min-visible``, ``--min-points``, ``--max-distance``) but have visible pixels become
``DontCare`` regions (type DontCare, -1 -1 -10, the visible-mask box, -1 -1 -1, -1000 -1000 -1000, -10), as KITTI
marks objects it did not label; objects mapped to DontCare by the class map likewise.  Kinds mapped to null and
kinds left out by ``--classes`` are dropped.  2-D boxes are the projected 3-D box clipped to the image
(``bbox2d: proj``, KITTI-like amodal boxes) or the visible mask's box (``bbox2d: mask``).
Velodyne: float32 x, y, z, reflectance (intensity 0..1) in the LiDAR frame deskewed to the frame time.
Cameras with lens distortion: KITTI images are rectified, so the image is resampled to the pinhole camera with the
same K and 2-D boxes / truncation are recomputed for it (the visible-mask box from the resampled instance image).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from simgen.errors import InputError
from simgen.geometry import invert, wrap_angle

from annotators.export.common import (EpisodeReader, ImageWriter, Rectifiers, T_optical_from_sensor, check_sensor, count_frames,
                                      fmt_num, opencv_K, to_opencv_box, write_bytes, write_text)
from annotators.export.objects import EpisodeObjects, FrameObjects

OWNED = ["training", "ImageSets", "simgen_frames.txt"]
CLASS_SECTION = "kitti"
OPTIONS = ("bbox2d",)
BBOX_MODES = ("proj", "mask")
DONTCARE_TAIL = "-1 -1 -1 -1000 -1000 -1000 -10"


def validate(ctx) -> int:
    mode = ctx.options.setdefault("bbox2d", "proj")
    if mode not in BBOX_MODES:
        raise InputError(f"got {mode!r}; allowed: {', '.join(BBOX_MODES)}", key="--bbox2d")
    return count_frames(ctx, camera=True, lidar=True)


def calib_text(K: np.ndarray, Tr_velo_to_cam: np.ndarray, Tr_imu_to_velo: np.ndarray) -> str:
    """KITTI object calib file: P0-P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo, values in %.12e."""
    P = np.hstack([opencv_K(K), np.zeros((3, 1))])

    def line(name, M):
        return f"{name}: " + " ".join(f"{v:.12e}" for v in (np.asarray(M, float) + 0.0).ravel())  # + 0.0: no -0

    rows = [line(f"P{i}", P) for i in range(4)]
    rows += [line("R0_rect", np.eye(3)), line("Tr_velo_to_cam", Tr_velo_to_cam[:3]),
             line("Tr_imu_to_velo", Tr_imu_to_velo[:3])]
    return "\n".join(rows) + "\n"


def box_fields(center_opt: np.ndarray, quat_wxyz: np.ndarray, dims_lwh: np.ndarray) -> tuple[float, float, np.ndarray, float]:
    """(rotation_y, alpha, location (3,), tilt_deg) of one box from its centre and orientation in the camera frame.

    location is the centre moved h/2 along the camera's +y (down), which readers undo exactly; tilt_deg is the
    angle between the box's up axis and the camera's -y (0 for a level camera)."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    R = Rotation.from_quat([x, y, z, w]).as_matrix()
    d = R[:, 0]
    ry = float(wrap_angle(np.arctan2(-d[2], d[0])))
    loc = np.asarray(center_opt, float) + np.array([0.0, dims_lwh[2] / 2.0, 0.0])
    alpha = float(wrap_angle(ry - np.arctan2(loc[0], loc[2])))
    tilt = float(np.degrees(np.arccos(np.clip(-R[1, 2], -1.0, 1.0))))
    return ry, alpha, loc, tilt


def label_lines(t: FrameObjects, cam: str, ctx) -> list[str]:
    """KITTI label lines of frame table ``t`` for camera ``cam``, in actor order."""
    c = t.cams[cam]
    vis = c.visible_pixels > 0
    has_mask = ~np.isnan(c.bbox_mask[:, 0])
    cand = t.class_ok & c.in_fov & (vis | (t.n_points > 0))
    dontcare = np.array([n == "DontCare" for n in t.names], bool) | ~c.keep
    use_mask = ctx.options["bbox2d"] == "mask"
    lines = []
    for i in t.indices(cand):
        if dontcare[i]:
            if vis[i] and has_mask[i]:
                b = to_opencv_box(c.bbox_mask[i])
                lines.append("DontCare -1 -1 -10 " + " ".join(fmt_num(v, 2) for v in b) + " " + DONTCARE_TAIL)
            continue
        box = c.bbox_mask[i] if use_mask and vis[i] and has_mask[i] else c.bbox_proj[i]
        b = to_opencv_box(box)
        ry, alpha, loc, tilt = box_fields(c.center_sensor[i], c.quat_sensor[i], t.dims[i])
        if tilt > 1.0:
            ctx.warn(f"camera {cam!r} is tilted {tilt:.1f} deg from the boxes' up axis (a pitched camera, or actors "
                     "on a slope or a banked road); KITTI boxes rotate about the camera y axis only (a yaw, no pitch "
                     "or roll), so exported boxes are approximate")
        l, w, h = t.dims[i]
        trunc = float(np.nan_to_num(c.truncation[i], nan=1.0))
        cols = [t.names[i], fmt_num(min(max(trunc, 0.0), 1.0), 2), str(int(c.occlusion[i])), fmt_num(alpha, 4)]
        cols += [fmt_num(v, 2) for v in b]
        cols += [fmt_num(v, 4) for v in (h, w, l)]
        cols += [fmt_num(v, 4) for v in loc]
        cols.append(fmt_num(ry, 4))
        lines.append(" ".join(cols))
    return lines


def run(ctx) -> dict:
    out = ctx.out
    dirs = {n: out / "training" / n for n in ("image_2", "velodyne", "label_2", "calib")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (out / "ImageSets").mkdir(parents=True, exist_ok=True)
    ids = {"train": [], "val": []}
    mapping = []
    counts = {"frames": 0, "objects": 0, "dontcare": 0}
    images = ImageWriter()
    rectifiers = Rectifiers()
    with images:
        for e, (ref, split) in enumerate(zip(ctx.episodes, ctx.splits)):
            _episode(ctx, ref, split, e, dirs, images, rectifiers, ids, mapping, counts)
    sets = {"train": ids["train"], "val": ids["val"], "trainval": sorted(ids["train"] + ids["val"])}
    for s, names in sets.items():
        write_text(out / "ImageSets" / f"{s}.txt", "".join(n + "\n" for n in names))
    write_text(out / "simgen_frames.txt", "".join(mapping))
    return {"frames": counts["frames"], "objects": counts["objects"], "dontcare": counts["dontcare"],
            "train": len(ids["train"]), "val": len(ids["val"])}


def _episode(ctx, ref, split, e, dirs, images, rectifiers, ids, mapping, counts) -> None:
    """Write one episode's frames; appends to ``ids``, ``mapping`` and ``counts``."""
    with EpisodeReader(ref) as r:
        cam = check_sensor(r, ctx.camera, "camera", required=True, option="--camera")
        lidar = check_sensor(r, ctx.lidar, "lidar", required=True, option="--lidar")
        T_ec, T_el = r.T_ego_from_sensor(cam), r.T_ego_from_sensor(lidar)
        Tr_velo_to_cam = T_optical_from_sensor(T_ec, T_el)
        Tr_imu_to_velo = invert(T_el)
        rect = rectifiers.get(r, cam, 0)
        objects = EpisodeObjects(r, class_map=ctx.class_map, filters=ctx.filters, cameras=[cam], lidar=lidar,
                                 pinhole={cam: rect} if rect else None)
        for k in ctx.frames(r.n):
            name = f"{counts['frames']:06d}"
            rgb = r.rgb(cam, k)
            images.write(dirs["image_2"] / f"{name}.png", rect.image(rgb) if rect else rgb, ".png")
            pts = r.lidar(lidar, k, ctx.deskew)
            cloud = np.empty((len(pts["xyz"]), 4), np.float32)
            cloud[:, :3] = pts["xyz"]
            cloud[:, 3] = pts["intensity"]
            write_bytes(dirs["velodyne"] / f"{name}.bin", cloud.tobytes())
            write_text(dirs["calib"] / f"{name}.txt", calib_text(r.K(cam, k), Tr_velo_to_cam, Tr_imu_to_velo))
            lines = label_lines(objects.frame(k), cam, ctx)
            counts["dontcare"] += sum(1 for ln in lines if ln.startswith("DontCare "))
            counts["objects"] += sum(1 for ln in lines if not ln.startswith("DontCare "))
            write_text(dirs["label_2"] / f"{name}.txt", "".join(ln + "\n" for ln in lines))
            ids[split].append(name)
            mapping.append(f"{name} {e} {k} {r.time_s(k):.6f}\n")
            counts["frames"] += 1
            ctx.bar.update(1)
