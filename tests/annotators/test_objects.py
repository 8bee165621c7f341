"""The exporters' per-frame object table (issue 15): the one box projection, and points counted inside boxes."""
import numpy as np

from simgen.geometry import box_corners, pose_matrix, points_in_box, project


def test_points_in_boxes_matches_a_per_box_count():
    """Vectorised count (k-d tree + one test) against simgen.geometry.points_in_box box by box, with points
    placed just inside and just outside faces and corners."""
    from annotators.export.objects import points_in_boxes

    rng = np.random.default_rng(0)
    T = pose_matrix(rng.uniform(-10, 10, 6), rng.uniform(-10, 10, 6), rng.uniform(0, 1, 6), rng.uniform(-3, 3, 6))
    size = rng.uniform(0.5, 5.0, (6, 3))
    pts = rng.uniform(-12, 12, (20000, 3))
    face = np.array([[0.4999, 0.1, -0.2], [-0.3, -0.4999, 0.4], [0.4999, 0.4999, 0.4999],  # inside (local)
                     [0.5001, 0.1, -0.2], [0.0, 0.2, -0.5001], [-0.5001, -0.4999, -0.4999]])  # outside
    on_face = np.concatenate([(T[j, :3, :3] @ (face * size[j]).T).T + T[j, :3, 3] for j in range(6)])
    pts = np.concatenate([pts, on_face])
    want = [int(points_in_box(pts, T[j], size[j]).sum()) for j in range(6)]
    got = points_in_boxes(pts, T, size)
    assert got.tolist() == want and min(want) >= 3
    assert points_in_boxes(pts, T[:0], size[:0]).shape == (0,)
    assert points_in_boxes(pts[:0], T, size).tolist() == [0] * 6


def test_project_boxes_against_corner_projection():
    """Boxes wholly in front of a pinhole camera: the projected box is the min/max of the 8 projected corners
    (computed here with simgen.geometry.project), clipped to the image; truncation is the area share outside."""
    from annotators.ground_truth import project_boxes

    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    T = np.tile(np.eye(4), (3, 1, 1))
    T[:, :3, 3] = [[0.0, 0.0, 10.0], [7.5, 0.0, 10.0], [0.0, 0.0, -5.0]]  # centred, half outside, behind
    size = np.array([[2.0, 1.0, 1.0]] * 3)
    c = box_corners(T, size)
    box, trunc, in_fov = project_boxes(K, None, None, c, 640, 480)
    uv, _ = project(K, c[0])
    np.testing.assert_allclose(box[0], [*uv.min(0), *uv.max(0)], rtol=1e-6)
    assert trunc[0] == 0.0 and in_fov.tolist() == [True, True, False]
    uv, _ = project(K, c[1])
    x0, y0, x1, y1 = *uv.min(0), *uv.max(0)
    np.testing.assert_allclose(box[1], [x0, y0, 640.0, y1], rtol=1e-6)
    np.testing.assert_allclose(trunc[1], (x1 - 640.0) / (x1 - x0), rtol=1e-5)
    assert np.isnan(box[2]).all() and np.isnan(trunc[2])
