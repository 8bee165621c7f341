"""``simgen search`` and ``simgen search-render``."""
from __future__ import annotations

import json
import sys


def add_subcommand(sub) -> None:
    p = sub.add_parser("search", help="find rare failures: sensor-free episodes sampled where the scenario fails")
    p.add_argument("scenario", help="scenario file (or a library scenario's name)")
    p.add_argument("--objective", default="collision", help="collision (default), min_ttc, min_gap, or a plugin's")
    p.add_argument("--threshold", type=float, help="failure level: min_ttc seconds (default 1.0), min_gap metres (0.5)")
    p.add_argument("--budget", type=int, required=True, help="episodes to spend")
    p.add_argument("--method", default="ce-is", help="uniform, falsify or ce-is (default)")
    p.add_argument("--out", required=True, help="search folder (resumed if it holds the same search)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100, help="episodes per generation (default 100)")
    p.add_argument("--frames", type=int, help="frames per episode (default: the scenario's duration)")
    p.add_argument("--params", help="comma-separated parameters to search (default: every distribution)")
    p.add_argument("--until-rel-error", type=float, help="stop once P(failure)'s 95 %% interval is within this "
                   "relative half-width (e.g. 0.2)")
    p.add_argument("--until-failures", type=int, metavar="N", help="stop after the generation in which the N-th "
                   "failure was found")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--executor", default="local", help="local (default) or ray")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--render", type=int, default=0, metavar="K", help="then render K chosen samples with the rig")
    p.add_argument("--render-strategy", default="critical", help="critical (default) or boundary")
    p.add_argument("--rig", help="rig for --render (default: assets/rigs/default.yaml)")
    p.add_argument("--overwrite", action="store_true", help="start again in a folder holding another search")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("search-render", help="render chosen samples of a finished search as ordinary datasets")
    p.add_argument("search_dir")
    p.add_argument("-k", "--render", type=int, required=True, metavar="K")
    p.add_argument("--strategy", dest="render_strategy", default="critical", help="critical (default) or boundary")
    p.add_argument("--rig")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("search-bench", help="rare-event scenarios: episodes to find and to estimate P(failure), "
                       "against uniform sampling")
    p.add_argument("--json", action="store_true")
    p.add_argument("--scenarios", help="comma-separated rare scenarios (default: all with a stored truth)")
    p.add_argument("--repeats", type=int, default=3, help="independent seeds per method (default 3)")
    p.add_argument("--methods", default="uniform,falsify,ce-is",
                   help="comma-separated methods to measure (default all three; e.g. ce-is alone with more --repeats "
                   "to measure its coverage)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="keep the search folders here (default: a temporary folder)")
    p.add_argument("--budget", type=int, default=4000, help="episode cap for ce-is (default 4000)")
    p.add_argument("--falsify-cap", type=int, default=300,
                   help="episode cap for falsify, which is measured by its first failure only (default 300)")
    p.add_argument("--uniform-cap", type=int, default=3000, help="episode cap for uniform's first failure")
    p.add_argument("--make-truth", metavar="NAME", help="run and store the large uniform run of rare scenario NAME")
    p.add_argument("--episodes", type=int, default=50_000, help="episodes of --make-truth (default 50000)")
    p.add_argument("--seed", type=int, default=20261201, help="seed of --make-truth")
    p.set_defaults(func=cmd_bench)


def cmd_search(a) -> int:
    from simgen.cli import resolve_scenario
    from simgen.search.run import SearchConfig, render, search

    cfg = SearchConfig(scenario=resolve_scenario(a.scenario), objective=a.objective, method=a.method,
                       budget=a.budget, seed=a.seed, threshold=a.threshold, batch_size=a.batch_size, frames=a.frames,
                       overrides=tuple(a.overrides), params=tuple(p for p in (a.params or "").split(",") if p),
                       until_rel_error=a.until_rel_error, until_failures=a.until_failures)
    s = search(cfg, out=a.out, workers=a.workers, executor=a.executor, overwrite=a.overwrite, progress=not a.no_progress)
    line = f"{s['episodes']} episodes, {s['failures']} failures"
    if s["first_failure_episode"]:
        line += f" (first at episode {s['first_failure_episode']})"
    if s.get("p_failure") is not None:
        lo, hi = s["ci95"]
        line += f"; P(failure) = {s['p_failure']:.4g}, 95 % interval [{lo:.4g}, {hi:.4g}]"
    print(line)
    print(f"samples: {a.out}/samples.csv  picture: {a.out}/space.png  summary: {a.out}/summary.json")
    if a.render:
        done = render(a.out, a.render, strategy=a.render_strategy, rig=a.rig, overwrite=a.overwrite,
                      progress=not a.no_progress)
        print(f"rendered {len(done)} episodes under {a.out}/render/")
    return 0


def cmd_render(a) -> int:
    from simgen.search.run import render

    done = render(a.search_dir, a.render, strategy=a.render_strategy, rig=a.rig, overwrite=a.overwrite,
                  progress=not a.no_progress)
    print(f"rendered {len(done)} episodes under {a.search_dir}/render/")
    return 0


def cmd_bench(a) -> int:
    from simgen.search.bench import bench, make_truth

    if a.make_truth:
        res = make_truth(a.make_truth, episodes=a.episodes, seed=a.seed, workers=a.workers, out=a.out)
        print(f"{a.make_truth}: P(failure) = {res['p_failure']:.4g} ({res['failures']}/{res['episodes']}), "
              f"95 % interval {res['ci95']}")
    else:
        res = bench(scenarios=[s for s in (a.scenarios or "").split(",") if s] or None, repeats=a.repeats,
                    workers=a.workers, out=a.out, budget=a.budget, uniform_cap=a.uniform_cap,
                    falsify_cap=a.falsify_cap, methods=tuple(m for m in a.methods.split(",") if m))
    if a.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
