"""Shared fixtures: small rigs and short episodes, built once per session and reused."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
RIGS = REPO / "assets" / "rigs"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def small_rig():
    from simgen.spec.rig import load_rig

    return load_rig(RIGS / "small.yaml")


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def lead_run(tmp_path_factory):
    """A short lead-vehicle-brakes run on the small rig (shared by several tests)."""
    from simgen.runner import run

    out = tmp_path_factory.mktemp("lead")
    run(str(SCENARIOS / "lead_vehicle_brakes.yaml"), rig=str(RIGS / "small.yaml"), out=str(out), seed=3,
        frames=12, progress=False)
    return out


def session_for(scenario: str, rig, *, seed: int = 0, overrides=(), n_frames=None):
    from simgen.backends.builtin import BuiltinSession
    from simgen.spec.scenario import concretise, load_scenario_source

    src = load_scenario_source(SCENARIOS / scenario if not str(scenario).startswith("/") else scenario, list(overrides))
    spec, _ = concretise(src, rng=np.random.default_rng(seed))
    return BuiltinSession(spec, rig, seed=np.random.SeedSequence(seed), source=str(src.path), n_frames=n_frames)
