"""Criticality of an episode from the ego's point of view.

Per frame and actor: gap (m) between the ego's and the actor's footprints along the line joining their centres
(each footprint's half-extent along that line is subtracted from the centre distance) and time-to-collision
(gap / closing speed, inf when not closing).  Per frame: ego longitudinal acceleration and jerk, collisions.
Per episode: minimum TTC, minimum gap, whether the ego collided (and with whom), and post-encroachment time for
actors whose paths cross the ego's (time between one leaving the conflict point and the other reaching it).
"""
from __future__ import annotations

import numpy as np

from simgen.records import Frame


def footprints(pose: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """(A,4,2) footprint corners from bottom-centre poses (A,4) and sizes (A,3)."""
    c, s = np.cos(pose[:, 3]), np.sin(pose[:, 3])
    hl, hw = dims[:, 0] / 2, dims[:, 1] / 2
    local = np.stack([np.stack([hl, hw], -1), np.stack([hl, -hw], -1), np.stack([-hl, -hw], -1), np.stack([-hl, hw], -1)], 1)
    R = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)  # (A,2,2)
    return np.einsum("aij,akj->aki", R, local) + pose[:, None, :2]


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(np.einsum("...i,...i->...", p - a, ab) / np.maximum(np.einsum("...i,...i->...", ab, ab), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def gaps_and_ttc(pose: np.ndarray, vel: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gap (m): the exact distance between the ego's and each actor's footprint (0 when they overlap), and TTC
    (s): gap over the closing speed along the line joining their centres (inf when not closing).  Entry 0 (the
    ego itself) is NaN."""
    from simgen.sim.world import overlapping_pairs

    fp = footprints(pose, dims)
    A = len(pose)
    ego = fp[0]
    e_a, e_b = ego, np.roll(ego, -1, axis=0)  # ego edges
    o_a, o_b = fp, np.roll(fp, -1, axis=1)  # actor edges (A,4,2)
    d1 = _point_segment_distance(ego[None, :, None, :], o_a[:, None, :, :], o_b[:, None, :, :])  # ego corners → actor edges
    d2 = _point_segment_distance(fp[:, :, None, :], e_a[None, None, :, :], e_b[None, None, :, :])  # actor corners → ego edges
    gap = np.minimum(d1.reshape(A, -1).min(1), d2.reshape(A, -1).min(1))
    pairs = overlapping_pairs(fp)
    if len(pairs):
        gap[pairs[pairs[:, 0] == 0, 1]] = 0.0
    rel = pose[:, :2] - pose[0, :2]
    dist = np.linalg.norm(rel, axis=1)
    u = rel / np.maximum(dist, 1e-9)[:, None]
    closing = -np.einsum("ni,ni->n", vel[:, :2] - vel[0, :2], u)
    with np.errstate(divide="ignore", invalid="ignore"):
        ttc = np.where(closing > 1e-3, gap / closing, np.inf)
    gap[0], ttc[0] = np.nan, np.nan
    return gap, ttc


class EpisodeCriticality:
    def __init__(self, static_info: dict):
        self.ids = [a["id"] for a in static_info["actors"]]
        self.names = [a["name"] for a in static_info["actors"]]
        self.gap, self.ttc, self.acc, self.time = [], [], [], []
        self.collisions: list[tuple[int, int, int]] = []
        self.ego_xy: list[np.ndarray] = []
        self.xy: list[np.ndarray] = []
        self.impacts: list[dict] = []

    def add(self, frame: Frame) -> None:
        st = frame.actors
        g, t = gaps_and_ttc(st.pose, st.velocity, st.dims)
        self.gap.append(g)
        self.ttc.append(t)
        self.acc.append(float(st.accel[0]))
        self.time.append(frame.time_s)
        self.xy.append(st.pose[:, :2].copy())
        for a, b in frame.collisions:
            self.collisions.append((frame.index, a, b))

    def arrays(self) -> dict[str, np.ndarray]:
        acc = np.array(self.acc)
        t = np.array(self.time)
        jerk = np.zeros_like(acc)
        if len(acc) > 1:
            jerk[1:] = np.diff(acc) / np.diff(t)
        return {"gap_m": np.array(self.gap, np.float32), "ttc_s": np.array(self.ttc, np.float32),
                "ego_accel_mps2": acc.astype(np.float32), "ego_jerk_mps3": jerk.astype(np.float32)}

    def pet(self) -> dict[str, float]:
        """Post-encroachment time per actor whose trajectory crosses the ego's within 1 m (seconds)."""
        xy = np.array(self.xy)  # (N,A,2)
        t = np.array(self.time)
        out = {}
        if len(xy) < 2:
            return out
        ego = xy[:, 0]
        for j in range(1, xy.shape[1]):
            d = np.linalg.norm(ego[:, None, :] - xy[None, :, j, :], axis=2)  # (N_ego, N_actor)
            if d.min() > 1.0 or np.ptp(xy[:, j], axis=0).max() < 0.5:
                continue
            ie, ia = np.unravel_index(np.argmin(d), d.shape)
            out[self.names[j]] = float(abs(t[ie] - t[ia]))
        return out

    def set_impacts(self, impacts: list[dict]) -> None:
        """Impact records of the episode (one per first contact of a pair, from the simulator: see
        :meth:`simgen.sim.world.World._impact`)."""
        self.impacts = [dict(r) for r in impacts]

    def impact_summary(self) -> dict:
        """The ego's first impact as flat columns (for run.json and the batch index), and every impact as a list."""
        ego = [r for r in self.impacts if self.names and r["actor_a"] == self.names[0]]
        first = ego[0] if ego else None
        out = {"impacts": [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
                           for r in self.impacts]}
        for key in IMPACT_COLUMNS:
            v = None if first is None else first[key]
            out[f"impact_{key}"] = None if isinstance(v, float) and not np.isfinite(v) else v
        return out

    def summary(self) -> dict:
        a = self.arrays()
        ttc = a["ttc_s"][:, 1:] if a["ttc_s"].shape[1] > 1 else np.full((1, 1), np.inf)
        gap = a["gap_m"][:, 1:] if a["gap_m"].shape[1] > 1 else np.full((1, 1), np.inf)
        min_ttc = float(np.min(ttc)) if ttc.size else float("inf")
        ego_hits = sorted({self.names[self.ids.index(b if a_ == 1 else a_)] for _, a_, b in self.collisions if 1 in (a_, b)})
        return {
            "min_ttc_s": min_ttc if np.isfinite(min_ttc) else None,
            "min_gap_m": float(np.min(gap)) if gap.size else None,
            "collision": bool(ego_hits),
            "collided_with": ego_hits,
            "any_collision": bool(self.collisions),
            "max_ego_decel_mps2": float(max(0.0, -np.min(a["ego_accel_mps2"]))),
            "pet_s": self.pet(),
            **self.impact_summary(),
        }

    def write(self, f) -> None:
        g = f.create_group("criticality")
        for k, v in self.arrays().items():
            g.create_dataset(k, data=v, compression="gzip", compression_opts=4)
        import h5py

        ig = f.create_group("impacts")  # one row per impact (possibly none); units in the dataset names
        ig.attrs["description"] = ("first contact of each actor pair, found between ticks; delta-v for a perfectly "
                                   "plastic impact; ego_point_pct: 0 = the ego's right edge, 100 = its left edge")
        for k in IMPACT_FIELDS:
            vals = [r[k] for r in self.impacts]
            if k in IMPACT_STRINGS:
                ig.create_dataset(k, data=np.array(vals, dtype=object), dtype=h5py.string_dtype())
            elif k in ("frame", "id_a", "id_b"):
                ig.create_dataset(k, data=np.array(vals, np.int32).reshape(-1))
            else:
                ig.create_dataset(k, data=np.array(vals, np.float64).reshape(-1))


IMPACT_FIELDS = ("time_s", "frame", "actor_a", "actor_b", "id_a", "id_b", "kind_a", "kind_b", "speed_a_mps",
                 "speed_b_mps", "relative_speed_mps", "mass_a_kg", "mass_b_kg", "delta_v_a_mps", "delta_v_b_mps",
                 "point_x", "point_y", "ego_side", "ego_point_pct")
IMPACT_STRINGS = ("actor_a", "actor_b", "kind_a", "kind_b", "ego_side")
# the ego's first impact, flattened into run.json episode entries and batch index.csv columns (prefixed impact_)
IMPACT_COLUMNS = ("time_s", "actor_b", "speed_a_mps", "speed_b_mps", "relative_speed_mps", "delta_v_a_mps",
                  "delta_v_b_mps", "ego_side", "ego_point_pct")
