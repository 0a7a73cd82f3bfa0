"""Requirement traceability (sim/traceability.py, docs/traceability.md): every SR-n and PR-n
is mapped to the tests and scenarios that check it, one with nothing checking it is listed as
such, and the generated document is the map of this source tree (regenerate it with
`python -m sim.traceability --run-tests --results report/results.json`)."""

from __future__ import annotations

from pathlib import Path

from sim import traceability as tr

REPO = Path(__file__).resolve().parents[1]


def test_traceability_doc_is_current() -> None:
    """docs/traceability.md lists, per requirement, exactly the tests, scenarios and
    benchmarks the source names it in: a test or scenario added, renamed or removed, or a
    requirement changed, without regenerating the document fails here."""
    doc = tr.parse_markdown((REPO / "docs" / "traceability.md").read_text(encoding="utf-8"))
    now = {r.id: (r.tests, r.scenarios, r.benchmarks) for r in tr.trace()}
    stale = sorted(k for k in set(doc) | set(now) if doc.get(k) != now.get(k))
    assert not stale, ("docs/traceability.md is stale for %s: regenerate it with python -m "
                       "sim.traceability --run-tests --results report/results.json" % stale)


def test_every_requirement_has_a_row_and_the_unchecked_are_named() -> None:
    text = (REPO / "docs" / "traceability.md").read_text(encoding="utf-8")
    reqs = tr.trace()
    assert [r.id for r in reqs][:2] == ["SR-1", "SR-2"] and len(reqs) >= 20
    unchecked = [r.id for r in reqs if not r.checked]
    for r in reqs:
        assert "| **%s** " % r.id in text, r.id
    if unchecked:
        assert "**Nothing checks %s.**" % ", ".join(unchecked) in text
        for rid in unchecked:
            row = next(ln for ln in text.splitlines() if ln.startswith("| **%s** " % rid))
            assert "NOTHING CHECKS IT" in row
    tests, _line = tr.recorded_results(text)
    assert tests, "the document records no results"


def test_map_reads_test_names_tags_and_descriptions(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text(
        "def test_sr4_stops_at_vtbi(): pass\n"
        "def test_pr3_occlusion_and_sr10_dropout(): pass\n"
        "def test_unrelated_sr(): pass\n"
        "class TestDoor:\n    def test_sr99_typo(self): pass\n")
    scen = tmp_path / "scenarios"
    scen.mkdir()
    (scen / "a.toml").write_text('name = "a"\ntags = ["sr-4"]\n')
    (scen / "b.toml").write_text('name = "b"\ndescription = "caught within 0.1 mL (PR-1)"\n')
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench_x.py").write_text('"""speed (PR-4)"""\n')
    reqs = [tr.Requirement(i, "text of " + i) for i in ("SR-4", "SR-8", "SR-10", "PR-1",
                                                         "PR-3", "PR-4")]
    got = {r.id: r for r in tr.trace(reqs, tests, scen, bench)}
    assert got["SR-4"].tests == ["tests/test_x.py::test_sr4_stops_at_vtbi"]
    assert got["SR-4"].scenarios == ["a"]
    assert got["SR-10"].tests == got["PR-3"].tests == [
        "tests/test_x.py::test_pr3_occlusion_and_sr10_dropout"]
    assert got["PR-1"].scenarios == ["b"]
    assert not got["SR-8"].checked
    assert not got["PR-4"].checked and got["PR-4"].benchmarks == ["bench/bench_x.py"]
    assert got["SR-99"].text == "" and got["SR-99"].tests == [
        "tests/test_x.py::TestDoor::test_sr99_typo"]
    md = tr.markdown(list(got.values()), {}, {}, "none recorded")
    assert "**Nothing checks SR-8, PR-4.**" in md
    assert "NOTHING CHECKS IT; measured by bench/bench_x.py (figures, no pass/fail)" in md
    assert "(not in requirements.md)" in md
    assert tr.parse_markdown(md)["SR-10"] == (got["SR-10"].tests, [], [])


def test_junit_results_fold_parameters_and_micropython_runs(tmp_path: Path) -> None:
    xml = tmp_path / "t.xml"
    xml.write_text("""<testsuites><testsuite>
<testcase classname="tests.sim.test_study" name="test_pr1_runaway[10.0]"/>
<testcase classname="tests.sim.test_study" name="test_pr1_runaway[0.6]"><failure/></testcase>
<testcase classname="tests.fw.test_delivery" name="test_sr4_exact"/>
<testcase classname="tests.test_micropython"
          name="test_firmware_under_micropython[mpy::test_delivery::test_sr4_exact]">
  <error/></testcase>
<testcase classname="tests.test_roles.TestRoles" name="test_sr11_patient"><skipped/></testcase>
</testsuite></testsuites>""")
    got = tr.junit_results(xml)
    assert got["tests/sim/test_study.py::test_pr1_runaway"] == tr.FAIL
    assert got["tests/fw/test_delivery.py::test_sr4_exact"] == tr.FAIL   # fails on MicroPython
    assert got["tests/test_roles.py::TestRoles::test_sr11_patient"] == tr.SKIP
    r = tr.Requirement("PR-1", "x", tests=["tests/sim/test_study.py::test_pr1_runaway",
                                           "tests/other.py::test_pr1_b"], scenarios=["s"])
    assert tr.verdict(r, got, {"s": "pass"}) == \
        "0/2 tests pass, 1 FAIL, 1 not run; 1/1 scenario pass"
