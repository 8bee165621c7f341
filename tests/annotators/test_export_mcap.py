"""Issue 16: ``simgen export --format mcap`` read back with the official MCAP readers (``mcap`` with the
``mcap-protobuf-support`` / ``mcap-ros2-support`` decoder factories) and checked value by value against the HDF5
episode (read through ``simgen.io.episode.Episode``): message count per topic, timestamps, image pixels, point
clouds and their labels, box poses, transforms and criticality.
"""
from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from simgen.errors import InputError
from simgen.io.episode import Episode

PER_FRAME = ("/tf", "/objects", "/criticality", "/camera/front/image", "/camera/front/camera_info",
             "/camera/front/semantic", "/camera/front/semantic_color", "/camera/front/instance",
             "/camera/front/depth", "/camera/front/boxes_2d", "/lidar/lidar_top/points")


def episode_file(run: Path) -> Path:
    return sorted((run / "episodes").glob("*.h5"))[0]


def read_mcap(path: Path) -> dict[str, list]:
    """topic -> [(log_time, publish_time, schema name, decoded message)] through the official reader."""
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory as ProtobufDecoders
    from mcap_ros2.decoder import DecoderFactory as Ros2Decoders

    out = defaultdict(list)
    with open(path, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[ProtobufDecoders(), Ros2Decoders()])
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
            out[channel.topic].append((message.log_time, message.publish_time, schema.name, decoded))
    return dict(out)


def export_mcap(src: Path, out: Path, **kw) -> Path:
    from annotators.export import export

    export(src, "mcap", out, progress=False, **kw)
    return out / "episodes" / "episode_000000.mcap"


@pytest.fixture(scope="module")
def pb(lead_run, tmp_path_factory):
    path = export_mcap(lead_run, tmp_path_factory.mktemp("mcap_pb"))
    return path, read_mcap(path)


@pytest.fixture(scope="module")
def ros(lead_run, tmp_path_factory):
    path = export_mcap(lead_run, tmp_path_factory.mktemp("mcap_ros"), encoding="ros2", lossless=True)
    return path, read_mcap(path)


def stamp_ns(ts) -> int:
    """protobuf Timestamp or ROS builtin_interfaces/Time -> ns."""
    if hasattr(ts, "seconds"):
        return ts.seconds * 1_000_000_000 + ts.nanos
    return ts.sec * 1_000_000_000 + ts.nanosec


def decode(data: bytes, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert img is not None
    return img


def T_from(t, q) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T[:3, 3] = [t.x, t.y, t.z]
    return T


def unpack_cloud(data: bytes, stride: int, fields: dict[str, tuple[int, str]]) -> dict[str, np.ndarray]:
    """Decode a packed cloud from its message's own field table: name -> (offset, numpy type)."""
    buf = np.frombuffer(data, np.uint8).reshape(-1, stride)
    return {n: buf[:, o:o + np.dtype(t).itemsize].copy().view(t).ravel() for n, (o, t) in fields.items()}


FOXGLOVE_NUMERIC = {1: "u1", 2: "i1", 3: "<u2", 4: "<i2", 5: "<u4", 6: "<i4", 7: "<f4", 8: "<f8"}
ROS_POINTFIELD = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}


# --------------------------------------------------------------------------------------------- protobuf
def test_topics_counts_and_timestamps(pb, lead_run):
    path, msgs = pb
    with Episode(episode_file(lead_run)) as ep:
        n = ep.n_frames
        times = ep.f["frames/time_s"][:]
    assert set(msgs) == set(PER_FRAME)  # no events or collisions in these 12 frames
    want = [int(round(t * 1e9)) for t in times]
    for topic in PER_FRAME:
        assert len(msgs[topic]) == n, topic
        assert [m[0] for m in msgs[topic]] == want, topic
        assert [m[1] for m in msgs[topic]] == want, topic
    for _, _, _, m in msgs["/camera/front/image"]:
        assert m.frame_id == "front_optical" and m.format == "jpeg"
    assert [stamp_ns(m.timestamp) for *_, m in msgs["/lidar/lidar_top/points"]] == want
    assert msgs["/objects"][0][2] == "foxglove.SceneUpdate"
    assert msgs["/criticality"][0][2] == "simgen.Criticality"


def test_images_pixels(pb, lead_run):
    from simgen.classes import PALETTE

    _, msgs = pb
    with Episode(episode_file(lead_run)) as ep:
        for k in (0, 7):
            cam = ep.camera("front", k)
            jpg = decode(msgs["/camera/front/image"][k][3].data, cv2.IMREAD_COLOR)[..., ::-1].astype(int)
            err = np.abs(jpg - cam["rgb"].astype(int))
            assert err.mean() < 2.5 and np.percentile(err, 99) < 25  # JPEG quality 95
            assert np.abs(jpg - ep.camera("front", 11 - k)["rgb"].astype(int)).mean() > err.mean()
            sem = decode(msgs["/camera/front/semantic"][k][3].data)
            assert sem.dtype == np.uint8 and np.array_equal(sem, cam["semantic"])
            col = decode(msgs["/camera/front/semantic_color"][k][3].data, cv2.IMREAD_COLOR)[..., ::-1]
            assert np.array_equal(col, PALETTE[cam["semantic"]])
            inst = decode(msgs["/camera/front/instance"][k][3].data)
            assert inst.dtype == np.uint16 and np.array_equal(inst, cam["instance"])
            assert len(np.unique(inst)) > 2
            depth = decode(msgs["/camera/front/depth"][k][3].data)
            assert depth.dtype == np.uint16
            d = cam["depth"].astype(np.float64)
            near = d < 60.0
            assert near.mean() > 0.3
            assert np.all(np.abs(depth[near] / 1000.0 - d[near]) <= 0.0005 + 1e-9)  # millimetres, rounded
            assert np.all(depth[d > 65.6] == 0)  # beyond the 16-bit range: 0 = no data


def test_calibration_and_transforms(pb, lead_run):
    _, msgs = pb
    with Episode(episode_file(lead_run)) as ep:
        f = ep.f
        K = f["sensors/front/K"][3]
        cal = msgs["/camera/front/camera_info"][3][3]
        Kc = np.array(cal.K).reshape(3, 3)
        # OpenCV convention (pixel centres at integers): simgen's continuous principal point minus half a pixel
        assert np.allclose(Kc, [[K[0, 0], 0, K[0, 2] - 0.5], [0, K[1, 1], K[1, 2] - 0.5], [0, 0, 1]])
        assert (cal.width, cal.height) == (320, 180) and cal.frame_id == "front_optical"
        assert cal.distortion_model == "plumb_bob" and list(cal.D) == list(f["sensors/front"].attrs["distortion"])
        for k in (0, 5, 11):
            tf = {(t.parent_frame_id, t.child_frame_id): T_from(t.translation, t.rotation)
                  for t in msgs["/tf"][k][3].transforms}
            assert np.allclose(tf[("world", "ego")], f["frames/T_world_from_ego"][k], atol=1e-9)
            # the tree reproduces the poses the simulator stored for each sensor
            assert np.allclose(tf[("world", "ego")] @ tf[("ego", "lidar_top")],
                               f["sensors/lidar_top/T_world_from_sensor"][k], atol=1e-6)
            T_opt = tf[("world", "ego")] @ tf[("ego", "front")] @ tf[("front", "front_optical")]
            cam_world = f["sensors/front/T_world_from_sensor"][k]
            # optical axis (z) of the optical frame = the camera body's forward axis (x)
            assert np.allclose(T_opt[:3, 2], cam_world[:3, 0], atol=1e-6)
            assert np.allclose(T_opt[:3, 3], cam_world[:3, 3], atol=1e-6)


def test_point_cloud_values_and_labels(pb, lead_run, tmp_path):
    _, msgs = pb
    with Episode(episode_file(lead_run)) as ep:
        k = 6
        ld = ep.lidar("lidar_top", k)
        t_k = float(ep.f["frames/time_s"][k])
        m = msgs["/lidar/lidar_top/points"][k][3]
        assert m.frame_id == "lidar_top"
        fields = {fl.name: (fl.offset, FOXGLOVE_NUMERIC[fl.type]) for fl in m.fields}
        assert set(fields) >= {"x", "y", "z", "intensity", "semantic", "instance", "time"}
        p = unpack_cloud(m.data, m.point_stride, fields)
        assert len(p["x"]) == len(ld["xyz"]) > 1000
        assert np.array_equal(p["semantic"], ld["semantic"])
        assert np.array_equal(p["instance"], ld["instance"])
        assert np.array_equal(p["intensity"], ld["intensity"])
        assert np.allclose(p["time"], ld["time_s"] - t_k, atol=1e-6)
        assert p["time"].min() < -0.02 and p["time"].max() <= 1e-6  # one sweep (1/20 s) ending at the stamp
        # default deskew 'full': the lead car's returns, taken to the world through the file's own /tf, lie in the
        # lead's box as published on /objects
        tf = {(t.parent_frame_id, t.child_frame_id): T_from(t.translation, t.rotation)
              for t in msgs["/tf"][k][3].transforms}
        T_wl = tf[("world", "ego")] @ tf[("ego", "lidar_top")]
        xyz = np.stack([p["x"], p["y"], p["z"]], 1).astype(np.float64)
        world = xyz @ T_wl[:3, :3].T + T_wl[:3, 3]
        ent = {e.id: e for e in msgs["/objects"][k][3].entities}["2"]  # actor id 2 = lead
        cube = ent.cubes[0]
        on = p["instance"] == 2
        assert on.sum() > 10
        local = (world[on] - [cube.pose.position.x, cube.pose.position.y, cube.pose.position.z]) @ \
            T_from(cube.pose.position, cube.pose.orientation)[:3, :3]
        assert np.all(np.abs(local) <= np.array([cube.size.x, cube.size.y, cube.size.z]) / 2 + 0.01)
    # raw (not deskewed) clouds carry the stored coordinates exactly
    raw = read_mcap(export_mcap(lead_run, tmp_path / "raw", deskew="none"))
    m = raw["/lidar/lidar_top/points"][k][3]
    p = unpack_cloud(m.data, m.point_stride, {fl.name: (fl.offset, FOXGLOVE_NUMERIC[fl.type]) for fl in m.fields})
    assert np.array_equal(np.stack([p["x"], p["y"], p["z"]], 1), ld["xyz"])


def test_boxes_3d_2d_and_criticality(pb, lead_run):
    from scipy.spatial.transform import Rotation

    _, msgs = pb
    with Episode(episode_file(lead_run)) as ep:
        for k in (2, 9):
            b = ep.boxes(k)
            lab = ep.labels("front", k)
            ents = {e.id: e for e in msgs["/objects"][k][3].entities}
            assert set(ents) == {str(i) for i in b["id"]}
            assert msgs["/objects"][k][3].deletions[0].type == 1  # ALL: stale boxes never linger
            for j in range(len(b["id"])):
                e = ents[str(b["id"][j])]
                c = e.cubes[0]
                assert e.frame_id == "world"
                assert np.allclose([c.pose.position.x, c.pose.position.y, c.pose.position.z], b["center_world"][j])
                yaw = Rotation.from_quat([c.pose.orientation.x, c.pose.orientation.y, c.pose.orientation.z,
                                          c.pose.orientation.w]).as_euler("xyz")[2]
                assert np.isclose(np.angle(np.exp(1j * (yaw - b["yaw_world"][j]))), 0, atol=1e-6)
                assert np.allclose([c.size.x, c.size.y, c.size.z], b["size"][j])
                md = {kv.key: kv.value for kv in e.metadata}
                assert md["class"] == b["kind"][j] and md["id"] == str(b["id"][j])
                assert np.allclose([float(md[f"velocity_{a}"]) for a in "xyz"], b["velocity_world"][j], atol=6e-4)
                if j:
                    vf = lab["visible_fraction"][j]
                    assert (md["visible_fraction.front"] == "nan") if np.isnan(vf) else \
                        np.isclose(float(md["visible_fraction.front"]), vf, atol=6e-4)
                    assert md["points.lidar_top"] == str(int(ep.labels("lidar_top", k)["n_points"][j]))
            # 2-D boxes: the visible-mask boxes of the actors with visible pixels, in continuous pixel coordinates
            ann = msgs["/camera/front/boxes_2d"][k][3]
            got = {kv.value: [(q.x, q.y) for q in pa.points] for pa in ann.points for kv in pa.metadata
                   if kv.key == "id"}
            want = {str(b["id"][j]) for j in range(1, len(b["id"])) if lab["visible_pixels"][j] > 0}
            assert set(got) == want and len(want) >= 2
            for j in range(1, len(b["id"])):
                if str(b["id"][j]) in got:
                    x0, y0, x1, y1 = lab["bbox_mask"][j]
                    assert np.allclose(got[str(b["id"][j])], [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            # criticality: per-actor TTC and gap as stored (inf when not closing), ego acceleration
            c = msgs["/criticality"][k][3]
            ttc, gap = ep.f["criticality/ttc_s"][k], ep.f["criticality/gap_m"][k]
            assert [a.id for a in c.actors] == list(b["id"][1:])
            assert np.array_equal([a.ttc_s for a in c.actors], ttc[1:].astype(np.float64))
            assert np.array_equal([a.gap_m for a in c.actors], gap[1:].astype(np.float64))
            assert np.isclose(c.min_gap_m, np.nanmin(gap[1:]))
            fin = ttc[1:][np.isfinite(ttc[1:])]
            assert np.isclose(c.min_ttc_s, fin.min() if len(fin) else np.inf)
            assert np.isclose(c.ego_accel_mps2, ep.f["criticality/ego_accel_mps2"][k])
            assert np.isclose(c.ego_speed_mps, np.linalg.norm(ep.f["actors/velocity"][k, 0]))


# ------------------------------------------------------------------------------------------------ ROS 2
def test_ros2_lossless_read_back(ros, lead_run):
    path, msgs = ros
    with Episode(episode_file(lead_run)) as ep:
        n = ep.n_frames
        want = [int(round(t * 1e9)) for t in ep.f["frames/time_s"][:]]
        assert set(msgs) == set(PER_FRAME)
        for topic in PER_FRAME:
            assert [m[0] for m in msgs[topic]] == want, topic
        types = {t: msgs[t][0][2] for t in msgs}
        assert types["/tf"] == "tf2_msgs/msg/TFMessage"
        assert types["/lidar/lidar_top/points"] == "sensor_msgs/msg/PointCloud2"
        assert types["/camera/front/camera_info"] == "sensor_msgs/msg/CameraInfo"
        assert types["/camera/front/depth"] == "sensor_msgs/msg/Image"
        assert types["/objects"] == "visualization_msgs/msg/MarkerArray"
        assert types["/camera/front/boxes_2d"] == "foxglove_msgs/msg/ImageAnnotations"
        k = 4
        cam = ep.camera("front", k)
        img = msgs["/camera/front/image"][k][3]
        assert img.format == "png" and stamp_ns(img.header.stamp) == want[k]
        assert np.array_equal(decode(img.data, cv2.IMREAD_COLOR)[..., ::-1], cam["rgb"])  # lossless
        dm = msgs["/camera/front/depth"][k][3]
        assert dm.encoding == "32FC1" and dm.step == 4 * dm.width
        depth = np.frombuffer(dm.data, "<f4").reshape(dm.height, dm.width)
        assert np.array_equal(depth, cam["depth"])
        info = msgs["/camera/front/camera_info"][k][3]
        K = ep.f["sensors/front/K"][k]
        assert np.allclose(np.array(info.k).reshape(3, 3)[:2, 2], K[:2, 2] - 0.5) and np.isclose(info.k[0], K[0, 0])
        assert np.allclose(np.array(info.p).reshape(3, 4)[:, :3], np.array(info.k).reshape(3, 3))
        pc = msgs["/lidar/lidar_top/points"][k][3]
        assert pc.header.frame_id == "lidar_top" and pc.height == 1
        p = unpack_cloud(pc.data, pc.point_step, {fl.name: (fl.offset, ROS_POINTFIELD[fl.datatype]) for fl in pc.fields})
        ld = ep.lidar("lidar_top", k)
        assert pc.width == len(ld["xyz"]) and np.array_equal(p["semantic"], ld["semantic"])
        assert np.array_equal(p["instance"], ld["instance"])
        tf = {(t.header.frame_id, t.child_frame_id): T_from(t.transform.translation, t.transform.rotation)
              for t in msgs["/tf"][k][3].transforms}
        assert np.allclose(tf[("world", "ego")], ep.f["frames/T_world_from_ego"][k], atol=1e-9)
        b = ep.boxes(k)
        cubes = {m.id: m for m in msgs["/objects"][k][3].markers if m.type == 1}
        assert msgs["/objects"][k][3].markers[0].action == 3  # DELETEALL first
        lead = cubes[2]
        j = list(b["id"]).index(2)
        assert lead.ns == "car" and lead.header.frame_id == "world"
        assert np.allclose([lead.pose.position.x, lead.pose.position.y, lead.pose.position.z], b["center_world"][j])
        assert np.allclose([lead.scale.x, lead.scale.y, lead.scale.z], b["size"][j])
        crit = msgs["/criticality"][k][3]
        assert np.array_equal([a.ttc_s for a in crit.actors], ep.f["criticality/ttc_s"][k][1:].astype(np.float64))


# ----------------------------------------------------------------------------------------- events, policy
def test_events_and_collisions_are_messages(lead_run, tmp_path):
    src = tmp_path / "ev"
    (src / "episodes").mkdir(parents=True)
    ep_path = src / "episodes" / "episode_000000.h5"
    shutil.copy(episode_file(lead_run), ep_path)
    with h5py.File(ep_path, "r+") as f:
        for name, val in (("events/frame", [3]), ("events/time_s", [0.14]), ("events/actor", ["lead"]),
                          ("events/name", ["lead_brakes"])):
            ds = f[name]
            ds.resize(1, axis=0)
            ds[0] = val[0]
        f["collisions"].resize(1, axis=0)
        f["collisions"][0] = (5, 1, 2)
    msgs = read_mcap(export_mcap(src, tmp_path / "out"))
    ev = msgs["/events"]
    assert [m[0] for m in ev] == [140_000_000, 250_000_000]
    assert (ev[0][3].name, ev[0][3].actor, ev[0][3].frame) == ("lead_brakes", "lead", 3)
    assert (ev[1][3].name, ev[1][3].actor, ev[1][3].other) == ("collision", "ego", "lead")
    assert [m[3].collision for m in msgs["/criticality"]] == [k == 5 for k in range(12)]


def test_deterministic_overwrite_and_interruption(lead_run, tmp_path, monkeypatch):
    from annotators.export import mcap as mcap_mod

    for enc in ("ros2", "protobuf"):
        a = export_mcap(lead_run, tmp_path / f"a_{enc}", encoding=enc)
        b = export_mcap(lead_run, tmp_path / f"b_{enc}", encoding=enc)
        assert a.read_bytes() == b.read_bytes()
    a = export_mcap(lead_run, tmp_path / "a", encoding="ros2")
    with pytest.raises(InputError, match="not empty"):
        export_mcap(lead_run, tmp_path / "a")
    export_mcap(lead_run, tmp_path / "a", overwrite=True)
    assert read_mcap(a)["/tf"][0][2] == "foxglove.FrameTransforms"
    # Ctrl-C in the middle of an episode: no .mcap, no .partial, no summary
    calls = {"n": 0}
    real = mcap_mod._write_frame

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mcap_mod, "_write_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        export_mcap(lead_run, tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.mcap*")) and not (tmp_path / "c" / "simgen_export.json").exists()


def test_filters_and_sensor_choice(lead_run, tmp_path):
    from annotators.export.common import parse_filters

    msgs = read_mcap(export_mcap(lead_run, tmp_path / "f", filters=parse_filters(classes="pedestrian,child"),
                                 lidar="lidar_top"))
    with Episode(episode_file(lead_run)) as ep:
        kinds = list(ep.f["actors/kind"].asstr()[:])
        ids = ep.f["actors/id"][:]
    want = {str(ids[0])} | {str(i) for i, kd in zip(ids, kinds) if kd in ("pedestrian", "child")}
    for *_, m in msgs["/objects"]:
        assert {e.id for e in m.entities} == want
    for *_, m in msgs["/camera/front/boxes_2d"]:
        for pa in m.points:
            md = {kv.key: kv.value for kv in pa.metadata}
            assert md["class"] in ("pedestrian", "child")


def test_bad_options_are_one_line_errors(lead_run, tmp_path, capsys):
    from simgen.cli import main

    assert main(["export", str(lead_run), "--format", "mcap", "--out", str(tmp_path / "x"), "--camera", "rear"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--camera" in err and "front" in err
    assert main(["export", str(lead_run), "--format", "kitti", "--out", str(tmp_path / "y"), "--encoding", "ros2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--encoding" in err and "mcap" in err
    with pytest.raises(InputError, match="--encoding"):
        export_mcap(lead_run, tmp_path / "z", encoding="json")
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
    assert main(["export", str(lead_run), "--format", "mcap", "--out", str(tmp_path / "ok"), "--no-progress"]) == 0
    assert "messages" in capsys.readouterr().out
