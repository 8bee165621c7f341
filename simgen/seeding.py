"""Seed streams that depend only on a SeedSequence's identity (entropy + spawn key).

``SeedSequence.spawn`` is stateful: a second call returns different children.  Every subsystem that derives
streams uses :func:`streams`, which spawns from a fresh copy, so checking an episode before running it (or
replaying it later) yields exactly the streams the run used.
"""
from __future__ import annotations

import numpy as np


def streams(seed: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The first ``n`` children of ``seed``, whatever has been spawned from it already."""
    return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key).spawn(n)
