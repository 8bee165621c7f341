"""The exported OpenDRIVE read by CARLA's own parser (``carla.Map(name, text)``, offline, in the real client
package): every builtin map loads, and CARLA's waypoints of each exported lane lie on the builtin lane centre, with
the builtin driving direction, and the geoReference is read (issue 14)."""
from __future__ import annotations

import math

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="the carla client package is not installed (pip install 'simgen[carla]')")

from simgen.world.opendrive import build_layout, opendrive_xml  # noqa: E402
from simgen.world.roads import MAPS, get_map  # noqa: E402


@pytest.mark.parametrize("name", sorted(MAPS))
def test_carla_parses_the_export_and_its_lanes_are_the_builtin_lanes(name):
    m = carla.Map(name, opendrive_xml(name))
    assert len(m.get_topology()) > 0
    layout, road_map = build_layout(name), get_map(name)
    checked = 0
    for lane_id, lane in road_map.lanes.items():
        if lane_id not in layout.lanes:
            continue
        ref = layout.lane_ref(lane_id)
        L = lane.centre.length
        for s in np.linspace(0.1 * L, 0.9 * L, 3):
            wp = m.get_waypoint_xodr(ref.road_id, ref.lane_id, float(layout.road_s(lane_id, s)))
            assert wp is not None, (lane_id, s)
            x, y, yaw = lane.centre.pose_at(s)
            loc = wp.transform.location
            assert math.hypot(loc.x - x, -loc.y - y) < 0.05, (lane_id, s, (loc.x, -loc.y), (x, y))
            d = (math.radians(-wp.transform.rotation.yaw) - yaw + math.pi) % (2 * math.pi) - math.pi
            if lane.kind != "connector":
                assert abs(d) < 0.02, (lane_id, s, d)
            checked += 1
    assert checked >= 3
    g = m.transform_to_geolocation(carla.Location(0, 0, 0))
    assert (g.latitude, g.longitude) == pytest.approx((0.0, 0.0), abs=1e-9)
