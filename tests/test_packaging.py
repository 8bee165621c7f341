"""The wheel holds every package and data file the checkout has (a fresh `pip install .` must run everything)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _cfg() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_python_package_is_listed():
    listed = set(_cfg()["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for top in ("simgen", "annotators")
             for p in (REPO / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found - listed == set(), "packages missing from pyproject.toml [tool.setuptools] packages"


def test_every_library_file_is_package_data():
    import fnmatch

    patterns = _cfg()["package-data"]["simgen._scenarios"]
    for f in (REPO / "scenarios").rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".json", ".md") and "plugins" not in f.parts:
            rel = f.relative_to(REPO / "scenarios").as_posix()
            assert any(fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns), rel
