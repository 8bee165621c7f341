"""Issue 4: ``simgen export`` to KITTI, SemanticKITTI and COCO, read back with the formats' own reading conventions
(pycocotools' COCO API; a KITTI reader parsing labels and calibration the way OpenPCDet and mmdetection3d do) and
checked against the HDF5 ground truth: counts, masks, box projections and LiDAR points inside boxes.
The nuScenes export is tested in test_export_nuscenes.py.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from simgen.errors import InputError

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
RIGS = REPO / "assets" / "rigs"

TWO_CAM_RIG = """\
name: two_cam
description: front and left cameras + 16-channel LiDAR (export tests)
sensors:
  - name: front
    type: camera
    mount: {x: 1.0, z: 1.6}
    attributes: {image_size_x: 320, image_size_y: 180, fov: 90}
  - name: left
    type: camera
    mount: {x: 0.5, y: 0.8, z: 1.5, yaw_deg: 90}
    attributes: {image_size_x: 240, image_size_y: 160, fov: 100}
  - name: lidar_top
    type: lidar
    mount: {z: 1.9}
    attributes: {channels: 16, range: 80.0, points_per_second: 160000, rotation_frequency: 20.0, upper_fov: 2.0,
                 lower_fov: -24.8, dropoff_general_rate: 0.0, dropoff_zero_intensity: 0.0}
"""


def make_runs(base: Path) -> Path:
    """A batch folder with two runs (3 episodes, 2 rigs) plus decoys that discovery must skip.  Built once."""
    from simgen.runner import run

    root = base / "export_runs"
    if (root / ".done").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    run(str(SCENARIOS / "lead_vehicle_brakes.yaml"), rig=str(RIGS / "small.yaml"), out=str(root / "lead"), seed=3,
        episodes=2, frames=6, progress=False)
    rig = root / "two_cam.yaml"
    rig.write_text(TWO_CAM_RIG)
    run(str(SCENARIOS / "pedestrian_behind_van.yaml"), rig=str(rig), out=str(root / "ped"), seed=1, episodes=1,
        frames=6, progress=False)
    rig.unlink()
    (root / "lead" / "episodes" / "episode_000007.h5.partial").write_bytes(b"interrupted")
    shutil.copy(root / "lead" / "episodes" / "episode_000000.h5", root / "broken.h5")
    with h5py.File(root / "broken.h5", "r+") as f:
        f.attrs["complete"] = False
    (root / "notes.h5").write_bytes(b"not hdf5")
    (root / ".done").write_text("ok")
    return root


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def episodes(runs):
    from annotators.export.common import find_episodes

    refs, skipped = find_episodes(runs)
    return refs


def export(src, fmt, out, **kw):
    from annotators.export import export as do_export

    kw.setdefault("progress", False)
    return do_export(src, fmt, out, **kw)


def gt(path: Path):
    return h5py.File(path, "r")


def quat_to_R(q) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    w, x, y, z = q
    return Rotation.from_quat([x, y, z, w]).as_matrix()


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def tree_digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------- discovery, deskew
def test_discovery_finds_complete_episodes_only(runs, episodes):
    from annotators.export.common import find_episodes

    rels = [e.rel for e in episodes]
    assert rels == ["lead/episodes/episode_000000.h5", "lead/episodes/episode_000001.h5",
                    "ped/episodes/episode_000000.h5"]
    _, skipped = find_episodes(runs)
    assert any("broken.h5" in s and "incomplete" in s for s in skipped)
    assert any("notes.h5" in s for s in skipped)
    assert len({e.uid for e in episodes}) == 3
    one, _ = find_episodes(runs / "lead" / "episodes" / "episode_000001.h5")
    assert [e.rel for e in one] == ["episode_000001.h5"]
    empty = runs.parent / "empty_dir"
    empty.mkdir(exist_ok=True)
    with pytest.raises(InputError, match="no complete simgen episode"):
        find_episodes(empty)


def test_deskew_matches_per_point_poses(episodes):
    """Ego deskew: static points taken to the world with the frame pose equal the raw points taken to the world with
    the pose the builtin backend used at each firing time (ego x, y, z, yaw interpolated linearly)."""
    from annotators.export.common import EpisodeReader
    from simgen.geometry import pose_matrix, transform_points, wrap_angle, euler_from_matrix

    with EpisodeReader(episodes[0]) as r:
        T_es = r.T_ego_from_sensor("lidar_top")
        for k in (0, 3):
            raw = r.lidar("lidar_top", k, "none")
            des = r.lidar("lidar_top", k, "ego")
            np.testing.assert_array_equal(raw["instance"], des["instance"])
            E1 = r.T_world_from_ego(k)
            if k > 0:
                E0 = r.T_world_from_ego(k - 1)
            else:
                E0 = E1.copy()
                E0[:3, 3] -= r.row("actors/velocity", 0)[0] / r.tick_hz
            y0, y1 = euler_from_matrix(E0)[2], euler_from_matrix(E1)[2]
            t1 = r.time_s(k)
            w = np.clip((raw["time_s"] - (t1 - 1 / r.tick_hz)) * r.tick_hz, 0, 1)
            pos = E0[:3, 3] + w[:, None] * (E1[:3, 3] - E0[:3, 3])
            yaw = y0 + w * wrap_angle(y1 - y0)
            T_ws = pose_matrix(pos[:, 0], pos[:, 1], pos[:, 2], yaw) @ T_es
            world_true = transform_points(T_ws, raw["xyz"].astype(float))
            world_des = transform_points(raw["T_world_from_sensor"], des["xyz"])
            static = raw["instance"] == 0
            assert static.sum() > 100
            err = np.linalg.norm(world_true[static] - world_des[static], axis=1)
            assert err.max() < 1e-3
            if k > 0:  # the ego moves ~0.7 m per sweep: the raw cloud is visibly skewed
                world_raw = transform_points(raw["T_world_from_sensor"], raw["xyz"].astype(float))
                assert np.linalg.norm(world_raw[static] - world_true[static], axis=1).max() > 0.1


def test_full_deskew_puts_actor_points_in_their_boxes(episodes):
    from annotators.export.common import EpisodeReader
    from simgen.geometry import points_in_box

    fractions = {}
    for ref in episodes:
        with EpisodeReader(ref) as r:
            for k in range(r.n):
                L = r.labels("lidar_top", k, ["center_sensor", "quat_sensor"])
                pts = {m: r.lidar("lidar_top", k, m) for m in ("full", "ego")}
                for i in range(1, r.A):
                    sel = pts["full"]["instance"] == r.actor_ids[i]
                    if sel.sum() < 10:
                        continue
                    T = np.eye(4)
                    T[:3, :3], T[:3, 3] = quat_to_R(L["quat_sensor"][i]), L["center_sensor"][i]
                    for m in pts:
                        fractions.setdefault(m, []).append(points_in_box(pts[m]["xyz"][sel], T, r.dims[i], margin=0.01).mean())
    assert len(fractions["full"]) >= 10
    assert min(fractions["full"]) == 1.0
    assert min(fractions["ego"]) < 0.9  # moving actors smear without actor compensation: why 'full' is the default


# ------------------------------------------------------------------------------------------------- KITTI
class KittiObject:
    """One label line, parsed like OpenPCDet's ``object3d_kitti.Object3d`` (single-space split, fixed columns)."""

    def __init__(self, line: str):
        label = line.strip().split(" ")
        assert len(label) == 15, line
        self.cls_type = label[0]
        self.truncation = float(label[1])
        self.occlusion = float(label[2])
        self.alpha = float(label[3])
        self.box2d = np.array([float(v) for v in label[4:8]], np.float32)
        self.h, self.w, self.l = (float(v) for v in label[8:11])
        self.loc = np.array([float(v) for v in label[11:14]], np.float32)
        self.ry = float(label[14])

    def corners_rect(self) -> np.ndarray:
        """(8,3) corners in the rectified camera frame (KITTI: location is the bottom centre, y points down)."""
        l, w, h = self.l, self.w, self.h
        x = np.array([l, l, -l, -l, l, l, -l, -l]) / 2
        y = np.array([0, 0, 0, 0, -h, -h, -h, -h])
        z = np.array([w, -w, -w, w, w, -w, -w, w]) / 2
        c, s = np.cos(self.ry), np.sin(self.ry)
        R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        return (R @ np.stack([x, y, z])).T + self.loc


class KittiCalib:
    """Calibration parsed like OpenPCDet's ``calibration_kitti``: P2 on line 3, R0_rect on line 5, Tr_velo_to_cam
    on line 6, each 'name: v v v ...'."""

    def __init__(self, path: Path):
        lines = path.read_text().splitlines()
        assert [ln.split(":")[0] for ln in lines[:7]] == ["P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam",
                                                          "Tr_imu_to_velo"]
        vals = [np.array(ln.strip().split(" ")[1:], np.float64) for ln in lines[:7]]
        self.P2 = vals[2].reshape(3, 4)
        self.R0 = vals[4].reshape(3, 3)
        self.V2C = vals[5].reshape(3, 4)
        self.I2V = vals[6].reshape(3, 4)

    def lidar_to_rect(self, pts: np.ndarray) -> np.ndarray:
        hom = np.hstack([pts, np.ones((len(pts), 1))])
        return hom @ (self.V2C.T @ self.R0.T)

    def rect_to_lidar(self, pts: np.ndarray) -> np.ndarray:
        V2C = np.vstack([self.V2C, [0, 0, 0, 1]])
        R0 = np.eye(4)
        R0[:3, :3] = self.R0
        hom = np.hstack([pts, np.ones((len(pts), 1))])
        return (hom @ np.linalg.inv(R0 @ V2C).T)[:, :3]

    def rect_to_img(self, pts: np.ndarray) -> np.ndarray:
        hom = np.hstack([pts, np.ones((len(pts), 1))]) @ self.P2.T
        return hom[:, :2] / hom[:, 2:3]


def kitti_box_lidar(o: KittiObject, calib: KittiCalib) -> np.ndarray:
    """(x, y, z, l, w, h, heading) in the LiDAR frame, converted the way OpenPCDet's
    ``boxes3d_kitti_camera_to_lidar`` does (bottom centre -> centre by +h/2 in LiDAR z; heading = -(pi/2 + ry))."""
    xyz = calib.rect_to_lidar(o.loc[None].astype(float))[0]
    xyz[2] += o.h / 2
    return np.array([*xyz, o.l, o.w, o.h, -(np.pi / 2 + o.ry)])


def in_lidar_box(pts: np.ndarray, box: np.ndarray, margin: float = 0.02) -> np.ndarray:
    d = pts - box[:3]
    c, s = np.cos(-box[6]), np.sin(-box[6])
    x = c * d[:, 0] - s * d[:, 1]
    y = s * d[:, 0] + c * d[:, 1]
    return (np.abs(x) <= box[3] / 2 + margin) & (np.abs(y) <= box[4] / 2 + margin) & (np.abs(d[:, 2]) <= box[5] / 2 + margin)


@pytest.fixture(scope="session")
def kitti_export(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("kitti") / "ds"
    s = export(runs, "kitti", out, camera="front")
    return out, s


def expected_kitti(f, k, cam, lidar="lidar_top", cmap=None):
    """Actor indices KITTI must label in frame k: in the image, seen by a pixel or a LiDAR return, mapped."""
    from annotators.export.common import load_class_map

    cmap = cmap or load_class_map(None, "kitti")
    kinds = f["actors/kind"].asstr()[:]
    inf = f[f"labels/{cam}/in_fov"][k]
    vis = f[f"labels/{cam}/visible_pixels"][k]
    npts = f[f"labels/{lidar}/n_points"][k]
    return [i for i in range(1, len(kinds)) if inf[i] and (vis[i] > 0 or npts[i] > 0) and cmap[kinds[i]] is not None]


def test_kitti_layout_counts_and_images(kitti_export, episodes):
    import cv2

    out, s = kitti_export
    frames = 6 * 3
    for d, ext in (("image_2", "png"), ("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt")):
        names = sorted(p.name for p in (out / "training" / d).iterdir())
        assert names == [f"{i:06d}.{ext}" for i in range(frames)], d
    sets = {n: (out / "ImageSets" / f"{n}.txt").read_text().split() for n in ("train", "val", "trainval")}
    assert sorted(sets["train"] + sets["val"]) == sets["trainval"] == [f"{i:06d}" for i in range(frames)]
    assert sets["val"] == [f"{i:06d}" for i in range(12, 18)]  # the last episode of three, whole
    assert s["counts"]["frames"] == frames
    assert not list(out.rglob("*.partial"))
    mapping = (out / "simgen_frames.txt").read_text().splitlines()
    idx, e, k, _ = mapping[8].split(" ")
    assert (idx, e, k) == ("000008", "1", "2")
    with gt(episodes[1].path) as f:
        img = cv2.imread(str(out / "training" / "image_2" / "000008.png"))[..., ::-1]
        np.testing.assert_array_equal(img, f["sensors/front/rgb"][2])


def test_kitti_labels_match_ground_truth(kitti_export, episodes):
    """Reader as OpenPCDet/mmdet3d: counts per frame, classes, sizes, centres, KITTI angle conventions, and every
    3-D box projected through the exported P2 lands on its 2-D box."""
    from annotators.export.common import load_class_map

    out, _ = kitti_export
    cmap = load_class_map(None, "kitti")
    n_checked_iou = 0
    idx = 0
    for ref in episodes:
        with gt(ref.path) as f:
            kinds = f["actors/kind"].asstr()[:]
            dims = f["actors/dims"][:]
            for k in range(f.attrs["n_frames"]):
                name = f"{idx:06d}"
                idx += 1
                calib = KittiCalib(out / "training" / "calib" / f"{name}.txt")
                K = f["sensors/front/K"][k]
                np.testing.assert_allclose(calib.P2[:, :3], K - np.array([[0, 0, .5], [0, 0, .5], [0, 0, 0]]))
                objs = [KittiObject(ln) for ln in (out / "training" / "label_2" / f"{name}.txt").read_text().splitlines()]
                want = expected_kitti(f, k, "front")
                assert len(objs) == len(want)
                centres = f["labels/front/center_sensor"][k]
                for o in objs:
                    assert o.cls_type in ("Car", "Van", "Truck", "Pedestrian", "Cyclist", "Misc")
                    centre = o.loc - np.array([0, o.h / 2, 0])  # location is the bottom centre: centre is h/2 up (-y)
                    i = min(want, key=lambda j: np.linalg.norm(centres[j] - centre))
                    assert np.linalg.norm(centres[i] - centre) < 2e-3
                    assert o.cls_type == cmap[kinds[i]]
                    np.testing.assert_allclose([o.l, o.w, o.h], dims[i], atol=1e-4)
                    assert -np.pi <= o.ry <= np.pi and -np.pi <= o.alpha <= np.pi
                    assert abs(np.angle(np.exp(1j * (o.alpha - (o.ry - np.arctan2(o.loc[0], o.loc[2])))))) < 1e-3
                    # heading from the GT box in the LiDAR frame: KITTI ry = -(yaw_lidar + pi/2)
                    R = quat_to_R(f["labels/lidar_top/quat_sensor"][k][i])
                    yaw_l = np.arctan2(R[1, 0], R[0, 0])
                    assert abs(np.angle(np.exp(1j * (o.ry + yaw_l + np.pi / 2)))) < 1e-3
                    assert o.occlusion == f["labels/front/occlusion"][k][i]
                    assert abs(o.truncation - f["labels/front/truncation"][k][i]) <= 0.006
                    if o.truncation < 0.01 and o.occlusion == 0:
                        uv = calib.rect_to_img(o.corners_rect())
                        proj = [uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()]
                        assert iou(proj, o.box2d) > 0.7, (name, o.cls_type, proj, o.box2d)
                        n_checked_iou += 1
    assert n_checked_iou >= 10
    ahead = [KittiObject(ln) for ln in (out / "training" / "label_2" / "000000.txt").read_text().splitlines()]
    lead = min(ahead, key=lambda o: abs(o.loc[0]))  # the lead car, straight ahead, driving away from the camera
    assert abs(lead.ry + np.pi / 2) < 0.1 and abs(lead.alpha + np.pi / 2) < 0.15


def test_kitti_points_inside_boxes(kitti_export, episodes):
    """Exported clouds, taken to the camera with the exported Tr_velo_to_cam and back (OpenPCDet conventions),
    fall inside their object's exported box (>= 95 % of the object's points, from the HDF5 per-point ids)."""
    out, _ = kitti_export
    idx, checked = 0, 0
    for ref in episodes:
        with gt(ref.path) as f:
            g = f["sensors/lidar_top"]
            for k in range(f.attrs["n_frames"]):
                name = f"{idx:06d}"
                idx += 1
                cloud = np.fromfile(out / "training" / "velodyne" / f"{name}.bin", np.float32).reshape(-1, 4)
                a, b = g["offsets"][k], g["offsets"][k + 1]
                inst = g["instance"][a:b]
                assert len(cloud) == len(inst)
                np.testing.assert_allclose(cloud[:, 3], g["intensity"][a:b])
                calib = KittiCalib(out / "training" / "calib" / f"{name}.txt")
                rect = calib.lidar_to_rect(cloud[:, :3].astype(float))
                back = calib.rect_to_lidar(rect)
                np.testing.assert_allclose(back, cloud[:, :3], atol=1e-4)
                centres = f["labels/front/center_sensor"][k]
                ids = f["actors/id"][:]
                for ln in (out / "training" / "label_2" / f"{name}.txt").read_text().splitlines():
                    o = KittiObject(ln)
                    if o.cls_type == "DontCare" or np.linalg.norm(o.loc) > 50:
                        continue
                    i = int(np.argmin(np.linalg.norm(centres - (o.loc - [0, o.h / 2, 0]), axis=1)))
                    sel = inst == ids[i]
                    if sel.sum() < 10:
                        continue
                    box = kitti_box_lidar(o, calib)
                    assert in_lidar_box(cloud[sel, :3].astype(float), box).mean() >= 0.95
                    checked += 1
    assert checked >= 8


def test_kitti_camera_choice_filters_and_dontcare(runs, episodes, tmp_path):
    ped = runs / "ped"
    out = tmp_path / "left"
    export(ped, "kitti", out, camera="left", bbox2d="mask")
    calib = KittiCalib(out / "training" / "calib" / "000003.txt")
    with gt(episodes[2].path) as f:
        np.testing.assert_allclose(calib.P2[0, 0], f["sensors/left/K"][3][0, 0])
        from simgen.geometry import T_BODY_FROM_OPTICAL, invert

        T = invert(f["sensors/left/T_ego_from_sensor"][:] @ T_BODY_FROM_OPTICAL) @ f["sensors/lidar_top/T_ego_from_sensor"][:]
        np.testing.assert_allclose(calib.V2C, T[:3], atol=1e-12)
        for k in range(6):
            objs = [KittiObject(ln) for ln in (out / "training" / "label_2" / f"{k:06d}.txt").read_text().splitlines()]
            assert len(objs) == len(expected_kitti(f, k, "left"))
            for o in objs:  # mask boxes: tight around visible pixels (compared where they are > 10 px tall)
                if o.truncation < 0.01 and o.occlusion == 0 and o.box2d[3] - o.box2d[1] > 10:
                    uv = calib.rect_to_img(o.corners_rect())
                    assert iou([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()], o.box2d) > 0.6
    # filters: everything fails --min-points 100000 -> objects with visible pixels become DontCare, the rest vanish
    out2 = tmp_path / "dc"
    s = export(ped, "kitti", out2, camera="front", filters=_filters(min_points=100000))
    assert s["counts"]["objects"] == 0 and s["counts"]["dontcare"] > 0
    with gt(episodes[2].path) as f:
        for k in range(6):
            lines = (out2 / "training" / "label_2" / f"{k:06d}.txt").read_text().splitlines()
            vis = f["labels/front/visible_pixels"][k]
            want = [i for i in expected_kitti(f, k, "front") if vis[i] > 0]
            assert len(lines) == len(want)
            for ln in lines:
                p = ln.split(" ")
                assert p[0] == "DontCare" and p[1:4] == ["-1", "-1", "-10"]
                assert p[8:] == ["-1", "-1", "-1", "-1000", "-1000", "-1000", "-10"]
    out3 = tmp_path / "cls"
    s3 = export(runs / "lead", "kitti", out3, filters=_filters(classes="Car"), class_map=_write_map(tmp_path, """
kitti:
  van: Misc
"""))
    types = {ln.split(" ")[0] for p in (out3 / "training" / "label_2").iterdir() for ln in p.read_text().splitlines()}
    assert types <= {"Car"} and s3["counts"]["objects"] > 0


def test_kitti_rectifies_distorted_cameras(tmp_path_factory):
    """A camera with lens distortion: KITTI's image_2 is the pinhole image with the same K (resampled with simgen's
    lens model) and the 2-D boxes are pinhole boxes, so the exported P2 still projects 3-D boxes onto them."""
    import dataclasses

    import cv2

    from annotators.export.common import EpisodeReader, Rectifier, camera_distortion, find_episodes
    from simgen.spec.rig import CameraAttributes

    if "distortion" not in {f.name for f in dataclasses.fields(CameraAttributes)}:
        pytest.skip("this simgen has no camera distortion attribute")
    from simgen.runner import run

    base = tmp_path_factory.mktemp("dist")
    rig = base / "dist.yaml"
    rig.write_text(TWO_CAM_RIG.replace("attributes: {image_size_x: 320, image_size_y: 180, fov: 90}",
                                       "attributes: {image_size_x: 320, image_size_y: 180, fov: 90, "
                                       "distortion: [-0.25, 0.05, 0.0, 0.0, 0.0]}"))
    run(str(SCENARIOS / "lead_vehicle_brakes.yaml"), rig=str(rig), out=str(base / "run"), seed=3, frames=3,
        progress=False)
    out_p, out_m = base / "proj", base / "mask"
    export(base / "run", "kitti", out_p)
    export(base / "run", "kitti", out_m, bbox2d="mask")
    ref = find_episodes(base / "run")[0][0]
    checked = 0
    with EpisodeReader(ref) as r:
        dist = camera_distortion(r, "front")
        assert dist is not None
        rect = Rectifier(r.K("front", 0), dist, 320, 180)
        for k in range(3):
            img = cv2.imread(str(out_p / "training" / "image_2" / f"{k:06d}.png"))[..., ::-1]
            np.testing.assert_array_equal(img, rect.image(r.rgb("front", k)))
            assert not np.array_equal(img, r.rgb("front", k))
            calib = KittiCalib(out_p / "training" / "calib" / f"{k:06d}.txt")
            read = lambda d: [KittiObject(ln) for ln in (d / "training" / "label_2" / f"{k:06d}.txt").read_text().splitlines()]
            for o, om in zip(read(out_p), read(out_m)):
                if o.truncation > 0.01 or o.occlusion > 0 or o.box2d[3] - o.box2d[1] < 10:
                    continue
                uv = calib.rect_to_img(o.corners_rect())
                proj = [uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()]
                assert iou(proj, o.box2d) > 0.99
                assert iou(proj, om.box2d) > 0.8  # the visible mask of the rectified image inside its 3-D box
                checked += 1
    assert checked >= 2


def _filters(**kw):
    from annotators.export.common import parse_filters

    return parse_filters(**kw)


def _write_map(tmp_path: Path, text: str) -> Path:
    p = tmp_path / f"map_{hashlib.sha1(text.encode()).hexdigest()[:8]}.yaml"
    p.write_text(text)
    return p


# ------------------------------------------------------------------------------------------ SemanticKITTI
def test_semantickitti_labels_poses_and_boxes(runs, episodes, tmp_path):
    import yaml

    out = tmp_path / "sk"
    s = export(runs, "semantickitti", out, filters=_filters(min_points=3))
    assert s["counts"]["sequences"] == 3 and s["counts"]["scans"] == 18
    cfg = yaml.safe_load((out / "semantic-kitti.yaml").read_text())
    assert set(cfg) >= {"labels", "color_map", "content", "learning_map", "learning_map_inv", "learning_ignore", "split"}
    assert cfg["labels"][14] == "Car" and cfg["color_map"][14] == [142, 0, 0] and cfg["learning_ignore"][0] is True
    assert abs(sum(cfg["content"].values()) - 1.0) < 1e-9
    assert cfg["split"] == {"train": [0, 1], "valid": [2], "test": []}
    checked = 0
    for sq, ref in enumerate(episodes):
        seq = out / "sequences" / f"{sq:02d}"
        lines = (seq / "calib.txt").read_text().splitlines()
        assert [ln.split(":")[0] for ln in lines] == ["P0", "P1", "P2", "P3", "Tr"]
        Tr = np.vstack([np.array(lines[4].split()[1:], float).reshape(3, 4), [0, 0, 0, 1]])
        poses = [np.vstack([np.array(ln.split(), float).reshape(3, 4), [0, 0, 0, 1]])
                 for ln in (seq / "poses.txt").read_text().splitlines()]
        times = [float(v) for v in (seq / "times.txt").read_text().split()]
        with gt(ref.path) as f:
            g = f["sensors/lidar_top"]
            T0 = g["T_world_from_sensor"][0]
            ids = f["actors/id"][:]
            dims = f["actors/dims"][:]
            assert len(poses) == f.attrs["n_frames"] == len(times)
            for k in range(len(poses)):
                # KITTI odometry convention: LiDAR pose = inv(Tr) . camera pose . Tr
                T_l = np.linalg.inv(Tr) @ poses[k] @ Tr
                np.testing.assert_allclose(T_l, np.linalg.inv(T0) @ g["T_world_from_sensor"][k], atol=1e-6)
                assert abs(times[k] - (f["frames/time_s"][k] - f["frames/time_s"][0])) < 1e-6
                cloud = np.fromfile(seq / "velodyne" / f"{k:06d}.bin", np.float32).reshape(-1, 4)
                lab = np.fromfile(seq / "labels" / f"{k:06d}.label", np.uint32)
                a, b = g["offsets"][k], g["offsets"][k + 1]
                assert len(lab) == len(cloud) == b - a
                np.testing.assert_array_equal(lab & 0xFFFF, g["semantic"][a:b])
                inst = lab >> 16
                npts = f["labels/lidar_top/n_points"][k]
                raw = g["instance"][a:b]
                kept = set(np.unique(inst[inst > 0]).tolist())
                assert kept == {int(ids[i]) for i in range(1, len(ids)) if npts[i] >= 3}
                assert np.all((inst == 0) | (inst == raw))
                L = f["labels/lidar_top"]
                for i in range(1, len(ids)):
                    sel = inst == ids[i]
                    if sel.sum() < 10:
                        continue
                    from simgen.geometry import points_in_box

                    T = np.eye(4)
                    T[:3, :3], T[:3, 3] = quat_to_R(L["quat_sensor"][k][i]), L["center_sensor"][k][i]
                    assert points_in_box(cloud[sel, :3].astype(float), T, dims[i], margin=0.02).mean() >= 0.95
                    checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------------------------------- COCO
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools' decode, numpy 2
def test_coco_read_back_with_pycocotools(runs, episodes, tmp_path):
    import cv2
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from annotators.export.common import load_class_map

    out = tmp_path / "coco"
    s = export(runs, "coco", out)
    cmap = load_class_map(None, "coco")
    # 2 episodes x 6 frames x 1 camera + 1 episode x 6 frames x 2 cameras
    assert s["counts"]["images"] == 24
    n_imgs = n_anns = 0
    for split in ("train", "val"):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert cats[3] == "car" and cats[1] == "person"
        for img_id in coco.getImgIds():
            img = coco.loadImgs(img_id)[0]
            ref = episodes[img["episode"]]
            cam, k = img["camera"], img["frame"]
            with gt(ref.path) as f:
                rgb = cv2.imread(str(out / img["file_name"]))[..., ::-1]
                np.testing.assert_array_equal(rgb, f[f"sensors/{cam}/rgb"][k])
                inst = f[f"sensors/{cam}/instance"][k]
                ids = f["actors/id"][:]
                kinds = f["actors/kind"].asstr()[:]
                vis = f[f"labels/{cam}/visible_pixels"][k]
                want = {int(ids[i]) for i in range(1, len(ids)) if vis[i] > 0 and cmap[kinds[i]] is not None}
                anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
                assert {a["track_id"] for a in anns} == want
                assert img["width"] == inst.shape[1] and img["height"] == inst.shape[0]
                for a in anns:
                    m = coco.annToMask(a)
                    np.testing.assert_array_equal(m, (inst == a["track_id"]).astype(np.uint8))
                    i = int(np.nonzero(ids == a["track_id"])[0][0])
                    assert a["area"] == vis[i] == m.sum()
                    np.testing.assert_allclose(a["bbox"], mask_utils.toBbox(a["segmentation"]), atol=1e-3)
                    assert cats[a["category_id"]] == cmap[kinds[i]] and a["iscrowd"] == 0
                    assert a["occlusion"] == f[f"labels/{cam}/occlusion"][k][i]
                    assert abs(a["visible_fraction"] - f[f"labels/{cam}/visible_fraction"][k][i]) < 1e-4
            n_imgs += 1
            n_anns += len(anns)
    assert n_imgs == 24 and n_anns == s["counts"]["annotations"] > 20
    assert {p.parent.name for p in (out / "images").rglob("*.png")} == {"front", "left"}


# ------------------------------------------------------------------------- determinism, overwrite, CLI, maps
def test_exports_are_deterministic(runs, tmp_path):
    for fmt in ("kitti", "coco", "semantickitti"):
        a, b = tmp_path / f"{fmt}_a", tmp_path / f"{fmt}_b"
        export(runs / "lead", fmt, a)
        export(runs / "lead", fmt, b)
        da, db = tree_digest(a), tree_digest(b)
        assert da == db and len(da) > 10, fmt


def test_overwrite_policy_and_cli(runs, tmp_path, capsys):
    from annotators.export.cli import main

    out = tmp_path / "ow"
    assert main(["export", str(runs / "ped"), "--format", "kitti", "--out", str(out), "--no-progress"]) == 0
    before = tree_digest(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert main(["export", str(runs / "ped"), "--format", "kitti", "--out", str(out), "--stride", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and str(out) in err
    assert tree_digest(out) == before and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    (out / "keep_me.txt").write_text("user file")
    assert main(["export", str(runs / "ped"), "--format", "kitti", "--out", str(out), "--stride", "2",
                 "--overwrite", "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "training" / "image_2").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert (out / "keep_me.txt").read_text() == "user file"
    capsys.readouterr()
    for argv, needle in [
        (["--camera", "rear"], "no camera 'rear'"),
        (["--min-visible", "1.5"], "--min-visible"),
        (["--classes", ","], "--classes"),
        (["--classes", "Car,Sedan"], "unknown class 'Sedan'"),
        (["--keyframe-every", "2"], "--format nuscenes only"),
        (["--class-map", str(tmp_path / "missing.yaml")], "not found"),
    ]:
        rc = main(["export", str(runs / "ped"), "--format", "kitti", "--out", str(tmp_path / "x"), *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert not (tmp_path / "x").exists()
    assert main(["export", str(runs), "--format", "kitti", "--out", str(runs / "lead")]) == 2
    assert "overlaps the input" in capsys.readouterr().err


def test_simgen_cli_plugin(runs, tmp_path, monkeypatch):
    """Once the lead lists annotators.export.cli in simgen.cli.PLUGIN_MODULES, `simgen export` works."""
    import simgen.cli

    monkeypatch.setattr(simgen.cli, "PLUGIN_MODULES", ["annotators.export.cli"])
    out = tmp_path / "plug"
    assert simgen.cli.main(["export", str(runs / "ped"), "--format", "semantickitti", "--out", str(out),
                            "--no-progress"]) == 0
    assert (out / "sequences" / "00" / "labels" / "000005.label").exists()
    assert simgen.cli.main(["export", str(runs / "ped"), "--format", "semantickitti", "--out", str(out),
                            "--class-map", str(tmp_path / "m.yaml")]) == 2


@pytest.mark.parametrize("text, needle", [
    ("kitti:\n  car: Sedan\n", "kitti.car: got 'Sedan'; allowed: Car, Van"),
    ("kitti:\n  spaceship: Car\n", "kitti.spaceship: unknown actor kind"),
    ("yolo:\n  car: Car\n", "yolo: unknown section 'yolo'"),
    ("nuscenes:\n  car: vehicle.sedan\n", "nuscenes.car: got 'vehicle.sedan'"),
    ("- car\n", "mapping"),
    ("coco:\n  car: [a]\n", "coco.car: got ['a']"),
])
def test_class_map_is_validated_strictly(tmp_path, text, needle):
    from annotators.export.common import load_class_map

    p = _write_map(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_class_map(p, "kitti")
    assert needle in str(e.value) and str(p) in str(e.value)


def test_class_map_overrides_and_coco_categories(tmp_path):
    from annotators.export.coco import categories
    from annotators.export.common import Filters, load_class_map

    p = _write_map(tmp_path, "coco:\n  ball: null\n  bus: coach\nkitti:\n  bus: Misc\n")
    assert load_class_map(p, "kitti")["bus"] == "Misc" and load_class_map(p, "kitti")["car"] == "Car"
    cm = load_class_map(p, "coco")
    assert cm["ball"] is None
    cats = categories(cm, Filters())
    assert [(c["id"], c["name"]) for c in cats] == [(1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"),
                                                   (8, "truck"), (18, "dog"), (91, "animal"), (92, "coach"),
                                                   (93, "debris"), (94, "deer")]
    default = load_class_map(None, "kitti")
    assert default == {"car": "Car", "van": "Van", "truck": "Truck", "bus": "Truck", "motorcycle": "Cyclist",
                       "cyclist": "Cyclist", "pedestrian": "Pedestrian", "child": "Pedestrian", "ball": "Misc",
                       "debris": "Misc", "deer": "Misc", "dog": "Misc", "animal": "Misc"}


def test_split_is_deterministic_and_spread():
    from annotators.export.common import split_of

    assert split_of(1, 0.2) == ["train"]
    assert split_of(2, 0.2) == ["train", "val"]
    assert split_of(10, 0.2).count("val") == 2 and split_of(10, 0.2) == split_of(10, 0.2)
    assert split_of(5, 0.0) == ["train"] * 5
    with pytest.raises(InputError):
        split_of(3, 1.0)


def test_export_summary_records_sources(kitti_export):
    out, s = kitti_export
    on_disk = json.loads((out / "simgen_export.json").read_text())
    assert on_disk == json.loads(json.dumps(s))
    assert [e["split"] for e in on_disk["episodes"]] == ["train", "train", "val"]
    assert on_disk["options"]["class_map"]["bus"] == "Truck" and on_disk["options"]["camera"] == "front"
