"""Ground truth checked against independent views of the same fact (issue #2).

- instance-mask 2-D box vs the 2-D box of the projected 3-D box;
- LiDAR points labelled with an actor vs that actor's 3-D box at each point's own firing time;
- camera pixels of an actor, unprojected with the depth image, vs the actor's 3-D box;
- visible fraction: 1.0 for an object alone in view, falling as another object moves in front of it.
"""
import numpy as np
import pytest

from annotators.ground_truth import annotate
from simgen.geometry import T_BODY_FROM_OPTICAL, invert, pose_matrix, points_in_box, transform_points
from tests.conftest import session_for, write


@pytest.fixture(scope="module")
def frames(small_rig):
    s = session_for("dense_traffic.yaml", small_rig, seed=1, overrides=["traffic.vehicles=14", "traffic.pedestrians=8"])
    out = []
    prev = None
    for k in range(6):
        f = s.step()
        out.append((f, annotate(f), prev))
        prev = f
    s.close()
    return out


def test_mask_box_inside_projected_box(frames):
    checked = 0
    for f, lab, _ in frames:
        for name, cl in lab.cameras.items():
            ok = (cl.visible_fraction > 0.999) & (cl.truncation < 1e-6) & (cl.visible_pixels >= 30)
            for j in np.nonzero(ok)[0]:
                m, p = cl.bbox_mask[j], cl.bbox_proj[j]
                assert m[0] >= p[0] - 2 and m[1] >= p[1] - 2 and m[2] <= p[2] + 2 and m[3] <= p[3] + 2, (j, m, p)
                area_m = (m[2] - m[0]) * (m[3] - m[1])
                area_p = (p[2] - p[0]) * (p[3] - p[1])
                assert area_m >= 0.4 * area_p, (j, area_m, area_p)
                checked += 1
    assert checked >= 3


def box_pose(f, j) -> np.ndarray:
    """T_world_from_box of actor j, written out from the README's conventions (independent of annotators'
    box_poses): poses are bottom-centre x, y, z, yaw; the box centre is h/2 above, axes x forward, z up."""
    x, y, z, yaw = f.actors.pose[j]
    h = f.actors.dims[j][2]
    T = np.eye(4)
    T[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = [x, y, z + h / 2]
    return T


def _pose_at(p0, p1, w):
    from simgen.geometry import wrap_angle

    out = p0 + w[:, None] * (p1 - p0)
    out[:, 3] = p0[3] + w * wrap_angle(p1[3] - p0[3])
    return out


def test_lidar_points_inside_their_actor_box_at_firing_time(frames):
    """Points are in the sensor frame at their firing time: bring each to the world with the sensor pose at
    that time and compare with the actor's box at that time (poses interpolated within the tick)."""
    total, inside, per_actor = 0, 0, 0
    for f, lab, prev in frames[1:]:
        for name, ld in f.lidars.items():
            t0, t1 = prev.time_s, f.time_s
            w = (ld.time_s - t0) / (t1 - t0)
            assert np.all((w > 0) & (w <= 1 + 1e-9))
            Ts0, Ts1 = ld.T_world_from_sensor_start, ld.T_world_from_sensor
            e0, e1 = prev.actors.pose[0], f.actors.pose[0]
            ego = _pose_at(e0, e1, w)
            T_we = pose_matrix(ego[:, 0], ego[:, 1], ego[:, 2], ego[:, 3])
            T_es = invert(pose_matrix(*e1[:3], e1[3])) @ Ts1
            assert np.allclose(invert(pose_matrix(*e0[:3], e0[3])) @ Ts0, T_es)
            pw = transform_points(T_we @ T_es, ld.xyz.astype(float))
            for j, aid in enumerate(f.actors.ids[1:], start=1):
                sel = ld.instance == aid
                if sel.sum() < 5:
                    continue
                per_actor += 1
                ap = _pose_at(prev.actors.pose[j], f.actors.pose[j], w[sel])
                dims = f.actors.dims[j]
                for q, pose in zip(pw[sel], ap):
                    T_wb = pose_matrix(pose[0], pose[1], pose[2] + dims[2] / 2, pose[3])
                    inside += bool(points_in_box(q[None], T_wb, dims, margin=0.02)[0])
                    total += 1
    assert per_actor >= 3 and total > 200
    assert inside / total >= 0.99, inside / total


def test_lidar_motion_shows_in_points():
    """The ego drives at 20 m/s: points of the parked van, placed with the end-of-sweep pose for every point,
    smear outside its box; placed with each point's own firing-time pose they fit it."""
    from simgen.spec.rig import rig_from_dict

    rig = rig_from_dict({"name": "dense", "sensors": [{"name": "top", "type": "lidar", "mount": {"z": 1.9}, "attributes": {
        "channels": 64, "range": 80.0, "points_per_second": 1_000_000, "rotation_frequency": 20.0, "upper_fov": 5.0,
        "lower_fov": -20.0, "dropoff_general_rate": 0.0, "dropoff_zero_intensity": 0.0}}]}, file="<test>")
    s = session_for("pedestrian_behind_van.yaml", rig, seed=0,
                    overrides=["ego.speed_mps=20", "ego.behaviour.speed_mps=20", "traffic.vehicles=0", "parameters.van_ahead_m=-25"])  # behind: fired mid-sweep
    prev = s.step()
    f = s.step()
    ld = next(iter(f.lidars.values()))
    j = list(f.actors.names).index("van")
    sel = ld.instance == f.actors.ids[j]
    assert sel.sum() > 20
    T_wb = box_pose(f, j)
    dims = f.actors.dims[j]
    naive = transform_points(ld.T_world_from_sensor, ld.xyz[sel].astype(float))
    w = (ld.time_s[sel] - prev.time_s) / (f.time_s - prev.time_s)
    ego = _pose_at(prev.actors.pose[0], f.actors.pose[0], w)
    T_es = invert(pose_matrix(*f.actors.pose[0, :3], f.actors.pose[0, 3])) @ ld.T_world_from_sensor
    exact = transform_points(pose_matrix(ego[:, 0], ego[:, 1], ego[:, 2], ego[:, 3]) @ T_es, ld.xyz[sel].astype(float))
    frac_exact = points_in_box(exact, T_wb, dims, margin=0.02).mean()
    frac_naive = points_in_box(naive, T_wb, dims, margin=0.02).mean()
    assert frac_exact >= 0.99
    assert frac_naive < 0.9, frac_naive
    spread = np.ptp(ld.time_s)
    assert spread > 0.8 * (f.time_s - prev.time_s)


def test_depth_unprojection_of_mask_lands_in_box(frames):
    """Pixels of an actor, unprojected with the depth image, land in its box (built here from the pose), and
    carry its semantic class (a cyclist's or motorcyclist's pixels may also be Rider, 13)."""
    from simgen.classes import CLASSES

    f, lab, _ = frames[-1]
    rider = next(i for i, c in CLASSES.items() if c[0] == "Rider")
    for name, cam in f.cameras.items():
        H, W = cam.depth.shape
        T_w_opt = cam.T_world_from_sensor @ T_BODY_FROM_OPTICAL
        checked = 0
        for j, aid in enumerate(f.actors.ids[1:], start=1):
            v, u = np.nonzero(cam.instance == aid)
            if len(u) < 20:
                continue
            z = cam.depth[v, u].astype(float)
            K = cam.K
            pts = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
            pw = transform_points(T_w_opt, pts)
            assert points_in_box(pw, box_pose(f, j), f.actors.dims[j], margin=0.03).mean() >= 0.99
            allowed = {int(f.actors.semantic[j])} | ({rider} if f.actors.kinds[j] in ("cyclist", "motorcycle") else set())
            assert set(np.unique(cam.semantic[v, u]).tolist()) <= allowed, (f.actors.kinds[j], allowed)
            checked += 1
        assert checked >= 2


SOLO = """
name: solo
map: straight
duration_s: 1
scenery: {density: 0}
weather: {sun_altitude_angle: 60}
ego: {place: {lane: fwd_2, s_m: 100}, speed_mps: 0, behaviour: {type: stand}}
actors:
  - id: target
    kind: car
    dims: {length_m: 4.5, width_m: 1.8, height_m: 1.5}
    place: {relative_to: ego, ahead_m: 25}
    behaviour: {type: parked}
  - id: blocker
    kind: van
    dims: {length_m: 5.0, width_m: 2.0, height_m: 2.4}
    place: {relative_to: ego, ahead_m: 12, lateral_m: LAT}
    behaviour: {type: parked}
"""


def test_visible_fraction_alone_and_occluded(tmp_path, small_rig):
    vf = []
    for lat in [-40.0, -3.2, -2.4, -1.6, -0.8, 0.0]:
        text = SOLO.replace("LAT", str(lat))
        if lat == -40.0:  # first: the target alone (blocker removed)
            text = text[: text.index("  - id: blocker")]
        p = write(tmp_path, f"solo_{lat}.yaml", text)
        s = session_for(str(p), small_rig)
        f = s.step()
        lab = annotate(f)
        j = list(f.actors.names).index("target")
        cl = lab.cameras["front"]
        vf.append(float(cl.visible_fraction[j]))
        if lat == -40.0:
            assert cl.visible_fraction[j] == 1.0 and cl.occlusion[j] == 0 and cl.visible_pixels[j] > 100
    assert vf[0] == 1.0
    assert all(b <= a + 1e-9 for a, b in zip(vf, vf[1:])), vf  # monotone as the blocker slides in front
    assert vf[-1] < 0.2, vf


def test_vertical_velocity_agrees_with_the_poses():
    """Issue 15 item 4: a pedestrian stepping on or off a kerb rises or drops 0.15 m in one tick; the recorded
    velocity's z must be that tick's dz/dt (it was 0), for every actor and tick.  Poses and velocities are two
    views of the same motion; the world is stepped without rendering."""
    from simgen.sim.world import World
    from simgen.spec.scenario import concretise, load_scenario_source
    from tests.conftest import SCENARIOS

    src = load_scenario_source(SCENARIOS / "pedestrian_group_crosswalk.yaml", [])
    spec, _ = concretise(src, rng=np.random.default_rng(1))
    w = World(spec, rng=np.random.default_rng(7))
    states = [w.states()]
    for _ in range(40):
        w.step()
        states.append(w.states())
    assert np.all(states[0].velocity[:, 2] == 0.0)
    steps = 0
    for a, b in zip(states, states[1:]):
        dz = b.pose[:, 2] - a.pose[:, 2]
        np.testing.assert_allclose(b.velocity[:, 2], dz / w.dt, atol=1e-9)
        steps += int(np.sum(np.abs(dz) > 0.1))
    assert steps >= 1  # the scenario does put a pedestrian over a kerb
