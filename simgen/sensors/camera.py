"""Pinhole camera for the builtin backend: RGB, z-depth, semantic and instance images from one ray cast.

Rays go through pixel centres (CARLA's horizontal ``fov`` and image size give K).  The static world is cast
once; each actor whose projected box meets the image is cast in its own frame over that box's pixels, which
also yields its amodal pixel count (its footprint with nothing in front) for the visible fraction.
Shadows are traced towards the sun against the static world and the actors.
"""
from __future__ import annotations

import numpy as np

from simgen.records import CameraData, box_transform
from simgen.classes import SKY
from simgen.geometry import (T_BODY_FROM_OPTICAL, box_corners, box_edge_points, clip_polygon_near, distorted_pixel_rays,
                             intrinsics_from_fov, project_distorted, transform_points)
from simgen.sensors import render
from simgen.sensors import kernels
from simgen.sensors.shading import _NOISE_TABLE, Lighting
from simgen.spec.rig import SensorSpec
from simgen.world import materials as M

FAR_M = 1000.0  # depth written where no surface is hit (CARLA's depth camera saturates at 1 km)
_NO_LIGHTS = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32),
              np.zeros(0, np.float32), 0.0)  # no artificial lights (day)


def _box_pose(pose: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(A,4,4) centre poses of actor boxes from bottom-centre poses (A,4) x,y,z,yaw or (A,6) with pitch, roll."""
    return box_transform(pose, dims)


class Camera:
    def __init__(self, spec: SensorSpec):
        a = spec.camera
        self.name = spec.name
        self.W, self.H = a.image_size_x, a.image_size_y
        self.K = intrinsics_from_fov(self.W, self.H, a.fov)
        self.dist = np.asarray(a.distortion, float) if np.any(a.distortion) else None
        d_opt, self.r_max = distorted_pixel_rays(self.K, self.dist, self.W, self.H)
        d_opt = d_opt.astype(np.float32)
        self.z_of_ray = d_opt[:, 2].copy()  # depth = t * z component
        self.d_body = (d_opt @ T_BODY_FROM_OPTICAL[:3, :3].T.astype(np.float32)).astype(np.float32)
        self._rays = np.empty((self.W * self.H, 6), np.float32)  # reused ray buffer: origin, direction
        self._d = np.empty((self.W * self.H, 3), np.float32)  # world directions, contiguous

    def roi(self, T_optical_from_world: np.ndarray, corners_world: np.ndarray) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (r0, r1, c0, c1) covering points' projection, or None when out of view."""
        pts = transform_points(T_optical_from_world, corners_world)
        if self.dist is not None and len(pts) == 8:
            pts = box_edge_points(pts)  # distortion bends edges: sample them
        pts = clip_polygon_near(pts, near=0.05) if len(pts) == 8 else pts[pts[:, 2] >= 0.05]
        if len(pts) == 0:
            return None
        uv, _ = project_distorted(self.K, self.dist, pts, self.r_max)
        c0, r0 = np.floor(uv.min(axis=0)).astype(int) - 1
        c1, r1 = np.ceil(uv.max(axis=0)).astype(int) + 1
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, self.W), min(r1, self.H)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def _roi_idx(self, roi) -> np.ndarray:
        r0, r1, c0, c1 = roi
        return (np.arange(r0, r1)[:, None] * self.W + np.arange(c0, c1)[None, :]).ravel()

    def capture(self, T_world_from_sensor: np.ndarray, static: render.StaticGeometry, actors: list[render.ActorGeometry],
                poses: np.ndarray, light: Lighting, lamp_on: np.ndarray, actor_colour: np.ndarray,
                materials: dict | None = None, road=None, lights: tuple | None = None) -> CameraData:
        """Render at one instant.  ``poses`` (A,4|6) are the actors' bottom-centre poses matching ``actors``
        (x, y, z, yaw [, pitch, roll]).

        ``lamp_on`` is a (T_static,) bool array: lamp triangles that are lit; ``actor_colour`` (max_id+1, 3).
        """
        R = T_world_from_sensor[:3, :3].astype(np.float32)
        o1 = T_world_from_sensor[:3, 3].astype(np.float32)
        rays, d = self._rays, self._d
        kernels.fill_rays(self.d_body, R, o1, rays, d)
        o = rays[:, :3]
        h = render.cast_static(static, o, d, rays=rays)
        T_opt_from_world = np.linalg.inv(T_world_from_sensor @ T_BODY_FROM_OPTICAL)
        amodal: dict[int, int] = {}
        dims = np.array([a.dims for a in actors]).reshape(-1, 3)
        corners = box_corners(_box_pose(poses, dims), dims) if len(actors) else np.zeros((0, 8, 3))
        for k, act in enumerate(actors):
            roi = self.roi(T_opt_from_world, corners[k])
            if roi is None:
                amodal[act.id] = 0
                continue
            idx = self._roi_idx(roi)
            t, n, tri = render.cast_actor(act, o[idx], d[idx], poses[k])
            amodal[act.id] = int(np.count_nonzero(np.isfinite(t)))
            render.merge_actor_hits(h, idx, t, n, tri, act)
        # --- shading: two fused parallel passes (simgen.sensors.kernels) around the shadow-ray casts
        sun_up = bool(light.sun_rgb.max() > 0)
        facing = kernels.prepare(h.t, h.normal, d, light.sun_dir, sun_up)
        fidx, lit_idx = kernels.compact(facing)
        occ = self._shadows(fidx, o1, d, h, light, static, actors, poses, corners, T_opt_from_world)
        n = len(d)
        rgb = np.empty((n, 3), np.uint8)
        depth = np.empty(n, np.float32)
        sem = np.empty(n, np.uint8)
        colour_lut = materials["colour"] if materials else M.COLOUR_LUT
        specular_lut = materials["specular"] if materials else M.SPECULAR_LUT
        wear = float(road.wear) if road is not None else 0.0
        kernels.finish(o1, d, h.t, h.normal, h.material, h.instance, np.maximum(h.tri, 0), h.semantic, lit_idx, occ,
                       self.z_of_ray, colour_lut, specular_lut, actor_colour, lamp_on, M.LAMP_RED, M.LAMP_GREEN,
                       wear, M.ROAD_PAINT, M.ASPHALT,
                       _NOISE_TABLE, light.sun_dir, light.sun_rgb, light.ambient_rgb, light.zenith_rgb, light.horizon_rgb,
                       light.fog_beta, light.fog_start_m, light.fog_rgb, light.exposure, M.PAINT, M.CLOTHING, SKY, FAR_M,
                       *(lights if lights is not None else _NO_LIGHTS), M.HEADLIGHT, M.TAILLIGHT, kernels._TM_LUT,
                       rgb, depth, sem)
        return CameraData(self.K.copy(), T_world_from_sensor.copy(), rgb.reshape(self.H, self.W, 3),
                          depth.reshape(self.H, self.W), sem.reshape(self.H, self.W), h.instance.reshape(self.H, self.W),
                          amodal, self.dist, self.r_max)

    def _shadows(self, fidx, o1, d, h, light, static, actors, poses, corners, T_opt_from_world) -> np.ndarray:
        """Occlusion (bool per sun-facing hit ``fidx``) of the sun by the static world and the actors."""
        if len(fidx) == 0:
            return np.zeros(0, bool)
        rays = kernels.shadow_rays(fidx, o1, d, h.t, h.normal, light.sun_dir, np.float32(0.02))
        occ = static.scene.test_occlusions(render._T.from_numpy(rays)).numpy().astype(bool)
        if not actors or light.sun_dir[2] <= 0.02:
            return occ
        # image of "index into fidx" for unshadowed sun-facing hits: each actor only tests the pixels inside
        # the projection of its shadow volume (its box swept along the sun direction down to the ground)
        pix_of = np.full(self.H * self.W, -1, np.int64)
        unocc = np.nonzero(~occ)[0]
        pix_of[fidx[unocc]] = unocc
        pix_of = pix_of.reshape(self.H, self.W)
        so, sd = rays[:, :3], rays[:, 3:]
        sun = light.sun_dir.astype(float)
        for k, act in enumerate(actors):
            c = corners[k]
            ground = c - sun[None, :] * (c[:, 2:3] / sun[2])
            roi = self.roi(T_opt_from_world, np.concatenate([c, ground]))
            if roi is None:
                continue
            r0, r1, c0, c1 = roi
            sub = pix_of[r0:r1, c0:c1]
            cand = sub[sub >= 0]
            if len(cand) == 0:
                continue
            centre = render.box_centre(poses[k], act.dims[2])
            sel = render.sphere_candidates(so[cand], sd[cand], centre, act.radius, 1e4)
            if len(sel) == 0:
                continue
            ids = cand[sel]
            occ[ids] |= render.cast_actor(act, so[ids], sd[ids], poses[k], occlusion_only=True)
        return occ
