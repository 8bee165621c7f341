"""Episode files: writing and reading (:mod:`simgen.io.episode`), the recorded actor states for replay
(:mod:`simgen.io.record`), a frame dataset for training loaders (:mod:`simgen.io.dataset`) and the by-episode
train/val split shared with the exporters (:mod:`simgen.io.splits`).

Importing this package imports ``hdf5plugin``, which registers the LZ4 filter (HDF5 filter 32004) that the
image and LiDAR arrays of format_version 2 files are stored with.  Plain h5py readers need ``import hdf5plugin``
too (or ``HDF5_PLUGIN_PATH`` pointing at hdf5plugin's plugin folder).
"""
import hdf5plugin  # noqa: F401 - registers HDF5 filters (LZ4) with the HDF5 library for every reader

from simgen.io.dataset import (FrameDataset, FrameFilter, FrameReadWarning, SeededSampler, SkippedEpisodeWarning,
                               collate)
from simgen.io.splits import split_of

__all__ = ["FrameDataset", "FrameFilter", "FrameReadWarning", "SeededSampler", "SkippedEpisodeWarning", "collate",
           "split_of"]
