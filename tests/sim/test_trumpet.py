"""PR-6 analysis (sim/trumpet.py): the IEC 60601-2-24 trumpet-curve arithmetic on synthetic
traces with known answers, and the analysis run end to end on the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sim import trumpet
from sim.trumpet import TrumpetError, from_trace, trumpet_curve

T = np.arange(0.0, 7200.0 + 1, 30.0)          # 2 h sampled every 30 s


def uniform(rate_ml_per_h: float, factor: float = 1.0) -> np.ndarray:
    return rate_ml_per_h * factor * T / 3600.0


def test_pr6_uniform_trace_has_zero_error() -> None:
    tr = trumpet_curve(T, uniform(10.0), 10.0)
    assert tr.mean_error_pct == 0.0
    assert [w.window_min for w in tr.windows] == [2, 5, 11, 19, 31]
    for w in tr.windows:
        assert w.max_pct == 0.0 and w.min_pct == 0.0


def test_pr6_window_positions_follow_iec() -> None:
    # k = T/S - m + 1 over the 60-min analysis period with S = 0.5 min: 120 - 2P + 1
    tr = trumpet_curve(T, uniform(0.6), 0.6)
    assert [w.positions for w in tr.windows] == [117, 111, 99, 83, 59]


def test_pr6_constant_offset_is_the_same_error_in_every_window() -> None:
    tr = trumpet_curve(T, uniform(10.0, 1.01), 10.0)
    assert tr.mean_error_pct == pytest.approx(1.0)
    for w in tr.windows:
        assert w.max_pct == pytest.approx(1.0) and w.min_pct == pytest.approx(1.0)


def test_pr6_known_step_gives_known_max_and_min() -> None:
    # 0.05 mL arrives at once at 90 min on a 10 mL/h line. A P-minute window holds
    # 10 * P / 60 mL, so a window containing the step reads +0.05 / (P/6) * 100 % and one
    # without it reads 0 %. Every 31-min window (start 60..89 min) contains it.
    v = uniform(10.0) + np.where(T >= 5400.0, 0.05, 0.0)
    tr = trumpet_curve(T, v, 10.0)
    for p in (2, 5, 11, 19):
        w = tr.window(p)
        assert w.max_pct == pytest.approx(100.0 * 0.05 / (10.0 * p / 60.0))
        assert w.min_pct == pytest.approx(0.0, abs=1e-9)
    w31 = tr.window(31)
    assert w31.max_pct == pytest.approx(100.0 * 0.05 / (10.0 * 31 / 60.0))
    assert w31.min_pct == pytest.approx(w31.max_pct)
    assert tr.mean_error_pct == pytest.approx(0.5)          # 0.05 mL over 10 mL


def test_pr6_a_step_in_the_first_hour_is_not_analysed() -> None:
    v = uniform(10.0) + np.where(T >= 1800.0, 0.5, 0.0)
    tr = trumpet_curve(T, v, 10.0)
    assert all(w.max_pct == 0.0 and w.min_pct == 0.0 for w in tr.windows)


def test_pr6_stopped_window_reads_minus_100() -> None:
    # delivery stops for 3 min at 100 min: the 2-min windows inside the stop read -100 %
    stop0, stop1 = 6000.0, 6180.0
    eff = np.clip(T, None, stop0) + np.clip(T - stop1, 0.0, None)
    tr = trumpet_curve(T, 10.0 * eff / 3600.0, 10.0)
    assert tr.window(2).min_pct == pytest.approx(-100.0)
    assert tr.window(5).min_pct == pytest.approx(-60.0)       # 3 of 5 minutes missing


def test_pr6_checks_name_the_requirement() -> None:
    good = trumpet_curve(T, uniform(10.0, 1.015), 10.0)
    bad = trumpet_curve(T, uniform(10.0, 1.03), 10.0)
    (c_good,) = trumpet.pr6_checks(good)
    (c_bad,) = trumpet.pr6_checks(bad)
    assert c_good["window_min"] == 5 and c_good["limit_pct"] == 2.0 and c_good["met"]
    assert not c_bad["met"] and c_bad["worst_pct"] == pytest.approx(3.0)
    slow = trumpet_curve(T, uniform(0.6, 1.04), 0.6)
    (c_slow,) = trumpet.pr6_checks(slow)
    assert c_slow["window_min"] == 31 and c_slow["limit_pct"] == 5.0 and c_slow["met"]
    assert trumpet.pr6_checks(trumpet_curve(T, uniform(5.0), 5.0)) == []


def test_trace_too_short_or_too_coarse_is_an_error() -> None:
    short = T[T <= 5400.0]
    with pytest.raises(TrumpetError, match="needs"):
        trumpet_curve(short, uniform(10.0)[: short.size], 10.0)
    coarse = np.arange(0.0, 7201.0, 60.0)
    with pytest.raises(TrumpetError, match="sample_s"):
        trumpet_curve(coarse, 10.0 * coarse / 3600.0, 10.0)
    with pytest.raises(TrumpetError, match="rate"):
        trumpet_curve(T, uniform(10.0), 0.0)


def _write_trace(path: Path, rows: list[tuple[float, float, float]]) -> None:
    lines = ["t_s,state,delivered_ml,counted_ml,allowed_ml,pressure_mmhg,alarm"]
    for t, d, a in rows:
        lines.append("%.3f,RUNNING,%.6f,%.6f,%.6f,8," % (t, d, a, a))
    path.write_text("\n".join(lines) + "\n")


def test_from_trace_takes_the_rate_from_the_programmed_line(tmp_path: Path) -> None:
    # a trace as the runner writes it: samples every 30 s plus extra rows at state changes
    # (here duplicated at a sample instant and between samples)
    rows = [(t, 0.6 * 1.02 * t / 3600, 0.6 * t / 3600) for t in T]
    rows.insert(200, rows[199])
    rows.insert(150, (4485.0, 0.6 * 1.02 * 4485.0 / 3600, 0.6 * 4485.0 / 3600))
    p = tmp_path / "trace.csv"
    _write_trace(p, rows)
    tr = from_trace(p)
    assert tr.rate_ml_per_h == pytest.approx(0.6)
    assert tr.mean_error_pct == pytest.approx(2.0)
    res = trumpet.from_result({"scenario": "x", "trace_file": str(p)}, 0.6)
    assert res.window(31).max_pct == pytest.approx(2.0)


def test_write_trumpet_makes_json_and_png(tmp_path: Path) -> None:
    tr = trumpet_curve(T, uniform(10.0, 1.01), 10.0)
    files = trumpet.write_trumpet(tr, tmp_path)
    data = json.loads(Path(files["json"]).read_text())
    assert data["mean_error_pct"] == pytest.approx(1.0)
    assert len(data["windows"]) == 5 and data["targets"][0]["requirement"] == "PR-6"
    png = Path(files["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "mean error A: +1.000 %" in trumpet.format_table(tr)


def test_pr6_trumpet_on_the_simulator_ideal_plant() -> None:
    """End to end through the firmware: with no stroke or cassette variation the delivery
    schedule itself adds no error (continuous motion, integer-exact segments)."""
    from sim.suite import run_trumpet

    for rate in (10.0, 0.6):
        tr, result = run_trumpet(rate, 2.0, None, seed=1, ideal=True)
        assert result["accepted"] and result["final_state"] == "RUNNING"
        for w in tr.windows:
            assert abs(w.max_pct) < 0.05 and abs(w.min_pct) < 0.05, (rate, w)


def test_pumpsim_trumpet_out_writes_into_that_folder(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`pumpsim trumpet --rate 10 --out DIR`: the plot, the figures, the trace and the result
    in DIR itself, as the help says (no subfolder)."""
    from sim import cli

    out = tmp_path / "tr"
    assert cli.main(["trumpet", "--rate", "10", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["journal.bin", "result.json", "trace.csv", "trumpet.json", "trumpet.png"]
    assert "plot: %s" % (out / "trumpet.png") in capsys.readouterr().out
    res = json.loads((out / "result.json").read_text())
    assert res["trace_file"] == str(out / "trace.csv")


@pytest.mark.parametrize("argv", [["--rate", "nan"], ["--rate", "10", "--hours", "1e9"],
                                  ["--rate", "10", "--hours", "1"], ["--rate", "inf"],
                                  ["--rate", "10", "--seed", "-3"], ["--rate", ""]])
def test_sr13_pumpsim_trumpet_bad_numbers_exit_2(tmp_path: Path, argv: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from sim import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["trumpet", *argv, "--out", str(tmp_path / "tr")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and argv[-2] in err
    assert not (tmp_path / "tr").exists()
