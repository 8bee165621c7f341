"""simgen: labelled synthetic camera and LiDAR data for autonomous-driving edge cases.

``import simgen`` is light: it pulls in neither open3d, carla nor ray.  See README.md for the pipeline.
"""
__version__ = "0.1.0"
FORMAT_VERSION = 3  # version of the HDF5 episode layout (README.md "Episode file layout"); 2: LZ4 images and LiDAR;
# 3: actors/pitch_roll and labels/objects/quat_world, quat_ego (actors on slopes; files < 3 read as level)
