"""Frame maths: transform round trips, projection of known points, frame conversions."""
import numpy as np

from simgen import geometry as g


def test_pose_inverse_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        T = g.pose_matrix(*rng.normal(size=3) * 10, *rng.uniform(-np.pi, np.pi, 3) * [1, 0.4, 0.4])
        assert np.allclose(g.invert(T) @ T, np.eye(4), atol=1e-12)
        p = rng.normal(size=(5, 3))
        assert np.allclose(g.transform_points(g.invert(T), g.transform_points(T, p)), p)


def test_euler_round_trip_and_sign_conventions():
    T = g.pose_matrix(0, 0, 0, yaw=0.3, pitch=0.2, roll=-0.1)
    r, p, y = g.euler_from_matrix(T)
    assert np.allclose([r, p, y], [-0.1, 0.2, 0.3])
    # positive yaw turns left: x axis rotates towards +y
    assert g.pose_matrix(0, 0, 0, np.pi / 2)[:3, :3] @ [1, 0, 0] @ [0, 1, 0] > 0.99
    # positive pitch tips the nose down
    assert (g.pose_matrix(0, 0, 0, 0, 0.2)[:3, :3] @ [1, 0, 0])[2] < 0


def test_optical_frame_conversion():
    # a point 10 m ahead, 2 m left, 1 m up of the camera body is at x=-2 (left), y=-1 (up), z=10 in optical frame
    p_opt = g.transform_points(g.T_OPTICAL_FROM_BODY, np.array([[10.0, 2.0, 1.0]]))
    assert np.allclose(p_opt, [[-2.0, -1.0, 10.0]])
    assert np.allclose(g.T_BODY_FROM_OPTICAL @ g.T_OPTICAL_FROM_BODY, np.eye(4))


def test_projection_of_known_points():
    K = g.intrinsics_from_fov(1280, 720, 90.0)
    assert np.isclose(K[0, 0], 640.0) and np.isclose(K[0, 2], 640.0) and np.isclose(K[1, 2], 360.0)
    uv, z = g.project(K, np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 5.0], [0.0, -2.5, 5.0]]))
    assert np.allclose(uv, [[640, 360], [1280, 360], [640, 40]])  # 45 deg to the right = image edge
    assert np.allclose(z, 5.0)


def test_pixel_rays_pass_through_pixel_centres():
    K = g.intrinsics_from_fov(64, 48, 70.0)
    d = g.pixel_rays(K, 64, 48)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    uv, _ = g.project(K, d * 7.0)
    u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    assert np.allclose(uv, np.stack([u.ravel(), v.ravel()], 1))


def test_box_corners_and_points_in_box():
    T = g.pose_matrix(10, -3, 1, np.pi / 2)
    c = g.box_corners(T, np.array([4.0, 2.0, 2.0]))
    # rotated 90 degrees: length runs along y
    assert np.isclose(np.ptp(c[:, 1]), 4.0) and np.isclose(np.ptp(c[:, 0]), 2.0) and np.isclose(np.ptp(c[:, 2]), 2.0)
    assert np.allclose(c.mean(0), [10, -3, 1])
    inside = g.points_in_box(np.array([[10, -1.1, 1], [10, -0.9, 1], [11.1, -3, 1]]), T, [4, 2, 2])
    assert inside.tolist() == [True, False, False]


def test_clip_near_keeps_points_in_front():
    c = g.box_corners(g.pose_matrix(0, 0, 0, 0), np.array([4.0, 2.0, 2.0]))  # straddles z=0 in its x extent
    c_opt = c[:, [1, 2, 0]]  # treat x as the optical z axis
    pts = g.clip_polygon_near(c_opt, near=0.1)
    assert np.all(pts[:, 2] >= 0.1 - 1e-9) and len(pts) >= 8
