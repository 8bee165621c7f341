"""Read a simgen nuScenes export with the official nuscenes-devkit and report what it sees, as JSON.

Run by tests/annotators/test_export_nuscenes.py with a Python that has nuscenes-devkit 1.2.0 (it needs numpy < 2,
so it lives in its own virtual environment, not the project's):

    python nusc_check.py DATAROOT VERSION OUT.json

Asserts the database's own invariants (every table loads and indexes, prev/next chains of samples, sample_data
and instances are complete and consistent, images and point clouds open with the devkit's loaders) and writes, per
key frame, what the devkit computes: the LIDAR_TOP boxes in the sensor frame with the number of exported points
the devkit's ``points_in_box`` finds inside each, each camera's boxes projected with ``view_points``, interpolated
boxes at sweeps, and whether the ego stands on the map mask.  The test compares these with the HDF5 ground truth.
This script imports nothing from simgen.
"""
from __future__ import annotations

import json
import sys
from importlib.metadata import version as pkg_version

import numpy as np
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import BoxVisibility, points_in_box, view_points
from PIL import Image


def main(dataroot: str, ver: str, out: str) -> None:
    nusc = NuScenes(version=ver, dataroot=dataroot, verbose=False)
    report = {"devkit": pkg_version("nuscenes-devkit"), "numpy": np.__version__,
              "tables": {t: len(getattr(nusc, t)) for t in nusc.table_names}, "samples": [], "sweeps": [],
              "scenes": []}
    for scene in nusc.scene:
        tokens, tok = [], scene["first_sample_token"]
        while tok:
            s = nusc.get("sample", tok)
            assert s["scene_token"] == scene["token"]
            if tokens:
                assert s["prev"] == tokens[-1]
            tokens.append(tok)
            tok = s["next"]
        assert len(tokens) == scene["nbr_samples"] and tokens[-1] == scene["last_sample_token"]
        log = nusc.get("log", scene["log_token"])
        mask = nusc.get("map", log["map_token"])["mask"]
        report["scenes"].append({"name": scene["name"], "samples": tokens, "location": log["location"]})
        for st in tokens:
            report["samples"].append(check_sample(nusc, st, mask))
    for inst in nusc.instance:
        n, tok, prev = 0, inst["first_annotation_token"], ""
        while tok:
            ann = nusc.get("sample_annotation", tok)
            assert ann["instance_token"] == inst["token"] and ann["prev"] == prev
            n, prev, tok = n + 1, tok, ann["next"]
        assert n == inst["nbr_annotations"] and prev == inst["last_annotation_token"]
        if n >= 2:
            assert np.all(np.isfinite(nusc.box_velocity(inst["first_annotation_token"])))
    for sd in nusc.sample_data:
        if sd["prev"]:
            assert nusc.get("sample_data", sd["prev"])["next"] == sd["token"]
        if not sd["is_key_frame"] and sd["channel"] == "LIDAR_TOP":
            _, boxes, _ = nusc.get_sample_data(sd["token"])
            report["sweeps"].append({"token": sd["token"], "timestamp": sd["timestamp"],
                                     "boxes": {b.token: [float(v) for v in b.center] for b in boxes}})
    nusc.list_scenes()
    with open(out, "w") as fh:
        json.dump(report, fh)


def check_sample(nusc: NuScenes, sample_token: str, mask) -> dict:
    sample = nusc.get("sample", sample_token)
    rec = {"token": sample_token, "anns": sorted(sample["anns"]), "lidar": {}, "cameras": {}}
    lidar_sd = sample["data"]["LIDAR_TOP"]
    path, boxes, _ = nusc.get_sample_data(lidar_sd)
    pc = LidarPointCloud.from_file(path)
    assert pc.points.shape[0] == 4
    pose = nusc.get("ego_pose", nusc.get("sample_data", lidar_sd)["ego_pose_token"])
    rec["ego_on_map"] = bool(mask.is_on_mask(pose["translation"][0], pose["translation"][1])[0])
    rec["n_points"] = int(pc.points.shape[1])
    for b in boxes:
        rec["lidar"][b.token] = {"center": [float(v) for v in b.center],
                                 "in_box": int(points_in_box(b, pc.points[:3, :]).sum()),  # wlh_factor 1
                                 "num_lidar_pts": int(nusc.get("sample_annotation", b.token)["num_lidar_pts"])}
    for channel, sd_token in sorted(sample["data"].items()):
        if not channel.startswith("CAM_"):
            continue
        path, boxes, K = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ANY)
        sd = nusc.get("sample_data", sd_token)
        with Image.open(path) as im:
            assert im.size == (sd["width"], sd["height"])
        cam = {}
        for b in boxes:
            uv = view_points(b.center.reshape(3, 1), K, normalize=True)[:2, 0]
            cam[b.token] = {"uv": [float(uv[0]), float(uv[1])], "depth": float(b.center[2])}
        rec["cameras"][channel] = cam
    return rec


if __name__ == "__main__":
    main(*sys.argv[1:4])
