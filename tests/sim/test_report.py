"""Suite outputs (sim/report.py): outcomes, the text table, JUnit XML validity, expectations in
words with their limits, and index.html as a QA lead reads it (what was run, each scenario's
fault excess and detection time against their limits, a refusal explained)."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest

from sim import report


def result(name: str, passed: list[bool], **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "scenario": name, "accepted": True, "reject_code": None, "final_state": "COMPLETE",
        "alarms": [{"t_s": 86400.0, "code": "INFUSION_COMPLETE"}], "delivered_ml": 240.1,
        "counted_ml": 240.0, "allowed_ml": 240.0, "excess_ml": 0.1, "dose_ug": 28.0,
        "prescribed_dose_ug": 28.0, "sim_hours": 25.0, "wall_s": 0.12, "seed": 1,
        "bolus_ml": 0.0, "file": "scenarios/%s.toml" % name,
        "expectations": [{"name": "exp%d <&>" % i, "expected": 1, "actual": 2 if not p else 1,
                          "passed": p} for i, p in enumerate(passed)]}
    r.update(kw)
    r["status"] = report.outcome(r, r.get("xfail"))
    return r


def rows() -> list[dict[str, Any]]:
    return [
        result("ok", [True, True]),
        result("bad", [True, False]),
        result("known", [False], xfail="monitor not there yet"),
        result("stale-xfail", [True], xfail="was broken"),
        result("crash", [], error="Traceback...\nZeroDivisionError: boom"),
        result("rejected", [True], accepted=False, reject_code="RATE_VOLUME_MISMATCH",
               final_state="IDLE", alarms=[], delivered_ml=0.0),
        result("runaway", [True], alarms=[{"t_s": 7200.84, "code": "OVER_INFUSION"}],
               final_state="LOCKOUT", excess_ml=0.087, fault_excess_ml=0.021,
               excess_at_fault_ml=0.065, fault_window_excess_ml=0.021, stroke_error_pct=0.26,
               detection_alarm="OVER_INFUSION", detection_latency_s=0.84,
               faults=[{"t_s": 7200.0, "kind": "motor_runaway", "params": {"factor": 10.0}}],
               expectations=[
                   {"name": "max_fault_excess_ml", "expected": 0.1, "actual": 0.021,
                    "passed": True},
                   {"name": "alarm_within_min", "expected": 5.0, "actual": 0.014,
                    "passed": True},
                   {"name": "max_excess_ml", "expected": 0.1, "actual": 0.087,
                    "passed": True}]),
    ]


def test_outcomes() -> None:
    st = {r["scenario"]: r["status"] for r in rows()}
    assert st == {"ok": "pass", "bad": "fail", "known": "xfail", "stale-xfail": "XPASS",
                  "crash": "error", "rejected": "pass", "runaway": "pass"}
    assert report.all_ok([r for r in rows() if r["status"] in ("pass", "xfail")])
    assert not report.all_ok(rows())
    assert report.outcome(result("none", [])) == "pass"


def test_table_has_a_row_per_scenario_and_the_columns() -> None:
    text = report.format_table(rows())
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows())
    for col in ("scenario", "accepted", "final", "alarms", "deliv/presc mL", "fault excess mL",
                "detected after", "excess mL", "expect ok", "status", "wall s"):
        assert col in lines[0]
    assert any("NO RATE_VOLUME_MISMATCH" in ln for ln in lines)
    runaway = next(ln for ln in lines if ln.startswith("runaway"))
    assert "0.021" in runaway and "0.84 s" in runaway and "0.087" in runaway
    details = report.format_details(rows())
    assert "exp1 <&>: 2, expected 1" in details
    assert "XPASS stale-xfail" in details and "remove" in details
    assert "ZeroDivisionError" in details
    assert "xfail: monitor not there yet" in details


@pytest.mark.parametrize("exp,text", [
    ({"name": "alarm", "expected": "OVER_INFUSION", "actual": ["OVER_INFUSION"],
      "passed": True}, "alarm OVER_INFUSION raised"),
    ({"name": "alarm", "expected": "INFUSION_COMPLETE",
      "actual": ["OCCLUSION", "OCCLUSION"], "passed": False},
     "alarm INFUSION_COMPLETE expected; raised: OCCLUSION ×2"),
    ({"name": "no_alarms_except", "expected": ["INFUSION_COMPLETE"], "actual": [],
      "passed": True}, "no alarm but INFUSION_COMPLETE"),
    ({"name": "no_alarms_except", "expected": [], "actual": ["DOOR_OPEN"], "passed": False},
     "no alarm but none at all expected; also raised: DOOR_OPEN"),
    ({"name": "max_fault_excess_ml", "expected": 0.1, "actual": 0.02123, "passed": True},
     "excess the fault caused 0.021 mL ≤ 0.1 mL"),
    ({"name": "max_excess_ml", "expected": 0.1, "actual": 0.2504, "passed": False},
     "excess over the programmed line 0.25 mL, expected ≤ 0.1 mL"),
    ({"name": "delivered_ml_min", "expected": 235.2, "actual": 239.29552, "passed": True},
     "delivered 239.3 mL ≥ 235.2 mL"),
    ({"name": "dose_ug_max", "expected": 28.56, "actual": 27.917811, "passed": True},
     "dose 27.92 µg ≤ 28.56 µg"),
    ({"name": "alarm_within_min", "expected": 30.0, "actual": 5.4, "passed": True},
     "first alarm after the fault 5.4 min ≤ 30 min"),
    ({"name": "alarm_within_min", "expected": 30.0, "actual": None, "passed": False},
     "first alarm after the fault: none raised, expected ≤ 30 min"),
    ({"name": "final_state", "expected": "COMPLETE", "actual": "ALARM", "passed": False},
     "final state ALARM, expected COMPLETE"),
    ({"name": "accepted", "expected": False, "actual": False, "passed": True},
     "program refused, as expected"),
    ({"name": "reject_code", "expected": "UNIT_REJECTED", "actual": None, "passed": False},
     "refused with nothing (accepted), expected UNIT_REJECTED"),
    ({"name": "PR-6 trumpet 5-min windows at 10 mL/h within ±2 %", "expected": "<= 2 %",
      "actual": "1.233 %", "passed": True},
     "PR-6 trumpet 5-min windows at 10 mL/h within ±2 %: 1.233 %, limit ≤ 2 %"),
])
def test_expectations_read_as_words_with_their_limits(exp: dict[str, Any], text: str) -> None:
    """What a reader sees for an expectation: the quantity, its value with its unit, the
    comparison (≤ / ≥) and the limit; never a Python repr."""
    assert report.expectation_text(exp) == text
    keyed = text if text.startswith(exp["name"] + ":") else "%s: %s" % (exp["name"], text)
    assert report.expectation_text(exp, key=True) == keyed
    assert "[" not in text and "'" not in text


def test_junit_xml_is_valid_and_carries_the_failures() -> None:
    xml = report.junit_xml(rows(), 3.5)
    root = ET.fromstring(xml)          # well-formed, special characters escaped
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == str(len(rows()))
    assert suite.get("failures") == "2"     # the failure and the stale xfail
    assert suite.get("errors") == "1" and suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {r["scenario"] for r in rows()}
    fail = cases["bad"].find("failure")
    assert fail is not None and "exp1 <&>" in (fail.get("message") or "")
    assert "exp1 <&>: 2, expected 1" in (fail.text or "")
    assert cases["ok"].find("failure") is None and cases["ok"].find("error") is None
    skipped = cases["known"].find("skipped")
    assert skipped is not None and "monitor not there yet" in (skipped.get("message") or "")
    xpass = cases["stale-xfail"].find("failure")
    assert xpass is not None and xpass.get("type") == "xpass"
    err = cases["crash"].find("error")
    assert err is not None and err.get("message") == "ZeroDivisionError: boom"
    for c in cases.values():
        float(c.get("time") or "x")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("a", "img"):
            ref = a.get("href") or a.get("src")
            if ref:
                self.refs.append(ref)
        if a.get("id"):
            self.ids.append(a["id"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


INFO = {"tool": "pumpsim 9.9.9, Python 3.11", "git commit": "0123456789ab",
        "firmware sha256": "f" * 64 + " (over its bytecode (mpy-cross 1.29.0))",
        "machine": "bench-7: Linux, x86_64, 2 CPUs", "date": "2030-01-02 03:04:05 UTC",
        "command line": "pumpsim suite scenarios --out report", "scenarios": "scenarios"}


def _page(**kw: Any) -> tuple[str, _Page]:
    rs = rows()
    rs[0]["links"] = {"plot": "ok/plot.png", "result": "ok/result.json"}
    rs[-1]["links"] = {"fault plot": "runaway/fault.png", "plot": "runaway/plot.png"}
    page = report.index_html(rs, 12.0, source="scenarios", info=INFO, **kw)
    p = _Page()
    p.feed(page)
    return page, p


def test_index_html_header_says_what_was_run() -> None:
    """Tool version, git commit, firmware bytecode hash, machine, date and command line."""
    page, p = _page()
    text = " ".join(p.text)
    for k, v in INFO.items():
        assert k in text and v in text, k
    # build_info itself fills every field from this checkout
    info = report.build_info("pumpsim suite x", "x")
    assert set(INFO) <= set(info) and info["command line"] == "pumpsim suite x"
    assert len(info["firmware sha256"].split()[0]) == 64


def test_index_html_summary_cards_and_links() -> None:
    page, p = _page()
    rs = rows()
    for r in rs:
        assert report.anchor(r["scenario"]) in p.ids
        assert "#" + report.anchor(r["scenario"]) in p.refs
    assert "ok/plot.png" in p.refs and "ok/result.json" in p.refs
    assert "3 pass" in page and "1 fail" in page and "1 expected to fail" in page
    assert "1 unexpectedly pass" in page and "1 error" in page
    assert "175.0 sim hours" in page and "12.0 s wall" in page
    assert "need attention" in page
    assert "exp1 &lt;&amp;&gt;" in page          # escaped
    # scenarios needing attention come first
    assert page.index('id="sc-crash"') < page.index('id="sc-bad"') < page.index('id="sc-ok"')


def test_index_html_fault_excess_and_detection_against_their_limits() -> None:
    """The fault's own excess (not the whole run's, which holds the cassette's drift) and the
    detection time, each with its limit and whether it is met; the fault plot first."""
    page, p = _page()
    card = page[page.index('id="sc-runaway"'):]
    card = card[:card.index("</section>")]
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", card)))
    assert "excess the fault caused 0.021 mL ≤ 0.1 mL ✓ met" in text
    assert "detected by OVER_INFUSION after 0.84 s ≤ 5.0 min ✓ met" in text
    assert "0.087 mL" in text and "0.065 mL of it before the fault" in text
    assert card.index("runaway/fault.png") < card.index("runaway/plot.png")
    row = page[page.index('<a href="#sc-runaway"'):]
    row = html.unescape(re.sub(r"<[^>]+>", "", row[:row.index("</tr>")]))
    assert "0.021 mL ≤ 0.1 mL" in row and "0.84 s ≤ 5.0 min" in row


def test_index_html_a_refused_program_is_explained_and_has_no_plot() -> None:
    from host.refusals import REFUSALS

    page, p = _page()
    card = page[page.index('id="sc-rejected"'):]
    card = card[:card.index("</section>")]
    meaning, todo = REFUSALS["RATE_VOLUME_MISMATCH"]
    assert "Refused: RATE_VOLUME_MISMATCH" in card
    assert html.escape(meaning) in card and html.escape(todo) in card
    assert "<img" not in card and "nothing was delivered" in card


def test_index_html_lists_every_requirement() -> None:
    from sim import traceability

    page, p = _page()
    for req in traceability.requirements():
        assert "req-%s" % req.id in p.ids


def test_a_fault_is_described_in_words() -> None:
    """'occlusion (for 60.0 min) at 2.0 h', not the scenario file's raw keys."""
    r = result("occ", [True], faults=[
        {"t_s": 7200.0, "kind": "occlusion", "params": {"duration_s": 3600.0}},
        {"t_s": 9000.0, "kind": "free_flow", "params": {"clamp_open": True, "duration_s": 0}}])
    rows_ = dict((what, val) for what, val, *_ in report.qa_rows(r))
    assert rows_["fault injected"] == ("occlusion (for 60.0 min) at 2.0 h; free_flow (clamp open "
                                       "yes) at 2.5 h")
