"""COCO instance segmentation layout: ``images/CAMERA/EEEE_FFFFFF.png`` and
``annotations/instances_{train,val}.json``.

Every camera of the rig (or only ``--camera``) at every exported frame is one COCO image (episode ``EEEE`` in path
order, frame ``FFFFFF``); the train/val split is by episode.  An object is annotated in an image when it has visible
pixels there, its kind maps to a category (class map ``coco`` section) and it passes the filters.

- ``segmentation``: the visible instance mask as compressed RLE (pycocotools ``encode`` of the Fortran-ordered
  mask; ``counts`` decoded to text), ``area`` its pixel count, ``bbox`` [x, y, w, h] its tight box in COCO's pixel
  convention (pixel i spans [i, i+1)), ``iscrowd`` 0.
- Extra fields (ignored by COCO tools): ``visible_fraction`` (visible / amodal pixels), ``occlusion`` (KITTI
  level 0-3), ``truncation``, ``amodal_bbox`` (the projected 3-D box clipped to the image, [x, y, w, h]),
  ``num_lidar_pts``, ``track_id`` (simgen actor id, stable across the episode's frames) and ``kind``.
- Images carry ``camera``, ``episode`` (index), ``frame`` and ``time_s``.
- Categories: official COCO ids for COCO names (person 1, bicycle 2, car 3, motorcycle 4, bus 6, train 7,
  truck 8, dog 18, sports ball 37), other names from 91 up in alphabetical order.

The JSON is streamed: images and annotations go to spool files as they are made and are joined at the end, so
memory does not grow with the number of frames.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

from simgen.errors import InputError

from annotators.export.common import EpisodeReader, ImageWriter, check_sensor, jnum
from annotators.export.objects import EpisodeObjects

OWNED = ["images", "annotations"]
CLASS_SECTION = "coco"
OPTIONS = ()
COCO_IDS = {"person": (1, "person"), "bicycle": (2, "vehicle"), "car": (3, "vehicle"), "motorcycle": (4, "vehicle"),
            "bus": (6, "vehicle"), "train": (7, "vehicle"), "truck": (8, "vehicle"), "dog": (18, "animal"), "sports ball": (37, "sports")}


def _mask_api():
    try:
        from pycocotools import mask as mask_utils
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError("the coco format needs pycocotools: pip install pycocotools", key="--format") from None
    return mask_utils


def categories(class_map: dict, filters) -> list[dict]:
    names = sorted({n for kind, n in class_map.items() if n is not None and filters.class_ok(kind, n)})
    custom = [n for n in names if n not in COCO_IDS]
    out = [{"id": COCO_IDS[n][0], "name": n, "supercategory": COCO_IDS[n][1]} for n in names if n in COCO_IDS]
    out += [{"id": 91 + i, "name": n, "supercategory": "object"} for i, n in enumerate(custom)]
    return sorted(out, key=lambda c: c["id"])


def validate(ctx) -> int:
    _mask_api()
    total = 0
    for ref in ctx.episodes:
        with EpisodeReader(ref) as r:
            check_sensor(r, ctx.camera, "camera", required=True, option="--camera")
            if ctx.lidar is not None or ctx.filters.min_points is not None:
                check_sensor(r, ctx.lidar, "lidar", required=True, option="--lidar")
            total += len(ctx.frames(r.n))
    return total


def _xywh(b) -> list:
    return [jnum(b[0], 3), jnum(b[1], 3), jnum(b[2] - b[0], 3), jnum(b[3] - b[1], 3)]


class _Spool:
    def __init__(self, path):
        self.path, self.fh, self.n = path, open(path, "w", encoding="utf-8"), 0

    def add(self, rec: dict) -> None:
        self.fh.write(("" if self.n == 0 else ",\n") + json.dumps(rec, separators=(",", ":")))
        self.n += 1


def run(ctx) -> dict:
    mask_utils = _mask_api()
    out = ctx.out
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    cats = categories(ctx.class_map, ctx.filters)
    cat_id = {c["name"]: c["id"] for c in cats}
    spools = {s: (_Spool(out / "annotations" / f".{s}_images.partial"), _Spool(out / "annotations" / f".{s}_anns.partial"))
              for s in ("train", "val")}
    image_id = ann_id = 0
    images = ImageWriter()
    try:
        for e, (ref, split) in enumerate(zip(ctx.episodes, ctx.splits)):
            imgs, anns = spools[split]
            with EpisodeReader(ref) as r:
                cams = [ctx.camera] if ctx.camera else list(r.cameras)
                for cam in cams:
                    check_sensor(r, cam, "camera", required=True, option="--camera")
                    (out / "images" / cam).mkdir(parents=True, exist_ok=True)
                lidar = check_sensor(r, ctx.lidar, "lidar", required=False, option="--lidar")
                objects = EpisodeObjects(r, class_map=ctx.class_map, filters=ctx.filters, cameras=cams, lidar=lidar)
                for k in ctx.frames(r.n):
                    t = objects.frame(k)
                    for cam in cams:
                        W, H = r.image_size(cam)
                        fname = f"images/{cam}/{e:04d}_{k:06d}.png"
                        images.write(out / fname, r.rgb(cam, k), ".png")
                        image_id += 1
                        imgs.add({"id": image_id, "file_name": fname, "width": W, "height": H, "camera": cam,
                                  "episode": e, "frame": int(k), "time_s": jnum(r.time_s(k), 6)})
                        c = t.cams[cam]
                        sel = t.indices(c.keep & (c.visible_pixels > 0))
                        if len(sel) == 0:
                            continue
                        inst = r.instance_image(cam, k)
                        for i in sel:
                            rle = mask_utils.encode(np.asfortranarray(inst == t.ids[i], dtype=np.uint8))
                            area = int(mask_utils.area(rle))
                            if area == 0:
                                continue
                            ann_id += 1
                            vf, tr = c.visible_fraction[i], c.truncation[i]
                            anns.add({
                                "id": ann_id, "image_id": image_id, "category_id": cat_id[t.names[i]],
                                "segmentation": {"size": [int(H), int(W)], "counts": rle["counts"].decode("ascii")},
                                "area": area, "bbox": _xywh(c.bbox_mask[i]), "iscrowd": 0,
                                "visible_fraction": None if np.isnan(vf) else jnum(vf, 4),
                                "occlusion": int(c.occlusion[i]),
                                "truncation": None if np.isnan(tr) else jnum(tr, 4),
                                "amodal_bbox": None if np.isnan(c.bbox_proj[i][0]) else _xywh(c.bbox_proj[i]),
                                "num_lidar_pts": int(t.n_points[i]), "track_id": int(t.ids[i]), "kind": t.kinds[i],
                            })
                    ctx.bar.update(1)
        images.close()
        counts = {}
        for s, (imgs, anns) in spools.items():
            imgs.fh.close()
            anns.fh.close()
            _assemble(out / "annotations" / f"instances_{s}.json", cats, imgs.path, anns.path)
            counts[f"{s}_images"], counts[f"{s}_annotations"] = imgs.n, anns.n
    finally:
        images.close()
        for imgs, anns in spools.values():
            for sp in (imgs, anns):
                if not sp.fh.closed:
                    sp.fh.close()
                sp.path.unlink(missing_ok=True)
    return {"images": image_id, "annotations": ann_id, "categories": len(cats), **counts}


def _assemble(path, cats: list, images_spool, anns_spool) -> None:
    """Join the spools into one COCO JSON file without loading them (written as .partial, then renamed)."""
    import simgen

    tmp = path.with_name(path.name + ".partial")
    info = {"description": "simgen synthetic data (COCO instances export)", "version": simgen.__version__,
            "url": "", "contributor": "simgen", "year": 0, "date_created": ""}
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"info":' + json.dumps(info, separators=(",", ":")) + ',"licenses":[],\n"categories":'
                 + json.dumps(cats, separators=(",", ":")) + ',\n"images":[\n')
        with open(images_spool, encoding="utf-8") as src:
            shutil.copyfileobj(src, fh)
        fh.write('\n],\n"annotations":[\n')
        with open(anns_spool, encoding="utf-8") as src:
            shutil.copyfileobj(src, fh)
        fh.write("\n]}\n")
    os.replace(tmp, path)
