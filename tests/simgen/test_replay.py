"""Replay (issue #3): re-rendering the recorded trajectories is array-for-array identical with nothing changed;
another weather or rig re-renders the same motion."""
import h5py
import numpy as np

import simgen
from simgen.cli import main
from simgen.io.record import read_record
from tests.conftest import RIGS


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_replay_identical(lead_run, tmp_path, capsys):
    src = lead_run / "episodes" / "episode_000000.h5"
    assert main(["replay", str(src), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    a, b = _arrays(src), _arrays(tmp_path / "r" / "episodes" / "episode_000000.h5")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    with h5py.File(tmp_path / "r" / "episodes" / "episode_000000.h5") as f:
        assert f.attrs["replay_of"] == str(src)


def test_replay_other_weather_and_rig_keeps_motion(lead_run, tmp_path, capsys):
    src = lead_run / "episodes" / "episode_000000.h5"
    assert main(["replay", str(src), "--out", str(tmp_path / "fog"), "--no-progress", "--set", "weather.fog_density=90",
                 "--set", "weather.sun_altitude_angle=10"]) == 0
    a, b = _arrays(src), _arrays(tmp_path / "fog" / "episodes" / "episode_000000.h5")
    assert np.array_equal(a["actors/pose"], b["actors/pose"])
    assert np.array_equal(a["sensors/front/instance"], b["sensors/front/instance"])  # same geometry
    assert not np.array_equal(a["sensors/front/rgb"], b["sensors/front/rgb"])  # other light
    rig = tmp_path / "rig.yaml"
    rig.write_text((RIGS / "small.yaml").read_text().replace("image_size_x: 320, image_size_y: 180", "image_size_x: 160, image_size_y: 90"))
    assert main(["replay", str(src), "--out", str(tmp_path / "r2"), "--rig", str(rig), "--no-progress"]) == 0
    c = _arrays(tmp_path / "r2" / "episodes" / "episode_000000.h5")
    assert c["sensors/front/rgb"].shape[1:3] == (90, 160)
    assert np.array_equal(a["actors/pose"], c["actors/pose"])


def test_replay_rejects_bad_input(lead_run, tmp_path, capsys):
    src = lead_run / "episodes" / "episode_000000.h5"
    assert main(["replay", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "x")]) == 2
    assert main(["replay", str(src), "--out", str(tmp_path / "x"), "--set", "weather.fog_density=500"]) == 2
    err = capsys.readouterr().err
    assert "weather.fog_density" in err and "0.0 to 100.0" in err
    rec = read_record(src)
    assert rec.n_frames == 12 and rec.names[0] == "ego" and rec.format_version == simgen.FORMAT_VERSION == 3
