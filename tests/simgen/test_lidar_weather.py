"""LiDAR weather (simgen.sensors.lidar_weather): fog after Hahner et al. 2021, rain/snow, wet roads."""
import numpy as np
import pytest

from simgen.classes import CAR, ROADS, SIDEWALKS
from simgen.sensors import lidar_weather as LW
from simgen.spec.scenario import Weather

MAX_RANGE = 120.0


@pytest.fixture(scope="module")
def sweep():
    """Synthetic sweep: hard targets every few cm from 5 to 100 m (reflectivity 0.05-0.5), 10 % misses, a third
    of the hits on the road seen at 10-70° incidence."""
    n = 40000
    rng = np.random.default_rng(0)
    r = rng.uniform(5.0, 100.0, n)
    refl = rng.uniform(0.05, 0.5, n).astype(np.float32)
    hit = rng.random(n) > 0.1
    r[~hit] = np.inf
    refl[~hit] = 0.0
    sem = np.full(n, CAR, np.uint8)
    ground = hit & (rng.random(n) < 0.33)
    sem[ground] = np.where(rng.random(ground.sum()) < 0.8, ROADS, SIDEWALKS)
    sem[~hit] = 0
    d = np.zeros((n, 3))
    d[:, 0] = 1.0
    inc = np.deg2rad(rng.uniform(10, 70, n))
    d[ground, 0], d[ground, 2] = np.sin(inc[ground]), -np.cos(inc[ground])
    return dict(range_m=r, intensity=refl, hit=hit, semantic=sem, dirs=d)


def run(sweep, seed=1, **weather):
    kind = weather.pop("kind", "rain")
    return LW.apply_lidar_weather(**sweep, weather=Weather(**weather), rng=np.random.default_rng(seed),
                                  max_range=MAX_RANGE, precipitation_kind=kind)


def test_clear_weather_is_identity(sweep):
    r, i, keep, fr = run(sweep, cloudiness=80, sun_altitude_angle=-10, wind_intensity=50)
    h = sweep["hit"]
    assert np.array_equal(keep, h) and not fr.any()
    assert np.array_equal(r[h], sweep["range_m"][h]) and np.array_equal(i[h], sweep["intensity"][h])
    assert np.all(np.isinf(r[~h]))


def test_same_seed_same_output(sweep):
    w = dict(fog_density=40, precipitation=70, wetness=50)
    a, b, c = run(sweep, 5, **w), run(sweep, 5, **w), run(sweep, 6, **w)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_fog_removes_far_returns_and_adds_near_false_returns(sweep):
    far = sweep["hit"] & (sweep["range_m"] > 40)
    counts, n_false = [], []
    for fd in (0, 20, 40, 60, 80, 100):
        r, i, keep, fr = run(sweep, fog_density=fd)
        real = keep & (fr == LW.REAL)
        counts.append(int((real & far).sum()))
        n_false.append(int((fr == LW.FOG).sum()))
        if fd:
            mor = LW.fog_coefficients(fd)[2]
            fog = fr == LW.FOG
            assert np.all(r[fog] < min(mor, 15.0)) and np.all(r[fog] > 0.4)  # near the sensor
            assert np.all(keep[fog])
            assert np.all(r[fog & sweep["hit"]] <= sweep["range_m"][fog & sweep["hit"]])  # in front of the target
    assert all(b <= a for a, b in zip(counts, counts[1:])) and counts[-1] < 0.05 * counts[0], counts
    assert n_false[0] == 0 and all(b >= a for a, b in zip(n_false, n_false[1:])) and n_false[-1] > 0.3 * len(far)
    # thick fog: misses (sky) return backscatter too
    _, _, keep, fr = run(sweep, fog_density=80)
    assert (fr[~sweep["hit"]] == LW.FOG).mean() > 0.9


def test_fog_attenuates_hard_returns_as_exp_minus_2_alpha_r(sweep):
    for fd, d0 in ((30, 0.0), (50, 20.0)):
        r, i, keep, fr = run(sweep, fog_density=fd, fog_distance=d0)
        alpha = LW.fog_coefficients(fd)[0]
        real = keep & (fr == LW.REAL) & (sweep["semantic"] == CAR)
        assert real.sum() > 1000
        R0 = sweep["range_m"][real]
        expect = sweep["intensity"][real] * np.exp(-2 * alpha * np.maximum(R0 - d0, 0.0))
        assert np.allclose(i[real], expect, rtol=1e-5)
        err = np.abs(r[real] - R0)  # hard returns stay where they are (timing jitter only)
        assert err.mean() < 0.1 and np.percentile(err, 99) < 1.0
    # the more fog, the weaker the same surviving return
    near = sweep["hit"] & (sweep["range_m"] < 15) & (sweep["semantic"] == CAR)
    i1 = run(sweep, fog_density=20)[1][near]
    i2 = run(sweep, fog_density=60)[1][near]
    assert np.all(i2 < i1)


def test_rain_adds_near_clutter_and_drops_returns(sweep):
    clutter, real = [], []
    for p in (0, 40, 70, 100):
        r, i, keep, fr = run(sweep, precipitation=p)
        c = fr == LW.PRECIPITATION
        clutter.append(int(c.sum()))
        real.append(int((keep & (fr == LW.REAL)).sum()))
        assert np.all(r[c] < 12.0) and np.all(keep[c])  # within a few metres
        if p:
            assert np.median(r[c]) < 5.0
    assert clutter[0] == 0 and clutter[1] < clutter[2] < clutter[3], clutter
    assert real[0] == sweep["hit"].sum() and real[3] < real[2] < real[1] < real[0], real
    # range noise grows with the rain
    h = sweep["hit"] & (sweep["range_m"] > 60)
    errs = []
    for p in (40, 100):
        r, _, keep, fr = run(sweep, precipitation=p)
        ok = h & keep & (fr == LW.REAL)
        errs.append(np.abs(r[ok] - sweep["range_m"][ok]).mean())
    assert 0 < errs[0] < errs[1]
    # snow: flakes are brighter and bigger, more clutter than rain at the same setting
    snow = run(sweep, precipitation=70, kind="snow")[3]
    assert (snow == LW.PRECIPITATION).sum() > 3 * clutter[2]


def test_precipitation_mapping_and_extinction():
    assert LW.precipitation_rate_mm_h(0) == 0 and LW.precipitation_rate_mm_h(100) == pytest.approx(50.0)
    rates = [LW.precipitation_rate_mm_h(p) for p in (10, 30, 60, 100)]
    ext = [LW.precipitation_extinction(r) for r in rates]
    assert all(b > a for a, b in zip(ext, ext[1:]))
    # Marshall-Palmer, extinction efficiency 2: ~1.6e-3 /m at 10 mm/h
    assert LW.precipitation_extinction(10.0) == pytest.approx(1.6e-3, rel=0.05)
    a, b, mor = LW.fog_coefficients(100)
    assert a == pytest.approx(0.06) and mor == pytest.approx(np.log(20) / 0.06) and b == pytest.approx(0.046 / mor)
    assert LW.fog_coefficients(0)[0] == 0


def test_wetness_lowers_ground_intensity_only(sweep):
    r, i, keep, fr = run(sweep, wetness=80, precipitation_deposits=30)
    h = sweep["hit"]
    ground = h & np.isin(sweep["semantic"], LW.GROUND_IDS)
    other = h & ~ground
    assert not fr.any() and np.array_equal(keep[other], h[other])
    assert np.array_equal(i[other], sweep["intensity"][other]) and np.array_equal(r[other], sweep["range_m"][other])
    kept = ground & keep
    ratio = i[kept] / sweep["intensity"][kept]
    assert np.all(ratio < 1.0) and 0.1 < ratio.mean() < 0.6
    # grazing incidence loses more than steep incidence (specular water film)
    cosi = np.abs(sweep["dirs"][kept, 2])
    assert ratio[cosi > 0.8].mean() > ratio[cosi < 0.45].mean()
    # wetter is darker
    i_less = run(sweep, wetness=30)[1]
    assert i_less[kept].mean() > i[kept].mean()
