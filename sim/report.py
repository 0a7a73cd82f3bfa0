"""Suite outputs from scenario results: each scenario's outcome, the text table, JUnit XML and
the report folder's index.html (static, relative links: opens from disk without a server).

A row is a scenario's result JSON (docs/results.md) plus what the suite adds: `status`,
`xfail` (the reason, or None), `file` (the scenario file), `error` (a crash's traceback),
`links` ({label: path relative to the report folder}) and `plot` (the main PNG, relative).
"""

from __future__ import annotations

import html
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PASS, FAIL, XFAIL, XPASS, ERROR = "pass", "fail", "xfail", "XPASS", "error"
# XPASS is a finding: an expected-to-fail scenario now meets its expectations, so its xfail
# marker hides nothing any more and must go (then the expectation guards for real).
OK_STATUSES = (PASS, XFAIL)
_ORDER = {ERROR: 0, FAIL: 1, XPASS: 2, XFAIL: 3, PASS: 4}


def failed_expectations(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in result.get("expectations") or [] if not e.get("passed")]


def outcome(result: dict[str, Any], xfail: str | None = None) -> str:
    """pass / fail / xfail / XPASS / error for one result (xfail: the marker's reason)."""
    if result.get("error"):
        return ERROR
    failed = bool(failed_expectations(result))
    if xfail:
        return XFAIL if failed else XPASS
    return FAIL if failed else PASS


def counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    c = {s: 0 for s in (PASS, FAIL, XFAIL, XPASS, ERROR)}
    for r in rows:
        c[r["status"]] = c.get(r["status"], 0) + 1
    return c


def all_ok(rows: Sequence[dict[str, Any]]) -> bool:
    return all(r["status"] in OK_STATUSES for r in rows)


def prescribed_ml(r: dict[str, Any]) -> float | None:
    """What the prescription asks to infuse over the run (mL), when the result says."""
    for key in ("prescribed_ml", "planned_ml"):
        v = r.get(key)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _num(v: Any, fmt: str) -> str:
    return fmt % v if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _alarm_summary(r: dict[str, Any], limit: int = 3) -> str:
    """Distinct alarm codes in order, a count when repeated: 'OCCLUSION, INFUSION_COMPLETE x28'."""
    seen: dict[str, int] = {}
    for a in r.get("alarms") or []:
        seen[a["code"]] = seen.get(a["code"], 0) + 1
    parts = ["%s x%d" % (c, n) if n > 1 else c for c, n in seen.items()]
    if len(parts) > limit:
        parts = parts[:limit] + ["+%d more" % (len(parts) - limit)]
    return ", ".join(parts) or "-"


def _exp_summary(r: dict[str, Any]) -> str:
    exps = r.get("expectations") or []
    bad = len(failed_expectations(r))
    return "%d/%d" % (len(exps) - bad, len(exps))


def _volume(r: dict[str, Any]) -> str:
    p = prescribed_ml(r)
    d = _num(r.get("delivered_ml"), "%.2f")
    return "%s/%s" % (d, _num(p, "%.1f")) if p is not None else d


def _accepted(r: dict[str, Any]) -> str:
    if r.get("error"):
        return "-"
    if r.get("accepted"):
        return "yes"
    return "NO %s" % (r.get("reject_code") or "")


# --- text table -------------------------------------------------------------------------------

COLUMNS = ("scenario", "accepted", "final", "alarms", "deliv/presc mL", "excess mL",
           "expect ok", "status", "wall s")


def table_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in rows:
        out.append((str(r.get("scenario")), _accepted(r), str(r.get("final_state") or "-"),
                    _alarm_summary(r), _volume(r), _num(r.get("excess_ml"), "%.3f"),
                    _exp_summary(r), str(r["status"]), _num(r.get("wall_s"), "%.2f")))
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    body = table_rows(rows)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(COLUMNS)]
    right = {4, 5, 6, 8}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(COLUMNS), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def format_details(rows: Sequence[dict[str, Any]]) -> str:
    """What went wrong, per scenario that is not a plain pass (failed expectations, crashes,
    xfail reasons, XPASS findings)."""
    lines = []
    for r in rows:
        st = r["status"]
        if st == PASS:
            continue
        head = "%s %s (%s)" % (st.upper() if st != XPASS else XPASS, r.get("scenario"),
                               r.get("file", ""))
        lines.append(head)
        if st == ERROR:
            err = str(r.get("error", "")).rstrip().splitlines()
            lines += ["    " + x for x in err[-6:]]
            continue
        if r.get("xfail"):
            lines.append("    xfail: %s" % r["xfail"])
        if st == XPASS:
            lines.append("    unexpectedly meets every expectation: a finding; remove its "
                         "[expect] xfail so the expectation guards for real")
        for e in failed_expectations(r):
            lines.append("    %s: expected %s, got %s" % (e.get("name"), e.get("expected"),
                                                          e.get("actual")))
    return "\n".join(lines)


def summary_line(rows: Sequence[dict[str, Any]], wall_s: float) -> str:
    c = counts(rows)
    hours = sum(float(r.get("sim_hours") or 0.0) for r in rows)
    return ("%d scenarios: %d pass, %d fail, %d expected-to-fail, %d unexpectedly pass, "
            "%d error; %.1f sim hours (%.1f days) in %.1f s wall"
            % (len(rows), c[PASS], c[FAIL], c[XFAIL], c[XPASS], c[ERROR], hours, hours / 24.0,
               wall_s))


# --- JUnit XML --------------------------------------------------------------------------------

def junit_xml(rows: Sequence[dict[str, Any]], wall_s: float, suite_name: str = "pumpsim") -> str:
    """JUnit XML: one testcase per scenario. A failure carries the failed expectations; a
    crash is an error; an expected failure is skipped with its reason; an XPASS is a failure
    (the xfail marker is stale)."""
    c = counts(rows)
    root = ET.Element("testsuites", name=suite_name, tests=str(len(rows)),
                      failures=str(c[FAIL] + c[XPASS]), errors=str(c[ERROR]),
                      skipped=str(c[XFAIL]), time="%.3f" % wall_s)
    ts = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(rows)),
                       failures=str(c[FAIL] + c[XPASS]), errors=str(c[ERROR]),
                       skipped=str(c[XFAIL]), time="%.3f" % wall_s,
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"))
    for r in rows:
        wall = r.get("wall_s")
        tc = ET.SubElement(ts, "testcase", classname="scenarios", name=str(r.get("scenario")),
                           file=str(r.get("file", "")),
                           time=_num(wall, "%.3f") if _num(wall, "%.3f") != "-" else "0")
        st = r["status"]
        failed = failed_expectations(r)
        if st == ERROR:
            err = str(r.get("error") or "error").strip()
            el = ET.SubElement(tc, "error", type="crash", message=err.splitlines()[-1])
            el.text = err
        elif st == FAIL:
            el = ET.SubElement(tc, "failure", type="expectation",
                               message="; ".join(str(e.get("name")) for e in failed))
            el.text = "\n".join("%s: expected %s, got %s" % (e.get("name"), e.get("expected"),
                                                             e.get("actual")) for e in failed)
        elif st == XPASS:
            el = ET.SubElement(tc, "failure", type="xpass",
                               message="expected to fail (%s) but met every expectation"
                               % r.get("xfail"))
            el.text = "remove [expect] xfail from %s" % r.get("file", r.get("scenario"))
        elif st == XFAIL:
            el = ET.SubElement(tc, "skipped", message="xfail: %s" % r.get("xfail"))
            el.text = "\n".join("%s: expected %s, got %s" % (e.get("name"), e.get("expected"),
                                                             e.get("actual")) for e in failed)
        out = ET.SubElement(tc, "system-out")
        out.text = ("accepted=%s reject_code=%s final_state=%s delivered_ml=%s excess_ml=%s "
                    "alarms=%s" % (r.get("accepted"), r.get("reject_code"),
                                   r.get("final_state"), r.get("delivered_ml"),
                                   r.get("excess_ml"), _alarm_summary(r, 99)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- index.html -------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
  margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
.summary{display:flex;gap:.6em;flex-wrap:wrap;margin:.6em 0 1em}
.chip{padding:.35em .8em;border-radius:1em;background:#eee;font-weight:600}
.chip.pass{background:#d9f2dd}.chip.fail,.chip.error{background:#f8d3d3}
.chip.xfail{background:#fff0c2}.chip.XPASS{background:#e3d7ff}
.verdict{font-size:1.1em;font-weight:700;margin:.4em 0}
.verdict.ok{color:#1b7a2e}.verdict.bad{color:#b3261e}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f6f6f6;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.fail td:first-child,tr.error td:first-child{border-left:5px solid #d33}
tr.pass td:first-child{border-left:5px solid #3a3}
tr.xfail td:first-child{border-left:5px solid #e6b400}
tr.XPASS td:first-child{border-left:5px solid #7a4ddb}
.status{font-weight:700}.status.fail,.status.error{color:#b3261e}.status.pass{color:#1b7a2e}
.status.xfail{color:#8a6d00}.status.XPASS{color:#5b2db8}
.why{font-size:.88em;color:#555;margin-top:.25em}.why b{color:#b3261e}
img.thumb{width:240px;border:1px solid #ccc}
.links a{margin-right:.6em;white-space:nowrap}
pre{white-space:pre-wrap;font-size:.85em;background:#fafafa;padding:.4em}
.legend{font-size:.9em;color:#555}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _row_html(r: dict[str, Any]) -> str:
    st = r["status"]
    links = r.get("links") or {}
    link_html = " ".join('<a href="%s">%s</a>' % (_e(href), _e(label))
                         for label, href in links.items())
    img = "".join('<a href="%s"><img class="thumb" src="%s" alt="%s of %s"></a>'
                  % (_e(src), _e(src), _e(what), _e(r.get("scenario")))
                  for what, src in (("plot", r.get("plot")), ("trumpet", links.get("trumpet")))
                  if src)
    why = []
    if r.get("description"):
        why.append(_e(r["description"]))
    tr = r.get("trumpet")
    if isinstance(tr, dict):
        why.append("trumpet: mean error A %+.2f %%; %s" % (tr.get("mean_error_pct", 0.0), ", ".join(
            "%g min %+.2f/%+.2f %%" % (w["window_min"], w["max_pct"], w["min_pct"])
            for w in tr.get("windows", []))))
    if r.get("xfail"):
        why.append("<b>expected to fail:</b> %s" % _e(r["xfail"]))
    if st == XPASS:
        why.append("<b>unexpectedly meets every expectation</b> (a finding): remove its "
                   "<code>[expect] xfail</code>")
    for e in failed_expectations(r):
        why.append("<b>%s</b>: expected %s, got %s" % (_e(e.get("name")), _e(e.get("expected")),
                                                       _e(e.get("actual"))))
    if st == ERROR:
        why.append("<pre>%s</pre>" % _e(r.get("error", "")))
    exps = r.get("expectations") or []
    exp_list = "".join("<li>%s %s: expected %s, got %s</li>"
                       % ("&#10003;" if e.get("passed") else "&#10007;", _e(e.get("name")),
                          _e(e.get("expected")), _e(e.get("actual"))) for e in exps)
    exp_html = ("<details><summary>%s</summary><ul>%s</ul></details>"
                % (_e(_exp_summary(r)), exp_list) if exps else "-")
    return (
        '<tr class="%s" id="%s">' % (_e(st), _e(r.get("scenario")))
        + "<td><b>%s</b><div class=\"links\">%s</div><div class=\"why\">%s</div></td>"
        % (_e(r.get("scenario")), link_html, "<br>".join(why))
        + '<td class="status %s">%s</td>' % (_e(st), _e(st))
        + "<td>%s</td>" % _e(_accepted(r))
        + "<td>%s</td>" % _e(r.get("final_state") or "-")
        + "<td>%s</td>" % _e(_alarm_summary(r, 6))
        + '<td class="num">%s</td>' % _e(_volume(r))
        + '<td class="num">%s</td>' % _e(_num(r.get("excess_ml"), "%.3f"))
        + '<td class="num">%s</td>' % _e(_num(r.get("sim_hours"), "%.1f"))
        + "<td>%s</td>" % exp_html
        + '<td class="num">%s</td>' % _e(_num(r.get("wall_s"), "%.2f"))
        + "<td>%s</td></tr>" % img)


def index_html(rows: Sequence[dict[str, Any]], wall_s: float, title: str = "pumpsim suite",
               source: str = "", extra_links: Iterable[tuple[str, str]] = ()) -> str:
    c = counts(rows)
    hours = sum(float(r.get("sim_hours") or 0.0) for r in rows)
    ok = all_ok(rows)
    chips = "".join('<span class="chip %s">%d %s</span>' % (cls, n, label) for cls, n, label in (
        (PASS, c[PASS], "pass"), (FAIL, c[FAIL], "fail"),
        (XFAIL, c[XFAIL], "expected to fail"), (XPASS, c[XPASS], "unexpectedly pass"),
        (ERROR, c[ERROR], "error")) if n or cls in (PASS, FAIL))
    chips += '<span class="chip">%.1f sim hours (%.1f days)</span>' % (hours, hours / 24.0)
    chips += '<span class="chip">%.1f s wall</span>' % wall_s
    verdict = ('<div class="verdict ok">Every scenario meets its expectations.</div>' if ok else
               '<div class="verdict bad">%d scenario(s) need attention (fail, error or '
               'unexpected pass).</div>' % (c[FAIL] + c[ERROR] + c[XPASS]))
    extra = " ".join('<a href="%s">%s</a>' % (_e(h), _e(t)) for t, h in extra_links)
    ordered = sorted(rows, key=lambda r: (_ORDER.get(r["status"], 9), str(r.get("scenario"))))
    head = ("<tr><th>scenario</th><th>status</th><th>accepted</th><th>final state</th>"
            "<th>alarms</th><th>delivered / prescribed mL</th><th>excess mL</th>"
            "<th>sim h</th><th>expectations</th><th>wall s</th><th>plot</th></tr>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>%s</title>" % _e(title),
        "<style>%s</style></head><body>" % _CSS,
        "<h1>%s</h1>" % _e(title),
        '<div class="legend">%s%s generated %s. %s</div>'
        % ("scenarios from <code>%s</code>; " % _e(source) if source else "",
           "", _e(time.strftime("%Y-%m-%d %H:%M:%S")), extra),
        '<div class="summary">%s</div>' % chips,
        verdict,
        '<p class="legend">Rows that need attention come first. <i>delivered</i> is plant '
        "truth (what entered the patient); <i>excess</i> is the largest amount, over the run, "
        "by which it exceeded the programmed line. Click a plot to enlarge it; "
        "docs/report.md explains every column.</p>",
        "<table>", head,
        *(_row_html(r) for r in ordered),
        "</table></body></html>", ""])


def write_index(out_dir: str | Path, rows: Sequence[dict[str, Any]], wall_s: float,
                **kw: Any) -> Path:
    p = Path(out_dir) / "index.html"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(index_html(rows, wall_s, **kw), encoding="utf-8")
    return p
