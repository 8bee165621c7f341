"""Dataset card (simgen report): every section and plot for a small run; batch folders; bad input."""
import re
import shutil

import h5py
import numpy as np
import pytest

from simgen import cli
from simgen.errors import InputError
from simgen.report import find_episodes, write_card
from tests.conftest import RIGS, SCENARIOS

SECTIONS = ["Summary", "Objects", "Distance and visibility", "Randomised values", "Weather × time of day",
            "Criticality", "Samples"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from simgen.runner import run

    out = tmp_path_factory.mktemp("report_run")
    run(str(SCENARIOS / "lead_vehicle_brakes.yaml"), rig=str(RIGS / "small.yaml"), out=str(out), seed=4, episodes=2,
        frames=4, progress=False)
    return out


@pytest.fixture(scope="module")
def md_card(small_run, tmp_path_factory):
    """The Markdown card of ``small_run`` (default settings), written once: checked section by section below and
    the starting point of the overwrite test (each card costs seconds of plotting)."""
    return write_card(small_run, tmp_path_factory.mktemp("report_card") / "card")


def _images(card_text, fmt):
    pat = r"!\[[^\]]*\]\(([^)]+)\)" if fmt == "md" else r'<img src="([^"]+)"'
    return re.findall(pat, card_text)


def _check_card(card, fmt):
    assert card.name == f"card.{fmt}"
    text = card.read_text()
    for s in SECTIONS:
        assert (f"## {s}" if fmt == "md" else f"<h2>{s}</h2>") in text, s
    imgs = _images(text, fmt)
    for name in ("objects.png", "distance_visibility.png", "weather_time_of_day.png", "criticality.png", "samples.png"):
        assert name in imgs, name
    for name in imgs:
        data = (card.parent / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, name
    return text


def test_card_has_all_sections_and_plots(small_run, md_card):
    text = _check_card(md_card, "md")
    # the numbers come from the files: 2 episodes x 4 frames, the run's scenario and sensors
    assert "| episodes | 2 |" in text and "| frames | 8 |" in text
    assert "lead_vehicle_brakes (2)" in text and "front (camera)" in text and "lidar_top (lidar)" in text
    with h5py.File(small_run / "episodes" / "episode_000000.h5") as f:
        n_seen = int(f["labels/objects/seen"][:, 1:].any(0).sum())
    with h5py.File(small_run / "episodes" / "episode_000001.h5") as f:
        n_seen += int(f["labels/objects/seen"][:, 1:].any(0).sum())
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \|$", text, re.M)
    assert sum(int(r[1]) for r in rows) == n_seen > 0
    n_pts = 0
    for k in range(2):
        with h5py.File(small_run / "episodes" / f"episode_00000{k}.h5") as f:
            n_pts += int(f["sensors/lidar_top/offsets"][-1])
    assert f"| lidar_top | {n_pts} |" in text


def test_batch_folder_randomised_values_and_skipped_files(small_run, tmp_path):
    """Episodes in nested folders, with randomised applied/ values; partial and incomplete files skipped."""
    batch = tmp_path / "batch"
    fogs = [(5.0, 15.0), (40.0, 60.0), (75.0, 90.0)]
    for j, (lo, hi) in enumerate(fogs):
        dst = batch / f"job_{j}" / "episodes" / f"episode_{j:06d}.h5"
        dst.parent.mkdir(parents=True)
        shutil.copy(small_run / "episodes" / f"episode_00000{j % 2}.h5", dst)
        with h5py.File(dst, "r+") as f:
            n = int(f.attrs["n_frames"])
            if "applied" in f:
                del f["applied"]
            g = f.create_group("applied")
            g["weather.fog_density"] = np.linspace(lo, hi, n)  # a ramp within the episode
            g["weather.sun_altitude_angle"] = np.full(n, [-20.0, 10.0, 60.0][j])
            g["weather.precipitation"] = np.full(n, 0.0)
            g["road.wear"] = np.full(n, 0.1 * j)
    bad = batch / "job_9" / "episodes"
    bad.mkdir(parents=True)
    shutil.copy(small_run / "episodes" / "episode_000000.h5", bad / "episode_000009.h5")
    with h5py.File(bad / "episode_000009.h5", "r+") as f:
        f.attrs["complete"] = False
    (bad / "episode_000010.h5.partial").write_bytes(b"unfinished")
    good, skipped = find_episodes(batch)
    assert len(good) == 3 and len(skipped) == 2
    card = write_card(batch, tmp_path / "out")
    text = card.read_text()
    assert "| episodes | 3 |" in text and "| skipped files | 2 |" in text
    assert "randomised.png" in _images(text, "md") and (tmp_path / "out" / "randomised.png").exists()
    assert "| weather.precipitation | 0 |" in text  # constant values are listed, not plotted
    assert "applied (per frame)" in text
    assert "episode_000010.h5.partial" in text and "incomplete" in text
    # without applied/ the card says so and falls back to the stored scenario's weather
    for p in good:
        with h5py.File(p, "r+") as f:
            del f["applied"]
    text = write_card(batch, tmp_path / "out2").read_text()
    assert "No applied/ values" in text and "scenario_yaml (per episode)" in text
    assert "weather_time_of_day.png" in _images(text, "md")


def test_no_episodes_is_one_line_input_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty" / "episodes").mkdir(parents=True)
    with pytest.raises(InputError) as e:
        write_card(tmp_path / "empty", tmp_path / "out")
    assert "no complete simgen episode" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError):
        write_card(tmp_path / "missing", tmp_path / "out")
    monkeypatch.setattr(cli, "PLUGIN_MODULES", ["simgen.report"])
    assert cli.main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simgen: error:") and "no complete simgen episode" in err


def test_cli_writes_card(small_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "PLUGIN_MODULES", ["simgen.report"])
    assert cli.main(["report", str(small_run), "--out", str(tmp_path / "c"), "--format", "html", "--samples", "4"]) == 0
    text = _check_card(tmp_path / "c" / "card.html", "html")
    assert text.startswith("<!DOCTYPE html>") and "<table>" in text and "wrote" in capsys.readouterr().out
    assert cli.main(["report", str(small_run), "--out", str(tmp_path / "c"), "--camera", "nope"]) == 2


def test_report_again_needs_overwrite_and_never_replaces_a_users_file(small_run, md_card, tmp_path, capsys):
    """A second card into the same folder is refused without --overwrite (it would replace the first one
    silently); with it, the card is replaced.  A card.md that simgen did not write is kept even with --overwrite.
    The first card is a copy of the folder ``write_card`` made for ``md_card`` (its manifest records the card's
    files by relative path), so this test plots only the card that --overwrite writes."""
    out = tmp_path / "c"
    shutil.copytree(md_card.parent, out)
    first = (out / "card.md").read_text()
    assert "## Summary" in first
    capsys.readouterr()
    assert cli.main(["report", str(small_run), "--out", str(out), "--samples", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert (out / "card.md").read_text() == first
    assert cli.main(["report", str(small_run), "--out", str(out), "--samples", "1", "--overwrite"]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "card.md").write_text("my notes\n")
    assert cli.main(["report", str(small_run), "--out", str(mine), "--samples", "1", "--overwrite"]) == 2
    assert "not written by simgen" in capsys.readouterr().err
    assert (mine / "card.md").read_text() == "my notes\n"
