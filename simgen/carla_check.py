"""``simgen carla-check --host H [--port P]``: what only a live CARLA server can settle, as one command.

It runs for a few minutes against the server and prints a pass/fail report with figures; attach the report
(``--report FILE`` writes it as JSON too) to any bug about the carla backend.  The checks:

- ``connection``: client and server versions (simgen targets 0.9.15 / 0.9.16);
- ``road_tags``: a builtin map generated from its OpenDRIVE export; a camera looking down at the road: the share
  of road pixels per semantic tag (procedural road meshes may carry tag 0), and whether simgen's ground classes
  for generated worlds cover them;
- ``prop_box``: a static prop spawned at yaw 0 and at yaw 30 degrees; the ``bounding_box`` CARLA reports for
  each, and the share of the prop's semantic-LiDAR points inside the box simgen labels (yaw-0 probe dims at the
  placed yaw) and inside the box CARLA reports when taken at face value;
- ``instance_ids``: a car in front of an instance camera: its actor id, the 16-bit id the camera encodes, whether
  ids wrap here (>= 65536), and the share of its pixels simgen's resolver gives the car;
- ``door``: ``open_door`` on a blueprint with ``has_dynamic_doors=true`` (and on one without, if any): depth pixels
  that change in a side view;
- ``frame_matching``: an episode of 200 ticks through the carla backend: every frame's sensor data matched by frame
  id (data discarded as late, duplicates, time-outs);
- ``labels``: a short episode through the runner, and the label consistency checks of the backend contract suite
  (visible <= amodal pixels, 2-D boxes inside projected boxes, LiDAR points of an actor inside its box);
- ``server_loss``: only with a server carla-check launched itself (``--carla-root`` or $CARLA_ROOT, and no server
  answering): the server is killed mid-episode; the loss must be reported as such and the next episode must run
  on a restarted server (figures: seconds to recover).

Everything spawned is destroyed and the world's settings are restored after each check, also when it fails.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("connection", "road_tags", "prop_box", "instance_ids", "door", "frame_matching", "labels", "server_loss")


@dataclass
class CheckResult:
    name: str
    status: str  # pass | fail | skip
    figures: dict = field(default_factory=dict)
    detail: str = ""


# ============================================================================================ a small lab on a server
class _Lab:
    """Synchronous mode on a generated builtin map, things spawned by name, sensors read by frame id; undone on exit."""

    def __init__(self, ctx: "_Context", map_name: str = "straight", dt: float = 0.05):
        self.ctx, self.carla = ctx, ctx.carla
        self.map_name, self.dt = map_name, dt
        self.spawned: list = []
        self.sensors: list = []

    def __enter__(self):
        from simgen.backends.carla.common import substep_settings
        from simgen.world.opendrive import opendrive_xml

        carla = self.carla
        self.client = carla.Client(self.ctx.host, self.ctx.port)
        self.client.set_timeout(self.ctx.timeout_s)
        world = self.client.get_world()
        self.orig = world.get_settings()
        self.world = world
        xodr = opendrive_xml(self.map_name)
        try:
            same = world.get_map().to_opendrive() == xodr
        except Exception:  # noqa: BLE001
            same = False
        if not same:
            params = carla.OpendriveGenerationParameters(
                vertex_distance=2.0, max_road_length=50.0, wall_height=0.0, additional_width=0.0, smooth_junctions=True,
                enable_mesh_visibility=True, enable_pedestrian_navigation=True)
            self.world = self.client.generate_opendrive_world(xodr, params, True)
        st = self.world.get_settings()
        st.synchronous_mode, st.fixed_delta_seconds, st.substepping = True, self.dt, True
        st.max_substep_delta_time, st.max_substeps = substep_settings(self.dt)
        self.world.apply_settings(st)
        self.lib = self.world.get_blueprint_library()
        return self

    def __exit__(self, *exc):
        for s in self.sensors:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - best effort
                pass
        for a in reversed(self.spawned):
            try:
                a.destroy()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.world.apply_settings(self.orig)
        except Exception:  # noqa: BLE001
            pass
        return False

    def spawn(self, bp, x, y, z, yaw_deg=0.0, pitch_deg=0.0):
        """An actor at simgen world (x, y, z), yaw and pitch in simgen convention (degrees; pitch > 0 nose down)."""
        from simgen.backends.carla.common import spawn_or_none
        from simgen.backends.carla_frames import pose_to_carla

        tf = pose_to_carla(x, y, z, math.radians(yaw_deg), self.carla, pitch=math.radians(pitch_deg))
        a = spawn_or_none(self.world, bp, tf, what=bp.id)
        if a is None:
            raise RuntimeError(f"CARLA refused to spawn {bp.id} at ({x}, {y}, {z})")
        self.spawned.append(a)
        return a

    def sensor(self, bp_id, attrs: dict, x, y, z, yaw_deg=0.0, pitch_deg=0.0):
        from simgen.backends.carla.sensors import FrameCollector

        bp = self.lib.find(bp_id)
        for k, v in attrs.items():
            bp.set_attribute(k, str(v))
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", f"simgen/check:{len(self.sensors)}")
        s = self.spawn(bp, x, y, z, yaw_deg, pitch_deg)
        s.collector = FrameCollector(["d"])
        s.listen(s.collector.callback("d"))
        self.sensors.append(s)
        return s

    def tick(self, n: int = 1) -> int:
        for _ in range(n):
            frame = int(self.world.tick(self.ctx.timeout_s))
        return frame

    def read(self, sensor, frame: int):
        return sensor.collector.wait(frame, self.ctx.timeout_s)["d"]


@dataclass
class _Context:
    carla: object
    host: str
    port: int
    timeout_s: float = 20.0
    ticks: int = 200
    server: object = None  # a CarlaServer carla-check launched itself (server_loss check), else None
    label_frames: int = 30


# ============================================================================================ the checks
def check_connection(ctx: _Context) -> CheckResult:
    from simgen.backends.carla.common import SUPPORTED_SERVERS

    c = ctx.carla.Client(ctx.host, ctx.port)
    c.set_timeout(ctx.timeout_s)
    sv, cv = str(c.get_server_version()), str(c.get_client_version())
    m = c.get_world().get_map().name
    ok = sv.startswith(SUPPORTED_SERVERS) and sv == cv
    return CheckResult("connection", "pass" if ok else "fail", {"server": sv, "client": cv, "map": m},
                       "" if ok else f"simgen targets {' / '.join(SUPPORTED_SERVERS)} with matching client and server")


def check_road_tags(ctx: _Context) -> CheckResult:
    from simgen.backends.carla.common import GROUND_CLASSES_GENERATED
    from simgen.backends.carla.sensors import decode_semantic

    with _Lab(ctx) as lab:
        cam = lab.sensor("sensor.camera.semantic_segmentation", {"image_size_x": 200, "image_size_y": 120, "fov": 60},
                         0.0, 0.0, 12.0, pitch_deg=90.0)
        f = lab.tick(3)
        d = lab.read(cam, f)
        tag = decode_semantic(d.raw_data, int(d.height), int(d.width))
    vals, counts = np.unique(tag, return_counts=True)
    share = {int(v): round(float(c) / tag.size, 4) for v, c in zip(vals, counts)}
    ground = float(np.isin(tag, GROUND_CLASSES_GENERATED).mean())
    figures = {"tag_share": share, "untagged_share": share.get(0, 0.0), "road_share": share.get(1, 0.0),
               "ground_share_with_tag0": round(ground, 4)}
    ok = ground >= 0.98
    return CheckResult("road_tags", "pass" if ok else "fail", figures,
                       "" if ok else "surfaces below the camera carry tags simgen does not count as ground on generated worlds")


def _prop_blueprint(lab):
    from simgen.backends.carla.blueprints import DEBRIS_PROPS

    ids = {b.id for b in lab.lib.filter("static.prop.*")}
    for pid in ("static.prop.ironplank", "static.prop.streetbarrier") + DEBRIS_PROPS:
        if pid in ids:
            return lab.lib.find(pid)
    raise RuntimeError("the server offers none of the documented props this check uses")


def check_prop_box(ctx: _Context) -> CheckResult:
    from simgen.backends.carla.sensors import decode_semantic_lidar
    from simgen.backends.carla_frames import T_actor_from_box_bottom, bbox_dims, matrix_from_carla, rpy_from_carla
    from simgen.geometry import invert, pose_matrix

    yaw = 30.0
    with _Lab(ctx) as lab:
        bp = _prop_blueprint(lab)
        p0 = lab.spawn(bp, 20.0, 30.0, 0.0, 0.0)
        p1 = lab.spawn(bp, 0.0, 30.0, 0.0, yaw)
        for p in (p0, p1):
            p.set_simulate_physics(False)
        lid = lab.sensor("sensor.lidar.ray_cast_semantic", {"channels": 64, "range": 20.0, "points_per_second": 400000,
                         "rotation_frequency": 20.0, "upper_fov": -30.0, "lower_fov": -89.0}, 0.0, 30.0, 4.0)
        f = lab.tick(3)
        d = lab.read(lid, f)
        bb0, bb1 = p0.bounding_box, p1.bounding_box
        T_act = matrix_from_carla(p1.get_transform())
        pts = decode_semantic_lidar(d.raw_data, [int(d.get_point_count(c)) for c in range(int(d.channels))])
        mine = pts["object_idx"] == p1.id
        T_ws = matrix_from_carla(d.transform)
        pw = pts["xyz"][mine] @ T_ws[:3, :3].T + T_ws[:3, 3]
    dims = bbox_dims(bb0)

    def inside(T_world_from_bottom, dims_):
        T_bw = invert(T_world_from_bottom @ pose_matrix(0, 0, dims_[2] / 2, 0.0))
        local = pw @ T_bw[:3, :3].T + T_bw[:3, 3]
        return float(np.mean(np.all(np.abs(local) <= dims_ / 2 + 0.05, axis=1))) if len(pw) else float("nan")

    simgen_box = T_act @ T_actor_from_box_bottom(bb0, with_rotation=False)
    naive_box = T_act @ T_actor_from_box_bottom(bb1, with_rotation=True)
    figures = {"blueprint": bp.id, "extent_yaw0": [round(float(v), 3) for v in dims / 2],
               "extent_yaw30": [round(float(v), 3) for v in bbox_dims(bb1) / 2],
               "reported_box_yaw_at_yaw30_deg": round(float(np.degrees(rpy_from_carla(bb1.rotation)[2])), 2),
               "lidar_points": int(len(pw)), "inside_simgen_box": round(inside(simgen_box, dims), 3),
               "inside_reported_box": round(inside(naive_box, bbox_dims(bb1)), 3)}
    ok = len(pw) >= 20 and figures["inside_simgen_box"] >= 0.9
    return CheckResult("prop_box", "pass" if ok else "fail", figures,
                       "" if ok else "the prop's LiDAR points do not fit the box simgen labels")


def check_instance_ids(ctx: _Context) -> CheckResult:
    from simgen.backends.carla.common import THING_CLASSES
    from simgen.backends.carla.sensors import InstanceResolver, decode_depth, decode_instance
    from simgen.backends.carla_frames import T_actor_from_box_bottom, bbox_dims, matrix_from_carla
    from simgen.geometry import intrinsics_from_fov, pose_matrix

    W, H, fov = 240, 135, 70
    with _Lab(ctx) as lab:
        car_bp = next(b for b in lab.lib.filter("vehicle.*")
                      if b.has_attribute("base_type") and b.get_attribute("base_type").as_str().lower() == "car") \
            if any(b.has_attribute("base_type") for b in lab.lib.filter("vehicle.*")) else lab.lib.filter("vehicle.*")[0]
        car = lab.spawn(car_bp, 12.0, -1.75, 0.05, 0.0)
        inst = lab.sensor("sensor.camera.instance_segmentation", {"image_size_x": W, "image_size_y": H, "fov": fov},
                          0.0, -1.75, 1.6)
        dep = lab.sensor("sensor.camera.depth", {"image_size_x": W, "image_size_y": H, "fov": fov}, 0.0, -1.75, 1.6)
        f = lab.tick(6)
        di, dd = lab.read(inst, f), lab.read(dep, f)
        T_car = matrix_from_carla(car.get_transform()) @ T_actor_from_box_bottom(car.bounding_box, with_rotation=False)
        dims = bbox_dims(car.bounding_box)
        tag, raw = decode_instance(di.raw_data, H, W)
        depth = decode_depth(dd.raw_data, H, W)
        T_ws = matrix_from_carla(di.transform)
        max_id = max(int(a.id) for a in lab.world.get_actors())
    thing = np.isin(tag, THING_CLASSES)
    raw_ids = np.unique(raw[thing]).tolist()
    T_wb = (T_car @ pose_matrix(0, 0, dims[2] / 2, 0.0))[None]
    res = InstanceResolver({int(car.id): 2}).resolve(raw, tag, depth, intrinsics_from_fov(W, H, fov), T_ws, T_wb,
                                                      dims[None], np.array([2]))
    share = float(np.mean(res[thing] == 2)) if thing.any() else float("nan")
    figures = {"car_actor_id": int(car.id), "car_id_16bit": int(car.id) & 0xFFFF, "raw_ids_on_things": raw_ids[:8],
               "ids_are_actor_ids": (int(car.id) & 0xFFFF) in raw_ids, "max_actor_id": max_id,
               "ids_wrap_here": max_id >= 65536, "car_pixels": int(thing.sum()), "resolved_share": round(share, 3)}
    ok = thing.sum() >= 50 and share >= 0.9
    return CheckResult("instance_ids", "pass" if ok else "fail", figures,
                       "" if ok else "the car's instance pixels are not resolved to the car")


def check_door(ctx: _Context) -> CheckResult:
    from simgen.backends.carla.blueprints import has_dynamic_doors
    from simgen.backends.carla.sensors import decode_depth

    door = getattr(ctx.carla, "VehicleDoor", None)
    if door is None:
        return CheckResult("door", "fail", {}, "this client has no carla.VehicleDoor")
    W, H = 200, 120
    figures = {}
    with _Lab(ctx) as lab:
        vehicles = list(lab.lib.filter("vehicle.*"))
        four = [b for b in vehicles if not b.has_attribute("number_of_wheels") or b.get_attribute("number_of_wheels").as_int() == 4]
        dyn = [b for b in four if has_dynamic_doors(b)]
        static = [b for b in four if not has_dynamic_doors(b)]
        if not dyn:
            return CheckResult("door", "fail", {"vehicles": len(vehicles)}, "no blueprint has has_dynamic_doors=true")
        for label, bp, x in (("dynamic", dyn[0], 0.0), ("static", static[0] if static else None, 40.0)):
            if bp is None:
                continue
            car = lab.spawn(bp, x, -1.75, 0.05, 0.0)
            cam = lab.sensor("sensor.camera.depth", {"image_size_x": W, "image_size_y": H, "fov": 70}, x, 6.0, 1.2, yaw_deg=-90.0)
            before = decode_depth(lab.read(cam, lab.tick(6)).raw_data, H, W)
            car.open_door(door.FL)
            after = decode_depth(lab.read(cam, lab.tick(40)).raw_data, H, W)
            figures[f"{label}_blueprint"] = bp.id
            figures[f"{label}_changed_pixels"] = int(np.count_nonzero(np.abs(after - before) > 0.05))
    ok = figures["dynamic_changed_pixels"] >= 30
    return CheckResult("door", "pass" if ok else "fail", figures,
                       "" if ok else "open_door did not visibly open the door of a has_dynamic_doors=true blueprint")


def _small_rig():
    from simgen.spec.rig import rig_from_dict

    return rig_from_dict({"name": "carla_check", "sensors": [
        {"name": "front", "type": "camera", "mount": {"x": 1.0, "z": 1.7},
         "attributes": {"image_size_x": 320, "image_size_y": 180, "fov": 90}},
        {"name": "lidar_top", "type": "lidar", "mount": {"z": 2.0},
         "attributes": {"channels": 16, "range": 60.0, "points_per_second": 100000, "rotation_frequency": 20.0,
                        "upper_fov": 2.0, "lower_fov": -24.8}}]}, file="<carla-check rig>")


def _scenario(seed: int = 0):
    from simgen.spec.scenario import concretise, load_scenario_source

    path = REPO / "scenarios" / "lead_vehicle_brakes.yaml"
    spec, values = concretise(load_scenario_source(path), rng=np.random.default_rng(seed))
    return spec, values, str(path)


def _backend(ctx: _Context, **kw):
    from simgen.backends.carla import CarlaBackend

    be = CarlaBackend(ctx.host, ctx.port, timeout_s=ctx.timeout_s, carla_module=ctx.carla, **kw)
    if ctx.server is not None:
        be.server = ctx.server
    return be


def check_frame_matching(ctx: _Context) -> CheckResult:
    be = _backend(ctx)
    spec, _, src = _scenario()
    t0 = time.monotonic()
    s = be.open(spec, _small_rig(), seed=np.random.SeedSequence(1), source=src, n_frames=ctx.ticks)
    try:
        frames = 0
        for _ in range(ctx.ticks):
            s.step()
            frames += 1
        col = s.collector
        figures = {"frames": frames, "sensor_streams": len(col.keys), "discarded_late": col.discarded_late,
                   "duplicates": col.duplicates, "settle_ticks": s.settle_ticks, "seconds": round(time.monotonic() - t0, 1),
                   "server": s.server_version}
    finally:
        s.close()
    return CheckResult("frame_matching", "pass" if frames == ctx.ticks else "fail", figures)


def label_violations(frames: list, dt: float) -> dict:
    """The label consistency checks of the backend contract suite, counted over ``frames``."""
    from annotators.ground_truth import annotate

    v = {"visible_gt_amodal": 0, "mask_outside_projection": 0, "lidar_outside_box": 0, "instance_not_an_actor": 0}
    n_vis = n_pts = 0
    for f in frames:
        lab = annotate(f)
        st = f.actors
        ids = set(st.ids.tolist())
        for name, cl in lab.cameras.items():
            v["visible_gt_amodal"] += int(np.sum(cl.visible_pixels > cl.amodal_pixels))
            v["instance_not_an_actor"] += int(not set(np.unique(f.cameras[name].instance).tolist()) <= ids | {0})
            for i in np.flatnonzero(cl.visible_pixels > 0):
                n_vis += 1
                m, p = cl.bbox_mask[i], cl.bbox_proj[i]
                v["mask_outside_projection"] += int(not (m[0] >= p[0] - 1.5 and m[1] >= p[1] - 1.5 and m[2] <= p[2] + 1.5
                                                          and m[3] <= p[3] + 1.5))
        for ld in f.lidars.values():  # the sensor's origin at each point's time (sweeps over (t - dt, t])
            w = np.clip((ld.time_s - (f.time_s - dt)) / dt, 0, 1)[:, None]
            T0, T1 = ld.T_world_from_sensor_start, ld.T_world_from_sensor
            pw = ld.xyz @ T1[:3, :3].T + (1 - w) * T0[:3, 3] + w * T1[:3, 3]
            T_wb = st.box_poses()  # full orientation (pitch and roll on slopes)
            for r, aid in enumerate(st.ids.tolist()):
                mine = ld.instance == aid
                if r == 0 or not mine.any():
                    continue
                n_pts += int(mine.sum())
                local = (pw[mine] - T_wb[r, :3, 3]) @ T_wb[r, :3, :3]
                slack = float(np.linalg.norm(st.velocity[r])) * dt + 0.1
                v["lidar_outside_box"] += int(np.sum(np.any(np.abs(local) > st.dims[r] / 2 + slack, axis=1)))
    return {**v, "boxes_checked": n_vis, "lidar_points_checked": n_pts}


def check_labels(ctx: _Context) -> CheckResult:
    from simgen.io.episode import Episode
    from simgen.runner import plan_episode, run_episode
    from simgen.spec.scenario import load_scenario_source

    be = _backend(ctx)
    src = load_scenario_source(REPO / "scenarios" / "lead_vehicle_brakes.yaml")
    plan = plan_episode(src, np.random.SeedSequence(0).spawn(1)[0], 0)
    spec, frames_n = plan.spec, ctx.label_frames
    frames = []
    s = be.open(spec, _small_rig(), seed=plan.sim_seed, source=src.path, n_frames=frames_n)
    try:
        frames = [s.step() for _ in range(frames_n)]
    finally:
        s.close()
    v = label_violations(frames, 1.0 / spec.tick_hz)
    with tempfile.TemporaryDirectory() as tmp:  # and the file the runner writes reads back complete
        path = Path(tmp) / "episode_000000.h5"
        run_episode(plan, _small_rig(), path, backend=be, source=src.path, n_frames=5)
        with Episode(path) as ep:
            v["episode_frames_written"] = int(ep.n_frames)
    bad = sum(v[k] for k in ("visible_gt_amodal", "mask_outside_projection", "lidar_outside_box", "instance_not_an_actor"))
    ok = bad == 0 and v["boxes_checked"] > 0 and v["episode_frames_written"] == 5
    return CheckResult("labels", "pass" if ok else "fail", v, "" if ok else "label consistency violations (see figures)")


def check_server_loss(ctx: _Context) -> CheckResult:
    from simgen.backends.carla_server import CarlaServerLost, is_server_failure

    srv = ctx.server
    if srv is None or not srv.managed or srv.process is None:
        return CheckResult("server_loss", "skip", {}, "needs a server carla-check launched itself: stop yours and pass "
                                                        "--carla-root (or set CARLA_ROOT); carla-check never kills a server it did not start")
    be = _backend(ctx, open_attempts=2)
    spec, _, src = _scenario()
    rig = _small_rig()
    s = be.open(spec, rig, seed=np.random.SeedSequence(2), source=src, n_frames=10)
    lost = None
    try:
        s.step()
        srv.process.kill()
        srv.process.wait()
        for _ in range(9):
            s.step()
    except Exception as exc:  # noqa: BLE001 - classified below
        lost = exc
    finally:
        s.close()
    t0 = time.monotonic()
    s2 = be.open(spec, rig, seed=np.random.SeedSequence(2), source=src, n_frames=3)
    try:
        n2 = sum(1 for _ in range(3) if s2.step() is not None)
    finally:
        s2.close()
    figures = {"loss_detected": lost is not None, "loss_error": type(lost).__name__ if lost else None,
               "is_server_failure": bool(lost is not None and (isinstance(lost, CarlaServerLost) or is_server_failure(lost))),
               "recovery_s": round(time.monotonic() - t0, 1), "frames_after_recovery": n2}
    ok = figures["is_server_failure"] and n2 == 3
    return CheckResult("server_loss", "pass" if ok else "fail", figures)


CHECK_FUNCS = {"connection": check_connection, "road_tags": check_road_tags, "prop_box": check_prop_box,
               "instance_ids": check_instance_ids, "door": check_door, "frame_matching": check_frame_matching,
               "labels": check_labels, "server_loss": check_server_loss}


def run_checks(host: str, port: int, *, carla_module=None, only: list[str] | None = None, ticks: int = 200,
               timeout_s: float = 20.0, server=None, progress=None, label_frames: int = 30) -> list[CheckResult]:
    """Every check (or ``only`` those), each isolated: a failure or exception in one does not stop the others."""
    if carla_module is None:
        from simgen.backends.carla import _load_carla

        carla_module = _load_carla()
    ctx = _Context(carla_module, host, int(port), float(timeout_s), int(ticks), server, int(label_frames))
    out = []
    for name in only or CHECKS:
        t0 = time.monotonic()
        try:
            r = CHECK_FUNCS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - reported, the next check runs
            r = CheckResult(name, "fail", {}, f"{type(exc).__name__}: {exc}")
            r.figures["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
        r.figures.setdefault("check_s", round(time.monotonic() - t0, 1))
        out.append(r)
        if progress is not None:
            progress(r)
        if name == "connection" and r.status == "fail" and "Error" in r.detail:
            break  # nothing answers: the other checks would only time out
    return out


def format_report(results: list[CheckResult], host: str, port: int) -> str:
    import simgen

    lines = [f"simgen {simgen.__version__} carla-check against {host}:{port}"]
    for r in results:
        figs = ", ".join(f"{k}={v}" for k, v in r.figures.items() if k != "traceback_tail")
        lines.append(f"  {r.status.upper():4s}  {r.name:15s} {figs}")
        if r.detail:
            lines.append(f"        {r.detail}")
    n = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    lines.append(f"{n['pass']} passed, {n['fail']} failed, {n['skip']} skipped")
    return "\n".join(lines)


# ============================================================================================ CLI
def add_subcommand(sub) -> None:
    p = sub.add_parser("carla-check", help="check the carla backend against a live CARLA server (run it first; attach "
                                           "its report to any bug)",
                       description="Runs a few minutes against a CARLA server and prints a pass/fail report with figures.")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=20.0, help="client RPC timeout in seconds (default 20)")
    p.add_argument("--ticks", type=int, default=200, help="ticks of the frame-matching episode (default 200)")
    p.add_argument("--only", action="append", choices=CHECKS, help="run only this check (repeatable)")
    p.add_argument("--carla-root", help="launch a server from this CARLA folder if none answers (or $CARLA_ROOT); "
                                        "only such a server is killed by the server_loss check")
    p.add_argument("--report", help="also write the report as JSON to this file (refused if it exists)")
    p.set_defaults(func=cmd_carla_check)


def cmd_carla_check(a) -> int:
    from simgen.errors import InputError

    if a.ticks < 1:
        raise InputError(f"got {a.ticks}; allowed: 1 or more", key="--ticks")
    if a.report and Path(a.report).exists():
        raise InputError("exists; choose another --report file", file=a.report)
    from simgen.backends.carla import _load_carla
    from simgen.backends.carla_server import CarlaServer, find_carla_root

    carla = _load_carla()
    server = None
    root = find_carla_root(a.carla_root)
    if root is not None:
        server = CarlaServer(carla, a.host, a.port, root=root, health_timeout_s=min(a.timeout, 10.0))
        if not server.healthy():
            server.start()  # ours: the server_loss check may kill and restart it
    try:
        results = run_checks(a.host, a.port, carla_module=carla, only=a.only, ticks=a.ticks, timeout_s=a.timeout,
                             server=server, progress=lambda r: print(f"  {r.status.upper():4s}  {r.name}", flush=True))
    finally:
        if server is not None:
            server.stop()
    text = format_report(results, a.host, a.port)
    print(text)
    if a.report:
        tmp = Path(a.report + ".partial")
        tmp.write_text(json.dumps({"host": a.host, "port": a.port, "results": [asdict(r) for r in results]}, indent=2,
                                  default=str))
        tmp.replace(a.report)
    return 0 if all(r.status != "fail" for r in results) else 1
