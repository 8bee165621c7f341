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
