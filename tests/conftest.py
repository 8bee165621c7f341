"""Shared fixtures: small rigs and short episodes, built once per session and reused."""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
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


@pytest.fixture(scope="session")
def tiny_rig():
    """One 32 x 16 camera and nothing else: for tests that check motion, not images (rendering is then ~free)."""
    from simgen.spec.rig import rig_from_dict

    return rig_from_dict({"name": "tiny", "sensors": [{"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.6},
                                                      "attributes": {"image_size_x": 32, "image_size_y": 16,
                                                                     "fov": 90}}]}, file="<tiny_rig>")


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


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


# categories a fresh interpreter does not print by default (Python's default warning filters)
_QUIET = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@pytest.fixture
def simgen_cli(capfd):
    """``simgen ARGS`` run in this process through ``simgen.cli.main`` (what ``python -m simgen.cli`` calls), like
    ``subprocess.run(..., capture_output=True)``: returns the exit code and what reached file descriptors 1 and 2.
    A subprocess per call would import simgen again (~2 s each on the test machine); each test file that uses this
    keeps one real ``python -m simgen.cli`` call.  Warnings that a fresh interpreter would print on stderr (all but
    Python's default-ignored categories) are appended to ``stderr``, so a "stderr is one line" check still sees them;
    an exception escaping ``main`` fails the test (a real process would print its traceback)."""
    from simgen.cli import main

    def call(*args, cwd=None) -> CliResult:
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as caught, contextlib.chdir(cwd or os.getcwd()):
            warnings.simplefilter("always")
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse usage errors exit through SystemExit, as in the real process
                code = e.code if isinstance(e.code, int) else 1
        out, err = capfd.readouterr()
        err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                       for w in caught if not issubclass(w.category, _QUIET))
        return CliResult(code, out, err)

    return call
