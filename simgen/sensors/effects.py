"""Photometric camera effects applied after rendering: noise, vignetting, lateral chromatic aberration, motion
blur, rain streaks, JPEG and exposure.

Every function takes an ``(H, W, 3)`` uint8 **sRGB** image and returns a new one (the input is never modified);
labels (depth, semantic, instance, boxes) are never touched, the effects are photometric only.  Anything random
takes an explicit ``rng: np.random.Generator``; the same generator state gives the same image.

Physical quantities are handled in linear light: the image is decoded with the sRGB transfer function
(IEC 61966-2-1) to linear values in [0, 1] (1 = sensor full scale), processed, and encoded back (rounded to the
nearest sRGB code; decode → encode alone is exactly the identity).

:func:`apply_camera_effects` applies a :class:`CameraEffects` configuration in this fixed order (the order of
the imaging chain):

1. **motion blur** — the scene moves across the sensor during the exposure (ego motion), linear light;
2. **rain streaks** — falling drops in front of the lens, blended over the (blurred) scene;
3. **lateral chromatic aberration** — the lens magnifies R and B differently;
4. **vignetting** — the lens' off-axis irradiance falloff;
5. **exposure** — gain in stops (clips at full scale like a saturating pixel);
6. **sensor noise** — shot + read noise on the exposed signal;
7. **JPEG** — lossy compression of the encoded 8-bit image.

Steps 1–2 and 3–6 each run as one fused parallel numba pass over the pixels (plus cv2 for drawing streaks and
for JPEG), so all effects together on a 1280×720 image cost a few tens of milliseconds on two cores.  The
noise's random numbers come from a counter-based hash (SplitMix64 of the pixel index and one seed drawn from
``rng``), whose 12-bit fields index a table of standard-normal quantiles (4096 equiprobable bins, |z| ≤ 3.7):
every pixel is independent, so the result does not depend on the number of threads.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
from numba import config, njit, prange
from scipy.special import erfinv

if "NUMBA_THREADING_LAYER" not in os.environ:  # same choice as simgen.sensors.kernels (open3d's TBB is too old)
    config.THREADING_LAYER = "workqueue"

__all__ = [
    "CameraEffects", "apply_camera_effects", "sensor_noise", "vignetting", "chromatic_aberration", "motion_blur",
    "rain_streaks", "jpeg", "exposure", "srgb_to_linear", "linear_to_srgb",
    "NOISE_SHOT_AT_1", "NOISE_READ_AT_1", "VIGNETTING_FIELD_ANGLE_DEG", "MAX_BLUR_SAMPLES",
]

# --------------------------------------------------------------------------------------------------------------
# sRGB transfer function as tables

_ENC_N = 16384  # linear [0, 1] quantised to 1/(_ENC_N-1) for encoding


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear light in [0, 1] (IEC 61966-2-1)."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] → sRGB-encoded values in [0, 1]."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


_DEC = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)  # uint8 code → linear
_ENC = np.round(linear_to_srgb(np.arange(_ENC_N) / (_ENC_N - 1)) * 255.0).astype(np.uint8)  # quantised linear → code
assert np.array_equal(_ENC[np.floor(_DEC.astype(np.float64) * (_ENC_N - 1) + 0.5).astype(int)], np.arange(256))

# --------------------------------------------------------------------------------------------------------------
# configuration

NOISE_SHOT_AT_1 = 0.04  # CameraEffects.noise = 1: shot-noise std at full-scale signal (fraction of full scale)
NOISE_READ_AT_1 = 0.008  # CameraEffects.noise = 1: read-noise std (fraction of full scale, linear)
VIGNETTING_FIELD_ANGLE_DEG = 45.0  # field angle at the image corner assumed by the cos^4 law
MAX_BLUR_SAMPLES = 32  # motion-blur taps per pixel at most (longer flows are sampled more sparsely)


@dataclass(frozen=True)
class CameraEffects:
    """Which camera effects to apply and how strongly; the defaults are all off (the identity).

    - ``noise``: 0–1 scale of sensor noise; 1 = shot-noise std :data:`NOISE_SHOT_AT_1` at full scale (σ grows
      with √signal) plus read-noise std :data:`NOISE_READ_AT_1` (a noisy high-gain night image);
    - ``vignetting``: 0–1; 1 = the full cos⁴ falloff of a lens whose corner field angle is
      :data:`VIGNETTING_FIELD_ANGLE_DEG` (corners at 25 % irradiance); values between blend linearly;
    - ``chromatic_aberration_px``: lateral CA, R/B displacement at the image corner in pixels (R outwards, B
      inwards; negative reverses);
    - ``motion_blur``: blur along the image-space flow passed to :func:`apply_camera_effects` (ego motion during
      the exposure); no flow → no blur;
    - ``jpeg_quality``: 1–100 JPEG round trip; ``None`` or 100 → none;
    - ``exposure_ev``: exposure change in stops (+1 = twice the light), saturating at full scale;
    - ``rain_streaks``: draw rain streaks whose density follows the ``precipitation`` passed in.

    The fields mirror the scenario's ``camera_effects`` section; :func:`apply_camera_effects` accepts either.
    """

    noise: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    vignetting: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    chromatic_aberration_px: float = field(default=0.0, metadata={"range": (-10.0, 10.0)})
    motion_blur: bool = False
    jpeg_quality: int | None = field(default=None, metadata={"range": (1, 100)})
    exposure_ev: float = field(default=0.0, metadata={"range": (-5.0, 5.0)})
    rain_streaks: bool = False

    def __post_init__(self):
        for name in ("noise", "vignetting", "chromatic_aberration_px", "exposure_ev", "jpeg_quality"):
            v = getattr(self, name)
            if v is None:
                continue
            lo, hi = type(self).__dataclass_fields__[name].metadata["range"]
            if not (lo <= v <= hi):
                raise ValueError(f"CameraEffects.{name}: got {v!r}; allowed: {lo} to {hi}")


# --------------------------------------------------------------------------------------------------------------
# numba kernels


@njit(cache=True, inline="always")
def _hash(z):
    """SplitMix64 finaliser (uint64 → well-mixed uint64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


# standard-normal quantiles at the centres of 4096 equal-probability bins (|z| ≤ 3.67): a 12-bit uniform indexes it
_GAUSS_N = 4096
_GAUSS = (np.sqrt(2.0) * erfinv(2.0 * (np.arange(_GAUSS_N) + 0.5) / _GAUSS_N - 1.0)).astype(np.float32)


@njit(parallel=True, cache=True)
def _k_blur_rain(src, dec, flow, gfx, gfy, per_pixel, blur, max_taps, layer, rain, rain_lum, out):
    """Pass 1: decode to linear, optional motion blur (mean of n taps evenly spaced on p + t·flow,
    t ∈ [−½, ½], n = ⌈|flow|⌉ + 1 ≤ max_taps, nearest pixel, linear light, borders clamped), optional rain-streak
    blend ``out = out·(1−a) + a·rain_lum`` with ``a = layer/255``."""
    H, W = src.shape[0], src.shape[1]
    flat = src.reshape(-1)
    big = float(4 * (H + W) + 16)
    ib = np.intp(big)
    for y in prange(H):
        for x in range(W):
            fx = gfx
            fy = gfy
            if per_pixel:
                fx = flow[y, x, 0]
                fy = flow[y, x, 1]
            n = 1
            if blur:
                ln = math.sqrt(fx * fx + fy * fy)
                if ln >= 0.5:  # (NaN fails this too)
                    n = min(int(math.ceil(ln)) + 1, max_taps)
            if n == 1:
                r = dec[src[y, x, 0]]
                g = dec[src[y, x, 1]]
                b = dec[src[y, x, 2]]
            else:
                r = np.float32(0.0)
                g = np.float32(0.0)
                b = np.float32(0.0)
                sx = fx / (n - 1)
                sy = fy / (n - 1)
                px = x - 0.5 * fx + 0.5 + big  # + big: int() truncation is floor()
                py = y - 0.5 * fy + 0.5 + big
                for k in range(n):
                    xs = min(max(np.intp(px + k * sx) - ib, 0), W - 1)
                    ys = min(max(np.intp(py + k * sy) - ib, 0), H - 1)
                    o = np.uint64((ys * W + xs) * 3)  # unsigned: no negative-index wraparound checks
                    r += dec[flat[o]]
                    g += dec[flat[o + np.uint64(1)]]
                    b += dec[flat[o + np.uint64(2)]]
                r /= n
                g /= n
                b /= n
            if rain:
                a = layer[y, x] * np.float32(1.0 / 255.0)
                if a > 0.0:
                    r = r * (1.0 - a) + a * rain_lum
                    g = g * (1.0 - a) + a * rain_lum
                    b = b * (1.0 - a) + a * rain_lum
            out[y, x, 0] = r
            out[y, x, 1] = g
            out[y, x, 2] = b


@njit(cache=True, inline="always")
def _load(src8, srcf, from_u8, dec, y, x, c):
    if from_u8:
        return dec[src8[y, x, c]]
    return srcf[y, x, c]


@njit(cache=True, inline="always")
def _bilinear(src8, srcf, from_u8, dec, ys, xs, c, H, W):
    if xs < 0.0:
        xs = 0.0
    elif xs > W - 1.0:
        xs = W - 1.0
    if ys < 0.0:
        ys = 0.0
    elif ys > H - 1.0:
        ys = H - 1.0
    x0 = int(xs)
    y0 = int(ys)
    x1 = x0 + 1 if x0 + 1 < W else x0
    y1 = y0 + 1 if y0 + 1 < H else y0
    ax = xs - x0
    ay = ys - y0
    top = _load(src8, srcf, from_u8, dec, y0, x0, c) * (1.0 - ax) + _load(src8, srcf, from_u8, dec, y0, x1, c) * ax
    bot = _load(src8, srcf, from_u8, dec, y1, x0, c) * (1.0 - ax) + _load(src8, srcf, from_u8, dec, y1, x1, c) * ax
    return top * (1.0 - ay) + bot * ay


@njit(parallel=True, cache=True)
def _k_finish(src8, srcf, from_u8, dec, enc, ca, ca_r, ca_b, vig, vig_k, gain, shot, read, seed, gauss, out):
    """Pass 2 (per pixel, linear light): lateral CA (R sampled at c+(p−c)/ca_r, B at c+(p−c)/ca_b, bilinear),
    vignetting ``1 − vig + vig·cos⁴θ`` with ``tan²θ = vig_k·r²``, gain, clip, noise
    ``σ² = shot²·s + read²``, clip, sRGB encode."""
    H, W = out.shape[0], out.shape[1]
    cx = (W - 1) * 0.5
    cy = (H - 1) * 0.5
    noisy = shot > 0.0 or read > 0.0
    shot2 = shot * shot
    read2 = read * read
    scale = float(enc.shape[0] - 1)
    for y in prange(H):
        dy = y - cy
        for x in range(W):
            dx = x - cx
            if ca:
                r = _bilinear(src8, srcf, from_u8, dec, cy + dy / ca_r, cx + dx / ca_r, 0, H, W)
                b = _bilinear(src8, srcf, from_u8, dec, cy + dy / ca_b, cx + dx / ca_b, 2, H, W)
            else:
                r = _load(src8, srcf, from_u8, dec, y, x, 0)
                b = _load(src8, srcf, from_u8, dec, y, x, 2)
            g = _load(src8, srcf, from_u8, dec, y, x, 1)
            f = gain
            if vig > 0.0:
                q = 1.0 + vig_k * (dx * dx + dy * dy)
                f *= 1.0 - vig + vig / (q * q)
            h = np.uint64(0)
            if noisy:  # one 64-bit hash per pixel: three 12-bit uniforms → table normal deviates
                h = _hash(seed + np.uint64(y * W + x) * np.uint64(0x9E3779B97F4A7C15))
            for c in range(3):
                v = (r if c == 0 else (g if c == 1 else b)) * f
                if v > 1.0:
                    v = 1.0
                if noisy:
                    s = v if v > 0.0 else 0.0
                    v += math.sqrt(shot2 * s + read2) * gauss[(h >> np.uint64(12 * c)) & np.uint64(4095)]
                    if v > 1.0:
                        v = 1.0
                if v < 0.0:
                    v = 0.0
                out[y, x, c] = enc[int(v * scale + 0.5)]


# --------------------------------------------------------------------------------------------------------------
# building blocks

_DUMMY8 = np.zeros((1, 1, 3), np.uint8)
_DUMMYF = np.zeros((1, 1, 3), np.float32)
_DUMMYFLOW = np.zeros((1, 1, 2), np.float32)
_DUMMYLAYER = np.zeros((1, 1), np.uint8)


def _check(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _flow_args(flow_px, shape) -> tuple[np.ndarray, float, float, bool, bool]:
    """(flow array, global fx, global fy, per_pixel, any blur) from a (2,) vector or (H, W, 2) field."""
    f = np.asarray(flow_px, np.float32)
    if f.shape == (2,):
        fx, fy = float(f[0]), float(f[1])
        return _DUMMYFLOW, fx, fy, False, bool(math.hypot(fx, fy) >= 0.5)
    if f.shape != (shape[0], shape[1], 2):
        raise ValueError(f"flow must be (2,) or (H, W, 2) = {(shape[0], shape[1], 2)}, got {f.shape}")
    return np.ascontiguousarray(f), 0.0, 0.0, True, True


def _rain_layer(shape, precipitation: float, wind: float, rng: np.random.Generator) -> np.ndarray | None:
    """(H, W) uint8 streak opacity (255 = opaque) or None.

    Drops are placed uniformly in the image at depths z ~ U(0.7, 8) m; each streak is the drop's path during a
    1/100 s exposure: length ``v_fall·t·f/z`` pixels with focal length f = W/2 (≈ 90° horizontal FOV) and fall
    speed ``v_fall = 4 + 5·p`` m/s (p = precipitation/100: bigger, faster drops in heavier rain), slanted by
    ``atan(wind_speed / v_fall)`` with ``wind_speed = 10 m/s · wind/100`` (± 3° per drop).  Count: 1500·p per
    1280×720 image (scaled with the image area).  Near drops (z < 2 m) are drawn 2 px wide at opacity 0.25,
    far ones 1 px at 0.45 (anti-aliased).
    """
    p = float(np.clip(precipitation, 0.0, 100.0)) / 100.0
    H, W = shape[:2]
    n = int(round(1500.0 * p * (H * W) / (1280.0 * 720.0)))
    if n <= 0:
        return None
    u = rng.random((n, 4))  # x, y, depth, angle jitter: a fixed count per drop
    z = 0.7 + 7.3 * u[:, 2]
    v_fall = 4.0 + 5.0 * p
    length = v_fall * 0.01 * (W / 2.0) / z
    ang = math.atan2(10.0 * float(np.clip(wind, 0.0, 100.0)) / 100.0, v_fall) + np.deg2rad(3.0) * (2 * u[:, 3] - 1)
    x0 = u[:, 0] * (W + 40) - 20
    y0 = u[:, 1] * (H + 40) - 20
    x1 = x0 + np.sin(ang) * length
    y1 = y0 + np.cos(ang) * length
    seg = np.round(np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1) * 16).astype(np.int32)  # 4 frac bits
    layer = np.zeros((H, W), np.uint8)
    near = z < 2.0
    if (~near).any():
        cv2.polylines(layer, list(seg[~near].reshape(-1, 2, 1, 2)), False, 115, 1, cv2.LINE_AA, 4)
    if near.any():
        cv2.polylines(layer, list(seg[near].reshape(-1, 2, 1, 2)), False, 64, 2, cv2.LINE_AA, 4)
    return layer


def _rain_luminance(rgb: np.ndarray) -> float:
    """Linear radiance of the streaks: lit by the scene's ambient light (mean linear luminance, from a 1/16
    thumbnail): ``min(1, 0.05 + 3·ambient)`` — bright against a day scene, dim at night."""
    h, w = rgb.shape[:2]
    thumb = cv2.resize(rgb, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA)
    amb = float(_DEC[thumb].mean())
    return min(1.0, 0.05 + 3.0 * amb)


def _pipeline(rgb, *, flow=None, precipitation=0.0, wind=0.0, ca_px=0.0, vig=0.0, ev=0.0, shot=0.0, read=0.0,
              jpeg_quality=None, rng=None) -> np.ndarray:
    rgb = _check(rgb)
    H, W = rgb.shape[:2]
    layer = None
    if precipitation > 0.0:
        layer = _rain_layer(rgb.shape, precipitation, wind, rng)
    blur = False
    if flow is not None:
        farr, gfx, gfy, per_pixel, blur = _flow_args(flow, rgb.shape)
    noisy = shot > 0.0 or read > 0.0
    seed = np.uint64(rng.integers(0, 2**63, dtype=np.int64)) if noisy else np.uint64(0)
    ca = ca_px != 0.0
    per_pixel_ops = ca or vig > 0.0 or ev != 0.0 or noisy
    out = rgb
    if blur or layer is not None:
        lin = np.empty((H, W, 3), np.float32)
        lum = _rain_luminance(rgb) if layer is not None else 0.0
        if blur:
            _k_blur_rain(rgb, _DEC, farr, gfx, gfy, per_pixel, True, MAX_BLUR_SAMPLES,
                         layer if layer is not None else _DUMMYLAYER, layer is not None, lum, lin)
        else:
            _k_blur_rain(rgb, _DEC, _DUMMYFLOW, 0.0, 0.0, False, False, 1, layer, True, lum, lin)
        src8, srcf, from_u8 = _DUMMY8, lin, False
        per_pixel_ops = True  # the linear image must be encoded anyway
    else:
        src8, srcf, from_u8 = rgb, _DUMMYF, True
    if per_pixel_ops:
        r_corner = math.hypot((W - 1) / 2.0, (H - 1) / 2.0) or 1.0
        k = ca_px / r_corner
        if ca and not (1.0 + k > 0.05 and 1.0 - k > 0.05):
            raise ValueError(f"chromatic aberration of {ca_px} px is too large for a {W}x{H} image")
        vig_k = math.tan(math.radians(VIGNETTING_FIELD_ANGLE_DEG)) ** 2 / r_corner**2
        out = np.empty((H, W, 3), np.uint8)
        _k_finish(src8, srcf, from_u8, _DEC, _ENC, ca, 1.0 + k, 1.0 - k, float(vig), vig_k, float(2.0**ev),
                  float(shot), float(read), seed, _GAUSS, out)
    if jpeg_quality is not None and int(jpeg_quality) < 100:
        out = _jpeg(out, int(jpeg_quality))
    return out.copy() if out is rgb else out


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    q = int(np.clip(quality, 1, 100))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------------------------
# public effects


def sensor_noise(rgb: np.ndarray, *, rng: np.random.Generator, shot: float = 0.0, read: float = 0.0) -> np.ndarray:
    """Signal-dependent shot noise plus read noise, in linear light.

    Per channel value ``s`` (linear, 0–1 of full scale): ``s' = clip(s + σ·n)`` with
    ``σ = √(shot²·s + read²)``, n ~ N(0, 1) (Gaussian approximation of photon noise: its variance is
    proportional to the signal).  ``shot``: noise std at full-scale signal; ``read``: signal-independent std;
    both as fractions of full scale (e.g. 0.02 = 2 %).  ``shot = read = 0`` → unchanged.
    """
    if shot < 0 or read < 0:
        raise ValueError(f"noise levels must be >= 0, got shot={shot}, read={read}")
    return _pipeline(rgb, shot=float(shot), read=float(read), rng=rng)


def vignetting(rgb: np.ndarray, strength: float) -> np.ndarray:
    """Radial darkening following the cos⁴ law of a lens whose corner field angle is
    :data:`VIGNETTING_FIELD_ANGLE_DEG`: relative irradiance ``1 − strength + strength·cos⁴θ``, with
    ``tanθ = tan(45°)·r/r_corner`` (r from the image centre, pixels).  ``strength`` 0–1; 0 → unchanged, 1 →
    corners at 25 %, centre unchanged.  Applied in linear light."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"vignetting strength must be in [0, 1], got {strength}")
    return _pipeline(rgb, vig=float(strength))


def chromatic_aberration(rgb: np.ndarray, shift_px: float) -> np.ndarray:
    """Lateral chromatic aberration: the R channel is magnified about the image centre and the B channel shrunk
    by the same factor ``k = shift_px / r_corner``, so an edge at radius r moves ``k·r`` pixels outwards in R and
    inwards in B (``shift_px`` at the corners; negative reverses); G is fixed.  Bilinear resampling (an affine
    remap per channel), borders clamped.  0 → unchanged."""
    return _pipeline(rgb, ca_px=float(shift_px))


def motion_blur(rgb: np.ndarray, flow_px) -> np.ndarray:
    """Blur along the image-space motion during the exposure.

    ``flow_px``: a global (2,) vector (dx, dy) or a per-pixel (H, W, 2) field, in pixels moved during the
    exposure (e.g. from depth and ego motion).  Each output pixel is the mean, in linear light, of the image
    along the segment ``p + t·flow(p)``, t ∈ [−½, ½] (centred on mid-exposure), sampled at one tap per pixel of
    length (nearest pixel; at most :data:`MAX_BLUR_SAMPLES` taps).  Flows shorter than ½ px → unchanged.
    """
    return _pipeline(rgb, flow=flow_px)


def rain_streaks(rgb: np.ndarray, intensity: float, *, rng: np.random.Generator, wind: float = 0.0) -> np.ndarray:
    """Semi-transparent bright streaks of falling rain drops in front of the lens.

    ``intensity``: CARLA ``precipitation`` 0–100; the number of streaks grows linearly with it and their length
    with the drops' fall speed (4 m/s at light rain to 9 m/s at 100).  ``wind``: CARLA ``wind_intensity``
    0–100, slants the streaks (up to 10 m/s sideways).  The streaks are lit by the scene's ambient light, so
    they brighten a day image and stay dim at night.  0 → unchanged.  See :func:`_rain_layer` for the model.
    """
    return _pipeline(rgb, precipitation=float(intensity), wind=float(wind), rng=rng)


def jpeg(rgb: np.ndarray, quality: int | None) -> np.ndarray:
    """JPEG encode/decode round trip with cv2 (libjpeg, 4:2:0); ``quality`` 1–100; ``None`` or 100 → unchanged."""
    rgb = _check(rgb)
    if quality is None or int(quality) >= 100:
        return rgb.copy()
    return _jpeg(rgb, int(quality))


def exposure(rgb: np.ndarray, ev: float) -> np.ndarray:
    """Scale the exposure by ``2**ev`` (stops) in linear light, saturating at full scale.  0 → unchanged."""
    return _pipeline(rgb, ev=float(ev))


def apply_camera_effects(rgb: np.ndarray, cfg, *, rng: np.random.Generator, flow=None, precipitation: float = 0.0,
                         wind: float = 0.0) -> np.ndarray:
    """Apply the effects of ``cfg`` (a :class:`CameraEffects` or the scenario's ``camera_effects`` section: any
    object with the same fields) in the documented order: motion blur → rain streaks → chromatic aberration →
    vignetting → exposure → sensor noise → JPEG.

    ``flow``: (2,) or (H, W, 2) image motion in pixels during the exposure (used when ``cfg.motion_blur``);
    ``precipitation`` and ``wind``: the frame's CARLA ``precipitation`` / ``wind_intensity`` (0–100; streaks
    are drawn when ``cfg.rain_streaks`` and precipitation > 0).  Returns a new uint8 image; all effects off →
    an unchanged copy.  ``rng`` is used only by rain streaks and noise.
    """
    noise = float(getattr(cfg, "noise", 0.0) or 0.0)
    return _pipeline(
        rgb,
        flow=flow if getattr(cfg, "motion_blur", False) else None,
        precipitation=float(precipitation) if getattr(cfg, "rain_streaks", False) else 0.0,
        wind=float(wind),
        ca_px=float(getattr(cfg, "chromatic_aberration_px", 0.0) or 0.0),
        vig=float(getattr(cfg, "vignetting", 0.0) or 0.0),
        ev=float(getattr(cfg, "exposure_ev", 0.0) or 0.0),
        shot=NOISE_SHOT_AT_1 * noise,
        read=NOISE_READ_AT_1 * noise,
        jpeg_quality=getattr(cfg, "jpeg_quality", None),
        rng=rng,
    )
