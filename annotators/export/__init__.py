"""Exporters: convert simgen episode files into KITTI, SemanticKITTI, COCO and nuScenes datasets.

``export(src, fmt, out, ...)`` finds the complete episodes under ``src`` (a run folder, a folder of runs or one
episode file), validates every option before touching ``out``, then streams the episodes frame by frame into the
format's layout.  Exports are deterministic: the same input and options give byte-identical files.  Writing into a
non-empty folder needs ``overwrite=True``, which removes only the format's own entries.  ``simgen_export.json``,
written last, records the options, the source episodes and the counts.

The formatter interface.  A format is a module registered by name in :data:`EXPORTERS` (one line each) that provides

- ``OWNED`` (its top-level output names) or ``owned(ctx)``: the only entries ``--overwrite`` removes;
- ``OPTIONS``: its format-specific keyword options (anything else is refused);
- ``CLASS_SECTION``: its section of the class map, or None when it labels with simgen's semantic classes;
- ``validate(ctx) -> int``: check the episodes' sensors and its options (raise ``InputError``; nothing is written
  yet) and return the number of frames it will export;
- ``run(ctx) -> dict``: write the dataset and return its counts.

``run`` reads each episode with :class:`annotators.export.common.EpisodeReader` and formats, per frame, the object
table of :mod:`annotators.export.objects` (``EpisodeObjects(reader, class_map=ctx.class_map, filters=ctx.filters,
cameras=..., lidar=...).frame(k)``: class map and filters already applied), so a format holds no label logic of its
own.  The details of each layout are in docs/export.md.
"""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from simgen.errors import InputError

from annotators.export.common import (DESKEW_MODES, MARKER, EpisodeRef, Filters, find_episodes, load_class_map,
                                      prepare_out, progress_bar, split_of, write_text)

EXPORTERS = {
    "kitti": "annotators.export.kitti",
    "semantickitti": "annotators.export.semantickitti",
    "coco": "annotators.export.coco",
    "nuscenes": "annotators.export.nuscenes",
    "mcap": "annotators.export.mcap",
}


@dataclass
class ExportContext:
    """Everything an exporter needs; built and validated by :func:`export`."""

    src: Path
    out: Path
    fmt: str
    episodes: list[EpisodeRef]
    splits: list[str]  # 'train' / 'val' per episode
    camera: str | None = None
    lidar: str | None = None
    filters: Filters = field(default_factory=Filters)
    class_map: dict | None = None
    deskew: str = "full"
    stride: int = 1
    options: dict = field(default_factory=dict)
    bar: object = None
    warnings: list[str] = field(default_factory=list)

    def frames(self, n: int) -> range:
        return range(0, n, self.stride)

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)


def export(src, fmt: str, out, *, camera: str | None = None, lidar: str | None = None, filters: Filters | None = None,
           class_map=None, overwrite: bool = False, progress: bool = True, deskew: str = "full", stride: int = 1,
           val_fraction: float = 0.2, **options) -> dict:
    """Export every complete episode under ``src`` to ``out`` in format ``fmt``; returns the summary written to
    ``simgen_export.json``.  User mistakes raise :class:`simgen.errors.InputError` before anything is written."""
    if fmt not in EXPORTERS:
        raise InputError(f"got {fmt!r}; allowed: {', '.join(EXPORTERS)}", key="--format")
    if deskew not in DESKEW_MODES:
        raise InputError(f"got {deskew!r}; allowed: {', '.join(DESKEW_MODES)}", key="--deskew")
    if int(stride) < 1:
        raise InputError(f"got {stride}; allowed: 1 or more", key="--stride")
    mod = importlib.import_module(EXPORTERS[fmt])
    unknown = sorted(set(options) - set(getattr(mod, "OPTIONS", ())))
    if unknown:
        raise TypeError(f"export(): unknown option(s) {unknown} for format {fmt!r}; "
                        f"allowed: {sorted(getattr(mod, 'OPTIONS', ()))}")
    src, out = Path(src), Path(out)
    refs, skipped = find_episodes(src)
    for s in skipped:
        print(f"simgen export: skipping {s}", file=sys.stderr)
    cmap = load_class_map(class_map, mod.CLASS_SECTION) if mod.CLASS_SECTION else None
    if class_map is not None and mod.CLASS_SECTION is None:
        raise InputError(f"the {fmt} format has no object classes to map (its labels are simgen's semantic classes)",
                         key="--class-map")
    filters = filters or Filters()
    if filters.classes:
        from simgen.classes import ACTOR_KINDS, CLASS_NAMES

        known = set(ACTOR_KINDS) | {v for v in (cmap or {}).values() if v}
        if fmt == "semantickitti":
            known |= set(CLASS_NAMES.values())
        bad = sorted(filters.classes - known)
        if bad:
            raise InputError(f"unknown class {bad[0]!r}; allowed: actor kinds ({', '.join(ACTOR_KINDS)}) or this "
                             f"format's class names ({', '.join(sorted(known - set(ACTOR_KINDS)))})", key="--classes")
    ctx = ExportContext(src=src, out=out, fmt=fmt, episodes=refs, splits=split_of(len(refs), float(val_fraction)),
                        camera=camera, lidar=lidar, filters=filters, class_map=cmap, deskew=deskew,
                        stride=int(stride), options=dict(options))
    total = mod.validate(ctx)  # raises InputError; returns the number of frames to export
    owned = mod.owned(ctx) if hasattr(mod, "owned") else list(mod.OWNED)
    prepare_out(out, owned, overwrite=overwrite, src=src)
    ctx.bar = progress_bar(total, f"export {fmt}", progress)
    try:
        counts = mod.run(ctx)
    finally:
        ctx.bar.close()
    for w in ctx.warnings:
        print(f"simgen export: warning: {w}", file=sys.stderr)
    import simgen

    f = ctx.filters
    summary = {
        "format": fmt,
        "simgen_version": simgen.__version__,
        "options": {"camera": camera, "lidar": lidar, "deskew": deskew, "stride": ctx.stride,
                    "val_fraction": float(val_fraction),
                    "filters": {"min_visible": f.min_visible, "min_points": f.min_points, "max_distance": f.max_distance,
                                "classes": sorted(f.classes) if f.classes else None},
                    "class_map": cmap, **{k: v for k, v in sorted(ctx.options.items())}},
        "episodes": [{"index": i, "file": r.rel, "uid": r.uid, "split": s}
                     for i, (r, s) in enumerate(zip(refs, ctx.splits))],
        "counts": counts,
        "warnings": ctx.warnings,
    }
    write_text(out / MARKER, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return summary
