"""Nominal runs with the firmware in the loop: the label's bags deliver their volume (plant
truth) and end COMPLETE with no other alarm; runs are deterministic; ticks wrap (SR-12)."""

from __future__ import annotations

import json

import pytest

from sim import runner, scenario

BAG = """
name = "nominal-{hours}h"
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
dose_ug_per_day = 28.0
bag_hours = {hours}
[run]
seed = {seed}
{extra}
[expect]
final_state = "COMPLETE"
no_alarms_except = ["INFUSION_COMPLETE"]
"""


def _sc(hours: int, seed: int = 1, extra: str = "") -> scenario.Scenario:
    return scenario.loads(BAG.format(hours=hours, seed=seed, extra=extra))


@pytest.mark.parametrize("hours,rate_ml_per_h,volume_ml", [(24, 10.0, 240.0),
                                                           (48, 5.0, 240.0),
                                                           (168, 0.6, 100.8)])
def test_sr4_nominal_bag_delivers_its_volume_and_completes(hours: int, rate_ml_per_h: float,
                                                          volume_ml: float) -> None:
    sc = _sc(hours)
    assert sc.bags[0].rate_ml_per_h == rate_ml_per_h and sc.bags[0].vtbi_ml == volume_ml
    res = runner.run_scenario(sc)
    assert res["accepted"] and res["reject_code"] is None
    assert res["final_state"] == "COMPLETE"
    assert [a["code"] for a in res["alarms"]] == ["INFUSION_COMPLETE"]
    assert abs(res["delivered_ml"] - volume_ml) <= 0.02 * volume_ml
    assert res["counted_ml"] == volume_ml             # the firmware's count is exact
    assert res["allowed_ml"] == volume_ml
    t_complete = res["alarms"][0]["t_s"] / 3600.0
    assert abs(t_complete - volume_ml / rate_ml_per_h) < 0.05
    assert runner.passed(res)
    assert res["dose_ug"] == pytest.approx(28.0 * hours / 24.0, rel=0.02)
    assert res["prescribed_dose_ug"] == pytest.approx(28.0 * hours / 24.0)


def test_ideal_plant_delivers_exactly_what_the_firmware_counts() -> None:
    res = runner.run_scenario(_sc(24, extra="[plant]\nideal = true"))
    assert res["delivered_ml"] == pytest.approx(240.0, abs=1e-6)
    assert res["excess_ml"] < 0.11        # at most the running segment's head start


def test_same_scenario_and_seed_give_identical_json(tmp_path) -> None:
    sc = _sc(24, seed=5, extra="[[faults]]\nat_h = 3.0\nkind = \"occlusion\"\nduration_s = 900")
    a = runner.run_scenario(sc, str(tmp_path / "a"))
    b = runner.run_scenario(_sc(24, seed=5, extra="[[faults]]\nat_h = 3.0\nkind = \"occlusion\"\n"
                                                  "duration_s = 900"), str(tmp_path / "a"))
    for r in (a, b):
        r.pop("wall_s")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    other = runner.run_scenario(_sc(24, seed=6))
    assert other["delivered_ml"] != a["delivered_ml"]


def test_sr12_run_starting_near_the_tick_wrap_crosses_it() -> None:
    start = (1 << 30) - 600000           # ten minutes before the wrap
    res = runner.run_scenario(_sc(24, extra="hours = 25.0\nstart_ticks = %d" % start))
    assert res["ticks_wraps"] == 1
    assert res["final_state"] == "COMPLETE"
    assert [a["code"] for a in res["alarms"]] == ["INFUSION_COMPLETE"]
    assert abs(res["delivered_ml"] - 240.0) <= 4.8


def test_trace_and_result_files(tmp_path) -> None:
    res = runner.run_scenario(_sc(24, extra="hours = 2.0\nsample_s = 30"), str(tmp_path))
    lines = open(res["trace_file"]).read().splitlines()
    assert lines[0] == runner.TRACE_HEADER
    rows = [r.split(",") for r in lines[1:]]
    samples = [r for r in rows if float(r[0]) % 30 == 0]
    assert len(samples) >= 2 * 120
    assert rows[-1][0] == "7200.000" and rows[-1][1] == "RUNNING"
    assert all(len(r) == 7 for r in rows)
    on_disk = json.load(open(tmp_path / "nominal-24h" / "result.json"))
    assert on_disk == json.loads(json.dumps(res))
    assert open(res["journal_file"], "rb").read(6)[4:] == b"PJ"   # magic 0x4A50 after the seq
