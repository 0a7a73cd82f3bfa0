"""tools/compare_runs.py: how docs/performance.md shows a change alters no run. Two runs of
one scenario compare equal; a changed trace byte, result field or missing run is reported
and exits 1; a folder with no run exits 2."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from sim import runner, scenario

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "compare_runs.py"
FILE = REPO / "scenarios" / "runaway-motor-10x-24h-bag.toml"


def _compare(new: Path, base: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), str(new), str(base)],
                          capture_output=True, text=True, check=False)


def test_two_runs_of_a_scenario_are_the_same_and_a_change_is_found(tmp_path: Path) -> None:
    sc = scenario.load(str(FILE))
    runner.run_scenario(sc, str(tmp_path / "a"))
    runner.run_scenario(sc, str(tmp_path / "b"))
    p = _compare(tmp_path / "b", tmp_path / "a")
    assert p.returncode == 0 and "1 scenarios compared, 0 differences" in p.stdout, p.stdout
    run_b = tmp_path / "b" / sc.name
    trace = run_b / "trace.csv"
    trace.write_bytes(trace.read_bytes().replace(b",", b";", 1))
    res = json.loads((run_b / "result.json").read_text())
    res["excess_ml"] += 0.001
    res["wall_s"] += 1.0                       # volatile: not a difference
    (run_b / "result.json").write_text(json.dumps(res))
    p = _compare(tmp_path / "b", tmp_path / "a")
    assert p.returncode == 1
    assert "%s: trace.csv differs" % sc.name in p.stdout
    assert "%s: result excess_ml:" % sc.name in p.stdout and "wall_s" not in p.stdout
    assert "2 differences" in p.stdout
    shutil.copytree(run_b, tmp_path / "a" / "another")
    p = _compare(tmp_path / "b", tmp_path / "a")
    assert p.returncode == 1 and "missing in %s: another" % (tmp_path / "b") in p.stdout


def test_a_folder_without_runs_is_refused(tmp_path: Path) -> None:
    p = _compare(tmp_path, tmp_path)
    assert p.returncode == 2 and "no run folder" in p.stderr
