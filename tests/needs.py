"""What a test does when something it needs from outside the project's environment cannot be had."""
from __future__ import annotations

import os

import pytest


def unavailable(msg: str):
    """Skip with ``msg`` locally; fail under CI (``CI`` set), where every test must run: the README's test command
    and CI run the same suite, and nothing is skipped silently there."""
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI runs every test: provide it)")
    pytest.skip(msg)
