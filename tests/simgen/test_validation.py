"""Bad input: every case gets a one-line error naming file/key/value/allowed, exit code 2, nothing written."""
import pytest

from simgen.cli import main
from tests.conftest import RIGS, SCENARIOS, write

GOOD = (SCENARIOS / "lead_vehicle_brakes.yaml").read_text()
RIG = (RIGS / "small.yaml").read_text()


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def check_bad(capsys, args, *needles):
    code, err = run_cli(args, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


@pytest.mark.parametrize("text,needles", [
    ("name: x\nmap: [straight\n", ["malformed YAML", "line"]),
    ("", ["empty"]),
    ("- a\n- b\n", ["mapping"]),
    ("!!python/object/apply:os.system ['echo hacked']\n", ["tags that construct objects are not allowed"]),
    ("name: a\nname: b\n", ["duplicate key 'name'"]),
])
def test_malformed_yaml(tmp_path, capsys, text, needles):
    p = write(tmp_path, "s.yaml", text)
    check_bad(capsys, ["validate", str(p)], str(p), *needles)


@pytest.mark.parametrize("old,new,needles", [
    ("duration_s: 8", "duration_s: 8\ncolour_grading: warm", ["colour_grading", "unknown key", "allowed keys"]),
    ("tick_hz: 20", "tick_hz: fast", ["tick_hz", "'fast'", "a number"]),
    ("tick_hz: 20", "tick_hz: 0", ["tick_hz", "allowed: 1.0 to 200.0"]),
    ("map: straight", "map: moon", ["map", "'moon'", "allowed: straight"]),
    ("  speed_mps: $speed_mps\n  behaviour", "  speed_mps: -3\n  behaviour", ["ego.speed_mps", "got -3", "0.0 to 70.0"]),
    ("  speed_mps: $speed_mps\n  behaviour", "  speed_mps: 900\n  behaviour", ["ego.speed_mps", "900"]),
    ("ahead_m: $gap_m}", "ahead_m: 99999}", ["actors[0].place.ahead_m", "99999"]),
    ("place: {lane: fwd_2, s_m: 120}", "place: {lane: lane_9, s_m: 120}", ["ego.place.lane", "unknown lane 'lane_9'", "fwd_1"]),
    ("place: {relative_to: ego, ahead_m: $gap_m}", "place: {relative_to: ego, ahead_m: $gap_m, lateral_m: -12}", ["actors[0] (lead).place", "off the road"]),
    ("place: {relative_to: ego, ahead_m: $gap_m}", "place: {relative_to: ego, ahead_m: 1.0}", ["actors[0] (lead).place", "overlaps ego"]),
    ("when: {time_s: $brake_time_s}", "when: {distance_m: 5, to: ghost}", ["events[0].when.to", "unknown actor 'ghost'"]),
    ("when: {time_s: $brake_time_s}", "when: {after: lead_brakes}", ["cycle", "lead_brakes -> lead_brakes"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {uniform: [35, 12]}", ["parameters.gap_m.uniform", "reversed"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {gaussian: [1, 2]}", ["parameters.gap_m", "allowed"]),
    ("decel_mps2: $decel_mps2}", "decel_mps2: $decel}", ["unknown parameter $decel"]),
])
def test_bad_scenario_values(tmp_path, capsys, old, new, needles):
    assert old in GOOD, old
    p = write(tmp_path, "s.yaml", GOOD.replace(old, new, 1))
    check_bad(capsys, ["validate", str(p)], str(p), *needles)


@pytest.mark.parametrize("old,new,needles", [
    ("fov: 90", "fov: 0", ["sensors[0].attributes.fov", "got 0.0", "greater than 0.0"]),
    ("fov: 90", "fov: 180", ["sensors[0].attributes.fov", "below 180.0"]),
    ("channels: 16", "channels: 0", ["sensors[1].attributes.channels", "got 0", "1 to 256"]),
    ("channels: 16", "chanels: 16", ["chanels", "unknown key", "channels"]),
    ("type: camera", "type: radar", ["sensors[0].type", "'radar'", "'camera', 'lidar'"]),
    ("range: 80.0", "range: -5", ["sensors[1].attributes.range", "-5"]),
    ("upper_fov: 2.0", "upper_fov: -30", ["upper_fov", "greater than lower_fov"]),
])
def test_bad_rig_values(tmp_path, capsys, old, new, needles):
    assert old in RIG, old
    p = write(tmp_path, "rig.yaml", RIG.replace(old, new, 1))
    check_bad(capsys, ["validate", str(p)], str(p), *needles)


def test_missing_files(tmp_path, capsys):
    check_bad(capsys, ["validate", str(tmp_path / "nope.yaml")], "nope.yaml", "not found")
    check_bad(capsys, ["run", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--rig", str(tmp_path / "r.yaml"),
                       "--out", str(tmp_path / "o")], "r.yaml", "rig file not found")
    assert not (tmp_path / "o").exists()


def test_bad_override_is_validated_like_the_file(tmp_path, capsys):
    out = tmp_path / "o"
    check_bad(capsys, ["run", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--out", str(out),
                       "--set", "weather.fog_density=400"], "weather.fog_density", "400", "0.0 to 100.0")
    check_bad(capsys, ["run", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--out", str(out),
                       "--set", "actors.nobody.speed_mps=3"], "no list item with id 'nobody'")
    check_bad(capsys, ["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--set", "ego.sped_mps=3"], "ego.sped_mps", "unknown key")
    assert not out.exists()


def test_output_dir_with_other_data_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    check_bad(capsys, ["run", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--out", str(out), "--frames", "1",
                       "--no-progress"], str(out), "not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    assert (out / "precious.txt").read_text() == "keep me"


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run"])
    assert e.value.code == 2


def test_valid_files_pass(capsys):
    code = main(["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), str(RIGS / "default.yaml"), "--sample", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "episode 0: gap_m=" in out and "episode 1: gap_m=" in out


# issue 15 item 5: values accepted (exit 0) or failing at run time (exit 1, no key named) before
@pytest.mark.parametrize("old,new,needles", [
    ("duration_s: 8", "duration_s: 8\ntraffic_light_cycle_s: [-12, 3, 2]", ["traffic_light_cycle_s", "-12"]),
    ("duration_s: 8", "duration_s: 8\ntraffic_light_cycle_s: [.inf, 3, 2]", ["traffic_light_cycle_s", "inf"]),
    ("duration_s: 8", "duration_s: 8\ntraffic_light_cycle_s: [0, 0, 0]", ["traffic_light_cycle_s"]),
    ("when: {time_s: $brake_time_s}", "when: {position: [.inf, 0]}", ["events[0].when.position[0]", "a finite number"]),
    ("when: {time_s: $brake_time_s}", "when: {time_s: .nan}", ["events[0].when.time_s", "NaN"]),
    ("duration_s: 8", "duration_s: 8\nroad: {marking_colour: [-1.0e+308, -.inf, 5]}", ["road.marking_colour[0]"]),
    ("duration_s: 8", "duration_s: 8\nroad: {marking_colour: [0.5, 0.5, 5]}", ["road.marking_colour[2]", "0.0 to 1.0"]),
    ("duration_s: 8", "duration_s: 8\nramps: [{key: weather.fog_density, to: 1e9}]", ["ramps[0].to", "0.0 to 100.0"]),
    ("duration_s: 8", "duration_s: 8\nramps: [{key: weather.fog_density, to: -500}]", ["ramps[0].to", "-500"]),
    ("duration_s: 8", "duration_s: 8\nramps: [{key: time_of_day_h, to: 30}]", ["ramps[0].to", "0.0 to 24.0"]),
    ("do: {type: brake, decel_mps2: $decel_mps2}", "do: {type: scripted, speed_profile: [[0, 5], [.inf, 5]]}",
     ["do.speed_profile[1][0]", "a finite number"]),
    ("decel_mps2: {uniform: [5, 9]}", "decel_mps2: {normal: {mean: 6, std: 0, min: 50, max: 60}}",
     ["parameters.decel_mps2.normal", "window"]),
    ("decel_mps2: {uniform: [5, 9]}", "decel_mps2: {normal: {mean: 6, std: 0.1, min: 50, max: 60}}",
     ["parameters.decel_mps2.normal", "window"]),
    ("name: lead_vehicle_brakes", 'name: ""', ["name", "empty"]),
    ("name: lead_vehicle_brakes", "name: " + "x" * 5_000_000, ["name", "characters"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {uniform: [.nan, 1]}", ["parameters.gap_m.uniform", "a finite number"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {uniform: [-.inf, .inf]}", ["parameters.gap_m.uniform", "a finite number"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {normal: {mean: abc, std: 1}}", ["parameters.gap_m.normal.mean", "'abc'"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {choice: [12, 35], weights: [.nan, 1]}", ["parameters.gap_m.weights"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {randint: [0, 1e30]}", ["parameters.gap_m.randint", "1e+30"]),
    ("gap_m: {uniform: [12, 35]}", "gap_m: {uniform: [0, 1.0e+300]}", ["parameters.gap_m.uniform"]),
])
def test_validation_gaps(tmp_path, capsys, old, new, needles):
    """issue 15 item 5: each is a one-line error naming file and key; a run writes nothing."""
    assert old in GOOD, old
    p = write(tmp_path, "s.yaml", GOOD.replace(old, new, 1))
    check_bad(capsys, ["validate", str(p)], str(p), *needles)
    out = tmp_path / "o"
    check_bad(capsys, ["run", str(p), "--rig", str(RIGS / "small.yaml"), "--out", str(out), "--frames", "2",
                       "--no-progress"], str(p), needles[0])
    assert not out.exists()


def test_non_finite_rig_values(tmp_path, capsys):
    """issue 15 item 5: the generic schema refuses inf for float fields (rig files too)."""
    p = write(tmp_path, "rig.yaml", RIG.replace("fov: 90", "fov: .inf", 1))
    check_bad(capsys, ["validate", str(p)], str(p), "sensors[0].attributes.fov", "a finite number")
    p = write(tmp_path, "rig.yaml", RIG.replace("mount: {x: 1.0, z: 1.6}", "mount: {x: -.inf, z: 1.6}", 1))
    check_bad(capsys, ["validate", str(p)], str(p), "sensors[0].mount.x", "a finite number")


def test_truncated_normal_keeps_its_window():
    """issue 15 item 5: a narrow but possible window is sampled inside it, never clipped to its edge."""
    import numpy as np

    from simgen.spec.params import sample_parameters

    spec = {"v": {"normal": {"mean": 0.0, "std": 1.0, "min": 4.0, "max": 4.5}}}
    vals = [sample_parameters(spec, rng=np.random.default_rng(s), file="f")["v"] for s in range(40)]
    assert all(4.0 <= v <= 4.5 for v in vals)
    assert len(set(vals)) == 40  # drawn, not clipped to one bound
    assert not any(v in (4.0, 4.5) for v in vals)
