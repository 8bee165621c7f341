"""ROS 2 message definitions (``.msg`` text) for the MCAP exporter's ``ros2`` encoding.

MCAP files with the ``ros2`` profile carry each channel's message definition as text: the top-level type's fields,
then every nested type it uses after a separator line and ``MSG: pkg/Type``.  Readers (Foxglove, ``ros2 bag``, the
``mcap-ros2-support`` decoder) parse that text, so no ROS installation is needed to write or read the files.

The field lists below follow the ROS 2 Humble interfaces (``std_msgs``, ``geometry_msgs``, ``sensor_msgs``,
``tf2_msgs``, ``visualization_msgs``) and Foxglove's ``foxglove_msgs`` image annotations; order and types decide
the CDR layout, comments are left out.  ``simgen_msgs`` is simgen's own: per-frame criticality and events.
"""
from __future__ import annotations

_SEP = "=" * 80

# Leaf and shared definitions: name -> (fields text, names of the nested types it uses)
_DEFS: dict[str, tuple[str, tuple[str, ...]]] = {
    "builtin_interfaces/Time": ("int32 sec\nuint32 nanosec\n", ()),
    "builtin_interfaces/Duration": ("int32 sec\nuint32 nanosec\n", ()),
    "std_msgs/Header": ("builtin_interfaces/Time stamp\nstring frame_id\n", ("builtin_interfaces/Time",)),
    "std_msgs/ColorRGBA": ("float32 r\nfloat32 g\nfloat32 b\nfloat32 a\n", ()),
    "geometry_msgs/Vector3": ("float64 x\nfloat64 y\nfloat64 z\n", ()),
    "geometry_msgs/Point": ("float64 x\nfloat64 y\nfloat64 z\n", ()),
    "geometry_msgs/Quaternion": ("float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n", ()),
    "geometry_msgs/Pose": ("Point position\nQuaternion orientation\n",
                           ("geometry_msgs/Point", "geometry_msgs/Quaternion")),
    "geometry_msgs/Transform": ("Vector3 translation\nQuaternion rotation\n",
                                ("geometry_msgs/Vector3", "geometry_msgs/Quaternion")),
    "geometry_msgs/TransformStamped": ("std_msgs/Header header\nstring child_frame_id\nTransform transform\n",
                                       ("std_msgs/Header", "geometry_msgs/Transform")),
    "tf2_msgs/TFMessage": ("geometry_msgs/TransformStamped[] transforms\n", ("geometry_msgs/TransformStamped",)),
    "sensor_msgs/CompressedImage": ("std_msgs/Header header\nstring format\nuint8[] data\n", ("std_msgs/Header",)),
    "sensor_msgs/Image": ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
                          "uint32 step\nuint8[] data\n", ("std_msgs/Header",)),
    "sensor_msgs/RegionOfInterest": ("uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\n"
                                     "bool do_rectify\n", ()),
    "sensor_msgs/CameraInfo": ("std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\n"
                               "float64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\n"
                               "uint32 binning_y\nRegionOfInterest roi\n",
                               ("std_msgs/Header", "sensor_msgs/RegionOfInterest")),
    "sensor_msgs/PointField": ("uint8 INT8=1\nuint8 UINT8=2\nuint8 INT16=3\nuint8 UINT16=4\nuint8 INT32=5\n"
                               "uint8 UINT32=6\nuint8 FLOAT32=7\nuint8 FLOAT64=8\n"
                               "string name\nuint32 offset\nuint8 datatype\nuint32 count\n", ()),
    "sensor_msgs/PointCloud2": ("std_msgs/Header header\nuint32 height\nuint32 width\nPointField[] fields\n"
                                "bool is_bigendian\nuint32 point_step\nuint32 row_step\nuint8[] data\nbool is_dense\n",
                                ("std_msgs/Header", "sensor_msgs/PointField")),
    "visualization_msgs/UVCoordinate": ("float32 u\nfloat32 v\n", ()),
    "visualization_msgs/MeshFile": ("string filename\nuint8[] data\n", ()),
    "visualization_msgs/Marker": (
        "int32 ARROW=0\nint32 CUBE=1\nint32 SPHERE=2\nint32 CYLINDER=3\nint32 LINE_STRIP=4\nint32 LINE_LIST=5\n"
        "int32 CUBE_LIST=6\nint32 SPHERE_LIST=7\nint32 POINTS=8\nint32 TEXT_VIEW_FACING=9\nint32 MESH_RESOURCE=10\n"
        "int32 TRIANGLE_LIST=11\nint32 ADD=0\nint32 MODIFY=0\nint32 DELETE=2\nint32 DELETEALL=3\n"
        "std_msgs/Header header\nstring ns\nint32 id\nint32 type\nint32 action\ngeometry_msgs/Pose pose\n"
        "geometry_msgs/Vector3 scale\nstd_msgs/ColorRGBA color\nbuiltin_interfaces/Duration lifetime\n"
        "bool frame_locked\ngeometry_msgs/Point[] points\nstd_msgs/ColorRGBA[] colors\nstring texture_resource\n"
        "sensor_msgs/CompressedImage texture\nUVCoordinate[] uv_coordinates\nstring text\nstring mesh_resource\n"
        "MeshFile mesh_file\nbool mesh_use_embedded_materials\n",
        ("std_msgs/Header", "geometry_msgs/Pose", "geometry_msgs/Vector3", "std_msgs/ColorRGBA",
         "builtin_interfaces/Duration", "geometry_msgs/Point", "sensor_msgs/CompressedImage",
         "visualization_msgs/UVCoordinate", "visualization_msgs/MeshFile")),
    "visualization_msgs/MarkerArray": ("Marker[] markers\n", ("visualization_msgs/Marker",)),
    "foxglove_msgs/Color": ("float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n", ()),
    "foxglove_msgs/Point2": ("float64 x\nfloat64 y\n", ()),
    "foxglove_msgs/CircleAnnotation": ("builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
                                       "float64 diameter\nfloat64 thickness\nfoxglove_msgs/Color fill_color\n"
                                       "foxglove_msgs/Color outline_color\n",
                                       ("builtin_interfaces/Time", "foxglove_msgs/Point2", "foxglove_msgs/Color")),
    "foxglove_msgs/PointsAnnotation": ("uint8 UNKNOWN=0\nuint8 POINTS=1\nuint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\n"
                                       "uint8 LINE_LIST=4\nbuiltin_interfaces/Time timestamp\nuint8 type\n"
                                       "foxglove_msgs/Point2[] points\nfoxglove_msgs/Color outline_color\n"
                                       "foxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\n"
                                       "float64 thickness\n",
                                       ("builtin_interfaces/Time", "foxglove_msgs/Point2", "foxglove_msgs/Color")),
    "foxglove_msgs/TextAnnotation": ("builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
                                     "string text\nfloat64 font_size\nfoxglove_msgs/Color text_color\n"
                                     "foxglove_msgs/Color background_color\n",
                                     ("builtin_interfaces/Time", "foxglove_msgs/Point2", "foxglove_msgs/Color")),
    "foxglove_msgs/ImageAnnotations": ("foxglove_msgs/CircleAnnotation[] circles\n"
                                       "foxglove_msgs/PointsAnnotation[] points\n"
                                       "foxglove_msgs/TextAnnotation[] texts\n",
                                       ("foxglove_msgs/CircleAnnotation", "foxglove_msgs/PointsAnnotation",
                                        "foxglove_msgs/TextAnnotation")),
    "simgen_msgs/ActorCriticality": ("uint32 id\nstring name\nstring kind\nfloat64 ttc_s\nfloat64 gap_m\n", ()),
    "simgen_msgs/Criticality": ("std_msgs/Header header\nuint32 frame\nfloat64 ego_speed_mps\n"
                                "float64 ego_accel_mps2\nfloat64 ego_jerk_mps3\nfloat64 min_ttc_s\nfloat64 min_gap_m\n"
                                "string closest_actor\nbool collision\nsimgen_msgs/ActorCriticality[] actors\n",
                                ("std_msgs/Header", "simgen_msgs/ActorCriticality")),
    "simgen_msgs/Event": ("std_msgs/Header header\nuint32 frame\nstring name\nstring actor\nstring other\n",
                          ("std_msgs/Header",)),
}


def _closure(name: str) -> list[str]:
    """Nested types of ``name`` in first-use order (depth first), without ``name`` itself."""
    out: list[str] = []

    def visit(n: str) -> None:
        for dep in _DEFS[n][1]:
            if dep not in out:
                out.append(dep)
                visit(dep)

    visit(name)
    return out


def definition(name: str) -> str:
    """Full message definition text of ``name`` (``pkg/Type``) with its nested types appended."""
    parts = [_DEFS[name][0]]
    for dep in _closure(name):
        parts.append(f"{_SEP}\nMSG: {dep}\n{_DEFS[dep][0]}")
    return "\n".join(parts)


def schema_name(name: str) -> str:
    """``pkg/Type`` -> the ROS 2 schema name ``pkg/msg/Type`` used in MCAP files."""
    pkg, typ = name.split("/")
    return f"{pkg}/msg/{typ}"


# sensor_msgs/PointField datatypes
POINTFIELD = {"int8": 1, "uint8": 2, "int16": 3, "uint16": 4, "int32": 5, "uint32": 6, "float32": 7, "float64": 8}
