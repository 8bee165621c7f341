"""One episode attempt, as run inside a worker (a local worker process or a Ray actor).

A worker keeps its loaded scenarios, rigs and backends between episodes (a backend is built once per worker).
It writes the episode under a staging name unique to the attempt (``.episode_000123.h5.a1-p4242.h5``; the episode
writer itself first writes that as ``….partial``), hashes it (SHA-256) and only then renames it to
``episode_000123.h5`` and fsyncs the folder.  So a final name only ever holds a complete file, and two attempts
(or an orphaned worker) can never write into the same file.

This module imports nothing heavy at the top: :func:`worker_main` first applies the worker's thread limits
(``OMP_NUM_THREADS`` …, CPU affinity), then imports numpy/open3d.

Test hook (documented in docs/batch.md): the batch reads ``SIMGEN_BATCH_FAULT`` in the parent and passes the
parsed faults with each task; the worker applies a matching fault.  Comma-separated specs
``KIND:JOB:epE[:frameK][:firstA]`` where KIND is ``raise`` (RuntimeError), ``hang`` (sleep forever) or ``exit``
(the worker process dies, like a segfault); JOB is ``job<index>`` or a job name; the fault fires once K frames
of the episode are written (default 1; 0 = before the episode opens), on every attempt or only the first A.
"""
from __future__ import annotations

import os
import sys
import time

FAULT_ENV = "SIMGEN_BATCH_FAULT"
THREAD_ENV = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
FAULT_KINDS = ("raise", "hang", "exit")


def parse_faults(text: str | None) -> list[dict]:
    """Parse ``SIMGEN_BATCH_FAULT``; raises ValueError with the offending spec."""
    faults = []
    for spec in (text or "").split(","):
        spec = spec.strip()
        if not spec:
            continue
        parts = spec.split(":")
        if parts[0] not in FAULT_KINDS or len(parts) < 3:
            raise ValueError(f"bad fault spec {spec!r}; expected KIND:JOB:epE[:frameK][:firstA], KIND one of "
                             f"{', '.join(FAULT_KINDS)}")
        f = {"kind": parts[0], "job": None, "episode": None, "frame": 1, "first": None}
        for tok in parts[1:]:
            for prefix, key in (("ep", "episode"), ("frame", "frame"), ("first", "first"), ("job", "job")):
                if tok.startswith(prefix) and tok[len(prefix):].isdigit():
                    f[key] = int(tok[len(prefix):])
                    break
            else:
                if f["job"] is not None:
                    raise ValueError(f"bad fault spec {spec!r}: unexpected {tok!r}")
                f["job"] = tok
        if f["job"] is None or f["episode"] is None:
            raise ValueError(f"bad fault spec {spec!r}: needs a job (job<index> or a name) and ep<index>")
        faults.append(f)
    return faults


def matching_fault(faults: list[dict], task: dict) -> dict | None:
    for f in faults or ():
        job_ok = f["job"] == task["job"] or f["job"] == task["job_index"]
        if job_ok and f["episode"] == task["episode"] and (f["first"] is None or task["attempt"] <= f["first"]):
            return f
    return None


def _fire(fault: dict, k: int) -> None:
    if fault["kind"] == "raise":
        raise RuntimeError(f"injected fault ({FAULT_ENV}) after {k} frame(s)")
    if fault["kind"] == "exit":
        os._exit(86)
    while True:  # hang
        time.sleep(3600)


class _Frames:
    """The ``progress`` object handed to ``run_episode``: counts frames, reports them, fires injected faults."""

    def __init__(self, on_frames, fault):
        self.k, self.on_frames, self.fault = 0, on_frames, fault

    def update(self, n: int = 1) -> None:
        self.k += n
        if self.on_frames is not None:
            self.on_frames(n)
        if self.fault is not None and self.k >= self.fault["frame"]:
            _fire(self.fault, self.k)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def staging_glob(final_name: str) -> str:
    """Glob (in the episode's folder) matching every staging/partial file of any attempt at this episode."""
    return f".{final_name}.*"


class EpisodeRunner:
    """A worker's state: scenario sources, rigs and backends, loaded once and reused."""

    def __init__(self):
        self.sources, self.rigs, self.backends = {}, {}, {}

    def _source(self, path, overrides, allow_plugins=None):
        from simgen.spec.scenario import load_scenario_source

        key = (path, tuple(overrides))
        if key not in self.sources:
            self.sources[key] = load_scenario_source(path, list(overrides), allow_plugins=allow_plugins)
        return self.sources[key]

    def _rig(self, path):
        from simgen.spec.rig import load_rig

        if path not in self.rigs:
            self.rigs[path] = load_rig(path)
        return self.rigs[path]

    def _backend(self, name, options):
        import json

        from simgen.backends.base import get_backend

        key = (name, json.dumps(options, sort_keys=True))
        if key not in self.backends:
            self.backends[key] = get_backend(name, **options)
        return self.backends[key]

    def close(self) -> None:
        """Close backends that have a ``close`` (the carla backend stops a server it launched)."""
        for b in self.backends.values():
            close = getattr(b, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - best effort at worker exit
                    pass
        self.backends.clear()

    def run(self, task: dict, on_frames=None) -> dict:
        """Run one attempt; returns the result record or raises.  ``task`` is EpisodeTask.payload() plus
        ``out`` (final absolute path), ``attempt``, ``backend_options``, ``faults``."""
        from pathlib import Path

        from simgen.batch.plan import episode_seed, plan_one
        from simgen.runner import run_episode

        t0 = time.perf_counter()
        fault = matching_fault(task.get("faults"), task)
        if fault is not None and fault["frame"] <= 0:
            _fire(fault, 0)
        src = self._source(task["scenario"], task["set"], task.get("allow_plugins"))
        rig = self._rig(task["rig"])
        backend = self._backend(task["backend"], task.get("backend_options") or {})
        seed = episode_seed(task["plan_seed"], task["job_index"], task["episode"])
        plan = plan_one(src, seed, task["episode"])
        final = Path(task["out"])
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.with_name(f".{final.name}.a{task['attempt']}-p{os.getpid()}.h5")
        try:
            res = run_episode(plan, rig, staging, backend=backend, source=src.path, n_frames=task["frames"],
                              progress=_Frames(on_frames, fault),
                              meta={"batch_seed": task["plan_seed"], "batch_job": task["job"],
                                    "batch_job_index": task["job_index"]})
            digest = sha256_file(staging)
            size = staging.stat().st_size
            os.replace(staging, final)
            fsync_dir(final.parent)
        finally:
            for p in final.parent.glob(staging_glob(final.name)):
                if p.name.startswith(staging.name):
                    p.unlink(missing_ok=True)
        summary = {k: v for k, v in res.items() if k not in ("index", "file", "frames", "parameters")}
        return {"sha256": digest, "bytes": size, "frames": res["frames"], "params": res["parameters"],
                "summary": summary, "seed": {"entropy": int(seed.entropy), "spawn_key": list(seed.spawn_key)},
                "elapsed_s": round(time.perf_counter() - t0, 3), "pid": os.getpid()}


def run_safely(runner: EpisodeRunner, task: dict, on_frames=None) -> tuple[str, dict]:
    """``("done", result)`` or ``("error", {type, message, traceback, retryable})``; never raises (but SystemExit)."""
    import traceback

    try:
        return "done", runner.run(task, on_frames)
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the batch goes on
        from simgen.errors import InputError

        return "error", {"type": type(e).__name__, "message": str(e).strip().splitlines()[0] if str(e).strip() else "",
                         "traceback": traceback.format_exc(), "retryable": not isinstance(e, InputError)}


def limit_threads(threads: int | None, cpus: list[int] | None) -> None:
    """Set this process's thread limits before numpy/open3d load (env), and optionally its CPU affinity (open3d's
    TBB pool sizes itself from the affinity mask)."""
    if threads:
        for k in THREAD_ENV:
            os.environ[k] = str(threads)
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies (a SIGKILLed batch leaves no orphan still writing episodes)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def worker_main(conn, slot: int, threads: int | None, cpus: list[int] | None, parent_pid: int) -> None:
    """Entry point of a local worker process.  Protocol (tuples over a Pipe):
    worker → parent: ("ready", pid) once; then per task ("frames", n)*, then ("done", result) | ("error", err).
    parent → worker: ("run", task) | ("stop",)."""
    import signal

    _die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it stops the workers
    limit_threads(threads, cpus)
    import simgen.runner  # noqa: F401 - warm the imports before saying ready
    from simgen.backends import builtin  # noqa: F401
    from simgen.batch import plan  # noqa: F401

    runner = EpisodeRunner()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] != "run":
            break
        kind, payload = run_safely(runner, msg[1], on_frames=lambda n: conn.send(("frames", n)))
        try:
            conn.send((kind, payload))
        except (BrokenPipeError, OSError):
            break
    runner.close()


class RayWorker:
    """The Ray actor class (wrapped with ``ray.remote`` by the executor): one per worker slot."""

    def __init__(self, slot: int, threads: int | None = None):
        limit_threads(threads, None)
        self.slot = slot
        self.runner = EpisodeRunner()

    def run(self, task: dict) -> tuple[str, dict]:
        return run_safely(self.runner, task)

    def ping(self) -> int:
        return os.getpid()
