"""Scenario files: validation names the field; programming from the label's bag table; the
treatment-cycle form; the pumpsim CLI (exit 0 ok, 1 an expectation failed, 2 invalid)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakehal import FakeHal, tmpdir

from pump.codes import CLINICIAN
from pump.commands import Commands
from pump.controller import Controller
from sim import cli, scenario
from sim.programming import prescribed_dose_ug, proposal_args
from sim.scenario import Scenario, ScenarioError

GOOD = """
name = "adult-24h-bag"
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
dose_ug_per_day = 28.0
bag_hours = 24
[run]
hours = 1.0
seed = 1
"""


@pytest.mark.parametrize("text,field", [
    ('[[faults]]\nat_h = "soon"\nkind = "occlusion"',
     "faults[0].at_h: expected a number 0 ≤ x ≤ 2400, got 'soon'"),
    ('[[faults]]\nat_h = 0.5\nkind = "occlusion"\n[[faults]]\nat_h = 0.1\nkind = "gremlins"',
     "faults[1].kind: unknown fault 'gremlins'"),
    ('[[faults]]\nat_h = 0.5\nkind = "motor_runaway"\nfactor = -2',
     "faults[0].factor: expected a number 0.01 ≤ x ≤ 1000, got -2"),
    ('[[faults]]\nat_h = 0.5\nkind = "motor_runaway"\nfactr = 2', "faults[0].factr: unknown field"),
    ('[[faults]]\nat_h = 0.5\nkind = "power_loss"\nticks_reset = 1',
     "faults[0].ticks_reset: expected true or false"),
    ('[[faults]]\nat_h = 5.0\nkind = "occlusion"', "faults[0].at_h: 5 is after the end"),
    ('[[faults]]\nkind = "occlusion"', "faults[0].at_h: missing"),
    ("[expect]\nalarm = \"OVERINFUSION\"", "expect.alarm: expected one of"),
    ("[expect]\nfinal_state = \"DONE\"", "expect.final_state: expected one of"),
    ("[expect]\nno_alarms_except = \"OCCLUSION\"", "expect.no_alarms_except: expected a list"),
    ("[expect]\nmax_excess_ml = -1",
     "expect.max_excess_ml: expected a number 0 ≤ x ≤ 100000, got -1"),
    ("[expect]\nwhatever = 1", "expect.whatever: unknown field"),
    ("[plant]\ncompliance_ul_per_mmhg = \"soft\"", "plant.compliance_ul_per_mmhg: expected a"),
    ("[plant]\nsteps_per_stroke = 2.5", "plant.steps_per_stroke: expected an integer"),
    ("[programming]\nrate_ml_per_h = 0",
     "programming.rate_ml_per_h: expected a number 0 < x ≤ 10000, got 0"),
    ("[programming]\nrate_ml_per_h = \"10 mL/h\"", "programming.rate_ml_per_h: expected a number"),
    ("[[steps]]\nrepeat = 0", "steps[0].repeat: expected an integer 1 ≤ n ≤ 1000, got 0"),
    ("[[steps]]\nbag_hours = 24\n[[steps]]\npause_min = -5", "steps[1].pause_min: expected a"),
    ("[colour]\nx = 1", "colour: unknown field"),
])
def test_invalid_scenario_names_the_field(text: str, field: str) -> None:
    base = GOOD
    if text.startswith("[run]") or "[expect]" in text or "[plant]" in text:
        pass
    with pytest.raises(ScenarioError) as e:
        scenario.loads(base + text)
    assert str(e.value).startswith(field.split(":")[0] + ":"), str(e.value)
    assert field in str(e.value)


def test_invalid_run_section_and_missing_name() -> None:
    with pytest.raises(ScenarioError,
                       match=r"^run.hours: expected a number 0 < x ≤ 2400, got 'long'"):
        scenario.loads(GOOD.replace("hours = 1.0", 'hours = "long"'))
    with pytest.raises(ScenarioError,
                       match=r"^run.start_ticks: expected an integer 0 ≤ n ≤ 1073741823"):
        scenario.loads(GOOD.replace("seed = 1", "start_ticks = %d" % (1 << 30)))
    with pytest.raises(ScenarioError, match=r"^name: missing"):
        scenario.loads(GOOD.replace('name = "adult-24h-bag"', ""))
    with pytest.raises(ScenarioError, match=r"^prescription.bag_hours: missing"):
        scenario.loads(GOOD.replace("bag_hours = 24", ""))
    with pytest.raises(ScenarioError, match="not valid TOML"):
        scenario.loads("name = ")


def build_program(sc: Scenario, pid: int, step: int = 0) -> tuple[Any, Any]:
    """Bag `step` programmed as the runner does it, through a pump's door (PROPOSE, then
    CONFIRM with the echo): (the pump's Program, None) or (None, the rejection code)."""
    hal = FakeHal(tmpdir("sim-program"))
    ctl = Controller(hal)
    ctl.boot()
    door = Commands(ctl)
    args = proposal_args(sc, step)
    if isinstance(args, str):
        return None, args
    got = door.execute("PROPOSE", args, CLINICIAN, pid)
    if not isinstance(got, str):
        got = door.execute("CONFIRM", {"echo": got["echo"]}, CLINICIAN, pid)
    if isinstance(got, str):
        return None, got
    return ctl.program, None


@pytest.mark.parametrize("hours,rate_ul_per_h,vtbi_ul", [(24, 10000, 240000),
                                                        (48, 5000, 240000),
                                                        (72, 3300, 240000),
                                                        (96, 2500, 240000),
                                                        (168, 600, 100800)])
def test_program_from_the_label_table(hours: int, rate_ul_per_h: int, vtbi_ul: int) -> None:
    sc = scenario.loads(GOOD.replace("bag_hours = 24", "bag_hours = %d" % hours))
    prog, code = build_program(sc, 7)
    assert code is None and prog is not None
    assert (prog.pid, prog.rate_ul_per_h, prog.vtbi_nl) == (7, rate_ul_per_h, vtbi_ul * 1000)
    bag = sc.bags[0]
    # the bag is made for the label's rate: dose/day = rate x 24 h x concentration (the
    # older 72 h bag's 3.3 mL/h x 72 h is 1 % short of its 240 mL)
    assert bag.concentration_ug_per_ml == pytest.approx(28.0 / (24 * rate_ul_per_h / 1000))
    assert bag.fill_ml == pytest.approx(vtbi_ul / 1000 + 30.0)


def test_keyed_values_go_through_the_firmware_checks() -> None:
    """The operator's keyed rate, unit and VTBI reach the pump's own propose/confirm."""
    for keyed, want in (("rate_ml_per_h = 100.0\nvtbi_ml = 240.0", "RATE_VOLUME_MISMATCH"),
                        ("rate_ml_per_h = 1000.0", "RATE_VOLUME_MISMATCH"),
                        ("rate_ml_per_h = 240.0", "RATE_VOLUME_MISMATCH"),
                        ("rate_unit = \"mL/day\"\nrate_ml_per_h = 240.0", "UNIT_REJECTED"),
                        ("vtbi_ml = 24.0", "RATE_VOLUME_MISMATCH")):
        sc = scenario.loads(GOOD + "[programming]\n" + keyed + "\n")
        prog, code = build_program(sc, 1)
        assert prog is None and code == want, keyed
    sc = scenario.loads(GOOD + "[programming]\nrate_ml_per_h = 10.0\nvtbi_ml = 240.0\n")
    prog, code = build_program(sc, 1)
    assert code is None and prog is not None and prog.rate_ul_per_h == 10000
    assert prog.conc_pg_per_ml == 116667 and prog.dose_ng_per_day == 28000


def test_concentration_error_and_bsa_dosing() -> None:
    sc = scenario.loads(GOOD.replace("drug =", "prepared_concentration_ug_per_ml = 1.1667\n"
                                              "drug ="))
    assert sc.bags[0].prepared_concentration_ug_per_ml == pytest.approx(1.1667)
    assert sc.bags[0].concentration_ug_per_ml == pytest.approx(28.0 / 240.0)
    child = GOOD.replace("weight_kg = 70.0", "weight_kg = 20.0\nheight_cm = 115.0").replace(
        "dose_ug_per_day = 28.0", "dose_ug_per_m2_per_day = 15.0\nmax_dose_ug_per_day = 28.0")
    sc = scenario.loads(child)
    assert sc.bags[0].dose_ug_per_day == pytest.approx(15.0 * (20 * 115 / 3600) ** 0.5)


def test_treatment_cycle_steps_expand_into_bags() -> None:
    text = GOOD.replace("hours = 1.0\n", "") + """
[[steps]]
dose_ug_per_day = 9.0
repeat = 7
pause_min = 15
[[steps]]
dose_ug_per_day = 28.0
bag_hours = 48
repeat = 3
interruption_h = 6
"""
    sc = scenario.loads(text)
    assert len(sc.bags) == 10
    assert [b.gap_ms for b in sc.bags[:3]] == [0, 900000, 900000]
    assert sc.bags[7].gap_ms == 600000 + 6 * 3600000 and sc.bags[8].gap_ms == 600000
    assert sc.bags[0].dose_ug_per_day == 9.0 and sc.bags[9].dose_ug_per_day == 28.0
    assert sc.bags[9].rate_ml_per_h == 5.0
    assert sc.hours >= 7 * 24 + 3 * 48 + 6
    prog, _ = build_program(sc, 9, 9)
    assert prog is not None and prog.rate_ul_per_h == 5000
    assert prescribed_dose_ug(sc, 24.0) == pytest.approx(9.0)


def test_a_cycle_runs_bag_after_bag(tmp_path) -> None:
    from sim import runner

    # a bare mechanism cycle (no patient weight: rate/VTBI programs), short bags
    text = GOOD.replace("hours = 1.0\n", "").replace("weight_kg = 70.0", "") + """
[[steps]]
dose_ug_per_day = 9.0
bag_hours = 24
vtbi_ml = 5.0
rate_ml_per_h = 10.0
repeat = 3
pause_min = 30
[expect]
final_state = "COMPLETE"
no_alarms_except = ["INFUSION_COMPLETE"]
"""
    res = runner.run_scenario(scenario.loads(text), str(tmp_path))
    assert res["bags_completed"] == 3 and res["counted_ml"] == 15.0
    assert res["allowed_ml"] == 15.0
    assert [a["code"] for a in res["alarms"]] == ["INFUSION_COMPLETE"] * 3
    t = [a["t_s"] for a in res["alarms"]]
    assert t[1] - t[0] == pytest.approx(1800 + 1800, abs=1)
    assert runner.passed(res)


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return str(p)


def test_cli_exit_codes(tmp_path, capsys) -> None:
    ok = _write(tmp_path, GOOD + '[expect]\nfinal_state = "RUNNING"\n')
    assert cli.main(["run", ok]) == 0
    assert "adult-24h-bag: ok" in capsys.readouterr().out
    assert cli.main(["run", ok, "--json", "--out", str(tmp_path / "out")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["final_state"] == "RUNNING" and res["trace_file"].endswith("trace.csv")
    assert (tmp_path / "out" / "adult-24h-bag" / "result.json").exists()
    bad = _write(tmp_path, GOOD + '[expect]\nfinal_state = "COMPLETE"\n')
    assert cli.main(["run", bad]) == 1
    assert "FAIL" in capsys.readouterr().out
    invalid = _write(tmp_path, GOOD + '[[faults]]\nat_h = "soon"\nkind = "occlusion"\n')
    assert cli.main(["run", invalid]) == 2
    err = capsys.readouterr().err
    assert "faults[0].at_h: expected a number 0 ≤ x ≤ 2400, got 'soon'" in err
    assert cli.main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
