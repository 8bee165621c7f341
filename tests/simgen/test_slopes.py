"""Slopes are real (issue 10, "Slopes are real"): superelevation banks the imported road surface, vehicles take
the ground's pitch and roll, and every label follows the full orientation on a crest and on a banked curve.

Test maps are corpus files (esmini, MPL-2.0) modified in a pytest tmp dir: ``straight_500m`` with the crest
elevation profile of ``crest-curve`` (so road s = x and the gradient is the XML cubic's derivative), and
``curve_r100`` with a superelevation ramp into its 100 m arc (every corpus superelevation record is 0).  Expected
values are computed here by hand from those XML records and the arc's geometry, never by the code under test."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

carla = pytest.importorskip("carla")

from simgen.spec.scenario import concretise, load_scenario_source  # noqa: E402
from tests.simgen.test_xodr_import import XODR, _bottom_gap, _label_checks, _pose6, _T6, pytestmark  # noqa: E402,F401

# crest: the elevation records of crest-curve.xodr (a 6 m crest between s = 200 and 340)
CREST = [(0.0, 0.0, 0.0, 0.0, 0.0), (200.0, 0.0, 0.0, 0.00367346938776, -0.0000349854227405),
         (270.0, 6.0, 0.0, -0.00367346938776, 0.0000349854227405), (340.0, 0.0, 0.0, 0.0, 0.0)]
# bank: 0 until s = 450, a smooth cubic ramp to SE over 50 m, then SE (the arc starts at s = 500, centre (500, 100),
# radius 100, turning left: the outer (right) side is raised, so the superelevation is negative)
SE = -0.08
BANK = [(0.0, 0.0, 0.0, 0.0, 0.0), (450.0, 0.0, 0.0, 3 * SE / 50 ** 2, -2 * SE / 50 ** 3), (500.0, SE, 0.0, 0.0, 0.0)]
ARC_C, ARC_R = np.array([500.0, 100.0]), 100.0


def _cubic(records, s):
    r = [x for x in records if x[0] <= s + 1e-9][-1]
    ds = s - r[0]
    return r[1] + r[2] * ds + r[3] * ds ** 2 + r[4] * ds ** 3


def _cubic_ds(records, s):
    r = [x for x in records if x[0] <= s + 1e-9][-1]
    ds = s - r[0]
    return r[2] + 2 * r[3] * ds + 3 * r[4] * ds ** 2


def _rec(tag, r):
    return f'<{tag} s="{r[0]!r}" a="{r[1]!r}" b="{r[2]!r}" c="{r[3]!r}" d="{r[4]!r}"/>'


def crest_map(tmp: Path) -> Path:
    import re

    text = (XODR / "straight_500m.xodr").read_text()
    prof = "<elevationProfile>" + "".join(_rec("elevation", r) for r in CREST) + "</elevationProfile>"
    text, n = re.subn(r"<elevationProfile>.*?</elevationProfile>", prof, text, flags=re.S)
    assert n == 1
    p = tmp / "crest_straight.xodr"
    p.write_text(text)
    return p


def banked_map(tmp: Path, level_lane: int | None = None) -> Path:
    import re

    text = (XODR / "curve_r100.xodr").read_text()
    prof = "<lateralProfile>" + "".join(_rec("superelevation", r) for r in BANK) + "</lateralProfile>"
    text, n = re.subn(r"<lateralProfile>.*?</lateralProfile>", prof, text, flags=re.S)
    assert n == 1
    if level_lane is not None:
        text, n = re.subn(rf'(<lane id="{level_lane}" type="\w+" level=) *"false"', r'\1"true"', text)
        assert n == 1
    p = tmp / "banked_curve.xodr"
    p.write_text(text)
    return p


def _arc_point(s: float, t: float) -> np.ndarray:
    """(x, y) at road s in the arc (500 <= s <= 657.08) and lateral offset t (left +) of curve_r100."""
    th = (s - 500.0) / ARC_R
    ref = np.array([500.0 + ARC_R * math.sin(th), 100.0 - ARC_R * math.cos(th)])
    return ref + t * np.array([-math.sin(th), math.cos(th)])


# ---------------------------------------------------------------------------------------------------------------
# The banked surface
# ---------------------------------------------------------------------------------------------------------------


def test_superelevation_banks_the_road_surface(tmp_path):
    """issue 10 slopes: the road surface at lateral offset t is t * tan(superelevation(s)) above the (flat)
    reference line, on the ramp and in the arc, on both sides (old code: flat, 0 everywhere)."""
    from simgen.world.xodr import load_xodr

    m = load_xodr(banked_map(tmp_path))
    checked = 0
    for s in (470.0, 490.0, 530.0, 580.0, 640.0):
        for t in (-2.6, -1.0, 1.0, 2.6, 5.0, -5.0):
            xy = np.array([s, t]) if s <= 500 else _arc_point(s, t)
            want = t * math.tan(_cubic(BANK, s))
            got = float(m.ground_height(xy[None])[0])
            assert abs(got - want) < 0.01, (s, t, got, want)
            checked += 1
    assert checked == 30
    # and the road really is banked there: 4 m across the lanes rise by about 0.32 m
    assert abs(4 * math.tan(SE)) > 0.3


def test_level_lane_keeps_its_inner_edge_height(tmp_path):
    """issue 10 slopes: a lane with level="true" is not rolled: flat across at its inner edge's height."""
    from simgen.world.xodr import load_xodr

    m = load_xodr(banked_map(tmp_path, level_lane=-1))
    for s in (540.0, 600.0):
        g = m.ground_height(np.array([_arc_point(s, t) for t in (-0.5, -1.5, -2.5)]))
        assert np.allclose(g, 0.0, atol=0.01), g  # inner edge at t = 0: height 0 across the whole lane
        assert abs(float(m.ground_height(_arc_point(s, 1.5)[None])[0]) - 1.5 * math.tan(SE)) < 0.01


def test_lateral_shape_records_are_refused(tmp_path):
    """Unsupported input is refused: a lateralProfile/shape record is a one-line error naming the road."""
    from simgen.errors import InputError
    from simgen.world.xodr import load_xodr

    text = (XODR / "straight_500m.xodr").read_text().replace(
        "<lateralProfile>", '<lateralProfile><shape s="0" t="0" a="0.1" b="0" c="0" d="0"/>', 1)
    p = tmp_path / "shape.xodr"
    p.write_text(text)
    with pytest.raises(InputError, match=r"road 1/lateralProfile/shape.*not supported"):
        load_xodr(p)


# ---------------------------------------------------------------------------------------------------------------
# Actors on the crest and on the banked curve
# ---------------------------------------------------------------------------------------------------------------

SCENE = """
name: slopes
map: {map}
duration_s: 1
ego:
  place: {{lane: {lane}, s_m: {s}}}
  speed_mps: 8
  behaviour: {{type: lane_follow, speed_mps: 8}}
actors:
  - id: lead
    kind: car
    place: {{relative_to: ego, ahead_m: 13}}
    speed_mps: 7
    behaviour: {{type: lane_follow, speed_mps: 7}}
  - id: van
    kind: van
    place: {{relative_to: ego, ahead_m: 25}}
    speed_mps: 6
    behaviour: {{type: lane_follow, speed_mps: 6}}
  - id: oncoming
    kind: car
    place: {{lane: {other}, s_m: {other_s}}}
    speed_mps: 5
    behaviour: {{type: lane_follow, speed_mps: 5}}
traffic: {{vehicles: 0, pedestrians: 2, radius_m: 60}}
"""


def _episode(tmp_path, small_rig, which: str, n: int = 4):
    from simgen.backends.builtin import BuiltinSession

    if which == "crest":
        xodr, fmt = crest_map(tmp_path), dict(lane="r1_l-1_s0", s=205.0, other="r1_l1_s0", other_s=260.0)
    else:
        xodr, fmt = banked_map(tmp_path), dict(lane="r0_l-1_s0", s=512.0, other="r0_l1_s0", other_s=130.0)
    p = tmp_path / "e.yaml"
    p.write_text(SCENE.format(map=xodr, **fmt))
    spec, _ = concretise(load_scenario_source(p), rng=np.random.default_rng(0))
    sess = BuiltinSession(spec, small_rig, seed=np.random.SeedSequence(0), source=str(p), n_frames=n)
    frames = [sess.step() for _ in range(n)]
    m = sess.world.map
    sess.close()
    return frames, m


def _expected_attitude(which: str, x: float, y: float, yaw: float) -> tuple[float, float]:
    """Pitch and roll (ZYX, + nose down, + left up) of a box on the plane the XML describes at (x, y): the
    gradient vector of the surface, projected on the heading and on its left."""
    if which == "crest":  # straight road along +x: s = x, the gradient is the elevation cubic's derivative along x
        grad = np.array([_cubic_ds(CREST, x), 0.0])
    else:  # in the arc: z = t * tan(se), t grows towards the centre
        n = (ARC_C - np.array([x, y])) / np.linalg.norm(ARC_C - np.array([x, y]))
        grad = math.tan(SE) * n
    sh = float(grad @ [math.cos(yaw), math.sin(yaw)])
    sl = float(grad @ [-math.sin(yaw), math.cos(yaw)])
    return -math.atan(sh), math.asin(sl / math.sqrt(1 + sh * sh + sl * sl))


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    from simgen.spec.rig import load_rig

    rig = load_rig(Path(__file__).resolve().parents[2] / "assets" / "rigs" / "small.yaml")
    return {w: _episode(tmp_path_factory.mktemp(w), rig, w) for w in ("crest", "banked")}


@pytest.mark.parametrize("which", ["crest", "banked"])
def test_vehicle_attitude_is_the_road_gradient_and_the_superelevation(episodes, which):
    """issue 10 slopes: every vehicle's pitch is -atan(dz/ds) of the file's elevation cubic (crest) and its roll
    the superelevation record (banked arc: +SE for travel along +s, -SE against it); walkers stay upright.
    Old code: no pitch_roll at all."""
    frames, _ = episodes[which]
    tilted = 0
    for f in frames:
        st = f.actors
        assert st.pitch_roll is not None
        for j, kind in enumerate(st.kinds):
            x, y, z, yaw = st.pose[j]
            pitch, roll = st.pitch_roll[j]
            if kind in ("car", "van"):
                want_p, want_r = _expected_attitude(which, x, y, yaw)
                assert abs(pitch - want_p) < 0.003 and abs(roll - want_r) < 0.003, (j, pitch, roll, want_p, want_r)
                if which == "banked":  # a lane follower: the bank is all roll, signed by the travel direction
                    along_s = st.names[j] != "oncoming"
                    assert abs(roll - (SE if along_s else -SE)) < 0.004, (j, roll)
                tilted += abs(pitch) > 0.03 or abs(roll) > 0.03
            else:
                assert pitch == 0.0 and roll == 0.0
    assert tilted >= 2 * len(frames)  # several vehicles really are on the slope / the bank in every frame


@pytest.mark.parametrize("which", ["crest", "banked"])
def test_boxes_rest_on_the_ground_with_their_bottom_face(episodes, which):
    """issue 10 slopes: the (tilted) bottom face of every box touches the ground and does not sink into it."""
    frames, m = episodes[which]
    for f in frames:
        for j in range(len(f.actors.ids)):
            gap = _bottom_gap(m, _pose6(f.actors)[j], f.actors.dims[j])
            assert gap.min() > -0.01 and gap.min() < 0.01, (j, gap.min())
            if f.actors.kinds[j] in ("car", "van"):
                assert gap.max() < 0.03, (j, gap.max())  # flush with the surface over the whole face


@pytest.mark.parametrize("which", ["crest", "banked"])
def test_labels_follow_the_full_orientation(episodes, which):
    """issue 10 slopes: on the crest and the banked curve, with boxes built here from the raw pose + pitch/roll:
    every instance-mask pixel centre lies inside the projected (tilted) 3-D box (0 px); depth-unprojected pixels
    and 100 % of the LiDAR points lie inside their rotated box at each point's firing time; the annotator's
    world/ego quaternions are these boxes' rotations."""
    from annotators.ground_truth import annotate
    from simgen.geometry import T_BODY_FROM_OPTICAL, invert

    frames, _ = episodes[which]
    boxes_checked, total, inside = _label_checks(frames)
    assert boxes_checked >= 2
    assert total > 50 and inside == total, (inside, total)
    mask_checked = 0
    for f in frames:
        lab = annotate(f)
        T_wb = _T6(_pose6(f.actors), f.actors.dims[:, 2])
        q = lab.quat_world.astype(float)
        R = _T6(np.column_stack([np.zeros((len(q), 3)), _yaw_pitch_roll_of(q)]))[:, :3, :3]
        assert np.allclose(R, T_wb[:, :3, :3], atol=1e-5)
        R_eb = invert(f.T_world_from_ego)[:3, :3] @ T_wb[:, :3, :3]
        assert np.allclose(_T6(np.column_stack([np.zeros((len(q), 3)), _yaw_pitch_roll_of(lab.quat_ego)]))[:, :3, :3],
                           R_eb, atol=1e-5)
        for name, cam in f.cameras.items():
            cl = lab.cameras[name]
            T_ow = invert(cam.T_world_from_sensor @ T_BODY_FROM_OPTICAL)
            for j, aid in enumerate(f.actors.ids):
                if j == 0 or not (cl.truncation[j] < 1e-6 and cl.visible_pixels[j] >= 20):
                    continue
                l, w, h = f.actors.dims[j]
                c = np.array([[a * l / 2, b * w / 2, e * h / 2, 1.0] for a in (-1, 1) for b in (-1, 1) for e in (-1, 1)])
                co = (T_ow @ T_wb[j] @ c.T).T[:, :3]
                uv = (cam.K @ co.T).T
                uv = uv[:, :2] / uv[:, 2:3]
                v, u = np.nonzero(cam.instance == aid)
                cu, cv = u + 0.5, v + 0.5
                assert cu.min() >= uv[:, 0].min() and cu.max() <= uv[:, 0].max(), (j, cu.min(), cu.max(), uv[:, 0])
                assert cv.min() >= uv[:, 1].min() and cv.max() <= uv[:, 1].max(), (j, cv.min(), cv.max(), uv[:, 1])
                mask_checked += 1
    assert mask_checked >= 3


def _yaw_pitch_roll_of(q_wxyz: np.ndarray) -> np.ndarray:
    """(N,3) yaw, pitch, roll of w, x, y, z quaternions, by the textbook formulas (not scipy, not simgen)."""
    w, x, y, z = np.asarray(q_wxyz, float).T
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1, 1))
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    return np.stack([yaw, pitch, roll], 1)


def test_the_ego_tilts_with_the_ground_and_so_do_its_sensors(episodes):
    """issue 10 slopes: the ego is a vehicle too: T_world_from_ego carries its pitch (on the crest), so the
    sensors mounted on it look along the slope."""
    frames, _ = episodes["crest"]
    f = frames[-1]
    x, y, z, yaw = f.actors.pose[0]
    want_p, _ = _expected_attitude("crest", x, y, yaw)
    assert abs(want_p) > 0.03
    fwd = f.T_world_from_ego[:3, 0]
    assert abs(math.asin(-fwd[2]) - want_p) < 0.003
    cam = next(iter(f.cameras.values()))
    assert abs(math.asin(-cam.T_world_from_sensor[2, 0]) - want_p) < 0.003


# ---------------------------------------------------------------------------------------------------------------
# The carla backend: pitch and roll come from the actor transforms
# ---------------------------------------------------------------------------------------------------------------


def test_carla_backend_reads_pitch_and_roll_from_the_actor_transforms():
    """issue 10 slopes, carla backend: an actor CARLA holds pitched and rolled (set in the test double's server)
    is reported with that attitude, checked against CARLA's own forward/right vectors of the snapshot transform
    (CARLA: left-handed, pitch nose up); its box then follows the rendered instance pixels."""
    from annotators.ground_truth import annotate
    from simgen.geometry import points_in_box, transform_points
    from simgen.spec.rig import rig_from_dict
    from tests.simgen import carla_double as D
    from tests.simgen.test_carla_backend import TINY_RIG, open_session

    srv = D.FakeServer()
    s = open_session(srv, rig_from_dict(TINY_RIG, file="<tiny>"))
    s.step()
    row = next(i for i, a in enumerate(s.actors) if a.name == "lead")
    fake = srv.actors[s.actors[row].cid]
    tf = fake.get_transform()
    fake.set_transform(carla.Transform(tf.location, carla.Rotation(pitch=6.0, yaw=tf.rotation.yaw, roll=-4.0)))
    f = s.step()
    snap_tf = s.world.get_snapshot().find(s.actors[row].cid).get_transform()
    s.close()
    fwd, right = snap_tf.get_forward_vector(), snap_tf.get_right_vector()
    want_pitch = -math.asin(fwd.z)  # simgen: + nose down; CARLA's +6 deg pitch is nose up
    want_roll = math.asin(-right.z / math.cos(want_pitch))  # simgen's left axis is CARLA's -right
    pitch, roll = f.actors.pitch_roll[row]
    assert abs(want_pitch - math.radians(-6.0)) < 1e-6 and abs(pitch - want_pitch) < 1e-6, (pitch, want_pitch)
    assert abs(roll - want_roll) < 1e-6 and abs(roll) > 0.05, (roll, want_roll)
    lab = annotate(f)
    R = _T6(np.concatenate([f.actors.pose[row], f.actors.pitch_roll[row]])[None])[0, :3, :3]
    assert np.allclose(_T6(np.column_stack([np.zeros((1, 3)), _yaw_pitch_roll_of(lab.quat_world[row][None])]))[0, :3, :3],
                       R, atol=1e-5)
    checked = 0
    for name, cl in lab.cameras.items():  # the tiny rig's 64 x 36 image: a few pixels, 1 px of slack
        if cl.visible_pixels[row] >= 5 and cl.truncation[row] < 1e-6:
            m, p = cl.bbox_mask[row], cl.bbox_proj[row]
            assert m[0] >= p[0] - 1 and m[1] >= p[1] - 1 and m[2] <= p[2] + 1 and m[3] <= p[3] + 1, (m, p)
            checked += 1
    assert checked >= 1
    T_wb = _T6(np.concatenate([f.actors.pose[row], f.actors.pitch_roll[row]])[None], f.actors.dims[row, 2])[0]
    for name, ld in f.lidars.items():  # the double's ray caster hits CARLA's (tilted) box: every return is inside
        sel = ld.instance == f.actors.ids[row]
        pw = transform_points(ld.T_world_from_sensor, ld.xyz[sel].astype(float))
        assert sel.sum() >= 3 and points_in_box(pw, T_wb, f.actors.dims[row], margin=0.02).all(), sel.sum()


# ---------------------------------------------------------------------------------------------------------------
# The episode file and the exporters
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crest_run(tmp_path_factory):
    """One short `simgen run` episode on the crest map (small rig)."""
    from simgen.runner import run

    base = tmp_path_factory.mktemp("crest_run")
    p = base / "s.yaml"
    p.write_text(SCENE.format(map=crest_map(base), lane="r1_l-1_s0", s=205.0, other="r1_l1_s0", other_s=260.0))
    rig = Path(__file__).resolve().parents[2] / "assets" / "rigs" / "small.yaml"
    run(str(p), rig=str(rig), out=str(base / "run"), seed=0, frames=5, progress=False)
    return base / "run"


def _episode_path(run_dir: Path) -> Path:
    return sorted((run_dir / "episodes").glob("*.h5"))[0]


def test_episode_file_stores_the_orientation_and_old_files_read_level(crest_run, tmp_path):
    """issue 10 slopes, episode schema (format_version 3): actors/pitch_roll and labels/objects/quat_world/quat_ego
    are stored and agree with the boxes built here from pose + pitch_roll; a format 2 file without them still reads,
    as level boxes; a format 3 file missing them is refused with a one-line EpisodeError."""
    import shutil

    import h5py

    from simgen.io.episode import Episode, EpisodeError
    from simgen.io.record import read_record

    src = _episode_path(crest_run)
    with Episode(src) as ep:
        assert int(ep.attr("format_version")) == 3
        for k in range(ep.n_frames):
            pr = ep.pitch_roll(k)
            pose = ep.read("actors/pose", k)
            b = ep.boxes(k)
            T = _T6(np.concatenate([pose, pr], axis=1), b["size"][:, 2])
            assert np.allclose(b["center_world"], T[:, :3, 3], atol=1e-4)
            R = _T6(np.column_stack([np.zeros((len(pr), 3)), _yaw_pitch_roll_of(b["quat_world"])]))[:, :3, :3]
            assert np.allclose(R, T[:, :3, :3], atol=1e-5)
            T_ew = np.linalg.inv(ep.read("frames/T_world_from_ego", k))
            R_e = _T6(np.column_stack([np.zeros((len(pr), 3)), _yaw_pitch_roll_of(b["quat_ego"])]))[:, :3, :3]
            assert np.allclose(R_e, T_ew[:3, :3] @ T[:, :3, :3], atol=1e-5)
        assert np.abs(ep.pitch_roll(slice(None))[..., 0]).max() > 0.05  # the crest is in the file
    rec = read_record(src)  # replay reads the attitude back
    assert rec.pitch_roll is not None and np.array_equal(rec.frame(2)[0].pitch_roll, rec.pitch_roll[2])

    old = tmp_path / "old.h5"
    shutil.copy(src, old)
    with h5py.File(old, "r+") as f:
        for name in ("actors/pitch_roll", "labels/objects/quat_world", "labels/objects/quat_ego"):
            del f[name]
        f.attrs["format_version"] = 2
    with Episode(old) as ep:
        assert np.array_equal(ep.pitch_roll(1), np.zeros((len(ep.read("actors/id")), 2)))
        b = ep.boxes(1)
        yaw = b["yaw_world"].astype(float)
        want = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], 1)  # q and -q are one rotation
        assert np.allclose(np.abs(np.sum(b["quat_world"] * want, axis=1)), 1.0, atol=1e-6)
    assert read_record(old).frame(1)[0].attitude.max() == 0.0

    bad = tmp_path / "bad.h5"
    shutil.copy(src, bad)
    with h5py.File(bad, "r+") as f:
        del f["actors/pitch_roll"]
    with pytest.raises(EpisodeError, match="actors/pitch_roll"):
        Episode(bad)


def test_nuscenes_and_mcap_boxes_carry_the_full_rotation(crest_run, tmp_path):
    """issue 10 slopes, exporters: nuScenes ``sample_annotation.rotation`` and the MCAP cube orientation are each
    box's full rotation (built here from pose + pitch_roll), and with the tables' own transforms 100 % of an actor's
    exported LiDAR points lie inside its tilted nuScenes box (``num_lidar_pts`` counts them all)."""
    import json

    import h5py

    from annotators.export import export
    from annotators.export.common import find_episodes, token
    from simgen.geometry import invert, points_in_box
    from tests.annotators.test_export import quat_to_R
    from tests.annotators.test_export_mcap import read_mcap

    out = tmp_path / "nusc"
    export(crest_run, "nuscenes", out, keyframe_every=1, progress=False)
    T = {p.stem: json.loads(p.read_text()) for p in (out / "v1.0-trainval").glob("*.json")}
    by = {name: {r["token"]: r for r in rows} for name, rows in T.items()}
    ref = find_episodes(crest_run)[0][0]

    def T_of(rec):
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = quat_to_R(rec["rotation"]), rec["translation"]
        return M

    checked = tilted = 0
    with h5py.File(ref.path, "r") as f:
        ids = f["actors/id"][:]
        g = f["sensors/lidar_top"]
        for k in range(f.attrs["n_frames"]):
            P6 = np.concatenate([f["actors/pose"][k], f["actors/pitch_roll"][k]], axis=1)
            R_true = _T6(P6)[:, :3, :3]
            sd = by["sample_data"][token(ref.uid, "sample_data", "LIDAR_TOP", k)]
            pts = np.fromfile(out / sd["filename"], np.float32).reshape(-1, 5)
            inst = g["instance"][g["offsets"][k]:g["offsets"][k + 1]]
            T_sg = invert(T_of(by["ego_pose"][sd["ego_pose_token"]]) @ T_of(by["calibrated_sensor"][sd["calibrated_sensor_token"]]))
            for ann in T["sample_annotation"]:
                if ann["sample_token"] != sd["sample_token"]:
                    continue
                i = next(j for j, x in enumerate(ids) if token(ref.uid, "instance", int(x)) == ann["instance_token"])
                assert np.allclose(quat_to_R(ann["rotation"]), R_true[i], atol=1e-6)
                w, l, h = ann["size"]
                inside = points_in_box(pts[:, :3].astype(float), T_sg @ T_of(ann), [l, w, h])
                sel = inst == ids[i]
                assert inside[sel].all() and inside.sum() == sel.sum() == ann["num_lidar_pts"], (i, inside.sum(), sel.sum())
                checked += sel.sum() > 0
                tilted += abs(P6[i, 4]) > 0.05
    assert checked >= 5 and tilted >= 3

    mc = tmp_path / "mcap"
    export(crest_run, "mcap", mc, progress=False)
    msgs = read_mcap(next((mc / "episodes").glob("*.mcap")))
    with h5py.File(ref.path, "r") as f:
        ids = f["actors/id"][:]
        for k, (_, _, _, upd) in enumerate(msgs["/objects"]):
            R_true = _T6(np.concatenate([f["actors/pose"][k], f["actors/pitch_roll"][k]], axis=1))[:, :3, :3]
            for e in upd.entities:
                o = e.cubes[0].pose.orientation
                j = int(np.flatnonzero(ids == int(e.id))[0])
                assert np.allclose(quat_to_R([o.w, o.x, o.y, o.z]), R_true[j], atol=1e-6), (k, e.id)


# ---------------------------------------------------------------------------------------------------------------
# LiDAR on a tilted ego
# ---------------------------------------------------------------------------------------------------------------


def test_lidar_on_a_tilted_ego_misses_no_actor():
    """issue 10 slopes: with the ego (hence the LiDAR) pitched and rolled, every returned point carries the label of
    what a brute-force cast against one merged scene (ground + every actor's mesh placed with its full pose) hits
    first along the same ray.  The LiDAR's per-column cull assumed a vertical sensor axis: tilted, rays bear a few
    degrees off their column and could skip an actor.  Actors: thin wide slabs at random poses around the sensor,
    whose bounding circles are tight (the cull's worst case)."""
    from simgen._o3d import o3d
    from simgen.records import pose_transform
    from simgen.sensors import render
    from simgen.sensors.lidar import Lidar
    from simgen.spec.rig import load_rig
    from simgen.world.mesh import Mesh, merge

    rig = load_rig(Path(__file__).resolve().parents[2] / "assets" / "rigs" / "small.yaml")
    spec = next(s for s in rig.sensors if s.type == "lidar")
    rng = np.random.default_rng(7)
    ground = Mesh.build(np.array([[-200, -200, 0], [200, -200, 0], [200, 200, 0], [-200, 200, 0]], float),
                        [[0, 1, 2], [0, 2, 3]], 1, 3)
    static = render.StaticGeometry(ground)

    def slab(l, w, h):
        v = np.array([[x, y, z] for x in (-l / 2, l / 2) for y in (-w / 2, w / 2) for z in (0.0, h)], float)
        tri = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
               [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
        return Mesh.build(v, tri, 2, 10)

    actors, poses, placed = [], [], []
    for i in range(60):
        r, b = rng.uniform(4.0, 25.0), rng.uniform(-np.pi, np.pi)
        l = rng.uniform(2.0, 5.0)
        m = slab(l, l, 0.25)
        actors.append(render.ActorGeometry(i + 2, m, np.ones(3), np.array([l, l, 0.25])))
        p = np.array([r * np.cos(b), r * np.sin(b), rng.uniform(0.0, 1.2), rng.uniform(-np.pi, np.pi), 0.0, 0.0])
        poses.append(p)
        placed.append(m.transformed(pose_transform(p)).with_semantic_default(10))
    poses = np.array(poses)
    ego = np.array([0.0, 0.0, 0.0, 0.3, 0.12, -0.1])  # pitched 7 deg, rolled -6 deg
    lid = Lidar(spec, 20.0)
    inst_all = []
    for _ in range(2):  # two ticks: the whole sweep
        ld = lid.capture(0.0, 0.05, ego, ego, static, actors, poses, poses, rng=np.random.default_rng(0))
        # brute force: the same rays against one merged scene
        scene = o3d.t.geometry.RaycastingScene()
        tri_owner = []
        for k, m in enumerate([ground] + placed):
            scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(m.vertices, np.float32)),
                                o3d.core.Tensor(np.ascontiguousarray(m.triangles, np.uint32)))
            tri_owner.append(0 if k == 0 else k + 1)
        T = ld.T_world_from_sensor
        dirs = ld.xyz / np.linalg.norm(ld.xyz, axis=1, keepdims=True)
        rays = np.concatenate([np.broadcast_to(T[:3, 3], dirs.shape), dirs @ T[:3, :3].T], 1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        want = np.array(tri_owner)[hit["geometry_ids"].numpy().astype(np.int64)]
        got = ld.instance.astype(np.int64)
        assert np.array_equal(got, want), (int(np.sum(got != want)), len(got))
        inst_all.append(got)
    assert np.count_nonzero(np.concatenate(inst_all)) > 500  # the slabs are really hit


def test_orientation_helpers_follow_the_documented_convention():
    """The one convention (README "Frames and units"): R = Rz(yaw) Ry(pitch) Rx(roll), + pitch nose down, + roll
    left side up, quaternions w, x, y, z.  Checked against scipy and against worked examples."""
    from scipy.spatial.transform import Rotation

    from simgen.records import ActorStates, rotation_zyx

    rng = np.random.default_rng(3)
    ypr = rng.uniform(-3, 3, (50, 3)) * [1.0, 0.4, 0.4]
    assert np.allclose(rotation_zyx(*ypr.T), Rotation.from_euler("ZYX", ypr).as_matrix(), atol=1e-12)
    A = 3
    st = ActorStates(ids=np.arange(1, A + 1, dtype=np.int32), names=("a", "b", "c"), kinds=("car",) * 3,
                     semantic=np.zeros(A, np.uint8), pose=np.array([[0, 0, 0, 0.0], [1, 2, 3, math.pi / 2], [0, 0, 0, 0]]),
                     velocity=np.zeros((A, 3)), accel=np.zeros(A), dims=np.array([[4.0, 2.0, 1.5]] * A),
                     pitch_roll=np.array([[0.1, 0.0], [0.0, 0.0], [0.0, 0.2]]))
    R = st.rotations()
    assert R[0, 2, 0] == pytest.approx(-math.sin(0.1))  # pitch 0.1: the nose (x axis) points down
    assert R[2, 2, 1] == pytest.approx(math.sin(0.2))  # roll 0.2: the left (y) axis points up
    q = st.quaternions()
    assert np.allclose(q[0], [math.cos(0.05), 0, math.sin(0.05), 0]) and np.allclose(q[2], [math.cos(0.1), math.sin(0.1), 0, 0])
    assert np.allclose(q[1], [math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)])
    T = st.box_poses()  # centre half the height up the body's own z axis
    assert np.allclose(T[0, :3, 3], 0.75 * np.array([math.sin(0.1), 0.0, math.cos(0.1)]))
    assert np.allclose(T[1, :3, 3], [1, 2, 3.75])
    level = ActorStates(**{**st.__dict__, "pitch_roll": None})
    assert np.array_equal(level.attitude, np.zeros((A, 2))) and np.allclose(level.box_poses()[0, :3, 3], [0, 0, 0.75])
    mid = st.interpolate(dataclasses_replace(st, pitch_roll=np.zeros((A, 2))), 0.5)
    assert np.allclose(mid.pitch_roll[0], [0.05, 0.0])


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_rerun_boxes_carry_the_full_rotation(crest_run, tmp_path):
    """issue 10 slopes, Rerun view: the recording's Boxes3D quaternions are each box's full rotation on the crest
    (built here from pose + pitch_roll), read back with Rerun's own loader."""
    from simgen.io.episode import Episode
    from simgen.rerun_view import write_recording
    from tests.simgen.test_rerun import load

    src = _episode_path(crest_run)
    temporal, _ = load(write_recording(str(src), out=str(tmp_path / "c.rrd"), progress=False))
    objs = temporal["/world/objects"]
    tilted = 0
    with Episode(src) as ep:
        for k in range(ep.n_frames):
            R_true = _T6(np.concatenate([ep.read("actors/pose", k), ep.pitch_roll(k)], axis=1))[:, :3, :3]
            q = np.asarray(objs["Boxes3D:quaternions"][k], float)  # x, y, z, w
            R = _T6(np.column_stack([np.zeros((len(q), 3)), _yaw_pitch_roll_of(q[:, [3, 0, 1, 2]])]))[:, :3, :3]
            assert np.allclose(R, R_true, atol=1e-5)
            tilted += int(np.sum(np.abs(ep.pitch_roll(k)[:, 0]) > 0.05))
    assert tilted >= 3
