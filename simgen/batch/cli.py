"""``simgen batch PLAN.yaml --out DIR`` and ``simgen batch-bench``: subcommands added through
``simgen.cli.PLUGIN_MODULES`` (each plugin module has :func:`add_subcommand`).

Exit codes follow ``simgen.cli``: 0 every episode finished, 1 some failed (listed in the summary), 2 bad input
(one line), 130 interrupted (finished episodes are kept; re-run the same command to resume).
"""
from __future__ import annotations

import sys


def add_subcommand(sub) -> None:
    p = sub.add_parser("batch", help="run a plan of scenarios x episodes in parallel, resumably (docs/batch.md)",
                       description="Run every job of PLAN into DIR.  Re-running the same command resumes: finished "
                                   "episodes (checksums verified) are skipped.")
    p.add_argument("plan", help="plan YAML file (docs/batch.md)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (created; resumed when it holds this plan's batch)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: worker processes on this machine (default); ray: Ray actors on a local instance or "
                        "--ray-address")
    p.add_argument("--workers", type=int, help="parallel builtin-backend workers (default: the CPU count; "
                                               "with --ray-address: the cluster's CPUs)")
    p.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local instance)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: clear simgen's outputs in DIR (also needed for a DIR made from another plan)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads-per-worker", type=int, dest="threads",
                   help="thread limit per local worker (OMP_NUM_THREADS, NUMBA_NUM_THREADS ...; default: "
                        "cores // workers; 0: no limit)")
    p.add_argument("--pin", action="store_true", help="pin each local worker to its share of the cores")
    p.add_argument("--allow-plugins", action="store_true",
                   help="let the plan's scenarios run their plugins (Python code: only for files you trust; or set "
                        "SIMGEN_ALLOW_PLUGINS=1)")
    p.add_argument("--carla-host", default="127.0.0.1", help="host of the CARLA servers (carla-backend jobs)")
    p.add_argument("--carla-port", type=int, default=2000,
                   help="RPC port of the first CARLA server; carla worker k uses PORT + 10*k (default 2000)")
    p.add_argument("--carla-workers", type=int, default=1,
                   help="parallel carla-backend workers, one CARLA server each (default 1)")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("batch-bench", help="benchmark the batch executors (1 vs 2 workers, local vs Ray)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--executors", default="local,ray", help="comma-separated executors (default local,ray)")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest is kept (default 1)")
    p.add_argument("--threads", default="auto",
                   help="comma-separated per-worker thread settings for the local executor: auto, N, pinN "
                        "(e.g. auto,1,pin1); default auto")
    p.set_defaults(func=cmd_bench)


def cmd_batch(a) -> int:
    from simgen.batch.runner import run_batch

    res = run_batch(a.plan, a.out, executor=a.executor, workers=a.workers, ray_address=a.ray_address,
                    overwrite=a.overwrite, progress=not a.no_progress, carla_host=a.carla_host,
                    carla_port=a.carla_port, carla_workers=a.carla_workers, threads=a.threads, pin=a.pin,
                    allow_plugins=a.allow_plugins or None)
    print(res.summary_text(), file=sys.stdout)
    return res.exit_code


def cmd_bench(a) -> int:
    from simgen.batch.bench import main

    return main(episodes=a.episodes, frames=a.frames, workers=[int(x) for x in a.workers.split(",") if x],
                executors=[x for x in a.executors.split(",") if x], threads=[x for x in a.threads.split(",") if x],
                repeat=a.repeat, as_json=a.json)


def main(argv: list[str] | None = None) -> int:
    """Run ``simgen`` with this module registered as a plugin (for tests and before simgen.cli lists it)."""
    import simgen.cli as cli

    saved = cli.PLUGIN_MODULES
    cli.PLUGIN_MODULES = [m for m in saved if m != __name__] + [__name__]
    try:
        return cli.main(argv)
    finally:
        cli.PLUGIN_MODULES = saved
