"""Regenerate the golden episode summary (run only after an intended change of simulation or labels).

    PYTHONPATH=. python tests/golden/make_golden.py

Stores ego and actor poses and 3-D boxes at a few frames of a fixed-seed lead_vehicle_brakes episode on the
small rig, plus the lead car's 2-D box and visible fraction.  The physics behind these numbers is checked
independently by tests/simgen/test_pipeline.py::test_lead_vehicle_brakes_like_closed_form_kinematics; the golden
file guards against unintended changes.
"""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FRAMES = (0, 6, 11)


def summarise(session, n=12):
    from annotators.ground_truth import annotate

    out = {"frames": {}}
    for k in range(n):
        f = session.step()
        if k in FRAMES:
            lab = annotate(f)
            j = list(f.actors.names).index("lead")
            out["frames"][str(k)] = {
                "time_s": f.time_s,
                "pose": np.round(f.actors.pose, 6).tolist(),
                "center_world": np.round(lab.center_world, 5).tolist(),
                "size": np.round(lab.size, 5).tolist(),
                "lead_bbox_mask": np.nan_to_num(lab.cameras["front"].bbox_mask[j], nan=-1).tolist(),
                "lead_visible_fraction": float(np.nan_to_num(lab.cameras["front"].visible_fraction[j], nan=-1)),
            }
    return out


def golden_session():
    from simgen.spec.rig import load_rig
    from tests.conftest import RIGS, session_for

    return session_for("lead_vehicle_brakes.yaml", load_rig(RIGS / "small.yaml"), seed=3)


if __name__ == "__main__":
    path = Path(__file__).with_name("lead_vehicle_brakes_seed3.json")
    path.write_text(json.dumps(summarise(golden_session()), indent=1))
    print(f"wrote {path}")
