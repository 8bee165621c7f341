"""The picture of a search: samples in the two most telling parameters, coloured by outcome, with the boundary.

The two axes are the numeric parameters whose values rank-correlate most with the score (Spearman, scipy).
Colour is the score (lower = more critical), failures are red crosses, and the failure boundary is the 0.5
level of a Gaussian-kernel estimate of P(failure | the two plotted parameters), drawn where both outcomes occur.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _axes(space, rows) -> list[int]:
    from scipy import stats

    numeric = [j for j, d in enumerate(space.dims) if d.numeric]
    if len(numeric) <= 2:
        return numeric
    score = np.array([r["score"] for r in rows], float)
    rho = []
    for j in numeric:
        x = np.array([float(r["params"][space.dims[j].name]) for r in rows])
        r = stats.spearmanr(x, score).statistic if np.ptp(x) > 0 and np.ptp(score) > 0 else 0.0
        rho.append(abs(r) if np.isfinite(r) else 0.0)
    return [numeric[i] for i in np.argsort(rho)[::-1][:2]]


def plot_space(path: Path, space, rows: list[dict], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    axes = _axes(space, rows) if rows else []
    score = np.array([r["score"] for r in rows], float)
    failed = np.array([r["failed"] for r in rows], bool)
    title = (f"{Path(summary['scenario']).stem}: {summary['method']}, {summary['episodes']} episodes, "
             f"{summary['failures']} failures ({summary['objective']})")
    if summary.get("p_failure") is not None:
        lo, hi = summary["ci95"]
        title += f"\nP(failure) = {summary['p_failure']:.3g} [{lo:.3g}, {hi:.3g}]"
    if not axes:
        ax.text(0.5, 0.5, "no numeric parameter to plot", ha="center", transform=ax.transAxes)
    else:
        xs = [np.array([float(r["params"][space.dims[j].name]) for r in rows]) for j in axes]
        if len(axes) == 1:
            xs.append(score)
        x, y = xs[0], xs[1]
        sc = ax.scatter(x[~failed], y[~failed], c=np.minimum(score[~failed], np.percentile(score, 95) if len(score) else 1),
                        s=10, cmap="viridis", alpha=0.8, label="pass")
        ax.scatter(x[failed], y[failed], marker="x", c="red", s=22, label="failure")
        fig.colorbar(sc, ax=ax, label="score (lower = more critical)")
        if len(axes) == 2 and failed.any() and (~failed).any():
            _boundary(ax, x, y, failed)
        ax.set_xlabel(space.dims[axes[0]].name)
        ax.set_ylabel(space.dims[axes[1]].name if len(axes) == 2 else "score")
        ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _boundary(ax, x, y, failed) -> None:
    """Contour where a kernel estimate of P(failure | x, y) crosses 0.5 (axes normalised to their range)."""
    sx, sy = max(np.ptp(x), 1e-9), max(np.ptp(y), 1e-9)
    gx, gy = np.meshgrid(np.linspace(x.min(), x.max(), 120), np.linspace(y.min(), y.max(), 120))
    h = 0.06
    G = np.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    p = np.empty(len(G))
    f = failed.astype(float)
    step = max(1, 2_000_000 // max(len(x), 1))
    for i in range(0, len(G), step):  # bounded memory for large searches
        dx = (G[i:i + step, :1] - x[None]) / sx
        dy = (G[i:i + step, 1:] - y[None]) / sy
        k = np.exp(-0.5 * (dx * dx + dy * dy) / (h * h))
        p[i:i + step] = (k @ f) / np.maximum(k.sum(1), 1e-12)
    ax.contour(gx, gy, p.reshape(gx.shape), levels=[0.5], colors="k", linewidths=1.2, linestyles="--")
