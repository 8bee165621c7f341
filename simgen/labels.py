"""The per-frame label model: what :func:`annotators.ground_truth.annotate` produces and
:class:`simgen.io.episode.EpisodeWriter` stores (``labels/objects``, ``labels/CAMERA``, ``labels/LIDAR``).

Arrays are dense over the episode's actors (index 0 is the ego, whose labels are empty); 2-D boxes are
(x0, y0, x1, y1) in continuous pixel coordinates (pixel i spans [i, i+1)), NaN where undefined.  Kept here, not in
``annotators``, so that the I/O layer depends only on this data model and not on the annotators that fill it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CameraLabels:
    bbox_mask: np.ndarray  # (A,4) float32
    bbox_proj: np.ndarray  # (A,4) float32, clipped to the image
    visible_pixels: np.ndarray  # (A,) int32
    amodal_pixels: np.ndarray  # (A,) int32
    visible_fraction: np.ndarray  # (A,) float32, NaN where amodal is 0
    truncation: np.ndarray  # (A,) float32, NaN where the box is not in front of the camera
    occlusion: np.ndarray  # (A,) uint8
    in_fov: np.ndarray  # (A,) bool: the projected box overlaps the image
    center_sensor: np.ndarray  # (A,3) optical frame
    quat_sensor: np.ndarray  # (A,4) w,x,y,z, box → optical frame


@dataclass
class LidarLabels:
    n_points: np.ndarray  # (A,) int32
    center_sensor: np.ndarray  # (A,3) sensor frame at the frame time
    quat_sensor: np.ndarray  # (A,4)


@dataclass
class FrameLabels:
    center_world: np.ndarray  # (A,3) box centre
    yaw_world: np.ndarray  # (A,)
    size: np.ndarray  # (A,3) l, w, h
    velocity_world: np.ndarray  # (A,3)
    center_ego: np.ndarray
    yaw_ego: np.ndarray
    velocity_ego: np.ndarray
    seen: np.ndarray  # (A,) bool
    cameras: dict[str, CameraLabels]
    lidars: dict[str, LidarLabels]
    # (A,4) w, x, y, z: the box's full orientation (yaw, pitch, roll; simgen.records) in the world and ego frames;
    # None = level boxes (the quaternion of the yaw alone)
    quat_world: np.ndarray | None = None
    quat_ego: np.ndarray | None = None
