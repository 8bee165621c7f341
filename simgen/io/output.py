"""Output-folder safety shared by ``run``, ``replay`` and (for the lock) ``batch``.

- :class:`OutputLock` — an exclusive ``flock`` on ``OUT/.simgen-lock`` held for the whole command.  The file
  records the holder (pid, host, command, start time) so a second run into the same folder is refused with one
  line naming it.  The kernel drops a ``flock`` when its process dies, so a lock file left by a killed run
  (a dead pid) never blocks anyone: the next run simply takes it.  Python's standard ``fcntl`` is used, not a
  library: ``filelock``'s Unix lock is the same ``flock`` call but does not record a holder.
- :class:`OutputManifest` — ``OUT/.simgen-outputs`` lists (relative paths) every file simgen wrote there.  An
  entry is recorded *before* its file is created, so an interrupted run's files are known too.  ``--overwrite``
  deletes only recorded files; anything else in the folder (a user's notes, labels, their own scenario file) is
  kept, and a file simgen would have to write over that it did not record is refused.
- :func:`make_dir` — creates an output folder, turning "under a file", "read-only file system", "/proc" and
  similar into a one-line :class:`~simgen.errors.InputError` (exit 2).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from simgen.errors import InputError

LOCK_NAME = ".simgen-lock"
MANIFEST_NAME = ".simgen-outputs"
BOOKKEEPING = (LOCK_NAME, MANIFEST_NAME)


def _reason(e: OSError) -> str:
    return e.strerror or e.__class__.__name__


def check_path_arg(value: str, key: str) -> None:
    """A path argument with a NUL byte cannot name a file (the OS refuses it with a bare ValueError)."""
    if "\x00" in str(value):
        raise InputError(f"got a path containing a NUL byte ({str(value)!r}); allowed: a file-system path", key=key)


def make_dir(path: Path, key: str = "--out") -> Path:
    """``mkdir -p`` with bad locations reported as bad input (one line, exit 2)."""
    check_path_arg(str(path), key)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("output path exists and is not a directory", file=str(path), key=key)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".simgen-probe-{os.getpid()}"
        probe.touch()  # a folder that exists but cannot take files (read-only mount, /proc, no permission)
        probe.unlink()
    except OSError as e:
        raise InputError(f"cannot create or write the output folder: {_reason(e)}", file=str(path), key=key) from None
    return path


# ------------------------------------------------------------------------------------------------------ lock
class OutputLock:
    """Exclusive lock on an output folder (``with OutputLock(out, "simgen run"):``).  Refuses, never waits."""

    def __init__(self, folder: str | Path, what: str | None = None, *, name: str = LOCK_NAME):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what or " ".join(["simgen"] + sys.argv[1:])[:300]
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process (holder not recorded yet)"
        return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')} "
                f"({info.get('command', '?')})")

    def acquire(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock (documented)
            return self
        for _ in range(10):  # retry if the file was replaced between open and flock (see below)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise InputError(f"cannot create the lock file: {_reason(e)}", file=str(self.folder), key="--out") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise InputError(f"output folder is in use by {self.holder()}; wait for it or choose another --out",
                                 file=str(self.folder)) from None
            try:  # the holder we raced with may have removed the file after we opened it: lock the current one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.what,
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            self.fd = fd
            return self
        raise InputError("cannot take the output folder's lock (it keeps changing)", file=str(self.folder))

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: nobody can lock the old file meanwhile
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# -------------------------------------------------------------------------------------------------- manifest
class OutputManifest:
    """The files simgen wrote in one output folder (``OUT/.simgen-outputs``, JSON)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.files: list[str] = []
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                files = data.get("files", []) if isinstance(data, dict) else []
            except (OSError, ValueError):
                files = []
            self.files = [f for f in files if isinstance(f, str) and self._safe(f)]

    @staticmethod
    def _safe(rel: str) -> bool:
        p = Path(rel)
        return bool(rel) and not p.is_absolute() and ".." not in p.parts and p.name not in BOOKKEEPING

    def _save(self) -> None:
        from simgen.runner import write_atomic

        write_atomic(self.path, json.dumps({"format": "simgen-outputs", "files": self.files}, indent=1))

    def record(self, *paths: Path) -> None:
        """Record outputs (before they are written)."""
        new = False
        for p in paths:
            rel = Path(p).relative_to(self.folder).as_posix()  # outputs are always built as folder / name
            if rel not in self.files:
                self.files.append(rel)
                new = True
        if new or not self.path.exists():
            self._save()

    def remove_recorded(self, keep: set[Path] = frozenset()) -> None:
        """Delete every recorded file that still exists (and its ``.partial``), except ``keep``; forget them."""
        for rel in self.files:
            p = self.folder / rel
            for q in (p, p.with_name(p.name + ".partial")):
                if q in keep:
                    continue
                if q.is_file() or q.is_symlink():
                    q.unlink()
        self.files = []
        self._save()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except (OSError, ValueError):
        return False


def claim_outputs(out: Path, outputs: list[Path], *, inputs: list[Path], overwrite: bool) -> OutputManifest:
    """Check that ``outputs`` (paths inside ``out``) may be written, then clear and record them.

    - An input file (the scenario, rig or episode being read) is never an output: refused even with overwrite,
      and also when a previous run's recorded file that ``--overwrite`` would delete is an input.
    - Without ``overwrite`` the folder must be empty (simgen's lock file aside).
    - With it, the files a previous simgen run recorded are deleted; any other existing file that would have to
      be written over is refused (it is the user's).
    """
    out = Path(out)
    man = OutputManifest(out)
    ins = [Path(i) for i in inputs if i]
    doomed = [out / r for r in man.files] if overwrite else []
    for o in list(outputs) + doomed:
        for i in ins:
            if _same_file(o, i):
                raise InputError(f"--out would overwrite the input file {i}; choose another --out", file=str(out))
    others = [p for p in out.iterdir() if p.name not in BOOKKEEPING] if out.is_dir() else []
    if others and not overwrite:
        raise InputError("output directory is not empty; choose another --out or pass --overwrite", file=str(out))
    recorded = {out / r for r in man.files}
    for o in outputs:
        if (o.exists() or o.is_symlink()) and o not in recorded:
            raise InputError(f"{o.relative_to(out).as_posix()} exists and was not written by simgen (not in "
                             f"{MANIFEST_NAME}); move it away or choose another --out", file=str(out))
    if overwrite:
        man.remove_recorded()
    man.record(*outputs)
    return man
