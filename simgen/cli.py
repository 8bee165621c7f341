"""Command line: ``simgen run | validate | view | bench | maps``.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 runtime failure, 130 interrupted.
Set SIMGEN_DEBUG=1 to get tracebacks for runtime failures.
"""
from __future__ import annotations

import argparse
import os
import sys

from simgen.errors import InputError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _p_run(sub):
    p = sub.add_parser("run", help="run a scenario and write a labelled dataset")
    p.add_argument("scenario", help="scenario YAML file (or the name of one in the scenario library)")
    p.add_argument("--rig", help="rig YAML file (default: assets/rigs/default.yaml)")
    p.add_argument("--out", default="out", help="output directory (default: ./out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--frames", type=int, help="frames per episode (default: the scenario's duration_s x tick_hz)")
    p.add_argument("--backend", default="builtin", help="builtin (default) or carla")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario value by dotted path, e.g. weather.fog_density=40 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output directory")
    p.add_argument("--no-progress", action="store_true")
    _plugin_arg(p)
    _carla_args(p)


def _plugin_arg(p) -> None:
    p.add_argument("--allow-plugins", action="store_true",
                   help="let scenario files run their plugins (Python code: only for files you trust; "
                        "or set SIMGEN_ALLOW_PLUGINS=1)")


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise InputError(f"got {seed}; allowed: 0 or more", key="--seed")


def _carla_args(p) -> None:
    g = p.add_argument_group("carla backend")
    g.add_argument("--carla-host", default="127.0.0.1")
    g.add_argument("--carla-port", type=int, default=2000, help="RPC port (streaming port = port + 1)")
    g.add_argument("--carla-tm-port", type=int, help="Traffic Manager port (default: derived from --carla-port)")
    g.add_argument("--carla-drive", default="auto", choices=["auto", "carla", "simgen"],
                   help="who moves the actors: CARLA's controllers, simgen's simulator (CARLA renders), or auto")
    g.add_argument("--carla-root", help="launch a CARLA server from this installation if none answers (or $CARLA_ROOT)")


def _carla_options(a) -> dict:
    if a.backend != "carla":
        return {}
    return {"host": a.carla_host, "port": a.carla_port, "tm_port": a.carla_tm_port, "drive": a.carla_drive,
            "carla_root": a.carla_root}


def resolve_scenario(arg: str) -> str:
    """A path, or the name of a library scenario (scenarios/NAME.yaml)."""
    from pathlib import Path

    from simgen.paths import SCENARIOS

    if Path(arg).exists() or arg.endswith((".yaml", ".yml")) or "/" in arg:
        return arg
    cand = SCENARIOS / f"{arg}.yaml"
    return str(cand) if cand.exists() else arg


def cmd_run(a) -> int:
    from simgen.runner import run

    _check_seed(a.seed)
    opts = _carla_options(a)
    s = run(resolve_scenario(a.scenario), rig=a.rig, out=a.out, seed=a.seed, episodes=a.episodes, frames=a.frames,
            backend=a.backend, overrides=a.overrides, overwrite=a.overwrite, progress=not a.no_progress,
            backend_options=opts, allow_plugins=a.allow_plugins or None)
    n = len(s["episodes"])
    frames = sum(e["frames"] for e in s["episodes"])
    print(f"wrote {n} episode(s), {frames} frames to {a.out}/episodes  (collisions: {s['collisions']}, "
          f"min TTC: {s['min_ttc_s'] if s['min_ttc_s'] is not None else 'none'})")
    return 0


def cmd_replay(a) -> int:
    from simgen.runner import replay

    opts = _carla_options(a)
    s = replay(a.episode, out=a.out, rig=a.rig, overrides=a.overrides, backend=a.backend, overwrite=a.overwrite,
               progress=not a.no_progress, backend_options=opts, allow_plugins=a.allow_plugins or None)
    print(f"replayed {a.episode} ({s['episodes'][0]['frames']} frames) into {a.out}/episodes")
    return 0


def cmd_validate(a) -> int:
    from simgen.runner import plan_episodes
    from simgen.spec.rig import load_rig
    from simgen.spec.scenario import load_scenario_source
    from simgen.spec.schema import load_yaml

    _check_seed(a.seed)
    if a.sample < 0:
        raise InputError(f"got {a.sample}; allowed: 0 or more", key="--sample")
    failed = 0
    for path in a.files:  # every file is checked and reported; exit 2 if any failed
        try:
            if str(path).lower().endswith(".xodr"):
                from simgen.world.roads import get_map

                m = get_map(path, file=path)
                print(f"{path}: ok (OpenDRIVE map: {m.description.split(': ', 1)[-1]})")
                continue
            if str(path).lower().endswith(".xosc"):
                from simgen.spec.xosc_batch import is_distribution

                if is_distribution(path):  # an OpenSCENARIO ParameterValueDistribution: a batch plan
                    from simgen.batch.plan import load_plan

                    plan = load_plan(path, allow_plugins=a.allow_plugins or None)
                    print(f"{path}: ok (OpenSCENARIO parameter distribution: {len(plan.jobs)} runs of "
                          f"{os.path.basename(plan.jobs[0].scenario)}; run them with simgen batch {path} --out DIR)")
                    continue
            data = {} if str(path).lower().endswith(".xosc") else load_yaml(path)  # .xosc: OpenSCENARIO
            if "sensors" in data:
                rig = load_rig(path)
                print(f"{path}: ok (rig '{rig.name}', {len(rig.sensors)} sensors)")
                continue
            src = load_scenario_source(path, a.overrides, allow_plugins=a.allow_plugins or None)
            plans = plan_episodes(src, seed=a.seed, episodes=max(1, a.sample))
        except InputError as e:
            print(f"simgen: error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: ok (scenario '{src.name}', map {plans[0].spec.map}, {plans[0].spec.n_frames} frames)")
        if a.sample:
            for p in plans:
                vals = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.params.items())
                print(f"  episode {p.index}: {vals or '(no parameters)'}")
    return 2 if failed else 0


def cmd_view(a) -> int:
    if a.rerun:
        from simgen.rerun_view import write_recording

        out = write_recording(a.episode, out=a.out, camera=a.camera, lidar=a.lidar, max_frames=a.max_frames,
                              overwrite=a.overwrite)
        print(f"wrote {out}")
        return 0
    from simgen.view import render_episode

    outs = render_episode(a.episode, out=a.out, camera=a.camera, lidar=a.lidar, max_frames=a.max_frames,
                          overwrite=a.overwrite)
    for o in outs:
        print(f"wrote {o}")
    return 0


def cmd_bench(a) -> int:
    from simgen.bench import main as bench_main

    return bench_main(frames=a.frames, as_json=a.json, memory_frames=a.memory_frames)


def cmd_maps(a) -> int:
    from simgen.world.roads import MAPS, get_map

    if a.action == "list":
        for name in MAPS:
            print(f"{name:14s} {get_map(name).description}")
        return 0
    if a.action in ("show", "bench"):
        from simgen.world import xodr_tools

        if not a.name:
            raise InputError("give the map file: simgen maps " + a.action + " FILE.xodr", key="FILE")
        if a.action == "show":
            for line in xodr_tools.show(a.name, a.out, a.overwrite):
                print(line)
            return 0
        import json

        r = xodr_tools.bench(a.name, ticks=a.ticks)
        print(f"{a.name}: load {r['load_s']:.2f} s (+{r['height_scene_s']:.2f} s height scene, world setup "
              f"{r['world_setup_s']:.2f} s), {r['lanes']} lanes, {r['triangles']} ground triangles; simulator "
              f"{r['tick_ms']:.2f} ms/tick with {r['actors']} actors over {r['ticks']} ticks")
        if a.json:
            print(json.dumps(r))
        return 0
    if a.action == "export":
        from pathlib import Path

        from simgen.world.opendrive import export_opendrive

        if not a.name or a.name not in MAPS:
            raise InputError(f"got {a.name!r}; allowed: {', '.join(MAPS)}", key="NAME")
        if not a.out:
            raise InputError("--out FILE.xodr is required", key="--out")
        out = Path(a.out)
        if out.exists() and not a.overwrite:
            raise InputError("exists; pass --overwrite to replace it", file=str(out))
        tmp = out.with_name(out.name + ".partial")
        export_opendrive(a.name, tmp)
        tmp.replace(out)
        print(f"wrote {out}")
        return 0
    raise InputError(f"unknown maps action {a.action!r}; allowed: list, export, show, bench")


def build_parser() -> argparse.ArgumentParser:
    import simgen

    ap = _Parser(prog="simgen", description="Labelled synthetic camera/LiDAR data for autonomous-driving edge cases.")
    ap.add_argument("--version", action="version", version=f"simgen {simgen.__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    _p_run(sub)
    p = sub.add_parser("replay", help="re-render an episode's recorded trajectories (same or other rig/weather/backend)")
    p.add_argument("episode")
    p.add_argument("--out", required=True)
    p.add_argument("--rig", help="another rig (default: the episode's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change the stored scenario, e.g. weather.fog_density=60 (not who is in it)")
    p.add_argument("--backend", default="builtin")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    _plugin_arg(p)
    _carla_args(p)
    p = sub.add_parser("validate", help="check scenario, rig or OpenDRIVE map files without running (each file is reported)")
    p.add_argument("files", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="also print N episodes' sampled parameters")
    p.add_argument("--seed", type=int, default=0)
    _plugin_arg(p)
    p = sub.add_parser("view", help="preview an episode: MP4 and PNG contact sheet, or a Rerun recording")
    p.add_argument("episode")
    p.add_argument("--out", help="output MP4 path (default: next to the episode); with --rerun the .rrd path")
    p.add_argument("--camera")
    p.add_argument("--lidar")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--rerun", action="store_true",
                   help="write a Rerun recording (.rrd) instead (needs the extra: pip install 'simgen[rerun]')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MP4/PNG (or .rrd with --rerun)")
    p = sub.add_parser("bench", help="benchmark the pipeline; prints JSON as the last line with --json")
    p.add_argument("--json", action="store_true")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--memory-frames", type=int, default=0, help="also run this many frames and report memory growth")
    p = sub.add_parser("maps", help="road maps: list the builtin ones, export one to OpenDRIVE 1.7, show or bench "
                                     "an OpenDRIVE file")
    p.add_argument("action", choices=["list", "export", "show", "bench"])
    p.add_argument("name", nargs="?", help="map name (export) or .xodr file (show, bench)")
    p.add_argument("--out", help="output .xodr file (export) or PNG drawing (show)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--ticks", type=int, default=100, help="simulator ticks to time (bench)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON (bench)")
    import importlib

    for mod in PLUGIN_MODULES:
        importlib.import_module(mod).add_subcommand(sub)
    return ap


COMMANDS = {"run": cmd_run, "replay": cmd_replay, "validate": cmd_validate, "view": cmd_view, "bench": cmd_bench, "maps": cmd_maps}

# Subcommands living in their own modules: each module has ``add_subcommand(subparsers)``, which adds its parser
# and sets ``func`` (a function of the parsed args returning an exit code).  Imported lazily at parse time only.
PLUGIN_MODULES: list[str] = ["annotators.export.cli", "simgen.report", "simgen.scenario_library", "simgen.batch.cli",
                              "simgen.carla_check", "simgen.loader_bench",
                              "simgen.search.cli", "simgen.sim.bench"]


# What Ctrl-C leaves behind, per command (a subcommand may set its own with ``set_defaults(interrupted=...)``).
INTERRUPTED = {
    "run": "simgen: interrupted; finished episodes are kept, the unfinished one was removed",
    "replay": "simgen: interrupted; the unfinished episode was removed",
    "batch": "simgen: interrupted; finished episodes are kept; re-run the same command to resume",
    "export": "simgen: export interrupted; the export is unfinished (simgen_export.json is written only at the end)",
    "view": "simgen: interrupted; no video was written",
}


def one_line(text: str) -> str:
    """An error message as one line: line breaks folded, other control characters (a NUL byte...) escaped."""
    text = " ".join(str(text).splitlines())
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    from simgen.errors import RunError

    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        fn = getattr(a, "func", None) or COMMANDS[a.cmd]
        return fn(a) or 0
    except InputError as e:
        print(f"simgen: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        msg = getattr(a, "interrupted", None) or INTERRUPTED.get(a.cmd, "simgen: interrupted")
        print(msg, file=sys.stderr)
        return 130
    except RunError as e:
        print(f"simgen: error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - last-resort handler for the CLI
        if os.environ.get("SIMGEN_DEBUG"):
            raise
        print(f"simgen: runtime error: {type(e).__name__}: {one_line(e)} (set SIMGEN_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
