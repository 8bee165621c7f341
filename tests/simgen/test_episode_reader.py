"""Issue 15 item 10: ``simgen.io.episode.Episode`` is the one validating reader, and view, replay and report read
only through it.  A real 12-frame episode is written once (conftest ``lead_run``); each test corrupts a copy and
checks the reader and the three commands: exit 2, one line naming the file and what is wrong, nothing left behind.

New names are imported inside the tests so that the command-line checks also run (and fail) against code that
predates the reader.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from simgen import cli


@pytest.fixture(scope="session")
def good_episode(lead_run) -> Path:
    return lead_run / "episodes" / "episode_000000.h5"


def _copy(good: Path, tmp_path: Path, name: str = "episode_000000.h5") -> Path:
    d = tmp_path / "run" / "episodes"
    d.mkdir(parents=True)
    dst = d / name
    shutil.copy(good, dst)
    return dst


def _flip(path: Path, offset: int, n: int = 32) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = bytearray(fh.read(n))
        fh.seek(offset)
        fh.write(bytes(x ^ 0xFF for x in b))


def _chunk_middle(path: Path, name: str, index: int) -> int:
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
    return info.byte_offset + info.size // 2


def _header_addr(path: Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        return h5py.h5o.get_info(f[name].id).addr


# corruptions applied with h5py (r+): name -> (function, a word the error must contain)
def _del_dataset(f):
    del f["labels/objects/seen"]


def _del_attr(f):
    del f.attrs["n_frames"]


def _complete_str(f):
    f.attrs["complete"] = "False"


def _n_frames_negative(f):
    f.attrs["n_frames"] = -5


def _n_frames_mismatch(f):
    f.attrs["n_frames"] = int(f.attrs["n_frames"]) - 1


def _offsets_huge(f):
    f["sensors/lidar_top/offsets"][1] = 10 ** 12


def _offsets_decreasing(f):
    o = f["sensors/lidar_top/offsets"]
    o[2] = o[1] - 1


def _actors_short(f):
    pose = f["actors/pose"][:]
    del f["actors/pose"]
    f["actors/pose"] = pose[:, :-1]


def _static_not_json(f):
    f.attrs["static_json"] = "{not json"


def _version_string(f):
    f.attrs["format_version"] = "1"


def _sensor_type(f):
    f["sensors/front"].attrs["type"] = "radar"


H5_CORRUPTIONS = {
    "deleted_dataset": (_del_dataset, "labels/objects/seen"),
    "deleted_attr": (_del_attr, "n_frames"),
    "complete_is_string": (_complete_str, "complete"),
    "n_frames_negative": (_n_frames_negative, "n_frames"),
    "n_frames_mismatch": (_n_frames_mismatch, "n_frames"),
    "offsets_huge": (_offsets_huge, "offsets"),
    "offsets_decreasing": (_offsets_decreasing, "offsets"),
    "actor_count_mismatch": (_actors_short, "actors/pose"),
    "static_json_broken": (_static_not_json, "static_json"),
    "format_version_string": (_version_string, "format_version"),
    "unknown_sensor_type": (_sensor_type, "type"),
}


def _make(good: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    p = _copy(good, tmp_path)
    if kind in H5_CORRUPTIONS:
        fn, word = H5_CORRUPTIONS[kind]
        with h5py.File(p, "r+") as f:
            fn(f)
        return p, word
    if kind == "truncated":
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p, "truncated"
    if kind == "header_bit_rot":  # flipped bytes in a dataset's object header (metadata checksum)
        _flip(p, _header_addr(p, "frames/T_world_from_ego") + 8)
        return p, "corrupt"
    raise AssertionError(kind)


OPEN_FAILURES = sorted(H5_CORRUPTIONS) + ["truncated", "header_bit_rot"]


def _one_line_error(capsys, path: Path) -> str:
    err = capsys.readouterr().err.split("\r")[-1]  # after view's progress bar, if any
    assert err.count("\n") == 1, err
    assert err.startswith("simgen: error:") and str(path) in err, err
    return err


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


# ------------------------------------------------------------------------------------------------ the reader
def test_good_episode_opens_and_serves(good_episode):
    """The uncorrupted file passes validation and serves frames (control for the battery below)."""
    from simgen.io.episode import Episode

    with Episode(good_episode) as ep:
        assert ep.n_frames == 12
        assert ep.sensors("camera") == ["front"] and ep.sensors("lidar") == ["lidar_top"]
        with h5py.File(good_episode, "r") as f:  # an independent read of the same frame
            o = f["sensors/lidar_top/offsets"][:]
            np.testing.assert_array_equal(ep.lidar("lidar_top", 5)["xyz"], f["sensors/lidar_top/xyz"][o[5]:o[6]])
            np.testing.assert_array_equal(ep.camera("front", 7)["rgb"], f["sensors/front/rgb"][7])


@pytest.mark.parametrize("kind", OPEN_FAILURES)
def test_reader_refuses_corrupt_file(good_episode, tmp_path, kind):
    """issue 15 item 10: every corruption is an EpisodeError (an InputError) naming the file and the problem."""
    from simgen.errors import InputError
    from simgen.io.episode import Episode, EpisodeError

    p, word = _make(good_episode, tmp_path, kind)
    with pytest.raises(EpisodeError) as e:
        Episode(p)
    msg = str(e.value)
    assert isinstance(e.value, InputError)
    assert msg.startswith(str(p)) and "\n" not in msg and word in msg, msg
    assert not e.value.incomplete


def test_complete_false_is_incomplete_not_corrupt(good_episode, tmp_path):
    """A real False (an interrupted run) is 'incomplete' and skipped by scans; the string "False" is refused."""
    from simgen.io.episode import Episode, EpisodeError, find_episodes

    p = _copy(good_episode, tmp_path)
    with h5py.File(p, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(EpisodeError, match="incomplete") as e:
        Episode(p)
    assert e.value.incomplete
    good, skipped = find_episodes(tmp_path / "run")
    assert good == [] and skipped == [(p, "incomplete (interrupted run)")]
    with h5py.File(p, "r+") as f:
        f.attrs["complete"] = "True"  # a string is not a flag, whatever it says
    with pytest.raises(EpisodeError, match="complete is str"):
        Episode(p)
    with pytest.raises(EpisodeError):
        find_episodes(tmp_path / "run")  # a corrupt episode in a folder is bad input, not a skip
    assert find_episodes(tmp_path / "run", skip_corrupt=True)[0] == []


def test_chunk_bit_rot_is_reported_on_read(good_episode, tmp_path):
    """Flipped bytes inside a compressed chunk (read later, not at open) give an EpisodeError naming the file
    and the dataset from every read method, and from ``ep.guard`` around direct ``ep.f`` reads."""
    from simgen.io.episode import Episode, EpisodeError

    p = _copy(good_episode, tmp_path)
    _flip(p, _chunk_middle(p, "sensors/front/rgb", 3))
    with Episode(p) as ep:
        ep.camera("front", 2)  # other frames still read
        with pytest.raises(EpisodeError) as e:
            ep.camera("front", 3)
        assert str(p) in str(e.value) and "sensors/front/rgb" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(EpisodeError, match="sensors/front/rgb"):
            with ep.guard("sensors/front/rgb"):
                ep.f["sensors/front/rgb"][3]
        with pytest.raises(EpisodeError, match="sensors/front/rgb"):
            ep.verify()  # the up-front deep check finds it too
    with Episode(good_episode) as ep:
        ep.verify()  # and passes on the intact file


def test_iter_episodes_over_batch_folder(good_episode, tmp_path):
    """find_episodes/iter_episodes: nested folders, sorted by relative path; partial and foreign files skipped."""
    from simgen.io.episode import find_episodes, iter_episodes

    for rel in ("b/episodes/episode_000001.h5", "a/episodes/episode_000000.h5"):
        (tmp_path / rel).parent.mkdir(parents=True)
        shutil.copy(good_episode, tmp_path / rel)
    (tmp_path / "a" / "episodes" / "episode_000002.h5.partial").write_bytes(b"x")
    (tmp_path / "notes.h5").write_text("not hdf5")
    good, skipped = find_episodes(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in good] == ["a/episodes/episode_000000.h5",
                                                                   "b/episodes/episode_000001.h5"]
    assert sorted(r for _, r in skipped) == ["not a simgen episode", "unfinished (.partial)"]
    assert [ep.n_frames for ep in iter_episodes(tmp_path)] == [12, 12]


# -------------------------------------------------------------------------------------- through the commands
@pytest.mark.parametrize("kind", OPEN_FAILURES)
def test_view_refuses_corrupt_episode(good_episode, tmp_path, kind, capsys):
    """issue 15 item 10: view exits 2 with one line naming the file, and leaves no video behind."""
    p, _ = _make(good_episode, tmp_path, kind)
    before = _files(p.parent)
    assert cli.main(["view", str(p), "--max-frames", "2"]) == 2
    _one_line_error(capsys, p)
    assert _files(p.parent) == before


@pytest.mark.parametrize("kind", OPEN_FAILURES)
def test_replay_refuses_corrupt_episode(good_episode, tmp_path, kind, capsys):
    """issue 15 item 10: replay exits 2 with one line naming the file; no output folder is made."""
    p, _ = _make(good_episode, tmp_path, kind)
    out = tmp_path / "replayed"
    assert cli.main(["replay", str(p), "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, p)
    assert not out.exists()


@pytest.mark.parametrize("kind", OPEN_FAILURES)
def test_report_refuses_corrupt_episode(good_episode, tmp_path, kind, capsys):
    """issue 15 item 10: report exits 2 with one line naming the file; no card or plots are written."""
    p, _ = _make(good_episode, tmp_path, kind)
    out = tmp_path / "card"
    assert cli.main(["report", str(tmp_path / "run"), "--out", str(out)]) == 2
    _one_line_error(capsys, p)
    assert not out.exists()


def test_view_chunk_bit_rot_leaves_nothing(good_episode, tmp_path, capsys):
    """issue 15 item 10: bit rot met mid-video: exit 2 naming the file and dataset; no .partial.mp4 left."""
    p = _copy(good_episode, tmp_path)
    _flip(p, _chunk_middle(p, "sensors/front/rgb", 3))
    before = _files(p.parent)
    assert cli.main(["view", str(p)]) == 2
    err = _one_line_error(capsys, p)
    assert "sensors/front/rgb" in err
    assert _files(p.parent) == before


def test_replay_record_bit_rot(good_episode, tmp_path, capsys):
    """issue 15 item 10: a rotten chunk of the actor record stops replay before anything is written."""
    p = _copy(good_episode, tmp_path)
    _flip(p, _chunk_middle(p, "actors/pose", 0), n=8)
    out = tmp_path / "replayed"
    assert cli.main(["replay", str(p), "--out", str(out), "--no-progress"]) == 2
    assert "actors/pose" in _one_line_error(capsys, p)
    assert not out.exists()


def test_report_sample_bit_rot_leaves_nothing(good_episode, tmp_path, capsys):
    """issue 15 item 10: a sample frame that fails to read after the plots were drawn: exit 2, plots removed."""
    p = _copy(good_episode, tmp_path)
    _flip(p, _chunk_middle(p, "sensors/front/rgb", 3))  # frame 3 is one of the six evenly spread samples
    out = tmp_path / "card"
    assert cli.main(["report", str(tmp_path / "run"), "--out", str(out)]) == 2
    assert "sensors/front/rgb" in _one_line_error(capsys, p)
    assert not out.exists()


def test_replay_refuses_an_alias_bomb_in_the_stored_scenario(good_episode, tmp_path, capsys):
    """An episode's stored scenario YAML is input too: replay reads it with the scenario file's limits (issue 15
    item 2), so aliases that expand to millions of values are refused with one line naming the episode and the
    attribute, and no output folder is made.  (It was read with a plain yaml.safe_load and replayed.)"""
    from tests.simgen.test_hardening_input import billion_laughs

    p = _copy(good_episode, tmp_path)
    with h5py.File(p, "r+") as f:
        f.attrs["scenario_yaml"] = billion_laughs(7) + str(f.attrs["scenario_yaml"]).split("\n", 1)[1]
    out = tmp_path / "replayed"
    assert cli.main(["replay", str(p), "--out", str(out), "--no-progress"]) == 2
    err = _one_line_error(capsys, p)
    assert "scenario_yaml" in err and "aliases expand to more than" in err
    assert not out.exists()
