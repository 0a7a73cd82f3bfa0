"""Suite outputs (sim/report.py): outcomes, the text table, JUnit XML validity, index.html."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

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
    ]


def test_outcomes() -> None:
    st = {r["scenario"]: r["status"] for r in rows()}
    assert st == {"ok": "pass", "bad": "fail", "known": "xfail", "stale-xfail": "XPASS",
                  "crash": "error", "rejected": "pass"}
    assert report.all_ok([r for r in rows() if r["status"] in ("pass", "xfail")])
    assert not report.all_ok(rows())
    assert report.outcome(result("none", [])) == "pass"


def test_table_has_a_row_per_scenario_and_the_columns() -> None:
    text = report.format_table(rows())
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows())
    for col in ("scenario", "accepted", "final", "alarms", "deliv/presc mL", "excess mL",
                "expect ok", "status", "wall s"):
        assert col in lines[0]
    assert any("NO RATE_VOLUME_MISMATCH" in ln for ln in lines)
    details = report.format_details(rows())
    assert "exp1 <&>: expected 1, got 2" in details
    assert "XPASS stale-xfail" in details and "remove" in details
    assert "ZeroDivisionError" in details
    assert "xfail: monitor not there yet" in details


def test_junit_xml_is_valid_and_carries_the_failures() -> None:
    xml = report.junit_xml(rows(), 3.5)
    root = ET.fromstring(xml)          # well-formed, special characters escaped
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == "6"
    assert suite.get("failures") == "2"     # the failure and the stale xfail
    assert suite.get("errors") == "1" and suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {r["scenario"] for r in rows()}
    fail = cases["bad"].find("failure")
    assert fail is not None and "exp1 <&>" in (fail.get("message") or "")
    assert "expected 1, got 2" in (fail.text or "")
    assert cases["ok"].find("failure") is None and cases["ok"].find("error") is None
    skipped = cases["known"].find("skipped")
    assert skipped is not None and "monitor not there yet" in (skipped.get("message") or "")
    xpass = cases["stale-xfail"].find("failure")
    assert xpass is not None and xpass.get("type") == "xpass"
    err = cases["crash"].find("error")
    assert err is not None and err.get("message") == "ZeroDivisionError: boom"
    for c in cases.values():
        float(c.get("time") or "x")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.row_ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("a", "img"):
            ref = a.get("href") or a.get("src")
            if ref:
                self.refs.append(ref)
        if tag == "tr" and a.get("id"):
            self.row_ids.append(a["id"] or "")


def test_index_html_summary_and_rows() -> None:
    rs = rows()
    rs[0]["links"] = {"plot": "ok/plot.png", "result": "ok/result.json"}
    rs[0]["plot"] = "ok/plot.png"
    page = report.index_html(rs, 12.0, source="scenarios")
    p = _Links()
    p.feed(page)
    assert sorted(p.row_ids) == sorted(r["scenario"] for r in rs)
    assert "ok/plot.png" in p.refs and "ok/result.json" in p.refs
    assert "2 pass" in page and "1 fail" in page and "1 expected to fail" in page
    assert "1 unexpectedly pass" in page and "1 error" in page
    assert "150.0 sim hours" in page and "12.0 s wall" in page
    assert "need attention" in page
    assert "exp1 &lt;&amp;&gt;" in page          # escaped
    # rows needing attention come first
    assert page.index('id="crash"') < page.index('id="bad"') < page.index('id="ok"')
