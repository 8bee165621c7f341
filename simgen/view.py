"""``simgen view``: an MP4 and a PNG contact sheet of an episode, for people to check what happened.

Each panel: the camera image with projected 3-D boxes (class colours) and instance-mask 2-D boxes with actor
ids; the semantic segmentation blended over the image; a LiDAR bird's-eye view (ego frame, 50 m around the
ego, points coloured by class) with box footprints and ids; the frame index, time and criticality.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from simgen.classes import PALETTE
from simgen.geometry import T_BODY_FROM_OPTICAL, box_corners, invert, project_distorted
from simgen.io.episode import Episode

_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def _bgr(rgb):
    return tuple(int(c) for c in rgb[::-1])


def _text(img, s, org, scale=0.5, colour=(255, 255, 255)):
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _box_T(boxes: dict) -> np.ndarray:
    """(A,4,4) T_world_from_box from ``Episode.boxes``: centre and full orientation (``quat_world`` w, x, y, z,
    the yaw alone in files older than format_version 3)."""
    from scipy.spatial.transform import Rotation

    q = np.asarray(boxes["quat_world"], float).reshape(-1, 4)
    T = np.tile(np.eye(4), (len(q), 1, 1))
    if len(q):
        T[:, :3, :3] = Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], axis=1)).as_matrix()
    T[:, :3, 3] = boxes["center_world"]
    return T


def camera_panel(ep: Episode, cam: str, k: int, boxes: dict) -> tuple[np.ndarray, np.ndarray]:
    c = ep.camera(cam, k)
    lab = ep.labels(cam, k)
    img = cv2.cvtColor(c["rgb"], cv2.COLOR_RGB2BGR)
    sem = cv2.cvtColor(PALETTE[c["semantic"]], cv2.COLOR_RGB2BGR)
    overlay = cv2.addWeighted(img, 0.45, sem, 0.55, 0)
    T_opt_w = invert(c["T_world_from_sensor"] @ T_BODY_FROM_OPTICAL)
    ids, sizes = boxes["id"], boxes["size"]
    T_wb = _box_T(boxes)
    corners = box_corners(T_opt_w @ T_wb, sizes)
    with ep.guard(f"sensors/{cam} attributes"):
        g = ep.f[f"sensors/{cam}"]
        dist = g.attrs.get("distortion")
        r_max = float(g.attrs.get("r_max", 0.0)) or None
    for j in range(1, len(ids)):
        if lab["visible_pixels"][j] <= 0:
            continue
        col = _bgr(PALETTE[boxes["semantic"][j]].astype(int) // 2 + 127)
        cj = corners[j]
        if np.all(cj[:, 2] > 0.1):
            for a, b in _EDGES:  # edges as polylines: a lens bends them
                seg = cj[a] + np.linspace(0, 1, 9)[:, None] * (cj[b] - cj[a])
                uv, _ = project_distorted(c["K"], dist, seg, r_max)
                cv2.polylines(img, [np.round(uv).astype(np.int32)], False, col, 1, cv2.LINE_AA)
        x0, y0, x1, y1 = lab["bbox_mask"][j]
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 255), 1)
        vf = lab["visible_fraction"][j]
        _text(img, f"{ids[j]} {boxes['kind'][j]} v{vf:.2f}", (int(x0), max(12, int(y0) - 3)), 0.4)
    return img, overlay


def bev_panel(ep: Episode, lidar: str | None, k: int, boxes: dict, size: int = 480, half_m: float = 50.0) -> np.ndarray:
    img = np.full((size, size, 3), 20, np.uint8)
    s = size / (2 * half_m)

    def to_px(xy):  # ego frame: x forward = up, y left = left
        return np.stack([size / 2 - xy[:, 1] * s, size / 2 - xy[:, 0] * s], axis=1)

    if lidar is not None:
        ld = ep.lidar(lidar, k)
        T_es = invert(ep.read("frames/T_world_from_ego", k)) @ ld["T_world_from_sensor"]
        pts = ld["xyz"] @ T_es[:3, :3].T + T_es[:3, 3]
        px = np.round(to_px(pts[:, :2])).astype(int)
        ok = (px[:, 0] >= 0) & (px[:, 0] < size) & (px[:, 1] >= 0) & (px[:, 1] < size)
        img[px[ok, 1], px[ok, 0]] = PALETTE[ld["semantic"][ok]][:, ::-1]
    T_ew = invert(ep.read("frames/T_world_from_ego", k))
    for j in range(len(boxes["id"])):
        T = T_ew @ _box_T(boxes)[j]
        cor = box_corners(T, boxes["size"][j])[:4, :2]
        p = np.round(to_px(cor)).astype(np.int32)
        col = (255, 255, 255) if j == 0 else _bgr(PALETTE[boxes["semantic"][j]].astype(int) // 2 + 127)
        cv2.polylines(img, [p], True, col, 1, cv2.LINE_AA)
        if j and np.all(np.abs(p.mean(0) - size / 2) < size / 2):
            _text(img, str(boxes["id"][j]), tuple(p.max(0)), 0.35)
    return img


def compose(ep: Episode, k: int, cam: str | None, lidar: str | None) -> np.ndarray:
    boxes = ep.boxes(k)
    t = float(ep.read("frames/time_s", k))
    bev = bev_panel(ep, lidar, k, boxes)
    if cam is not None:
        img, overlay = camera_panel(ep, cam, k, boxes)
        w = 640
        h = int(round(img.shape[0] * w / img.shape[1]))
        left = np.vstack([cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), cv2.resize(overlay, (w, h), interpolation=cv2.INTER_AREA)])
        bev = cv2.resize(bev, (left.shape[0], left.shape[0]))
        canvas = np.hstack([left, bev])
    else:
        canvas = bev
    crit = ep.read("criticality/ttc_s", k) if "criticality/ttc_s" in ep.f else None
    info = f"{ep.attr('scenario_name', '')}  frame {k}  t={t:.2f}s"
    if crit is not None and crit.size > 1 and np.isfinite(crit[1:]).any():
        info += f"  min TTC {np.nanmin(crit[1:]):.1f}s"
    coll = ep.read("collisions")
    if len(coll) and np.any(coll[:, 0] <= k):
        info += "  COLLISION"
    _text(canvas, info, (8, 20), 0.55, (80, 255, 255))
    return canvas


def render_episode(path: str, *, out: str | None = None, camera: str | None = None, lidar: str | None = None,
                   max_frames: int | None = None, overwrite: bool = False) -> list[Path]:
    """Write the MP4 (default: next to the episode) and its PNG contact sheet.  Existing files are replaced
    only with ``overwrite``, the episode itself never; on any error nothing is left behind."""
    from simgen.errors import InputError
    from simgen.io.output import check_path_arg

    check_path_arg(path, "EPISODE")
    if out is not None:
        check_path_arg(out, "--out")
    mp4 = Path(out) if out else Path(path).with_suffix(".mp4")
    png = mp4.with_suffix(".png")
    if mp4.suffix.lower() != ".mp4":
        raise InputError(f"got {mp4.name!r}; allowed: a file name ending in .mp4", key="--out")
    with Episode(path) as ep:
        for o in (mp4, png):
            if o.exists() and o.resolve() == Path(path).resolve():
                raise InputError(f"would overwrite the episode being viewed ({o}); choose another --out", key="--out")
            if (o.exists() or o.is_symlink()) and not overwrite:
                raise InputError("exists; pass --overwrite to replace it (or choose another --out)", file=str(o))
            if o.is_dir():
                raise InputError("is a folder; allowed: a file path", file=str(o), key="--out")
        if not mp4.parent.is_dir():
            raise InputError("the folder for --out does not exist", file=str(mp4.parent), key="--out")
        cams, lids = ep.sensors("camera"), ep.sensors("lidar")
        for name, have, what in ((camera, cams, "camera"), (lidar, lids, "lidar")):
            if name is not None and name not in have:
                raise InputError(f"no {what} {name!r}; this episode has: {', '.join(have) or 'none'}", file=path, key=f"--{what}")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"got {max_frames}; allowed: 1 or more", key="--max-frames")
        cam = camera or (cams[0] if cams else None)
        lid = lidar or (lids[0] if lids else None)
        n = ep.n_frames if max_frames is None else min(ep.n_frames, max_frames)
        tmp = mp4.with_name(mp4.stem + ".partial" + mp4.suffix)
        tmp_png = png.with_name(png.stem + ".partial" + png.suffix)
        try:
            _render(ep, n, cam, lid, tmp, tmp_png, float(ep.attr("tick_hz", 20.0)))
            tmp.replace(mp4)
            tmp_png.replace(png)
        finally:
            tmp.unlink(missing_ok=True)
            tmp_png.unlink(missing_ok=True)
    return [mp4, png]


def _render(ep: Episode, n: int, cam, lid, mp4: Path, png: Path, fps: float) -> None:
    from simgen.errors import InputError

    first = compose(ep, 0, cam, lid)
    H, W = first.shape[:2]
    vw = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    if not vw.isOpened():
        raise InputError("cannot write the video here (OpenCV could not open an MP4 writer)", file=str(mp4), key="--out")
    picks = set(np.linspace(0, n - 1, min(n, 8)).round().astype(int).tolist())
    tiles = []
    from tqdm import tqdm

    try:
        for k in tqdm(range(n), desc="view", unit="frame", leave=False):
            fr = first if k == 0 else compose(ep, k, cam, lid)
            vw.write(fr)
            if k in picks:
                tiles.append(cv2.resize(fr, (W // 2, H // 2), interpolation=cv2.INTER_AREA))
    finally:
        vw.release()
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + 2]) for i in range(0, len(tiles), 2)]
    if not cv2.imwrite(str(png), np.vstack(rows)):
        raise RuntimeError(f"{png}: could not write the contact sheet")
    if not mp4.exists() or mp4.stat().st_size == 0:
        raise RuntimeError(f"{mp4}: the video writer wrote nothing")
