"""Geometry for the OpenSCENARIO import: OpenSCENARIO positions on the scenario's OpenDRIVE map as world points,
and routes (waypoints) as simgen lane sequences with the turns taken at each junction.

Points are evaluated exactly on the OpenDRIVE geometry with CARLA's offline OpenDRIVE parser (``carla.Map``, the
same parser simgen's map import uses), converted to simgen's frame (x east, y north: CARLA's y is flipped).
Routes are searched on simgen's own lane graph of the imported map (:func:`simgen.world.roads.get_map`), so the
turns found are the ones the simulator's ``lane_follow`` takes."""
from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np

_CARLA_MAPS: dict[str, object] = {}


class Geo:
    def __init__(self, xodr: Path, err):
        self.xodr = Path(xodr)
        self.err = err  # (where, message) -> InputError
        self._map = None

    # ------------------------------------------------------------------ OpenDRIVE points
    def _cmap(self):
        key = str(self.xodr)
        if key not in _CARLA_MAPS:
            import os
            import tempfile

            from simgen.world.xodr import _quiet_stderr, carla_module

            # the carla client crashes (SIGSEGV) on import when HOME is unset, e.g. under `env -i`
            os.environ.setdefault("HOME", tempfile.gettempdir())

            carla = carla_module(key)
            with _quiet_stderr():
                _CARLA_MAPS[key] = carla.Map(self.xodr.stem or "map", self.xodr.read_text(encoding="utf-8", errors="replace"))
        return _CARLA_MAPS[key]

    @property
    def map(self):
        if self._map is None:
            from simgen.world.roads import get_map

            self._map = get_map(str(self.xodr))
        return self._map

    def _wp(self, road: int, lane: int, s: float, where: str):
        try:
            w = self._cmap().get_waypoint_xodr(int(road), int(lane), float(s))
        except RuntimeError:
            w = None
        if w is None:
            raise self.err(where, f"road {road} has no lane {lane} at s={s:g} in {self.xodr.name}")
        return w

    def lane_point(self, road: int, lane: int, s: float, offset: float, where: str) -> tuple[float, float, float]:
        """World (x, y) of the lane position and the lane's driving heading (rad).  ``offset`` is towards +t (the
        left of the road's reference line), as in OpenSCENARIO."""
        w = self._wp(road, lane, s, where)
        x, y = w.transform.location.x, -w.transform.location.y
        h = math.radians(-w.transform.rotation.yaw)  # along the lane's driving direction
        ref = h if lane < 0 else h + math.pi  # the reference line's +s direction
        return x - offset * math.sin(ref), y + offset * math.cos(ref), h

    def road_point(self, road: int, s: float, t: float, where: str) -> tuple[float, float, float]:
        """World (x, y) of (road, s, t) and the reference line's heading (rad).  The reference point is the inner
        edge of lane -1 (or of lane 1), i.e. the centre lane; a road's laneOffset is therefore included."""
        for lane in (-1, 1):
            try:
                w = self._cmap().get_waypoint_xodr(int(road), lane, float(s))
            except RuntimeError:
                w = None
            if w is not None and w.lane_id == lane:
                x, y = w.transform.location.x, -w.transform.location.y
                h = math.radians(-w.transform.rotation.yaw)
                ref = h if lane < 0 else h + math.pi
                half = w.lane_width / 2 * (1 if lane < 0 else -1)  # from the lane centre back to the centre lane
                tt = t + half
                return x - tt * math.sin(ref), y + tt * math.cos(ref), ref
        raise self.err(where, f"road {road} has no lane -1 or 1 at s={s:g} in {self.xodr.name}")

    def t_of(self, road: int, s: float, x: float, y: float, where: str) -> float:
        """The road t (left of the reference line) of world point (x, y) at road s."""
        x0, y0, h = self.road_point(road, s, 0.0, where)
        return -(x - x0) * math.sin(h) + (y - y0) * math.cos(h)

    # ------------------------------------------------------------------ routes
    def lane_at(self, road: int, lane: int, s: float, where: str):
        """simgen's lane record and arc length at (road, lane, s)."""
        hit = self.map.lane_at_road_s(int(road), int(lane), float(s))
        if hit is None:
            raise self.err(where, f"road {road} has no drivable lane {lane} at s={s:g} in {self.xodr.name}")
        return hit

    def route(self, waypoints: list[tuple[int, int, float, str]], where: str) -> list[tuple[str, str | None]]:
        """The lanes from the first waypoint through all the others (fewest lanes between each pair: OpenSCENARIO's
        ``shortest``), each with the turn taken at its end where it offers a choice (None where it does not)."""
        lanes = self.map.lanes
        first = self.lane_at(*waypoints[0])
        seq = [first[0].id]
        arc = first[1]
        for road, lane, s, w in waypoints[1:]:
            goal, goal_arc = self.lane_at(road, lane, s, w)
            if goal.id == seq[-1] and goal_arc >= arc - 1e-6:
                arc = goal_arc
                continue
            prev = {seq[-1]: None}
            q = deque([seq[-1]])
            while q and goal.id not in prev:
                cur = q.popleft()
                for nxt in lanes[cur].successors.values():
                    if nxt not in prev:
                        prev[nxt] = cur
                        q.append(nxt)
            if goal.id not in prev:
                raise self.err(w, f"no way along the lanes from {seq[-1]} to lane {lane} of road {road} (s={s:g})")
            path, cur = [], goal.id
            while cur != seq[-1]:
                path.append(cur)
                cur = prev[cur]
            seq += path[::-1]
            arc = goal_arc
        out = []
        for i, lid in enumerate(seq):
            succ = lanes[lid].successors
            turn = None
            if len(succ) > 1 and i + 1 < len(seq):
                turn = next(k for k, v in succ.items() if v == seq[i + 1])
            out.append((lid, turn))
        return out

    def route_point(self, route: list[tuple[str, str | None]], start_arc: float, path_s: float, where: str):
        """(lane record, arc on it) ``path_s`` metres along the route from its first waypoint (at ``start_arc`` on
        the first lane)."""
        lanes = self.map.lanes
        left = start_arc + path_s
        for lid, _ in route:
            ln = lanes[lid]
            if left <= ln.centre.length + 1e-6:
                return ln, max(0.0, left)
            left -= ln.centre.length
        raise self.err(where, f"pathS {path_s:g} is beyond the end of the route")

    @staticmethod
    def odr_s(ln, arc: float) -> float:
        """The road s of the point ``arc`` metres along simgen lane ``ln``."""
        return float(np.interp(arc, ln.centre.vertex_s, ln.s_road))
