"""The optional faster runtime (PR-4, docs/performance.md): `pumpsim run --interpreter pypy3`
runs the simulator and the firmware on PyPy through sim.worker, and is a runtime for the
simulator only because it gives every bundled scenario the same result, trace, journal and
fault record as CPython, the reference interpreter. Without PyPy installed that test is
skipped and says why (.ci/run installs it); the worker's contract (no tomllib: the scenario
comes parsed) and the refusals are checked on CPython."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from sim import campaign, runner, scenario, worker
from sim.cli import main as pumpsim
from sim.engine import SimError

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))
PYPY = "pypy3"


def _compare_runs() -> ModuleType:
    """tools/compare_runs.py: two folders of runs, compared as docs/performance.md does."""
    spec = importlib.util.spec_from_file_location("compare_runs",
                                                  REPO / "tools" / "compare_runs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which(PYPY) is None,
                    reason="pypy3 is not installed (Debian: apt-get install pypy3; .ci/run "
                           "installs it): the optional runtime is not checked here")
def test_pypy_gives_every_bundled_scenario_the_same_result_trace_and_journal(
        tmp_path: Path) -> None:
    assert len(SCENARIOS) >= 30

    def on_pypy(path: Path) -> dict:
        text = scenario.read(str(path))
        return worker.run_on(PYPY, scenario.tables(text, str(path)), str(path),
                             str(tmp_path / "pypy"))

    with ThreadPoolExecutor(max_workers=2) as pool:      # each run is a child process
        pypy = list(pool.map(on_pypy, SCENARIOS))
    for path in SCENARIOS:
        runner.run_scenario(scenario.load(str(path)), str(tmp_path / "cpython"))
    cmp = _compare_runs()
    assert len(cmp.runs(tmp_path / "pypy")) == len(cmp.runs(tmp_path / "cpython")) \
        == len(SCENARIOS) == len(pypy)
    assert all((tmp_path / "pypy" / r["scenario"] / "journal.bin").exists() for r in pypy)
    assert cmp.differences(tmp_path / "pypy", tmp_path / "cpython") == []


def test_the_worker_needs_no_tomllib_and_gives_run_scenarios_result(
        tmp_path: Path) -> None:
    """sim.worker on an interpreter without tomllib (here CPython with it hidden): the same
    result as run_scenario in this process."""
    path = REPO / "scenarios" / "runaway-motor-10x-24h-bag.toml"
    text = scenario.read(str(path))
    req = json.dumps({"data": scenario.tables(text), "path": str(path), "out": None})
    code = ("import runpy, sys; sys.modules['tomllib'] = None; "
            "runpy.run_module('sim.worker', run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "firmware")]))
    p = subprocess.run([sys.executable, "-c", code], input=req, capture_output=True,
                       text=True, env=env, cwd=tmp_path, check=False)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    ref = runner.run_scenario(scenario.loads(text, str(path)))
    assert {k: v for k, v in got.items() if k != "wall_s"} == \
        {k: v for k, v in ref.items() if k != "wall_s"}
    assert got["alarms"] and got["detection_alarm"] == "OVER_INFUSION"


def test_an_interpreter_that_is_not_there_is_refused_clearly(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = str(REPO / "scenarios" / "runaway-motor-10x-24h-bag.toml")
    assert pumpsim(["run", path, "--interpreter", "no-such-python-here"]) == 2
    err = capsys.readouterr().err
    assert "no-such-python-here: no such interpreter on PATH" in err
    assert "apt-get install pypy3" in err


def test_a_bad_scenario_is_refused_before_any_interpreter_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[prescription]\ndose_ug_per_day = -1\n')
    assert pumpsim(["run", str(bad), "--interpreter", "no-such-python-here"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "no such interpreter" not in err


def test_an_interpreter_that_fails_is_reported_with_its_error(tmp_path: Path) -> None:
    """A Python that cannot run the worker (here: one whose path hides the simulator)."""
    fake = tmp_path / "brokenpy"
    fake.write_text("#!/bin/sh\necho 'ImportError: no module named sim' >&2\nexit 1\n")
    fake.chmod(0o755)
    data = scenario.tables((REPO / "scenarios" / "runaway-motor-10x-24h-bag.toml").read_text())
    with pytest.raises(SimError, match="could not run .*ImportError: no module named sim"):
        worker.run_on(str(fake), data, "x.toml")


def _table(summary: dict) -> dict:
    """A study's summary without what depends on the machine (times, workers)."""
    return {k: v for k, v in summary.items() if k not in ("wall_s", "cpu_s", "campaign")}


@pytest.mark.skipif(shutil.which(PYPY) is None,
                    reason="pypy3 is not installed (Debian: apt-get install pypy3; .ci/run "
                           "installs it): the optional runtime is not checked here")
def test_a_study_on_pypy_gives_cpythons_table_in_process_and_on_a_cluster(
        tmp_path: Path) -> None:
    """The same master seed gives the same table with the runs on PyPy (a kept child per
    worker) as on CPython, in this process and on the two-worker local cluster; the child's
    CPU time is counted."""
    from sim import study

    args = (["runaway-x10", "occlusion", "sensor-dropout"], [10.0, 0.6], 3, 2.0)
    kw: dict = {"master_seed": 3, "plots": False, "batch_wakes": 20000.0}
    ref = study.run_study(*args, scheduler=campaign.IN_PROCESS, out=str(tmp_path / "cpython"),
                          **kw)["summary"]
    here = study.run_study(*args, scheduler=campaign.IN_PROCESS, out=str(tmp_path / "pypy-here"),
                           interpreter=PYPY, **kw)["summary"]
    two = study.run_study(*args, jobs=2, out=str(tmp_path / "pypy-two"), interpreter=PYPY,
                          **kw)["summary"]
    assert two["campaign"]["workers"] == 2 and ref["campaign"]["batches"] > 3
    assert _table(here) == _table(ref) == _table(two)
    assert here["nominal"]["runs"] == ref["nominal"]["runs"] > 0
    # the runs' CPU time is the child's, counted: not the parent's idle wait
    assert here["cpu_s"] > 0.3 * here["wall_s"] > 0


def test_study_refuses_an_interpreter_that_is_not_there(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = pumpsim(["study", "--cells", "free-flow", "--rates", "10", "--seeds", "1", "--days",
                  "0", "--scheduler", "none", "--no-plots", "--out", str(tmp_path),
                  "--interpreter", "no-such-python-here"])
    assert rc == 2
    assert "--interpreter no-such-python-here: no such interpreter" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.jsonl").exists()
