"""Executors: worker *slots* that run one episode attempt at a time and can be killed one by one.

Both executors have the same shape, so the batch loop (:mod:`simgen.batch.runner`) handles retries, timeouts and
progress once:

- ``local``: each slot is a long-lived worker process (``spawn`` context) fed over a Pipe.  A worker builds its
  backend once and reuses it; it streams ("frames", n) messages, so the progress bar's frames/s is live.  An
  attempt past its deadline is ended by killing that worker process (SIGKILL) and starting a fresh one; a worker
  that dies (segfault, OOM kill) costs the attempt it was running, and is replaced.
- ``ray``: each slot is a Ray actor (``num_cpus=1`` for builtin episodes, ``num_gpus=1`` for carla episodes) on a
  local instance (``ray.init(num_cpus=N)``) or a cluster (``--ray-address``).  A timed-out attempt is ended with
  ``ray.kill(actor)`` (force-cancelling a task is not possible for actor tasks) and the slot gets a new actor.

CARLA pairing: slot ``k`` of the carla backend talks to the CARLA server at ``carla_host`` RPC port
``carla_port + 10*k`` (:func:`carla_port`), the carla backend's own port plan (streaming RPC + 1, Traffic Manager
RPC + 6000), so servers started as ``CarlaUE4.sh -carla-rpc-port=2000``, ``…=2010``, … never collide.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from simgen.errors import InputError

PORT_STEP = 10


def carla_port(base: int, slot: int) -> int:
    """RPC port of the CARLA server paired with carla slot ``slot``."""
    return base + PORT_STEP * slot


@dataclass(eq=False)
class Slot:
    index: int  # within its backend's slots
    backend: str
    options: dict  # backend constructor options (carla: host, port)
    ready: bool = False
    task: object = None  # the EpisodeTask being run, or None
    attempt: int = 0
    started: float = 0.0
    deadline: float = float("inf")
    pid: int | None = None
    handle: dict = field(default_factory=dict)  # executor-specific (process/conn or actor/ref)

    @property
    def busy(self) -> bool:
        return self.task is not None

    @property
    def name(self) -> str:
        return f"{self.backend}#{self.index}"


def make_slots(backends: set[str], *, workers: int, carla_workers: int, carla_host: str, carla_base_port: int) -> list[Slot]:
    slots = []
    for b in sorted(backends):
        if b == "carla":
            slots += [Slot(k, b, {"host": carla_host, "port": carla_port(carla_base_port, k)}) for k in range(carla_workers)]
        else:
            slots += [Slot(k, b, {}) for k in range(workers)]
    return slots


class LocalPool:
    """Worker processes on this machine, one per slot."""

    kind = "local"

    def __init__(self, slots: list[Slot], *, threads: int | None = None, pin: bool = False):
        import multiprocessing as mp

        self.mp = mp.get_context("spawn")
        self.slots = slots
        self.threads, self.pin = threads, pin
        self.ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        for s in slots:
            self._start(s)

    def _start(self, s: Slot) -> None:
        from simgen.batch.worker import worker_main

        cpus = None
        if self.pin:
            allowed = sorted(os.sched_getaffinity(0))
            n = len([x for x in self.slots if x.backend == s.backend])
            per = max(1, len(allowed) // max(1, n))
            start = (s.index * per) % len(allowed)
            cpus = allowed[start:start + per]
        here, there = self.mp.Pipe(duplex=True)
        p = self.mp.Process(target=worker_main, args=(there, s.index, self.threads, cpus, os.getpid()),
                            name=f"simgen-batch-{s.name}", daemon=True)
        p.start()
        there.close()
        s.handle = {"proc": p, "conn": here}
        s.ready, s.pid = False, p.pid

    def submit(self, s: Slot, payload: dict) -> None:
        s.handle["conn"].send(("run", payload))

    def poll(self, timeout: float) -> list[tuple[Slot, str, object]]:
        from multiprocessing.connection import wait

        by_obj = {}
        for s in self.slots:
            by_obj[s.handle["conn"]] = s
            by_obj[s.handle["proc"].sentinel] = s
        events, dead = [], []
        for obj in wait(list(by_obj), timeout):
            s = by_obj[obj]
            if any(s is d for d in dead):
                continue
            conn = s.handle["conn"]
            try:
                while conn.poll():
                    kind, data = conn.recv()
                    if kind == "ready":
                        s.ready, s.pid = True, data
                    else:
                        events.append((s, kind, data))
            except (EOFError, OSError):
                dead.append(s)
                continue
            if obj is s.handle["proc"].sentinel:
                dead.append(s)
        for s in dead:
            p = s.handle["proc"]
            p.join(5)
            events.append((s, "died", f"worker process {p.pid} died (exit code {p.exitcode})"))
            self._close_slot(s)
            self._start(s)
        return events

    def kill(self, s: Slot) -> None:
        self._close_slot(s, force=True)
        self._start(s)

    def _close_slot(self, s: Slot, force: bool = True) -> None:
        p, conn = s.handle.get("proc"), s.handle.get("conn")
        if p is not None and p.is_alive():
            p.kill()
        if p is not None:
            p.join(10)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for s in self.slots:
            if not s.busy and s.handle["proc"].is_alive():
                try:
                    s.handle["conn"].send(("stop",))
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for s in self.slots:
            p = s.handle["proc"]
            if not s.busy:
                p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
            p.join(5)
            s.handle["conn"].close()


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("the ray executor needs Ray: pip install 'simgen[ray]'", key="--executor") from None
    return ray


class RayPool:
    """Ray actors, one per slot; a local Ray instance (``ray.init(num_cpus=N)``) unless ``address`` is given."""

    kind = "ray"

    def __init__(self, slots: list[Slot], *, address: str | None = None, num_cpus: int | None = None,
                 threads: int | None = None):
        ray = import_ray()
        from simgen.batch.worker import RayWorker

        self.ray = ray
        self.owns = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=num_cpus, **kw)
            self.owns = True
        self.cls = ray.remote(RayWorker)
        self.slots, self.threads = slots, threads
        for s in slots:
            self._start(s)

    def _start(self, s: Slot) -> None:
        res = {"num_cpus": 1, "num_gpus": 1} if s.backend == "carla" else {"num_cpus": 1}
        s.handle = {"actor": self.cls.options(max_restarts=0, **res).remote(s.index, self.threads), "ref": None}
        s.ready, s.pid = True, None  # calls queue until the actor is up

    def submit(self, s: Slot, payload: dict) -> None:
        s.handle["ref"] = s.handle["actor"].run.remote(payload)

    def poll(self, timeout: float) -> list[tuple[Slot, str, object]]:
        ray = self.ray
        busy = {s.handle["ref"]: s for s in self.slots if s.handle.get("ref") is not None}
        if not busy:
            time.sleep(timeout)
            return []
        refs = list(busy)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        events = []
        for ref in ready:
            s = busy[ref]
            s.handle["ref"] = None
            try:
                kind, data = ray.get(ref)
                events.append((s, kind, data))
            except Exception as e:  # noqa: BLE001 - actor died: the attempt failed, the slot gets a new actor
                events.append((s, "died", f"Ray actor died: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))
                self.kill(s)
        return events

    def kill(self, s: Slot) -> None:
        try:
            self.ray.kill(s.handle["actor"], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._start(s)

    def close(self) -> None:
        for s in self.slots:
            try:
                self.ray.kill(s.handle["actor"], no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        if self.owns:
            self.ray.shutdown()
