"""`pumpsim study`: a small sample of the Monte Carlo campaign through the real firmware.
PR-1 (runaway x2/x10/x100, controller x2, drift +10 %, free flow), PR-2 (false alarms over
nominal pump-days), PR-3 (occlusion latency and bolus), SR-10 (sensor dropout); and the
campaign machinery: Dask on loopback, the same table on one worker or many, streaming
aggregates, checkpoint and --resume, the progress line. The full campaign is
`pumpsim study --full` (docs/study.md)."""

from __future__ import annotations

import io
import json
import random
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import campaign, cli, study, worker

SEEDS = 3           # per cell and rate: a sample, not the campaign
INPROC = campaign.IN_PROCESS


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("study")
    res = study.run_study(list(study.CELLS), [10.0, 5.0, 0.6], SEEDS, days=3.0,
                          master_seed=11, out=str(out), plots=True, scheduler=INPROC)
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


def test_pr2_nominal_pump_days_as_asked_no_false_alarm(small: dict) -> None:
    n = small["summary"]["nominal"]
    # --days 3 over three rates: one pump-day each (a whole 24 h bag at 10 mL/h, a day of
    # the 48 h and of the 7-day bag), not a whole bag of each (10 days)
    assert n["runs"] == 3 and n["whole_bags"] == 1
    assert abs(n["pump_days"] - 3.0) < 0.02, n
    assert n["false_alarms"] == 0 and n["completed"] == n["whole_bags"] and n["failed"] == 0
    # no fault cell alarmed before its fault either
    assert all(c["early_alarms"] == 0 for c in small["summary"]["cells"])
    assert small["summary"]["passed"]


def test_outputs_written(small: dict) -> None:
    out = small["out"]
    data = json.loads((out / "study.json").read_text())
    s = data["summary"]
    assert s["runs"] == len(study.CELLS) * 3 * SEEDS + 3
    # per-run rows only for the extremes (and failures: none here), not every run's
    assert "runs" not in data
    assert all(1 <= len(c["kept"]) <= 3 for c in s["cells"])
    assert all(r["fault_excess_ml"] == c["fault_excess_ml"]["max"]
               for c in s["cells"] for r in c["kept"][:1])
    md = (out / "study.md").read_text()
    assert "| runaway-x100 | 0.6 |" in md and "false-alarm campaign" in md
    assert "detection latency, minutes: max / p99 / median" in md
    for f in ("study-excess.png", "study-latency.png"):
        assert (out / f).stat().st_size > 1000


def test_plan_is_the_same_for_the_same_master_seed() -> None:
    plan = study.groups(["runaway-x10"], [0.6], 4, 1.0)
    a = [(b.id, b.payload["start"], b.payload["stop"]) for b in study.batches(plan, 3)]
    b = [(b.id, b.payload["start"], b.payload["stop"]) for b in study.batches(plan, 3)]
    assert a == b
    assert [study.draw(3, 0, i) for i in range(4)] == [study.draw(3, 0, i) for i in range(4)]
    assert study.draw(3, 0, 0) != study.draw(4, 0, 0)


def _table(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without what depends on the machine (times, workers)."""
    return {k: v for k, v in summary.items() if k not in ("wall_s", "cpu_s", "campaign")}


def _listening(addrs: set[str], stop: threading.Event) -> None:
    """Collect the addresses this process and its children listen on, until stop."""
    me = psutil.Process()
    while not stop.is_set():
        for p in [me] + me.children(recursive=True):
            try:
                addrs.update(c.laddr.ip for c in p.net_connections(kind="inet")
                             if c.status == psutil.CONN_LISTEN)
            except psutil.Error:
                pass
        stop.wait(0.1)


def test_same_master_seed_same_table_on_one_worker_or_many(tmp_path: Path) -> None:
    """The same campaign on the default LocalCluster of two workers (loopback only: every
    socket the cluster listens on is 127.0.0.1), on an existing one-worker cluster given by
    --scheduler, and in this process gives the same table; small batches so that they
    interleave."""
    from distributed import LocalCluster

    args = (["runaway-x10", "occlusion"], [10.0, 0.6], 3, 1.5)
    kw: dict[str, Any] = {"master_seed": 7, "plots": False, "batch_wakes": 3000.0}
    runs = {}
    addrs: set[str] = set()
    stop = threading.Event()
    th = threading.Thread(target=_listening, args=(addrs, stop), daemon=True)
    th.start()
    try:
        runs["two"] = study.run_study(*args, jobs=2, out=str(tmp_path / "two"), **kw)["summary"]
    finally:
        stop.set()
        th.join()
    assert addrs == {"127.0.0.1"}
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        runs["one"] = study.run_study(*args, scheduler=cluster.scheduler_address,
                                      out=str(tmp_path / "one"), **kw)["summary"]
    runs["here"] = study.run_study(*args, scheduler=INPROC, out=str(tmp_path / "here"),
                                   **kw)["summary"]
    assert runs["two"]["campaign"]["address"].startswith("tcp://127.0.0.1:")
    assert runs["two"]["campaign"]["workers"] == 2
    assert runs["one"]["campaign"]["workers"] == 1
    assert runs["one"]["campaign"]["batches"] > 4
    assert _table(runs["one"]) == _table(runs["two"]) == _table(runs["here"])
    md = [(tmp_path / n / "study.md").read_text().rsplit("\n\n", 1)[0] for n in runs]
    assert md[0] == md[1] == md[2]


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(campaign, "CONNECT_TIMEOUT", "1s")
    rc = cli.main(["study", "--cells", "free-flow", "--rates", "10", "--seeds", "1",
                   "--days", "0", "--scheduler", "tcp://127.0.0.1:9", "--no-plots",
                   "--out", str(tmp_path)])
    assert rc == 2
    assert "cannot reach it" in capsys.readouterr().err


def test_resume_runs_only_the_unfinished_batches(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    args = (["runaway-x100"], [10.0, 0.6], 4, 1.0)
    kw: dict[str, Any] = {"master_seed": 3, "plots": False, "scheduler": INPROC,
                          "batch_wakes": 2000.0}
    whole = study.run_study(*args, out=str(tmp_path / "whole"), **kw)["summary"]
    ran: list[tuple[int, int]] = []
    real = study.work

    def work(payload: dict[str, Any]) -> dict[str, Any]:
        if len(ran) == 3 and not payload.get("resumed"):
            raise KeyboardInterrupt          # the campaign is interrupted here
        ran.append((payload["group"]["g"], payload["start"]))
        return real(payload)

    monkeypatch.setattr(study, "work", work)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        study.run_study(*args, out=str(out), **kw)
    first = list(ran)
    assert len(first) == 3
    lines = (out / campaign.CHECKPOINT).read_text().splitlines()
    assert len(lines) == 1 + 3                       # the key, then one line per batch
    ran.clear()
    monkeypatch.setattr(study, "work", lambda p: work({**p, "resumed": True}))
    res = study.run_study(*args, out=str(out), resume=True, **kw)["summary"]
    assert not set(first) & set(ran)                 # nothing done twice
    assert len(first) + len(ran) == res["campaign"]["batches"]
    assert res["campaign"]["resumed_batches"] == 3
    assert _table(res) == _table(whole)


def test_resume_refuses_another_campaigns_checkpoint(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    base = ["study", "--cells", "runaway-x100", "--rates", "0.6", "--days", "0",
            "--scheduler", "none", "--no-plots", "--out", str(tmp_path)]
    assert cli.main(base + ["--seeds", "1"]) == 0
    assert cli.main(base + ["--seeds", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "another campaign" in err and "seeds_per_cell=1" in err


def test_resume_refuses_a_checkpoint_made_on_other_firmware(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A campaign's table comes from one firmware: a firmware change between invocations
    (the checkpoint's hash differs) stops --resume with the reason, and the checkpoint stays
    as it was."""
    base = ["study", "--cells", "runaway-x100", "--rates", "0.6", "--days", "0", "--seeds", "1",
            "--scheduler", "none", "--no-plots", "--out", str(tmp_path)]
    assert cli.main(base) == 0
    ck = tmp_path / "checkpoint.jsonl"
    lines = ck.read_text().split("\n")
    head = json.loads(lines[0])
    assert len(head["campaign"]["firmware_sha256"]) == 64
    head["campaign"]["firmware_sha256"] = "0" * 64
    ck.write_text("\n".join([json.dumps(head)] + lines[1:]))
    before = ck.read_bytes()
    assert cli.main(base + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "the firmware changed" in err and "0000000000000000" in err
    assert ck.read_bytes() == before


def test_progress_line_shows_pump_days_and_eta() -> None:
    stream = io.StringIO()
    study.run_study([], [0.6], 1, 1.0, scheduler=INPROC, plots=False, stream=stream)
    text = stream.getvalue()
    assert "ETA" in text and "pump-days" in text and "100%" in text


def test_rows_stream_to_a_file(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    res = study.run_study(["free-flow"], [10.0], 3, 0.0, scheduler=INPROC, plots=False,
                          rows_file=str(rows))
    lines = [json.loads(x) for x in rows.read_text().splitlines()]
    assert len(lines) == res["summary"]["runs"] == 3
    assert {r["cell"] for r in lines} == {"free-flow"}


_ROW = st.fixed_dictionaries({
    "excess": st.floats(0.0, 0.2), "lat": st.one_of(st.none(), st.floats(0.0, 3600.0)),
    "bolus": st.floats(0.0, 0.1), "early": st.booleans()})


@settings(max_examples=40, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_aggregates_fold_the_same_in_any_order_and_split(rows: list[dict[str, Any]],
                                                         rnd: random.Random) -> None:
    g = {"g": 0, "part": "fault", "cell": "occlusion", "rate": 0.6, "n": len(rows)}
    full = [{"part": "fault", "cell": "occlusion", "rate": 0.6, "g": 0, "i": i, "seed": i,
             "onset_h": 1.0, "sim_ms": 1000 * i, "run_ms": 500 * i, "final_state": "ALARM",
             "alarms": ["OCCLUSION"], "excess_ml": r["excess"],
             "fault_excess_ml": r["excess"], "bolus_ml": r["bolus"],
             "detected": r["lat"] is not None, "latency_s": r["lat"],
             "early": ["OCCLUSION"] if r["early"] else []} for i, r in enumerate(rows)]
    one = study.new_agg(g)
    for r in full:
        study.add_row(one, g, r)
    shuffled = list(full)
    rnd.shuffle(shuffled)
    parts = []
    while shuffled:
        k = rnd.randint(1, len(shuffled))
        p = study.new_agg(g)
        for r in shuffled[:k]:
            study.add_row(p, g, r)
        parts.append(p)
        shuffled = shuffled[k:]
    other = study.new_agg(g)
    for p in parts:
        study.merge(other, json.loads(json.dumps(p)))     # as read back from a checkpoint
    assert json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)
    assert len(other["kept"]) <= study.KEEP_FAILED


def test_quantiles_never_below_the_true_value() -> None:
    h = study._hist()
    values = [0.0, 0.001, 0.01, 0.02, 0.05, 0.05, 0.07, 0.09]
    for v in values:
        study.hist_add(h, v)
    med = study.hist_quantile(h, 0.5, max(values))
    assert med is not None and 0.02 <= med <= 0.02 * 1.0101
    assert study.hist_quantile(h, 0.99, max(values)) == 0.09
    assert study.hist_quantile(study._hist(), 0.5, None) is None


def test_cli_study_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["study", "--seeds", "1", "--days", "0", "--cells", "runaway-x100",
                   "--rates", "0.6", "--scheduler", "none", "--no-plots", "--out",
                   str(tmp_path)])
    assert rc == 0
    assert "runaway-x100 | 0.6 | 1 | 1 |" in capsys.readouterr().out
    assert cli.main(["study", "--cells", "nonsense", "--out", str(tmp_path)]) == 2
    assert cli.main(["study", "--rates", "7", "--out", str(tmp_path)]) == 2
    assert cli.main(["study", "--cells", "none", "--days", "0", "--out", str(tmp_path)]) == 2
    assert cli.main(["study", "--jobs", "0", "--out", str(tmp_path)]) == 2


def test_cli_study_help_lists_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["study", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "drift+10%" in out and "occlusion" in out and "--scheduler" in out
    assert "--resume" in out


@pytest.mark.parametrize("rate,i", [(10.0, 12), (10.0, 54), (5.0, 4), (5.0, 35)])
def test_sr10_a_rotation_sensor_gone_silent_is_a_sensor_fault(rate: float, i: int) -> None:
    """SR-10: a rotation sensor that stops (sensor-dropout cell, full campaign's master seed)
    raises SENSOR_FAULT, also in the runs where the under-infusion CUSUMs already stood near
    their limits from ordinary jitter when the pulses stopped (these four once ended in
    UNDER_INFUSION: the pump stopped, but told the nurse the wrong fault)."""
    plan = study.groups(list(study.CELLS), [10.0, 5.0, 0.6], 100, 0)
    grp = next(p for p in plan if p.get("cell") == "sensor-dropout" and p["rate"] == rate)
    row = worker.run_spec(study.spec(5, grp, i))
    assert row["alarms"] == ["SENSOR_FAULT"] and row["detected"]
    assert row["fault_excess_ml"] <= 0.005


def test_the_tables_show_only_what_the_study_ran(tmp_path: Path) -> None:
    """A false-alarm campaign alone prints no empty fault-cell table; fault cells alone no
    false-alarm table."""
    nominal = study.run_study([], [10.0], 1, 0.05, scheduler=INPROC, plots=False,
                              out=str(tmp_path / "n"))["summary"]
    cells = study.run_study(["free-flow"], [10.0], 1, 0.0, scheduler=INPROC, plots=False,
                            out=str(tmp_path / "c"))["summary"]
    md_n = study.format_tables(nominal)
    md_c = study.format_tables(cells)
    assert md_n.startswith("| false-alarm campaign |") and "| cell |" not in md_n
    assert md_c.startswith("| cell |") and "false-alarm" not in md_c
    assert (tmp_path / "n" / "study.md").read_text().startswith("| false-alarm campaign |")
