"""Criticality (issue #3): gaps are exact footprint distances, TTC follows from closing speed, summaries."""
import numpy as np

from annotators.criticality import gaps_and_ttc


def test_gap_is_the_distance_between_footprints():
    dims = np.array([[4.0, 2.0, 1.5], [4.0, 2.0, 1.5], [4.0, 2.0, 1.5], [4.0, 2.0, 1.5]])
    pose = np.array([[0, 0, 0, 0],  # ego at the origin, facing +x
                     [14, 0, 0, 0],  # straight ahead: 14 - 2 - 2 = 10 m
                     [4, 5, 0, 0],  # diagonal: corners (2, 1) and (2, 4): 3 m apart
                     [0, 3, 0, np.pi / 2]], float)  # rotated, spanning y 1..5: its edge touches the ego's side at y = 1
    vel = np.array([[10, 0, 0], [5, 0, 0], [0, 0, 0], [10, 0, 0]], float)
    gap, ttc = gaps_and_ttc(pose, vel, dims)
    assert np.isnan(gap[0]) and np.isclose(gap[1], 10.0) and np.isclose(gap[2], 3.0)
    assert np.isclose(gap[3], 0.0)  # touching edge to edge
    assert np.isclose(ttc[1], 10.0 / 5.0)  # closing at 5 m/s
    assert np.isinf(ttc[3])  # same velocity: not closing


def test_overlap_gives_zero_gap():
    dims = np.array([[4.0, 2.0, 1.5], [4.0, 2.0, 1.5]])
    pose = np.array([[0, 0, 0, 0], [3, 0.5, 0, 0.3]], float)
    gap, _ = gaps_and_ttc(pose, np.zeros((2, 3)), dims)
    assert gap[1] == 0.0


def _random_frames(rng, N=40, A=7):
    pose = np.zeros((N, A, 4))
    pose[..., :2] = rng.uniform(-5, 5, (N, A, 2))
    pose[..., 3] = rng.uniform(-np.pi, np.pi, (N, A))
    dims = np.broadcast_to(rng.uniform(0.4, 6.0, (1, A, 3)), (N, A, 3)).copy()
    vel = rng.normal(0, 8, (N, A, 3))
    return pose, vel, dims


def test_compiled_gaps_agree_with_the_numpy_form():
    """Issue 13: the compiled episode kernel gives the numpy formulas' gaps and TTCs (overlaps included)."""
    from annotators.criticality import gaps_and_ttc_frames, gaps_and_ttc_frames_numpy

    rng = np.random.default_rng(7)
    pose, vel, dims = _random_frames(rng)
    g1, t1 = gaps_and_ttc_frames(pose, vel, dims)
    g0, t0 = gaps_and_ttc_frames_numpy(pose, vel, dims)
    assert (g0[:, 1:] == 0).sum() > 10 and (g0[:, 1:] > 0).sum() > 10  # both overlapping and apart pairs occur
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t1, t0, rtol=1e-12, atol=1e-12)


def test_pet_is_the_time_between_the_closest_points_of_two_crossing_paths():
    """Post-encroachment time, by hand: the ego drives along x at 10 m/s from x = -20; a pedestrian walks along y
    at 1 m/s and crosses x = 0 at t = 5 s; the ego is at x = 0 at t = 2 s: PET = 3 s.  A parked car 0.5 m from the
    ego's path that never moves, and a car far away, get none."""
    from annotators.criticality import EpisodeCriticality
    from simgen.records import ActorStates, Frame

    info = {"actors": [{"id": i + 1, "name": n} for i, n in enumerate(["ego", "ped", "parked", "far"])]}
    crit = EpisodeCriticality(info)
    dt = 0.05
    for k in range(201):
        t = k * dt
        pose = np.array([[-20 + 10 * t, 0, 0, 0], [0, -5 + 1 * t, 0, np.pi / 2], [30, 0.5, 0, 0],
                         [0, 50 + t, 0, 0]], float)
        st = ActorStates(ids=np.arange(1, 5, dtype=np.int32), names=("ego", "ped", "parked", "far"),
                         kinds=("car", "adult", "car", "car"), semantic=np.zeros(4, np.uint8), pose=pose,
                         velocity=np.zeros((4, 3)), accel=np.zeros(4), dims=np.tile([4.0, 1.8, 1.5], (4, 1)))
        crit.add(Frame(index=k, time_s=t, T_world_from_ego=np.eye(4), actors=st, lights={}, collisions=[],
                       events=[], T_ego_from_sensor={}))
    pet = crit.pet()
    assert set(pet) == {"ped"}
    assert abs(pet["ped"] - 3.0) < 1e-9
