"""Search objectives: a score (lower = more critical) and a failure flag from an episode's criticality summary.

Built in:

- ``collision``: failure = the ego collided; score = the minimum footprint gap to any actor (0 on contact).
- ``min_ttc``: failure = minimum time-to-collision below ``threshold`` seconds (default 1.0) or a collision;
  score = the minimum TTC (0 on a collision, 60 s when nothing ever closed in).
- ``min_gap``: failure = minimum gap below ``threshold`` metres (default 0.5) or a collision; score = the gap.

A scenario plugin (loaded only with ``--allow-plugins``) can add one with :func:`register_objective`; it gets
the summary dict (see ``run.json``: ``min_ttc_s``, ``min_gap_m``, ``collision``, ...) and the threshold and
returns ``(score, failed)``.
"""
from __future__ import annotations

from typing import Callable

NO_TTC_S = 60.0
NO_GAP_M = 1000.0

Objective = Callable[[dict, float], tuple[float, bool]]
OBJECTIVES: dict[str, tuple[Objective, float]] = {}


def register_objective(name: str, default_threshold: float = 0.0):
    def deco(fn: Objective) -> Objective:
        OBJECTIVES[name] = (fn, float(default_threshold))
        return fn

    return deco


@register_objective("collision", 0.0)
def _collision(s: dict, threshold: float) -> tuple[float, bool]:
    gap = 0.0 if s["collision"] else (s["min_gap_m"] if s["min_gap_m"] is not None else NO_GAP_M)
    return float(gap), bool(s["collision"])


@register_objective("min_ttc", 1.0)
def _min_ttc(s: dict, threshold: float) -> tuple[float, bool]:
    ttc = 0.0 if s["collision"] else (s["min_ttc_s"] if s["min_ttc_s"] is not None else NO_TTC_S)
    ttc = min(float(ttc), NO_TTC_S)
    return ttc, bool(s["collision"] or ttc < threshold)


@register_objective("min_gap", 0.5)
def _min_gap(s: dict, threshold: float) -> tuple[float, bool]:
    gap = 0.0 if s["collision"] else (s["min_gap_m"] if s["min_gap_m"] is not None else NO_GAP_M)
    return float(gap), bool(s["collision"] or gap < threshold)
