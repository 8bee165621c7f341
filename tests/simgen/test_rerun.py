"""Issue 16: ``simgen view EPISODE --rerun`` writes a Rerun recording; read back with Rerun's own loader
(``rerun.chunk.RrdReader``) and checked value by value against the HDF5 episode (``simgen.io.episode.Episode``):
rows per entity, timestamps, image pixels, the cloud's points and labels, box poses, transforms, criticality.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from simgen.io.episode import Episode

import rerun  # noqa: F401,E402  (in the test extra: the suite tests what ships, so no skip when it is missing)


def episode_file(run: Path) -> Path:
    return sorted((run / "episodes").glob("*.h5"))[0]


def load(path: Path) -> tuple[dict, dict]:
    """(temporal, static): entity path -> {column: [values by row]} (temporal rows sorted by frame), read with
    Rerun's RrdReader; time columns as integers (frame index, sim_time in ns)."""
    import pyarrow as pa
    from rerun.chunk import RrdReader

    import warnings

    temporal, static = defaultdict(lambda: defaultdict(list)), defaultdict(lambda: defaultdict(list))
    with warnings.catch_warnings():  # written without a footer on purpose (flat memory; see simgen/rerun_view.py)
        warnings.filterwarnings("ignore", message="RRD file has no footer")
        reader = RrdReader(path)
    for ch in reader.stream():
        rb = ch.to_record_batch()
        dest = static if ch.is_static else temporal
        for name in rb.schema.names:
            if name == "rerun.controls.RowId":
                continue
            col = rb.column(name)
            if name == "sim_time":
                col = col.cast(pa.int64())
            dest[ch.entity_path][name].extend(col.to_pylist())
    for ent, cols in temporal.items():
        if "frame" in cols:
            order = np.argsort(cols["frame"], kind="stable")
            for name in list(cols):
                cols[name] = [cols[name][i] for i in order]
    return temporal, static


@pytest.fixture(scope="module")
def rec(lead_run, tmp_path_factory):
    from simgen.rerun_view import write_recording

    out = tmp_path_factory.mktemp("rrd") / "lead.rrd"
    assert write_recording(str(episode_file(lead_run)), out=str(out), progress=False) == out
    return load(out)


def mat(v) -> np.ndarray:
    """Rerun stores 3x3 matrices column-major."""
    return np.asarray(v, float).reshape(3, 3).T


def test_rows_and_timestamps(rec, lead_run):
    temporal, _ = rec
    with Episode(episode_file(lead_run)) as ep:
        n = ep.n_frames
        want = [int(round(t * 1e9)) for t in ep.f["frames/time_s"][:]]
    for ent in ("/world/ego", "/world/objects", "/world/ego/front/optical", "/world/ego/front/optical/rgb",
                "/world/ego/front/optical/semantic", "/world/ego/front/optical/instance",
                "/world/ego/front/optical/depth", "/world/ego/front/optical/boxes", "/world/ego/lidar_top/points",
                "/criticality/gap_m/lead", "/criticality/ego_speed_mps"):
        cols = temporal[ent]
        assert cols["frame"] == list(range(n)), ent
        assert cols["sim_time"] == want, ent


def _image(cols, key: str, i: int, dtype) -> np.ndarray:
    fmt = cols[f"{key}:format"][i][0]
    return np.frombuffer(bytes(cols[f"{key}:buffer"][i][0]), dtype).reshape(fmt["height"], fmt["width"])


def test_images_pixels_and_pinhole(rec, lead_run):
    temporal, _ = rec
    base = "/world/ego/front/optical"
    with Episode(episode_file(lead_run)) as ep:
        for k in (1, 8):
            cam = ep.camera("front", k)
            jpg = cv2.imdecode(np.frombuffer(bytes(temporal[f"{base}/rgb"]["EncodedImage:blob"][k][0]), np.uint8),
                               cv2.IMREAD_COLOR)[..., ::-1].astype(int)
            assert temporal[f"{base}/rgb"]["EncodedImage:media_type"][k][0] == "image/jpeg"
            err = np.abs(jpg - cam["rgb"].astype(int))
            assert err.mean() < 2.5 and np.percentile(err, 99) < 25
            assert np.array_equal(_image(temporal[f"{base}/semantic"], "SegmentationImage", k, np.uint8),
                                  cam["semantic"])
            inst = _image(temporal[f"{base}/instance"], "SegmentationImage", k, np.uint16)
            assert np.array_equal(inst, cam["instance"]) and len(np.unique(inst)) > 2
            depth = _image(temporal[f"{base}/depth"], "DepthImage", k, np.uint16)
            assert temporal[f"{base}/depth"]["DepthImage:meter"][k][0] == 1000.0
            d = cam["depth"].astype(np.float64)
            near = d < 60.0
            assert near.mean() > 0.3 and np.all(np.abs(depth[near] / 1000.0 - d[near]) <= 0.0005 + 1e-9)
            assert np.all(depth[d > 65.6] == 0)
            K = mat(temporal[base]["Pinhole:image_from_camera"][k][0])
            assert np.allclose(K, cam["K"])  # simgen's continuous pixel convention, as Rerun's
            assert list(temporal[base]["Pinhole:resolution"][k][0]) == [320, 180]
            # 2-D boxes: visible-mask boxes of the actors with visible pixels
            lab = ep.labels("front", k)
            b = temporal[f"{base}/boxes"]
            ids = list(b["actor_id"][k])
            want = [int(i) for j, i in enumerate(ep.f["actors/id"][:]) if j and lab["visible_pixels"][j] > 0]
            assert ids == want and len(ids) >= 2
            for i, c, h in zip(ids, b["Boxes2D:centers"][k], b["Boxes2D:half_sizes"][k]):
                j = list(ep.f["actors/id"][:]).index(i)
                x0, y0, x1, y1 = lab["bbox_mask"][j]
                assert np.allclose([c[0] - h[0], c[1] - h[1], c[0] + h[0], c[1] + h[1]], [x0, y0, x1, y1], atol=1e-4)


def test_transforms(rec, lead_run):
    from simgen.geometry import T_BODY_FROM_OPTICAL

    temporal, static = rec
    with Episode(episode_file(lead_run)) as ep:
        f = ep.f
        for k in (0, 11):
            ego = temporal["/world/ego"]
            T = np.eye(4)
            T[:3, :3] = mat(ego["Transform3D:mat3x3"][k][0])
            T[:3, 3] = ego["Transform3D:translation"][k][0]
            assert np.allclose(T, f["frames/T_world_from_ego"][k], atol=1e-6)
            M = np.eye(4)
            M[:3, :3] = mat(static["/world/ego/lidar_top"]["Transform3D:mat3x3"][0][0])
            M[:3, 3] = static["/world/ego/lidar_top"]["Transform3D:translation"][0][0]
            assert np.allclose(T @ M, f["sensors/lidar_top/T_world_from_sensor"][k], atol=1e-5)
        opt = mat(static["/world/ego/front/optical"]["Transform3D:mat3x3"][0][0])
        assert np.allclose(opt, T_BODY_FROM_OPTICAL[:3, :3])  # z forward, x right, y down


def test_points_labels_and_boxes(rec, lead_run, tmp_path):
    from scipy.spatial.transform import Rotation

    from simgen.rerun_view import write_recording

    temporal, static = rec
    pts, objs = temporal["/world/ego/lidar_top/points"], temporal["/world/objects"]
    with Episode(episode_file(lead_run)) as ep:
        k = 6
        ld = ep.lidar("lidar_top", k)
        t_k = float(ep.f["frames/time_s"][k])
        xyz = np.asarray(pts["Points3D:positions"][k], float)
        assert len(xyz) == len(ld["xyz"]) > 1000
        assert np.array_equal(pts["Points3D:class_ids"][k], ld["semantic"].astype(int))
        assert np.array_equal(pts["instance"][k], ld["instance"].astype(int))
        assert np.array_equal(np.asarray(pts["intensity"][k], np.float32), ld["intensity"])
        assert np.array_equal(pts["channel"][k], ld["channel"].astype(int))
        assert np.allclose(pts["time"][k], ld["time_s"] - t_k, atol=1e-6)
        # boxes: pose and size as stored
        b = ep.boxes(k)
        assert list(objs["actor_id"][k]) == [int(i) for i in b["id"]]
        assert np.allclose(objs["Boxes3D:centers"][k], b["center_world"], atol=1e-6)
        assert np.allclose(np.asarray(objs["Boxes3D:half_sizes"][k]) * 2, b["size"], atol=1e-5)
        yaw = Rotation.from_quat(np.asarray(objs["Boxes3D:quaternions"][k], float)).as_euler("xyz")[:, 2]
        assert np.allclose(np.angle(np.exp(1j * (yaw - b["yaw_world"]))), 0, atol=1e-5)
        assert list(objs["kind"][k]) == list(b["kind"])
        assert np.allclose(objs["velocity_x"][k], b["velocity_world"][:, 0], atol=1e-5)
        # deskewed lead returns, through the recording's own transforms, fall in the lead's box
        T = np.eye(4)
        T[:3, :3] = mat(temporal["/world/ego"]["Transform3D:mat3x3"][k][0])
        T[:3, 3] = temporal["/world/ego"]["Transform3D:translation"][k][0]
        M = np.eye(4)
        M[:3, :3] = mat(static["/world/ego/lidar_top"]["Transform3D:mat3x3"][0][0])
        M[:3, 3] = static["/world/ego/lidar_top"]["Transform3D:translation"][0][0]
        world = xyz @ (T @ M)[:3, :3].T + (T @ M)[:3, 3]
        j = list(b["id"]).index(2)
        on = np.asarray(pts["instance"][k]) == 2
        assert on.sum() > 10
        R = Rotation.from_euler("z", b["yaw_world"][j]).as_matrix()
        local = (world[on] - b["center_world"][j]) @ R
        assert np.all(np.abs(local) <= b["size"][j] / 2 + 0.01)
        # criticality series as stored (inf TTC = no sample)
        gap = ep.f["criticality/gap_m"][:, j]
        assert np.array_equal(np.ravel(temporal["/criticality/gap_m/lead"]["Scalars:scalars"]), gap.astype(np.float64))
        ttc0 = ep.f["criticality/ttc_s"][:, list(ep.f["actors/name"].asstr()[:]).index("traffic_0")]  # closing
        assert np.isfinite(ttc0).sum() >= 5
        assert np.array_equal(np.ravel(temporal["/criticality/ttc_s/traffic_0"]["Scalars:scalars"]),
                              ttc0[np.isfinite(ttc0)].astype(np.float64))
    raw_path = tmp_path / "raw.rrd"
    write_recording(str(episode_file(lead_run)), out=str(raw_path), deskew="none", progress=False, max_frames=7)
    raw, _ = load(raw_path)
    assert raw["/world/ego/lidar_top/points"]["frame"] == list(range(7))
    assert np.array_equal(np.asarray(raw["/world/ego/lidar_top/points"]["Points3D:positions"][6], np.float32), ld["xyz"])


def test_cli_errors_missing_extra_and_interruption(lead_run, tmp_path, capsys, monkeypatch):
    from simgen import rerun_view
    from simgen.cli import main

    ep = str(episode_file(lead_run))
    out = tmp_path / "a.rrd"
    assert main(["view", ep, "--rerun", "--out", str(out)]) == 0
    assert out.exists() and f"wrote {out}" in capsys.readouterr().out
    assert main(["view", ep, "--rerun", "--out", str(out)]) == 2  # never overwrites silently
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert main(["view", ep, "--rerun", "--out", str(out), "--overwrite", "--camera", "rear"]) == 2
    assert "--camera" in capsys.readouterr().err
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    assert main(["view", str(junk), "--rerun"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(junk) in err and not list(tmp_path.glob("junk.rrd*"))
    # Ctrl-C mid-episode: neither the .rrd nor its .partial remains
    calls = {"n": 0}
    real = rerun_view._frame

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(rerun_view, "_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        rerun_view.write_recording(ep, out=str(tmp_path / "b.rrd"), progress=False)
    assert not list(tmp_path.glob("b.rrd*"))
    # without the extra: one line saying how to install it, exit 2, nothing written
    monkeypatch.setitem(sys.modules, "rerun", None)
    assert main(["view", ep, "--rerun", "--out", str(tmp_path / "c.rrd")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'simgen[rerun]'" in err
    assert not list(tmp_path.glob("c.rrd*"))


def test_events_and_collisions_in_the_text_log(lead_run, tmp_path):
    import shutil

    import h5py

    from simgen.rerun_view import write_recording

    ep_path = tmp_path / "ev.h5"
    shutil.copy(episode_file(lead_run), ep_path)
    with h5py.File(ep_path, "r+") as f:
        for name, val in (("events/frame", 3), ("events/time_s", 0.14), ("events/actor", "lead"),
                          ("events/name", "lead_brakes")):
            f[name].resize(1, axis=0)
            f[name][0] = val
        f["collisions"].resize(1, axis=0)
        f["collisions"][0] = (5, 1, 2)
    temporal, _ = load(write_recording(str(ep_path), progress=False, max_frames=8))
    log = temporal["/events"]
    assert log["sim_time"] == [140_000_000, 250_000_000] and log["frame"] == [3, 5]
    assert [t[0] for t in log["TextLog:text"]] == ["lead_brakes (lead)", "collision ego - lead"]
    assert [t[0] for t in log["TextLog:level"]] == ["INFO", "WARN"]
