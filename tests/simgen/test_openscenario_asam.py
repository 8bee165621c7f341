"""OpenSCENARIO import (issue 12) on ASAM's own OpenSCENARIO 1.3 example files (tests/data/asam_openscenario_1_3,
Apache-2.0, ASAM e.V.; LICENSE and NOTICE beside them): they validate, run on the builtin World, and the
sequential-events example happens as its file says (values read from the XML here)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.simgen.test_openscenario import _world

pytest.importorskip("carla")
DATA = Path(__file__).resolve().parents[1] / "data" / "asam_openscenario_1_3"
# SlowPrecedingVehicle.xosc runs (simgen validate/run), but not in the suite: its map, a 7.3 km motorway curve
# (AB_RQ31_R2000.xodr), takes about 90 s to build today (the terrain grid over its whole bounding box); its
# parameter set (SlowPrecedingVehicleDeterministicParameterSet.xosc) neither, for the same reason: distribution
# files as batch plans are tested on esmini's cut-in_parameter_set.xosc (test_openscenario_actions.py).
# Known slow; see docs/maps.md
SCENARIOS = ["CloseVehicleCrossing.xosc", "CutIn.xosc", "SequentialEvents_0-100-0kph_Explicit.xosc",
             "SynchronizedArrivalToIntersection.xosc"]


@pytest.fixture(autouse=True, scope="module")
def _schemas():
    from tests.asam_schemas import schema_dir

    schema_dir("openscenario")


@pytest.mark.parametrize("name", SCENARIOS)
def test_asam_example_runs(name):
    w = _world(DATA / name)
    for _ in range(40):
        w.step()
    assert len(w.actors) >= 1 and all(np.isfinite([a.x, a.y, a.speed]).all() for a in w.actors)


def test_asam_sequential_events_0_100_0():
    """SequentialEvents_0-100-0kph_Explicit.xosc: accelerate (linear, at the rate in the file) to the target
    speed once the act starts; the brake event starts when the acceleration event is complete (rising edge) and
    brakes at its rate to its target; the StopTrigger ends the run `delay` s after the brake event ends."""
    from simgen.sim.world import predict_end

    path = DATA / "SequentialEvents_0-100-0kph_Explicit.xosc"
    root = ET.parse(path).getroot()
    ev = {e.get("name"): e for e in root.iter("Event")}
    acc, brk = ev["AccelerateEvent"], ev["BrakeEvent"]
    rate_a = float(acc.find(".//SpeedActionDynamics").get("value"))
    v_top = float(acc.find(".//AbsoluteTargetSpeed").get("value"))
    rate_b = float(brk.find(".//SpeedActionDynamics").get("value"))
    v_end = float(brk.find(".//AbsoluteTargetSpeed").get("value"))
    delay = float(root.find("Storyboard/StopTrigger//Condition").get("delay"))
    w = _world(path)
    speed = {}
    for _ in range(int(18 / w.dt)):
        w.step()
        speed[round(w.time_s, 2)] = w.actors[0].speed
    log = {k: t for t, _, k in w.event_log}
    t0 = log["AccelerateEvent"]
    assert t0 == pytest.approx(w.dt)  # SimulationTime > 0
    assert speed[round(t0 + 3.0, 2)] == pytest.approx(rate_a * 3.0, abs=1e-6)
    t_brake = log["BrakeEvent"]
    assert t_brake == pytest.approx(t0 + v_top / rate_a, abs=w.dt + 1e-9)
    assert speed[round(t_brake, 2)] == pytest.approx(v_top, abs=1e-6)
    tick = lambda t: round(round(t / w.dt) * w.dt, 2)  # noqa: E731
    assert speed[tick(t_brake + 2.0)] == pytest.approx(v_top - rate_b * 2.0, abs=rate_b * w.dt)
    t_stop = t_brake + (v_top - v_end) / rate_b
    frames, _ = predict_end(_world(path), 1000)
    assert (frames - 1) * w.dt == pytest.approx(t_stop + delay, abs=2 * w.dt)
