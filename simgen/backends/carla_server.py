"""CARLA server management: attach to a running server or launch one, health checks, crash detection, retries.

A :class:`CarlaServer` is either *attached* (someone else runs the server at host:port) or *managed* (launched
here from ``CARLA_ROOT`` or an explicit path as ``CarlaUE4.sh -RenderOffScreen -carla-rpc-port=P
-carla-streaming-port=P+1 -quality-level=Q``).  :meth:`CarlaServer.ensure` returns a healthy endpoint: for a
managed server whose process died or stopped answering it starts a fresh one; for an attached server it can only
report :class:`CarlaServerLost`.

Port plan for several servers on one host (one per GPU): server *i* uses RPC port ``base + 10 i``, streaming port
RPC + 1, and its Traffic Manager listens on RPC + 6000 (:func:`port_plan`); see docs/carla.md.

:func:`retrying` re-runs a function when the failure is a lost server (never on user errors or Ctrl-C); the
CARLA session uses it to open an episode on a fresh server.  A crash *during* an episode cannot be resumed (the
frames already written came from the dead server): it raises :class:`CarlaServerLost`, and re-running the whole
episode is the runner's job.
"""
from __future__ import annotations

import atexit
import logging
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from simgen.errors import InputError, RunError

log = logging.getLogger(__name__)
T = TypeVar("T")

QUALITY_LEVELS = ("Low", "Epic")


class CarlaServerLost(RunError):
    """The CARLA server crashed, hung or cannot be reached (the episode cannot go on with it)."""


def port_plan(index: int, base_port: int = 2000, spacing: int = 10) -> dict[str, int]:
    """Ports of the ``index``-th server on one host: RPC, streaming (RPC + 1) and Traffic Manager (RPC + 6000)."""
    rpc = base_port + spacing * index
    return {"rpc": rpc, "streaming": rpc + 1, "tm": rpc + 6000}


def is_server_failure(exc: BaseException) -> bool:
    """Whether an exception from the CARLA client means the server is gone (crashed, hung, unreachable).

    The client raises RuntimeError for RPC time-outs and broken connections ("time-out of 10000ms while waiting for
    the simulator", "rpc::rpc_error ...", "failed to connect").
    """
    if isinstance(exc, CarlaServerLost):
        return True
    if isinstance(exc, RuntimeError) and not isinstance(exc, RunError):
        msg = str(exc).lower()
        return any(k in msg for k in ("time-out", "timeout", "timed out", "rpc", "connect", "connection", "closed"))
    return isinstance(exc, (ConnectionError, TimeoutError))


def retrying(fn: Callable[[int], T], attempts: int, *, on_failure: Callable[[int, BaseException], None] | None = None,
             retry_if: Callable[[BaseException], bool] = is_server_failure) -> T:
    """Call ``fn(attempt)`` (attempt = 0, 1, ...) until it returns, at most ``attempts`` times.

    Only failures for which ``retry_if`` is true are retried (by default: lost servers); anything else, including
    :class:`~simgen.errors.InputError` and KeyboardInterrupt, propagates at once.  ``on_failure(attempt, exc)`` runs
    before the next attempt (e.g. to restart the server).  After the last attempt the last failure propagates.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(attempts):
        try:
            return fn(attempt)
        except Exception as exc:  # noqa: BLE001 - classified below; BaseException (Ctrl-C) is never caught
            if not retry_if(exc) or attempt == attempts - 1:
                raise
            log.warning("CARLA attempt %d/%d failed (%s); retrying", attempt + 1, attempts, exc)
            if on_failure is not None:
                on_failure(attempt, exc)
    raise AssertionError("unreachable")


def find_carla_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The CARLA installation to launch: ``explicit`` or $CARLA_ROOT; None if neither is set.  InputError if the
    folder has no CarlaUE4.sh."""
    root = explicit if explicit is not None else os.environ.get("CARLA_ROOT")
    if not root:
        return None
    p = Path(root)
    if not (p / "CarlaUE4.sh").is_file():
        raise InputError(f"no CarlaUE4.sh in {p}; set CARLA_ROOT (or carla_root) to a CARLA 0.9.15/0.9.16 package folder",
                         key="carla_root")
    return p


def server_command(root: Path, rpc_port: int, *, streaming_port: int | None = None, quality: str = "Epic",
                   gpu: int | None = None, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The command line that launches an off-screen CARLA server."""
    if quality not in QUALITY_LEVELS:
        raise InputError(f"got {quality!r}; allowed: {', '.join(QUALITY_LEVELS)}", key="quality")
    cmd = [str(root / "CarlaUE4.sh"), "-RenderOffScreen", "-nosound", f"-carla-rpc-port={rpc_port}",
           f"-carla-streaming-port={streaming_port if streaming_port is not None else rpc_port + 1}",
           f"-quality-level={quality}"]
    if gpu is not None:
        cmd.append(f"-graphicsadapter={gpu}")
    return cmd + list(extra_args)


def server_version(carla, host: str, port: int, timeout_s: float) -> str:
    """The server's version string (a health check: raises RuntimeError if it does not answer in time)."""
    client = carla.Client(host, port)
    client.set_timeout(timeout_s)
    return client.get_server_version()


@dataclass
class CarlaServer:
    """One CARLA server endpoint, attached or managed.  ``carla`` is the client module (or a test double)."""

    carla: object
    host: str = "127.0.0.1"
    port: int = 2000
    root: Path | None = None  # launch from here when set (managed); attach otherwise
    quality: str = "Epic"
    gpu: int | None = None
    start_timeout_s: float = 120.0
    health_timeout_s: float = 10.0
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def managed(self) -> bool:
        return self.root is not None

    def healthy(self) -> bool:
        """A process launched here is alive (if any) and the server answers get_server_version in time."""
        if self.process is not None and self.process.poll() is not None:
            return False
        try:
            server_version(self.carla, self.host, self.port, self.health_timeout_s)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            log.info("CARLA health check on %s:%d failed: %s", self.host, self.port, exc)
            return False

    def ensure(self) -> tuple[str, int]:
        """A healthy (host, port): launches (or relaunches) a managed server if needed."""
        if self.healthy():
            return self.host, self.port
        if not self.managed:
            raise CarlaServerLost(f"no CARLA server answers at {self.host}:{self.port} (within {self.health_timeout_s:.0f} s); "
                                  "start one (see docs/carla.md) or set CARLA_ROOT to let simgen launch it")
        self.restart()
        return self.host, self.port

    def start(self) -> None:
        assert self.root is not None
        cmd = server_command(self.root, self.port, quality=self.quality, gpu=self.gpu, extra_args=self.extra_args)
        log.info("launching CARLA: %s", shlex.join(cmd))
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)  # its own session survives us otherwise
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CarlaServerLost(f"CARLA server exited with code {self.process.returncode} while starting")
            try:
                v = server_version(self.carla, self.host, self.port, 5.0)
                log.info("CARLA %s up on port %d", v, self.port)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(1.0)
        self.stop()
        raise CarlaServerLost(f"CARLA server did not answer on port {self.port} within {self.start_timeout_s:.0f} s")

    def stop(self) -> None:
        """Terminate a managed server (its whole process group); no-op when attached."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)

    def restart(self) -> None:
        log.warning("restarting CARLA server on port %d", self.port)
        self.stop()
        self.start()
