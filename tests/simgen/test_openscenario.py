"""OpenSCENARIO (.xosc) import (issue 12): corpus files run on the builtin World and their events happen as the
files say (values read from the XML here, independently of the importer); unsupported or malformed files are
refused with one line naming the element path."""
from __future__ import annotations

import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from simgen.errors import InputError

REPO = Path(__file__).resolve().parents[2]
_FOUND = [c for c in (REPO / ".." / "shared" / "corpus", REPO / ".." / ".." / "shared" / "corpus") if c.is_dir()]
CORPUS = (_FOUND[0] if _FOUND else REPO / ".." / "shared" / "corpus").resolve() / "esmini" / "resources" / "xosc"
pytestmark = pytest.mark.skipif(not (CORPUS / "cut-in.xosc").is_file(), reason="esmini corpus (../shared/corpus) not here")
pytest.importorskip("carla")
if (CORPUS / "cut-in.xosc").is_file():
    from tests.asam_schemas import schema_dir

    schema_dir("openscenario")  # provisions ASAM's XSDs (installed package or simgen's cache) the way CI does  # the corpus maps are .xodr files, read with carla's offline parser

RUNS = ["cut-in.xosc", "slow-lead-vehicle.xosc", "straight_500m_pedestrian.xosc", "acc-test.xosc", "alks_cut-in.xosc",
        "ltap-od.xosc", "pedestrian.xosc", "synchronize.xosc"]
BATCH = ["cut-in_parameter_set.xosc"]  # a ParameterValueDistribution: a batch plan (test_openscenario_actions.py)


def _world(path, overrides=()):
    from simgen.sim.world import World
    from simgen.spec.scenario import concretise, load_scenario_source

    src = load_scenario_source(path, list(overrides))
    spec, _ = concretise(src, rng=np.random.default_rng(0))
    return World(spec, rng=np.random.default_rng(0), source=str(path))


def _params(path) -> dict:
    root = ET.parse(path).getroot()
    return {p.get("name"): p.get("value") for p in root.find("ParameterDeclarations")}


def test_every_corpus_file_is_covered():
    assert sorted(RUNS + BATCH) == sorted(p.name for p in CORPUS.glob("*.xosc"))


@pytest.mark.parametrize("name", RUNS)
def test_corpus_file_runs(name):
    w = _world(CORPUS / name)
    for _ in range(40):
        w.step()
    assert all(np.isfinite([a.x, a.y, a.speed]).all() for a in w.actors)


def test_cut_in_events_happen_as_the_file_says():
    """cut-in.xosc: the overtaker goes to TargetSpeedFactor x the ego's speed at the act start (SimulationTime >
    0), changes lane when the ego's time headway to it exceeds HeadwayTime_LaneChange (rising edge) and brakes at
    4 m/s^2 (the SpeedAction's rate) when the headway exceeds HeadwayTime_Brake."""
    path = CORPUS / "cut-in.xosc"
    p = _params(path)
    v_ego = float(p["EgoSpeed"]) / 3.6
    v_ot = float(p["TargetSpeedFactor"]) * v_ego
    w = _world(path)
    ego, ot = w.actors[0], w.actors[1]
    hw = []  # ego -> overtaker time headway along the ego's heading, at each tick's start (recomputed here)
    for _ in range(int(11 / w.dt)):
        gap = (ot.x - ego.x) * math.cos(ego.yaw) + (ot.y - ego.y) * math.sin(ego.yaw)
        hw.append((w.time_s, gap / ego.speed if ego.speed > 0 and gap > 0 else -1.0))
        w.step()
    log = {k: t for t, _, k in w.event_log}
    assert log["OverTakerStartSpeedEvent"] == pytest.approx(w.dt)  # first tick with t > 0
    assert ego.speed == pytest.approx(v_ego)

    def first_rising(th):
        return next(t for (t0, h0), (t, h) in zip(hw, hw[1:]) if h0 <= th < h)

    t_lc = first_rising(float(p["HeadwayTime_LaneChange"]))
    assert log["CutInEvent"] == pytest.approx(t_lc, abs=1e-9)
    # by hand: centres 24.95 m apart (s 50 + 1.4 vs 25 + 1.45), closing at v_ot - v_ego, 12 m of headway needed
    t_hand = w.dt + (24.95 + float(p["HeadwayTime_LaneChange"]) * v_ego) / (v_ot - v_ego)
    assert t_hand - 0.05 <= t_lc <= t_hand + 0.6  # the step to 36 m/s takes one tick; the road curves slightly
    t_brake = first_rising(float(p["HeadwayTime_Brake"]))
    assert log["OvertakerBrakeEvent"] == pytest.approx(t_brake, abs=1e-9)
    # 2 s after the brake starts: v_ot - 4 m/s^2 * 2 s
    w2 = _world(path)
    while w2.time_s < t_brake + 2.0 - 1e-9:
        w2.step()
    assert w2.actors[1].speed == pytest.approx(v_ot - 4.0 * 2.0, abs=0.25)
    # the lane change (3 s) ends in the ego's lane
    lane_ego = w2.map.lane_at(np.array([[w2.actors[0].x, w2.actors[0].y]]))[0]
    lane_ot = w2.map.lane_at(np.array([[w2.actors[1].x, w2.actors[1].y]]))[0]
    assert lane_ot is not None and lane_ot.split("_s")[0] == lane_ego.split("_s")[0]


def test_parameter_override_with_set():
    """--set parameters.EgoSpeed=72 changes the ego's speed to 72 km/h (the file's ${$EgoSpeed / 3.6})."""
    w = _world(CORPUS / "cut-in.xosc", ["parameters.EgoSpeed=72"])
    assert w.actors[0].speed == pytest.approx(20.0)
    from simgen.spec.scenario import load_scenario_source

    with pytest.raises(InputError, match="unknown parameter"):
        load_scenario_source(CORPUS / "cut-in.xosc", ["parameters.EgoSpeedKmh=72"])


def test_catalog_bounding_box_is_the_actor_size():
    cat = ET.parse(CORPUS / "Catalogs" / "Vehicles" / "VehicleCatalog.xosc").getroot()
    red = next(v for v in cat.iter("Vehicle") if v.get("name") == "car_red")
    d = red.find("BoundingBox/Dimensions")
    w = _world(CORPUS / "cut-in.xosc")
    assert list(w.actors[1].dims) == pytest.approx([float(d.get("length")), float(d.get("width")), float(d.get("height"))])


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "simgen.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_malformed_and_schema_violating_files_one_line_exit_2(tmp_path, simgen_cli):
    """The schema case runs as a real ``python -m simgen.cli`` process in a bare environment (only PATH and
    PYTHONPATH, so the XSDs must be found without the test session's settings); the other calls run the same
    ``main`` in this process (tests/conftest.py ``simgen_cli``), which saves an interpreter start and a schema build
    per call."""
    src = (CORPUS / "cut-in.xosc").read_text()
    cases = {
        "bad_xml.xosc": src.replace("</Storyboard>", "</Storybord>"),
        "schema.xosc": src.replace('dynamicsShape="linear"', 'dynamicsShape="wobbly"'),
        "unsupported.xosc": re.sub(r"<LateralAction>\s*<LaneChangeAction>.*?</LaneChangeAction>\s*</LateralAction>",
                                   '<VisibilityAction graphics="false" traffic="true" sensors="false"/>', src, flags=re.S),
    }
    for name, text in cases.items():
        f = CORPUS.parent / "xosc" / name  # beside the corpus so the catalogs and map resolve
        f2 = tmp_path / name
        f2.write_text(text.replace('"../xosc/Catalogs', f'"{CORPUS}/Catalogs').replace('"../xodr/', f'"{CORPUS.parent}/xodr/'))
        out = tmp_path / f"out_{name}"
        cli = _cli if name == "schema.xosc" else simgen_cli
        r = cli("run", str(f2), "--out", str(out), "--frames", "2", cwd=tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and str(f2) in r.stderr, r.stderr
        assert not out.exists()
        del f
    r = simgen_cli("validate", str(tmp_path / "schema.xosc"), cwd=tmp_path)
    assert "schema" in r.stderr and "SpeedActionDynamics" in r.stderr
    r = simgen_cli("validate", str(tmp_path / "unsupported.xosc"), cwd=tmp_path)
    assert "PrivateAction/VisibilityAction: <VisibilityAction> is not supported" in r.stderr, r.stderr
