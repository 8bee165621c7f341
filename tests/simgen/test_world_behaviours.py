"""Simulator behaviours the scenario library relies on (issue #3), each a regression test for a bug found while
staging the library: AEB ignoring what the driver model filters out, shoulders without neighbours, a ball
stopping the car that hits it."""
import numpy as np

from simgen.sim.world import World
from simgen.spec.scenario import concretise, load_scenario_source
from tests.conftest import write

BASE = """
name: t
map: straight
duration_s: 6
scenery: {density: 0}
ego: {place: {lane: fwd_2, s_m: 100}, speed_mps: 15, behaviour: EGO}
actors:
  - id: stopped
    kind: car
    place: {relative_to: ego, ahead_m: 45}
    behaviour: {type: parked}
"""


def _world(tmp_path, text, name="t.yaml"):
    src = load_scenario_source(write(tmp_path, name, text))
    spec, _ = concretise(src, rng=np.random.default_rng(0))
    return World(spec, rng=np.random.default_rng(0), source=str(src.path))


def _run(w, seconds):
    for _ in range(int(seconds * w.spec.tick_hz)):
        w.step()


def test_aeb_brakes_even_when_the_driver_ignores_obstacles(tmp_path):
    blind = _world(tmp_path, BASE.replace("EGO", "{type: lane_follow, speed_mps: 15, obstacles: none}"))
    aeb = _world(tmp_path, BASE.replace("EGO", "{type: lane_follow, speed_mps: 15, obstacles: none, aeb: true}"), "a.yaml")
    _run(blind, 5)
    _run(aeb, 5)
    assert blind.collisions_total, "an inattentive driver without AEB hits the stopped car"
    assert not aeb.collisions_total and aeb.actors[0].speed < 0.5


def test_shoulder_neighbours_the_outer_lane(tmp_path):
    text = BASE.replace("EGO", "{type: lane_follow, speed_mps: 15}").replace(
        "place: {relative_to: ego, ahead_m: 45}\n    behaviour: {type: parked}",
        "place: {lane: fwd_shoulder, s_m: 160}\n    speed_mps: 8\n    behaviour: {type: lane_follow, speed_mps: 8}\n"
        "    events:\n      - when: {time_s: 0.5}\n        do: {type: lane_change, direction: left, duration_s: 2}")
    w = _world(tmp_path, text)
    _run(w, 4)
    merger = w.actors[1]
    assert w.map.lane_at(np.array([[merger.x, merger.y]]))[0] == "fwd_2"


def test_a_ball_does_not_stop_the_car_that_hits_it(tmp_path):
    text = BASE.replace("EGO", "{type: lane_follow, speed_mps: 15, obstacles: none}").replace("kind: car\n", "kind: ball\n")
    w = _world(tmp_path, text)
    _run(w, 5)
    assert w.collisions_total  # it did hit the ball
    assert w.actors[0].speed > 10 and not w.actors[0].crashed
