"""MCAP exporter: one ``.mcap`` log per episode, for Foxglove, ROS 2 tools and anything else that reads MCAP.

Every message is stamped with the simulation time of its frame (log and publish time = ``frames/time_s`` in
nanoseconds, the header/timestamp field the same), so all topics line up on one timeline.  Two encodings:

- ``protobuf`` (default): Foxglove's well-known schemas (``foxglove-schemas-protobuf``, written with
  ``mcap-protobuf-support``), plus two small simgen schemas (``simgen.Criticality``, ``simgen.Event``) built at
  import time; Foxglove shows and plots all of them without configuration.
- ``ros2``: CDR-encoded ROS 2 messages (``sensor_msgs``, ``tf2_msgs``, ``visualization_msgs``,
  ``foxglove_msgs/ImageAnnotations``, ``simgen_msgs``) written with ``mcap-ros2-support`` from the message
  definitions in :mod:`annotators.export.ros2_msgs` (no ROS installation needed).

Topics, frames and encodings are documented in docs/export.md ("MCAP").  Files are streamed frame by frame
(one frame's images and points in memory), written as ``NAME.mcap.partial`` and renamed when complete, and are
byte-identical for the same input and options.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from annotators.export.common import EpisodeReader, count_frames, encode_image, opencv_K, quat_wxyz
from annotators.export.objects import EpisodeObjects
from simgen.errors import InputError
from simgen.geometry import T_BODY_FROM_OPTICAL

OPTIONS = ("encoding", "lossless")
CLASS_SECTION = None
ENCODINGS = ("protobuf", "ros2")

# One LiDAR return as stored in the PointCloud / PointCloud2 data (little-endian, 28 bytes).
POINT_FIELDS = (("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 12), ("time", "<f4", 16),
                ("instance", "<u4", 20), ("channel", "<u2", 24), ("semantic", "u1", 26))
POINT_DTYPE = np.dtype({"names": [f[0] for f in POINT_FIELDS], "formats": [f[1] for f in POINT_FIELDS],
                        "offsets": [f[2] for f in POINT_FIELDS], "itemsize": 28})
_PNG = None  # cv2 PNG parameters, set on first use


def mcap_name(ref) -> str:
    """Output path (relative to --out) of an episode: its path under the input with ``.mcap`` for ``.h5``."""
    return Path(ref.rel).with_suffix(".mcap").as_posix()


def owned(ctx) -> list[str]:
    return sorted({mcap_name(r).split("/")[0] for r in ctx.episodes})


def validate(ctx) -> int:
    enc = ctx.options.setdefault("encoding", "protobuf")
    if enc not in ENCODINGS:
        raise InputError(f"got {enc!r}; allowed: {', '.join(ENCODINGS)}", key="--encoding")
    ctx.options["lossless"] = bool(ctx.options.get("lossless", False))
    return count_frames(ctx, camera=False, lidar=False)


def run(ctx) -> dict:
    counts = {"episodes": 0, "frames": 0, "messages": 0}
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="simgen-mcap") as pool:
        for ref in ctx.episodes:
            path = ctx.out / mcap_name(ref)
            path.parent.mkdir(parents=True, exist_ok=True)
            n_frames, n_msgs = write_episode(ref, path, ctx, pool)
            counts["episodes"] += 1
            counts["frames"] += n_frames
            counts["messages"] += n_msgs
    return counts


# ------------------------------------------------------------------------------------------ per-frame content
def to_ns(t: float) -> int:
    return int(round(float(t) * 1e9))


def png(img: np.ndarray) -> bytes:
    """Lossless PNG of a mono8, mono16 or RGB image (deterministic settings, as the other exporters use)."""
    import cv2

    global _PNG
    if _PNG is None:
        _PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if img.ndim == 3:
        return encode_image(img, ".png")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), _PNG)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def depth_mm(depth: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres; 0 where there is no finite depth or it exceeds 65.535 m (the ROS
    16UC1 convention for 'no data')."""
    d = np.asarray(depth, np.float64)
    mm = np.round(np.where(np.isfinite(d), d, 0.0) * 1000.0)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)


def cloud_array(ld: dict, t: float) -> np.ndarray:
    """Structured (N,) array of :data:`POINT_DTYPE`: point i of the episode's frame, ``time`` relative to ``t``."""
    n = len(ld["xyz"])
    a = np.zeros(n, POINT_DTYPE)
    xyz = np.asarray(ld["xyz"], np.float64)
    a["x"], a["y"], a["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    a["intensity"] = ld["intensity"]
    a["time"] = np.asarray(ld["time_s"], np.float64) - float(t)
    a["instance"] = ld["instance"]
    a["channel"] = ld["channel"]
    a["semantic"] = ld["semantic"]
    return a


class _Episode:
    """Per-episode constants and the per-frame gathering shared by both encodings."""

    def __init__(self, r: EpisodeReader, ctx):
        from simgen.classes import CLASS_NAMES, PALETTE

        self.r, self.ctx = r, ctx
        f = r.f
        self.cams = [ctx.camera] if ctx.camera else list(r.cameras)
        self.lidars = [ctx.lidar] if ctx.lidar else list(r.lidars)
        self.semantic = f["actors/semantic"][:].astype(int)
        self.colour = PALETTE[self.semantic].astype(np.float64) / 255.0
        self.class_name = [CLASS_NAMES.get(int(s), str(int(s))) for s in self.semantic]
        self.palette = PALETTE
        self.mounts = {s: r.T_ego_from_sensor(s) for s in self.cams + self.lidars}
        self.sizes = {c: r.image_size(c) for c in self.cams}
        self.dist = {}
        for c in self.cams:
            d = f[f"sensors/{c}"].attrs.get("distortion")
            self.dist[c] = [float(v) for v in (np.zeros(5) if d is None else np.asarray(d, float).ravel())]
        self.crit = "criticality" in f
        self.has_accel = self.crit and "ego_accel_mps2" in f["criticality"]
        # small tables, read once
        self.ev_frame = f["events/frame"][:] if "events/frame" in f else np.zeros(0, int)
        self.ev_time = f["events/time_s"][:] if "events/time_s" in f else np.zeros(0)
        self.ev_actor = [str(s) for s in f["events/actor"].asstr()[:]] if "events/actor" in f else []
        self.ev_name = [str(s) for s in f["events/name"].asstr()[:]] if "events/name" in f else []
        self.coll = f["collisions"][:] if "collisions" in f else np.zeros((0, 3), int)
        self.name_of = {int(i): n for i, n in zip(r.actor_ids, r.names)}
        # the export's object table: --classes and the filters (best camera, the first LiDAR), applied once
        self.objects = EpisodeObjects(r, class_map=None, filters=ctx.filters, cameras=self.cams,
                                      lidar=self.lidars[0] if self.lidars else None)

    def tf(self, k: int) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, T_parent_from_child): world->ego at frame k, ego->sensor mounts, camera->optical."""
        out = [("world", "ego", np.asarray(self.r.T_world_from_ego(k), float))]
        out += [("ego", s, self.mounts[s]) for s in self.cams + self.lidars]
        out += [(c, f"{c}_optical", T_BODY_FROM_OPTICAL) for c in self.cams]
        return out

    def boxes(self, k: int) -> dict:
        """Per-actor box table at frame k with the export filters applied (``keep``; the ego is always kept)."""
        r = self.r
        t = self.objects.frame(k)
        seen = np.asarray(r.row("labels/objects/seen", k), bool)
        vis = {c: t.cams[c].visible_fraction.astype(np.float64) for c in self.cams}
        pts = {l: r.row(f"labels/{l}/n_points", k).astype(np.int64) for l in self.lidars}
        keep = t.keep.copy()
        if r.A:
            keep[0] = True
        return {"center": t.center_world, "yaw": t.yaw_world, "quat": t.quat_world, "velocity": t.velocity_world,
                "seen": seen,
                "vis": vis, "pts": pts, "keep": keep}

    def boxes2d(self, cam: str, k: int, keep: np.ndarray) -> list[tuple[int, np.ndarray, float]]:
        """(actor index, visible-mask box x0, y0, x1, y1 in simgen's continuous pixels, visible fraction) of the
        actors with visible pixels in ``cam`` that pass the filters."""
        lab = self.r.labels(cam, k, ("bbox_mask", "visible_pixels", "visible_fraction"))
        return [(j, np.asarray(lab["bbox_mask"][j], float), float(lab["visible_fraction"][j]))
                for j in range(1, self.r.A) if lab["visible_pixels"][j] > 0 and keep[j]]

    def criticality(self, k: int) -> dict | None:
        if not self.crit:
            return None
        r, f = self.r, self.r.f
        ttc = np.asarray(r.row("criticality/ttc_s", k), float)
        gap = np.asarray(r.row("criticality/gap_m", k), float)
        acc = float(r.row("criticality/ego_accel_mps2", k)) if self.has_accel else float("nan")
        jerk = float(r.row("criticality/ego_jerk_mps3", k)) if "ego_jerk_mps3" in f["criticality"] else float("nan")
        v = np.asarray(r.row("actors/velocity", k), float)
        others = np.arange(1, r.A)
        fin_t = ttc[others][np.isfinite(ttc[others])]
        g_o = np.where(np.isfinite(gap[others]), gap[others], np.inf)
        fin_g = g_o[np.isfinite(g_o)]
        closest = r.names[int(others[np.argmin(g_o)])] if len(fin_g) else ""
        return {"frame": int(k), "ego_speed_mps": float(np.linalg.norm(v[0])) if r.A else 0.0,
                "ego_accel_mps2": acc, "ego_jerk_mps3": jerk,
                "min_ttc_s": float(fin_t.min()) if len(fin_t) else float("inf"),
                "min_gap_m": float(fin_g.min()) if len(fin_g) else float("inf"),
                "closest_actor": closest, "collision": bool(np.any(self.coll[:, 0] == k)) if len(self.coll) else False,
                "actors": [{"id": int(r.actor_ids[j]), "name": r.names[j], "kind": r.kinds[j],
                            "ttc_s": float(ttc[j]), "gap_m": float(gap[j])} for j in others]}

    def events(self, k: int, t: float) -> list[tuple[float, dict]]:
        """(time_s, event) for the scenario events and collisions of frame k."""
        out = [(float(self.ev_time[i]), {"frame": int(k), "name": self.ev_name[i], "actor": self.ev_actor[i],
                                         "other": ""})
               for i in np.nonzero(self.ev_frame == k)[0]]
        for _, a, b in self.coll[self.coll[:, 0] == k] if len(self.coll) else ():
            out.append((float(t), {"frame": int(k), "name": "collision", "actor": self.name_of.get(int(a), str(a)),
                                   "other": self.name_of.get(int(b), str(b))}))
        return out


# ------------------------------------------------------------------------------------------------- sinks
def _tq(T: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    w, x, y, z = (float(v) for v in quat_wxyz(np.asarray(T)[:3, :3]))
    return np.asarray(T, float)[:3, 3], (x, y, z, w)


class _Sink:
    def __init__(self):
        self.n = 0
        self.seq: dict[str, int] = {}

    def _next(self, topic: str) -> int:
        self.n += 1
        s = self.seq[topic] = self.seq.get(topic, -1) + 1
        return s


class ProtobufSink(_Sink):
    """Foxglove well-known schemas, protobuf encoded."""

    def __init__(self, fh, meta: dict):
        super().__init__()
        from foxglove_schemas_protobuf.CameraCalibration_pb2 import CameraCalibration
        from foxglove_schemas_protobuf.Color_pb2 import Color
        from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
        from foxglove_schemas_protobuf.CubePrimitive_pb2 import CubePrimitive
        from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
        from foxglove_schemas_protobuf.FrameTransforms_pb2 import FrameTransforms
        from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
        from foxglove_schemas_protobuf.KeyValuePair_pb2 import KeyValuePair
        from foxglove_schemas_protobuf.PackedElementField_pb2 import PackedElementField
        from foxglove_schemas_protobuf.Point2_pb2 import Point2
        from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud
        from foxglove_schemas_protobuf.PointsAnnotation_pb2 import PointsAnnotation
        from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
        from foxglove_schemas_protobuf.SceneEntity_pb2 import SceneEntity
        from foxglove_schemas_protobuf.SceneEntityDeletion_pb2 import SceneEntityDeletion
        from foxglove_schemas_protobuf.SceneUpdate_pb2 import SceneUpdate
        from foxglove_schemas_protobuf.TextAnnotation_pb2 import TextAnnotation
        from foxglove_schemas_protobuf.TextPrimitive_pb2 import TextPrimitive
        from google.protobuf.timestamp_pb2 import Timestamp
        from mcap_protobuf.writer import Writer

        self.m = dict(CameraCalibration=CameraCalibration, Color=Color, CompressedImage=CompressedImage,
                      CubePrimitive=CubePrimitive, FrameTransform=FrameTransform, FrameTransforms=FrameTransforms,
                      ImageAnnotations=ImageAnnotations, KeyValuePair=KeyValuePair,
                      PackedElementField=PackedElementField, Point2=Point2, PointCloud=PointCloud,
                      PointsAnnotation=PointsAnnotation, RawImage=RawImage, SceneEntity=SceneEntity,
                      SceneEntityDeletion=SceneEntityDeletion, SceneUpdate=SceneUpdate, TextAnnotation=TextAnnotation,
                      TextPrimitive=TextPrimitive, Timestamp=Timestamp)
        self.Criticality, self.ActorCriticality, self.Event = simgen_protos()
        self.w = Writer(fh)
        self.w.add_metadata("simgen", meta)

    def _ts(self, ns: int):
        return self.m["Timestamp"](seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)

    def _put(self, topic: str, msg, ns: int) -> None:
        self.w.write_message(topic, msg, log_time=ns, publish_time=ns, sequence=self._next(topic))

    def tf(self, topic, ns, items):
        m = self.m
        out = m["FrameTransforms"]()
        for parent, child, T in items:
            t, q = _tq(T)
            ft = out.transforms.add(timestamp=self._ts(ns), parent_frame_id=parent, child_frame_id=child)
            ft.translation.x, ft.translation.y, ft.translation.z = (float(v) for v in t)
            ft.rotation.x, ft.rotation.y, ft.rotation.z, ft.rotation.w = q
        self._put(topic, out, ns)

    def compressed(self, topic, ns, frame_id, fmt, data):
        self._put(topic, self.m["CompressedImage"](timestamp=self._ts(ns), frame_id=frame_id, data=data, format=fmt), ns)

    def raw(self, topic, ns, frame_id, width, height, encoding, step, data):
        self._put(topic, self.m["RawImage"](timestamp=self._ts(ns), frame_id=frame_id, width=width, height=height,
                                           encoding=encoding, step=step, data=data), ns)

    def calibration(self, topic, ns, frame_id, width, height, D, K, P):
        self._put(topic, self.m["CameraCalibration"](timestamp=self._ts(ns), frame_id=frame_id, width=width,
                                                    height=height, distortion_model="plumb_bob", D=D, K=K,
                                                    R=[1, 0, 0, 0, 1, 0, 0, 0, 1], P=P), ns)

    def cloud(self, topic, ns, frame_id, arr):
        m = self.m
        types = {"<f4": 7, "<u4": 5, "<u2": 3, "u1": 1}  # foxglove NumericType
        fields = [m["PackedElementField"](name=n, offset=o, type=types[t]) for n, t, o in POINT_FIELDS]
        msg = m["PointCloud"](timestamp=self._ts(ns), frame_id=frame_id, point_stride=POINT_DTYPE.itemsize,
                              fields=fields, data=arr.tobytes())
        msg.pose.orientation.w = 1.0
        self._put(topic, msg, ns)

    def boxes3d(self, topic, ns, ents):
        m = self.m
        upd = m["SceneUpdate"](deletions=[m["SceneEntityDeletion"](timestamp=self._ts(ns), type=1)])  # ALL
        for e in ents:
            ent = upd.entities.add(timestamp=self._ts(ns), frame_id="world", id=e["id"], frame_locked=False)
            for k, v in e["metadata"]:
                ent.metadata.add(key=k, value=v)
            cube = ent.cubes.add()
            cube.pose.position.x, cube.pose.position.y, cube.pose.position.z = e["center"]
            (cube.pose.orientation.x, cube.pose.orientation.y, cube.pose.orientation.z,
             cube.pose.orientation.w) = e["quat"]
            cube.size.x, cube.size.y, cube.size.z = e["size"]
            cube.color.r, cube.color.g, cube.color.b, cube.color.a = e["color"]
            tx = ent.texts.add(billboard=True, font_size=14.0, scale_invariant=True, text=e["label"])
            tx.pose.position.x, tx.pose.position.y, tx.pose.position.z = e["label_at"]
            tx.pose.orientation.w = 1.0
            tx.color.r, tx.color.g, tx.color.b, tx.color.a = 1.0, 1.0, 1.0, 1.0
        self._put(topic, upd, ns)

    def boxes2d(self, topic, ns, boxes):
        m = self.m
        msg = m["ImageAnnotations"]()
        for b in boxes:
            x0, y0, x1, y1 = b["box"]
            pa = msg.points.add(timestamp=self._ts(ns), type=2, thickness=2.0)  # LINE_LOOP
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
                pa.points.add(x=x, y=y)
            pa.outline_color.r, pa.outline_color.g, pa.outline_color.b, pa.outline_color.a = b["color"]
            for k, v in b["metadata"]:
                pa.metadata.add(key=k, value=v)
            ta = msg.texts.add(timestamp=self._ts(ns), text=b["label"], font_size=12.0)
            ta.position.x, ta.position.y = x0, max(0.0, y0 - 14.0)
            ta.text_color.r, ta.text_color.g, ta.text_color.b, ta.text_color.a = 1.0, 1.0, 1.0, 1.0
            ta.background_color.a = 0.6
        self._put(topic, msg, ns)

    def criticality(self, topic, ns, c):
        msg = self.Criticality(timestamp=self._ts(ns), **{k: v for k, v in c.items() if k != "actors"})
        for a in c["actors"]:
            msg.actors.add(**a)
        self._put(topic, msg, ns)

    def event(self, topic, ns, e):
        self._put(topic, self.Event(timestamp=self._ts(ns), **e), ns)

    def finish(self):
        self.w.finish()


_SIMGEN_PROTOS = None


def simgen_protos():
    """Message classes ``simgen.Criticality``, ``simgen.ActorCriticality`` and ``simgen.Event`` (protobuf 3),
    built once from a descriptor so no generated code is needed; the MCAP schema carries the descriptor."""
    global _SIMGEN_PROTOS
    if _SIMGEN_PROTOS is not None:
        return _SIMGEN_PROTOS
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import timestamp_pb2  # noqa: F401  (puts Timestamp in the default pool)

    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="simgen/criticality.proto", package="simgen", syntax="proto3",
                                            dependency=["google/protobuf/timestamp.proto"])

    def msg(name, fields):
        m = fd.message_type.add(name=name)
        for i, (fname, ftype, extra) in enumerate(fields, 1):
            f = m.field.add(name=fname, number=i, type=ftype, label=extra.get("label", F.LABEL_OPTIONAL))
            if "type_name" in extra:
                f.type_name = extra["type_name"]

    ts = {"type_name": ".google.protobuf.Timestamp"}
    msg("ActorCriticality", [("id", F.TYPE_UINT32, {}), ("name", F.TYPE_STRING, {}), ("kind", F.TYPE_STRING, {}),
                             ("ttc_s", F.TYPE_DOUBLE, {}), ("gap_m", F.TYPE_DOUBLE, {})])
    msg("Criticality", [("timestamp", F.TYPE_MESSAGE, ts), ("frame", F.TYPE_UINT32, {}),
                        ("ego_speed_mps", F.TYPE_DOUBLE, {}), ("ego_accel_mps2", F.TYPE_DOUBLE, {}),
                        ("ego_jerk_mps3", F.TYPE_DOUBLE, {}), ("min_ttc_s", F.TYPE_DOUBLE, {}),
                        ("min_gap_m", F.TYPE_DOUBLE, {}), ("closest_actor", F.TYPE_STRING, {}),
                        ("collision", F.TYPE_BOOL, {}),
                        ("actors", F.TYPE_MESSAGE, {"type_name": ".simgen.ActorCriticality",
                                                    "label": F.LABEL_REPEATED})])
    msg("Event", [("timestamp", F.TYPE_MESSAGE, ts), ("frame", F.TYPE_UINT32, {}), ("name", F.TYPE_STRING, {}),
                  ("actor", F.TYPE_STRING, {}), ("other", F.TYPE_STRING, {})])
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(fd.name)
    except KeyError:
        pool.Add(fd)
    _SIMGEN_PROTOS = tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"simgen.{n}"))
                           for n in ("Criticality", "ActorCriticality", "Event"))
    return _SIMGEN_PROTOS


class Ros2Sink(_Sink):
    """ROS 2 messages, CDR encoded, from the definitions in :mod:`annotators.export.ros2_msgs`."""

    def __init__(self, fh, meta: dict):
        super().__init__()
        from mcap_ros2.writer import Writer

        from annotators.export import ros2_msgs

        self.w = Writer(fh)
        self.w.add_metadata("simgen", meta)
        self._schemas: dict = {}
        self._defs = ros2_msgs

    def _schema(self, name: str):
        s = self._schemas.get(name)
        if s is None:
            s = self._schemas[name] = self.w.register_msgdef(self._defs.schema_name(name), self._defs.definition(name))
        return s

    @staticmethod
    def _stamp(ns: int) -> dict:
        return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}

    def _header(self, ns: int, frame_id: str) -> dict:
        return {"stamp": self._stamp(ns), "frame_id": frame_id}

    def _put(self, topic: str, type_name: str, msg: dict, ns: int) -> None:
        self.w.write_message(topic, self._schema(type_name), msg, log_time=ns, publish_time=ns,
                             sequence=self._next(topic))

    def tf(self, topic, ns, items):
        tfs = []
        for parent, child, T in items:
            t, q = _tq(T)
            tfs.append({"header": self._header(ns, parent), "child_frame_id": child,
                        "transform": {"translation": {"x": float(t[0]), "y": float(t[1]), "z": float(t[2])},
                                      "rotation": {"x": q[0], "y": q[1], "z": q[2], "w": q[3]}}})
        self._put(topic, "tf2_msgs/TFMessage", {"transforms": tfs}, ns)

    def compressed(self, topic, ns, frame_id, fmt, data):
        self._put(topic, "sensor_msgs/CompressedImage", {"header": self._header(ns, frame_id), "format": fmt,
                                                         "data": data}, ns)

    def raw(self, topic, ns, frame_id, width, height, encoding, step, data):
        self._put(topic, "sensor_msgs/Image", {"header": self._header(ns, frame_id), "height": height, "width": width,
                                               "encoding": encoding, "is_bigendian": 0, "step": step, "data": data}, ns)

    def calibration(self, topic, ns, frame_id, width, height, D, K, P):
        self._put(topic, "sensor_msgs/CameraInfo",
                  {"header": self._header(ns, frame_id), "height": height, "width": width,
                   "distortion_model": "plumb_bob", "d": list(D), "k": list(K), "r": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                   "p": list(P), "binning_x": 0, "binning_y": 0,
                   "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}}, ns)

    def cloud(self, topic, ns, frame_id, arr):
        from annotators.export.ros2_msgs import POINTFIELD

        types = {"<f4": "float32", "<u4": "uint32", "<u2": "uint16", "u1": "uint8"}
        fields = [{"name": n, "offset": o, "datatype": POINTFIELD[types[t]], "count": 1} for n, t, o in POINT_FIELDS]
        self._put(topic, "sensor_msgs/PointCloud2",
                  {"header": self._header(ns, frame_id), "height": 1, "width": len(arr), "fields": fields,
                   "is_bigendian": False, "point_step": POINT_DTYPE.itemsize,
                   "row_step": POINT_DTYPE.itemsize * len(arr), "data": arr.tobytes(), "is_dense": True}, ns)

    def boxes3d(self, topic, ns, ents):
        hdr = self._header(ns, "world")
        markers = [{"header": hdr, "ns": "", "id": 0, "action": 3}]  # DELETEALL, then this frame's boxes
        for e in ents:
            r, g, b, a = e["color"]
            base = {"header": hdr, "id": int(e["actor_id"]), "action": 0, "frame_locked": False}
            markers.append({**base, "ns": e["kind"], "type": 1,
                            "pose": {"position": dict(zip("xyz", e["center"])),
                                     "orientation": dict(zip("xyzw", e["quat"]))},
                            "scale": dict(zip("xyz", e["size"])), "color": {"r": r, "g": g, "b": b, "a": a}})
            markers.append({**base, "ns": "labels", "type": 9, "text": e["label"] + " " + e["summary"],
                            "pose": {"position": dict(zip("xyz", e["label_at"])), "orientation": {"w": 1.0}},
                            "scale": {"z": 0.6}, "color": {"r": 1.0, "g": 1.0, "b": 1.0, "a": 1.0}})
        self._put(topic, "visualization_msgs/MarkerArray", {"markers": markers}, ns)

    def boxes2d(self, topic, ns, boxes):
        st = self._stamp(ns)
        pts, texts = [], []
        for b in boxes:
            x0, y0, x1, y1 = b["box"]
            r, g, bl, a = b["color"]
            pts.append({"timestamp": st, "type": 2, "thickness": 2.0,
                        "points": [{"x": x, "y": y} for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))],
                        "outline_color": {"r": r, "g": g, "b": bl, "a": a}})
            texts.append({"timestamp": st, "position": {"x": x0, "y": max(0.0, y0 - 14.0)}, "text": b["label"],
                          "font_size": 12.0, "text_color": {"r": 1.0, "g": 1.0, "b": 1.0, "a": 1.0},
                          "background_color": {"a": 0.6}})
        self._put(topic, "foxglove_msgs/ImageAnnotations", {"circles": [], "points": pts, "texts": texts}, ns)

    def criticality(self, topic, ns, c):
        self._put(topic, "simgen_msgs/Criticality", {"header": self._header(ns, "ego"), **c}, ns)

    def event(self, topic, ns, e):
        self._put(topic, "simgen_msgs/Event", {"header": self._header(ns, "world"), **e}, ns)

    def finish(self):
        self.w.finish()


# -------------------------------------------------------------------------------------------------- writing
def topics(cam: str | None = None, lidar: str | None = None) -> dict[str, str]:
    """Topic names (see docs/export.md)."""
    t = {"tf": "/tf", "objects": "/objects", "criticality": "/criticality", "events": "/events"}
    if cam:
        for key in ("image", "camera_info", "semantic", "semantic_color", "instance", "depth", "boxes_2d"):
            t[key] = f"/camera/{cam}/{key}"
    if lidar:
        t["points"] = f"/lidar/{lidar}/points"
    return t


def _fmt(x: float, nd: int = 2) -> str:
    return "nan" if np.isnan(x) else ("inf" if not np.isfinite(x) else f"{x:.{nd}f}")


def write_episode(ref, path: Path, ctx, pool) -> tuple[int, int]:
    """Write one episode's MCAP to ``path`` (via ``path.partial``); returns (frames, messages)."""
    import simgen

    enc = ctx.options.get("encoding", "protobuf")
    lossless = bool(ctx.options.get("lossless", False))
    tmp = path.with_name(path.name + ".partial")
    frames = 0
    with EpisodeReader(ref) as r:
        E = _Episode(r, ctx)
        meta = {"simgen_version": simgen.__version__, "source": ref.rel, "episode_uid": ref.uid,
                "scenario": r.scenario_name, "map": r.map_name, "encoding": enc,
                "rgb": "png" if lossless else "jpeg", "depth": "32FC1 metres" if lossless else "16UC1 png millimetres",
                "deskew": ctx.deskew, "stride": str(ctx.stride), "tick_hz": str(r.tick_hz or "")}
        try:
            with open(tmp, "wb") as fh:
                sink = (Ros2Sink if enc == "ros2" else ProtobufSink)(fh, meta)
                for k in ctx.frames(r.n):
                    _write_frame(E, sink, k, lossless, pool)
                    frames += 1
                    ctx.bar.update(1)
                sink.finish()
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return frames, sink.n


def _write_frame(E: _Episode, sink, k: int, lossless: bool, pool) -> None:
    r = E.r
    t = r.time_s(k)
    ns = to_ns(t)
    T = topics()
    sink.tf(T["tf"], ns, E.tf(k))
    bx = E.boxes(k)
    # camera images: encoded on worker threads (OpenCV releases the GIL), written in a fixed order
    jobs = []
    for c in E.cams:
        rgb = r.rgb(c, k)
        g = r.f[f"sensors/{c}"]
        sem, inst, depth = g["semantic"][k], g["instance"][k], g["depth"][k]
        jobs.append((c, pool.submit(encode_image, rgb, ".png" if lossless else ".jpg"), pool.submit(png, sem),
                     pool.submit(png, E.palette[sem]), pool.submit(png, np.asarray(inst, np.uint16)),
                     None if lossless else pool.submit(lambda d=depth: png(depth_mm(d))),
                     np.ascontiguousarray(depth, "<f4") if lossless else None))
    for c, f_rgb, f_sem, f_semc, f_inst, f_depth, depth in jobs:
        Tc = topics(cam=c)
        opt = f"{c}_optical"
        W, H = E.sizes[c]
        sink.compressed(Tc["image"], ns, opt, "png" if lossless else "jpeg", f_rgb.result())
        K = opencv_K(r.K(c, k))
        P = np.hstack([K, np.zeros((3, 1))])
        sink.calibration(Tc["camera_info"], ns, opt, W, H, E.dist[c], [float(v) for v in K.ravel()],
                         [float(v) for v in P.ravel()])
        sink.compressed(Tc["semantic"], ns, opt, "png", f_sem.result())
        sink.compressed(Tc["semantic_color"], ns, opt, "png", f_semc.result())
        sink.compressed(Tc["instance"], ns, opt, "png", f_inst.result())
        if lossless:
            sink.raw(Tc["depth"], ns, opt, W, H, "32FC1", 4 * W, depth.tobytes())
        else:
            sink.compressed(Tc["depth"], ns, opt, "png", f_depth.result())
        boxes = []
        for j, b, vf in E.boxes2d(c, k, bx["keep"]):
            boxes.append({"box": [float(v) for v in b], "color": (*E.colour[j], 1.0),
                          "label": f"{r.actor_ids[j]} {r.kinds[j]} v{vf:.2f}",
                          "metadata": [("id", str(int(r.actor_ids[j]))), ("name", r.names[j]),
                                       ("class", r.kinds[j]), ("visible_fraction", f"{vf:.3f}")]})
        sink.boxes2d(Tc["boxes_2d"], ns, boxes)
    for l in E.lidars:
        ld = r.lidar(l, k, E.ctx.deskew)
        sink.cloud(topics(lidar=l)["points"], ns, l, cloud_array(ld, t))
    ents = []
    for j in np.nonzero(bx["keep"])[0]:
        c, v = bx["center"][j], bx["velocity"][j]
        qw, qx, qy, qz = (float(x) for x in bx["quat"][j])  # full orientation (pitch and roll on slopes)
        dims = r.dims[j]
        speed = float(np.linalg.norm(v))
        md = [("id", str(int(r.actor_ids[j]))), ("name", r.names[j]), ("class", r.kinds[j]),
              ("semantic", E.class_name[j]), ("is_ego", str(j == 0).lower()), ("seen", str(bool(bx["seen"][j])).lower()),
              ("velocity_x", f"{v[0]:.3f}"), ("velocity_y", f"{v[1]:.3f}"), ("velocity_z", f"{v[2]:.3f}"),
              ("speed_mps", f"{speed:.3f}")]
        md += [(f"visible_fraction.{cam}", _fmt(float(vv[j]), 3)) for cam, vv in bx["vis"].items()]
        md += [(f"points.{lid}", str(int(pp[j]))) for lid, pp in bx["pts"].items()]
        vis = max([float(np.nan_to_num(vv[j], nan=0.0)) for vv in bx["vis"].values()] or [0.0])
        ents.append({"id": str(int(r.actor_ids[j])), "actor_id": int(r.actor_ids[j]), "kind": r.kinds[j],
                     "center": [float(x) for x in c], "quat": (qx, qy, qz, qw), "size": [float(x) for x in dims],
                     "color": (1.0, 1.0, 1.0, 0.25) if j == 0 else (*E.colour[j], 0.45),
                     "label": f"{r.actor_ids[j]} {r.names[j]} ({r.kinds[j]})",
                     "summary": f"{speed:.1f} m/s vis {vis:.2f}",
                     "label_at": [float(c[0]), float(c[1]), float(c[2] + dims[2] / 2 + 0.4)], "metadata": md})
    sink.boxes3d(T["objects"], ns, ents)
    crit = E.criticality(k)
    if crit is not None:
        sink.criticality(T["criticality"], ns, crit)
    for te, ev in E.events(k, t):
        sink.event(T["events"], to_ns(te), ev)
