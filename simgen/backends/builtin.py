"""The ``builtin`` backend: the embedded simulator rendered with open3d/Embree on the CPU.

Randomness: the episode's SeedSequence is spawned into independent streams for placement/traffic, scenery and
each sensor, so e.g. changing a LiDAR's drop-off does not change where traffic spawns.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from simgen.records import ActorInfo, Frame, StaticInfo, pose_transform
from simgen.seeding import sensor_streams, sim_streams
from simgen.geometry import pose_matrix
from simgen.sensors import render
from simgen.sensors.camera import Camera
from simgen.sensors.lidar import Lidar
from simgen.sensors.shading import Lighting
from simgen.sim import environment
from simgen.sim.world import World
from simgen.spec.rig import RigSpec
from simgen.spec.scenario import ScenarioSpec
from simgen.world import materials as M
from simgen.world.mesh import Mesh, merge


def door_mesh(dims: np.ndarray, angle: float, side: str) -> Mesh:
    """The front door of a vehicle of size (l, w, h), opened by ``angle`` rad on ``side`` (left/right).

    Hinged on its front edge at x = 0.12 l on the body side; closed, it lies in the side of the body (and is
    not drawn).  The label box stays the body box, as in CARLA.
    """
    l, w, h = (float(v) for v in dims)
    length, thick = 0.24 * l, 0.06
    z0, z1 = 0.25 * h, 0.8 * h
    sgn = 1.0 if side == "left" else -1.0
    # slab in hinge coordinates: from the hinge backwards (-x), outward thickness
    xs = np.array([0.0, -length])
    ys = np.array([0.0, sgn * thick])
    v = np.array([[x, y, z] for x in xs for y in ys for z in (z0, z1)], float)
    c, s_ = np.cos(-sgn * angle), np.sin(-sgn * angle)  # swings outward
    R = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    v = v @ R.T + [0.12 * l, sgn * w / 2, 0.0]
    # 8 vertices indexed (x, y, z) bits; 12 triangles of the box (winding fixed by face_ray at shading time)
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [(a, b, c_) for a, b, c_, d in faces] + [(a, c_, d) for a, b, c_, d in faces]
    return Mesh.build(v, tris, M.PAINT, 0)


EXPOSURE_S = 1.0 / 60.0  # camera exposure time for motion blur


def _effects_on(fx, weather) -> bool:
    return bool(fx.noise or fx.vignetting or fx.chromatic_aberration_px or fx.motion_blur or fx.exposure_ev
                or fx.jpeg_quality is not None or (fx.rain_streaks and weather.precipitation > 0))


def ego_motion_flow(cd, ego_prev: np.ndarray, ego_now: np.ndarray, T_ego_from_sensor: np.ndarray, fraction: float) -> np.ndarray:
    """(H,W,2) image motion in pixels of static scene points while the shutter is open (``fraction`` of the
    tick): back-project with the depth image, move the camera back along the ego motion, re-project."""
    from simgen.geometry import T_BODY_FROM_OPTICAL, invert, project_distorted, undistort_pixels

    H, W = cd.depth.shape
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    uv = np.stack([u.ravel(), v.ravel()], 1)
    xy = undistort_pixels(uv, cd.K, cd.distortion) if cd.distortion is not None else \
        (uv - cd.K[[0, 1], [2, 2]]) / cd.K[[0, 1], [0, 1]]
    z = np.minimum(cd.depth.ravel().astype(float), 200.0)
    p = np.concatenate([xy * z[:, None], z[:, None]], 1)
    T_now = pose_transform(ego_now) @ T_ego_from_sensor @ T_BODY_FROM_OPTICAL
    back = ego_now + fraction * (ego_prev - ego_now)
    T_back = pose_transform(back) @ T_ego_from_sensor @ T_BODY_FROM_OPTICAL
    q = (invert(T_back) @ T_now)
    pb = p @ q[:3, :3].T + q[:3, 3]
    uv2, _ = project_distorted(cd.K, cd.distortion, pb, cd.r_max)
    return np.nan_to_num(uv2 - uv).reshape(H, W, 2).astype(np.float32)


def jittered_mounts(rig: RigSpec, jitter, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """T_ego_from_sensor per sensor, perturbed uniformly within ± the scenario's sensor_jitter (drawn always,
    so the stream does not depend on whether jitter is on)."""
    out = {}
    for s in rig.sensors:
        d = rng.uniform(-1.0, 1.0, 6)
        dp = d[:3] * jitter.position_m
        da = np.deg2rad(d[3:] * jitter.angle_deg)
        out[s.name] = s.mount.matrix() @ pose_matrix(dp[0], dp[1], dp[2], da[0], da[1], da[2])
    return out


def material_tables(spec_t) -> dict[str, np.ndarray]:
    """Per-episode (or per-frame, when ramped) material colour/specular tables: road look, wetness, gloss."""
    colour = M.COLOUR_LUT.copy()
    spec = M.SPECULAR_LUT.copy()
    road = spec_t.road
    colour[M.ASPHALT] *= road.asphalt_brightness
    colour[M.ROAD_PAINT] = np.asarray(road.marking_colour, np.float32)
    wet = max(spec_t.weather.wetness, spec_t.weather.precipitation_deposits, 0.5 * spec_t.weather.precipitation) / 100.0
    if wet > 0:  # wet ground: darker, shinier (water film)
        for m in (M.ASPHALT, M.ROAD_PAINT, M.CONCRETE, M.KERB):
            colour[m] *= 1.0 - 0.45 * wet
            spec[m] = min(1.0, spec[m] + 0.8 * wet)
    g = spec_t.appearance.gloss
    spec[M.PAINT] = min(1.0, spec[M.PAINT] * g)
    spec[M.GLASS] = min(1.0, spec[M.GLASS] * g)
    return {"colour": colour, "specular": spec}


def build_static_mesh(world: World, rng: np.random.Generator) -> tuple[Mesh, dict]:
    """Ground + scenery + traffic lights as one mesh; returns it and the lamp triangles per light."""
    from simgen.world import meshes

    m = world.map
    parts: list[Mesh] = [m.ground]
    n_tri = m.ground.n_triangles
    for item in m.scenery(rng, density=world.spec.scenery.density):
        p = dict(item.params)
        if item.kind == "building":
            mesh = meshes.building_mesh(p["length_m"], p["width_m"], p["height_m"])
        elif item.kind == "tree":
            mesh = meshes.tree_mesh(p["height_m"], p["crown_radius_m"])
        elif item.kind == "pole":
            mesh = meshes.pole_mesh(p["height_m"])
        elif item.kind == "sign":
            mesh = meshes.sign_mesh(p.get("kind", "speed"))
        else:
            continue
        mesh = mesh.transformed(pose_matrix(item.x, item.y, item.z, item.yaw))
        parts.append(mesh)
        n_tri += mesh.n_triangles
    lamps: dict[str, dict[str, np.ndarray]] = {}
    for tl in m.traffic_lights:
        mesh, lamp_idx = meshes.traffic_light_mesh()
        mesh = mesh.transformed(pose_matrix(tl.position[0], tl.position[1], tl.position[2], tl.yaw))
        lamps[tl.id] = {k: np.asarray(v, np.int64) + n_tri for k, v in lamp_idx.items()}
        parts.append(mesh)
        n_tri += mesh.n_triangles
    return merge(parts), lamps


def street_lamps(world: World, rng_state_items) -> np.ndarray:
    """(L,3) world positions of the street-light lamp heads (from the scenery's poles; see meshes.pole_mesh)."""
    out = []
    for item in rng_state_items:
        if item.kind != "pole":
            continue
        h = float(item.params["height_m"])
        arm = float(np.clip(0.2 * h, 1.0, 2.5))
        local = np.array([0.0, arm + 0.3, h - 0.3, 1.0])
        out.append((pose_matrix(item.x, item.y, item.z, item.yaw) @ local)[:3])
    return np.array(out, np.float32).reshape(-1, 3)


def artificial_lights(lamps: np.ndarray, states, sun_altitude_deg: float, fog_density: float, cam_pos: np.ndarray):
    """Light arrays for the camera kernel at night (or in fog): street lamps (omni, downward-biased) and
    vehicle headlights (spots along the heading).  Empty by day."""
    night = float(np.clip((6.0 - sun_altitude_deg) / 10.0, 0.0, 1.0))
    heads = max(night, float(np.clip((fog_density - 30.0) / 40.0, 0.0, 1.0)))
    pos, dirs, rgb, cos = [], [], [], []
    if night > 0 and len(lamps):
        near = lamps[np.linalg.norm(lamps - cam_pos, axis=1) < 90.0]
        pos.append(near)
        dirs.append(np.tile([0.0, 0.0, -1.0], (len(near), 1)))
        rgb.append(np.tile(np.array([1.0, 0.85, 0.6]) * 45.0 * night, (len(near), 1)))
        cos.append(np.full(len(near), np.cos(np.deg2rad(75.0))))
    if heads > 0:
        from simgen.classes import ACTOR_KINDS

        for k in range(1, len(states.ids)):
            if not ACTOR_KINDS[states.kinds[k]].vehicle or states.kinds[k] == "cyclist":
                continue
            x, y, z, yaw = states.pose[k]
            l, w, h = states.dims[k]
            if np.hypot(x - cam_pos[0], y - cam_pos[1]) > 90.0:
                continue
            c, s_ = np.cos(yaw), np.sin(yaw)
            pr = states.attitude[k]
            R = pose_transform(states.pose6[k])[:3, :3] if np.any(pr) else None  # on a slope: the lamps tilt too
            for side in (-1.0, 1.0):
                if R is None:
                    px = x + c * l / 2 - s_ * side * w / 3
                    py = y + s_ * l / 2 + c * side * w / 3
                    pos.append(np.array([[px, py, z + 0.7]]))
                    dirs.append(np.array([[c, s_, -0.06]]) / np.linalg.norm([c, s_, -0.06]))
                else:
                    pos.append((np.array([x, y, z]) + R @ [l / 2, side * w / 3, 0.7])[None])
                    dirs.append((R @ np.array([1.0, 0.0, -0.06]) / np.linalg.norm([1.0, 0.0, -0.06]))[None])
                rgb.append(np.array([[1.0, 0.95, 0.85]]) * 140.0 * heads)
                cos.append(np.array([np.cos(np.deg2rad(22.0))]))
    if not pos:
        return None
    f = lambda a: np.ascontiguousarray(np.concatenate(a), np.float32)  # noqa: E731
    return f(pos), f(dirs), f(rgb), f(cos), float(4.0 * heads)


class BuiltinSession:
    """One episode on the builtin backend.  ``step()`` returns the next Frame (frame 0 is the initial state)."""

    def __init__(self, scenario: ScenarioSpec, rig: RigSpec, *, seed: np.random.SeedSequence, source: str,
                 n_frames: int | None = None, record=None):
        """``record`` (a :class:`simgen.io.record.Record`) replays recorded actor states instead of simulating."""
        from simgen.world import meshes

        from simgen.errors import InputError
        from simgen.spec.scenario import is_carla_town

        if is_carla_town(scenario.map):
            from simgen.world.xodr import carla_town_xodr

            if carla_town_xodr(scenario.map) is None:  # with $SIMGEN_CARLA_ROOT set, its .xodr runs here
                raise InputError(f"map {scenario.map!r} is a CARLA town: run it with --backend carla, or set "
                                 "SIMGEN_CARLA_ROOT to a CARLA installation to run its OpenDRIVE file on the builtin "
                                 "backend", file=source, key="map")
        sim = sim_streams(seed)
        s_world, s_scenery = sim.world, sim.backend
        self.scenario, self.rig = scenario, rig
        self.world = World(scenario, rng=np.random.default_rng(s_world), source=source)
        self.record = record
        if record is not None:
            record.apply_to(self.world)
        self.n_frames = n_frames or (record.n_frames if record is not None else scenario.n_frames)
        mesh, lamps = build_static_mesh(self.world, np.random.default_rng(s_scenery))
        self.street_lamps = street_lamps(self.world, self.world.map.scenery(np.random.default_rng(s_scenery),
                                                                           density=scenario.scenery.density))
        self.static = render.StaticGeometry(mesh, lamps)
        self.actor_geoms: list[render.ActorGeometry] = []
        self._base_mesh: dict[int, Mesh] = {}
        self._door_built: dict[int, float] = {}
        max_id = max(a.id for a in self.world.actors)
        self.actor_colour = np.zeros((max_id + 1, 3), np.float32)
        for a in self.world.actors:
            self.actor_colour[a.id] = a.colour
            if a.is_ego:
                continue  # sensors are mounted on the ego; its own body is not rendered
            am = meshes.actor_mesh(a.kind.name, *a.dims).with_semantic_default(a.kind.semantic)
            self.actor_geoms.append(render.ActorGeometry(a.id, am, a.colour, np.asarray(a.dims, float)))
            self._base_mesh[a.id] = am
            self._door_built[a.id] = 0.0
        self._geom_rows = np.array([self.world.actors.index(next(x for x in self.world.actors if x.id == g.id)) for g in self.actor_geoms], int)
        ss = sensor_streams(sim.sensors, [s.name for s in rig.sensors])
        self.sensor_rngs = {name: np.random.default_rng(x) for name, x in ss.per_sensor.items()}
        self.mounts = jittered_mounts(rig, scenario.sensor_jitter, np.random.default_rng(ss.mounting))
        self.cameras = {s.name: Camera(s) for s in rig.cameras}
        self.lidars = {s.name: Lidar(s, scenario.tick_hz, T_ego_from_sensor=self.mounts[s.name]) for s in rig.lidars}
        self.randomized = list(scenario.randomize)
        self._env_static = None if environment.varies(scenario) else self._environment(0.0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simgen-lidar")
        self._k = 0
        self._prev = None
        self._prev_time = 0.0

    def static_info(self) -> StaticInfo:
        w = self.world
        return StaticInfo(w.map.name, tuple(
            ActorInfo(a.id, a.name, a.kind.name, int(a.kind.semantic), tuple(float(x) for x in a.dims),
                      tuple(float(x) for x in a.colour), bool(a.is_ego)) for a in w.actors),
            tuple(tl.id for tl in w.map.traffic_lights))

    def provenance(self) -> dict:
        """Nothing beyond what every episode stores."""
        return {}

    def _environment(self, t: float):
        """(spec at t, Lighting, material tables, applied values) — computed once unless the scenario ramps."""
        spec_t = environment.at(self.scenario, t)
        return spec_t, Lighting.from_weather(spec_t.weather), material_tables(spec_t), environment.applied(spec_t, self.randomized)

    def _lamp_on(self, lights: dict[str, str]) -> np.ndarray:
        on = np.zeros(self.static.mesh.n_triangles, bool)
        for lid, state in lights.items():
            tris = self.static.lamp_triangles.get(lid, {}).get(state)
            if tris is not None:
                on[tris] = True
        return on

    def step(self) -> Frame:
        w = self.world
        if self.record is None:
            collisions: list = []
            n_events = len(w.event_log)
            if self._k > 0:
                collisions = w.step()
            states, lights, events, time_s = w.states(), w.light_states(), list(w.event_log[n_events:]), w.time_s
        else:
            states, lights, collisions, events, time_s = self.record.frame(self._k)
        # poses with the full attitude (x, y, z, yaw, pitch, roll; simgen.records): the sensors place every actor and
        # the ego (hence the sensors on it) with it
        pose6 = states.pose6
        if self._prev is None:  # before the first frame: extrapolate back at constant velocity
            prev = pose6.copy()
            prev[:, :3] -= states.velocity * w.dt
            self._prev_time = time_s - w.dt
        else:
            prev = self._prev.pose6
        ego_now, ego_prev = pose6[0], prev[0]
        T_we = pose_transform(ego_now)
        lamp_on = self._lamp_on(lights)
        rows = self._geom_rows
        self._update_doors(states)
        spec_t, light, mats, applied = self._env_static or self._environment(time_s)
        frame = Frame(index=self._k, time_s=time_s, T_world_from_ego=T_we, actors=states, lights=lights,
                      collisions=collisions, events=events, T_ego_from_sensor=dict(self.mounts), applied=dict(applied))
        # LiDARs run in a worker thread while the cameras render: Embree and large numpy operations release the
        # GIL, so the two overlap on a multi-core machine.  Each sensor has its own RNG: results do not depend
        # on the interleaving.
        futures = {name: self._pool.submit(lid.capture, self._prev_time, time_s, ego_prev, ego_now, self.static,
                                           self.actor_geoms, prev[rows], pose6[rows], rng=self.sensor_rngs[name],
                                           weather=spec_t.weather, precipitation_kind=spec_t.precipitation_type)
                   for name, lid in self.lidars.items()}
        for name, cam in self.cameras.items():
            frame.cameras[name] = cam.capture(T_we @ self.mounts[name], self.static, self.actor_geoms,
                                              pose6[rows], light, lamp_on, self.actor_colour, materials=mats,
                                              road=spec_t.road, lights=artificial_lights(
                                                  self.street_lamps, states, spec_t.weather.sun_altitude_angle,
                                                  spec_t.weather.fog_density, (T_we @ self.mounts[name])[:3, 3]))
        fx = spec_t.camera_effects
        if _effects_on(fx, spec_t.weather):
            from simgen.sensors.effects import apply_camera_effects

            for name, cd in frame.cameras.items():
                flow = None
                if fx.motion_blur:
                    flow = ego_motion_flow(cd, ego_prev, ego_now, self.mounts[name], EXPOSURE_S / w.dt)
                cd.rgb = apply_camera_effects(cd.rgb, fx, rng=self.sensor_rngs[name], flow=flow,
                                              precipitation=spec_t.weather.precipitation,
                                              wind=spec_t.weather.wind_intensity)
        for name, fut in futures.items():
            frame.lidars[name] = fut.result()
        self._prev = states
        self._prev_time = time_s
        self._k += 1
        return frame

    def _update_doors(self, states) -> None:
        """Rebuild the (small) scene of any actor whose door angle changed since it was last built."""
        if states.door is None or not np.any(states.door):
            return
        for g, row in zip(self.actor_geoms, self._geom_rows):
            ang = float(states.door[row])
            if abs(ang - self._door_built[g.id]) > np.deg2rad(0.5) and ang != 0.0:
                actor = self.world.actors[row]
                door = door_mesh(g.dims, abs(ang), "left" if ang > 0 else "right").with_semantic_default(actor.kind.semantic)
                g.mesh = merge([self._base_mesh[g.id], door])
                g.__post_init__()
                self._door_built[g.id] = ang

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.static = None
        self.actor_geoms = []


class BuiltinBackend:
    name = "builtin"

    def open(self, scenario: ScenarioSpec, rig: RigSpec, *, seed: np.random.SeedSequence, source: str = "<scenario>",
             n_frames: int | None = None, record=None) -> BuiltinSession:
        return BuiltinSession(scenario, rig, seed=seed, source=source, n_frames=n_frames, record=record)

    def close(self) -> None:
        """Nothing is held across episodes."""
