"""Tests for the procedural meshes (simgen.world.meshes): label-box contract, validity, winding, shape proxies."""
from __future__ import annotations

import numpy as np
import pytest

from simgen import classes
from simgen._o3d import o3d
from simgen.classes import ACTOR_KINDS
from simgen.world import materials as mat
from simgen.world.mesh import Mesh
from simgen.world.meshes import (
    SIGN_KINDS,
    actor_mesh,
    building_mesh,
    pole_mesh,
    sign_mesh,
    traffic_light_mesh,
    tree_mesh,
)

MATERIAL_IDS = {m.id for m in mat.MATERIALS.values()}
MAX_ACTOR_TRIANGLES = 2000


def _dims(kind: str, f: float) -> tuple[float, float, float]:
    ak = ACTOR_KINDS[kind]
    return tuple(lo + f * (hi - lo) for lo, hi in (ak.length_m, ak.width_m, ak.height_m))


def _areas(m: Mesh) -> np.ndarray:
    v = m.vertices.astype(np.float64)
    t = m.triangles
    return 0.5 * np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1)


def _normals(m: Mesh, tri_idx: np.ndarray) -> np.ndarray:
    """Geometric normals from the mesh's own vertex order (counter-clockwise => outward), unit length."""
    v = m.vertices.astype(np.float64)
    t = m.triangles[tri_idx]
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _scene(m: Mesh):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(m.vertices.astype(np.float32)), o3d.core.Tensor(m.triangles.astype(np.uint32)))
    return scene


def _cast(scene, origins, dirs):
    rays = np.concatenate([origins, dirs], axis=1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    return ans["t_hit"].numpy(), ans["primitive_ids"].numpy()


def _assert_valid(m: Mesh, *, semantic_nonzero: bool = False) -> None:
    assert m.vertices.dtype == np.float32 and m.vertices.ndim == 2 and m.vertices.shape[1] == 3
    assert m.triangles.dtype == np.int32 and m.triangles.shape[1] == 3
    assert m.material.dtype == np.uint8 and m.semantic.dtype == np.uint8
    assert len(m.material) == len(m.semantic) == m.n_triangles > 0
    assert np.isfinite(m.vertices).all()
    assert m.triangles.min() >= 0 and m.triangles.max() < len(m.vertices)
    t = m.triangles
    assert np.all((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])), "repeated vertex index"
    assert _areas(m).min() > 1e-7, "degenerate (zero-area) triangle"
    assert set(np.unique(m.material).tolist()) <= MATERIAL_IDS
    if semantic_nonzero:
        assert m.semantic.min() > 0, "scenery must label every triangle"


def _outward_fraction(m: Mesh, n_rays: int = 3000, seed: int = 0) -> float:
    """Cast rays from a sphere around the mesh towards random points of its box; the fraction of hits whose
    triangle (by vertex order) faces back towards the ray origin."""
    lo, hi = (b.astype(np.float64) for b in m.bounds())
    centre, radius = (lo + hi) / 2, np.linalg.norm(hi - lo)
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_rays, 3))
    origins = centre + radius * d / np.linalg.norm(d, axis=1, keepdims=True)
    dirs = lo + rng.random((n_rays, 3)) * (hi - lo) - origins
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t_hit, prim = _cast(_scene(m), origins, dirs)
    hit = np.isfinite(t_hit)
    assert hit.sum() > 0.3 * n_rays
    n = _normals(m, prim[hit])
    return float(np.mean(np.einsum("ij,ij->i", n, dirs[hit]) < 0))


# --------------------------------------------------------------------------------------------------- actors


@pytest.mark.parametrize("kind", sorted(ACTOR_KINDS))
@pytest.mark.parametrize("f", [0.0, 0.5, 1.0], ids=["min", "mid", "max"])
def test_actor_mesh_fills_label_box_and_is_valid(kind, f):
    l, w, h = _dims(kind, f)
    m = actor_mesh(kind, l, w, h)
    _assert_valid(m)
    lo, hi = m.bounds()
    np.testing.assert_allclose(lo, [-l / 2, -w / 2, 0.0], atol=1e-5)
    np.testing.assert_allclose(hi, [l / 2, w / 2, h], atol=1e-5)
    assert m.n_triangles <= MAX_ACTOR_TRIANGLES
    allowed = {0, classes.RIDER} if kind in ("motorcycle", "cyclist") else {0}
    assert set(np.unique(m.semantic).tolist()) <= allowed


@pytest.mark.parametrize("kind", ["car", "pedestrian", "truck"])
def test_actor_mesh_box_contract_beyond_the_ranges(kind):
    ak = ACTOR_KINDS[kind]
    for l, w, h in [(0.8 * ak.length_m[0], 0.85 * ak.width_m[0], 0.85 * ak.height_m[0]),
                    (1.2 * ak.length_m[1], 1.15 * ak.width_m[1], 1.15 * ak.height_m[1])]:
        m = actor_mesh(kind, l, w, h)
        _assert_valid(m)
        np.testing.assert_allclose(m.bounds()[0], [-l / 2, -w / 2, 0.0], atol=1e-5)
        np.testing.assert_allclose(m.bounds()[1], [l / 2, w / 2, h], atol=1e-5)


def test_actor_mesh_is_deterministic_and_rejects_unknown_kinds():
    a, b = actor_mesh("car", 4.5, 1.8, 1.5), actor_mesh("car", 4.5, 1.8, 1.5)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.triangles, b.triangles)
    with pytest.raises(ValueError):
        actor_mesh("spaceship", 4.0, 2.0, 1.5)
    with pytest.raises(ValueError):
        actor_mesh("car", 4.0, 0.0, 1.5)


def test_car_parts_and_budget():
    l, w, h = _dims("car", 0.5)
    m = actor_mesh("car", l, w, h)
    assert 300 <= m.n_triangles <= 1000
    present = set(np.unique(m.material).tolist())
    assert {mat.PAINT, mat.GLASS, mat.TYRE, mat.HEADLIGHT, mat.TAILLIGHT} <= present
    centroids = m.vertices[m.triangles].mean(axis=1)
    assert centroids[m.material == mat.HEADLIGHT, 0].min() > 0.4 * l  # headlights at the front
    assert centroids[m.material == mat.TAILLIGHT, 0].max() < -0.4 * l  # tail lights at the rear
    tyre_v = m.vertices[np.unique(m.triangles[m.material == mat.TYRE])]
    assert tyre_v[:, 2].min() == pytest.approx(0.0, abs=1e-5)  # wheels stand on the ground
    for sx in (1, -1):  # four wheels: tyre material in each quadrant
        for sy in (1, -1):
            c = centroids[m.material == mat.TYRE]
            assert np.any((np.sign(c[:, 0]) == sx) & (np.sign(c[:, 1]) == sy))


def _n_clusters(values: np.ndarray, gap: float) -> int:
    v = np.sort(np.asarray(values, np.float64))
    return 1 + int(np.sum(np.diff(v) > gap)) if v.size else 0


def test_truck_has_six_wheels_and_a_gap_between_cab_and_box():
    l, w, h = _dims("truck", 0.5)
    m = actor_mesh("truck", l, w, h)
    tyre_v = m.vertices[np.unique(m.triangles[m.material == mat.TYRE])]
    ground = tyre_v[tyre_v[:, 2] < 0.02]  # where the tyres touch the road
    assert _n_clusters(ground[:, 0], 0.3) == 3  # three axles ...
    assert _n_clusters(ground[:, 1], 0.3) == 2  # ... with a wheel on each side: six wheels
    # horizontal rays across the truck at 0.6 h: the cab and the cargo box, with free space between them
    xs = np.linspace(-l / 2 + 0.02, l / 2 - 0.02, 801)
    t, _ = _cast(_scene(m), np.stack([xs, np.full_like(xs, -w), np.full_like(xs, 0.6 * h)], 1),
                 np.tile([0.0, 1.0, 0.0], (len(xs), 1)))
    occupied = np.isfinite(t)
    starts = np.flatnonzero(np.diff(occupied.astype(int)) == 1) + 1
    ends = np.flatnonzero(np.diff(occupied.astype(int)) == -1)
    assert occupied[0] and len(starts) == 1  # box from the rear, then exactly one more run (the cab)
    gap = xs[starts[0]] - xs[ends[0]]
    assert 0.15 < gap < 0.6 and xs[starts[0]] > 0


def test_car_side_silhouette_has_a_cabin():
    l, w, h = _dims("car", 0.5)
    scene = _scene(actor_mesh("car", l, w, h))
    ys = np.linspace(-w / 2, w / 2, 41)

    def x_extent(z):
        o_front = np.stack([np.full_like(ys, l), ys, np.full_like(ys, z)], 1)
        o_back = np.stack([np.full_like(ys, -l), ys, np.full_like(ys, z)], 1)
        t_f, _ = _cast(scene, o_front, np.tile([-1.0, 0, 0], (len(ys), 1)))
        t_b, _ = _cast(scene, o_back, np.tile([1.0, 0, 0], (len(ys), 1)))
        assert np.isfinite(t_f).any() and np.isfinite(t_b).any()
        return (l - t_f[np.isfinite(t_f)].min()) - (-l + t_b[np.isfinite(t_b)].min())

    assert x_extent(0.5 * h) > 0.9 * l  # the body is full length ...
    assert x_extent(0.9 * h) < 0.7 * l  # ... the roof is much shorter: not a box


@pytest.mark.parametrize("kind", ["cyclist", "motorcycle"])
def test_rider_is_labelled_and_reaches_the_top(kind):
    l, w, h = _dims(kind, 0.5)
    m = actor_mesh(kind, l, w, h)
    rider = m.semantic == classes.RIDER
    assert rider.sum() > 100 and (~rider).sum() > 100
    rz = m.vertices[np.unique(m.triangles[rider])][:, 2]
    assert rz.max() == pytest.approx(h, abs=1e-5)
    assert rz.min() > 0.05 * h  # the rider does not stand on the ground
    vz = m.vertices[np.unique(m.triangles[~rider])][:, 2]
    assert vz.min() == pytest.approx(0.0, abs=1e-5)  # the vehicle's wheels do
    assert vz.max() < 0.85 * h
    assert mat.TYRE in m.material[~rider] and mat.TYRE not in m.material[rider]
    assert {mat.CLOTHING, mat.SKIN} <= set(np.unique(m.material[rider]).tolist())


@pytest.mark.parametrize("kind", ["pedestrian", "child"])
def test_person_has_two_separate_legs(kind):
    l, w, h = _dims(kind, 0.5)
    m = actor_mesh(kind, l, w, h)
    scene = _scene(m)
    # rays along +y at z = 0.2 h across the figure's length; union of the y intervals inside the mesh
    xs = np.linspace(-l / 2, l / 2, 61)
    origins = np.stack([xs, np.full_like(xs, -2 * w), np.full_like(xs, 0.2 * h)], 1).astype(np.float32)
    rays = np.concatenate([origins, np.tile([0, 1, 0], (len(xs), 1))], 1).astype(np.float32)
    hits = scene.list_intersections(o3d.core.Tensor(rays))
    splits, t_hit = hits["ray_splits"].numpy(), hits["t_hit"].numpy()
    ygrid = np.linspace(-w / 2, w / 2, 401)
    inside = np.zeros_like(ygrid, bool)
    for i in range(len(xs)):
        t = np.sort(t_hit[splits[i]:splits[i + 1]])
        assert len(t) % 2 == 0
        for a, b in t.reshape(-1, 2):
            inside |= (ygrid >= a - 2 * w) & (ygrid <= b - 2 * w)
    n_parts = int(inside[0]) + int(np.sum(np.diff(inside.astype(int)) == 1))
    assert n_parts == 2, f"expected two legs at 0.2 h, got {n_parts} parts"
    # head is skin and sits at the top
    c = m.vertices[m.triangles].mean(axis=1)
    assert c[m.material == mat.SKIN, 2].max() > 0.85 * h
    assert {mat.SKIN, mat.CLOTHING} <= set(np.unique(m.material).tolist())


def _head_height_fraction(kind: str) -> float:
    """z-extent of the skin part (connected vertex component) that holds the highest skin vertex, over h."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    l, w, h = _dims(kind, 0.5)
    m = actor_mesh(kind, l, w, h)
    t = m.triangles[m.material == mat.SKIN]
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]]])
    n = len(m.vertices)
    _, label = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)), directed=False)
    skin_v = np.unique(t)
    top = skin_v[np.argmax(m.vertices[skin_v, 2])]
    z = m.vertices[label == label[top], 2]
    return float(z.max() - z.min()) / h


def test_child_has_a_larger_head_relative_to_height():
    adult, child = _head_height_fraction("pedestrian"), _head_height_fraction("child")
    assert 0.1 < adult < 0.16
    assert child > 1.15 * adult


@pytest.mark.parametrize("name", ["car", "building"])
def test_winding_is_outward(name):
    m = actor_mesh("car", *_dims("car", 0.5)) if name == "car" else building_mesh(20.0, 12.0, 15.0)
    assert _outward_fraction(m) >= 0.95


def test_winding_check_detects_flipped_triangles():
    m = actor_mesh("car", *_dims("car", 0.5))
    flipped = Mesh(m.vertices, m.triangles[:, ::-1].copy(), m.material, m.semantic)
    assert _outward_fraction(flipped) < 0.05


# --------------------------------------------------------------------------------------------------- scenery


def test_building():
    l, w, h = 24.0, 14.0, 16.0
    m = building_mesh(l, w, h)
    _assert_valid(m, semantic_nonzero=True)
    assert set(np.unique(m.semantic).tolist()) == {classes.BUILDING}
    np.testing.assert_allclose(m.bounds()[0], [-l / 2, -w / 2, 0], atol=1e-5)
    np.testing.assert_allclose(m.bounds()[1], [l / 2, w / 2, h], atol=1e-5)
    c = m.vertices[m.triangles].mean(axis=1)
    assert c[m.material == mat.ROOF, 2].min() == pytest.approx(h, abs=1e-4)
    win = c[m.material == mat.WINDOW]
    for axis, half in ((0, l / 2), (1, w / 2)):  # window panes on all four sides, proud of the facade
        assert (win[:, axis] > half - 0.03).any() and (win[:, axis] < -half + 0.03).any()
    facade_v = m.vertices[np.unique(m.triangles[m.material == mat.FACADE])]
    assert 0.009 < l / 2 - facade_v[:, 0].max() < 0.031
    assert len(np.unique(np.round(win[:, 2], 1))) >= 5  # several rows (floors)
    assert building_mesh(l, w, h, floors=2).n_triangles < m.n_triangles


def test_many_boxes_in_one_call_equal_one_box_at_a_time():
    """The vectorised box builder that makes a building's window panes gives the same mesh, array for array, as
    the one-box primitive called per box and merged (random sizes, thin and flat boxes included)."""
    from simgen.world.mesh import merge
    from simgen.world.meshes import _box, _boxes

    rng = np.random.default_rng(7)
    lo = rng.uniform(-20, 20, (60, 3))
    hi = lo + rng.uniform(0.01, 5, (60, 3)) * rng.choice([1e-3, 1.0], (60, 3))
    got = _boxes(lo, hi, mat.WINDOW, classes.BUILDING)
    ref = merge([_box(a, b, mat.WINDOW, classes.BUILDING) for a, b in zip(lo, hi)])
    for k in ("vertices", "triangles", "material", "semantic"):
        x, y = getattr(got, k), getattr(ref, k)
        assert x.dtype == y.dtype and np.array_equal(x, y), k
    _assert_valid(got, semantic_nonzero=True)


def test_tree_pole_and_signs():
    t = tree_mesh(8.0, 2.5)
    _assert_valid(t, semantic_nonzero=True)
    assert set(np.unique(t.semantic).tolist()) == {classes.VEGETATION}
    assert {mat.BARK, mat.FOLIAGE} <= set(np.unique(t.material).tolist())
    assert t.bounds()[1][2] == pytest.approx(8.0, abs=1e-4) and t.bounds()[0][2] == pytest.approx(0.0, abs=1e-6)
    assert 2.0 < t.bounds()[1][0] < 2.8

    p = pole_mesh(8.0)
    _assert_valid(p, semantic_nonzero=True)
    assert set(np.unique(p.semantic).tolist()) == {classes.POLE}
    assert p.bounds()[1][2] == pytest.approx(8.0, abs=1e-4) and p.bounds()[1][1] > 1.0  # arm along +y

    for kind in SIGN_KINDS:
        s = sign_mesh(kind)
        _assert_valid(s, semantic_nonzero=True)
        plate = s.semantic == classes.TRAFFIC_SIGN
        assert plate.any() and (s.semantic[~plate] == classes.POLE).all()
        assert (s.material[plate] == mat.SIGN_FACE).all()
        n = _normals(s, np.flatnonzero(plate))
        assert (n[:, 0] > 0.99).sum() >= 1  # a front face looking at traffic from +x
    assert sign_mesh("stop").n_triangles != sign_mesh("yield").n_triangles
    with pytest.raises(ValueError):
        sign_mesh("banana")


def test_traffic_light():
    m, lamps = traffic_light_mesh()
    _assert_valid(m, semantic_nonzero=True)
    assert set(lamps) == {"red", "yellow", "green"}
    expected = {"red": mat.LAMP_RED, "yellow": mat.LAMP_YELLOW, "green": mat.LAMP_GREEN}
    c = m.vertices[m.triangles].mean(axis=1)
    heights = {}
    for name, idx in lamps.items():
        idx = np.asarray(idx)
        assert idx.size > 0 and (m.material[idx] == expected[name]).all()
        assert (m.semantic[idx] == classes.TRAFFIC_LIGHT).all()
        assert (np.flatnonzero(m.material == expected[name]) == np.sort(idx)).all()  # all of that lamp
        front = _normals(m, idx)[:, 0] > 0.99
        assert front.any()  # faces +x
        heights[name] = c[idx, 2].mean()
    assert heights["red"] > heights["yellow"] > heights["green"]
    assert (m.material[m.semantic == classes.POLE] == mat.POLE_METAL).all()
    assert mat.LIGHT_HOUSING in m.material[m.semantic == classes.TRAFFIC_LIGHT]
    # head hangs over the lane, +y of the pole, and a ray from +x towards it sees a lamp
    y_head = c[m.semantic == classes.TRAFFIC_LIGHT, 1].mean()
    assert y_head > 2.0
    z_red = heights["red"]
    t, prim = _cast(_scene(m), np.array([[20.0, y_head, z_red]]), np.array([[-1.0, 0.0, 0.0]]))
    assert np.isfinite(t[0]) and m.material[prim[0]] == mat.LAMP_RED
