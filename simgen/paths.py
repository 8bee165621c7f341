"""Where the shipped assets (rigs, …) and scenario library live, in a checkout and in an installed wheel.

The wheel maps the repository's top-level ``assets/`` and ``scenarios/`` folders into the package as
``simgen/_assets`` and ``simgen/_scenarios`` (see pyproject.toml).
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _pick(installed: str, checkout: str) -> Path:
    a = _HERE / installed
    return a if a.is_dir() else _HERE.parent / checkout


ASSETS = _pick("_assets", "assets")
SCENARIOS = _pick("_scenarios", "scenarios")
