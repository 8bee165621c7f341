"""The batch manifest (crash-safe record of finished and failed episodes) and the index table built from it.

``DIR/manifest.jsonl``: one JSON object per line, appended with a single ``write`` and ``fsync``'d before the
batch moves on.  Records (``event``): ``start`` (one per invocation: plan hash, executor, workers), ``done`` (an
episode finished: path, sha256, bytes, frames, attempts, seed, sampled params, criticality summary), ``failed``
(an episode gave up after its attempts: error type/message, attempts) and ``end`` (counts; absent after a kill).
For an episode, the last ``done``/``failed`` record wins.  A ``done`` record is written only after the episode
file is complete, fsync'd and renamed into place, so a kill at any moment loses at most the episodes in flight.
A torn last line (kill or power loss mid-write) is ignored on reading and cut off before the next append.

``DIR/index.csv``: one row per planned episode (plan order), rewritten atomically at the end of every batch from
the manifest; ``DIR/index.parquet`` as well when pyarrow happens to be installed.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path


def _plain(v):
    """JSON fallback for numpy scalars and the like."""
    for attr in ("item", "tolist"):
        if hasattr(v, attr):
            return getattr(v, attr)()
    return str(v)


def dumps(rec: dict) -> str:
    return json.dumps(rec, default=_plain, separators=(",", ":"))


class Manifest:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.torn = 0

    def read(self) -> list[dict]:
        """All complete records, in order (lines that do not parse — a torn tail — are skipped and counted)."""
        if not self.path.exists():
            return []
        out = []
        self.torn = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    self.torn += 1
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    self.torn += 1
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    def open(self) -> None:
        """Open for appending; a torn last line (no newline) is cut off first."""
        new = not self.path.exists()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self.fd).st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(max(0, size - 1))
                last = fh.read(1)
                if last != b"\n":
                    fh.seek(0)
                    data = fh.read()
                    os.ftruncate(self.fd, data.rfind(b"\n") + 1)
                    os.fsync(self.fd)
        if new:
            from simgen.batch.worker import fsync_dir

            fsync_dir(self.path.parent)

    def append(self, rec: dict) -> None:
        assert self.fd is not None, "manifest not open"
        os.write(self.fd, (dumps(rec) + "\n").encode("utf-8"))
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def latest(records: list[dict]) -> dict[tuple[str, int], dict]:
    """Last done/failed record per (job, episode)."""
    out = {}
    for r in records:
        if r.get("event") in ("done", "failed"):
            out[(r["job"], int(r["episode"]))] = r
    return out


FIXED = ["job", "job_index", "scenario", "episode", "seed_entropy", "seed_spawn_key", "status", "attempts", "frames",
         "min_ttc_s", "min_gap_m", "collision"]
TAIL = ["elapsed_s", "path", "sha256", "bytes", "error"]


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=_plain)
    if hasattr(v, "item"):
        v = v.item()
    return v


def index_rows(tasks, recs: dict, params_of) -> list[dict]:
    """One row per task (plan order).  ``params_of(task)`` supplies parameters for rows whose record has none."""
    rows = []
    for t in tasks:
        r = recs.get(t.key, {})
        seed = t.seed
        row = {"job": t.job.name, "job_index": t.job.index, "scenario": Path(t.job.scenario).stem,
               "episode": t.episode, "seed_entropy": str(seed.entropy), "seed_spawn_key": list(seed.spawn_key),
               "status": r.get("event", "pending"), "attempts": r.get("attempts"), "frames": r.get("frames")}
        summary = r.get("summary") or {}
        for k in ("min_ttc_s", "min_gap_m", "collision"):
            row[k] = summary.get(k)
        for k, v in summary.items():
            if k not in row:
                row[k] = v
        if getattr(t.job, "grid_size", 1) > 1:
            row["grid_point"] = t.episode % t.job.grid_size
        err = r.get("error")
        row.update({"elapsed_s": r.get("elapsed_s"), "path": t.rel_path if row["status"] == "done" else None,
                    "sha256": r.get("sha256"), "bytes": r.get("bytes"),
                    "error": f"{err['type']}: {err['message']}" if err else None})
        params = r.get("params")
        if params is None:
            params = params_of(t)
        for k, v in (params or {}).items():
            row[f"param.{k}"] = v
        rows.append(row)
    return rows


def write_index(out: Path, rows: list[dict]) -> Path:
    """Write ``index.csv`` atomically (and ``index.parquet`` if pyarrow is installed)."""
    from simgen.batch.worker import fsync_dir

    extra, params = [], []
    for r in rows:
        for k in r:
            if k in FIXED or k in TAIL:
                continue
            dest = params if k.startswith("param.") else extra
            if k not in dest:
                dest.append(k)
    cols = FIXED + extra + TAIL + params
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in cols})
    path = out / "index.csv"
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        ptmp = out / "index.parquet.partial"
        try:
            table = pa.Table.from_pylist([{k: _cell(r.get(k)) if isinstance(r.get(k), (list, tuple, dict)) else r.get(k)
                                           for k in cols} for r in rows])
            pq.write_table(table, ptmp)
            os.replace(ptmp, out / "index.parquet")
        except Exception as e:  # noqa: BLE001 - the CSV is the index; Parquet is a convenience
            ptmp.unlink(missing_ok=True)
            print(f"simgen: warning: index.parquet not written ({type(e).__name__}: {e})", file=sys.stderr)
    fsync_dir(out)
    return path
