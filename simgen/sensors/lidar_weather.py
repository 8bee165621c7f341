"""LiDAR in fog, rain, snow and on wet roads: per-ray post-processing of a ray-cast sweep.

:func:`apply_lidar_weather` takes every ray of a sweep (misses included) and returns new ranges and intensities,
which rays give a point, and which of those points are false returns.  It is the identity in clear weather
(no fog, precipitation, wetness or deposits) and deterministic for a given ``rng`` state.

Units and conventions
---------------------
Ranges in metres.  ``intensity`` is simgen's (and CARLA's) range-normalised intensity, i.e. an apparent
reflectivity ρ (reflectivity · |cos incidence| · clear-air attenuation), so the received peak power of a
Lambertian return is taken as ``P = ρ/(π R²)`` (the common factor C_A·P₀·2/c of the LiDAR equation cancels
everywhere; powers below are in units of 1/m²).  Reported intensities stay range-normalised.

Detection: a return is detected when its peak power exceeds a floor ``P_floor = ρ_floor/(π R_max²)`` — a
Lambertian target of reflectivity ``floor_reflectivity`` (10 %) at the sensor's ``max_range`` is just
detectable, the way LiDAR ranges are specified.  The floor is 5σ of the receiver noise (``threshold_snr``): all
competing peaks get Gaussian noise of σ = P_floor/5 and the strongest measured peak is reported (a
"strongest return" sensor), so returns near the floor are lost at random.  simgen's clear-weather sensor
reports every surface within range, so every clear-weather return is credited with at least ``min_margin_db``
(3 dB) above the floor — weather then removes only what it attenuates by more than that, and tiny amounts of
weather change tiny amounts of the cloud.

Fog — Hahner et al., "Fog Simulation on Real LiDAR Point Clouds for 3D Object Detection in Adverse Weather",
ICCV 2021 (building on Rasshofer et al., "Influences of weather phenomena on automotive laser radar
systems", Adv. Radio Sci. 9, 2011)
--------------------------------------------------------------------------------------------------------------
The received signal is the transmitted pulse ``P_T(t) = P₀ sin²(π t / (2τ_H))`` (0 ≤ t ≤ 2τ_H) convolved
with the impulse response of the channel and the targets:

- hard target (the surface the ray hit, range R₀): ``H = ρ/π · δ(r − R₀) · ξ(R₀) T(R₀)/R₀²`` → peak power
  ``P_hard = ξ(R₀) ρ/(π R₀²) · T(R₀)`` with two-way transmission ``T(R) = exp(−2 α R)``;
- soft target (the fog between sensor and R₀), backscatter coefficient β:
  ``P_soft(R) = β ∫₀^{cτ_H} sin²(π s/(cτ_H)) · ξ(R−s)/(R−s)² · T(R−s) ds`` over fog ranges r = R−s < R₀;
- ξ is the crossover function (overlap of the beam with the receiver's field of view), rising linearly from 0
  at R₁ to 1 at R₂.

Sensor constants (sensor parameters in the paper; ours are in :class:`LidarWeatherModel`): half-power pulse
width τ_H = 10 ns (Hahner et al.'s parameter set: 20 ns), R₁ = 0.9 m, R₂ = 10 m (full overlap of a biaxial
automotive design).  With these, a thin haze leaves the cloud nearly intact and thick fog keeps only the near
returns; with a 20 ns pulse and full overlap from 1 m, even a 500 m visibility haze would swap most returns
beyond 20 m for backscatter, which real sensors do not show.

The soft peak (value and range R_s) depends on α, β and R₀ only: it is tabulated per sweep over R₀ on a 0.1 m
grid (the paper integrates numerically per α; here one discrete convolution plus a truncated tail, a few ms,
cached per weather).  Per ray, as in the paper, the hard and soft peaks are compared: if the soft one wins, the
point moves to the soft target's range (``false_return = 1``: a point in the fog near the sensor, its range
jittered over the width of the broad soft peak, σ ≥ cτ_H/4); otherwise the hit stays, with intensity
``ρ·T(R₀)``.  Peaks below the detection floor are dropped.  Rays that hit nothing can return backscatter too.

Mapping from CARLA weather: extinction ``α = 0.06 /m · (fog_density/100)^1.5`` — exactly the camera's fog
(:mod:`simgen.sensors.shading`), since fog droplets (≫ 1 µm) attenuate visible and 905 nm light alike, so
both sensors see one atmosphere.  Meteorological optical range MOR = ln(20)/α ≈ 3/α: fog_density 100 → α = 0.06
(MOR 50 m, the default α of Hahner et al.'s parameter set), 50 → 141 m, 30 → 300 m, 20 → 560 m, 10 → 1.6 km, 0 → no fog.
Backscatter ``β = 0.046/MOR`` (sr⁻¹ m⁻¹, as in Hahner et al.'s parameter set).
``fog_distance`` (CARLA: where the fog starts, m) gives fog only beyond that range; ``fog_falloff`` (height
profile) is ignored — the fog is homogeneous along each ray.

Rain and snow — after Kilic et al., "Lidar Light Scattering Augmentation (LISA): Physics-based Simulation of
Adverse Weather Conditions for 3D Object Detection", arXiv:2107.07004 (2021)
--------------------------------------------------------------------------------------------------------------
Rate: CARLA ``precipitation`` p (0–100) → rain rate ``R = 50 mm/h · (p/100)²`` (quadratic, so the scale spends
its range where rain is common: 15 → 1.1 mm/h light, 30 → 4.5 moderate, 60 → 18 heavy, 100 → 50 mm/h violent);
for snow (``precipitation_kind="snow"``) a water-equivalent rate ``10 mm/h · (p/100)²``.
Drop-size distribution: Marshall & Palmer (1948), ``N(D) = N₀ e^{−ΛD}``, N₀ = 8000 m⁻³mm⁻¹,
Λ = 4.1 R^−0.21 mm⁻¹; snow: Gunn & Marshall (1958), N₀ = 3800 R^−0.87, Λ = 2.55 R^−0.48.
Extinction (geometric optics, extinction efficiency 2 for drops ≫ 905 nm, as in LISA):
``α_p = π/4 · 2 · ∫D² N(D) dD = π N₀/Λ³`` (→ 1/m) — rain 10 mm/h: 1.6·10⁻³ /m, 50 mm/h: 4.3·10⁻³ /m.
Its two-way transmission multiplies every return (fewer far and dark returns, more random losses at the floor).

Near-range clutter (``false_return = 2``), LISA's idea of a detectable particle inside the beam, in closed form:
the beam (diameter ``w(r) = 1 cm + 3 mrad · r``) intercepts a fraction ``f = (D/w)²`` of the pulse at a drop of
diameter D, which returns ``P = ξ(r) f ρ_d/(π r²) T(r)`` (ρ_d = 0.02 Lambertian-equivalent for a water drop:
its ~2 % Fresnel reflection spread over all directions, raised by the sphere's backscatter glory; 0.3 for
snowflakes).  Detectable drops (``P ≥ P_floor``) are those larger than ``D_min(r)``, which grows ∝ r², so
clutter lives within a few metres.
The detectable drops along a ray form a Poisson process of rate ``λ(r) = π w²/4 · N₀/Λ · e^{−Λ D_min(r)}`` per
metre; the nearest one is drawn by inverting its cumulative rate, its size from the exponential tail above
D_min, and it competes with the other returns as the strongest peak.  Its density grows with the rain rate:
with a 120 m sensor about 0.2 % of rays at precipitation 50 and 1 % at 100 (rain); 5 % at 30 and 20 % at 100
(snow).

Range noise: pulse timing jitter grows as the return weakens, ``σ_R = (cτ_H/2)·σ_noise/P``; a return weakened by
fog/rain/wet surfaces gets the extra jitter ``√(σ_R(P)² − σ_R(P_clear)²)`` (so it grows with rain and range).

Wet surfaces
------------
Water on the road turns diffuse reflection into specular reflection away from the sensor.  Ground hits (road,
sidewalk, road line, ground: :data:`GROUND_IDS`) lose a fraction ``film · (0.5 + 0.4 (1 − cos θ))`` of their
intensity, θ the incidence angle on level ground (``cos θ = |dir_z|`` for an upright sensor), with
``film = 1 − (1 − wetness/100)(1 − precipitation_deposits/100)``: a fully wet road returns half at normal
incidence and a tenth at grazing incidence.  Other classes are unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simgen.classes import GROUND, ROADLINE, ROADS, SIDEWALKS

__all__ = ["LidarWeatherModel", "DEFAULT_MODEL", "apply_lidar_weather", "fog_coefficients", "precipitation_rate_mm_h",
           "precipitation_extinction", "GROUND_IDS", "REAL", "FOG", "PRECIPITATION"]

C_LIGHT = 299_792_458.0  # m/s
REAL, FOG, PRECIPITATION = 0, 1, 2  # false_return codes
GROUND_IDS = (ROADS, SIDEWALKS, ROADLINE, GROUND)
_GROUND_LUT = np.zeros(256, bool)
_GROUND_LUT[list(GROUND_IDS)] = True


@dataclass(frozen=True)
class LidarWeatherModel:
    """Model constants (defaults documented in the module docstring)."""

    alpha_full_fog: float = 0.06  # extinction (1/m) at fog_density 100 (MOR 50 m); as the camera's fog
    fog_exponent: float = 1.5  # α ∝ fog_density^1.5, as the camera's fog
    beta_mor: float = 0.046  # β = beta_mor / MOR  (1/(m·sr))
    tau_h_s: float = 10e-9  # half-power pulse width (s)
    r1_m: float = 0.9  # crossover function: 0 below r1, 1 above r2
    r2_m: float = 10.0
    table_step_m: float = 0.1
    floor_reflectivity: float = 0.1  # Lambertian reflectivity just detectable at max_range
    min_margin_db: float = 3.0  # every clear-weather return is at least this far above the floor
    threshold_snr: float = 5.0  # detection floor in receiver-noise σ
    rain_rate_full_mm_h: float = 50.0  # precipitation 100 (rain)
    snow_rate_full_mm_h: float = 10.0  # precipitation 100 (snow, water equivalent)
    beam_exit_m: float = 0.01
    beam_divergence_rad: float = 3e-3
    drop_reflectivity: float = 0.02
    flake_reflectivity: float = 0.3
    clutter_max_m: float = 30.0
    wet_loss_normal: float = 0.5
    wet_loss_grazing: float = 0.9


DEFAULT_MODEL = LidarWeatherModel()


def _w(weather, name: str) -> float:
    if weather is None:
        return 0.0
    v = weather.get(name, 0.0) if isinstance(weather, dict) else getattr(weather, name, 0.0)
    return float(v or 0.0)


def fog_coefficients(fog_density: float, model: LidarWeatherModel = DEFAULT_MODEL) -> tuple[float, float, float]:
    """(α extinction 1/m, β backscatter 1/(m·sr), MOR m) for CARLA ``fog_density`` 0–100 (MOR inf without fog):
    ``α = α_full · (fog_density/100)^1.5`` — the camera's fog extinction (simgen.sensors.shading), since fog
    droplets (≫ 1 µm) attenuate visible and 905 nm light alike — and ``β = beta_mor / MOR``."""
    d = float(np.clip(fog_density, 0.0, 100.0)) / 100.0
    if d <= 0.0:
        return 0.0, 0.0, math.inf
    alpha = model.alpha_full_fog * d**model.fog_exponent
    mor = math.log(20.0) / alpha
    return alpha, model.beta_mor / mor, mor


def precipitation_rate_mm_h(precipitation: float, kind: str = "rain",
                            model: LidarWeatherModel = DEFAULT_MODEL) -> float:
    """CARLA ``precipitation`` 0–100 → rain rate (mm/h; water equivalent for snow), quadratic."""
    full = model.snow_rate_full_mm_h if kind == "snow" else model.rain_rate_full_mm_h
    return full * (float(np.clip(precipitation, 0.0, 100.0)) / 100.0) ** 2


def _dsd(rate: float, kind: str) -> tuple[float, float]:
    """(N₀ m⁻³mm⁻¹, Λ mm⁻¹) of the exponential size distribution (Marshall–Palmer rain, Gunn–Marshall snow)."""
    if kind == "snow":
        return 3800.0 * rate**-0.87, 2.55 * rate**-0.48
    return 8000.0, 4.1 * rate**-0.21


def precipitation_extinction(rate_mm_h: float, kind: str = "rain") -> float:
    """Extinction coefficient (1/m) of rain/snow at ``rate_mm_h``: π N₀/Λ³ (extinction efficiency 2)."""
    if rate_mm_h <= 0.0:
        return 0.0
    n0, lam = _dsd(rate_mm_h, kind)
    return math.pi * n0 / lam**3 * 1e-6


def _xi(r: np.ndarray, m: LidarWeatherModel) -> np.ndarray:
    return np.clip((r - m.r1_m) / max(m.r2_m - m.r1_m, 1e-9), 0.0, 1.0)


def _transmission(r: np.ndarray, alpha_fog: float, d0: float, alpha_p: float) -> np.ndarray:
    """Two-way transmission to range r: fog beyond d0 plus precipitation everywhere."""
    return np.exp(-2.0 * (alpha_p * r + alpha_fog * np.maximum(r - d0, 0.0)))


@lru_cache(maxsize=16)
def _soft_table(alpha_fog: float, beta: float, d0: float, alpha_p: float, r_end: float, m: LidarWeatherModel):
    """Soft-target (fog) peak per hard-target range index n (R₀ ≈ n·dr; index N = no hard target):
    returns (dr, peak power (N+1,), peak range (N+1,))."""
    dr = m.table_step_m
    L = C_LIGHT * m.tau_h_s  # range extent of the pulse (m)
    J = max(2, int(round(L / dr)))
    N = int(math.ceil((r_end + L) / dr)) + 1
    r = np.arange(N) * dr
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(r > max(d0, 0.0), _xi(r, m) / np.maximum(r, 1e-9) ** 2, 0.0)
    g = g * _transmission(r, alpha_fog, d0, alpha_p)
    w = np.sin(np.pi * np.arange(J + 1) / J) ** 2
    full = beta * dr * np.convolve(g, w)[:N]  # P_soft(R_m) with all fog r < R_m
    # the running maximum (and where) of the untruncated signal: valid for R < R0
    cm = np.maximum.accumulate(full)
    arg = np.maximum.accumulate(np.where(full >= cm, np.arange(N), 0))
    # tail R = R0 + d·dr, d = 0..J-1: only fog r < R0 contributes: sum_{i=0}^{J-d-1} w[i+d+1] g[n-1-i]
    n = np.arange(N + 1)
    i = np.arange(J)
    gi = n[:, None] - 1 - i[None, :]
    G = np.where(gi >= 0, g[np.clip(gi, 0, N - 1)], 0.0)
    dd = np.arange(J)[:, None] + i[None, :] + 1
    W2 = np.where(dd <= J, w[np.clip(dd, 0, J)], 0.0)
    tail = beta * dr * (G @ W2.T)  # (N+1, J): power at R0 + d·dr
    t_arg = tail.argmax(1)
    t_max = tail[n, t_arg]
    prev = np.clip(n - 1, 0, N - 1)
    head_max = np.where(n > 0, cm[prev], 0.0)
    head_arg = np.where(n > 0, arg[prev], 0)
    use_tail = t_max > head_max
    peak = np.where(use_tail, t_max, head_max)
    peak_r = np.where(use_tail, (n + t_arg) * dr, head_arg * dr)
    peak[N] = cm[N - 1]  # no hard target: the whole fog column
    peak_r[N] = arg[N - 1] * dr
    return dr, peak, peak_r


@lru_cache(maxsize=16)
def _clutter_table(rate: float, kind: str, alpha_fog: float, d0: float, alpha_p: float, p_floor: float,
                   m: LidarWeatherModel):
    """Cumulative rate of detectable drops along a ray: (r grid, Λ_c(r), Λ mm⁻¹, ρ_d)."""
    n0, lam = _dsd(rate, kind)
    rho = m.flake_reflectivity if kind == "snow" else m.drop_reflectivity
    r = np.linspace(m.r1_m, max(m.clutter_max_m, m.r1_m + 1.0), 2048)
    wdt = m.beam_exit_m + m.beam_divergence_rad * r  # beam diameter (m)
    full = _xi(r, m) * rho / (np.pi * r**2) * _transmission(r, alpha_fog, d0, alpha_p)  # power if f = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        dmin_mm = np.where(full >= p_floor, 1e3 * wdt * np.sqrt(p_floor / np.maximum(full, 1e-300)), np.inf)
    lam_r = np.pi * wdt**2 / 4.0 * n0 / lam * np.exp(-lam * dmin_mm)  # detectable drops per metre of ray
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (lam_r[1:] + lam_r[:-1]) * np.diff(r))])
    return r, cum, lam, rho


def apply_lidar_weather(range_m: np.ndarray, intensity: np.ndarray, hit: np.ndarray, semantic: np.ndarray,
                        dirs: np.ndarray, weather, *, rng: np.random.Generator, max_range: float,
                        precipitation_kind: str = "rain", model: LidarWeatherModel = DEFAULT_MODEL):
    """Fog, rain/snow and wet roads on one sweep's rays.

    Inputs, per ray (N,): ``range_m`` (m; inf for misses), ``intensity`` (range-normalised, ~reflectivity),
    ``hit`` (bool: the ray hit something within ``max_range``), ``semantic`` (CARLA class ids), ``dirs`` (N, 3)
    unit directions in the sensor frame (z up); ``weather``: a :class:`simgen.spec.scenario.Weather` (or any
    object/dict with its fields: fog_density, fog_distance, precipitation, precipitation_deposits, wetness);
    ``max_range``: the sensor's range (m); ``precipitation_kind``: "rain" or "snow".

    Returns ``(range_m, intensity, keep, false_return)``: new range (float64, inf where not kept), intensity
    (float32, 0 where not kept), ``keep`` (bool: the ray gives a point) and ``false_return`` (uint8: 0 real,
    1 fog backscatter, 2 precipitation clutter; false returns are kept even where the ray missed).  Clear
    weather → the input unchanged (``keep = hit``).  Deterministic for a given ``rng`` state.
    """
    rng_in = np.asarray(range_m, np.float64)
    inten_in = np.asarray(intensity, np.float32)
    n = rng_in.shape[0]
    hard = np.asarray(hit, bool) & np.isfinite(rng_in) & (rng_in <= max_range)
    if inten_in.shape != (n,) or hard.shape != (n,) or np.shape(semantic) != (n,) or np.shape(dirs) != (n, 3):
        raise ValueError("range_m, intensity, hit, semantic must be (N,) and dirs (N, 3)")
    if precipitation_kind not in ("rain", "snow"):
        raise ValueError(f"precipitation_kind must be 'rain' or 'snow', got {precipitation_kind!r}")
    fog_density = _w(weather, "fog_density")
    precip = _w(weather, "precipitation")
    wet = 1.0 - (1.0 - np.clip(_w(weather, "wetness"), 0, 100) / 100.0) * \
        (1.0 - np.clip(_w(weather, "precipitation_deposits"), 0, 100) / 100.0)
    if fog_density <= 0.0 and precip <= 0.0 and wet <= 0.0:
        return (np.where(hard, rng_in, np.inf), np.where(hard, inten_in, np.float32(0)).astype(np.float32),
                hard.copy(), np.zeros(n, np.uint8))

    m = model
    alpha_f, beta, _ = fog_coefficients(fog_density, m)
    d0 = max(_w(weather, "fog_distance"), 0.0)
    rate = precipitation_rate_mm_h(precip, precipitation_kind, m)
    alpha_p = precipitation_extinction(rate, precipitation_kind)
    p_floor = m.floor_reflectivity / (np.pi * max_range**2)
    sigma_n = p_floor / m.threshold_snr
    half_pulse = 0.5 * C_LIGHT * m.tau_h_s  # m
    # fixed-size draws, whatever the weather, so the stream does not depend on what is hit
    z = rng.standard_normal((4, n), dtype=np.float32)
    e = rng.standard_exponential((2, n), dtype=np.float32)

    R0 = np.where(hard, rng_in, 0.0)
    R0s = np.maximum(R0, 1e-3)
    rho = np.where(hard, np.maximum(inten_in, 0.0), 0.0).astype(np.float64)
    trans = _transmission(R0, alpha_f, d0, alpha_p)
    if wet > 0.0:  # wet ground: specular loss
        ground = hard & _GROUND_LUT[np.asarray(semantic).astype(np.uint8)]
        cos_inc = np.abs(np.asarray(dirs)[:, 2])
        loss = wet * (m.wet_loss_normal + (m.wet_loss_grazing - m.wet_loss_normal) * (1.0 - cos_inc))
        trans = np.where(ground, trans * (1.0 - np.clip(loss, 0.0, 1.0)), trans)
    p_clear = np.maximum(_xi(R0s, m) * rho / (np.pi * R0s**2), p_floor * 10 ** (m.min_margin_db / 10.0))
    p_hard = p_clear * trans
    meas = np.where(hard, p_hard + sigma_n * z[0], -np.inf)  # the strongest measured peak so far
    win = np.zeros(n, np.uint8)

    # fog: soft-target peak per ray (table over the hard range)
    if beta > 0.0:
        dr, peak, peak_r = _soft_table(round(alpha_f, 9), round(beta, 12), round(d0, 3), round(alpha_p, 9),
                                       float(max_range), m)
        N = len(peak) - 1
        idx = np.where(hard, np.minimum(np.ceil(R0 / dr).astype(np.int64), N - 1), N)
        p_fog = peak[idx]
        m_fog = np.where(p_fog > 0.0, p_fog + sigma_n * z[1], -np.inf)
        fog_wins = m_fog > meas
        meas = np.where(fog_wins, m_fog, meas)
        win[fog_wins] = FOG

    # precipitation: the nearest detectable drop within the ray's free path (only a few rays have one)
    if rate > 0.0:
        rg, cum, lam, rho_d = _clutter_table(round(rate, 6), precipitation_kind, round(alpha_f, 9), round(d0, 3),
                                             round(alpha_p, 9), float(p_floor), m)
        # cumulative rate at the ray's free path (uniform grid: index arithmetic)
        u = (np.where(hard, np.clip(R0, rg[0], rg[-1]), rg[-1]) - rg[0]) * ((len(rg) - 1) / (rg[-1] - rg[0]))
        i0 = np.minimum(u.astype(np.int64), len(rg) - 2)
        has = e[0] < cum[i0] + (u - i0) * (cum[i0 + 1] - cum[i0])
        sub = np.nonzero(has)[0]
        if len(sub):
            rd = np.interp(e[0, sub], cum, rg)
            wd = m.beam_exit_m + m.beam_divergence_rad * rd
            full = _xi(rd, m) * rho_d / (np.pi * rd**2) * _transmission(rd, alpha_f, d0, alpha_p)
            dmin = 1e3 * wd * np.sqrt(p_floor / np.maximum(full, 1e-300))
            frac = np.minimum(1.0, ((dmin + e[1, sub] / lam) * 1e-3 / wd) ** 2)  # size: exponential tail > D_min
            p_drop = frac * full
            m_drop = p_drop + sigma_n * z[2, sub]
            drop_wins = m_drop > meas[sub]
            ws = sub[drop_wins]
            meas[ws] = m_drop[drop_wins]
            win[ws] = PRECIPITATION

    keep = meas >= p_floor
    false_ret = np.where(keep, win, 0).astype(np.uint8)

    def jitter(p):  # timing jitter (m) of a peak of power p
        return half_pulse * sigma_n / np.maximum(p, 1e-30)

    out_r = np.full(n, np.inf)
    out_i = np.zeros(n, np.float32)
    k = np.nonzero(keep & (win == REAL))[0]  # real returns: attenuated, extra jitter as they weaken
    sig = np.sqrt(np.maximum(jitter(p_hard[k]) ** 2 - jitter(p_clear[k]) ** 2, 0.0))
    out_r[k] = R0[k] + np.minimum(sig, half_pulse) * z[3, k]
    out_i[k] = rho[k] * trans[k]
    if beta > 0.0:
        k = np.nonzero(keep & (win == FOG))[0]  # fog backscatter at the soft peak, jittered over its width
        rf = peak_r[idx[k]]
        pf = peak[idx[k]]
        r = rf + np.maximum(half_pulse / 2.0, np.minimum(jitter(pf), half_pulse)) * z[3, k]
        out_r[k] = np.where(hard[k], np.minimum(r, R0[k]), r)
        out_i[k] = np.pi * rf**2 * pf
    if rate > 0.0 and len(sub):
        sel = keep[ws]
        k = ws[sel]  # precipitation clutter
        r = rd[drop_wins][sel] + np.minimum(jitter(p_drop[drop_wins][sel]), 0.25) * z[3, k]
        out_r[k] = np.where(hard[k], np.minimum(r, R0[k]), r)
        out_i[k] = p_drop[drop_wins][sel] * np.pi * rd[drop_wins][sel] ** 2
    out_r[keep] = np.maximum(out_r[keep], 0.5 * m.r1_m)
    np.clip(out_i, 0.0, None, out=out_i)
    return out_r, out_i, keep, false_ret
