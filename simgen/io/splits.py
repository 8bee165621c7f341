"""Train/val split of episodes: one rule shared by the exporters and :class:`simgen.io.FrameDataset`.

The split is by episode, never by frame, so no episode contributes frames to both sides.  Episodes are taken in
the order of their paths relative to the input folder (POSIX form, sorted), the order in which
``annotators.export.common.find_episodes`` lists the complete episode files; ``val`` positions are spread evenly
through that list.  The assignment depends only on the number of episodes and the fraction, so the same folder
always splits the same way.  Adding episodes to a folder can move episodes between the splits: split a finished
batch, not a growing one.
"""
from __future__ import annotations

from simgen.errors import InputError

SPLITS = ("train", "val")


def split_of(n_episodes: int, val_fraction: float, *, key: str = "--val-fraction") -> list[str]:
    """'train' or 'val' for each of ``n_episodes`` episodes in path order.

    ``round(n * val_fraction)`` episodes go to val, at least one when there are two or more episodes and the
    fraction is above 0, and never all of them (one episode alone is train).  Val positions are spread evenly.
    """
    try:
        val_fraction = float(val_fraction)
    except (TypeError, ValueError):
        raise InputError(f"got {val_fraction!r}; allowed: a number, 0 <= value < 1", key=key) from None
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"got {val_fraction}; allowed: 0 <= value < 1", key=key)
    n = int(n_episodes)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, n - 1) if n > 1 else 0
    return ["val" if (i + 1) * n_val // n > i * n_val // n else "train" for i in range(n)]
