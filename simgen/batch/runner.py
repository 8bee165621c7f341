"""The batch: expand a plan, skip what is already finished, run the rest on an executor, record, index.

Output folder (``--out DIR``)::

    DIR/batch.json                              plan hash, seed, resolved jobs, versions (written first)
    DIR/plan.yaml                               the plan file as given
    DIR/manifest.jsonl                          crash-safe record of finished/failed episodes (simgen.batch.manifest)
    DIR/index.csv                               one row per planned episode, rewritten at the end of each batch
    DIR/jobs/<job>/episodes/episode_000123.h5   the episodes (simgen.io.episode format)
    DIR/logs/<job>/episode_000123.log           per-episode log: attempts, timings, errors with tracebacks
    DIR/.lock                                   flock held while a batch writes here

Resume: re-running the same command skips episodes whose last manifest record is ``done`` and whose file exists
with the recorded size and SHA-256; everything else (failed, never finished, missing or corrupt files) is run
again.  Leftover staging/partial files are deleted first.  A folder made from a different plan (other hash) is
refused unless ``--overwrite``, which clears simgen's own outputs there and starts over.

Failures: an attempt that raises, whose worker dies, or that runs past ``timeout_s`` (its worker is killed) is
retried up to ``retries`` times (bad input, :class:`~simgen.errors.InputError`, is not retried: it would fail
the same way), then recorded as failed; the batch goes on.  :attr:`BatchResult.exit_code` is 1 if any failed.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from simgen.batch.executor import LocalPool, RayPool, import_ray, make_slots
from simgen.batch.manifest import Manifest, index_rows, latest, write_index
from simgen.batch.plan import EpisodeTask, Plan, load_plan, sample_params
from simgen.batch.worker import FAULT_ENV, parse_faults, sha256_file, staging_glob
from simgen.errors import InputError

OURS = ("batch.json", "plan.yaml", "manifest.jsonl", "index.csv", "index.parquet", "jobs", "logs")
POLL_S = 0.25


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class BatchResult:
    out: str
    total: int
    skipped: int = 0
    done: int = 0
    failed: list[dict] = field(default_factory=list)  # {label, error, attempts, log}
    pending: int = 0
    frames: int = 0
    wall_s: float = 0.0
    executor: str = "local"
    workers: int = 1

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.pending else 0

    def summary_text(self) -> str:
        rate = f"{self.frames / self.wall_s:.1f} frames/s, {self.done / self.wall_s:.2f} episodes/s" if self.wall_s > 0 else ""
        lines = [f"batch: {self.done + self.skipped}/{self.total} episodes finished ({self.done} now, {self.skipped} "
                 f"skipped as already finished), {len(self.failed)} failed, {self.pending} not run; {self.frames} frames "
                 f"in {self.wall_s:.1f} s ({rate}; {self.executor}, {self.workers} worker(s)); index: {self.out}/index.csv"]
        for f in self.failed:
            lines.append(f"  FAILED {f['label']} after {f['attempts']} attempt(s): {f['error']}  (log: {f['log']})")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- output folder
def _lock(out: Path) -> int:
    """Take ``DIR/.lock`` (see :class:`simgen.io.output.OutputLock`: refused with the holder named, stale locks
    of dead processes do not block); returns the open fd, closed (unlocked) when the batch ends."""
    from simgen.io.output import OutputLock

    fd = OutputLock(out, name=".lock").acquire().fd
    return fd if fd is not None else os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)  # not POSIX: no lock


def _clear(out: Path) -> None:
    """Delete simgen's own batch outputs: the top-level files it writes, and inside ``jobs/`` and ``logs/`` only
    the episode, staging, partial and log files it names; other files there (a user's) stay, as do their folders."""
    for name in OURS:
        p = out / name
        if p.is_file() or p.is_symlink():
            p.unlink()
    for sub, patterns in (("jobs", ("*/episodes/episode_*.h5", "*/episodes/.episode_*", "*/episodes/*.partial")),
                          ("logs", ("*/episode_*.log",))):
        root = out / sub
        if not root.is_dir() or root.is_symlink():
            continue
        for pat in patterns:
            for p in root.glob(pat):
                if p.is_file() or p.is_symlink():
                    p.unlink()
        for d in sorted((q for q in root.rglob("*") if q.is_dir()), key=lambda q: len(q.parts), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
        if not any(root.iterdir()):
            root.rmdir()


def prepare_out(out: Path, plan: Plan, *, overwrite: bool) -> int:
    """Check/claim the output folder; returns the lock's fd.  Writes batch.json and plan.yaml."""
    from simgen.runner import versions, write_atomic

    from simgen.io.output import make_dir

    make_dir(out)  # a bad location (under a file, read-only, /proc) is bad input
    fd = _lock(out)
    try:
        meta = out / "batch.json"
        others = [p for p in out.iterdir() if p.name != ".lock"]
        if meta.exists():
            try:
                old = json.loads(meta.read_text(encoding="utf-8")).get("plan_sha256")
            except (ValueError, OSError):
                old = None
            if overwrite:
                _clear(out)
            elif old != plan.sha256:
                raise InputError(f"this folder was made from a different plan (plan hash {str(old)[:12]}, this plan "
                                 f"{plan.sha256[:12]}); pass --overwrite to start over, or choose another --out",
                                 file=str(out))
        elif others:
            if not overwrite:
                raise InputError("output directory is not empty and holds no simgen batch (no batch.json); choose "
                                 "another --out or pass --overwrite", file=str(out))
            _clear(out)
        info = {"format": "simgen-batch", "format_version": 1, "plan_sha256": plan.sha256,
                "plan_file": str(Path(plan.path).resolve()), "seed": plan.spec.seed, "retries": plan.spec.retries,
                "timeout_s": plan.spec.timeout_s, "updated": _now(), "versions": versions(),
                "jobs": [{"name": j.name, "index": j.index, "scenario": j.scenario, "set": list(j.overrides),
                          "rig": j.rig, "frames": j.frames, "backend": j.backend, "episodes": j.episodes}
                         for j in plan.jobs]}
        write_atomic(meta, json.dumps(info, indent=2))
        write_atomic(out / "plan.yaml", plan.text)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_stale(out: Path) -> int:
    n = 0
    jobs = out / "jobs"
    if jobs.is_dir():
        for p in list(jobs.glob("*/episodes/.episode_*")) + list(jobs.glob("*/episodes/*.partial")):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _verify(out: Path, t: EpisodeTask, rec: dict) -> bool:
    p = out / t.rel_path
    try:
        if p.stat().st_size != rec.get("bytes"):
            return False
    except OSError:
        return False
    return sha256_file(p) == rec.get("sha256")


# ---------------------------------------------------------------------------------------------- the batch
class _Logs:
    def __init__(self, out: Path):
        self.out = out

    def __call__(self, t: EpisodeTask, text: str) -> None:
        p = self.out / t.rel_log
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(f"{_now()} {text.rstrip()}\n")


def _default_threads(workers: int) -> int:
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, ncpu // max(1, workers))


def run_batch(plan_path: str | Path, out: str | Path, *, executor: str = "local", workers: int | None = None,
              ray_address: str | None = None, overwrite: bool = False, progress: bool = True,
              carla_host: str = "127.0.0.1", carla_port: int = 2000, carla_workers: int = 1,
              threads: int | None = None, pin: bool = False, faults: str | None = None,
              allow_plugins: bool | None = None) -> BatchResult:
    """Run (or resume) a batch.  ``threads``: per-worker thread limit (OMP_NUM_THREADS ...; default: cores //
    workers; 0: leave the environment alone); ``pin``: also pin each local worker to its share of the cores.  ``faults``: the test hook
    (default: ``$SIMGEN_BATCH_FAULT``)."""
    if executor not in ("local", "ray"):
        raise InputError(f"got {executor!r}; allowed: local, ray", key="--executor")
    for key, v, lo in (("--workers", workers, 1), ("--carla-workers", carla_workers, 1),
                       ("--threads-per-worker", threads, 0)):
        if v is not None and v < lo:
            raise InputError(f"got {v}; allowed: {lo} or more", key=key)
    if executor == "ray":
        import_ray()  # fail early, with the install hint
    try:
        fault_list = parse_faults(os.environ.get(FAULT_ENV) if faults is None else faults)
    except ValueError as e:
        raise InputError(str(e), key=FAULT_ENV) from None
    plan = load_plan(plan_path, allow_plugins=allow_plugins)
    out = Path(out)
    lock_fd = prepare_out(out, plan, overwrite=overwrite)
    try:
        return _run(plan, out, executor=executor, workers=workers, ray_address=ray_address, progress=progress,
                    carla_host=carla_host, carla_port=carla_port, carla_workers=carla_workers, threads=threads,
                    pin=pin, faults=fault_list)
    finally:
        os.close(lock_fd)


def _run(plan: Plan, out: Path, *, executor, workers, ray_address, progress, carla_host, carla_port, carla_workers,
         threads, pin, faults) -> BatchResult:
    t_wall = time.monotonic()
    tasks = plan.expand()
    manifest = Manifest(out / "manifest.jsonl")
    recs = latest(manifest.read())
    log = _Logs(out)
    _remove_stale(out)

    # what is already finished (checksums verified, in parallel: hashlib releases the GIL)
    claimed = [t for t in tasks if recs.get(t.key, {}).get("event") == "done"]
    with ThreadPoolExecutor(max_workers=4) as ex:
        ok = dict(zip([t.key for t in claimed], ex.map(lambda t: _verify(out, t, recs[t.key]), claimed)))
    skipped = {k for k, v in ok.items() if v}
    for t in claimed:
        if t.key not in skipped:
            log(t, "resume: recorded as done but the file is missing or its checksum differs; running it again")
            recs.pop(t.key)
    todo = [t for t in tasks if t.key not in skipped]

    if workers is None and executor == "ray" and ray_address:
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads is None and executor == "local":
        threads = _default_threads(workers)
    res = BatchResult(str(out), len(tasks), skipped=len(skipped), executor=executor, workers=workers)

    manifest.open()
    manifest.append({"event": "start", "time": _now(), "plan_sha256": plan.sha256, "executor": executor,
                     "workers": workers, "threads": threads, "episodes": len(tasks), "todo": len(todo),
                     "skipped": len(skipped), "pid": os.getpid()})
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), initial=len(skipped), unit="ep", desc=f"batch {Path(plan.path).stem}",
                   dynamic_ncols=True, smoothing=0.1)
    pool = None
    interrupted = False
    try:
        if todo:
            backends = {t.job.backend for t in todo}
            slots = make_slots(backends, workers=min(workers, len(todo)), carla_workers=carla_workers,
                               carla_host=carla_host, carla_base_port=carla_port)
            if executor == "ray":
                pool = RayPool(slots, address=ray_address, num_cpus=len(slots), threads=threads)
            else:
                pool = LocalPool(slots, threads=threads, pin=pin)
            _loop(pool, slots, todo, recs, plan, out, manifest, log, bar, res, faults)
    except BaseException:
        interrupted = True
        raise
    finally:
        if pool is not None:
            busy = [s.task for s in pool.slots if s.busy]
            pool.close()
            for t in busy:
                _clean_staging(out, t)
        res.wall_s = time.monotonic() - t_wall
        res.pending = len(tasks) - res.skipped - res.done - len(res.failed)
        try:
            manifest.append({"event": "end", "time": _now(), "interrupted": interrupted, "done": res.done,
                             "skipped": res.skipped, "failed": len(res.failed), "pending": res.pending,
                             "frames": res.frames, "wall_s": round(res.wall_s, 3)})
        finally:
            manifest.close()
            if bar is not None:
                bar.close()

        def params_of(t):
            try:
                return sample_params(t)
            except Exception:  # noqa: BLE001 - a sampling error is already in the episode's record
                return {}

        write_index(out, index_rows(tasks, recs, params_of))
    return res


def _clean_staging(out: Path, t: EpisodeTask) -> None:
    final = out / t.rel_path
    if final.parent.is_dir():
        for p in final.parent.glob(staging_glob(final.name)):
            p.unlink(missing_ok=True)


def _loop(pool, slots, todo, recs, plan, out, manifest, log, bar, res, faults) -> None:
    spec = plan.spec
    queues: dict[str, deque] = {}
    for t in todo:
        queues.setdefault(t.job.backend, deque()).append(t)
    attempts: dict[tuple, int] = {}
    remaining = len(todo)
    t0 = time.monotonic()
    frames_seen = 0  # streamed frames (incl. failed attempts), for the live rate
    deaths_idle = 0
    last_post = 0.0

    def postfix(force=False):
        nonlocal last_post
        now = time.monotonic()
        if bar is not None and (force or now - last_post > 0.5):
            last_post = now
            bar.set_postfix_str(f"{frames_seen / max(now - t0, 1e-9):.1f} frames/s, failed={len(res.failed)}",
                                refresh=False)
            bar.refresh()

    def failure(t: EpisodeTask, err: dict) -> None:
        nonlocal remaining
        n = attempts[t.key]
        log(t, f"attempt {n} failed: {err['type']}: {err['message']}" + (f"\n{err['traceback']}" if err.get("traceback") else ""))
        if err.get("retryable", True) and n <= spec.retries:
            log(t, f"retrying ({spec.retries + 1 - n} attempt(s) left)")
            queues[t.job.backend].append(t)
            return
        rec = {"event": "failed", "time": _now(), "job": t.job.name, "job_index": t.job.index, "episode": t.episode,
               "attempts": n, "error": {"type": err["type"], "message": err["message"]},
               "seed": {"entropy": int(t.seed.entropy), "spawn_key": list(t.seed.spawn_key)}}
        manifest.append(rec)
        recs[t.key] = rec
        log(t, f"gave up after {n} attempt(s)")
        res.failed.append({"label": t.label, "error": f"{err['type']}: {err['message']}", "attempts": n,
                           "log": str(out / t.rel_log)})
        remaining -= 1
        if bar is not None:
            bar.update(1)

    while remaining > 0:
        for s in slots:
            q = queues.get(s.backend)
            if s.ready and not s.busy and q:
                t = q.popleft()
                n = attempts[t.key] = attempts.get(t.key, 0) + 1
                s.task, s.attempt = t, n
                s.started = time.monotonic()
                s.deadline = s.started + spec.timeout_s
                payload = dict(t.payload(), out=str(out / t.rel_path), attempt=n, backend_options=s.options,
                               faults=faults)
                log(t, f"attempt {n} start ({pool.kind} slot {s.name}" + (f", pid {s.pid}" if s.pid else "") + ")")
                pool.submit(s, payload)
        busy = [s for s in slots if s.busy]
        wait = POLL_S
        if busy:
            wait = max(0.0, min(wait, min(s.deadline for s in busy) - time.monotonic()))
        for s, kind, data in pool.poll(wait):
            if kind == "frames":
                frames_seen += data
                continue
            t, s.task = s.task, None
            if t is None:
                deaths_idle += kind == "died"
                if deaths_idle > 3 * len(slots) + 3:
                    raise RuntimeError(f"batch workers keep dying before running anything: {data}")
                continue
            if kind == "done":
                rec = {"event": "done", "time": _now(), "job": t.job.name, "job_index": t.job.index,
                       "episode": t.episode, "path": t.rel_path, "attempts": attempts[t.key],
                       **{k: v for k, v in data.items() if k != "pid"}}
                manifest.append(rec)
                recs[t.key] = rec
                log(t, f"attempt {attempts[t.key]} done: {data['frames']} frames in {data['elapsed_s']:.2f} s, "
                       f"sha256 {data['sha256']}, {t.rel_path}")
                res.done += 1
                res.frames += data["frames"]
                if pool.kind != "local":
                    frames_seen += data["frames"]
                remaining -= 1
                if bar is not None:
                    bar.update(1)
            else:
                _clean_staging(out, t)
                err = data if kind == "error" else {"type": "WorkerDied", "message": str(data), "traceback": "",
                                                    "retryable": True}
                failure(t, err)
        now = time.monotonic()
        for s in slots:
            if s.busy and now > s.deadline:
                t, s.task = s.task, None
                pool.kill(s)
                _clean_staging(out, t)
                failure(t, {"type": "Timeout", "message": f"attempt ran past timeout_s={spec.timeout_s:g} "
                            f"({now - s.started:.1f} s); its worker was killed", "traceback": "", "retryable": True})
        postfix()
    postfix(force=True)
