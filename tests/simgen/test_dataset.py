"""simgen.io.FrameDataset (issue 17): values read through the dataset against simgen's own reader, filters against
an independent brute-force scan, worker processes, pickling, bad episodes, shuffling, splits, collate, and the
writer's LZ4 chunks against HDF5's own filter."""
from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from simgen.errors import InputError
from simgen.io import FrameDataset, FrameFilter, FrameReadWarning, SkippedEpisodeWarning, collate
from simgen.io.episode import Episode

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
RIGS = REPO / "assets" / "rigs"


@pytest.fixture(scope="session")
def batch(tmp_path_factory) -> Path:
    """A batch folder: two runs on the small rig (4 episodes) and nothing else."""
    from simgen.runner import run

    root = tmp_path_factory.mktemp("loader_batch")
    run(str(SCENARIOS / "pedestrian_behind_van.yaml"), rig=str(RIGS / "small.yaml"), out=str(root / "ped"), seed=2,
        episodes=2, frames=14, progress=False)
    run(str(SCENARIOS / "lead_vehicle_brakes.yaml"), rig=str(RIGS / "small.yaml"), out=str(root / "lead"), seed=5,
        episodes=2, frames=6, progress=False)
    return root


@pytest.fixture()
def with_decoys(batch, tmp_path) -> Path:
    """A copy of ``batch`` plus files a dataset must skip: interrupted, incomplete, not HDF5, truncated."""
    root = tmp_path / "decoys"
    shutil.copytree(batch, root)
    ep0 = root / "lead" / "episodes" / "episode_000000.h5"
    (root / "lead" / "episodes" / "episode_000009.h5.partial").write_bytes(b"interrupted")
    shutil.copy(ep0, root / "incomplete.h5")
    with h5py.File(root / "incomplete.h5", "r+") as f:
        f.attrs["complete"] = False
    (root / "notes.h5").write_bytes(b"not hdf5 at all")
    data = ep0.read_bytes()
    (root / "truncated.h5").write_bytes(data[: len(data) // 2])
    return root


def episode_files(root: Path) -> list[tuple[str, Path]]:
    """Independent enumeration: complete episodes under root, by relative path."""
    out = []
    for p in sorted(root.rglob("*.h5"), key=lambda q: q.relative_to(root).as_posix()):
        try:
            with h5py.File(p, "r") as f:
                if f.attrs.get("format") == "simgen-episode" and bool(f.attrs.get("complete")):
                    out.append((p.relative_to(root).as_posix(), p))
        except OSError:
            pass
    return out


def test_frames_equal_episode_reads(batch):
    """Every frame, every field, through the dataset equals the same frame read with Episode's own methods."""
    ds = FrameDataset(batch, fields="all")
    files = episode_files(batch)
    expected_len = 0
    for _, p in files:
        with Episode(p) as ep:
            expected_len += ep.n_frames
    assert len(ds) == expected_len == 2 * 14 + 2 * 6
    i = 0
    for rel, p in files:
        with Episode(p) as ep:
            for k in range(ep.n_frames):
                s = ds[i]
                assert (s["episode"], s["frame"], s["index"], s["global_index"]) == (rel, k, i, i)
                cam = ep.camera("front", k)
                for key in ("rgb", "depth", "semantic", "instance", "K"):
                    np.testing.assert_array_equal(s[f"front/{key}"], cam[key])
                lid = ep.lidar("lidar_top", k)
                for key, src in (("xyz", "xyz"), ("intensity", "intensity"), ("point_semantic", "semantic"),
                                 ("point_instance", "instance"), ("point_time", "time_s"),
                                 ("point_channel", "channel"), ("false_return", "false_return")):
                    np.testing.assert_array_equal(s[f"lidar_top/{key}"], lid[src])
                b = ep.boxes(k)
                sel = [a for a in range(len(b["id"])) if a != 0 and b["seen"][a]]
                np.testing.assert_array_equal(s["boxes/id"], b["id"][sel])
                np.testing.assert_array_equal(s["boxes/center"], b["center_ego"][sel])
                np.testing.assert_array_equal(s["boxes/yaw"], b["yaw_ego"][sel])
                np.testing.assert_array_equal(s["boxes/velocity"], b["velocity_ego"][sel])
                np.testing.assert_array_equal(s["boxes/size"], b["size"][sel].astype(np.float32))
                assert list(s["boxes/kind"]) == [b["kind"][a] for a in sel]
                lab = ep.labels("front", k)
                np.testing.assert_array_equal(s["front/bbox"], lab["bbox_mask"][sel])
                np.testing.assert_array_equal(s["front/visible_fraction"], lab["visible_fraction"][sel])
                np.testing.assert_array_equal(s["front/occlusion"], lab["occlusion"][sel])
                np.testing.assert_array_equal(s["lidar_top/n_points"], ep.labels("lidar_top", k)["n_points"][sel])
                np.testing.assert_array_equal(s["lidar_top/T_ego_from_sensor"], ep.f["sensors/lidar_top/T_ego_from_sensor"][:])
                np.testing.assert_array_equal(s["T_world_from_ego"], ep.f["frames/T_world_from_ego"][k])
                i += 1
    assert i == len(ds)


def test_boxes_are_in_the_ego_frame(batch):
    """The documented frame: ego-frame centre = inverse(T_world_from_ego) applied to the world-frame centre."""
    ds = FrameDataset(batch, fields=("boxes",), only_seen=False)
    rel, p = episode_files(batch)[0]
    with Episode(p) as ep:
        for k in (0, ep.n_frames - 1):
            s = ds[k]
            cw = ep.f["labels/objects/center_world"][k, 1:].astype(float)
            T = ep.f["frames/T_world_from_ego"][k]
            ce = (np.linalg.inv(T) @ np.c_[cw, np.ones(len(cw))].T).T[:, :3]
            np.testing.assert_allclose(s["boxes/center"], ce, atol=2e-3)


def test_reads_only_the_fields_asked_for(batch, tmp_path):
    """With depth/semantic/instance chunks destroyed, an rgb-only dataset still reads every frame cleanly;
    asking for depth then fails on those frames."""
    root = tmp_path / "nodepth"
    shutil.copytree(batch / "lead", root)
    p = root / "episodes" / "episode_000000.h5"
    with h5py.File(p, "r") as f:
        spots = []
        for key in ("depth", "semantic", "instance"):
            ds = f[f"sensors/front/{key}"]
            for c in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(c)
                spots.append((info.byte_offset, info.size))
        rgb = f["sensors/front/rgb"][:]
    with open(p, "r+b") as fh:
        for off, size in spots:
            fh.seek(off)
            fh.write(b"\xff" * size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = FrameDataset(root, fields=("rgb",))
        got = [ds[i] for i in range(len(ds))]
    assert not any(k.endswith(("/depth", "/semantic", "/instance")) for k in got[0])
    for k in range(rgb.shape[0]):
        np.testing.assert_array_equal(got[k]["front/rgb"], rgb[k])
    ds_depth = FrameDataset(root, fields=("depth",))
    with pytest.warns(FrameReadWarning, match="episode_000000.h5"):
        assert ds_depth[0] is None


def brute_force(root: Path, cls, max_vis, max_dist, min_pts=None, params=None, min_actors=1, min_vis=None) -> set:
    """(rel, frame) where at least min_actors non-ego actors satisfy everything, scanned with Episode, actor by actor."""
    hits = set()
    for rel, p in episode_files(root):
        with Episode(p) as ep:
            par = json.loads(ep.f.attrs["parameters_json"])
            if params:
                if any(name not in par or not (lo <= par[name] <= hi) for name, (lo, hi) in params.items()):
                    continue
            for k in range(ep.n_frames):
                b = ep.boxes(k)
                vis = ep.labels("front", k)["visible_fraction"]
                pts = ep.labels("lidar_top", k)["n_points"]
                n = 0
                for a in range(1, len(b["id"])):
                    if cls is not None and b["kind"][a] not in cls:
                        continue
                    dist = float(np.sqrt(sum(float(x) ** 2 for x in b["center_ego"][a])))
                    if max_dist is not None and dist > max_dist:
                        continue
                    if max_vis is not None and not (vis[a] <= max_vis):  # NaN: outside the view -> no match
                        continue
                    if min_vis is not None and not (vis[a] >= min_vis):
                        continue
                    if min_pts is not None and pts[a] < min_pts:
                        continue
                    n += 1
                if n >= min_actors:
                    hits.add((rel, k))
    return hits


def test_filters_match_a_brute_force_scan(batch):
    """'A pedestrian more than half occluded within 33 m' and others: exactly the frames a scan finds."""
    flt = FrameFilter(classes=("pedestrian",), max_visible=0.5, max_distance=33.0)
    ds = FrameDataset(batch, fields=(), filters=flt)
    got = {ds.locate(i) for i in range(len(ds))}
    want = brute_force(batch, {"pedestrian"}, 0.5, 33.0)
    assert got == want
    assert 0 < len(got) < 40  # the filter is selective on this data, so the comparison means something

    seen_cars = FrameFilter(classes=("car",), min_visible=0.3, max_distance=40.0)
    ds = FrameDataset(batch, fields=(), filters=seen_cars)
    got = {ds.locate(i) for i in range(len(ds))}
    assert got == brute_force(batch, {"car"}, None, 40.0, min_vis=0.3)
    assert 0 < len(got) < 40
    assert [ds[i]["frame"] for i in range(len(ds))] == [ds.locate(i)[1] for i in range(len(ds))]

    cars = FrameFilter(classes=("car", "van"), min_points=20, min_actors=2)
    ds = FrameDataset(batch, fields=(), filters=cars)
    assert {ds.locate(i) for i in range(len(ds))} == brute_force(batch, {"car", "van"}, None, None, min_pts=20,
                                                                  min_actors=2)
    with Episode(episode_files(batch)[0][1]) as ep:
        name, v = next((n, v) for n, v in json.loads(ep.f.attrs["parameters_json"]).items()
                       if isinstance(v, float))
    by_param = FrameFilter(params={name: (v - 1e-9, v + 1e-9)})
    ds = FrameDataset(batch, fields=(), filters=by_param)
    assert {ds.locate(i) for i in range(len(ds))} == brute_force(batch, None, None, None,
                                                                  params={name: (v - 1e-9, v + 1e-9)})
    both = FrameDataset(batch, fields=(), filters=[flt, by_param])
    assert {both.locate(i) for i in range(len(both))} == want & brute_force(
        batch, None, None, None, params={name: (v - 1e-9, v + 1e-9)})


def _index_and_checksum(s):
    return s["index"], int(s["front/rgb"].sum()), len(s["lidar_top/xyz"])


def test_two_worker_processes_see_every_index_once(batch):
    torch_data = pytest.importorskip("torch.utils.data")
    ds = FrameDataset(batch, fields=("rgb", "points"))
    ds[3]  # the parent holds open HDF5 handles now; forked workers must open their own
    assert ds._open
    dl = torch_data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=_index_and_checksum,
                               sampler=ds.sampler(seed=4))
    seen = list(dl)
    assert sorted(i for i, _, _ in seen) == list(range(len(ds)))
    ref = {i: (int(ds[i]["front/rgb"].sum()), len(ds[i]["lidar_top/xyz"])) for i in range(len(ds))}
    assert {i: (c, n) for i, c, n in seen} == ref


def test_two_plain_processes_see_every_index_once(batch):
    """No torch: the dataset pickles to worker processes (before and after use) and they read what we read."""
    import multiprocessing as mp

    ds = FrameDataset(batch, fields=("rgb", "points"))
    first = _index_and_checksum(ds[0])  # used: it now holds open HDF5 handles
    blob = pickle.dumps(ds)  # ... which never travel
    assert pickle.loads(blob)._open == {}
    with mp.get_context("spawn").Pool(2) as pool:
        parts = pool.map(_read_share, [(blob, w, 2) for w in range(2)])
    seen = [x for part in parts for x in part]
    assert sorted(i for i, _, _ in seen) == list(range(len(ds)))
    assert dict((i, (c, n)) for i, c, n in seen)[0] == first[1:]


def _read_share(args):
    blob, w, n = args
    ds = pickle.loads(blob)
    return [_index_and_checksum(ds[i]) for i in range(w, len(ds), n)]


def test_pickle_before_and_after_use(batch):
    ds = FrameDataset(batch, fields=("rgb", "boxes"))
    before = pickle.loads(pickle.dumps(ds))
    a = ds[5]
    assert ds._open  # handles are held now
    after = pickle.loads(pickle.dumps(ds))
    for other in (before, after):
        b = other[5]
        np.testing.assert_array_equal(a["front/rgb"], b["front/rgb"])
        np.testing.assert_array_equal(a["boxes/center"], b["boxes/center"])


def test_bad_episodes_are_skipped_with_one_warning(with_decoys, batch):
    with pytest.warns(SkippedEpisodeWarning) as rec:
        ds = FrameDataset(with_decoys, fields=("rgb",))
    assert len(rec) == 1
    msg = str(rec[0].message)
    for name in ("incomplete.h5", "notes.h5", "truncated.h5"):
        assert name in msg
    assert "partial" not in msg  # never a candidate
    assert len(ds) == len(FrameDataset(batch, fields=("rgb",)))
    assert len(ds.skipped) == 3
    with pytest.raises(InputError, match="incomplete.h5"):
        FrameDataset(with_decoys, fields=("rgb",), strict=True)


def test_damaged_chunk_mid_epoch_gives_none_and_one_warning(batch, tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(batch / "lead", root)
    p = root / "episodes" / "episode_000001.h5"
    with h5py.File(p, "r") as f:
        info = f["sensors/front/rgb"].id.get_chunk_info(2)  # frame 2
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset + 16)
        fh.write(b"\x00\xff" * 64)
    ds = FrameDataset(root, fields=("rgb", "points"))
    i_bad = [i for i in range(len(ds)) if ds.locate(i) == ("episodes/episode_000001.h5", 2)][0]
    with pytest.warns(FrameReadWarning, match="episode_000001.h5 frame 2") as rec:
        out = [ds[i] for i in range(len(ds))]
    assert len(rec) == 1
    assert [i for i, s in enumerate(out) if s is None] == [i_bad]
    batch_ = collate(out[i_bad - 1:i_bad + 2])
    assert list(batch_["index"]) == [i_bad - 1, i_bad + 1]
    strict = FrameDataset(root, fields=("rgb",), strict=True)
    with pytest.raises(InputError, match="episode_000001.h5"):
        strict[i_bad]


def test_shuffling_is_deterministic(batch):
    a = FrameDataset(batch, fields=())
    b = FrameDataset(batch, fields=())
    p = a.permutation(seed=7, epoch=1)
    assert sorted(p.tolist()) == list(range(len(a)))
    np.testing.assert_array_equal(p, b.permutation(seed=7, epoch=1))
    assert p.tolist() != a.permutation(seed=7, epoch=2).tolist()
    assert p.tolist() != a.permutation(seed=8, epoch=1).tolist()
    s = b.sampler(seed=7)
    s.set_epoch(1)
    assert list(s) == p.tolist() and len(s) == len(a)


def test_split_by_episode_without_leakage_and_as_the_exporters_split(batch):
    from annotators.export.common import find_episodes, split_of

    full = FrameDataset(batch, fields=())
    tr = FrameDataset(batch, fields=(), split="train", val_fraction=0.25)
    va = FrameDataset(batch, fields=(), split="val", val_fraction=0.25)
    ep_tr = {tr.locate(i)[0] for i in range(len(tr))}
    ep_va = {va.locate(i)[0] for i in range(len(va))}
    assert ep_tr and ep_va and not ep_tr & ep_va
    assert len(tr) + len(va) == len(full)
    g_tr = {tr[i]["global_index"] for i in range(len(tr))}
    g_va = {va[i]["global_index"] for i in range(len(va))}
    assert g_tr | g_va == set(range(len(full))) and not g_tr & g_va
    refs, _ = find_episodes(batch)  # what `simgen export --val-fraction 0.25` assigns
    exporter = dict(zip([r.rel for r in refs], split_of(len(refs), 0.25)))
    assert tr.episode_split() == exporter
    assert {e for e, s in exporter.items() if s == "val"} == ep_va


def test_collate_keeps_every_row_with_its_sample(batch):
    ds = FrameDataset(batch, fields=("rgb", "points", "boxes", "camera_labels"))
    samples = [ds[i] for i in (0, 11, 25)]
    out = collate(samples + [None])
    assert out["front/rgb"].shape == (3,) + samples[0]["front/rgb"].shape
    for b, s in enumerate(samples):
        np.testing.assert_array_equal(out["front/rgb"][b], s["front/rgb"])
        m = out["lidar_top/batch"] == b
        np.testing.assert_array_equal(out["lidar_top/xyz"][m], s["lidar_top/xyz"])
        np.testing.assert_array_equal(out["lidar_top/intensity"][m], s["lidar_top/intensity"])
        m = out["boxes/batch"] == b
        np.testing.assert_array_equal(out["boxes/center"][m], s["boxes/center"])
        np.testing.assert_array_equal(out["front/bbox"][m], s["front/bbox"])
        assert list(out["boxes/kind"][m]) == list(s["boxes/kind"])
    assert out["episode"] == [s["episode"] for s in samples]


@pytest.mark.parametrize("kw, key", [
    (dict(fields=("rgb", "lidar")), "fields"),
    (dict(sensors=("rear",)), "sensors"),
    (dict(filters=FrameFilter(classes=("dragon",))), "filters.classes"),
    (dict(filters=FrameFilter(params={"no_such_parameter": 1})), "filters.params"),
    (dict(filters=FrameFilter(max_visible=1.5)), "filters.max_visible"),
    (dict(filters=FrameFilter(min_visible=0.2, camera="rear")), "filters.camera"),
    (dict(split="test"), "split"),
    (dict(split="val", val_fraction=1.0), "val_fraction"),
])
def test_bad_arguments_are_refused_naming_the_key(batch, kw, key):
    with pytest.raises(InputError) as e:
        FrameDataset(batch, **kw)
    assert e.value.key == key and len(str(e.value).splitlines()) == 1


def test_writer_lz4_chunks_decode_through_hdf5s_own_filter(tmp_path):
    """issue 17 (storage): chunks from the writer's thread-pool encoder (direct chunk writes) decode through
    HDF5's shuffle + LZ4 filter pipeline (hdf5plugin) to the original values, for compressible and incompressible
    data, and carry the same framing header as the chunks the filter itself writes."""
    from simgen.io.episode import _IMG, _encode_chunk

    rng = np.random.default_rng(1)
    arrays = {"noise_u8": rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8),
              "smooth_f32": np.tile(np.linspace(0, 50, 64, dtype=np.float32), (2, 48, 1)),
              "ids_u16": rng.integers(0, 4, (2, 48, 64)).astype(np.uint16),
              "noise_f64": rng.normal(size=(2, 3000))}
    with h5py.File(tmp_path / "c.h5", "w") as f:
        for name, a in arrays.items():
            ds = f.create_dataset(name, shape=a.shape, dtype=a.dtype, chunks=(1,) + a.shape[1:], **_IMG)
            ds[1] = a[1]  # through HDF5's filter pipeline
            ds.id.write_direct_chunk((0,) * a.ndim, _encode_chunk(a[0]))  # through the writer's encoder
            by_filter = ds.id.read_direct_chunk((1,) + (0,) * (a.ndim - 1))[1]
            assert by_filter[:12] == _encode_chunk(a[1])[:12]  # original size, block size
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for name, a in arrays.items():
            np.testing.assert_array_equal(f[name][:], a)
            assert f[name].id.read_direct_chunk((0,) * a.ndim)[1] == _encode_chunk(a[0])
    assert len(_encode_chunk(arrays["noise_u8"][0])) == arrays["noise_u8"][0].nbytes + 16  # stored, not grown


def test_loader_bench_runs_on_a_folder(batch, capsys):
    from simgen.cli import main

    assert main(["loader-bench", "--data", str(batch), "--passes", "1", "--repeats", "1", "--workers", "1",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res["loaders"]) == {"rgb/1w", "rgb+lidar+boxes/1w", "all/1w"}
    assert res["frames"] == 40 and res["cores"] >= 1
