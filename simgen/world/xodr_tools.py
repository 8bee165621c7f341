"""``simgen maps show`` and ``simgen maps bench``: what an imported OpenDRIVE map contains, and what it costs.

``show`` prints roads (with their lane sections and lane ids/types), junctions, signals and the simgen ids they
became, and draws the network to a PNG (matplotlib) with lane, junction and signal ids, so placements can be
written without reading the XML.  ``bench`` times the import (parse + build, without the in-memory cache) and
the simulator's per-tick cost on the map with background traffic.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from simgen.classes import ROADLINE, ROADS, SIDEWALKS
from simgen.errors import InputError


def _load(path: str):
    from simgen.world.roads import get_map, is_map_file

    if not is_map_file(path):
        raise InputError("allowed: a path to an OpenDRIVE .xodr file", file=path)
    return get_map(path, file=path)


def describe(m) -> list[str]:
    """Text lines: roads, junctions, signals, traffic lights and crosswalks of an imported map."""
    roads = m.info["roads"]
    out = [f"{m.name}: {m.description}"]
    by_road: dict[int, list] = {}
    for lane in m.lanes.values():
        if lane.odr is not None:
            by_road.setdefault(lane.odr[0], []).append(lane)
    out.append(f"roads ({len(roads)}):")
    for rid in sorted(roads):
        rd = roads[rid]
        j = f" junction {rd.junction}" if rd.junction >= 0 else ""
        out.append(f"  road {rid}: length {rd.length:.1f} m{j}")
        for k, (s0, s1, lanes) in enumerate(rd.sections):
            desc = ", ".join(f"{l}:{t}" for l, t in sorted(lanes) if l != 0)
            out.append(f"    section {k} (s {s0:.1f}-{s1:.1f}): {desc}")
    for lid in sorted(m.lanes, key=lambda i: m.lanes[i].odr or (0, 0, 0)):
        ln = m.lanes[lid]
        succ = ", ".join(f"{t}->{n}" for t, n in ln.successors.items()) or "-"
        nb = " ".join(f"{side}={getattr(ln, side)}" for side in ("left", "right") if getattr(ln, side))
        stop = f" stop@{ln.stop_s:.1f}m({ln.signal})" if ln.stop_s is not None else ""
        out.append(f"  lane {lid}: {ln.kind} {ln.lane_type} {ln.centre.length:.1f} m, width {ln.width_m:.2f}"
                   f"{(' ' + nb) if nb else ''}{stop}; next {succ}")
    js = sorted({rd.junction for rd in roads.values() if rd.junction >= 0})
    out.append(f"junctions ({len(js)}):")
    for j in js:
        conn = sorted(rid for rid, rd in roads.items() if rd.junction == j)
        out.append(f"  junction {j}: connecting roads {', '.join(map(str, conn))}")
    sig = m.info["signals"]
    out.append(f"signals ({len(sig)}):")
    for s in sig:
        ctl = f" controller {s['controller']}" if s["controller"] else ""
        out.append(f"  signal {s['id']} type {s['type']} on road {s['road']} s={s['s']:.1f} t={s['t']:.1f} "
                   f"orientation {s['orientation']}{ctl} {s['name']}")
    out.append(f"traffic lights ({len(m.traffic_lights)}):")
    for tl in m.traffic_lights:
        out.append(f"  {tl.id}: group {tl.group} (phase {tl.slot + 1} of {tl.n_phases}) at "
                   f"({tl.position[0]:.1f}, {tl.position[1]:.1f}) stops {', '.join(tl.lanes)}")
    out.append(f"crosswalks ({len(m.crosswalks)}): {', '.join(c.id for c in m.crosswalks) or '-'}")
    out.append(f"sidewalks ({len(m.sidewalks)}): {', '.join(w.id for w in m.sidewalks) or '-'}")
    return out


def draw(m, out: Path) -> None:
    """PNG of the map: road, sidewalk and paint triangles, lane centre lines with ids, junctions, lights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    g = m.ground
    tri = g.vertices[g.triangles][:, :, :2]
    lo, hi = m.bounds()
    span = float(max(hi - lo))
    size = float(np.clip(span / 25.0, 8.0, 40.0))
    fig, ax = plt.subplots(figsize=(size, size * (hi[1] - lo[1] + 1) / (hi[0] - lo[0] + 1)))
    colours = {ROADS: (0.35, 0.35, 0.37), SIDEWALKS: (0.75, 0.72, 0.68), ROADLINE: (1.0, 1.0, 1.0)}
    for sem, c in colours.items():
        sel = g.semantic == sem
        if sel.any():
            ax.add_collection(PolyCollection(tri[sel], facecolors=[c], edgecolors="none", zorder=1 + (sem == ROADLINE)))
    fs = float(np.clip(6.0 * 400.0 / max(span, 1.0), 3.0, 8.0))
    for lid, ln in m.lanes.items():
        p = ln.centre.points
        col = "tab:blue" if ln.kind == "driving" else "tab:orange" if ln.kind == "connector" else "tab:green"
        ax.plot(p[:, 0], p[:, 1], lw=0.5, color=col, zorder=3)
        x, y, yaw = ln.centre.pose_at(ln.centre.length / 2)
        ax.annotate("", xy=(x + np.cos(yaw), y + np.sin(yaw)), xytext=(x, y),
                    arrowprops=dict(arrowstyle="->", color=col, lw=0.6), zorder=3)
        if ln.kind != "connector":
            ax.text(x, y, lid, fontsize=fs, color="navy", ha="center", va="bottom", zorder=4,
                    rotation=float(np.rad2deg(yaw) + 180 if abs(yaw) > np.pi / 2 else np.rad2deg(yaw)))
    for j, outline in enumerate(m.junctions):
        c = outline.mean(0)
        ax.fill(outline[:, 0], outline[:, 1], facecolor=(1.0, 0.6, 0.0, 0.12), edgecolor="orange", lw=0.5, zorder=2)
    js = sorted({rd.junction for rd in m.info["roads"].values() if rd.junction >= 0})
    for j, outline in zip(js, m.junctions):
        c = outline.mean(0)
        ax.text(c[0], c[1], f"junction {j}", fontsize=fs * 1.3, color="darkorange", ha="center", zorder=5)
    for tl in m.traffic_lights:
        ax.plot(tl.position[0], tl.position[1], "o", ms=3, color="red", zorder=5)
        ax.text(tl.position[0], tl.position[1], f"{tl.id} ({tl.group})", fontsize=fs * 0.8, color="darkred", zorder=5)
    for cw in m.crosswalks:
        ax.text(*np.asarray(cw.polygon).mean(0), cw.id, fontsize=fs * 0.7, color="purple", zorder=5)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, east)")
    ax.set_ylabel("y (m, north)")
    ax.set_title(f"{Path(m.name).name}: blue driving lanes (id r<road>_l<lane>_s<section>), orange junction connectors")
    fig.tight_layout()
    tmp = out.with_name(out.name + ".partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def show(path: str, out: str | None, overwrite: bool) -> list[str]:
    m = _load(path)
    lines = describe(m)
    if out:
        o = Path(out)
        if o.exists() and not overwrite:
            raise InputError("exists; pass --overwrite to replace it", file=str(o))
        draw(m, o)
        lines.append(f"wrote {o}")
    return lines


def bench(path: str, ticks: int = 100, vehicles: int = 20) -> dict:
    """Import time (cold: no cache) and simulator per-tick cost with ``vehicles`` background vehicles."""
    from simgen.sim.world import World
    from simgen.spec.schema import Ctx, from_dict
    from simgen.spec.scenario import ScenarioSpec
    from simgen.world import xodr

    _load(path)  # errors first, and warm the imports
    import simgen.sensors.render  # noqa: F401  (open3d: imported once per process, not part of a map's cost)

    xodr._CACHE.clear()
    t0 = time.perf_counter()
    m = xodr.load_xodr(path)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.ground_height(np.zeros((1, 2)))  # the ray-casting scene for heights (built once per map)
    scene_s = time.perf_counter() - t0
    lane = max((ln for ln in m.lanes.values() if ln.kind == "driving"), key=lambda ln: ln.centre.length)
    spec = from_dict(ScenarioSpec, {
        "name": "map_bench", "map": str(Path(path).resolve()), "duration_s": ticks / 20.0,
        "ego": {"place": {"lane": lane.id, "s_m": min(5.0, lane.centre.length / 2)}, "speed_mps": 8.0,
                "behaviour": {"type": "lane_follow", "speed_mps": 8.0}},
        "traffic": {"vehicles": vehicles, "pedestrians": 10, "radius_m": 300.0}}, Ctx(path))
    t0 = time.perf_counter()
    w = World(spec, rng=np.random.default_rng(0), source=path)
    world_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(ticks):
        w.step()
    tick_ms = (time.perf_counter() - t0) / ticks * 1e3
    return {"map": path, "load_s": round(load_s, 3), "height_scene_s": round(scene_s, 3),
            "world_setup_s": round(world_s, 3), "actors": len(w.actors), "ticks": ticks,
            "tick_ms": round(tick_ms, 3), "lanes": len(m.lanes), "triangles": int(m.ground.n_triangles)}
