"""Tests for simgen.world.roads: polyline frames, the three built-in maps, routes, scenery and parking."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simgen.classes import ROADLINE, ROADS, SIDEWALKS, TERRAIN  # noqa: E402
from simgen.world.materials import ASPHALT, CONCRETE, GRASS, KERB, ROAD_PAINT  # noqa: E402
from simgen.world.roads import MAPS, SIDEWALK_HEIGHT, Polyline, get_map  # noqa: E402

MAP_NAMES = ["straight", "curve", "intersection"]


def _angle_diff(a, b):
    return np.abs(np.arctan2(np.sin(a - b), np.cos(a - b)))


def _arc_polyline(r=20.0, theta=math.pi / 2, step=0.5, centre=(3.0, -2.0), a0=0.3):
    n = int(math.ceil(r * theta / step))
    a = np.linspace(a0, a0 + theta, n + 1)
    return Polyline(np.stack([centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)], axis=-1)), np.array(centre), r


def _xy(poly, s, lat=0.0):
    x, y, _ = poly.pose_at(s, lat)
    return np.stack([x, y], axis=-1)


# --------------------------------------------------------------------------------------------------- Polyline


def test_polyline_straight_round_trip():
    rng = np.random.default_rng(1)
    d = np.array([math.cos(0.5), math.sin(0.5)])
    p = Polyline(np.array([1.0, 2.0]) + np.array([[0.0], [10.0], [60.0]]) * d)  # collinear vertices
    assert p.length == pytest.approx(60.0)
    s, lat = rng.uniform(0, p.length, 500), rng.uniform(-2, 2, 500)
    x, y, yaw = p.pose_at(s, lat)
    assert np.allclose(yaw, 0.5)
    left = np.array([-d[1], d[0]])  # lateral > 0 is to the left of the direction of travel
    assert np.allclose(np.stack([x, y], -1), [1.0, 2.0] + s[:, None] * d + lat[:, None] * left)
    s2, lat2 = p.project(np.stack([x, y], -1))
    assert np.max(np.abs(s2 - s)) < 1e-6 and np.max(np.abs(lat2 - lat)) < 1e-6
    s1, l1 = p.project(np.array([1.0, 2.0]) + 5.0 * d - 1.5 * left)
    assert np.ndim(s1) == 0 and s1 == pytest.approx(5.0) and l1 == pytest.approx(-1.5)
    # with a corner the lateral frame is mitred: the round trip still holds and |lateral| is the distance
    bent = Polyline(np.array([[0.0, 0.0], [10.0, 0.0], [30.0, 20.0]]))
    s, lat = rng.uniform(0, bent.length, 500), rng.uniform(-2, 2, 500)
    xy = np.stack(bent.pose_at(s, lat)[:2], -1)
    s2, lat2 = bent.project(xy)
    assert np.max(np.abs(s2 - s)) < 1e-6 and np.max(np.abs(lat2 - lat)) < 1e-6
    first = s < 10.0
    assert np.allclose(xy[first, 1], lat[first])


def test_polyline_arc_round_trip_and_geometry():
    rng = np.random.default_rng(2)
    p, c, r = _arc_polyline()
    s, lat = rng.uniform(0, p.length, 2000), rng.uniform(-2, 2, 2000)
    x, y, yaw = p.pose_at(s, lat)
    s2, lat2 = p.project(np.stack([x, y], -1))
    assert np.max(np.abs(s2 - s)) < 1e-3 and np.max(np.abs(lat2 - lat)) < 1e-3
    # a left-turning arc: positive lateral is towards the centre, headings are tangent (CCW)
    rad = np.hypot(x - c[0], y - c[1])
    assert np.max(np.abs(rad - (r - lat))) < 5e-3
    tangent = np.arctan2(y - c[1], x - c[0]) + math.pi / 2
    assert np.max(_angle_diff(yaw, tangent)) < math.radians(0.5)
    assert float(p.curvature_at(p.length / 2)) == pytest.approx(1.0 / r, rel=1e-2)


def test_arc_length():
    p, _, r = _arc_polyline(r=30.0, theta=1.2)
    assert p.length == pytest.approx(r * 1.2, rel=1e-3)
    assert p.length == pytest.approx(r * 1.2, abs=0.05)
    p2, _, _ = _arc_polyline(r=120.0, theta=math.pi / 2, step=1.0)
    assert p2.length == pytest.approx(2 * math.pi * 120.0 / 4, rel=1e-3)


def test_concat_continuity():
    a = Polyline(np.array([[0.0, 0.0], [10.0, 0.0]]))
    b, c, r = _arc_polyline(r=10.0, theta=math.pi / 2, centre=(10.0, 10.0), a0=-math.pi / 2)
    joined = Polyline.concat([a, b])
    assert len(joined.points) == len(a.points) + len(b.points) - 1  # the duplicate joint point is dropped
    assert joined.length == pytest.approx(a.length + b.length)
    s = np.arange(0.0, joined.length, 0.25)
    pts = _xy(joined, s)
    assert np.max(np.linalg.norm(np.diff(pts, axis=0), axis=1)) <= 0.25 + 1e-9
    _, _, yaw = joined.pose_at(s)
    assert np.max(_angle_diff(yaw[1:], yaw[:-1])) < 0.05  # no heading jumps at the joint
    nudged = Polyline(b.points + [0.0, 1e-5])  # starts 10 um from a's end: the same joint
    assert len(Polyline.concat([a, nudged]).points) == len(a.points) + len(b.points) - 1
    gap = Polyline.concat([a, Polyline(np.array([[12.0, 0.0], [20.0, 0.0]]))])
    assert len(gap.points) == 4 and gap.length == pytest.approx(20.0)


def test_extrapolation_beyond_ends():
    p, _, _ = _arc_polyline(r=25.0, theta=math.pi / 2)
    xe, ye, ya = p.pose_at(p.length)
    x, y, yaw = p.pose_at(p.length + 5.0)
    assert (x, y) == pytest.approx((xe + 5 * math.cos(ya), ye + 5 * math.sin(ya)), abs=1e-9)
    assert yaw == pytest.approx(ya)
    xs, ys, ys_yaw = p.pose_at(0.0)
    x, y, _ = p.pose_at(-3.0)
    assert (x, y) == pytest.approx((xs - 3 * math.cos(ys_yaw), ys - 3 * math.sin(ys_yaw)), abs=1e-9)
    for s_out in (p.length + 7.0, -4.0):
        s2, lat2 = p.project(np.array(p.pose_at(s_out, 1.2)[:2]))
        assert s2 == pytest.approx(s_out, abs=1e-6) and lat2 == pytest.approx(1.2, abs=1e-6)
    # the end heading of a sampled arc is the true tangent, not the last chord
    assert _angle_diff(ya, 0.3 + math.pi / 2 + math.pi / 2) < math.radians(0.1)


def test_pose_at_broadcasts():
    p, _, _ = _arc_polyline()
    x, y, yaw = p.pose_at(np.linspace(0, 10, 3)[:, None], np.array([-1.0, 0.0, 1.0, 2.0])[None, :])
    assert x.shape == y.shape == yaw.shape == (3, 4)
    assert np.ndim(p.pose_at(1.0)[0]) == 0


# --------------------------------------------------------------------------------------------------- maps


@pytest.fixture(scope="module", params=MAP_NAMES)
def road_map(request):
    return get_map(request.param)


def test_registry_and_cache():
    assert set(MAP_NAMES) <= set(MAPS)
    assert get_map("straight") is get_map("straight")
    with pytest.raises(KeyError, match="intersection"):
        get_map("no_such_map")
    for name in MAP_NAMES:
        m = get_map(name)
        assert m.name == name and m.description and "\n" not in m.description


def test_lane_centres_on_road(road_map):
    m = road_map
    driving = [ln for ln in m.lanes.values() if ln.kind == "driving"]
    assert driving
    for lane in m.lanes.values():
        s = np.linspace(0.5, lane.centre.length - 0.5, 40)
        pts = _xy(lane.centre, s)
        assert np.all(m.surface_at(pts) == ROADS), lane.id
        assert np.allclose(m.ground_height(pts), 0.0)
        if lane.kind == "driving":
            found = m.lane_at(pts)
            assert all(f is not None and m.lanes[f].road_id == lane.road_id for f in found), lane.id
            assert sum(f == lane.id for f in found) >= 0.9 * len(found), lane.id


def test_sidewalks_are_sidewalks(road_map):
    m = road_map
    assert m.sidewalks
    for sw in m.sidewalks:
        pts = _xy(sw.centre, np.linspace(0.5, sw.centre.length - 0.5, 100))
        assert np.all(m.surface_at(pts) == SIDEWALKS), sw.id
        assert np.allclose(m.ground_height(pts), SIDEWALK_HEIGHT)
        assert m.lane_at(pts) == [None] * len(pts)


def test_adjacent_lanes_width_apart(road_map):
    m = road_map
    pairs = [(ln, m.lanes[ln.right]) for ln in m.lanes.values() if ln.right]
    assert pairs
    for lane, right in pairs:
        assert right.left == lane.id
        s = np.linspace(1.0, lane.centre.length - 1.0, 30)
        x, y, yaw = lane.centre.pose_at(s)
        s_r, lat_r = right.centre.project(np.stack([x, y], -1))
        assert np.allclose(lat_r, (lane.width_m + right.width_m) / 2, atol=1e-3), lane.id  # lane is left of it
        assert np.max(_angle_diff(right.centre.pose_at(s_r)[2], yaw)) < math.radians(1.0)


def test_lane_directions_opposite(road_map):
    m = road_map
    pairs = [("fwd_1", "bwd_1"), ("fwd_2", "bwd_2")] if "fwd_1" in m.lanes else [
        (f"{a}_in_{k}", f"{a}_out_{k}") for a in ("north", "east", "south", "west") for k in (1, 2)]
    for a, b in pairs:
        la, lb = m.lanes[a].centre, m.lanes[b].centre
        x, y, yaw = la.pose_at(np.linspace(1.0, la.length - 1.0, 25))
        s_b, lat_b = lb.project(np.stack([x, y], -1))
        assert np.all(lat_b > 0)  # the opposite lane lies to its left (drive on the right)
        assert np.max(_angle_diff(lb.pose_at(s_b)[2], yaw + math.pi)) < math.radians(1.0)


def test_ground_mesh_complete_and_flat_up(road_map):
    g = road_map.ground
    assert 0 < g.n_triangles < 60_000
    assert np.all(g.material != 0) and np.all(g.semantic != 0)
    v = g.vertices.astype(np.float64)
    p = v[g.triangles]
    nrm = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    assert np.all(nrm[:, 2] >= -1e-9)  # horizontal faces point up, kerb faces are vertical
    # Horizontal non-paint surfaces tile the bounds rectangle exactly: no gaps and no overlaps (no z-fighting).
    base = (g.material != ROAD_PAINT) & (nrm[:, 2] > 1e-9)
    lo, hi = road_map.bounds()
    assert 0.5 * nrm[base, 2].sum() == pytest.approx(np.prod(hi - lo), rel=1e-4)
    paint = g.material == ROAD_PAINT
    assert np.all(g.semantic[paint] == ROADLINE) and np.allclose(p[paint][..., 2], 0.01, atol=1e-6)


def test_downward_rays_hit_ground(road_map):
    pytest.importorskip("libusb_package")
    import ctypes

    import libusb_package

    ctypes.CDLL(str(libusb_package.get_library_path()), mode=ctypes.RTLD_GLOBAL)
    o3d = pytest.importorskip("open3d")
    m = road_map
    lo, hi = m.bounds()
    xs = np.arange(lo[0] + 0.31, hi[0] - 0.3, 1.37)
    ys = np.arange(lo[1] + 0.29, hi[1] - 0.3, 0.53)
    X, Y = np.meshgrid(xs, ys)
    xy = np.stack([X.ravel(), Y.ravel()], -1)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(m.ground.vertices), o3d.core.Tensor(m.ground.triangles.astype(np.uint32)))
    rays = np.zeros((len(xy), 6), np.float32)
    rays[:, :2], rays[:, 2], rays[:, 5] = xy, 20.0, -1.0
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    t = ans["t_hit"].numpy()
    assert np.all(np.isfinite(t)), f"{np.count_nonzero(~np.isfinite(t))} rays missed the ground"
    hit_sem = m.ground.semantic[ans["primitive_ids"].numpy().astype(np.int64)]
    expected = m.surface_at(xy)
    ok = (hit_sem == expected) | ((expected == ROADS) & (hit_sem == ROADLINE))
    assert ok.mean() >= 0.98
    z_ok = np.abs((20.0 - t) - m.ground_height(xy)) <= 0.011
    assert z_ok.mean() >= 0.98
    for cls in (ROADS, SIDEWALKS, TERRAIN, ROADLINE):
        assert np.any(hit_sem == cls)


def test_parking_slots_on_shoulders():
    for name in MAP_NAMES:
        m = get_map(name)
        assert len(m.parking_slots) > 10, name
        for slot in m.parking_slots:
            c, s = math.cos(slot.yaw), math.sin(slot.yaw)
            half = [slot.length_m / 2 - 0.05, slot.width_m / 2 - 0.05]
            local = np.array([[0, 0], [1, 1], [1, -1], [-1, 1], [-1, -1]]) * half
            pts = local @ np.array([[c, s], [-s, c]]) + [slot.x, slot.y]
            assert np.all(m.surface_at(pts) == ROADS), (name, slot)
            for lid in m.lane_at(pts):
                assert lid is None or m.lanes[lid].kind == "shoulder", (name, slot, lid)


# --------------------------------------------------------------------------------------------------- intersection


@pytest.fixture(scope="module")
def junction():
    return get_map("intersection")


def test_intersection_successors(junction):
    m = junction
    arms = ("north", "east", "south", "west")
    opposite = dict(zip(arms, ("south", "west", "north", "east")))
    for arm in arms:
        for k in (1, 2):
            lane = m.lanes[f"{arm}_in_{k}"]
            conn = m.lanes[lane.successors["straight"]]
            assert conn.kind == "connector" and conn.successors == {"straight": f"{opposite[arm]}_out_{k}"}
            assert set(lane.successors) == ({"straight", "left"} if k == 1 else {"straight", "right"})
            assert m.lanes[f"{arm}_out_{k}"].successors == {}
    left = m.lanes["south_in_1"].successors["left"]
    assert left == "south_in_1>west_out_1"
    assert m.lanes["south_in_2"].successors["right"] == "south_in_2>east_out_2"
    x, y, yaw = m.lanes[left].centre.pose_at(m.lanes[left].centre.length)
    assert _angle_diff(yaw, math.pi) < math.radians(1.0) and x < 0


def test_connectors_match_lane_ends(junction):
    m = junction
    conns = [ln for ln in m.lanes.values() if ln.kind == "connector"]
    assert len(conns) == 16
    for c in conns:
        src = next(ln for ln in m.lanes.values() if c.id in ln.successors.values())
        dst = m.lanes[c.successors["straight"]]
        for (pa, ya), (pb, yb) in (
            (_pose(c.centre, 0.0), _pose(src.centre, src.centre.length)),
            (_pose(c.centre, c.centre.length), _pose(dst.centre, 0.0)),
        ):
            assert np.linalg.norm(pa - pb) < 0.05, c.id
            assert _angle_diff(ya, yb) < math.radians(1.0), c.id
        assert np.max(np.diff(c.centre.vertex_s)) <= 1.0 + 1e-9
        # smooth: heading changes by at most ~6 degrees per metre and never reverses direction of turn
        _, _, yaw = c.centre.pose_at(np.arange(0.0, c.centre.length, 0.5))
        dyaw = np.diff(np.unwrap(yaw))
        assert np.max(np.abs(dyaw)) < math.radians(6.0) and (np.all(dyaw >= -1e-9) or np.all(dyaw <= 1e-9))


def _pose(poly, s):
    x, y, yaw = poly.pose_at(s)
    return np.array([x, y]), yaw


def test_stop_lines_and_lights(junction):
    m = junction
    lights = {t.id: t for t in m.traffic_lights}
    assert len(lights) == 4
    for arm in ("north", "east", "south", "west"):
        for k in (1, 2):
            lane = m.lanes[f"{arm}_in_{k}"]
            assert lane.stop_s is not None and 100.0 < lane.stop_s < lane.centre.length
            light = lights[lane.signal]
            assert lane.id in light.lanes
            assert light.group == ("NS" if arm in ("north", "south") else "EW")
            x, y, yaw = lane.centre.pose_at(lane.stop_s)
            assert _angle_diff(light.yaw, yaw + math.pi) < 1e-6  # lamps face the approaching traffic
            _, lat = lane.centre.project(light.position[:2])
            assert lat < 0  # on the right-hand side
            assert m.surface_at(light.position[:2])[0] == SIDEWALKS
            assert np.linalg.norm(light.position[:2] - [x, y]) < 15.0
            # the stop line is painted just past stop_s, and the road just before it is bare asphalt
            assert _ray_semantic(m, _xy(lane.centre, lane.stop_s + 0.2)) == ROADLINE
            assert _ray_semantic(m, _xy(lane.centre, lane.stop_s - 0.5)) == ROADS
    assert lights["tl_south"].group == "NS" and lights["tl_east"].group == "EW"
    assert {m.lanes["south_in_1"].signal, m.lanes["south_in_2"].signal} == {"tl_south"}


_TRI_CACHE: dict[str, tuple] = {}


def _top_triangle(m, xy) -> int:
    """Index of the top-most ground triangle under xy (brute force, no ray-casting library needed)."""
    if m.name not in _TRI_CACHE:
        p = m.ground.vertices.astype(np.float64)[m.ground.triangles]
        _TRI_CACHE[m.name] = (p, p[..., :2].min(1), p[..., :2].max(1))
    p, lo, hi = _TRI_CACHE[m.name]
    idx = np.flatnonzero(np.all((lo <= xy) & (hi >= xy), axis=1))
    a, b, c = p[idx, 0, :2], p[idx, 1, :2], p[idx, 2, :2]

    def cross(o, q, r):
        return (q[:, 0] - o[:, 0]) * (r[:, 1] - o[:, 1]) - (q[:, 1] - o[:, 1]) * (r[:, 0] - o[:, 0])

    pt = np.broadcast_to(xy, a.shape)
    d1, d2, d3 = cross(a, b, pt), cross(b, c, pt), cross(c, a, pt)
    same_side = ((d1 >= 0) & (d2 >= 0) & (d3 >= 0)) | ((d1 <= 0) & (d2 <= 0) & (d3 <= 0))
    inside = (np.abs(cross(a, b, c)) > 1e-9) & same_side
    idx = idx[inside]
    assert len(idx), xy
    return int(idx[np.argmax(p[idx, :, 2].mean(1))])


def _ray_semantic(m, xy):
    return m.ground.semantic[_top_triangle(m, np.asarray(xy, np.float64))]


def test_cross_section_profile():
    """Across the straight road: asphalt and paint at z=0/0.01, kerb, raised sidewalk, grass beyond."""
    m = get_map("straight")
    for y in np.arange(-15.0, 15.0, 0.05) + 0.013:
        t = _top_triangle(m, np.array([20.3, y]))
        mat, sem = m.ground.material[t], m.ground.semantic[t]
        z = float(m.ground.vertices[m.ground.triangles[t], 2].mean())
        a = abs(y)
        if a < 9.5:
            assert (mat, sem, z) in ((ASPHALT, ROADS, 0.0), (ROAD_PAINT, ROADLINE, pytest.approx(0.01))), y
        elif a < 9.7:
            assert (mat, sem, z) == (KERB, SIDEWALKS, pytest.approx(SIDEWALK_HEIGHT)), y
        elif a < 12.5:
            assert (mat, sem, z) == (CONCRETE, SIDEWALKS, pytest.approx(SIDEWALK_HEIGHT)), y
        else:
            assert (mat, sem, z) == (GRASS, TERRAIN, pytest.approx(0.15)), y
    # vertical kerb faces along both kerb lines, facing the road
    kerb = (m.ground.material == KERB)
    v = m.ground.vertices.astype(np.float64)[m.ground.triangles[kerb]]
    nrm = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    wall = np.abs(nrm[:, 2]) < 1e-9
    assert np.count_nonzero(wall) >= 4
    assert np.all(nrm[wall, 1] * v[wall, 0, 1] < 0)


def test_markings_layout():
    m = get_map("straight")
    x = np.arange(0.0, 90.0, 0.25) + 0.01
    for y, frac in ((0.125, 1.0), (-0.125, 1.0), (7.0, 1.0), (-7.0, 1.0), (3.5, 1 / 3), (-3.5, 1 / 3), (1.75, 0.0)):
        paint = np.array([_ray_semantic(m, np.array([xi, y])) == ROADLINE for xi in x])
        assert paint.mean() == pytest.approx(frac, abs=0.02), y
    dash = np.array([_ray_semantic(m, np.array([xi, 3.5])) == ROADLINE for xi in x])
    runs = np.diff(np.flatnonzero(np.diff(dash.astype(int))))  # alternating dash / gap run lengths in samples
    assert set(np.round(runs * 0.25).astype(int)) <= {3, 6}


def test_crosswalks_and_junction(junction):
    m = junction
    assert len(m.crosswalks) == 4 and len(m.junctions) == 1
    box = m.junctions[0]
    for cw in m.crosswalks:
        assert cw.polygon.shape == (4, 2)
        centre = cw.polygon.mean(0)
        assert m.surface_at(centre)[0] == ROADS
        assert not np.any(_inside(box, cw.polygon))  # just outside the junction box
        assert np.linalg.norm(cw.polygon - box.mean(0), axis=1).min() < 20.0
        across = (cw.end - cw.start) / np.linalg.norm(cw.end - cw.start)
        for end, out in ((cw.start, -across), (cw.end, across)):  # from kerb to kerb
            assert m.surface_at(end - 0.3 * out)[0] == ROADS and m.surface_at(end + 0.3 * out)[0] == SIDEWALKS
        assert _ray_semantic(m, centre) == ROADLINE  # a zebra stripe
    # sidewalks never cover the junction: the whole junction area is road
    lo, hi = box.min(0), box.max(0)
    g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 60), np.linspace(lo[1], hi[1], 60)), -1).reshape(-1, 2)
    g = g[_inside(box, g)]
    assert len(g) > 1000 and np.all(m.surface_at(g) == ROADS)
    span = hi - lo
    assert np.all((span > 18.0) & (span < 30.0))


def _inside(poly, pts):
    x, y = pts[:, :1], pts[:, 1:]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.count_nonzero(((y0 > y) != (y1 > y)) & (x < xi), axis=1) % 2 == 1


# --------------------------------------------------------------------------------------------------- route


def test_route_through_left_turn(junction):
    m = junction
    r = m.route("south_in_1", ["left"])
    parts = ["south_in_1", "south_in_1>west_out_1", "west_out_1"]
    total = sum(m.lanes[p].centre.length for p in parts)
    assert r.length >= total - 1e-6 and r.length == pytest.approx(total, rel=1e-6)
    pts = _xy(r, np.arange(0.0, r.length, 1.0))
    assert np.max(np.linalg.norm(np.diff(pts, axis=0), axis=1)) <= 1.1
    assert np.linalg.norm(r.points[-1] - m.lanes["west_out_1"].centre.points[-1]) < 1e-6
    straight = m.route("south_in_2")  # default: straight on
    assert np.linalg.norm(straight.points[-1] - m.lanes["north_out_2"].centre.points[-1]) < 1e-6
    with pytest.raises(ValueError):
        m.route("south_in_1", ["right"])


def test_route_min_length_extension():
    m = get_map("straight")
    r = m.route("bwd_2", min_length_m=800.0)
    assert r.length >= 800.0
    x, y, yaw = r.pose_at(r.length)
    assert x < -150.0 - 250.0 and y == pytest.approx(5.25) and _angle_diff(yaw, math.pi) < 1e-9
    assert m.route("fwd_1").length == pytest.approx(500.0)


# --------------------------------------------------------------------------------------------------- scenery


def _footprint_samples(item, n=7):
    c, s = math.cos(item.yaw), math.sin(item.yaw)
    g = np.linspace(-0.5, 0.5, n)
    a, b = np.meshgrid(g * item.params["length_m"], g * item.params["width_m"])
    local = np.stack([a.ravel(), b.ravel()], -1)
    return local @ np.array([[c, s], [-s, c]]) + [item.x, item.y]


def _in_rect(item, pts):
    c, s = math.cos(item.yaw), math.sin(item.yaw)
    d = pts - [item.x, item.y]
    u, v = d @ [c, s], d @ [-s, c]
    return (np.abs(u) < item.params["length_m"] / 2) & (np.abs(v) < item.params["width_m"] / 2)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_scenery(name):
    m = get_map(name)
    items = m.scenery(np.random.default_rng(7))
    assert items == m.scenery(np.random.default_rng(7))
    assert items != m.scenery(np.random.default_rng(8))
    assert m.scenery(np.random.default_rng(7), density=0.0) == []
    kinds = {it.kind for it in items}
    assert {"building", "tree", "pole", "sign"} <= kinds
    buildings = [it for it in items if it.kind == "building"]
    assert len(buildings) >= 10
    lo, hi = m.bounds()
    for i, b in enumerate(buildings):
        assert 6.0 <= b.params["height_m"] <= 30.0
        pts = _footprint_samples(b)
        assert np.all(m.surface_at(pts) == TERRAIN), b
        assert np.all((pts >= lo) & (pts <= hi))
        for other in buildings[i + 1:]:
            assert not np.any(_in_rect(other, pts)) and not np.any(_in_rect(b, _footprint_samples(other)))
    for it in items:
        if it.kind in ("tree", "pole", "sign"):
            assert m.surface_at(np.array([it.x, it.y]))[0] == SIDEWALKS, it
        assert it.z == pytest.approx(float(m.ground_height(np.array([it.x, it.y]))[0]))
    sparse = m.scenery(np.random.default_rng(7), density=0.4)
    assert 0 < len(sparse) < len(items)


def test_compiled_small_calls_match_the_vectorised_path():
    """Issue 13: Polyline hands calls of up to 64 points to compiled loops (simgen/world/polyline_kernels.py);
    they must give what the vectorised numpy code gives for the same points (above 64 points), including points
    beyond the ends, inside tight bends (the Euclidean fallback) and far off the path."""
    import simgen.world.roads as roads

    rng = np.random.default_rng(5)
    th = np.linspace(0.0, 1.5 * math.pi, 120)
    bend = Polyline(np.stack([8.0 * np.cos(th), 8.0 * np.sin(th)], 1))  # radius 8 m: ambiguous inside
    zig = Polyline(np.cumsum(rng.uniform(0.3, 1.0, (200, 2)) * [1.0, 0.3], axis=0))
    # sharp turns: points out beyond them are reached by no segment's frame and no end (the Euclidean fallback)
    sharp = Polyline([[0.377, -0.396], [2.298, -0.082], [0.691, 1.003], [4.603, 3.844], [2.492, 0.048], [0.622, 0.172]])
    for poly in (bend, zig, sharp):
        lo, hi = poly.points.min(0) - 15, poly.points.max(0) + 15
        P = rng.uniform(lo, hi, (640, 2))
        P[:3] = [[9.564, 8.571], [8.571, 8.388], [9.336, 8.235]]
        s_vec, lat_vec = poly.project(P)  # > 64 points: numpy
        assert len(P) > roads._SMALL
        got = [poly.project(P[i:i + 40]) for i in range(0, len(P), 40)]  # <= 64: compiled
        assert np.allclose(np.concatenate([g[0] for g in got]), s_vec, atol=1e-9, equal_nan=True)
        assert np.allclose(np.concatenate([g[1] for g in got]), lat_vec, atol=1e-9)
        s = rng.uniform(-20, poly.length + 20, 640)
        lat = rng.uniform(-5, 5, 640)
        x, y, yaw = poly.pose_at(s, lat)
        small = [poly.pose_at(s[i:i + 40], lat[i:i + 40]) for i in range(0, len(s), 40)]
        for j, ref in enumerate((x, y, yaw)):
            assert np.allclose(np.concatenate([g[j] for g in small]), ref, atol=1e-9)
        one = poly.project(P[7])
        assert np.isscalar(one[0]) or np.ndim(one[0]) == 0
        assert one[0] == pytest.approx(s_vec[7]) and one[1] == pytest.approx(lat_vec[7])
