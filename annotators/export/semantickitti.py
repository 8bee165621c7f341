"""SemanticKITTI layout: ``sequences/NN/{velodyne/*.bin, labels/*.label, poses.txt, calib.txt, times.txt}`` and
``semantic-kitti.yaml``.

One sequence per episode (``00``, ``01`` ... in path order), one scan per exported frame.

- ``velodyne/NNNNNN.bin``: float32 x, y, z, remission (intensity 0..1) in the LiDAR frame, deskewed to the frame
  time (``--deskew``).
- ``labels/NNNNNN.label``: uint32 per point, lower 16 bits the semantic class, upper 16 bits the instance id.
  Semantic classes are simgen's (CARLA 0.9.14+ ids, ``simgen.classes``), not SemanticKITTI's 0-259 ids; the
  label-map YAML names them.  Instance id = the actor's id (unique within the sequence); 0 for stuff (road,
  buildings ...) and for objects dropped by the filters (their points keep their semantic class).
- ``calib.txt``: KITTI odometry format, ``P0:`` .. ``P3:`` (the calibration camera, ``--camera`` or the rig's
  first; a virtual camera at the LiDAR looking forward when the rig has none) and ``Tr:`` (LiDAR -> that camera).
- ``poses.txt``: per scan, the 3x4 row-major pose of the camera in the frame of the sequence's first camera pose,
  as KITTI odometry gives it; LiDAR poses are ``inv(Tr) · pose · Tr``.
- ``times.txt``: seconds since the sequence's first scan.
- ``semantic-kitti.yaml`` (same keys as the semantic-kitti-api's config): labels, color_map (BGR), content (share of
  points per class in this export), learning_map / learning_map_inv (identity on the 29 classes; 0 Unlabeled is
  ignored), learning_ignore and split (train / valid / test sequence numbers; test is empty).
"""
from __future__ import annotations

import numpy as np

from simgen.classes import CLASSES
from simgen.errors import InputError
from simgen.geometry import T_OPTICAL_FROM_BODY, invert

from annotators.export.common import (EpisodeReader, T_optical_from_sensor, check_sensor, opencv_K, write_bytes,
                                      write_text)
from annotators.export.objects import EpisodeObjects

OWNED = ["sequences", "semantic-kitti.yaml"]
CLASS_SECTION = None
OPTIONS = ()


def validate(ctx) -> int:
    total = 0
    for ref in ctx.episodes:
        with EpisodeReader(ref) as r:
            check_sensor(r, ctx.camera, "camera", required=False, option="--camera")
            check_sensor(r, ctx.lidar, "lidar", required=True, option="--lidar")
            if ctx.filters.min_visible is not None and not r.cameras:
                raise InputError(f"the rig of {ref.rel} has no camera to measure visibility", key="--min-visible")
            if int(r.actor_ids.max(initial=0)) > 0xFFFF:
                raise InputError("actor ids above 65535 do not fit the 16-bit instance field", file=ref.rel)
            total += len(ctx.frames(r.n))
    return total


def _mat_line(M: np.ndarray, fmt: str = "{:.12e}") -> str:
    return " ".join(fmt.format(v) for v in (np.asarray(M, float) + 0.0).ravel())


def label_map_yaml(counts: np.ndarray, splits: dict) -> str:
    """The label-map YAML in the semantic-kitti-api's config layout (written by hand: stable, readable)."""
    ids = sorted(CLASSES)
    total = max(int(counts.sum()), 1)
    out = ["# simgen SemanticKITTI export: semantic ids are CARLA 0.9.14+ tags (simgen.classes), colours BGR.",
           "# Labels: uint32 per point, lower 16 bits semantic id, upper 16 bits instance id (simgen actor id).",
           'name: "simgen"', "labels:"]
    out += [f'  {i}: "{CLASSES[i][0]}"' for i in ids]
    out.append("color_map: # bgr")
    out += [f"  {i}: [{CLASSES[i][1][2]}, {CLASSES[i][1][1]}, {CLASSES[i][1][0]}]" for i in ids]
    out.append("content: # share of all exported points")
    out += [f"  {i}: {float(counts[i]) / total!r}" for i in ids]
    out.append("learning_map: # identity: the 29 classes are already contiguous; 0 Unlabeled is ignored")
    out += [f"  {i}: {i}" for i in ids]
    out.append("learning_map_inv:")
    out += [f"  {i}: {i}" for i in ids]
    out.append("learning_ignore:")
    out += [f"  {i}: {'true' if i == 0 else 'false'}" for i in ids]
    out.append("split: # sequence numbers")
    out += [f"  {k}: [{', '.join(str(v) for v in splits[k])}]" for k in ("train", "valid", "test")]
    return "\n".join(out) + "\n"


def run(ctx) -> dict:
    out = ctx.out
    counts = np.zeros(256, np.int64)
    splits = {"train": [], "valid": [], "test": []}
    n_scans = n_inst = 0
    for s, (ref, split) in enumerate(zip(ctx.episodes, ctx.splits)):
        seq = out / "sequences" / f"{s:02d}"
        (seq / "velodyne").mkdir(parents=True, exist_ok=True)
        (seq / "labels").mkdir(parents=True, exist_ok=True)
        splits["valid" if split == "val" else "train"].append(s)
        with EpisodeReader(ref) as r:
            cam = check_sensor(r, ctx.camera, "camera", required=False, option="--camera")
            lidar = check_sensor(r, ctx.lidar, "lidar", required=True, option="--lidar")
            T_el = r.T_ego_from_sensor(lidar)
            if cam is not None:
                Tr = T_optical_from_sensor(r.T_ego_from_sensor(cam), T_el)
                P = np.hstack([opencv_K(r.K(cam, 0)), np.zeros((3, 1))])
            else:
                Tr, P = T_OPTICAL_FROM_BODY.copy(), np.hstack([np.eye(3), np.zeros((3, 1))])
            write_text(seq / "calib.txt", "".join(f"P{i}: {_mat_line(P)}\n" for i in range(4)) + f"Tr: {_mat_line(Tr[:3])}\n")
            T_cam_from_velo_inv = invert(Tr)
            poses, times = [], []
            first_cam = t0 = None
            # visibility for --min-visible: the best of all the rig's cameras; classes: simgen's semantic names
            objects = EpisodeObjects(r, class_map=None, filters=ctx.filters, cameras=r.cameras, lidar=lidar)
            for j, k in enumerate(ctx.frames(r.n)):
                pts = r.lidar(lidar, k, ctx.deskew)
                cloud = np.empty((len(pts["xyz"]), 4), np.float32)
                cloud[:, :3] = pts["xyz"]
                cloud[:, 3] = pts["intensity"]
                write_bytes(seq / "velodyne" / f"{j:06d}.bin", cloud.tobytes())
                t = objects.frame(k)
                keep = t.ids[t.keep].astype(np.uint32)
                inst = pts["instance"].astype(np.uint32)
                inst = np.where(np.isin(inst, keep), inst, 0).astype(np.uint32)
                sem = pts["semantic"].astype(np.uint32)
                write_bytes(seq / "labels" / f"{j:06d}.label", ((inst << 16) | (sem & 0xFFFF)).astype("<u4").tobytes())
                counts += np.bincount(pts["semantic"], minlength=256)[:256]
                n_inst += len(np.unique(inst[inst > 0]))
                T_w_cam = pts["T_world_from_sensor"] @ T_cam_from_velo_inv
                if first_cam is None:
                    first_cam, t0 = invert(T_w_cam), r.time_s(k)
                poses.append(_mat_line((first_cam @ T_w_cam)[:3], "{:.9e}") + "\n")
                times.append(f"{r.time_s(k) - t0:.6e}\n")
                n_scans += 1
                ctx.bar.update(1)
            write_text(seq / "poses.txt", "".join(poses))
            write_text(seq / "times.txt", "".join(times))
    write_text(out / "semantic-kitti.yaml", label_map_yaml(counts, splits))
    return {"sequences": len(ctx.episodes), "scans": n_scans, "instances": n_inst}
