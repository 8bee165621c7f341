"""Domain randomisation (issue #5): randomize/ramps, applied values per frame, lens distortion alignment, and
camera effects of weather and light measured on rendered frames."""
import numpy as np
import pytest

from annotators.ground_truth import annotate, box_poses
from simgen.geometry import T_BODY_FROM_OPTICAL, points_in_box, transform_points, undistort_pixels
from simgen.sim.environment import sun_from_time_of_day
from simgen.spec.rig import rig_from_dict
from simgen.spec.scenario import concretise, load_scenario_source
from tests.conftest import SCENARIOS, session_for


def _rig(**cam):
    attrs = {"image_size_x": 240, "image_size_y": 160, "fov": 100, **cam}
    return rig_from_dict({"name": "t", "sensors": [{"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.6},
                                                    "attributes": attrs}]}, file="<test>")


def test_randomize_is_deterministic_and_within_ranges():
    over = ["randomize={weather.fog_density: {uniform: [10, 30]}, time_of_day_h: {uniform: [7, 9]}, road.wear: {choice: [0.1, 0.9]}}"]
    src = load_scenario_source(SCENARIOS / "lead_vehicle_brakes.yaml", over)
    a = [concretise(src, rng=np.random.default_rng(s))[0] for s in range(6)]
    b = [concretise(src, rng=np.random.default_rng(s))[0] for s in range(6)]
    assert [x.weather.fog_density for x in a] == [x.weather.fog_density for x in b]
    assert all(10 <= x.weather.fog_density <= 30 and 7 <= x.time_of_day_h <= 9 and x.road.wear in (0.1, 0.9) for x in a)
    assert len({x.weather.fog_density for x in a}) == 6


def test_randomize_bad_key_is_an_input_error():
    from simgen.errors import InputError

    src = load_scenario_source(SCENARIOS / "lead_vehicle_brakes.yaml", ["randomize={weather.fogginess: {uniform: [0, 1]}}"])
    with pytest.raises(InputError, match="weather.fogginess.*unknown key"):
        concretise(src, rng=np.random.default_rng(0))


def test_sun_model():
    alt, az = sun_from_time_of_day(12.0)
    assert abs(alt - 45.0) < 1e-9 and abs(az - 180.0) < 1e-9
    alt, az = sun_from_time_of_day(6.0)
    assert abs(alt) < 1e-9 and abs(az - 90.0) < 1e-6
    assert sun_from_time_of_day(22.0)[0] < -20


def test_ramp_applied_per_frame_and_recorded(small_rig):
    s = session_for("lead_vehicle_brakes.yaml", small_rig, overrides=[
        "weather.fog_density=0", "ramps=[{key: weather.fog_density, to: 80, start_s: 0.0, end_s: 0.4}]"])
    fog, contrast = [], []
    for _ in range(9):
        f = s.step()
        fog.append(f.applied["weather.fog_density"])
        g = f.cameras["front"].rgb.astype(float).mean(axis=2)
        contrast.append(g[: g.shape[0] // 2].std())  # upper half: buildings and sky at distance
    assert np.allclose(fog, np.clip(np.arange(9) * 0.05 / 0.4 * 80, 0, 80))
    assert all(b <= a + 0.5 for a, b in zip(contrast, contrast[1:])), contrast  # denser fog, lower contrast
    assert contrast[-1] < 0.6 * contrast[0]


LENSES = [(-0.25, 0.06, 0.0, 0.0, 0.0), (0.12, 0.0, 0.002, -0.002, 0.0)]


def test_folding_lens_is_rejected():
    from simgen.errors import InputError

    with pytest.raises(InputError, match="distortion.*folds over"):
        _rig(distortion=[-0.32, 0.09, 0.0, 0.0, -0.01])


@pytest.mark.parametrize("dist", LENSES)
def test_lens_distortion_keeps_masks_boxes_depth_aligned(dist):
    rig = _rig(distortion=list(dist))
    s = session_for("dense_traffic.yaml", rig, seed=3, overrides=["traffic.vehicles=14", "traffic.pedestrians=4"])
    f = s.step()
    lab = annotate(f)
    cam, cl = f.cameras["front"], lab.cameras["front"]
    boxes = box_poses(f)
    checked = 0
    for j in range(1, len(f.actors.ids)):
        if cl.visible_pixels[j] < 25:
            continue
        m, p = cl.bbox_mask[j], cl.bbox_proj[j]
        assert m[0] >= p[0] - 2 and m[1] >= p[1] - 2 and m[2] <= p[2] + 2 and m[3] <= p[3] + 2, (j, m, p)
        v, u = np.nonzero(cam.instance == f.actors.ids[j])
        und = undistort_pixels(np.stack([u + 0.5, v + 0.5], 1), cam.K, dist)
        z = cam.depth[v, u].astype(float)
        pts = np.concatenate([und * z[:, None], z[:, None]], 1)
        pw = transform_points(cam.T_world_from_sensor @ T_BODY_FROM_OPTICAL, pts)
        assert points_in_box(pw, boxes[j], f.actors.dims[j], margin=0.03).mean() >= 0.99
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("dist", LENSES)
def test_camera_rays_invert_the_forward_lens_model(dist):
    """The rays the camera casts go through the distorted pixel centres: pushing them through the forward
    Brown–Conrady model (written out independently here) lands on the pixel centres."""
    from simgen.geometry import distorted_pixel_rays, intrinsics_from_fov

    K = intrinsics_from_fov(240, 160, 100)
    d, _ = distorted_pixel_rays(K, dist, 240, 160)
    x, y = d[:, 0] / d[:, 2], d[:, 1] / d[:, 2]
    k1, k2, p1, p2, k3 = dist
    r2 = x * x + y * y
    rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    u = K[0, 0] * (x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)) + K[0, 2]
    v = K[1, 1] * (y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y) + K[1, 2]
    uu, vv = np.meshgrid(np.arange(240) + 0.5, np.arange(160) + 0.5)
    assert np.abs(u - uu.ravel()).max() < 0.01 and np.abs(v - vv.ravel()).max() < 0.01


def test_night_is_darker_and_lit_by_lamps(small_rig):
    day = session_for("dense_traffic.yaml", small_rig, overrides=["time_of_day_h=12"]).step().cameras["front"].rgb
    night = session_for("dense_traffic.yaml", small_rig, overrides=["time_of_day_h=22"]).step().cameras["front"].rgb
    dark = session_for("dense_traffic.yaml", small_rig, overrides=["time_of_day_h=22", "scenery.density=0",
                                                                  "traffic.vehicles=0"]).step().cameras["front"].rgb
    assert night.mean() < 0.8 * day.mean()
    assert night.mean() > dark.mean() + 3  # street lamps and headlights light the scene


def _lidar_rig():
    return rig_from_dict({"name": "l", "sensors": [{"name": "top", "type": "lidar", "mount": {"z": 1.9}, "attributes": {
        "channels": 32, "range": 120.0, "points_per_second": 400000, "rotation_frequency": 20.0, "upper_fov": 5.0,
        "lower_fov": -25.0, "dropoff_general_rate": 0.0, "dropoff_zero_intensity": 0.0}}]}, file="<test>")


def test_fog_lowers_far_lidar_returns_monotonically_and_adds_backscatter():
    far, back = [], []
    for fog in (0, 10, 20, 35, 90):
        s = session_for("dense_traffic.yaml", _lidar_rig(), overrides=[f"weather.fog_density={fog}"])
        ld = s.step().lidars["top"]
        r = np.linalg.norm(ld.xyz, axis=1)
        far.append(int(((r > 40) & (ld.false_return == 0)).sum()))
        back.append(int((ld.false_return == 1).sum()))
        assert np.all(ld.semantic[ld.false_return > 0] == 0) and np.all(ld.instance[ld.false_return > 0] == 0)
    assert all(b < a for a, b in zip(far[:4], far[1:4])), far  # strictly fewer far returns as fog thickens
    assert far[4] <= far[3], far
    assert back[0] == 0 and back[-1] > 0, back


def test_rain_adds_near_range_clutter():
    near = []
    for p in (0, 50, 100):
        s = session_for("dense_traffic.yaml", _lidar_rig(), overrides=[f"weather.precipitation={p}"])
        ld = s.step().lidars["top"]
        near.append(int(((ld.false_return == 2) & (np.linalg.norm(ld.xyz, axis=1) < 10)).sum()))
    assert near[0] == 0 and near[1] < near[2] and near[2] > 0, near


def test_camera_effects_applied_and_deterministic(small_rig):
    over = ["camera_effects.noise=0.5", "camera_effects.vignetting=0.6", "camera_effects.motion_blur=true",
            "camera_effects.jpeg_quality=40", "ego.speed_mps=20", "ego.behaviour.speed_mps=20"]
    a = session_for("lead_vehicle_brakes.yaml", small_rig, overrides=over)
    b = session_for("lead_vehicle_brakes.yaml", small_rig, overrides=over)
    c = session_for("lead_vehicle_brakes.yaml", small_rig, overrides=["ego.speed_mps=20", "ego.behaviour.speed_mps=20"])
    for _ in range(2):
        fa, fb, fc = a.step(), b.step(), c.step()
    ra, rb, rc = fa.cameras["front"].rgb, fb.cameras["front"].rgb, fc.cameras["front"].rgb
    assert np.array_equal(ra, rb)
    assert not np.array_equal(ra, rc)
    assert np.array_equal(fa.cameras["front"].instance, fc.cameras["front"].instance)  # labels untouched
    H, W = ra.shape[:2]
    corner = lambda im: im[: H // 6, : W // 6].astype(float).mean()  # noqa: E731
    assert corner(ra) < corner(rc)  # vignetting darkens the corners


def test_tonemap_table_matches_the_curve():
    """The camera kernel's tabulated tone map equals sqrt(1 - exp(-x)) to within half an 8-bit level."""
    from simgen.sensors.kernels import _TM_LUT, _tonemap

    x = np.concatenate([np.linspace(0, 0.01, 500), np.linspace(0.01, 20, 5000)])
    got = np.array([_tonemap(v, _TM_LUT) for v in x], float)
    want = np.sqrt(1 - np.exp(-x)) * 255.0
    assert np.abs(got - want).max() <= 0.75


def test_snow_clutters_the_lidar_more_than_rain_at_the_same_precipitation():
    counts = {}
    for kind in ("rain", "snow"):
        s = session_for("dense_traffic.yaml", _lidar_rig(), overrides=["weather.precipitation=40", f"precipitation_type={kind}"])
        counts[kind] = int((s.step().lidars["top"].false_return == 2).sum())
    assert counts["snow"] > counts["rain"], counts


def test_scattering_controls_change_sky_and_fog(small_rig):
    def sky_and_fog(*over):
        f = session_for("dense_traffic.yaml", small_rig, overrides=["scenery.density=0", *over]).step()
        cam = f.cameras["front"]
        sky = cam.rgb[cam.semantic == 11].astype(float)
        return sky[:, 2].mean() - sky[:, 0].mean(), cam.rgb.astype(float).mean()

    blue_default, _ = sky_and_fog()
    blue_more, _ = sky_and_fog("weather.rayleigh_scattering_scale=0.09")
    _, fog_lit = sky_and_fog("weather.fog_density=80")
    _, fog_dark = sky_and_fog("weather.fog_density=80", "weather.scattering_intensity=0.2")
    assert blue_more > blue_default + 5  # more Rayleigh scattering: a bluer sky
    assert fog_dark < fog_lit - 10  # less light scattered by the fog: darker airlight
