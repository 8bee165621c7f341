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
    """(...,4,2) footprint corners from bottom-centre poses (...,4) and sizes (...,3): front-left, front-right,
    rear-right, rear-left, i.e. (+l/2, +w/2), (+l/2, -w/2), (-l/2, -w/2), (-l/2, +w/2) in the actor's frame."""
    c, s = np.cos(pose[..., 3]), np.sin(pose[..., 3])
    hl, hw = dims[..., 0] / 2, dims[..., 1] / 2
    lx = np.stack([hl, hl, -hl, -hl], -1)  # (...,4)
    ly = np.stack([hw, -hw, -hw, hw], -1)
    x = c[..., None] * lx - s[..., None] * ly + pose[..., None, 0]
    y = s[..., None] * lx + c[..., None] * ly + pose[..., None, 1]
    return np.stack([x, y], -1)


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(np.einsum("...i,...i->...", p - a, ab) / np.maximum(np.einsum("...i,...i->...", ab, ab), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _overlap_with(ego: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """(N,A) whether footprint ``fp[n, a]`` (N,A,4,2) overlaps ``ego[n]`` (N,4,2): separating axis test over the
    four edge normals of both rectangles (touching counts as overlap, as in the simulator's contact test)."""
    E = np.broadcast_to(ego[:, None], fp.shape)
    axes = np.concatenate([E[..., [1, 2], :] - E[..., [0, 1], :], fp[..., [1, 2], :] - fp[..., [0, 1], :]], axis=-2)
    axes = axes / np.maximum(np.linalg.norm(axes, axis=-1, keepdims=True), 1e-12)  # (N,A,4,2)
    pe = np.einsum("nakd,nacd->nakc", axes, E)
    po = np.einsum("nakd,nacd->nakc", axes, fp)
    sep = (pe.max(-1) < po.min(-1)) | (po.max(-1) < pe.min(-1))
    return ~sep.any(-1)


def gaps_and_ttc_frames(pose: np.ndarray, vel: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gaps_and_ttc` for N frames at once: pose (N,A,4), vel (N,A,3), dims (N,A,3) -> gap, ttc (N,A).

    One compiled loop over the whole episode (:func:`annotators.criticality_kernels.gaps_ttc_kernel`); the numpy
    form :func:`gaps_and_ttc_frames_numpy` is the reference it is tested against."""
    from annotators.criticality_kernels import gaps_ttc_kernel

    pose, vel, dims = (np.ascontiguousarray(v, float) for v in (pose, vel, dims))
    if pose.shape[1] < 2:
        return gaps_and_ttc_frames_numpy(pose, vel, dims)
    return gaps_ttc_kernel(np.ascontiguousarray(footprints(pose, dims)), pose, vel)


def gaps_and_ttc_frames_numpy(pose: np.ndarray, vel: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The numpy form of :func:`gaps_and_ttc_frames` (the same formulas as array operations)."""
    pose, vel, dims = (np.asarray(v, float) for v in (pose, vel, dims))
    N, A = pose.shape[:2]
    fp = footprints(pose, dims)  # (N,A,4,2)
    ego = fp[:, 0]  # (N,4,2)
    e_a, e_b = ego, np.roll(ego, -1, axis=1)  # ego edges (N,4,2)
    o_a, o_b = fp, np.roll(fp, -1, axis=2)  # actor edges (N,A,4,2)
    # ego corners to actor edges: (N,A,corner,edge); actor corners to ego edges: (N,A,corner,edge)
    d1 = _point_segment_distance(ego[:, None, :, None, :], o_a[:, :, None, :, :], o_b[:, :, None, :, :])
    d2 = _point_segment_distance(fp[:, :, :, None, :], e_a[:, None, None, :, :], e_b[:, None, None, :, :])
    gap = np.minimum(d1.reshape(N, A, -1).min(-1), d2.reshape(N, A, -1).min(-1))
    gap[_overlap_with(ego, fp)] = 0.0
    rel = pose[..., :2] - pose[:, :1, :2]
    dist = np.linalg.norm(rel, axis=-1)
    u = rel / np.maximum(dist, 1e-9)[..., None]
    closing = -np.einsum("nai,nai->na", vel[..., :2] - vel[:, :1, :2], u)
    with np.errstate(divide="ignore", invalid="ignore"):
        ttc = np.where(closing > 1e-3, gap / closing, np.inf)
    gap[:, 0], ttc[:, 0] = np.nan, np.nan
    return gap, ttc


def gaps_and_ttc(pose: np.ndarray, vel: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gap (m): the exact distance between the ego's and each actor's footprint (0 when they overlap), and TTC
    (s): gap over the closing speed along the line joining their centres (inf when not closing).  Entry 0 (the
    ego itself) is NaN."""
    g, t = gaps_and_ttc_frames(pose[None], vel[None], dims[None])
    return g[0], t[0]


class EpisodeCriticality:
    def __init__(self, static_info: dict):
        self.ids = [a["id"] for a in static_info["actors"]]
        self.names = [a["name"] for a in static_info["actors"]]
        self.acc, self.time = [], []
        self._pose: list[np.ndarray] = []  # per frame, for the gaps and TTCs computed all at once in arrays()
        self._vel: list[np.ndarray] = []
        self._dims: list[np.ndarray] = []
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self.collisions: list[tuple[int, int, int]] = []
        self.ego_xy: list[np.ndarray] = []
        self.xy: list[np.ndarray] = []
        self.impacts: list[dict] = []

    def add(self, frame: Frame) -> None:
        st = frame.actors
        self._pose.append(np.array(st.pose, float))
        self._vel.append(np.array(st.velocity, float))
        self._dims.append(np.array(st.dims, float))
        self.acc.append(float(st.accel[0]))
        self.time.append(frame.time_s)
        self.xy.append(st.pose[:, :2].copy())
        for a, b in frame.collisions:
            self.collisions.append((frame.index, a, b))

    def _gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,A) gaps and TTCs of the frames added so far, computed in one batch (per run of frames with the same
        actor count) and cached until a frame is added."""
        n = len(self._pose)
        if self._cache is None or self._cache[0] != n:
            gs, ts, k = [], [], 0
            while k < n:
                m = k + 1
                while m < n and self._pose[m].shape == self._pose[k].shape:
                    m += 1
                g, t = gaps_and_ttc_frames(np.stack(self._pose[k:m]), np.stack(self._vel[k:m]),
                                           np.stack(self._dims[k:m]))
                gs.extend(g)
                ts.extend(t)
                k = m
            self._cache = (n, np.array(gs, np.float32), np.array(ts, np.float32))
        return self._cache[1], self._cache[2]

    @property
    def gap(self) -> list[np.ndarray]:
        return list(self._gaps()[0])

    @property
    def ttc(self) -> list[np.ndarray]:
        return list(self._gaps()[1])

    def arrays(self) -> dict[str, np.ndarray]:
        gap, ttc = self._gaps()
        acc = np.array(self.acc)
        t = np.array(self.time)
        jerk = np.zeros_like(acc)
        if len(acc) > 1:
            jerk[1:] = np.diff(acc) / np.diff(t)
        return {"gap_m": gap, "ttc_s": ttc,
                "ego_accel_mps2": acc.astype(np.float32), "ego_jerk_mps3": jerk.astype(np.float32)}

    def pet(self) -> dict[str, float]:
        """Post-encroachment time per actor whose trajectory crosses the ego's within 1 m (seconds)."""
        xy = np.array(self.xy)  # (N,A,2)
        t = np.array(self.time)
        out = {}
        if len(xy) < 2:
            return out
        from annotators.criticality_kernels import pet_kernel

        ie, ia, dmin, moved = pet_kernel(np.ascontiguousarray(xy, float))
        for j in np.flatnonzero((dmin <= 1.0) & moved):
            out[self.names[j]] = float(abs(t[ie[j]] - t[ia[j]]))
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
