"""Issue 15 items 6, 7, 8, 9 and 12: what simgen may replace in an output folder, the folder lock, a full disk,
``view --out`` and the exit codes of bad output locations.

New names are imported inside the tests, so the command-line checks also run (and fail) against older code.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simgen import cli
from tests.conftest import REPO, RIGS, SCENARIOS

SCENARIO = str(SCENARIOS / "lead_vehicle_brakes.yaml")


def _run_args(out: Path, *extra: str) -> list[str]:
    return ["run", SCENARIO, "--rig", str(RIGS / "small.yaml"), "--out", str(out), "--frames", "2", "--no-progress",
            *extra]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.split("\r")[-1]
    assert err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished two-frame run (copied by each test that needs one)."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert cli.main(_run_args(out)) == 0
    return out


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ item 6
def test_overwrite_keeps_user_files_inside_episodes(base_run, tmp_path, capsys):
    """issue 15 item 6: --overwrite replaces simgen's recorded outputs only; my_labels.csv in episodes/ stays."""
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    (out / "episodes" / "my_labels.csv").write_text("frame,label\n0,car\n")
    (out / "episodes" / "sub").mkdir()
    (out / "episodes" / "sub" / "notes.txt").write_text("mine")
    old = (out / "episodes" / "episode_000000.h5").stat().st_mtime_ns
    assert cli.main(_run_args(out, "--overwrite", "--seed", "5")) == 0
    assert (out / "episodes" / "my_labels.csv").read_text() == "frame,label\n0,car\n"
    assert (out / "episodes" / "sub" / "notes.txt").read_text() == "mine"
    assert (out / "episodes" / "episode_000000.h5").stat().st_mtime_ns != old
    assert json.loads((out / "run.json").read_text())["seed"] == 5
    capsys.readouterr()


def test_overwrite_never_replaces_the_input_scenario(base_run, tmp_path, capsys):
    """issue 15 item 6: running OUT/scenario.yaml into OUT with --overwrite is refused; the file is untouched."""
    out = tmp_path / "mine"
    out.mkdir()
    scen = out / "scenario.yaml"
    scen.write_bytes(Path(SCENARIO).read_bytes() + b"# my comments\n")
    before = _tree(out)
    args = ["run", str(scen), "--rig", str(RIGS / "small.yaml"), "--out", str(out), "--frames", "2", "--no-progress",
            "--overwrite"]
    assert cli.main(args) == 2
    err = _err_line(capsys)
    assert "input" in err and "scenario.yaml" in err
    assert _tree(out) == before


def test_overwrite_refuses_unrecorded_file_it_would_replace(tmp_path, capsys):
    """issue 15 item 6: a user's rig.yaml in OUT (not written by simgen) is neither deleted nor replaced."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "rig.yaml").write_text("my rig notes\n")
    assert cli.main(_run_args(out, "--overwrite")) == 2
    err = _err_line(capsys)
    assert "rig.yaml" in err and "not written by simgen" in err
    assert _tree(out) == {"rig.yaml": b"my rig notes\n"}


def test_replay_into_its_own_folder_is_refused(base_run, tmp_path, capsys):
    """issue 15 item 6: the episode being replayed is an input: --out over it is refused even with --overwrite."""
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    before = _tree(out)
    ep = out / "episodes" / "episode_000000.h5"
    assert cli.main(["replay", str(ep), "--out", str(out), "--overwrite", "--no-progress"]) == 2
    assert "input" in _err_line(capsys)
    assert _tree(out) == before


# ------------------------------------------------------------------------------------------------ item 7
HOLDER = """
import sys
sys.path.insert(0, sys.argv[2])
from simgen.io.output import OutputLock
lock = OutputLock(sys.argv[1], "simgen run test-holder").acquire()
print("ready", flush=True)
sys.stdin.read()
"""


def test_second_run_into_a_locked_folder_is_refused(base_run, tmp_path, capsys):
    """issue 15 item 7: while another process holds OUT, a run (even --overwrite) is refused with one line
    naming the holder, and nothing in OUT changes.  When the holder dies its lock is stale and is taken."""
    from simgen.io.output import LOCK_NAME, OutputLock

    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(REPO)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"  # waits for the lock, not for a time
        before = {k: v for k, v in _tree(out).items() if k != LOCK_NAME}
        assert cli.main(_run_args(out, "--overwrite")) == 2
        err = _err_line(capsys)
        assert "in use" in err and f"pid {holder.pid}" in err and "test-holder" in err
        assert {k: v for k, v in _tree(out).items() if k != LOCK_NAME} == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid  # a dead holder's file is left...
    with OutputLock(out) as lock:  # ...and does not block: the kernel dropped the lock with the process
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert lock.fd is None and not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------------ item 8
@pytest.mark.parametrize("where", ["write", "close"])
def test_disk_full_is_one_line_exit_1_and_leaves_no_partial(tmp_path, monkeypatch, capsys, where):
    """issue 15 item 8: ENOSPC while writing a frame (OSError) or while HDF5 flushes at close (its RuntimeError
    carrying errno 28): one line saying the disk is full, exit 1, no .partial and no run.json."""
    import h5py

    from simgen.io import episode as episode_mod

    if where == "write":
        def boom(self, frame, labels):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(episode_mod.EpisodeWriter, "write", boom)
    else:
        def flush(self):
            raise RuntimeError("Can't flush cache (file write failed: time = now\n, filename = 'x', errno = 28, "
                               "error message = 'No space left on device')")
        monkeypatch.setattr(h5py.File, "flush", flush)
    out = tmp_path / "o"
    assert cli.main(_run_args(out)) == 1
    err = _err_line(capsys)
    assert "disk full" in err and "episode_000000.h5" in err
    assert list((out / "episodes").iterdir()) == []
    assert not (out / "run.json").exists()


@pytest.fixture
def tiny_fs(tmp_path):
    """A tmpfs of a given size (needs mount rights: skipped where mounting is impossible)."""
    mounted = []

    def make(size_bytes: int) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_nearly_full_disk_no_segfault(lead_run, tiny_fs):
    """issue 15 item 8: a real full disk (a tmpfs 10% smaller than the episode): exit 1 with one line, not a
    segfault (HDF5 failing to flush at close used to crash at exit); no partial file left."""
    size = (lead_run / "episodes" / "episode_000000.h5").stat().st_size
    fs = tiny_fs(int(size * 0.9) // 4096 * 4096)
    out = fs / "o"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SIMGEN_DEBUG", None)
    r = subprocess.run([sys.executable, "-c", "import sys; from simgen.cli import main; sys.exit(main())", "run",
                        SCENARIO, "--rig", str(RIGS / "small.yaml"), "--out", str(out), "--seed", "3", "--frames", "12",
                        "--no-progress"], capture_output=True, text=True, env=env, cwd=str(REPO))
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert r.stderr.count("\n") == 1 and "disk full" in r.stderr, r.stderr[-2000:]
    assert [p.name for p in (out / "episodes").iterdir()] == []


# ------------------------------------------------------------------------------------------------ item 9
def test_view_refuses_to_overwrite_out_and_png(lead_run, tmp_path, capsys):
    """issue 15 item 9: view --out FILE keeps an existing FILE and FILE.png unless --overwrite; never the input."""
    ep = str(lead_run / "episodes" / "episode_000000.h5")
    mp4, png = tmp_path / "prev.mp4", tmp_path / "prev.png"
    mp4.write_bytes(b"my video")
    assert cli.main(["view", ep, "--out", str(mp4), "--max-frames", "2"]) == 2
    assert "--overwrite" in _err_line(capsys) and mp4.read_bytes() == b"my video" and not png.exists()
    mp4.unlink()
    png.write_bytes(b"my picture")
    assert cli.main(["view", ep, "--out", str(mp4), "--max-frames", "2"]) == 2
    assert "prev.png" in _err_line(capsys) and png.read_bytes() == b"my picture" and not mp4.exists()
    assert cli.main(["view", ep, "--out", str(mp4), "--max-frames", "2", "--overwrite"]) == 0
    assert mp4.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev.mp4", "prev.png"]  # no .partial left
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------ item 12
def test_out_under_a_file_is_bad_input(tmp_path, capsys):
    """issue 15 item 12: --out below a regular file: exit 2, one line naming it."""
    f = tmp_path / "afile"
    f.write_text("x")
    assert cli.main(_run_args(f / "sub")) == 2
    assert str(f / "sub") in _err_line(capsys)
    assert cli.main(["report", str(tmp_path), "--out", str(f / "card")]) == 2  # report's --out as well
    _err_line(capsys)


def test_out_under_proc_is_bad_input(capsys):
    """issue 15 item 12: --out under /proc: exit 2, one line."""
    if not Path("/proc/self").exists():
        pytest.skip("no /proc")
    assert cli.main(_run_args(Path("/proc/simgen-test-out"))) == 2
    assert "/proc/simgen-test-out" in _err_line(capsys)


def test_out_on_read_only_mount_is_bad_input(tmp_path, capsys):
    """issue 15 item 12: --out on a read-only file system: exit 2, one line."""
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        assert cli.main(_run_args(d / "o")) == 2
        assert "read-only" in _err_line(capsys).lower()
        assert cli.main(_run_args(d)) == 2  # the mount point itself exists but cannot take files
        _err_line(capsys)
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_nul_byte_in_path_is_one_line(tmp_path, capsys):
    """issue 15 item 12: a NUL byte in a path argument: exit 2, one printable line (no raw NUL)."""
    assert cli.main(_run_args(Path(str(tmp_path / "a") + "\x00b"))) == 2
    err = _err_line(capsys)
    assert "NUL" in err and "\x00" not in err
    assert cli.main(["view", str(tmp_path / "x\x00.h5")]) == 2
    assert "\x00" not in _err_line(capsys)
    assert not (tmp_path / "a").exists()


def test_interrupted_export_prints_its_own_message(lead_run, tmp_path, monkeypatch, capsys):
    """issue 15 item 12: Ctrl-C during export says what an interrupted export leaves, not the run's message."""
    import annotators.export as export_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(export_mod, "export", interrupted)
    assert cli.main(["export", str(lead_run), "--format", "kitti", "--out", str(tmp_path / "k")]) == 130
    err = _err_line(capsys)
    assert "export" in err and "episodes are kept" not in err


def test_batch_overwrite_keeps_user_files_in_jobs(tmp_path):
    """issue 15 item 6 (batch): clearing a batch folder for --overwrite removes simgen's own files only."""
    from simgen.batch.runner import _clear

    out = tmp_path / "b"
    ep = out / "jobs" / "lead" / "episodes"
    ep.mkdir(parents=True)
    (out / "logs" / "lead").mkdir(parents=True)
    for rel in ("batch.json", "plan.yaml", "manifest.jsonl", "index.csv", "jobs/lead/episodes/episode_000000.h5",
                "jobs/lead/episodes/.episode_000001.h5.a1-p9.h5", "jobs/lead/episodes/episode_000002.h5.partial",
                "logs/lead/episode_000000.log"):
        (out / rel).write_text("simgen's")
    (ep / "my_labels.csv").write_text("mine")
    (out / "README.txt").write_text("mine too")
    _clear(out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["README.txt", "jobs/lead/episodes/my_labels.csv"]
