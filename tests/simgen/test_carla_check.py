"""``simgen carla-check`` (issue 14) against the test double: every check runs and passes on a double that behaves
as CARLA does, a broken behaviour is reported as a failure with its figures, the CLI prints the report and writes
it as JSON, and the server-loss check kills and recovers only a server it launched itself."""
from __future__ import annotations

import json
import stat

import numpy as np
import pytest

pytest.importorskip("carla", reason="the carla client package is not installed (pip install 'simgen[carla]')")

from tests.simgen import carla_double as D  # noqa: E402
from simgen import carla_check as C  # noqa: E402
from simgen.backends import carla as CB  # noqa: E402


def _run(srv, **kw):
    kw.setdefault("ticks", 5)
    kw.setdefault("label_frames", 6)
    return {r.name: r for r in C.run_checks("127.0.0.1", 2000, carla_module=D.make_module(srv), **kw)}


def test_every_check_passes_against_a_double_that_behaves_like_carla():
    res = _run(D.FakeServer(vehicle_clearance_m=0.3))
    assert {n: r.status for n, r in res.items()} == {**{n: "pass" for n in C.CHECKS}, "server_loss": "skip"}
    f = {n: r.figures for n, r in res.items()}
    assert f["road_tags"]["untagged_share"] > 0.98  # the double leaves generated roads untagged, as CARLA may
    assert f["prop_box"]["lidar_points"] > 100 and f["prop_box"]["inside_simgen_box"] == 1.0
    assert f["prop_box"]["extent_yaw30"] != f["prop_box"]["extent_yaw0"]  # CARLA's world-built prop box
    assert f["instance_ids"]["resolved_share"] >= 0.9 and not f["instance_ids"]["ids_wrap_here"]
    assert f["door"]["dynamic_changed_pixels"] > 100 and f["door"]["static_changed_pixels"] == 0
    assert f["frame_matching"]["frames"] == 5 and f["frame_matching"]["discarded_late"] == 0
    assert f["labels"]["boxes_checked"] > 0 and f["labels"]["lidar_points_checked"] > 0
    assert f["labels"]["episode_frames_written"] == 5


def test_broken_behaviours_are_reported_as_failures(monkeypatch):
    """A door that does not open and roads tagged as buildings: those checks fail, the others still run."""
    monkeypatch.setattr(D.FakeActor, "open_door", lambda self, door: None)
    srv = D.FakeServer()
    orig = D.FakeServer._load

    def load(self, name, xodr):
        orig(self, name, xodr)
        self.road_tag = 3  # "Building"

    monkeypatch.setattr(D.FakeServer, "_load", load)
    res = _run(srv, only=["road_tags", "door", "instance_ids"])
    assert res["door"].status == "fail" and res["door"].figures["dynamic_changed_pixels"] == 0
    assert res["road_tags"].status == "fail" and res["road_tags"].figures["tag_share"] == {3: 1.0}
    assert res["instance_ids"].status == "pass"


def test_server_loss_is_detected_and_recovered_on_a_server_it_launched(tmp_path):
    from simgen.backends.carla_server import CarlaServer

    script = tmp_path / "CarlaUE4.sh"
    script.write_text("#!/bin/sh\nexec sleep 3600\n")  # outlives the test however slow (stopped below)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    fake = D.FakeServer()
    server = CarlaServer(D.make_module(fake), "127.0.0.1", 2000, root=tmp_path, start_timeout_s=120)
    fake.alive_if = lambda: server.process is not None and server.process.poll() is None
    server.start()
    try:
        first = server.process.pid
        res = _run(fake, only=["server_loss"], server=server)["server_loss"]
        assert res.status == "pass", res
        assert res.figures["loss_detected"] and res.figures["is_server_failure"] and res.figures["frames_after_recovery"] == 3
        assert server.process.pid != first  # it was restarted
    finally:
        server.stop()


def test_cli_prints_the_report_and_writes_json(tmp_path, monkeypatch, capsys):
    from simgen.cli import main

    srv = D.FakeServer()
    monkeypatch.setattr(CB, "_load_carla", lambda: D.make_module(srv))
    monkeypatch.delenv("CARLA_ROOT", raising=False)
    report = tmp_path / "report.json"
    code = main(["carla-check", "--host", "10.0.0.9", "--port", "2010", "--only", "connection", "--only", "road_tags",
                 "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    assert "carla-check against 10.0.0.9:2010" in out and "PASS  road_tags" in out and "2 passed, 0 failed" in out
    data = json.loads(report.read_text())
    assert [r["name"] for r in data["results"]] == ["connection", "road_tags"]
    assert data["results"][0]["figures"]["server"] == "0.9.16"
    # an existing report file is refused (exit 2, one line), nothing overwritten
    report.write_text("keep")
    code = main(["carla-check", "--host", "h", "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1 and report.read_text() == "keep"


def test_nothing_answering_fails_fast_with_the_reason(monkeypatch, capsys):
    from simgen.cli import main

    monkeypatch.setattr(CB, "_load_carla", lambda: D.make_module(None))
    monkeypatch.delenv("CARLA_ROOT", raising=False)
    code = main(["carla-check", "--host", "h", "--timeout", "1"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL  connection" in out and "time-out" in out and "road_tags" not in out


def test_label_violations_counts_what_is_wrong():
    """The contract checks the labels check uses can fail: a box shrunk below its LiDAR points is counted."""
    import dataclasses

    from simgen.backends.builtin import BuiltinBackend
    from simgen.spec.scenario import concretise, load_scenario_source

    spec, _ = concretise(load_scenario_source(C.REPO / "scenarios" / "lead_vehicle_brakes.yaml"), rng=np.random.default_rng(0))
    s = BuiltinBackend().open(spec, C._small_rig(), seed=np.random.SeedSequence(0), source="x", n_frames=2)
    frames = [s.step() for _ in range(2)]
    s.close()
    assert C.label_violations(frames, 0.05)["lidar_outside_box"] == 0
    shrunk = [dataclasses.replace(f, actors=dataclasses.replace(f.actors, dims=f.actors.dims * 0.5)) for f in frames]
    assert C.label_violations(shrunk, 0.05)["lidar_outside_box"] > 0
