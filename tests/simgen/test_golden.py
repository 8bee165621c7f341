"""Golden fixed-seed episode (issue #2): poses and boxes reproduce the stored values to tolerance.

A regression guard: tests/golden/make_golden.py regenerates the file after an intended change (the physics
behind it is checked independently against closed-form kinematics in test_pipeline.py)."""
import json
from pathlib import Path

import numpy as np

from tests.golden.make_golden import golden_session, summarise

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "lead_vehicle_brakes_seed3.json"


def test_golden_episode_reproduces_stored_poses_and_boxes():
    want = json.loads(GOLDEN.read_text())["frames"]
    got = summarise(golden_session())["frames"]
    assert want.keys() == got.keys()
    for k in want:
        assert abs(got[k]["time_s"] - want[k]["time_s"]) < 1e-9
        assert np.allclose(got[k]["pose"], want[k]["pose"], atol=1e-4), k
        assert np.allclose(got[k]["center_world"], want[k]["center_world"], atol=1e-4), k
        assert np.allclose(got[k]["size"], want[k]["size"], atol=1e-4), k
        assert np.allclose(got[k]["lead_bbox_mask"], want[k]["lead_bbox_mask"], atol=1.0), k
        assert abs(got[k]["lead_visible_fraction"] - want[k]["lead_visible_fraction"]) < 0.02, k
