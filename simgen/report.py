"""``simgen report``: a dataset card — the page a team reads before it trains on a run.

``simgen report RUN_DIR --out DIR [--format md|html]`` writes ``DIR/card.md`` (or ``card.html``) and PNG plots
next to it:

- **summary** — episodes, frames, duration, scenarios, maps, backends, sensors, versions, skipped files;
- **objects** — objects seen (at least once, and object-frames) by actor kind and by semantic class;
- **distance and visibility** — histograms of the ego-frame distance of seen objects
  (``labels/objects/center_ego`` where ``labels/objects/seen``) and of their visible fraction per camera
  (``labels/<camera>/visible_fraction``);
- **randomised values** — per-episode means of every value recorded under ``applied/`` that varies in the run
  (constant ones are listed), and of the scenario's sampled parameters (``parameters_json``);
- **weather × time of day** — 2-D histograms of fog density and precipitation against sun altitude, per frame
  from ``applied/`` (or per episode from the stored scenario, ``scenario_yaml``, for episodes without it), and
  per LiDAR the points per frame and the share of false returns (``sensors/<lidar>/false_return``);
- **criticality** — minimum time-to-collision per episode and the collision rate (``summary_json``);
- **samples** — a few camera frames with their semantic segmentation blended over them.

RUN_DIR is a run folder (``RUN_DIR/episodes/*.h5``) or any folder holding episode files in any sub-folder
(batch outputs).  Unfinished (``.partial``) and incomplete (``complete`` false) files are skipped and listed.
Episodes are read one at a time and only their per-frame tables (plus one frame per sample image), never all
frames.  Plots use matplotlib's Agg backend.
"""
from __future__ import annotations

import html
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

import simgen.io  # noqa: F401 - registers the LZ4 filter (hdf5plugin) the image and LiDAR arrays are stored with
from simgen.classes import CLASS_NAMES, PALETTE
from simgen.errors import InputError

__all__ = ["write_card", "find_episodes", "add_subcommand"]

SUN_BINS = np.linspace(-90.0, 90.0, 19)
LEVEL_BINS = np.linspace(0.0, 100.0, 11)
DIST_BINS = np.arange(0.0, 152.0, 5.0)
VIS_BINS = np.linspace(0.0, 1.0, 21)


def find_episodes(run_dir: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Complete episode files under ``run_dir`` (sorted) and the skipped ``(path, reason)`` pairs: unfinished
    (``.partial``), incomplete and non-simgen files.  A corrupt episode is bad input (EpisodeError, exit 2)."""
    from simgen.io.episode import find_episodes as scan

    root = Path(run_dir)
    if not root.exists():
        raise InputError("no such folder", file=str(root))
    return scan(root)


# --------------------------------------------------------------------------------------------------------------
# gathering (one episode at a time)


@dataclass
class _Stats:
    n_frames: int = 0
    duration_s: float = 0.0
    scenarios: Counter = field(default_factory=Counter)
    maps: Counter = field(default_factory=Counter)
    backends: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    sensors: dict = field(default_factory=dict)  # name -> type
    lidar_returns: dict = field(default_factory=lambda: defaultdict(lambda: np.zeros(4, np.int64)))  # name -> [real,
    # fog, precipitation, frames]
    objects_by_kind: Counter = field(default_factory=Counter)  # distinct objects seen at least once
    frames_by_kind: Counter = field(default_factory=Counter)  # object-frames seen
    frames_by_class: Counter = field(default_factory=Counter)
    dist: dict = field(default_factory=lambda: defaultdict(list))  # kind -> distances (m)
    vis: dict = field(default_factory=lambda: defaultdict(list))  # camera -> visible fractions
    applied_means: dict = field(default_factory=lambda: defaultdict(list))  # key -> per-episode means
    applied_missing: int = 0
    params: dict = field(default_factory=lambda: defaultdict(list))  # parameter -> per-episode values
    cover: dict = field(default_factory=lambda: defaultdict(list))  # "fog_density"/"precipitation" -> [(v, alt, w)]
    cover_source: Counter = field(default_factory=Counter)
    min_ttc: list = field(default_factory=list)  # per episode, None when never closing
    collision: list = field(default_factory=list)
    any_collision: list = field(default_factory=list)
    episodes: list = field(default_factory=list)  # (path, n_frames, cameras, label)


def _attr_json(f, key, default):
    v = f.attrs.get(key)
    if v is None:
        return default
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return default


def _scenario_weather(f, path: str = "") -> dict:
    """The stored scenario's weather: read with the same limits as a scenario file (an episode is input too)."""
    from simgen.spec.schema import parse_yaml

    text = f.attrs.get("scenario_yaml", "")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        return {}
    d = parse_yaml(text, file=f"{path or getattr(f, 'filename', '')}: attribute scenario_yaml")
    w = d.get("weather") or {}
    return w if isinstance(w, dict) else {}


def _gather_episode(path: Path, st: _Stats) -> None:
    from simgen.io.episode import Episode

    with Episode(path) as ep, ep.guard():
        f = ep.f
        n = ep.n_frames
        st.n_frames += n
        t = ep.read("frames/time_s")
        tick = float(f.attrs.get("tick_hz", 0) or 0)
        st.duration_s += (float(t[-1] - t[0]) + (1.0 / tick if tick else 0.0)) if len(t) else 0.0
        st.scenarios[str(f.attrs.get("scenario_name", "?"))] += 1
        st.maps[str(f.attrs.get("map", "?"))] += 1
        st.backends[str(f.attrs.get("backend", "?"))] += 1
        st.versions[str(f.attrs.get("simgen_version", "?"))] += 1
        cams = []
        for name in ep.sensors():
            g = f[f"sensors/{name}"]
            typ = ep.sensor_type(name)
            st.sensors[name] = typ
            if typ == "camera":
                cams.append(name)
            elif typ == "lidar" and "offsets" in g:
                acc = st.lidar_returns[name]
                acc[3] += n
                if "false_return" in g:
                    fr = g["false_return"]
                    for a in range(0, fr.shape[0], 1 << 22):  # in slices: bounded memory
                        part = ep.read(fr.name, slice(a, a + (1 << 22)))
                        acc[:3] += np.bincount(np.minimum(part, 2), minlength=3)[:3]
                else:
                    acc[0] += int(ep.read(g["offsets"].name, -1))
        # objects
        static = ep.static.get("actors", [])
        kinds = np.array(ep.strings("actors/kind"), dtype=object)
        sem = ep.read("actors/semantic")
        is_ego = np.array([bool(a.get("is_ego")) for a in static] if len(static) == len(kinds)
                          else [nm == "ego" for nm in ep.strings("actors/name")], bool)
        seen = ep.read("labels/objects/seen").astype(bool)
        seen[:, is_ego] = False
        for j in np.nonzero(seen.any(axis=0))[0]:
            st.objects_by_kind[kinds[j]] += 1
        per_actor = seen.sum(axis=0)
        for j in np.nonzero(per_actor)[0]:
            st.frames_by_kind[kinds[j]] += int(per_actor[j])
            st.frames_by_class[CLASS_NAMES.get(int(sem[j]), str(sem[j]))] += int(per_actor[j])
        if seen.any() and "labels/objects/center_ego" in f:
            c = ep.read("labels/objects/center_ego")
            d = np.linalg.norm(c, axis=-1)
            fr, ac = np.nonzero(seen)
            for kind in np.unique(kinds[ac]):
                sel = kinds[ac] == kind
                st.dist[kind].append(d[fr[sel], ac[sel]].astype(np.float32))
        for cam in cams:
            key = f"labels/{cam}/visible_fraction"
            if key in f and seen.any():
                vf = ep.read(key)
                st.vis[cam].append(vf[seen].astype(np.float32))
        # randomised / applied values
        g = f.get("applied")
        applied = {}
        if isinstance(g, h5py.Group) and len(g):
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind in "fiub":
                    applied[name] = ep.read(obj.name).astype(np.float64)
            g.visititems(visit)
        if applied:
            for k, v in applied.items():
                if np.isfinite(v).any():
                    st.applied_means[k].append(float(np.nanmean(v)))
        else:
            st.applied_missing += 1
        params = ep.attr_json("parameters_json", {})
        for k, v in (params.items() if isinstance(params, dict) else ()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                st.params[k].append(float(v))
        # weather x time-of-day coverage: per frame from applied/, else the stored scenario (per episode)
        alt = applied.get("weather.sun_altitude_angle")
        sw = None
        sources = set()
        for key in ("fog_density", "precipitation"):
            v = applied.get(f"weather.{key}")
            if v is not None and alt is not None:
                ok = np.isfinite(v) & np.isfinite(alt)
                st.cover[key].extend(zip(v[ok], alt[ok], np.ones(ok.sum())))
                sources.add("applied (per frame)")
            else:
                sw = _scenario_weather(f, str(path)) if sw is None else sw
                a = applied["weather.sun_altitude_angle"] if alt is not None else None
                a = float(np.nanmean(a)) if a is not None else sw.get("sun_altitude_angle", 45.0)
                vv = float(np.nanmean(v)) if v is not None else sw.get(key, 0.0)
                try:
                    st.cover[key].append((float(vv), float(a), float(max(n, 1))))
                    sources.add("scenario_yaml (per episode)")
                except (TypeError, ValueError):
                    pass
        st.cover_source.update(sources)
        # criticality
        s = ep.attr_json("summary_json", {})
        s = s if isinstance(s, dict) else {}
        st.min_ttc.append(s.get("min_ttc_s"))
        st.collision.append(bool(s.get("collision", False)))
        st.any_collision.append(bool(s.get("any_collision", False)))
        label = f"{f.attrs.get('scenario_name', '?')} #{f.attrs.get('episode_index', '?')}"
        st.episodes.append((path, n, cams, label))


# --------------------------------------------------------------------------------------------------------------
# plots


def _plt():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - matplotlib is needed for the report only
        raise InputError("simgen report needs matplotlib (pip install matplotlib)") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    _plt().close(fig)
    return name


def _plot_objects(st: _Stats, out: Path) -> str:
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, cnt, title in ((axs[0], st.objects_by_kind, "distinct objects seen, by actor kind"),
                           (axs[1], st.frames_by_class, "object-frames seen, by semantic class")):
        items = sorted(cnt.items(), key=lambda kv: -kv[1])
        if items:
            names, vals = zip(*items)
            ax.barh(range(len(vals)), vals, color="#4c72b0")
            ax.set_yticks(range(len(vals)), names)
            ax.invert_yaxis()
        else:
            ax.text(0.5, 0.5, "no objects seen", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
    return _save(fig, out, "objects.png")


def _plot_dist_vis(st: _Stats, out: Path) -> str:
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
    kinds = sorted(st.dist, key=lambda k: -sum(len(a) for a in st.dist[k]))
    data = [np.concatenate(st.dist[k]) for k in kinds]
    if data:
        hi = max(float(np.max(np.concatenate(data))), 10.0)
        bins = DIST_BINS if hi <= DIST_BINS[-1] else np.linspace(0, hi, 31)
        axs[0].hist(data, bins=bins, stacked=True, label=kinds)
        axs[0].legend(fontsize=8)
    else:
        axs[0].text(0.5, 0.5, "no objects seen", ha="center", va="center", transform=axs[0].transAxes)
    axs[0].set_xlabel("distance from ego (m)")
    axs[0].set_ylabel("object-frames")
    axs[0].set_title("distance of seen objects", fontsize=10)
    cams = sorted(st.vis)
    vdata = [np.concatenate(st.vis[c]) for c in cams]
    if vdata and sum(len(v) for v in vdata):
        axs[1].hist(vdata, bins=VIS_BINS, label=cams, histtype="step" if len(cams) > 1 else "bar", linewidth=1.5)
        axs[1].legend(fontsize=8)
    else:
        axs[1].text(0.5, 0.5, "no camera labels", ha="center", va="center", transform=axs[1].transAxes)
    axs[1].set_xlabel("visible fraction (0 = not in the image)")
    axs[1].set_ylabel("object-frames")
    axs[1].set_title("visibility of seen objects per camera", fontsize=10)
    return _save(fig, out, "distance_visibility.png")


def _plot_hists(values: dict[str, list[float]], out: Path, name: str, title: str) -> str:
    plt = _plt()
    keys = sorted(values)
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axs.ravel()[len(keys):]:
        ax.axis("off")
    for ax, k in zip(axs.ravel(), keys):
        v = np.asarray(values[k], float)
        ax.hist(v[np.isfinite(v)], bins=min(20, max(5, len(v) // 2)), color="#55a868")
        ax.set_title(k, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out, name)


def _plot_coverage(st: _Stats, out: Path) -> str | None:
    keys = [k for k in ("fog_density", "precipitation") if st.cover.get(k)]
    if not keys:
        return None
    plt = _plt()
    fig, axs = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    for ax, k in zip(axs[0], keys):
        a = np.asarray(st.cover[k], float)
        h, _, _ = np.histogram2d(np.clip(a[:, 1], -90, 90), np.clip(a[:, 0], 0, 100), bins=[SUN_BINS, LEVEL_BINS],
                                 weights=a[:, 2])
        im = ax.pcolormesh(SUN_BINS, LEVEL_BINS, h.T, cmap="viridis", shading="flat")
        ax.axvline(0.0, color="w", linewidth=0.8, linestyle="--")
        ax.set_xlabel("sun altitude (deg; < 0 night)")
        ax.set_ylabel(f"{k} (0-100)")
        ax.set_title(f"frames by {k} and sun altitude", fontsize=10)
        fig.colorbar(im, ax=ax, label="frames")
    return _save(fig, out, "weather_time_of_day.png")


def _plot_criticality(st: _Stats, out: Path) -> str:
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.6))
    ttc = np.array([v for v in st.min_ttc if v is not None], float)
    if len(ttc):
        axs[0].hist(np.clip(ttc, 0, 10), bins=np.linspace(0, 10, 21), color="#c44e52")
    axs[0].set_xlabel("minimum TTC per episode (s, clipped at 10)")
    axs[0].set_ylabel("episodes")
    n_none = sum(v is None for v in st.min_ttc)
    axs[0].set_title(f"min time-to-collision ({n_none} episode(s) never closing in)", fontsize=10)
    n = max(len(st.collision), 1)
    labels = ["ego collision", "any collision", "no collision"]
    vals = [sum(st.collision), sum(st.any_collision), n - sum(st.any_collision)]
    axs[1].bar(labels, [v / n for v in vals], color=["#c44e52", "#dd8452", "#55a868"])
    axs[1].set_ylim(0, 1)
    axs[1].set_ylabel("fraction of episodes")
    axs[1].set_title("outcomes", fontsize=10)
    return _save(fig, out, "criticality.png")


def _plot_samples(st: _Stats, out: Path, n_samples: int, camera: str | None) -> str | None:
    pairs = [(p, nf, cams, lab) for p, nf, cams, lab in st.episodes
             if nf > 0 and cams and (camera is None or camera in cams)]
    total = sum(nf for _, nf, _, _ in pairs)
    if not total:
        return None
    k = min(n_samples, total)
    # evenly spread over all frames of the run (in file order), mid-interval
    picks = ((np.arange(k) + 0.5) * total / k).astype(int)
    starts = np.cumsum([0] + [nf for _, nf, _, _ in pairs])
    plt = _plt()
    fig, axs = plt.subplots(k, 2, figsize=(10, 2.9 * k), squeeze=False)
    for row, g in enumerate(picks):
        e = int(np.searchsorted(starts, g, side="right") - 1)
        path, nf, cams, lab = pairs[e]
        fr = int(g - starts[e])
        cam = camera or cams[0]
        from simgen.io.episode import Episode

        with Episode(path) as ep:
            f = ep.f
            rgb = ep.read(f"sensors/{cam}/rgb", fr)
            sem = ep.read(f"sensors/{cam}/semantic", fr)
            applied = f.get("applied")
            wx = ""
            if isinstance(applied, h5py.Group):
                parts = []
                for key, short in (("weather.fog_density", "fog"), ("weather.precipitation", "rain"),
                                   ("weather.sun_altitude_angle", "sun")):
                    if key in applied:
                        parts.append(f"{short} {float(ep.read(applied[key].name, fr)):.0f}")
                wx = ", ".join(parts)
        overlay = (0.45 * rgb + 0.55 * PALETTE[sem]).astype(np.uint8)
        axs[row, 0].imshow(rgb)
        axs[row, 1].imshow(overlay)
        axs[row, 0].set_title(f"{lab} frame {fr} ({cam})" + (f" — {wx}" if wx else ""), fontsize=8, loc="left")
        for ax in axs[row]:
            ax.axis("off")
    return _save(fig, out, "samples.png")


# --------------------------------------------------------------------------------------------------------------
# the card


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _render(blocks: list, fmt: str, title: str) -> str:
    if fmt == "md":
        lines = []
        for b in blocks:
            if b[0] == "h":
                lines += ["#" * b[1] + " " + b[2], ""]
            elif b[0] == "p":
                lines += [b[1], ""]
            elif b[0] == "img":
                lines += [f"![{b[2]}]({b[1]})", ""]
            elif b[0] == "table":
                head, rows = b[1], b[2]
                lines.append("| " + " | ".join(head) + " |")
                lines.append("|" + "---|" * len(head))
                lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
                lines.append("")
        return "\n".join(lines)
    e = html.escape
    body = []
    for b in blocks:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            body.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "img":
            body.append(f'<p><img src="{e(b[1])}" alt="{e(b[2])}" style="max-width:100%"></p>')
        elif b[0] == "table":
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>" + rows + "</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left;font-size:90%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _counter_text(c: Counter) -> str:
    return ", ".join(f"{k} ({v})" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def write_card(run_dir: str | Path, out: str | Path, *, fmt: str = "md", camera: str | None = None,
               n_samples: int = 6, overwrite: bool = False) -> Path:
    """Write the dataset card for the episodes under ``run_dir`` into ``out``; returns the card's path."""
    if fmt not in ("md", "html"):
        raise InputError(f"--format: got {fmt!r}; allowed: md, html")
    if not 1 <= n_samples <= 8:
        raise InputError(f"--samples: got {n_samples}; allowed: 1 to 8")
    paths, skipped = find_episodes(run_dir)
    if not paths:
        why = f" ({len(skipped)} skipped: {skipped[0][1]}{', ...' if len(skipped) > 1 else ''})" if skipped else ""
        raise InputError(f"no complete simgen episode files (*.h5) found{why}", file=str(run_dir))
    from simgen.io.output import check_path_arg, claim_outputs, make_dir

    check_path_arg(str(out), "--out")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder", file=str(out))
    st = _Stats()
    for p in paths:  # read everything before writing anything: a corrupt episode leaves no card behind
        _gather_episode(p, st)
    if camera is not None and not any(camera in cams for _, _, cams, _ in st.episodes):
        cams = sorted({c for _, _, cs, _ in st.episodes for c in cs})
        raise InputError(f"--camera: got {camera!r}; allowed: {', '.join(cams) or '(no cameras)'}")
    existed = out.exists()
    before = set(out.iterdir()) if existed else set()
    make_dir(out)
    # the card's files are recorded in the folder's manifest: a second report needs --overwrite, and a file of the
    # user's (a hand-written card.md) is never written over
    try:
        claim_outputs(out, [out / n for n in (f"card.{fmt}", *CARD_IMAGES)], inputs=list(paths),
                      overwrite=overwrite)
    except BaseException:
        if not existed and not any(out.iterdir()):
            out.rmdir()
        raise
    try:
        return _compose(run_dir, out, st, skipped, fmt=fmt, camera=camera, n_samples=n_samples)
    except BaseException:  # e.g. a sample frame's chunk fails to read: remove what this call wrote
        for q in set(out.iterdir()) - before:
            if q.is_file():
                q.unlink()
        if not existed and not any(out.iterdir()):
            out.rmdir()
        raise


CARD_IMAGES = ("objects.png", "distance_visibility.png", "weather_time_of_day.png", "criticality.png", "samples.png",
               "randomised.png", "parameters.png")  # every image _compose may write


def _compose(run_dir, out: Path, st: _Stats, skipped: list, *, fmt: str, camera, n_samples: int) -> Path:

    title = f"Dataset card: {Path(run_dir).resolve().name}"
    n_ep = len(st.episodes)
    B: list = [("h", 1, title)]
    B.append(("p", f"Generated by simgen report from {n_ep} episode(s) under {Path(run_dir)}. "
                   "Labels are exact (simulated); every number below is computed from the episode files."))
    B.append(("h", 2, "Summary"))
    B.append(("table", ["item", "value"], [
        ["episodes", n_ep], ["frames", st.n_frames], ["duration", f"{st.duration_s:.1f} s"],
        ["scenarios", _counter_text(st.scenarios)], ["maps", _counter_text(st.maps)],
        ["backends", _counter_text(st.backends)], ["simgen versions", _counter_text(st.versions)],
        ["sensors", ", ".join(f"{k} ({v})" for k, v in sorted(st.sensors.items())) or "-"],
        ["skipped files", len(skipped)],
    ]))

    B.append(("h", 2, "Objects"))
    B.append(("p", "Objects other than the ego that were seen (labels/objects/seen) at least once, and how many "
                   "frames each class was seen in."))
    B.append(("img", _plot_objects(st, out), "objects by kind and class"))
    rows = [[k, st.objects_by_kind.get(k, 0), st.frames_by_kind.get(k, 0)]
            for k in sorted(set(st.objects_by_kind) | set(st.frames_by_kind))]
    B.append(("table", ["actor kind", "distinct objects seen", "object-frames seen"], rows or [["-", 0, 0]]))

    B.append(("h", 2, "Distance and visibility"))
    B.append(("p", "Distance from the ego (labels/objects/center_ego) and visible fraction per camera "
                   "(labels/<camera>/visible_fraction) of every seen object in every frame."))
    B.append(("img", _plot_dist_vis(st, out), "distance and visibility histograms"))

    B.append(("h", 2, "Randomised values"))
    varying = {k: v for k, v in st.applied_means.items() if len(v) and np.nanmax(v) - np.nanmin(v) > 1e-9}
    const = {k: v for k, v in st.applied_means.items() if k not in varying and len(v)}
    if st.applied_missing == n_ep:
        B.append(("p", "No applied/ values are recorded in these episodes (written by older simgen versions)."))
    else:
        if st.applied_missing:
            B.append(("p", f"{st.applied_missing} episode(s) have no applied/ values and are not counted here."))
        if varying:
            B.append(("p", "Per-episode mean of every value applied at each frame (applied/<key>) that varies "
                           "across the run."))
            B.append(("img", _plot_hists(varying, out, "randomised.png", "applied values (per-episode means)"),
                      "randomised values"))
        else:
            B.append(("p", "No applied value varies across the run."))
        if const:
            B.append(("p", "Constant across the run:"))
            B.append(("table", ["key", "value"], [[k, _fmt(float(v[0]))] for k, v in sorted(const.items())]))
    pvary = {k: v for k, v in st.params.items() if len(v) > 0 and max(v) - min(v) > 1e-12}
    if pvary:
        B.append(("p", "Sampled scenario parameters (parameters_json), per episode:"))
        B.append(("img", _plot_hists(pvary, out, "parameters.png", "scenario parameters"), "scenario parameters"))

    B.append(("h", 2, "Weather × time of day"))
    cov = _plot_coverage(st, out)
    if cov:
        B.append(("p", "Frames by fog density / precipitation and sun altitude (night below 0°). Source (episodes): "
                       + _counter_text(st.cover_source) + "."))
        B.append(("img", cov, "weather by time of day"))
    else:
        B.append(("p", "No weather information found."))

    if st.lidar_returns:
        rows = []
        for name, (real, fog, prec, frames) in sorted(st.lidar_returns.items()):
            tot = max(int(real + fog + prec), 1)
            rows.append([name, int(real + fog + prec), f"{(real + fog + prec) / max(frames, 1):.0f}",
                         f"{100.0 * fog / tot:.2f} %", f"{100.0 * prec / tot:.2f} %"])
        B.append(("p", "LiDAR returns (false returns are labelled per point: sensors/<lidar>/false_return):"))
        B.append(("table", ["lidar", "points", "points per frame", "fog backscatter", "rain/snow clutter"], rows))

    B.append(("h", 2, "Criticality"))
    ttc = [v for v in st.min_ttc if v is not None]
    B.append(("p", f"Ego collisions in {sum(st.collision)} of {n_ep} episode(s) "
                   f"({100.0 * sum(st.collision) / n_ep:.0f} %); any collision in {sum(st.any_collision)}. "
                   + (f"Minimum TTC: median {np.median(ttc):.2f} s, below 1.5 s in {sum(t < 1.5 for t in ttc)} "
                      "episode(s)." if ttc else "No episode has a closing actor.")))
    B.append(("img", _plot_criticality(st, out), "criticality"))

    B.append(("h", 2, "Samples"))
    smp = _plot_samples(st, out, n_samples, camera)
    if smp:
        B.append(("p", "Camera frames spread over the run; right: semantic segmentation (CARLA palette) blended "
                       "over the image."))
        B.append(("img", smp, "sample frames"))
    else:
        B.append(("p", "No camera frames in these episodes."))

    if skipped:
        B.append(("h", 2, "Skipped files"))
        B.append(("table", ["file", "reason"], [[str(p), r] for p, r in skipped]))
    card = out / ("card.md" if fmt == "md" else "card.html")
    card.write_text(_render(B, fmt, title), encoding="utf-8")
    return card


# --------------------------------------------------------------------------------------------------------------
# command line


def cmd_report(a) -> int:
    card = write_card(a.run_dir, a.out or Path(a.run_dir) / "report", fmt=a.format, camera=a.camera,
                      n_samples=a.samples, overwrite=a.overwrite)
    print(f"wrote {card}")
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``simgen report`` (see the module docstring)."""
    p = subparsers.add_parser("report", help="dataset card (Markdown or HTML with plots) of a run or batch folder")
    p.add_argument("run_dir", help="run folder (RUN_DIR/episodes/*.h5) or any folder holding episode files")
    p.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    p.add_argument("--format", choices=["md", "html"], default="md")
    p.add_argument("--camera", help="camera for the sample images (default: each episode's first camera)")
    p.add_argument("--samples", type=int, default=6, help="number of sample frames, 1-8 (default 6)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a card this command wrote before (files that simgen did not write are never replaced)")
    p.set_defaults(func=cmd_report)
