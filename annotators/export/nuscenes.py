"""nuScenes layout: ``VERSION/*.json`` (the 13 tables), ``samples/`` and ``sweeps/`` (``LIDAR_TOP`` ``.pcd.bin`` and
``CAM_*`` ``.jpg``), ``maps/*.png``; readable with nuscenes-devkit (``NuScenes(version=VERSION, dataroot=OUT)``).

One scene (and one log) per episode, ``scene-0000``, ``scene-0001`` ... in path order.  Every exported frame gives
one sample_data per sensor; every ``keyframe_every``-th is a key frame (a ``sample`` with annotations, files under
``samples/``), the others are sweeps (files under ``sweeps/``, ``sample_token`` = the next key frame's sample, or
the last one, so the devkit's box interpolation brackets them).  ``prev``/``next`` link sample_data per sensor,
samples per scene and sample_annotations per instance (an instance = one actor in one episode).

Tokens are deterministic: uuid5 hex of stable keys (episode uid, table, actor id, frame), so re-exports are
byte-identical; ego_pose tokens equal their sample_data tokens, as in nuScenes.

Frames: nuScenes' global frame is the map's frame with its origin at the map image's bottom-left corner, so
``global = world - (x_min, y_min, 0)`` of the builtin map's bounds (recorded as ``world_offset`` in the log and map
records; 0 for maps simgen does not know).  ``ego_pose``: the ego frame (simgen's: x forward, y left, z up, origin
at the centre of the vehicle's bottom face) in global, at the frame time.  ``calibrated_sensor``: sensor in ego;
cameras as their optical frame (x right, y down, z forward) with the intrinsic in the OpenCV pixel convention;
the LiDAR in simgen's LiDAR frame (x forward, y left, z up; nuScenes' own LIDAR_TOP is x right, y forward: the
calibration carries the difference, so devkit transforms are exact).  Quaternions are w, x, y, z; sizes are
width, length, height; translations are box centres.

Points: ``.pcd.bin`` float32 x, y, z, intensity (simgen's 0..1 scaled to nuScenes' 0..255), ring (laser channel),
deskewed to the frame time (``--deskew``).  Images are JPEG; a camera with lens distortion is rectified to the
pinhole camera with the same K, as nuScenes' images are.  Annotations: actors some exported sensor sees (a LiDAR return or a
visible pixel) that map to a nuScenes category and pass the filters; ``visibility`` is the best camera's visible
fraction binned like nuScenes (v0-40, v40-60, v60-80, v80-100); boxes are grown 1 mm on every side but the
bottom, which is raised 1 mm (see BOX_PAD_M), and ``num_lidar_pts`` counts the exported LIDAR_TOP points inside
the exported box, faces included, which is what the devkit's ``points_in_box`` counts;
attributes: vehicle.moving / stopped / parked (never moving in the episode), cycle.with_rider,
pedestrian.moving / standing.  The map mask (``semantic_prior``) is the builtin map's roads and sidewalks at
0.1 m per pixel.  ``simgen_splits.json`` lists train/val scene names (the devkit hard-codes its own splits).
"""
from __future__ import annotations

import datetime
import json
import re

import numpy as np

from simgen.errors import InputError
from simgen.geometry import T_BODY_FROM_OPTICAL, invert

from annotators.export.common import (NUSCENES_CATEGORIES, EpisodeReader, ImageWriter, JsonArrayWriter, Rectifiers,
                                      check_sensor,
                                      jnum, opencv_K, quat_wxyz, token, write_bytes, write_text)
from annotators.export.objects import EpisodeObjects, points_in_boxes, quat_wxyz_to_R

CLASS_SECTION = "nuscenes"
OPTIONS = ("version", "keyframe_every")
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log", "scene",
          "sample", "sample_data", "sample_annotation", "map")
ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle is stationary for now but was or will be moving in this scene.",
    "vehicle.parked": "Vehicle does not move during the scene.",
    "cycle.with_rider": "A rider is on the bicycle or motorcycle.",
    "cycle.without_rider": "Nobody is riding the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "Pedestrian is sitting or lying down.",
    "pedestrian.standing": "Pedestrian is standing still.",
    "pedestrian.moving": "Pedestrian is walking or running.",
}
VISIBILITY = [("1", "v0-40", "0 to 40 % of the object is visible in the cameras"),
              ("2", "v40-60", "40 to 60 % of the object is visible in the cameras"),
              ("3", "v60-80", "60 to 80 % of the object is visible in the cameras"),
              ("4", "v80-100", "80 to 100 % of the object is visible in the cameras")]
BASE_US = 1_500_000_000_000_000  # timestamps (µs): BASE_US + episode position x one day + simulation time
DAY_US = 86_400_000_000
MAP_RES_M = 0.1
MOVING_MPS = 0.5
# simgen's boxes are tight: mesh faces lie exactly on box faces, so a return there is inside or outside by rounding.
# Exported boxes are grown by this much on every side and their bottom face raised by it (off the ground under
# the object), and num_lidar_pts counts the exported points inside the exported box, as the devkit does.
BOX_PAD_M = 0.001
_VERSION_RE = re.compile(r"^v\d+\.\d+-[A-Za-z0-9_]+$")


def owned(ctx) -> list[str]:
    return [ctx.options["version"], "samples", "sweeps", "maps", "simgen_splits.json"]


def channel_name(sensor: str, kind: str) -> str:
    s = re.sub(r"[^A-Z0-9]+", "_", sensor.upper()).strip("_")
    if kind == "lidar":
        return "LIDAR_TOP"
    return s if s.startswith("CAM_") else f"CAM_{s}"


def validate(ctx) -> int:
    ver = ctx.options.setdefault("version", "v1.0-trainval")
    if not isinstance(ver, str) or not _VERSION_RE.match(ver):
        raise InputError(f"got {ver!r}; allowed: a name like v1.0-trainval or v1.0-mini", key="--version")
    ke = ctx.options.setdefault("keyframe_every", 1)
    if not isinstance(ke, int) or ke < 1:
        raise InputError(f"got {ke!r}; allowed: 1 or more", key="--keyframe-every")
    total = 0
    for ref in ctx.episodes:
        with EpisodeReader(ref) as r:
            check_sensor(r, ctx.lidar, "lidar", required=True, option="--lidar")
            cams = [check_sensor(r, ctx.camera, "camera", required=True, option="--camera")] if ctx.camera else r.cameras
            if ctx.filters.min_visible is not None and not cams:
                raise InputError(f"the rig of {ref.rel} has no camera to measure visibility", key="--min-visible")
            chans = [channel_name(c, "camera") for c in cams]
            if len(set(chans)) != len(chans):
                raise InputError(f"camera names {cams} give clashing nuScenes channels {chans}", file=ref.rel)
            total += len(ctx.frames(r.n))
    return total


# ------------------------------------------------------------------------------------------------------ maps
def map_mask(map_name: str) -> tuple[np.ndarray | None, np.ndarray]:
    """(uint8 mask image or None, world offset (3,)): roads and sidewalks of a builtin map at 0.1 m/px, with
    global = world + offset putting the map's lower-left corner at the global origin."""
    import cv2

    from simgen.classes import ROADLINE, ROADS, SIDEWALKS
    from simgen.world.roads import MAPS, get_map

    if map_name not in MAPS:
        return None, np.zeros(3)
    m = get_map(map_name)
    lo, hi = m.bounds()
    W = int(np.ceil((hi[0] - lo[0]) / MAP_RES_M))
    H = int(np.ceil((hi[1] - lo[1]) / MAP_RES_M))
    g = m.ground
    sel = np.isin(g.semantic, [ROADS, ROADLINE, SIDEWALKS])
    tri = g.vertices[g.triangles[sel]][:, :, :2].astype(np.float64)  # (T,3,2)
    shift = 4
    px = np.round((tri[..., 0] - lo[0]) / MAP_RES_M * (1 << shift))
    py = np.round((H - (tri[..., 1] - lo[1]) / MAP_RES_M) * (1 << shift))
    polys = np.stack([px, py], axis=-1).astype(np.int32)
    img = np.zeros((H, W), np.uint8)
    cv2.fillPoly(img, list(polys), 255, lineType=cv2.LINE_8, shift=shift)
    return img, np.array([-lo[0], -lo[1], 0.0])


# ---------------------------------------------------------------------------------------------------- export
def _vis_token(vf: float) -> str:
    return "1" if vf < 0.4 else "2" if vf < 0.6 else "3" if vf < 0.8 else "4"


def _attribute(category: str, speed: float, max_speed: float) -> list[str]:
    if category in ("vehicle.bicycle", "vehicle.motorcycle"):
        return [token("attribute", "cycle.with_rider")]
    if category.startswith("vehicle."):
        name = "vehicle.moving" if speed > MOVING_MPS else "vehicle.parked" if max_speed <= MOVING_MPS else "vehicle.stopped"
        return [token("attribute", name)]
    if category.startswith("human.pedestrian."):
        return [token("attribute", "pedestrian.moving" if speed > MOVING_MPS else "pedestrian.standing")]
    return []


def _max_speeds(r: EpisodeReader) -> np.ndarray:
    ds = r.f["actors/velocity"]
    out = np.zeros(r.A)
    for lo in range(0, r.n, 256):
        v = ds[lo:lo + 256]
        out = np.maximum(out, np.linalg.norm(v, axis=-1).max(axis=0))
    return out


def _pose_record(tok: str, ts: int, T: np.ndarray, offset: np.ndarray) -> dict:
    return {"token": tok, "timestamp": ts, "rotation": [jnum(v, 9) for v in quat_wxyz(T[:3, :3])],
            "translation": [jnum(v, 6) for v in T[:3, 3] + offset]}


def run(ctx) -> dict:
    out = ctx.out
    ver = ctx.options["version"]
    every = ctx.options["keyframe_every"]
    tdir = out / ver
    tdir.mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    streams = {n: JsonArrayWriter(tdir / f"{n}.json") for n in ("sample", "sample_data", "ego_pose", "sample_annotation")}
    sensors: dict[str, dict] = {}
    calibrated, logs, scenes, instances, maps = [], [], [], [], {}
    splits = {"train": [], "val": []}
    n_ann = n_kf = 0
    images = ImageWriter()
    rectifiers = Rectifiers()
    try:
        for e, (ref, split) in enumerate(zip(ctx.episodes, ctx.splits)):
            with EpisodeReader(ref) as r:
                n_ann_e, n_kf_e = _episode(ctx, r, e, streams, sensors, calibrated, logs, scenes, instances, maps, every,
                                           images, rectifiers)
                n_ann += n_ann_e
                n_kf += n_kf_e
                splits[split].append(scenes[-1]["name"])
        images.close()
        for w in streams.values():
            w.close()
    except BaseException:
        images.close()
        for w in streams.values():
            if not w.fh.closed:
                w.abort()
        raise
    small = {
        "category": [{"token": token("category", n), "name": n, "description": d} for n, d in NUSCENES_CATEGORIES.items()],
        "attribute": [{"token": token("attribute", n), "name": n, "description": d} for n, d in ATTRIBUTES.items()],
        "visibility": [{"token": t, "level": lv, "description": d} for t, lv, d in VISIBILITY],
        "instance": instances, "sensor": [sensors[c] for c in sorted(sensors)], "calibrated_sensor": calibrated,
        "log": logs, "scene": scenes,
        "map": [{"token": m["token"], "log_tokens": m["log_tokens"], "category": "semantic_prior",
                 "filename": m["filename"], "world_offset": m["world_offset"]} for _, m in sorted(maps.items())],
    }
    for name, rows in small.items():
        write_text(tdir / f"{name}.json", json.dumps(rows, indent=1) + "\n")
    write_text(out / "simgen_splits.json", json.dumps(splits, indent=1) + "\n")
    return {"scenes": len(scenes), "samples": n_kf, "sample_data": streams["sample_data"].n,
            "sample_annotations": n_ann, "instances": len(instances)}


def _episode(ctx, r: EpisodeReader, e: int, streams, sensors, calibrated, logs, scenes, instances, maps, every, images,
             rectifiers):
    import cv2

    uid = r.ref.uid
    lidar = check_sensor(r, ctx.lidar, "lidar", required=True, option="--lidar")
    cams = [ctx.camera] if ctx.camera else list(r.cameras)
    scene_name = f"scene-{e:04d}"
    frames = list(ctx.frames(r.n))
    n_f = len(frames)
    key_idx = list(range(0, n_f, every))
    last_key = key_idx[-1]
    # map and global offset
    if r.map_name not in maps:
        img, offset = map_mask(r.map_name)
        mtok = token("map", r.map_name)
        if img is None:
            img = np.zeros((10, 10), np.uint8)
            ctx.warn(f"map {r.map_name!r} is not a builtin map: its nuScenes map mask is empty and global = world")
        write_bytes(ctx.out / "maps" / f"{mtok}.png", cv2.imencode(".png", img)[1].tobytes())
        maps[r.map_name] = {"token": mtok, "log_tokens": [], "filename": f"maps/{mtok}.png", "offset": offset,
                            "world_offset": [jnum(v, 6) for v in offset]}
    mp = maps[r.map_name]
    offset = mp["offset"]
    log_tok = token(uid, "log")
    mp["log_tokens"].append(log_tok)
    logs.append({"token": log_tok, "logfile": r.ref.rel, "vehicle": "simgen-ego",
                 "date_captured": datetime.datetime.fromtimestamp((BASE_US + e * DAY_US) // 1_000_000,
                                                                  datetime.timezone.utc).date().isoformat(),
                 "location": r.map_name, "world_offset": mp["world_offset"]})
    # sensors and calibration
    chans = {lidar: "LIDAR_TOP", **{c: channel_name(c, "camera") for c in cams}}
    cs_tok = {}
    for s, ch in chans.items():
        modality = "lidar" if s == lidar else "camera"
        sensors.setdefault(ch, {"token": token("sensor", ch), "channel": ch, "modality": modality})
        T = r.T_ego_from_sensor(s) @ (T_BODY_FROM_OPTICAL if modality == "camera" else np.eye(4))
        cs_tok[s] = token(uid, "calibrated_sensor", ch)
        calibrated.append({"token": cs_tok[s], "sensor_token": sensors[ch]["token"],
                           "translation": [jnum(v, 6) for v in T[:3, 3]],
                           "rotation": [jnum(v, 9) for v in quat_wxyz(T[:3, :3])],
                           "camera_intrinsic": ([[jnum(v, 6) for v in row] for row in opencv_K(r.K(s, 0))]
                                                if modality == "camera" else [])})
    for s, ch in chans.items():
        (ctx.out / "samples" / ch).mkdir(parents=True, exist_ok=True)
        if every > 1:
            (ctx.out / "sweeps" / ch).mkdir(parents=True, exist_ok=True)
    scene_tok = token(uid, "scene")
    sample_tok = {j: token(uid, "sample", frames[j]) for j in key_idx}

    def owner(j):  # the sample a sample_data belongs to: itself, else the next key frame, else the last one
        nxt = -(-j // every) * every
        return sample_tok[nxt if nxt <= last_key else last_key]

    def sd_tok(s, j):
        return token(uid, "sample_data", chans[s], frames[j]) if 0 <= j < n_f else ""

    def ts(k):
        return BASE_US + e * DAY_US + int(round(r.time_s(k) * 1e6))

    max_speed = _max_speeds(r)
    objects = EpisodeObjects(r, class_map=ctx.class_map, filters=ctx.filters, cameras=cams, lidar=lidar)
    T_el = r.T_ego_from_sensor(lidar)
    pending: dict[int, dict] = {}
    inst_info: dict[int, dict] = {}
    n_ann = 0
    for j, k in enumerate(frames):
        kf = j % every == 0
        T_we = r.T_world_from_ego(k)
        t_us = ts(k)
        folder = "samples" if kf else "sweeps"
        if kf:
            streams["sample"].add({"token": sample_tok[j], "timestamp": t_us,
                                   "prev": sample_tok[j - every] if j > 0 else "",
                                   "next": sample_tok[j + every] if j + every <= last_key else "",
                                   "scene_token": scene_tok})
        for s, ch in chans.items():
            tok = sd_tok(s, j)
            if s == lidar:
                pts = r.lidar(lidar, k, ctx.deskew)
                cloud = np.empty((len(pts["xyz"]), 5), np.float32)
                cloud[:, :3] = pts["xyz"]
                cloud[:, 3] = pts["intensity"] * 255.0
                cloud[:, 4] = pts["channel"]
                fname = f"{folder}/{ch}/{scene_name}__{ch}__{t_us}.pcd.bin"
                write_bytes(ctx.out / fname, cloud.tobytes())
                W = H = 0
                fmt = "pcd"
            else:
                W, H = r.image_size(s)
                fname = f"{folder}/{ch}/{scene_name}__{ch}__{t_us}.jpg"
                rect = rectifiers.get(r, s, k)
                rgb = r.rgb(s, k)
                images.write(ctx.out / fname, rect.image(rgb) if rect else rgb, ".jpg")
                fmt = "jpg"
            streams["sample_data"].add({
                "token": tok, "sample_token": owner(j), "ego_pose_token": tok, "calibrated_sensor_token": cs_tok[s],
                "timestamp": t_us, "fileformat": fmt, "is_key_frame": bool(kf), "height": int(H), "width": int(W),
                "filename": fname, "prev": sd_tok(s, j - 1), "next": sd_tok(s, j + 1)})
            streams["ego_pose"].add(_pose_record(tok, t_us, T_we, offset))
        if not kf:
            ctx.bar.update(1)
            continue
        # annotations of this key frame
        t = objects.frame(k)
        sel = t.indices(t.keep & t.seen)
        T_world_from_box = np.tile(np.eye(4), (len(sel), 1, 1))  # full orientation: boxes on slopes pitch and roll
        T_world_from_box[:, :3, :3] = quat_wxyz_to_R(t.quat_world[sel])
        T_world_from_box[:, :3, 3] = t.center_world[sel] + T_world_from_box[:, :3, 2] * BOX_PAD_M  # bottom 1 mm up
        T_lidar_from_box = invert(T_we @ T_el) @ T_world_from_box
        size = t.dims[sel] + np.array([2 * BOX_PAD_M, 2 * BOX_PAD_M, 0.0])
        n_in_box = points_in_boxes(cloud[:, :3].astype(np.float64), T_lidar_from_box, size)
        for j_sel, i in enumerate(sel):
            cat = t.names[i]
            aid = int(t.ids[i])
            atok = token(uid, "sample_annotation", aid, k)
            itok = token(uid, "instance", aid)
            q = quat_wxyz(T_world_from_box[j_sel, :3, :3])
            l, w, h = size[j_sel]
            speed = float(np.linalg.norm(t.velocity_world[i][:2]))
            centre = T_world_from_box[j_sel, :3, 3] + offset
            prev = pending.get(i)
            rec = {"token": atok, "sample_token": sample_tok[j], "instance_token": itok,
                   "visibility_token": _vis_token(t.visible_fraction[i]),
                   "attribute_tokens": _attribute(cat, speed, max_speed[i]),
                   "translation": [jnum(v, 6) for v in centre],
                   "size": [jnum(w, 6), jnum(l, 6), jnum(h, 6)],
                   "rotation": [jnum(v, 9) for v in q],
                   "prev": prev["token"] if prev else "", "next": "",
                   "num_lidar_pts": int(n_in_box[j_sel]), "num_radar_pts": 0}
            if prev is not None:
                prev["next"] = atok
                streams["sample_annotation"].add(prev)
            pending[i] = rec
            info = inst_info.setdefault(i, {"token": itok, "category_token": token("category", cat),
                                            "nbr_annotations": 0, "first_annotation_token": atok})
            info["nbr_annotations"] += 1
            info["last_annotation_token"] = atok
            n_ann += 1
        ctx.bar.update(1)
    for i in sorted(pending):
        streams["sample_annotation"].add(pending[i])
    instances.extend(inst_info[i] for i in sorted(inst_info))
    scenes.append({"token": scene_tok, "log_token": log_tok, "nbr_samples": len(key_idx),
                   "first_sample_token": sample_tok[key_idx[0]], "last_sample_token": sample_tok[key_idx[-1]],
                   "name": scene_name, "description": f"{r.scenario_name} ({r.ref.rel})"})
    return n_ann, len(key_idx)
