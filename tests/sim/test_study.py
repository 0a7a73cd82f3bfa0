"""`pumpsim study` (issue 5): a small sample of the Monte Carlo campaign through the real
firmware. PR-1 (runaway x2/x10/x100, controller x2, drift +10 %, free flow), PR-2 (false
alarms over nominal bags), PR-3 (occlusion latency and bolus), SR-10 (sensor dropout).
The full campaign is `pumpsim study --full` (docs/study.md)."""

from __future__ import annotations

import json

import pytest

from sim import cli, study

SEEDS = 3           # per cell and rate: a sample, not the campaign


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("study")
    res = study.run_study(list(study.CELLS), [10.0, 5.0, 0.6], SEEDS, days=3.0,
                          master_seed=11, jobs=2, out=str(out), plots=True)
    res["out"] = out
    return res


def _cell(res: dict, name: str, rate: float) -> dict:
    for c in res["summary"]["cells"]:
        if c["cell"] == name and c["rate_ml_per_h"] == rate:
            return c
    raise AssertionError((name, rate))


@pytest.mark.parametrize("rate", [10.0, 5.0, 0.6])
def test_pr1_runaway_excess_within_0_1_ml(small: dict, rate: float) -> None:
    for name in ("runaway-x2", "runaway-x10", "runaway-x100", "free-flow"):
        c = _cell(small, name, rate)
        assert c["detected"] == c["n"] == SEEDS, c
        assert c["fault_excess_ml"]["max"] <= 0.1, c


@pytest.mark.parametrize("rate", [10.0, 5.0, 0.6])
def test_pr1_controller_x2_and_drift(small: dict, rate: float) -> None:
    c = _cell(small, "controller-x2", rate)
    assert c["detected"] == SEEDS and c["fault_excess_ml"]["max"] <= 0.25, c
    d = _cell(small, "drift+10%", rate)
    assert d["detected"] == SEEDS and d["latency_min"]["max"] <= 60.0, d


@pytest.mark.parametrize("rate", [10.0, 5.0, 0.6])
def test_pr3_occlusion_and_sr10_dropout(small: dict, rate: float) -> None:
    c = _cell(small, "occlusion", rate)
    assert c["detected"] == SEEDS and c["latency_min"]["max"] <= 30.0, c
    assert c["bolus_ml"]["max"] <= 0.05, c
    s = _cell(small, "sensor-dropout", rate)
    assert s["detected"] == SEEDS, s


def test_pr2_nominal_bags_no_false_alarm(small: dict) -> None:
    n = small["summary"]["nominal"]
    assert n["runs"] == 3 and n["pump_days"] > 9.5      # one bag per rate: 1 + 2 + 7 days
    assert n["false_alarms"] == 0 and n["completed"] == n["runs"], n
    # no fault cell alarmed before its fault either
    assert all(c["early_alarms"] == 0 for c in small["summary"]["cells"])
    assert small["summary"]["passed"]


def test_outputs_written(small: dict) -> None:
    out = small["out"]
    data = json.loads((out / "study.json").read_text())
    assert len(data["runs"]) == len(study.CELLS) * 3 * SEEDS + 3
    md = (out / "study.md").read_text()
    assert "| runaway-x100 | 0.6 |" in md and "false-alarm campaign" in md
    for f in ("study-excess.png", "study-latency.png"):
        assert (out / f).stat().st_size > 1000


def test_same_seed_same_table() -> None:
    a = study.plan(["runaway-x10"], [0.6], 4, 1.0, master_seed=3)
    b = study.plan(["runaway-x10"], [0.6], 4, 1.0, master_seed=3)
    assert a == b
    ra = study.run_campaign(a[:2], jobs=1)
    rb = study.run_campaign(b[:2], jobs=1)
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in ra]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in rb]


def test_cli_study_subcommand(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["study", "--seeds", "1", "--days", "0", "--cells", "runaway-x100",
                   "--rates", "0.6", "--jobs", "1", "--no-plots", "--out", str(tmp_path)])
    assert rc == 0
    assert "runaway-x100 | 0.6 | 1 | 1 |" in capsys.readouterr().out
    assert cli.main(["study", "--cells", "nonsense", "--out", str(tmp_path)]) == 2
    assert cli.main(["study", "--rates", "7", "--out", str(tmp_path)]) == 2


def test_cli_study_help_lists_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["study", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "drift+10%" in out and "occlusion" in out
