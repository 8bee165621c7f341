"""Hardening of the input side (issue 15 items 1-5 and 11, issue 11's --set and validate items).

Every bad input is a one-line error naming the file and the key, exit code 2, nothing written and no plugin code
run.  Plugin code only runs with the user's opt-in (``--allow-plugins`` or ``SIMGEN_ALLOW_PLUGINS=1``).
"""
from __future__ import annotations

import importlib.metadata
import os
import sys

import pytest

from simgen.cli import main
from simgen.errors import InputError
from tests.conftest import RIGS, SCENARIOS, write

GOOD = (SCENARIOS / "lead_vehicle_brakes.yaml").read_text()
WEAVE = SCENARIOS / "drunk_driver_weaving.yaml"


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch):
    monkeypatch.delenv("SIMGEN_ALLOW_PLUGINS", raising=False)


@pytest.fixture
def clean_registry():
    """Run with the behaviour/trigger registries as a fresh process has them; restore them afterwards."""
    from simgen.sim import behaviours as b

    saved_b, saved_t = dict(b.BEHAVIOURS), dict(b.TRIGGERS)
    for name in [n for n, f in b.BEHAVIOURS.items() if f is not None]:
        del b.BEHAVIOURS[name]
    b.TRIGGERS.clear()
    yield b
    b.BEHAVIOURS.clear()
    b.BEHAVIOURS.update(saved_b)
    b.TRIGGERS.clear()
    b.TRIGGERS.update(saved_t)


def check_bad(capsys, args, *needles):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


def marker_plugin(folder, marker, name="evil.py"):
    """A plugin file that leaves ``marker`` behind when it is imported (and registers nothing)."""
    return write(folder, name, f"open({str(marker)!r}, 'w').write('ran')\n")


def with_plugins(text: str, plugins: str) -> str:
    return text.replace("duration_s: 8\n", f"duration_s: 8\nplugins: {plugins}\n", 1)


# --------------------------------------------------------------------------------------------- 1. plugins
def test_plugins_need_opt_in(tmp_path, capsys):
    """issue 15 item 1: a file's plugins do not run without --allow-plugins; the error names file, key and flag."""
    marker = tmp_path / "ran.txt"
    marker_plugin(tmp_path, marker)
    p = write(tmp_path, "s.yaml", with_plugins(GOOD, "[evil.py]"))
    check_bad(capsys, ["validate", str(p)], str(p), "plugins[0]", "--allow-plugins", "SIMGEN_ALLOW_PLUGINS")
    out = tmp_path / "o"
    check_bad(capsys, ["run", str(p), "--out", str(out), "--frames", "1", "--no-progress"], "plugins[0]",
              "--allow-plugins")
    assert not marker.exists()
    assert not out.exists()
    # with the opt-in it runs (the file registers nothing, so the scenario validates)
    assert main(["validate", str(p), "--allow-plugins"]) == 0
    assert marker.read_text() == "ran"


def test_plugin_env_opt_in(tmp_path, capsys, monkeypatch):
    """issue 15 item 1: SIMGEN_ALLOW_PLUGINS=1 is the other way to opt in."""
    marker = tmp_path / "ran.txt"
    marker_plugin(tmp_path, marker)
    p = write(tmp_path, "s.yaml", with_plugins(GOOD, "[evil.py]"))
    monkeypatch.setenv("SIMGEN_ALLOW_PLUGINS", "1")
    assert main(["validate", str(p)]) == 0
    assert marker.exists()


@pytest.mark.parametrize("entry", ["../evil.py", "ABS", "link.py", "sub/../../evil.py"])
def test_plugin_outside_the_scenario_folder_is_refused(tmp_path, capsys, entry):
    """issue 15 item 1: plugin files are confined to the scenario's folder (no .., no absolute path, no symlink
    out of it), even with --allow-plugins."""
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "ran.txt"
    evil = marker_plugin(outside, marker)
    folder = outside / "scen"
    folder.mkdir()
    (folder / "sub").mkdir()
    (folder / "link.py").symlink_to(evil)
    entry = str(evil) if entry == "ABS" else entry
    p = write(folder, "s.yaml", with_plugins(GOOD, f"[{entry!r}]"))
    check_bad(capsys, ["validate", str(p), "--allow-plugins"], str(p), "plugins[0]", "scenario's folder")
    assert not marker.exists()


def test_bare_module_name_does_not_import_installed_modules(tmp_path, capsys, monkeypatch):
    """issue 15 item 1: ``plugins: [this]`` (any importable module) is refused; only simgen.plugins entry points."""
    marker = tmp_path / "ran.txt"
    mods = tmp_path / "mods"
    mods.mkdir()
    write(mods, "simgen_test_marker_mod.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(mods))
    for name in ("this", "simgen_test_marker_mod"):
        sys.modules.pop(name, None)
        p = write(tmp_path, "s.yaml", with_plugins(GOOD, f"[{name}]"))
        check_bad(capsys, ["validate", str(p), "--allow-plugins"], str(p), "plugins[0]", "simgen.plugins")
        assert name not in sys.modules
    assert not marker.exists()


def test_entry_point_plugin_loads(tmp_path, capsys, monkeypatch):
    """issue 15 item 1: an installed plugin is named by its entry point in group simgen.plugins."""
    marker = tmp_path / "ran.txt"
    mods = tmp_path / "mods"
    mods.mkdir()
    write(mods, "simgen_test_ep_mod.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(mods))
    sys.modules.pop("simgen_test_ep_mod", None)
    real = importlib.metadata.entry_points

    def fake(**kw):
        if kw.get("group") == "simgen.plugins":
            return importlib.metadata.EntryPoints(
                [importlib.metadata.EntryPoint(name="mine", value="simgen_test_ep_mod", group="simgen.plugins")])
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    p = write(tmp_path, "s.yaml", with_plugins(GOOD, "[mine]"))
    check_bad(capsys, ["validate", str(p)], "plugins[0]", "--allow-plugins")
    assert not marker.exists()
    assert main(["validate", str(p), "--allow-plugins"]) == 0
    assert marker.exists()


@pytest.mark.parametrize("old,new,key", [
    ("gap_m: {uniform: [12, 35]}", "gap_m: {uniform: [35, 12]}", "parameters.gap_m.uniform"),
    ("name: lead_vehicle_brakes", "name: lead_vehicle_brakes\nnot_a_key: 1", "not_a_key"),
])
def test_plugins_load_only_after_the_rest_validates(tmp_path, capsys, old, new, key):
    """issue 15 item 1: a file with errors elsewhere never runs its plugins, even with the opt-in."""
    marker = tmp_path / "ran.txt"
    marker_plugin(tmp_path, marker)
    p = write(tmp_path, "s.yaml", with_plugins(GOOD, "[evil.py]").replace(old, new, 1))
    check_bad(capsys, ["validate", str(p), "--allow-plugins"], str(p), key)
    check_bad(capsys, ["validate", with_plugins_path(tmp_path), "--allow-plugins", "--set", "tick_hz=0"], "tick_hz")
    assert not marker.exists()


def with_plugins_path(tmp_path):
    return str(write(tmp_path, "good_with_plugin.yaml", with_plugins(GOOD, "[evil.py]")))


def test_library_weave_plugin_with_opt_in(capsys, clean_registry):
    """issue 15 item 1: the shipped example plugin still works, with the opt-in."""
    check_bad(capsys, ["validate", str(WEAVE)], str(WEAVE), "plugins[0]", "--allow-plugins")
    assert "weave" not in clean_registry.BEHAVIOURS
    assert main(["validate", str(WEAVE), "--allow-plugins"]) == 0
    assert clean_registry.BEHAVIOURS["weave"] is not None and "ego_behind_within" in clean_registry.TRIGGERS


def test_replay_of_a_plugin_scenario(tmp_path, capsys, clean_registry):
    """issue 15 item 11: replay loads the stored scenario's plugins (with the same opt-in)."""
    run_out, rep = tmp_path / "run", tmp_path / "rep"
    assert main(["run", str(WEAVE), "--rig", str(RIGS / "small.yaml"), "--out", str(run_out), "--frames", "2",
                 "--no-progress", "--allow-plugins"]) == 0
    ep = str(run_out / "episodes" / "episode_000000.h5")
    # a fresh process has no plugin registered
    for name in [n for n, f in clean_registry.BEHAVIOURS.items() if f is not None]:
        del clean_registry.BEHAVIOURS[name]
    clean_registry.TRIGGERS.clear()
    capsys.readouterr()
    check_bad(capsys, ["replay", ep, "--out", str(rep), "--no-progress"], "plugins[0]", "--allow-plugins")
    assert not rep.exists()
    assert main(["replay", ep, "--out", str(rep), "--no-progress", "--allow-plugins"]) == 0, capsys.readouterr().err
    assert (rep / "episodes" / "episode_000000.h5").is_file()


# --------------------------------------------------------------------------------------------- 2. YAML aliases
def billion_laughs(levels=9) -> str:
    lines = ["name: lead_vehicle_brakes", 'extra:', '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused(tmp_path, capsys):
    """issue 15 item 2: a nine-level billion laughs under an unknown key is refused at load, one line."""
    p = write(tmp_path, "s.yaml", billion_laughs() + GOOD.split("\n", 9)[-1])
    check_bad(capsys, ["validate", str(p)], str(p), "aliases expand to more than")
    from simgen.spec.schema import parse_yaml

    with pytest.raises(InputError, match="aliases expand to more than"):
        parse_yaml(billion_laughs(), file="x.yaml")


def test_recursive_alias_is_refused(tmp_path, capsys):
    """issue 15 item 2: ``extra: &r [*r]`` is refused (was a RecursionError)."""
    p = write(tmp_path, "s.yaml", GOOD + "extra: &r [*r]\n")
    check_bad(capsys, ["validate", str(p)], str(p), "refers to the value that contains it")


def test_small_aliases_still_work():
    """issue 15 item 2: ordinary anchors and aliases (and merge keys) are fine."""
    from simgen.spec.schema import parse_yaml

    d = parse_yaml("a: &x {k: 1, j: [1, 2]}\nb: *x\nc: {<<: *x, k: 2}\n", file="x.yaml")
    assert d == {"a": {"k": 1, "j": [1, 2]}, "b": {"k": 1, "j": [1, 2]}, "c": {"k": 2, "j": [1, 2]}}


# --------------------------------------------------------------------------------------------- 3. expressions
@pytest.mark.parametrize("expr", ["${10 ** 10 ** 10}", "${s * 3000000000}", "${9 ** 9 ** 9 ** 9}",
                                  "${(10 ** 300) * (10 ** 300)}", "${s + s}"])
def test_unbounded_expressions_are_refused(tmp_path, capsys, expr):
    """issue 15 item 3: powers and value sizes are bounded (was a hang / a 12 GB allocation)."""
    text = GOOD.replace("parameters:\n", f"parameters:\n  s: {{choice: [{'x' * 600}]}}\n  big: \"{expr}\"\n", 1)
    p = write(tmp_path, "s.yaml", text)
    check_bad(capsys, ["validate", str(p)], str(p), "parameters.big")


def test_expressions_still_evaluate():
    """issue 15 item 3: the documented operators and functions keep working, ints stay ints."""
    from simgen.spec.params import evaluate

    ev = lambda e, **v: evaluate(e, v, file="f", key="k")  # noqa: E731
    assert ev("a * 1.5 + 5", a=10) == 20.0
    assert ev("2 ** 3") == 8 and isinstance(ev("2 ** 3"), int)
    assert ev("n + 1", n=4) == 5 and isinstance(ev("n + 1", n=4), int)
    assert ev("max(0, min(1, i - n))", i=3, n=1) == 1
    assert ev("sqrt(16) + abs(-2) + round(2.6)") == 9.0
    assert ev("7 % 3") == 1 and ev("-(2)") == -2
    assert abs(ev("pi") - 3.141592653589793) < 1e-15
    for bad in ("__import__('os')", "a.real", "[1, 2]", "a if a else 1", "lambda: 1", "'x'.upper()"):
        with pytest.raises(InputError, match="k: "):
            ev(bad, a=1)


# --------------------------------------------------------------------------------------------- 4. deep nesting
def test_deeply_nested_yaml_is_refused(tmp_path, capsys):
    """issue 15 item 4: [[[...]]] 20,000 deep is bad input (was RecursionError, exit 1)."""
    p = write(tmp_path, "s.yaml", GOOD + "extra: " + "[" * 20000 + "]" * 20000 + "\n")
    check_bad(capsys, ["validate", str(p)], str(p), "nested deeper than")


def test_long_expression_is_refused(tmp_path, capsys):
    """issue 15 item 4: a 200k-term expression is bad input."""
    p = write(tmp_path, "s.yaml", GOOD.replace("gap_m: {uniform: [12, 35]}", 'gap_m: "${' + "+".join(["1"] * 200_000) + '}"'))
    check_bad(capsys, ["validate", str(p)], str(p), "parameters.gap_m")


def test_deep_set_key_is_refused(capsys):
    """issue 15 item 4: --set with a 5,000-part key is bad input."""
    key = ".".join(["a"] * 5000) + ".b=1"
    check_bad(capsys, ["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--set", key], "--set")
    check_bad(capsys, ["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--set",
                       "extra=" + "[" * 20000 + "]" * 20000], "--set")


# --------------------------------------------------------------------------------------------- 5/6. --set
def test_set_reads_exponent_numbers_as_numbers():
    """issue 15 item 5: ``--set x=1e9`` is the number 1e9 (YAML 1.1 would read the string '1e9')."""
    from simgen.spec.schema import apply_overrides

    d = apply_overrides({"x": 0, "y": 0, "z": 0, "w": 0}, ["x=1e9", "y=-2.5E-3", "z=7", "w=abc"], file="f")
    assert d == {"x": 1e9, "y": -2.5e-3, "z": 7, "w": "abc"}
    assert isinstance(d["x"], float) and isinstance(d["z"], int)


def test_set_duration_with_exponent(capsys):
    """issue 15 item 5: a scenario float set as 1e1 validates as 10.0."""
    assert main(["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--set", "duration_s=1e1"]) == 0
    assert "200 frames" in capsys.readouterr().out


def test_set_unknown_parameter_is_an_error(capsys):
    """issue 11: ``--set parameters.<misspelt>=35`` is an error naming the known parameters."""
    check_bad(capsys, ["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--set", "parameters.ego_speed_kmh=35"],
              "parameters.ego_speed_kmh", "unknown parameter", "gap_m")
    assert main(["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--set", "parameters.gap_m=20"]) == 0


def test_validate_reports_every_file(tmp_path, capsys):
    """issue 11: ``simgen validate a.yaml b.yaml`` checks every file and reports each; exit 2 if any failed."""
    bad1 = write(tmp_path, "bad1.yaml", GOOD.replace("tick_hz: 20", "tick_hz: 0"))
    bad2 = write(tmp_path, "bad2.yaml", GOOD.replace("map: straight", "map: moon"))
    good = SCENARIOS / "lead_vehicle_brakes.yaml"
    code = main(["validate", str(bad1), str(good), str(bad2), str(RIGS / "small.yaml")])
    cap = capsys.readouterr()
    assert code == 2
    errs = cap.err.strip().splitlines()
    assert len(errs) == 2 and str(bad1) in errs[0] and "tick_hz" in errs[0] and str(bad2) in errs[1] and "map" in errs[1]
    assert f"{good}: ok" in cap.out and f"{RIGS / 'small.yaml'}: ok" in cap.out
    assert main(["validate", str(good), str(RIGS / "small.yaml")]) == 0


def test_negative_seed_is_refused(tmp_path, capsys):
    """issue 15 item 5: ``--seed -1`` is bad input naming --seed (was exit 1), and nothing is written."""
    out = tmp_path / "o"
    check_bad(capsys, ["run", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--out", str(out), "--seed", "-1",
                       "--no-progress"], "--seed")
    check_bad(capsys, ["validate", str(SCENARIOS / "lead_vehicle_brakes.yaml"), "--seed", "-1"], "--seed")
    assert not out.exists()


def test_env_flag_values():
    """issue 15 item 1: only an explicit yes turns the environment opt-in on."""
    from simgen.spec.scenario import plugins_allowed

    for v, want in (("1", True), ("true", True), ("yes", True), ("0", False), ("", False), ("no", False)):
        os.environ["SIMGEN_ALLOW_PLUGINS"] = v
        assert plugins_allowed(None) is want, v
    del os.environ["SIMGEN_ALLOW_PLUGINS"]
    assert plugins_allowed(None) is False and plugins_allowed(True) is True


def test_batch_plugins_need_opt_in(tmp_path, capsys, clean_registry):
    """issue 15 item 1: a batch plan's plugin scenarios need --allow-plugins too; the opt-in reaches the workers."""
    from simgen.batch.plan import load_plan
    from simgen.batch.worker import EpisodeRunner

    plan = write(tmp_path, "plan.yaml", f"seed: 2\nrig: {RIGS / 'small.yaml'}\njobs:\n"
                                        f"  - {{scenario: {WEAVE}, episodes: 1, frames: 2, name: weave}}\n")
    out = tmp_path / "out"
    check_bad(capsys, ["batch", str(plan), "--out", str(out), "--no-progress"], str(plan), "jobs[0]", "plugins[0]",
              "--allow-plugins")
    assert not out.exists() and "weave" not in clean_registry.BEHAVIOURS
    task = load_plan(plan, allow_plugins=True).expand()[0].payload()
    assert task["allow_plugins"] is True
    for name in [n for n, f in clean_registry.BEHAVIOURS.items() if f is not None]:  # a fresh worker process
        del clean_registry.BEHAVIOURS[name]
    clean_registry.TRIGGERS.clear()
    ep = tmp_path / "w" / "episode_000000.h5"
    res = EpisodeRunner().run(dict(task, out=str(ep), attempt=1, backend_options={}, faults=[]))
    assert ep.is_file() and res["frames"] == 2


def test_scenarios_behaviours_of_another_library_needs_opt_in(tmp_path, capsys, clean_registry):
    """issue 15 item 1: ``simgen scenarios --library DIR behaviours`` runs DIR's plugins only with the opt-in (the
    shipped library's own plugins are part of simgen)."""
    import shutil

    (tmp_path / "plugins").mkdir()
    shutil.copy(WEAVE, tmp_path / WEAVE.name)
    shutil.copy(SCENARIOS / "plugins" / "weave.py", tmp_path / "plugins" / "weave.py")
    assert main(["scenarios", "--library", str(tmp_path), "behaviours"]) == 0
    out = capsys.readouterr().out
    assert "not loaded" in out and "--allow-plugins" in out and "weave" not in clean_registry.BEHAVIOURS
    assert main(["scenarios", "--library", str(tmp_path), "--allow-plugins", "behaviours"]) == 0
    assert "weave" in clean_registry.BEHAVIOURS and "ego_behind_within" in capsys.readouterr().out


def test_nul_bytes_are_one_line_errors(tmp_path, capsys):
    """issue 15 item 12 (input side): a NUL byte in a scenario file is a one-line error (was two lines); an
    escaped NUL in a text key is refused."""
    p = tmp_path / "s.yaml"
    p.write_bytes(GOOD.replace("name: lead_vehicle_brakes", "name: lead\x00brakes").encode())
    check_bad(capsys, ["validate", str(p)], str(p), "#x0000")
    p = write(tmp_path, "t.yaml", GOOD.replace("name: lead_vehicle_brakes", 'name: "lead\\0brakes"'))
    check_bad(capsys, ["validate", str(p)], str(p), "name", "NUL")
