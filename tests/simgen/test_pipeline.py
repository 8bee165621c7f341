"""End to end on the builtin backend: runs, determinism, atomic output, storage round trip, preview."""
import json

import h5py
import numpy as np
import pytest

from simgen.cli import main
from simgen.io.episode import Episode
from simgen.runner import run
from tests.conftest import RIGS, SCENARIOS, session_for


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        attrs = {k: f.attrs[k] for k in f.attrs if k != "versions_json"}
    return out, attrs


def test_run_writes_complete_labelled_dataset(lead_run):
    summary = json.loads((lead_run / "run.json").read_text())
    assert summary["episodes"][0]["frames"] == 12 and summary["seed"] == 3
    path = lead_run / "episodes" / "episode_000000.h5"
    with Episode(path) as ep:
        assert ep.n_frames == 12 and ep.f.attrs["complete"]
        assert "gap_m" in json.loads(ep.f.attrs["parameters_json"])
        assert "lead" in ep.f.attrs["scenario_yaml"] and "lidar_top" in ep.f.attrs["rig_yaml"]
        assert json.loads(ep.f.attrs["versions_json"])["simgen"]
        cam = ep.camera("front", 5)
        assert cam["rgb"].shape == (180, 320, 3) and cam["depth"].dtype == np.float32
        lid = ep.lidar("lidar_top", 5)
        assert len(lid["xyz"]) > 1000 and np.all(np.diff(ep.f["sensors/lidar_top/offsets"][:]) > 0)
        assert np.all(lid["time_s"] <= ep.f["frames/time_s"][5] + 1e-9)
        b = ep.boxes(5)
        assert b["kind"][0] == "car" and list(b["id"][:2]) == [1, 2]
        assert ep.f["labels/front/visible_fraction"].shape == (12, len(b["id"]))
        assert "ttc_s" in ep.f["criticality"]


def test_storage_round_trip_equals_rendered_arrays(tmp_path, small_rig):
    """What the writer stores (through the threaded direct-chunk path) is what the sensors produced."""
    from annotators.ground_truth import annotate
    from simgen.io.episode import EpisodeWriter

    s = session_for("dense_traffic.yaml", small_rig, seed=2, overrides=["traffic.vehicles=5"], n_frames=4)
    w = EpisodeWriter(tmp_path / "e.h5", n_frames=4, rig=small_rig, meta={}, static_info=s.static_info().to_dict())
    frames = []
    for _ in range(4):
        f = s.step()
        frames.append(f)
        w.write(f, annotate(f))
    w.close()
    with Episode(tmp_path / "e.h5") as ep:
        for k, f in enumerate(frames):
            c = ep.camera("front", k)
            assert np.array_equal(c["rgb"], f.cameras["front"].rgb)
            assert np.array_equal(c["depth"], f.cameras["front"].depth)
            assert np.array_equal(c["instance"], f.cameras["front"].instance)
            l = ep.lidar("lidar_top", k)
            assert np.array_equal(l["xyz"], f.lidars["lidar_top"].xyz)
            assert np.array_equal(l["instance"], f.lidars["lidar_top"].instance)
            assert np.array_equal(l["time_s"], f.lidars["lidar_top"].time_s)


def test_same_seed_same_arrays_other_seed_differs(tmp_path):
    kw = dict(rig=str(RIGS / "small.yaml"), frames=4, progress=False)
    scen = str(SCENARIOS / "pedestrian_behind_van.yaml")
    run(scen, out=str(tmp_path / "a"), seed=7, **kw)
    run(scen, out=str(tmp_path / "b"), seed=7, **kw)
    run(scen, out=str(tmp_path / "c"), seed=8, **kw)
    a, aa = _datasets(tmp_path / "a/episodes/episode_000000.h5")
    b, ab = _datasets(tmp_path / "b/episodes/episode_000000.h5")
    c, _ = _datasets(tmp_path / "c/episodes/episode_000000.h5")
    assert a.keys() == b.keys()
    for k in a:
        eq_nan = a[k].dtype.kind == "f"
        assert np.array_equal(a[k], b[k], equal_nan=eq_nan), k
    assert aa == ab
    assert not np.array_equal(a["actors/pose"], c["actors/pose"])


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import annotators.ground_truth as gt

    real = gt.annotate
    calls = {"n": 0}

    def boom(frame):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(frame)

    monkeypatch.setattr(gt, "annotate", boom)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        run(str(SCENARIOS / "lead_vehicle_brakes.yaml"), rig=str(RIGS / "small.yaml"), out=str(out), frames=6,
            progress=False)
    assert not (out / "run.json").exists()
    assert list((out / "episodes").iterdir()) == []


def test_overwrite_replaces_previous_run_only(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["run", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--rig", str(RIGS / "small.yaml"), "--out", str(out),
            "--frames", "2", "--no-progress"]
    assert main(args) == 0
    first = (out / "episodes" / "episode_000000.h5").stat().st_mtime_ns
    assert main(args) == 2  # refuses
    assert (out / "episodes" / "episode_000000.h5").stat().st_mtime_ns == first
    (out / "notes.txt").write_text("mine")
    assert main(args + ["--overwrite", "--seed", "4"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["seed"] == 4
    capsys.readouterr()


def test_view_writes_mp4_and_contact_sheet(lead_run, tmp_path):
    import cv2

    out = tmp_path / "prev.mp4"
    assert main(["view", str(lead_run / "episodes" / "episode_000000.h5"), "--out", str(out)]) == 0
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, img = cap.read()
    assert ok and n == 12 and img.shape[0] > 300
    sheet = cv2.imread(str(tmp_path / "prev.png"))
    assert sheet is not None and sheet.shape[0] > img.shape[0]
    assert img.std() > 10  # not a blank frame


def test_lead_vehicle_brakes_like_closed_form_kinematics(tiny_rig):
    """The lead car keeps its speed until the event, then v(t) = v0 - a (t - t_b) down to 0 (independent of
    the simulator: constant-deceleration kinematics).  Only the frames' actor states are checked, so the rig is one
    tiny camera and the roadside scenery is left out (80 rendered frames of the small rig cost seconds)."""
    s = session_for("lead_vehicle_brakes.yaml", tiny_rig, seed=5, overrides=["parameters.brake_time_s=1.0",
                    "parameters.decel_mps2=6.0", "parameters.speed_mps=15", "parameters.gap_m=40", "traffic.vehicles=0",
                    "traffic.pedestrians=0", "scenery.density=0"])
    j = s.world.actors.index(next(a for a in s.world.actors if a.name == "lead"))
    xs, vs, ts = [], [], []
    for _ in range(80):
        f = s.step()
        xs.append(f.actors.pose[j, 0])
        vs.append(np.hypot(*f.actors.velocity[j, :2]))
        ts.append(f.time_s)
    ts, xs, vs = map(np.array, (ts, xs, vs))
    # the event fires at the first tick at or after 1.0 s and acts from that tick on
    tb = ts[np.argmax(ts >= 1.0 - 1e-9)]
    v_expect = np.clip(15.0 - 6.0 * (ts - tb), 0, 15.0)
    assert np.allclose(vs, v_expect, atol=0.05), np.abs(vs - v_expect).max()
    stop_dist = xs[-1] - xs[np.argmax(ts >= tb)]
    assert abs(stop_dist - 15.0 ** 2 / (2 * 6.0)) < 0.5
