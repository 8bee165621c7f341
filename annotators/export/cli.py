"""``simgen export RUN_DIR --format kitti|semantickitti|coco|nuscenes --out DIR``: the command-line front end.

Added to ``simgen`` through ``simgen.cli.PLUGIN_MODULES`` (``add_subcommand``); :func:`main` runs it standalone
(``python -m annotators.export.cli ...``) with the same exit codes: 0 success, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys


def _add_arguments(p: argparse.ArgumentParser) -> None:
    from annotators.export import EXPORTERS
    from annotators.export.common import DESKEW_MODES

    p.add_argument("src", metavar="RUN_DIR", help="run folder, folder of runs (searched for **/*.h5) or one episode file")
    p.add_argument("--format", required=True, choices=list(EXPORTERS), help="output dataset format")
    p.add_argument("--out", required=True, help="output folder (must be empty or new unless --overwrite)")
    p.add_argument("--camera", help="camera to use (kitti: the image_2 camera; coco/nuscenes: only this camera; "
                                    "semantickitti: calibration camera); default: the rig's first / all cameras")
    p.add_argument("--lidar", help="LiDAR to use (nuscenes: the one exported as LIDAR_TOP); default: the rig's first")
    g = p.add_argument_group("object filters")
    g.add_argument("--min-visible", type=float, metavar="F", help="keep objects with visible fraction >= F (0..1)")
    g.add_argument("--min-points", type=int, metavar="N", help="keep objects with >= N LiDAR returns")
    g.add_argument("--max-distance", type=float, metavar="M", help="keep objects within M metres of the ego")
    g.add_argument("--classes", metavar="A,B", help="keep only these actor kinds or output class names")
    p.add_argument("--class-map", metavar="FILE", help="YAML mapping actor kinds to the format's classes "
                                                       "(see annotators/export/class_map_default.yaml)")
    p.add_argument("--deskew", default="full", choices=list(DESKEW_MODES),
                   help="LiDAR motion correction to the frame time: full (ego and actor motion; points match boxes, "
                        "default), ego (ego motion only, like real datasets), none (raw per-point sensor frames)")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="export every N-th frame (default 1)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="share of episodes in the val split (deterministic, by episode; default 0.2)")
    p.add_argument("--bbox2d", choices=["proj", "mask"], default="proj",
                   help="kitti: 2-D box = projected 3-D box clipped to the image (default) or the visible mask's box")
    p.add_argument("--version", dest="nusc_version", default="v1.0-trainval", metavar="NAME",
                   help="nuscenes: table folder name (default v1.0-trainval)")
    p.add_argument("--keyframe-every", type=int, default=1, metavar="N",
                   help="nuscenes: every N-th exported frame is a key frame (sample); the others are sweeps")
    p.add_argument("--encoding", default="protobuf", choices=["protobuf", "ros2"],
                   help="mcap: Foxglove protobuf schemas (default) or ROS 2 messages (CDR)")
    p.add_argument("--lossless", action="store_true",
                   help="mcap: camera images as PNG and depth as 32FC1 metres (default: JPEG and 16-bit PNG mm)")
    p.add_argument("--overwrite", action="store_true", help="replace this format's files in a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="convert episodes to KITTI, SemanticKITTI, COCO, nuScenes or MCAP",
                              description="Convert the episodes of a run (or of many runs) to a public dataset format.")
    _add_arguments(p)
    return p


def cmd_export(a) -> int:
    from annotators.export import export
    from annotators.export.common import parse_filters
    from simgen.errors import InputError

    filters = parse_filters(a.min_visible, a.min_points, a.max_distance, a.classes)
    for flag, value, default, fmt in (("--bbox2d", a.bbox2d, "proj", "kitti"),
                                      ("--version", a.nusc_version, "v1.0-trainval", "nuscenes"),
                                      ("--keyframe-every", a.keyframe_every, 1, "nuscenes"),
                                      ("--encoding", a.encoding, "protobuf", "mcap"),
                                      ("--lossless", a.lossless, False, "mcap")):
        if value != default and a.format != fmt:
            raise InputError(f"got {value!r}; this option applies to --format {fmt} only", key=flag)
    options = {}
    if a.format == "kitti":
        options["bbox2d"] = a.bbox2d
    if a.format == "nuscenes":
        options["version"] = a.nusc_version
        options["keyframe_every"] = a.keyframe_every
    if a.format == "mcap":
        options.update(encoding=a.encoding, lossless=a.lossless)
    s = export(a.src, a.format, a.out, camera=a.camera, lidar=a.lidar, filters=filters, class_map=a.class_map,
               overwrite=a.overwrite, progress=not a.no_progress, deskew=a.deskew, stride=a.stride,
               val_fraction=a.val_fraction, **options)
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    print(f"exported {len(s['episodes'])} episode(s) to {a.out} as {a.format} ({counts})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, f"{self.prog}: error: {message}\n")

    ap = _Parser(prog="simgen")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    add_subcommand(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from simgen.errors import InputError

    a = build_parser().parse_args(argv)
    try:
        return a.func(a) or 0
    except InputError as e:
        print(f"simgen: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
