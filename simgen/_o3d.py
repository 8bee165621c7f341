"""Import open3d on machines without a system libusb.

open3d's wheel links ``libusb-1.0.so.0``; a fresh machine lacks it.  The ``libusb-package`` wheel ships the
library, and loading it with RTLD_GLOBAL before ``import open3d`` satisfies the dependency without apt.
"""
from __future__ import annotations

import ctypes


def _preload_libusb() -> None:
    try:
        ctypes.CDLL("libusb-1.0.so.0", mode=ctypes.RTLD_GLOBAL)
        return
    except OSError:
        pass
    try:
        import libusb_package

        path = libusb_package.get_library_path()
        if path:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except (ImportError, OSError):  # open3d's own import error will then say what is missing
        pass


_preload_libusb()
import open3d as o3d  # noqa: E402

o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
__all__ = ["o3d"]
