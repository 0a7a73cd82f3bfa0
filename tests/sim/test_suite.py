"""`pumpsim suite` (sim/suite.py): exit codes for pass / fail / xfail / XPASS / invalid, the
JUnit file, and a report folder whose index lists every scenario and links files that exist.
Tiny scenarios (an hour or two of a 24 h bag), so this stays fast."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sim import cli
from sim.suite import Progress, run_suite

BASE = """
name = "%(name)s"
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
dose_ug_per_day = 28.0
bag_hours = 24
[run]
hours = %(hours)s
seed = 1
[expect]
%(expect)s
"""
PASSING = 'final_state = "RUNNING"\nno_alarms_except = []'
FAILING = 'final_state = "RUNNING"\ndelivered_ml_min = 1000.0'


def write(folder: Path, name: str, expect: str, hours: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / ("%s.toml" % name)
    p.write_text(BASE % {"name": name, "hours": hours, "expect": expect})
    return p


def suite(folder: Path, out: Path, **kw: object) -> tuple[int, str, str]:
    so, se = io.StringIO(), io.StringIO()
    kw.setdefault("jobs", 1)
    kw.setdefault("plots", False)
    rc = run_suite(str(folder), str(out), stdout=so, stderr=se, **kw)  # type: ignore[arg-type]
    return rc, so.getvalue(), se.getvalue()


def test_suite_all_pass_exits_0(tmp_path: Path) -> None:
    write(tmp_path / "sc", "a", PASSING)
    write(tmp_path / "sc", "b", PASSING, hours=0.5)
    rc, out, _ = suite(tmp_path / "sc", tmp_path / "rep")
    assert rc == 0
    assert "2 scenarios: 2 pass, 0 fail" in out
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert [r["scenario"] for r in results] == ["a", "b"]


def test_suite_a_failed_expectation_exits_1_and_says_which(tmp_path: Path) -> None:
    write(tmp_path / "sc", "good", PASSING)
    write(tmp_path / "sc", "short", FAILING)
    rc, out, _ = suite(tmp_path / "sc", tmp_path / "rep")
    assert rc == 1
    assert "FAIL short" in out and "delivered_ml_min: delivered" in out
    assert "mL, expected ≥ 1000 mL" in out


def test_suite_xfail_counts_as_ok_while_it_fails(tmp_path: Path) -> None:
    write(tmp_path / "sc", "known", FAILING + '\nxfail = "a known finding"')
    write(tmp_path / "sc", "good", PASSING)
    rc, out, _ = suite(tmp_path / "sc", tmp_path / "rep")
    assert rc == 0
    assert "1 expected-to-fail" in out and "xfail: a known finding" in out


def test_suite_xfail_that_passes_is_a_finding_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path / "sc", "stale", PASSING + '\nxfail = "was broken"')
    rc, out, _ = suite(tmp_path / "sc", tmp_path / "rep")
    assert rc == 1
    assert "1 unexpectedly pass" in out and "XPASS stale" in out and "remove" in out


def test_suite_invalid_file_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    write(tmp_path / "sc", "good", PASSING)
    bad = write(tmp_path / "sc", "bad", PASSING)
    bad.write_text(bad.read_text().replace("hours = 1.0", 'hours = "soon"'))
    rc, out, err = suite(tmp_path / "sc", tmp_path / "rep")
    assert rc == 2
    assert str(bad) in err and "run.hours" in err
    assert out == "" and not (tmp_path / "rep").exists()       # nothing was run


@pytest.mark.parametrize("case", ["missing", "empty", "duplicate", "toml"])
def test_suite_invalid_folder_exits_2(tmp_path: Path, case: str) -> None:
    sc = tmp_path / "sc"
    if case == "empty":
        sc.mkdir()
    elif case == "duplicate":
        write(sc, "one", PASSING)
        (sc / "two.toml").write_text((sc / "one.toml").read_text())
    elif case == "toml":
        (sc).mkdir()
        (sc / "broken.toml").write_text("name = \n")
    rc, _, err = suite(sc, tmp_path / "rep")
    assert rc == 2
    assert {"missing": "not a folder", "empty": "no *.toml", "duplicate": "also the name",
            "toml": "not valid TOML"}[case] in err


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.refs.append(v)


def test_suite_parallel_report_lists_every_scenario_and_links_existing_files(
        tmp_path: Path) -> None:
    """Through the command line (`pumpsim suite`), two worker processes, plots on."""
    write(tmp_path / "sc", "alpha", PASSING)
    write(tmp_path / "sc", "beta", FAILING + '\nxfail = "demo"', hours=0.5)
    out = tmp_path / "rep"
    junit = tmp_path / "ci" / "junit.xml"
    rc = cli.main(["suite", str(tmp_path / "sc"), "--out", str(out), "--jobs", "2",
                   "--junit", str(junit)])
    assert rc == 0
    page = (out / "index.html").read_text()
    for name in ("alpha", "beta"):
        assert 'id="sc-%s"' % name in page
        assert (out / name / "plot.png").exists() and (out / name / "result.json").exists()
        assert (out / name / "trace.csv").exists()
    p = _Refs()
    p.feed(page)
    local = [r for r in p.refs if "://" not in r and not r.startswith("#")]
    assert "alpha/plot.png" in local and "beta/result.json" in local
    assert "alpha/journal.csv" in local
    for ref in local:
        assert (out / ref).exists(), ref
    ids = set(re.findall(r'id="([^"]+)"', page))
    for ref in p.refs:
        if ref.startswith("#"):
            assert ref[1:] in ids, ref
    root = ET.parse(junit).getroot()
    assert {c.get("name") for c in root.iter("testcase")} == {"alpha", "beta"}
    assert (out / "summary.txt").exists()


def test_progress_without_a_terminal_prints_a_line_per_scenario() -> None:
    s = io.StringIO()
    pr = Progress(3, s)
    for n in ("a", "b", "c"):
        pr.update(n, "pass")
    lines = s.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("[1/3]") and lines[2].endswith("c")


@pytest.mark.parametrize("jobs", [1, 2])
def test_suite_a_scenario_past_its_time_limit_is_reported_as_an_error(
        tmp_path: Path, jobs: int) -> None:
    """A hung or endless scenario cannot hold the suite: stopped at --timeout, reported as
    an error naming the limit, and the other scenarios still run and are judged."""
    write(tmp_path / "sc", "quick", PASSING, hours=0.1)
    slow = write(tmp_path / "sc", "slow", PASSING, hours=1.0)
    slow.write_text(slow.read_text().replace("bag_hours = 24", "bag_hours = 168")
                    .replace("hours = 1.0", "hours = 168.0"))
    rc, out, _ = suite(tmp_path / "sc", tmp_path / "rep", jobs=jobs, timeout_s=0.2)
    assert rc == 1
    results = {r["scenario"]: r for r in json.loads((tmp_path / "rep" / "results.json")
                                                   .read_text())}
    assert results["quick"]["status"] == "pass"
    assert results["slow"]["status"] == "error" and results["slow"]["timed_out"] == 0.2
    assert "timed out: still running after 0.2 s" in out and "--timeout" in out


@pytest.mark.parametrize("argv", [["--timeout", "nan"], ["--timeout", "-1"], ["--jobs", "0"],
                                  ["--jobs", "1e9"]])
def test_suite_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  argv: list[str]) -> None:
    write(tmp_path / "sc", "a", PASSING)
    with pytest.raises(SystemExit) as e:
        cli.main(["suite", str(tmp_path / "sc"), "--out", str(tmp_path / "rep"), *argv])
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()
