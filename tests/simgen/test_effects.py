"""Camera effects (simgen.sensors.effects): each changes the image the way it should, and is the identity off."""
import numpy as np
import pytest

from simgen.sensors import effects as E

H, W = 180, 320


def _dec(img):
    return E._DEC[img].astype(np.float64)


@pytest.fixture(scope="module")
def scene():
    """Mid-tone textured image (smooth gradients plus a mild checker), no pure black or white."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([60 + 100 * xx / W, 70 + 90 * yy / H, 90 + 40 * ((xx // 8 + yy // 8) % 2)], -1)
    return np.round(img).astype(np.uint8)


def _edges():
    """Dark left / bright right (a vertical edge at x = W/2) on the top half; dark top / bright bottom
    (a horizontal edge at y = 3H/4) on the bottom half."""
    img = np.full((H, W, 3), 40, np.uint8)
    img[: H // 2, W // 2:] = 200
    img[3 * H // 4:, :] = 200
    return img


def test_all_off_is_identity(scene):
    rng = np.random.default_rng(0)
    out = E.apply_camera_effects(scene, E.CameraEffects(), rng=rng, flow=np.full((H, W, 2), 9.0, np.float32),
                                 precipitation=80.0)
    assert out is not scene and np.array_equal(out, scene)
    assert np.array_equal(E.sensor_noise(scene, rng=rng), scene)
    assert np.array_equal(E.vignetting(scene, 0.0), scene)
    assert np.array_equal(E.chromatic_aberration(scene, 0.0), scene)
    assert np.array_equal(E.motion_blur(scene, (0.0, 0.0)), scene)
    assert np.array_equal(E.motion_blur(scene, np.zeros((H, W, 2), np.float32)), scene)
    assert np.array_equal(E.rain_streaks(scene, 0.0, rng=rng), scene)
    assert np.array_equal(E.jpeg(scene, None), scene) and np.array_equal(E.jpeg(scene, 100), scene)
    assert np.array_equal(E.exposure(scene, 0.0), scene)
    # the linear-light round trip alone is exact for every code
    codes = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(1, 256, 3)
    assert np.array_equal(E._pipeline(codes, vig=1e-12), codes)


def test_noise_grows_with_setting_and_is_deterministic(scene):
    def std(level, seed=1):
        cfg = E.CameraEffects(noise=level)
        out = E.apply_camera_effects(scene, cfg, rng=np.random.default_rng(seed))
        return (out.astype(float) - scene).std(), out

    s = [std(v)[0] for v in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert s[0] == 0 and all(b > a * 1.3 for a, b in zip(s, s[1:])), s
    a, b, c = std(0.5, 7)[1], std(0.5, 7)[1], std(0.5, 8)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # zero-mean and signal dependent: shot noise only, the linear std grows as sqrt(signal)
    flat = np.concatenate([np.full((H, W // 2, 3), 60, np.uint8), np.full((H, W // 2, 3), 200, np.uint8)], 1)
    out = E.sensor_noise(flat, rng=np.random.default_rng(3), shot=0.05)
    d = _dec(out) - _dec(flat)
    lo, hi = d[:, : W // 2].std(), d[:, W // 2:].std()
    s_lo, s_hi = E._DEC[60], E._DEC[200]
    assert abs(d.mean()) < 2e-3
    assert hi / lo == pytest.approx(np.sqrt(s_hi / s_lo), rel=0.1)
    assert hi == pytest.approx(0.05 * np.sqrt(s_hi), rel=0.1)


def test_vignetting_darkens_corners_not_centre():
    flat = np.full((H, W, 3), 180, np.uint8)
    out = E.vignetting(flat, 1.0)
    ratio = _dec(out) / _dec(flat)
    assert np.abs(ratio[H // 2 - 2:H // 2 + 2, W // 2 - 2:W // 2 + 2] - 1).max() < 0.01
    for y, x in ((0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)):
        assert ratio[y, x] == pytest.approx(0.25, abs=0.02)  # cos^4(45°) at full strength
    half = _dec(E.vignetting(flat, 0.5)) / _dec(flat)
    assert half[0, 0] == pytest.approx(0.625, abs=0.02)
    r = ratio[H // 2, W // 2:, 0]
    assert np.all(np.diff(r) <= 1e-6)  # monotone falloff towards the edge


def _edge_pos(profile, level=0.5):
    """Sub-pixel x where a rising profile crosses ``level`` of its range."""
    p = profile.astype(float)
    t = p.min() + level * (p.max() - p.min())
    i = int(np.argmax(p >= t))
    return i - 1 + (t - p[i - 1]) / (p[i] - p[i - 1])


def test_chromatic_aberration_moves_r_and_b_radially_opposite():
    shift = 3.0
    img = np.full((H, W, 3), 30, np.uint8)
    x_right, x_left = W - 40, 40
    img[:, x_right:] = 220  # rising edge right of the centre
    img[:, :x_left] = 220  # falling edge left of the centre
    out = E.chromatic_aberration(img, shift)
    r_corner = np.hypot((W - 1) / 2, (H - 1) / 2)
    row = H // 2
    for x_e, sign in ((x_right, 1), (x_left, -1)):
        radius = abs(x_e - 0.5 - (W - 1) / 2)
        expect = shift * radius / r_corner
        sl = slice(x_e - 15, x_e + 15)
        prof = lambda c: out[row, sl, c] if sign > 0 else out[row, sl, c][::-1]  # noqa: E731
        g, r, b = (_edge_pos(prof(c)) for c in (1, 0, 2))
        assert (r - g) == pytest.approx(expect, abs=0.35)  # R outwards
        assert (g - b) == pytest.approx(expect, abs=0.35)  # B inwards
    assert np.array_equal(out[..., 1], img[..., 1])  # G fixed
    # near the corner a dot moves by ~shift_px: R along the radius outwards, B inwards
    img2 = np.full((H, W, 3), 20, np.uint8)
    y0, x0 = H - 9, W - 9
    img2[y0 - 1:y0 + 2, x0 - 1:x0 + 2] = 230
    out2 = _dec(E.chromatic_aberration(img2, shift)) - E._DEC[20]
    yy, xx = np.mgrid[0:H, 0:W]
    def centroid(c):
        return np.array([(out2[..., c] * xx).sum(), (out2[..., c] * yy).sum()]) / out2[..., c].sum()

    u = np.array([x0 - (W - 1) / 2, y0 - (H - 1) / 2])
    expect = shift * np.linalg.norm(u) / r_corner * u / np.linalg.norm(u)
    assert np.linalg.norm(u) / r_corner > 0.93
    assert np.allclose(centroid(0) - centroid(1), expect, atol=0.3)
    assert np.allclose(centroid(2) - centroid(1), -expect, atol=0.3)


def test_motion_blur_along_x_smears_vertical_not_horizontal_edges():
    img = _edges()
    out = E.motion_blur(img, (12.0, 0.0))

    def width(profile):  # pixels strictly between the two plateaus
        p = profile.astype(int)
        return int(((p > 45) & (p < 195)).sum())

    assert width(img[H // 4, :, 0]) == 0
    assert 9 <= width(out[H // 4, :, 0]) <= 13  # the vertical edge is smeared over ~12 px
    assert width(out[:, W // 4, 0]) == 0  # the horizontal edge stays sharp
    assert np.array_equal(out[3 * H // 4 + 2:, 5:-5], img[3 * H // 4 + 2:, 5:-5])
    # blur in linear light: the mid-edge value is the linear mean, brighter than the sRGB mean
    mid = out[H // 4, W // 2, 0]
    assert mid > (40 + 200) / 2
    # a per-pixel field equal to the vector gives the same image; a field blurs only where it moves
    field = np.zeros((H, W, 2), np.float32)
    field[..., 0] = 12.0
    assert np.array_equal(E.motion_blur(img, field), out)
    field[:, : W // 2 + 3] = 0.0
    part = E.motion_blur(img, field)
    assert np.array_equal(part[:, : W // 2 + 3], img[:, : W // 2 + 3])
    # a vertical flow smears the horizontal edge instead
    outy = E.motion_blur(img, (0.0, 12.0))
    assert width(outy[:, W // 4, 0]) >= 9 and width(outy[H // 4, :, 0]) == 0


def _psnr(a, b):
    mse = ((a.astype(float) - b) ** 2).mean()
    return 10 * np.log10(255.0**2 / mse)


def test_jpeg_lowers_psnr_monotonically(scene):
    rng = np.random.default_rng(5)
    textured = np.clip(scene.astype(int) + rng.integers(-8, 9, scene.shape), 0, 255).astype(np.uint8)
    ps = [_psnr(E.jpeg(textured, q), textured) for q in (95, 80, 60, 40, 20, 5)]
    assert all(b < a for a, b in zip(ps, ps[1:])), ps
    assert ps[-1] < ps[0] - 6, ps


def test_exposure_scales_linear_light():
    flat = np.full((8, 8, 3), 100, np.uint8)
    up = _dec(E.exposure(flat, 1.0))[0, 0, 0]
    down = _dec(E.exposure(flat, -1.0))[0, 0, 0]
    base = E._DEC[100]
    assert up == pytest.approx(2 * base, rel=0.02) and down == pytest.approx(base / 2, rel=0.02)
    assert np.all(E.exposure(np.full((4, 4, 3), 250, np.uint8), 3.0) == 255)  # saturates


def test_rain_streaks_brighten_and_grow_with_precipitation(scene):
    dark = (scene // 2).astype(np.uint8)
    gains, changed = [], []
    for p in (10.0, 40.0, 100.0):
        out = E.rain_streaks(dark, p, rng=np.random.default_rng(2))
        diff = out.astype(float) - dark
        gains.append(diff.mean())
        changed.append((np.abs(diff).max(-1) > 2).mean())
        assert (diff > 2).sum() > 20 * (diff < -2).sum()  # streaks are brighter than the scene
    assert 0 < gains[0] < gains[1] < gains[2]
    assert 0 < changed[0] < changed[1] < changed[2] < 0.5  # semi-sparse, not a veil
    a = E.rain_streaks(dark, 50.0, rng=np.random.default_rng(9), wind=40)
    b = E.rain_streaks(dark, 50.0, rng=np.random.default_rng(9), wind=40)
    assert np.array_equal(a, b)
    # wind slants the streaks: their mean direction tilts from vertical
    def tilt(img):
        m = (img.astype(float) - dark).max(-1) > 8
        gy, gx = np.gradient(m.astype(float))
        return np.abs(gy).sum() / max(np.abs(gx).sum(), 1)
    assert tilt(E.rain_streaks(dark, 80.0, rng=np.random.default_rng(4), wind=100)) > \
        tilt(E.rain_streaks(dark, 80.0, rng=np.random.default_rng(4), wind=0))


def test_apply_camera_effects_composes_in_order(scene):
    cfg = E.CameraEffects(noise=0.3, vignetting=0.6, chromatic_aberration_px=2.0, motion_blur=True,
                          jpeg_quality=85, exposure_ev=0.5, rain_streaks=True)
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = np.linspace(-8, 8, W)[None, :]
    a = E.apply_camera_effects(scene, cfg, rng=np.random.default_rng(1), flow=flow, precipitation=60, wind=20)
    b = E.apply_camera_effects(scene, cfg, rng=np.random.default_rng(1), flow=flow, precipitation=60, wind=20)
    assert a.shape == scene.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    # without JPEG and noise the result equals the single effects chained in the documented order
    cfg2 = E.CameraEffects(vignetting=0.6, chromatic_aberration_px=2.0, exposure_ev=0.5)
    chained = E.exposure(E.vignetting(E.chromatic_aberration(scene, 2.0), 0.6), 0.5)
    fused = E.apply_camera_effects(scene, cfg2, rng=np.random.default_rng(0))
    d = np.abs(fused.astype(int) - chained)
    assert d.max() <= 2 and d.mean() < 0.5  # three 8-bit roundings versus one
    # any object with the fields works (the scenario's camera_effects section)
    from types import SimpleNamespace
    ns = SimpleNamespace(noise=0.0, vignetting=0.6, chromatic_aberration_px=2.0, motion_blur=False,
                         jpeg_quality=None, exposure_ev=0.5, rain_streaks=False)
    assert np.array_equal(E.apply_camera_effects(scene, ns, rng=np.random.default_rng(0)), fused)
    with pytest.raises(ValueError):
        E.CameraEffects(noise=2.0)
