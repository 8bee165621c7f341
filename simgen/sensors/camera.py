"""Pinhole camera for the builtin backend: RGB, z-depth, semantic and instance images from one ray cast.

Rays go through pixel centres (CARLA's horizontal ``fov`` and image size give K).  The static world is cast
once; each actor whose projected box meets the image is cast in its own frame over that box's pixels, which
also yields its amodal pixel count (its footprint with nothing in front) for the visible fraction.
Shadows are traced towards the sun against the static world and the actors.
"""
from __future__ import annotations

import numpy as np

from simgen.backends.base import CameraData
from simgen.classes import SKY
from simgen.geometry import T_BODY_FROM_OPTICAL, box_corners, intrinsics_from_fov, pixel_rays, pose_matrix, project, transform_points, invert
from simgen.sensors import render
from simgen.sensors.shading import Lighting, albedo, apply_fog, procedural_variation, shade, tonemap
from simgen.spec.rig import SensorSpec
from simgen.world import materials as M

FAR_M = 1000.0  # depth written where no surface is hit (CARLA's depth camera saturates at 1 km)


def _box_pose(pose: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(A,4,4) centre poses of actor boxes from bottom-centre poses (A,4) x,y,z,yaw."""
    return pose_matrix(pose[:, 0], pose[:, 1], pose[:, 2] + dims[:, 2] / 2, pose[:, 3])


class Camera:
    def __init__(self, spec: SensorSpec):
        a = spec.camera
        self.name = spec.name
        self.W, self.H = a.image_size_x, a.image_size_y
        self.K = intrinsics_from_fov(self.W, self.H, a.fov)
        d_opt = pixel_rays(self.K, self.W, self.H).astype(np.float32)
        self.z_of_ray = d_opt[:, 2].copy()  # depth = t * z component
        self.d_body = (d_opt @ T_BODY_FROM_OPTICAL[:3, :3].T.astype(np.float32)).astype(np.float32)

    def roi(self, T_optical_from_world: np.ndarray, corners_world: np.ndarray) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (r0, r1, c0, c1) covering points' projection, or None when out of view."""
        from simgen.geometry import clip_polygon_near

        pts = clip_polygon_near(transform_points(T_optical_from_world, corners_world), near=0.05)
        if len(pts) == 0:
            return None
        uv, _ = project(self.K, pts)
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
                poses: np.ndarray, light: Lighting, lamp_on: np.ndarray, actor_colour: np.ndarray) -> CameraData:
        """Render at one instant.  ``poses`` (A,4) are the actors' bottom-centre poses matching ``actors``.

        ``lamp_on`` is a (T_static,) bool array: lamp triangles that are lit; ``actor_colour`` (max_id+1, 3).
        """
        R = T_world_from_sensor[:3, :3].astype(np.float32)
        o1 = T_world_from_sensor[:3, 3].astype(np.float32)
        d = self.d_body @ R.T
        o = np.broadcast_to(o1, d.shape)
        h = render.cast_static(static, o, d)
        T_opt_from_world = np.linalg.inv(T_world_from_sensor @ T_BODY_FROM_OPTICAL)
        amodal: dict[int, int] = {}
        dims = np.array([a.dims for a in actors]).reshape(-1, 3)
        corners = box_corners(_box_pose(poses, dims), dims) if len(actors) else np.zeros((0, 8, 3))
        rois = []
        for k, act in enumerate(actors):
            roi = self.roi(T_opt_from_world, corners[k])
            rois.append(roi)
            if roi is None:
                amodal[act.id] = 0
                continue
            idx = self._roi_idx(roi)
            t, n, tri = render.cast_actor(act, o[idx], d[idx], poses[k])
            amodal[act.id] = int(np.count_nonzero(np.isfinite(t)))
            render.merge_actor_hits(h, idx, t, n, tri, act)
        render.face_ray(h, d)
        hit = np.isfinite(h.t)

        # --- shading (hit rays only)
        hi = np.nonzero(hit)[0]
        dh = d[hi]
        p = o1 + dh * h.t[hi, None]
        nrm = h.normal[hi]
        base = albedo(h.material[hi], h.instance[hi], actor_colour)
        static_hit = h.instance[hi] == 0
        if np.any(static_hit):
            base[static_hit] *= procedural_variation(p[static_hit])[:, None]
        lit = self._sun_visibility(p, nrm, light, static, actors, poses, corners, T_opt_from_world, hi)
        mat = h.material[hi]
        emissive = np.zeros_like(base)
        lamp = (mat >= M.LAMP_RED) & (mat <= M.LAMP_GREEN)
        if np.any(lamp):
            on = lamp & (h.instance[hi] == 0)
            on[on] = lamp_on[h.tri[hi][on]]
            emissive[on] = M.COLOUR_LUT[mat[on]] * 4.0
            base[lamp & ~on] *= 0.15
        rad_hit = shade(light, dh, h.t[hi], nrm, base, lit, M.SPECULAR_LUT[mat], emissive)
        rad = np.empty((len(d), 3), np.float32)
        rad[hi] = rad_hit
        miss = np.nonzero(~hit)[0]
        rad[miss] = light.sky(d[miss])
        if light.fog_beta > 0:
            rad = apply_fog(light, rad, np.where(hit, h.t, np.inf))
        rgb = tonemap(rad, light.exposure).reshape(self.H, self.W, 3)

        depth = np.where(hit, h.t * self.z_of_ray, FAR_M).astype(np.float32).reshape(self.H, self.W)
        sem = np.where(hit, h.semantic, SKY).astype(np.uint8).reshape(self.H, self.W)
        inst = h.instance.reshape(self.H, self.W)
        return CameraData(self.K.copy(), T_world_from_sensor.copy(), rgb, depth, sem, inst, amodal)

    def _sun_visibility(self, p, nrm, light, static, actors, poses, corners, T_opt_from_world, hi) -> np.ndarray:
        """(N,) float32: 1 where the sun is visible from hit points p, 0 in shadow."""
        lit = np.zeros(len(p), np.float32)
        if light.sun_rgb.max() <= 0:
            return lit
        facing = np.nonzero(nrm @ light.sun_dir > 0)[0]
        if len(facing) == 0:
            return lit
        so = (p[facing] + nrm[facing] * 0.02).astype(np.float32)
        sd = np.broadcast_to(light.sun_dir, so.shape)
        occ = static.scene.test_occlusions(render._rays(so, sd)).numpy().astype(bool)
        if actors and light.sun_dir[2] > 0.02:
            # pixel index of each facing hit, to cull by each actor's projected shadow volume
            pix = hi[facing]
            rows, cols = pix // self.W, pix % self.W
            sun = light.sun_dir.astype(float)
            for k, act in enumerate(actors):
                c = corners[k]
                ground = c - sun[None, :] * (c[:, 2:3] / sun[2])  # box corners cast onto z=0 along the sun
                roi = self.roi(T_opt_from_world, np.concatenate([c, ground]))
                if roi is None:
                    continue
                r0, r1, c0, c1 = roi
                cand = np.nonzero(~occ & (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1))[0]
                if len(cand) == 0:
                    continue
                centre = np.array([poses[k, 0], poses[k, 1], poses[k, 2] + act.dims[2] / 2])
                sel = render.sphere_candidates(so[cand].astype(float), sd[cand].astype(float), centre, act.radius, 1e4)
                if len(sel) == 0:
                    continue
                ids = cand[sel]
                occ[ids] |= render.cast_actor(act, so[ids], sd[ids], poses[k], occlusion_only=True)
        lit[facing] = (~occ).astype(np.float32)
        return lit
