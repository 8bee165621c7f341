"""ASAM's XML schemas (OpenDRIVE, OpenSCENARIO) for the tests, without installing ASAM's checker packages.

The XSDs ship inside ASAM's own PyPI packages ``asam-qc-opendrive`` and ``asam-qc-openscenarioxml`` (MPL-2.0
code; the schema files carry ASAM's own distribution terms, see www.asam.net/license.html).  Those packages pin
numpy < 2, so they cannot be dependencies of simgen's test environment, and their schema files are not copied
into this repository.  :func:`schema_dir` finds them, in this order:

1. an installed package (``pip install --no-deps asam-qc-opendrive==1.0.0``), used as is;
2. a cache folder (``SIMGEN_ASAM_CACHE``, default ``~/.cache/simgen/asam``) holding the package's ``schema/`` tree
   and its licence, filled on first use by ``pip download --no-deps`` of the pinned wheel and unpacking only
   those files (the environment is not changed; reused afterwards).

When neither works (no package index) the test is skipped saying why, except under CI (``CI`` set), where it
fails: CI and the README's test command run the same suite, with nothing skipped silently.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tests.needs import unavailable

PACKAGES = {  # kind -> (distribution, version, import name)
    "opendrive": ("asam-qc-opendrive", "1.0.0", "qc_opendrive"),
    "openscenario": ("asam-qc-openscenarioxml", "1.0.0", "qc_openscenario"),
}


def _cache_root() -> Path:
    base = os.environ.get("SIMGEN_ASAM_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simgen" / "asam"


def schema_dir(kind: str) -> Path:
    """The ``schema/`` folder of ASAM's package for ``kind`` ('opendrive' or 'openscenario'), with one sub-folder
    per standard version (e.g. ``1.7.0/opendrive_17_core.xsd``, ``1.2.0/OpenSCENARIO.xsd``)."""
    dist, version, module = PACKAGES[kind]
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        d = Path(list(spec.submodule_search_locations)[0]) / "schema"
        if d.is_dir():
            return d
    root = _cache_root() / f"{dist}-{version}"
    done = root / ".complete"
    if done.is_file():
        return root / module / "schema"
    root.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(root.parent / f"{dist}-{version}.lock", "w") as lock:  # one downloader when tests run in parallel
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            return root / module / "schema"
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                   "--only-binary=:all:", "--dest", tmp, f"{dist}=={version}"]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.SubprocessError) as e:
                unavailable(f"cannot download {dist}=={version} for its XSD files ({e}); "
                            f"pip install --no-deps {dist}=={version}")
            wheels = sorted(Path(tmp).glob("*.whl"))
            if r.returncode != 0 or not wheels:
                tail = ((r.stderr or r.stdout).strip().splitlines() or ["?"])[-1]
                unavailable(f"cannot download {dist}=={version} for its XSD files (no package index?): "
                            f"{tail[:200]}; pip install --no-deps {dist}=={version}")
            with zipfile.ZipFile(wheels[0]) as z:
                names = [n for n in z.namelist()
                         if n.startswith(f"{module}/schema/") and n.endswith(".xsd")
                         or n.endswith((".dist-info/LICENSE", ".dist-info/LICENSES/readme.md"))]
                z.extractall(root, members=names)
        done.write_text(f"{dist}=={version}: schema files and licence only\n")
    return root / module / "schema"
