"""``simgen loader-bench``: how fast :class:`simgen.io.FrameDataset` feeds a training loop.

Writes a short run with the default rig (1280x720 camera, 64-channel LiDAR) to a temporary folder, or uses
``--data DIR``, then reads it in a seeded shuffled order with three field sets — ``rgb``; ``rgb`` + LiDAR points
+ boxes; everything — in one process and with 2 worker processes (a torch ``DataLoader``, batches of 8 through
:func:`simgen.io.collate` as tensors, when torch is installed, else a ``multiprocessing`` pool).  It prints frames/s in total and per worker, frames per CPU second of the
reading processes (the per-core rate, less sensitive to other load on the machine than the wall clock), and the
episode bytes per frame.
With torch, the 2-worker figures include moving each batch to the main process (torch's shared-memory
transfer); the same reads in plain processes that return nothing are timed too, to separate the two costs.
``--codecs`` also re-encodes the data with other HDF5 codecs and times the middle field set with one worker,
printing each codec's size next to its speed.  The last line printed with ``--json`` is one JSON object.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = {"rgb": ("rgb",), "rgb+lidar+boxes": ("rgb", "points", "boxes"), "all": ("all",)}
# Codecs for --codecs: HDF5 filter options for the image and LiDAR arrays (shuffle first where it says so).
CODECS = ("deflate", "lz4", "zstd", "blosc-lz4", "blosc-zstd")


def _codec_options(name: str) -> dict:
    import hdf5plugin

    if name == "deflate":
        return dict(compression="gzip", compression_opts=1, shuffle=True)
    if name == "lz4":
        return dict(compression=hdf5plugin.LZ4.filter_id, compression_opts=(0,), shuffle=True)
    if name == "zstd":
        return dict(**hdf5plugin.Zstd(clevel=1), shuffle=True)
    if name == "blosc-lz4":
        return dict(**hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if name == "blosc-zstd":
        return dict(**hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE))
    from simgen.errors import InputError

    raise InputError(f"got {name!r}; allowed: {', '.join(CODECS)}", key="--codecs")


def recode(src: Path, dst: Path, codec: str) -> None:
    """Copy episode ``src`` to ``dst`` with the big chunked arrays (images, LiDAR fields) re-encoded."""
    import h5py

    opts = _codec_options(codec)
    with h5py.File(src, "r") as fi, h5py.File(dst, "w", libver="latest") as fo:
        for k, v in fi.attrs.items():
            fo.attrs[k] = v

        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                g = fo.require_group(name)
                for k, v in obj.attrs.items():
                    g.attrs[k] = v
                return
            big = obj.chunks is not None and obj.name.startswith("/sensors/") and obj.ndim >= 1 and (
                obj.ndim >= 3 or obj.chunks[0] >= 65536)
            if not big:
                fi.copy(obj, fo, name=name)
                return
            ds = fo.create_dataset(name, shape=obj.shape, dtype=obj.dtype, chunks=obj.chunks,
                                   maxshape=obj.maxshape, **opts)
            step = obj.chunks[0]
            for i in range(0, obj.shape[0], step):
                ds[i:i + step] = obj[i:i + step]
            for k, v in obj.attrs.items():
                ds.attrs[k] = v

        fi.visititems(visit)


def _make_data(out: Path, frames: int, episodes: int) -> Path:
    from simgen.paths import ASSETS, SCENARIOS
    from simgen.runner import run

    run(str(SCENARIOS / "pedestrian_behind_van.yaml"), rig=str(ASSETS / "rigs" / "default.yaml"), out=str(out), seed=0,
        episodes=episodes, frames=frames, progress=False)
    return out


def _bytes_per_frame(root: Path, n_frames: int) -> float:
    return sum(p.stat().st_size for p in root.rglob("*.h5")) / max(1, n_frames)


def _cpu_s(who) -> float:
    import resource

    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _worker_share(args):
    """multiprocessing fallback: read a share of the order; returns (frames, wall s, cpu s) after the first read."""
    import resource

    ds, idx = args
    ds[idx[0]]
    t0, c0 = time.perf_counter(), _cpu_s(resource.RUSAGE_SELF)
    for i in idx[1:]:
        ds[i]
    return len(idx) - 1, time.perf_counter() - t0, _cpu_s(resource.RUSAGE_SELF) - c0


def _collate_tensors(samples):
    """DataLoader collate_fn: :func:`simgen.io.collate` with torch tensors, which travel from the workers through
    shared memory (numpy arrays would be pickled through a pipe)."""
    from simgen.io import collate

    return collate(samples, tensors=True)


BATCH = 8  # DataLoader batch size (as in the README example)


def measure(ds, workers: int, passes: int, seed: int = 0, pool: bool = False) -> tuple[float, float]:
    """(frames per wall second for all workers together, frames per CPU second of the reading processes) over
    ``passes`` shuffled passes.  One worker reads in this process and excludes its first read (which opens the
    files); with more, the wall clock starts once every worker has delivered a frame, and the CPU time is the
    workers' own (their whole life, start-up included)."""
    import resource

    order = np.concatenate([ds.permutation(seed, e) for e in range(passes)]).tolist()
    if workers <= 1:
        ds[order[0]]
        t0, c0 = time.perf_counter(), _cpu_s(resource.RUSAGE_SELF)
        for i in order[1:]:
            ds[i]
        n = len(order) - 1
        return n / (time.perf_counter() - t0), n / max(_cpu_s(resource.RUSAGE_SELF) - c0, 1e-9)
    try:
        import torch.utils.data as tud
    except ImportError:
        tud = None
    if tud is not None and not pool:
        c0 = _cpu_s(resource.RUSAGE_CHILDREN)
        dl = tud.DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=workers, collate_fn=_collate_tensors,
                            prefetch_factor=2, persistent_workers=False)
        it = iter(dl)
        for _ in range(workers):  # every worker has started and opened its files
            next(it)
        t0 = time.perf_counter()
        n = 0
        for b in it:
            n += len(b["index"])
        wall = time.perf_counter() - t0
        del it, dl  # joins the workers, so their CPU time is counted
        return n / wall, len(order) / max(_cpu_s(resource.RUSAGE_CHILDREN) - c0, 1e-9)
    import multiprocessing as mp

    shares = [order[w::workers] for w in range(workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        res = pool.map(_worker_share, [(ds, s) for s in shares])
    return sum(n for n, _, _ in res) / max(t for _, t, _ in res), sum(n for n, _, _ in res) / sum(c for _, _, c in res)


def main(*, data: str | None = None, frames: int = 24, episodes: int = 2, passes: int = 3, repeats: int = 3,
         workers=(1, 2), codecs=(), as_json: bool = False) -> int:
    import simgen
    from simgen.io import FrameDataset

    tmp = None
    if data is None:
        tmp = tempfile.TemporaryDirectory(prefix="simgen-loader-bench-")
        root = Path(tmp.name) / "run"
        t0 = time.perf_counter()
        _make_data(root, frames, episodes)
        print(f"wrote {episodes} episode(s) x {frames} frames (default rig) in {time.perf_counter() - t0:.1f} s")
    else:
        root = Path(data)
    try:
        probe = FrameDataset(root, fields=())
        n = len(probe)
        result = {"cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "frames": n,
                  "episodes": len(probe.episodes), "cameras": list(probe.cameras), "lidars": list(probe.lidars),
                  "simgen_format": simgen.FORMAT_VERSION, "mb_per_frame": round(_bytes_per_frame(root, n) / 1e6, 3),
                  "passes": passes, "repeats": repeats, "loaders": {}}
        try:
            import torch  # noqa: F401

            result["multi_worker"] = "torch DataLoader"
        except ImportError:
            result["multi_worker"] = "multiprocessing pool"
        for cname, fields in CONFIGS.items():
            ds = FrameDataset(root, fields=fields)
            for w in workers:
                runs = [measure(ds, w, passes, seed=r) for r in range(repeats)]
                fps = float(np.median([r[0] for r in runs]))
                cpu = float(np.median([r[1] for r in runs]))
                result["loaders"][f"{cname}/{w}w"] = {"fields": list(fields), "workers": w,
                                                     "frames_per_s": round(fps, 1),
                                                     "frames_per_s_per_worker": round(fps / w, 1),
                                                     "frames_per_cpu_s": round(cpu, 1),
                                                     "runs": [round(x, 1) for x, _ in runs]}
                print(f"{cname:16s} workers={w}: {fps:7.1f} frames/s  ({fps / w:6.1f} per worker; "
                      f"{cpu:6.1f} per CPU second; runs {', '.join(f'{x:.0f}' for x, _ in runs)})", flush=True)
                if w > 1 and result["multi_worker"] == "torch DataLoader":  # the same reads, no transfer
                    runs = [measure(ds, w, passes, seed=r, pool=True) for r in range(repeats)]
                    fps = float(np.median([r[0] for r in runs]))
                    cpu = float(np.median([r[1] for r in runs]))
                    result["loaders"][f"{cname}/{w}w"].update(processes_frames_per_s=round(fps, 1),
                                                              processes_frames_per_cpu_s=round(cpu, 1))
                    print(f"{'':16s} {w} plain processes, reading only: {fps:7.1f} frames/s ({fps / w:6.1f} per "
                          f"process; {cpu:6.1f} per CPU second)", flush=True)
        if codecs:
            result["codecs"] = {}
            with tempfile.TemporaryDirectory(prefix="simgen-loader-codec-") as ctmp:
                for c in codecs:
                    _codec_options(c)
                    dst = Path(ctmp) / c
                    for p in sorted(root.rglob("*.h5")):
                        q = dst / p.relative_to(root)
                        q.parent.mkdir(parents=True, exist_ok=True)
                        recode(p, q, c)
                    ds = FrameDataset(dst, fields=CONFIGS["rgb+lidar+boxes"])
                    runs = [measure(ds, 1, passes, seed=r) for r in range(repeats)]
                    fps = float(np.median([r[0] for r in runs]))
                    cpu = float(np.median([r[1] for r in runs]))
                    mb = _bytes_per_frame(dst, len(ds)) / 1e6
                    result["codecs"][c] = {"mb_per_frame": round(mb, 3), "frames_per_s": round(fps, 1),
                                           "frames_per_cpu_s": round(cpu, 1)}
                    print(f"codec {c:11s}: {mb:5.2f} MB/frame, rgb+lidar+boxes 1 worker {fps:7.1f} frames/s "
                          f"({cpu:6.1f} per CPU second)", flush=True)
                    ds.close()
        result["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
        print(f"{result['cores']} cores, load average {result['load_avg_1m']} -> {result['load_avg_1m_end']}; "
              f"{result['mb_per_frame']} MB per frame on disk")
        if as_json:
            print(json.dumps(result))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


def add_subcommand(sub) -> None:
    p = sub.add_parser("loader-bench", help="frames/s of simgen.io.FrameDataset for the default rig (docs/performance.md)")
    p.add_argument("--data", metavar="DIR", help="read this run or batch folder instead of writing a short run")
    p.add_argument("--frames", type=int, default=24, help="frames per episode of the run written (default 24)")
    p.add_argument("--episodes", type=int, default=2, help="episodes of the run written (default 2)")
    p.add_argument("--passes", type=int, default=3, help="shuffled passes over the data per measurement (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="measurements per setting; the median is printed (default 3)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--codecs", default="", help=f"also re-encode and time these: {', '.join(CODECS)}")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_cli)


def _cli(a) -> int:
    from simgen.errors import InputError

    try:
        workers = tuple(int(x) for x in a.workers.split(",") if x.strip())
    except ValueError:
        raise InputError(f"got {a.workers!r}; allowed: comma-separated integers, e.g. 1,2", key="--workers") from None
    if not workers or min(workers) < 1:
        raise InputError(f"got {a.workers!r}; allowed: worker counts of 1 or more", key="--workers")
    for name in ("frames", "episodes", "passes", "repeats"):
        if getattr(a, name) < 1:
            raise InputError(f"got {getattr(a, name)}; allowed: 1 or more", key=f"--{name}")
    codecs = tuple(c.strip() for c in a.codecs.split(",") if c.strip())
    for c in codecs:
        if c not in CODECS:
            raise InputError(f"got {c!r}; allowed: {', '.join(CODECS)}", key="--codecs")
    return main(data=a.data, frames=a.frames, episodes=a.episodes, passes=a.passes, repeats=a.repeats,
                workers=workers, codecs=codecs, as_json=a.json)
