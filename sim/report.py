"""Suite outputs from scenario results: each scenario's outcome, the text table, JUnit XML and
the report folder's index.html (static, relative links: opens from disk without a server).

A row is a scenario's result JSON (docs/results.md) plus what the suite adds: `status`,
`xfail` (the reason, or None), `file` (the scenario file), `tags`, `error` (a crash's
traceback, or why it timed out), `links` ({label: path relative to the report folder}) and
`plot` (the main PNG, relative).

index.html answers a QA lead's questions, one screen per scenario: what was run (tool
version, git commit, firmware bytecode hash, machine, date, command line), the verdict, and
for each scenario the fault's own excess and its detection time against their limits, the
expectations in words with their limits, a refused program's code explained (host/refusals),
the fault up close and the whole run as plots (full size on click), the decoded journal; then
every requirement (docs/requirements.md) with the tests and scenarios that check it and their
latest result (sim/traceability).
"""

from __future__ import annotations

import html
import math
import platform
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import quote

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


def _isnum(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any, fmt: str) -> str:
    return fmt % v if _isnum(v) else "-"


def fmt_num(v: Any) -> str:
    """A number as a person reads it: 239.3, 27.92, 0.087, 0.00042, 28, 1e+06."""
    if not _isnum(v):
        return str(v)
    x = float(v)
    if x == int(x) and abs(x) < 1e6:
        return "%d" % x
    a = abs(x)
    if a >= 1e6 or a < 1e-4:
        return "%.3g" % x
    text = "%.1f" % x if a >= 100 else "%.2f" % x if a >= 1 else "%.3f" % x if a >= 0.001 \
        else "%.2g" % x
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def fmt_duration(s: Any) -> str:
    """Seconds as '0.84 s', '89 s', '5.4 min', '18.2 h'."""
    if not _isnum(s):
        return "-"
    a = abs(float(s))
    if a < 10.0:
        return "%.2f s" % s
    if a < 120.0:
        return "%.0f s" % s
    if a < 7200.0:
        return "%.1f min" % (s / 60.0)
    return "%.1f h" % (s / 3600.0)


def _alarm_counts(codes_: Iterable[str]) -> str:
    """'OCCLUSION, INFUSION_COMPLETE ×28' (distinct codes in order, a count when repeated)."""
    seen: dict[str, int] = {}
    for c in codes_:
        seen[c] = seen.get(c, 0) + 1
    return ", ".join("%s ×%d" % (c, n) if n > 1 else c for c, n in seen.items())


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


def _volume(r: dict[str, Any], sep: str = "/") -> str:
    p = prescribed_ml(r)
    d = _num(r.get("delivered_ml"), "%.2f")
    return "%s%s%s" % (d, sep, _num(p, "%.1f")) if p is not None else d


def _code(text: Any) -> str:
    """Escaped, with a line-break opportunity after each '_' (long codes wrap at words)."""
    return _e(text).replace("_", "_<wbr>")


def _accepted(r: dict[str, Any]) -> str:
    if r.get("error"):
        return "-"
    if r.get("accepted"):
        return "yes"
    return "NO %s" % (r.get("reject_code") or "")


# --- limits, detection, expectations in words -------------------------------------------------

def limits(row: dict[str, Any]) -> dict[str, float]:
    """The scenario's limits from its expectations: `fault_excess_ml` (max_fault_excess_ml,
    else max_excess_ml when there is a fault), `excess_ml` (max_excess_ml) and `latency_s`
    (alarm_within_min)."""
    exps = {str(e.get("name")): e.get("expected") for e in row.get("expectations") or []}
    out: dict[str, float] = {}
    for key, name in (("excess_ml", "max_excess_ml"), ("fault_excess_ml", "max_fault_excess_ml"),
                      ("latency_s", "alarm_within_min"), ("bolus_ml", "max_bolus_ml")):
        v = exps.get(name)
        if _isnum(v):
            out[key] = float(v) * (60.0 if key == "latency_s" else 1.0)
    if "fault_excess_ml" not in out and "excess_ml" in out and row.get("faults"):
        out["fault_excess_ml"] = out["excess_ml"]
    return out


def detection(row: dict[str, Any]) -> tuple[float, str] | None:
    """(t_s, code) of the alarm that answered the first fault, from the result."""
    lat = row.get("detection_latency_s")
    if not _isnum(lat) or not row.get("faults"):
        return None
    return float(row["faults"][0]["t_s"]) + float(lat), str(row.get("detection_alarm"))


# [expect] key -> (what it measures, unit, comparison)
EXPECT_WORDS: dict[str, tuple[str, str, str]] = {
    "alarm_within_min": ("first alarm after the fault", "min", "≤"),
    "final_state": ("final state", "", "="),
    "max_excess_ml": ("excess over the programmed line", "mL", "≤"),
    "max_fault_excess_ml": ("excess the fault caused", "mL", "≤"),
    "delivered_ml_min": ("delivered", "mL", "≥"),
    "delivered_ml_max": ("delivered", "mL", "≤"),
    "max_bolus_ml": ("bolus on clearing", "mL", "≤"),
    "dose_ug_min": ("dose", "µg", "≥"),
    "dose_ug_max": ("dose", "µg", "≤"),
}


def _with_unit(v: Any, unit: str) -> str:
    return fmt_num(v) + (" " + unit if unit else "")


def expectation_text(e: dict[str, Any], key: bool = False) -> str:
    """One expectation in words with readable values and its limit, e.g. 'excess the fault
    caused 0.021 mL ≤ 0.1 mL', 'delivered 12.34 mL, expected ≥ 1000 mL', 'alarm
    OVER_INFUSION raised'. With `key`, prefixed by the [expect] key ('delivered_ml_min: ...')
    so a scenario's author finds the line."""
    name = str(e.get("name"))
    want, got, ok = e.get("expected"), e.get("actual"), bool(e.get("passed"))
    if name == "alarm":
        wants = want if isinstance(want, list) else [want]
        raised = _alarm_counts(got or []) if isinstance(got, list) else str(got)
        text = ("alarm %s raised" % " and ".join(map(str, wants)) if ok else
                "alarm %s expected; raised: %s" % (" and ".join(map(str, wants)),
                                                   raised or "none"))
    elif name == "no_alarms_except":
        allowed = ", ".join(map(str, want or [])) or "none at all"
        text = ("no alarm but %s" % allowed if ok else
                "no alarm but %s expected; also raised: %s" % (
                    allowed, ", ".join(map(str, got or []))))
    elif name == "accepted":
        text = ("program %s, as expected" % ("accepted" if got else "refused") if ok else
                "program %s, expected %s" % ("accepted" if got else "refused",
                                             "accepted" if want else "refused"))
    elif name == "reject_code":
        text = ("refused with %s" % want if ok else
                "refused with %s, expected %s" % (got or "nothing (accepted)", want))
    elif name == "alarm_within_min" and got is None:
        text = "first alarm after the fault: none raised, expected ≤ %s min" % fmt_num(want)
    elif name in EXPECT_WORDS:
        what, unit, op = EXPECT_WORDS[name]
        if op == "=":
            text = "%s %s" % (what, got) if ok else "%s %s, expected %s" % (what, got, want)
        elif ok:
            text = "%s %s %s %s" % (what, _with_unit(got, unit), op, _with_unit(want, unit))
        else:
            text = "%s %s, expected %s %s" % (what, _with_unit(got, unit), op,
                                              _with_unit(want, unit))
    else:                       # added by the suite (PR-6): the name says what it is
        limit = str(want).replace("<=", "≤").replace(">=", "≥")
        text = "%s: %s, %s %s" % (name, got, "limit" if ok else "expected", limit)
        return text
    return "%s: %s" % (name, text) if key else text


# --- text table -------------------------------------------------------------------------------

COLUMNS = ("scenario", "accepted", "final", "alarms", "deliv/presc mL", "fault excess mL",
           "detected after", "excess mL", "expect ok", "status", "wall s")


def _fault_excess(r: dict[str, Any]) -> str:
    return _num(r.get("fault_excess_ml"), "%.3f") if r.get("faults") else "-"


def table_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in rows:
        out.append((str(r.get("scenario")), _accepted(r), str(r.get("final_state") or "-"),
                    _alarm_summary(r), _volume(r), _fault_excess(r),
                    fmt_duration(r.get("detection_latency_s")) if r.get("faults") else "-",
                    _num(r.get("excess_ml"), "%.3f"), _exp_summary(r), str(r["status"]),
                    _num(r.get("wall_s"), "%.2f")))
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    body = table_rows(rows)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(COLUMNS)]
    right = {4, 5, 6, 7, 8, 10}

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
            lines.append("    " + expectation_text(e, key=True))
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
            el = ET.SubElement(tc, "error", type="timeout" if r.get("timed_out") else "crash",
                               message=err.splitlines()[-1])
            el.text = err
        elif st == FAIL:
            el = ET.SubElement(tc, "failure", type="expectation",
                               message="; ".join(str(e.get("name")) for e in failed))
            el.text = "\n".join(expectation_text(e, key=True) for e in failed)
        elif st == XPASS:
            el = ET.SubElement(tc, "failure", type="xpass",
                               message="expected to fail (%s) but met every expectation"
                               % r.get("xfail"))
            el.text = "remove [expect] xfail from %s" % r.get("file", r.get("scenario"))
        elif st == XFAIL:
            el = ET.SubElement(tc, "skipped", message="xfail: %s" % r.get("xfail"))
            el.text = "\n".join(expectation_text(e, key=True) for e in failed)
        out = ET.SubElement(tc, "system-out")
        out.text = ("accepted=%s reject_code=%s final_state=%s delivered_ml=%s excess_ml=%s "
                    "fault_excess_ml=%s detection_latency_s=%s alarms=%s"
                    % (r.get("accepted"), r.get("reject_code"), r.get("final_state"),
                       r.get("delivered_ml"), r.get("excess_ml"), r.get("fault_excess_ml"),
                       r.get("detection_latency_s"), _alarm_summary(r, 99)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- what was run -----------------------------------------------------------------------------

def build_info(command: str | None = None, source: str = "") -> dict[str, str]:
    """The report header: tool version, git commit, firmware bytecode hash, machine, date,
    command line (host/version.py gives the first three, as `pumpsim --version` does)."""
    from host.version import version_info
    try:
        v = version_info()
    except Exception as e:            # noqa: BLE001 - a header must not sink the report
        v = {"version": "unknown", "commit": None, "dirty": False,
             "firmware_sha256": "", "firmware_hash_of": "unavailable: %s" % e,
             "python": platform.python_version()}
    commit = "not a git checkout" if not v.get("commit") else \
        str(v["commit"]) + (" (with uncommitted changes)" if v.get("dirty") else "")
    fw = str(v.get("firmware_sha256") or "-")
    import os
    return {
        "tool": "pumpsim %s, Python %s" % (v.get("version"), v.get("python")),
        "git commit": commit,
        "firmware sha256": "%s (over its %s)" % (fw, v.get("firmware_hash_of")),
        "machine": "%s: %s %s, %s, %s CPUs" % (platform.node() or "?", platform.system(),
                                               platform.release(), platform.machine(),
                                               os.cpu_count()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command line": command or "(sim.suite.run_suite called from Python)",
        "scenarios": source,
    }


# --- index.html -------------------------------------------------------------------------------

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
  margin:0 auto;padding:1em 1.2em;color:#1d1d1d;max-width:1600px}
h1{font-size:1.45em;margin:0 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .5em;
  border-bottom:2px solid #ddd;padding-bottom:.2em}h3{font-size:1.08em;margin:0 0 .3em}
a{color:#0b57d0}code{font-size:.92em;background:#f3f3f3;padding:0 .2em;border-radius:3px}
td,th,p,li,div,pre,code{overflow-wrap:anywhere}
.summary{display:flex;gap:.5em;flex-wrap:wrap;margin:.5em 0 .8em}
.chip{padding:.25em .75em;border-radius:1em;background:#eee;font-weight:600;white-space:nowrap}
.chip.pass{background:#d9f2dd}.chip.fail,.chip.error{background:#f8d3d3}
.chip.zero{background:#eee;color:#555}
.chip.xfail{background:#fff0c2}.chip.XPASS{background:#e3d7ff}
.verdict{font-size:1.15em;font-weight:700;margin:.3em 0}
.verdict.ok{color:#1b7a2e}.verdict.bad{color:#b3261e}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e2e2e2;padding:.3em .45em;text-align:left;vertical-align:top}
th{background:#f6f6f6}
table.build{table-layout:fixed;font-size:.92em;margin:.4em 0}
table.build th{width:11em;background:none;color:#555;font-weight:600}
table.scen{table-layout:fixed}
table.scen td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td:first-child,tr.error td:first-child{border-left:5px solid #d33}
tr.pass td:first-child{border-left:5px solid #3a3}
tr.xfail td:first-child{border-left:5px solid #e6b400}
tr.XPASS td:first-child{border-left:5px solid #7a4ddb}
.status{font-weight:700}.status.fail,.status.error{color:#b3261e}.status.pass{color:#1b7a2e}
.status.xfail{color:#8a6d00}.status.XPASS{color:#5b2db8}
.ok{color:#1b7a2e;font-weight:600}.bad{color:#b3261e;font-weight:700}.na{color:#777}
section.card{display:grid;grid-template-columns:minmax(0,5fr) minmax(0,6fr);gap:1em;
  border:1px solid #ddd;border-left:6px solid #3a3;border-radius:4px;padding:.8em;
  margin:0 0 1em}
section.card.fail,section.card.error{border-left-color:#d33}
section.card.xfail{border-left-color:#e6b400}section.card.XPASS{border-left-color:#7a4ddb}
@media (max-width:1000px){section.card{grid-template-columns:minmax(0,1fr)}}
.desc{color:#444;margin:.2em 0 .5em}
table.qa{table-layout:fixed;margin:.3em 0 .6em}
table.qa th{width:34%;background:none;font-weight:600;color:#333}
table.qa td.v{width:36%}table.qa td.lim{width:30%}
.note{display:block;font-size:.88em;color:#555;font-weight:400}
ul.exp{margin:.2em 0 .6em;padding-left:1.2em}ul.exp li{margin:.1em 0;font-weight:400;
  color:#1d1d1d}ul.exp li.bad{color:#b3261e;font-weight:700}
.tick{color:#1b7a2e;font-weight:700}.cross{color:#b3261e;font-weight:700}
.refusal{background:#fff4e5;border:1px solid #f0c27b;border-radius:4px;padding:.5em .7em;
  margin:.3em 0 .6em}
.links a{margin-right:.8em;white-space:nowrap}
.plots{display:flex;flex-wrap:wrap;gap:.6em;align-content:flex-start}
.plots figure{margin:0;flex:1 1 100%;min-width:0}
.plots figure.small{flex:0 1 calc(50% - .3em)}
.plots img{display:block;width:100%;height:auto;border:1px solid #ccc}
.plots figcaption{font-size:.85em;color:#555}
pre{white-space:pre-wrap;font-size:.85em;background:#fafafa;padding:.4em;margin:.3em 0}
.legend{font-size:.92em;color:#555}
table.trace{table-layout:fixed;font-size:.93em}
table.trace th.req{width:34%}table.trace th.res{width:16%}
details summary{cursor:pointer}
nav a{margin-right:1em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _href(path: str) -> str:
    """A relative path as a URL (a scenario name may hold '%', '+' or a space); a URL that
    already has a scheme (file:///...) as it is."""
    return _e(path if "://" in path else quote(path, safe="/#"))


def anchor(name: Any) -> str:
    """The id of a scenario's card: 'sc-' and its name with anything but letters, digits,
    '.', '_' and '-' as '-'."""
    return "sc-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in str(name))


def _mark(ok: bool | None) -> str:
    if ok is None:
        return '<span class="na">no limit set</span>'
    return ('<span class="ok">&#10003; met</span>' if ok else
            '<span class="bad">&#10007; NOT met</span>')


def _fault_params(f: dict[str, Any]) -> str:
    """A fault's parameters in words: 'factor 10', 'for 1.0 h' (duration_s), 'clamp open'."""
    out = []
    for k, v in (f.get("params") or {}).items():
        if k == "duration_s":
            if _isnum(v) and v > 0:
                out.append("for %s" % fmt_duration(v))
        elif isinstance(v, bool):
            out.append("%s %s" % (k.replace("_", " "), "yes" if v else "no"))
        else:
            out.append("%s %s" % (k.replace("_", " "), fmt_num(v)))
    return ", ".join(out)


def _fault_label(r: dict[str, Any]) -> str:
    """'motor_runaway (factor 10) at 2.0 h; ...': each fault injected, when."""
    parts = []
    for f in r.get("faults") or []:
        params = _fault_params(f)
        parts.append("%s%s at %s" % (f.get("kind"), " (%s)" % params if params else "",
                                     fmt_duration(f.get("t_s"))))
    return "; ".join(parts)


def qa_rows(r: dict[str, Any]) -> list[tuple[str, str, list[str], str, bool | None]]:
    """(figure, value, notes, limit, met?) a QA lead asks about, for one scenario, as plain
    text: the fault, what detected it and when, the excess the fault caused and the whole
    run's excess over the programmed line (the cassette's drift told apart), the bolus, the
    volume and dose, the final state. The report's card and `pumpsim run` show these."""
    lim = limits(r)
    out: list[tuple[str, str, list[str], str, bool | None]] = []
    faults = r.get("faults") or []
    if faults:
        out.append(("fault injected", _fault_label(r), [], "", None))
        det = detection(r)
        if det is None:
            val = "no alarm answered it"
            ok: bool | None = False if "latency_s" in lim else None
        else:
            lat = det[0] - float(faults[0]["t_s"])
            val = "%s after %s" % (det[1], fmt_duration(lat))
            ok = None if "latency_s" not in lim else lat <= lim["latency_s"]
        out.append(("detected by", val, [], "≤ %s" % fmt_duration(lim["latency_s"])
                    if "latency_s" in lim else "", ok))
        fe = r.get("fault_excess_ml")
        notes = []
        win = r.get("fault_window_excess_ml")
        if _isnum(win) and _isnum(fe) and fe - win > 0.001:
            notes.append("%s mL of it up to the detection; the rest accrued over the rest of "
                         "the run at the cassette's %+.2f %% (drift)"
                         % (fmt_num(win), r.get("stroke_error_pct") or 0))
        ok = None if "fault_excess_ml" not in lim or not _isnum(fe) else \
            float(fe) <= lim["fault_excess_ml"]
        out.append(("excess the fault caused", "%s mL" % fmt_num(fe), notes,
                    "≤ %s mL" % fmt_num(lim["fault_excess_ml"]) if "fault_excess_ml" in lim
                    else "", ok))
    ex = r.get("excess_ml")
    if _isnum(ex) and (ex >= 0.001 or "excess_ml" in lim):
        se = r.get("stroke_error_pct")
        allowed = r.get("allowed_ml")
        notes = []
        if faults and _isnum(r.get("excess_at_fault_ml")) and r["excess_at_fault_ml"] >= 0.001:
            notes.append("%s mL of it before the fault" % fmt_num(r["excess_at_fault_ml"]))
        if _isnum(se) and _isnum(allowed) and se > 0 and ex >= 0.05:
            notes.append("the cassette delivers %+.2f %% against its calibration: about %s mL "
                         "over the %s mL programmed (drift, not a fault)"
                         % (se, fmt_num(float(se) * float(allowed) / 100.0), fmt_num(allowed)))
        ok = None if "excess_ml" not in lim else float(ex) <= lim["excess_ml"]
        out.append(("excess over the programmed line (whole run)", "%s mL" % fmt_num(ex), notes,
                    "≤ %s mL" % fmt_num(lim["excess_ml"]) if "excess_ml" in lim else "", ok))
    bol = r.get("bolus_ml")
    if _isnum(bol) and ("bolus_ml" in lim or bol > 0):
        out.append(("bolus on clearing", "%s mL" % fmt_num(bol), [],
                    "≤ %s mL" % fmt_num(lim["bolus_ml"]) if "bolus_ml" in lim else "",
                    None if "bolus_ml" not in lim else bol <= lim["bolus_ml"]))
    p = prescribed_ml(r)
    if _isnum(r.get("delivered_ml")):
        out.append(("delivered (plant truth) / prescribed in the run" if p is not None else
                    "delivered (plant truth)", "%s mL%s" % (
                        fmt_num(r["delivered_ml"]), "" if p is None else " / %s mL" % fmt_num(p)),
                    [], "", None))
    if _isnum(r.get("dose_ug")):
        out.append(("dose / prescribed", "%s µg / %s µg" % (
            fmt_num(r["dose_ug"]), fmt_num(r.get("prescribed_dose_ug"))), [], "", None))
    if r.get("final_state"):
        out.append(("final state; alarms", "%s; %s" % (r["final_state"], _alarm_counts(
            a["code"] for a in r.get("alarms") or []) or "none"), [], "", None))
    return out


def qa_figures(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """qa_rows as HTML: (figure, value with its notes, limit, met?), the value escaped."""
    return [(what, _e(val) + "".join('<span class="note">%s</span>' % _e(n) for n in notes),
             limit, ok) for what, val, notes, limit, ok in qa_rows(r)]


def _md_code(text: str) -> str:
    """Escaped, with markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _refusal_html(code: str) -> str:
    from host.refusals import REFUSALS
    meaning, todo = REFUSALS.get(code, ("a code this version does not know", ""))
    return ('<div class="refusal"><b>Refused: %s</b> — %s.%s</div>'
            % (_e(code), _e(meaning), " <b>What to do:</b> %s." % _e(todo) if todo else ""))


def _card_html(r: dict[str, Any]) -> str:
    st = r["status"]
    name = str(r.get("scenario"))
    links = r.get("links") or {}
    parts = ['<section class="card %s" id="%s"><div>' % (_e(st), _e(anchor(name)))]
    parts.append('<h3>%s <span class="status %s">%s</span></h3>' % (_e(name), _e(st), _e(st)))
    if r.get("description"):
        parts.append('<p class="desc">%s</p>' % _e(r["description"]))
    if r.get("xfail"):
        parts.append('<p><b>Expected to fail:</b> %s</p>' % _e(r["xfail"]))
    if st == XPASS:
        parts.append("<p><b>Unexpectedly meets every expectation</b> (a finding): remove its "
                     "<code>[expect] xfail</code> so the expectation guards for real.</p>")
    if st == ERROR:
        parts.append("<p><b>%s</b></p><pre>%s</pre>" % (
            "Timed out" if r.get("timed_out") else "The run crashed",
            _e(str(r.get("error", "")).rstrip()[-3000:])))
    if not r.get("accepted", True) and r.get("reject_code"):
        parts.append(_refusal_html(str(r["reject_code"])))
    figs = qa_figures(r) if st != ERROR else []
    if figs:
        parts.append('<table class="qa">')
        for what, val, limit, ok in figs:
            parts.append('<tr><th>%s</th><td class="v">%s</td><td class="lim">%s%s</td></tr>'
                         % (_e(what), val, _e(limit) + " " if limit else "",
                            _mark(ok) if limit or ok is not None else ""))
        parts.append("</table>")
    exps = r.get("expectations") or []
    if exps:
        parts.append("<div><b>Expectations</b> (%s met)</div><ul class=\"exp\">%s</ul>" % (
            _e(_exp_summary(r)), "".join(
                '<li class="%s">%s %s <code>%s</code></li>' % (
                    "good" if e.get("passed") else "bad",
                    '<span class="tick">&#10003;</span>' if e.get("passed") else
                    '<span class="cross">&#10007;</span>',
                    _e(expectation_text(e)), _e(e.get("name"))) for e in exps)))
    tr = r.get("trumpet")
    if isinstance(tr, dict):
        parts.append("<p>Trumpet curve: mean error A %+.2f %%; %s.</p>" % (
            tr.get("mean_error_pct", 0.0), _e(", ".join(
                "%g min %+.2f / %+.2f %%" % (w["window_min"], w["max_pct"], w["min_pct"])
                for w in tr.get("windows", [])))))
    if links:
        parts.append('<div class="links">Files: %s</div>' % " ".join(
            '<a href="%s">%s</a>' % (_href(h), _e(lbl)) for lbl, h in links.items()))
    parts.append("</div>")
    plots = [(lbl, links[lbl], cap) for lbl, cap in (
        ("fault plot", "the fault up close: its excess and detection time against the limits"),
        ("plot", "the whole run: volume, excess over the programmed line, rate"),
        ("trumpet", "trumpet curve (PR-6)")) if lbl in links]
    if plots:
        # the first plot (the fault up close when there is a fault) at the column's width,
        # a second one too (a three-panel figure is unreadable at half of it); from three on,
        # the others half as wide beside each other: a scenario fits on one screen
        parts.append('<div class="plots">%s</div>' % "".join(
            '<figure class="%s"><a href="%s" title="open full size"><img src="%s" alt="%s: %s">'
            '</a><figcaption>%s (click for full size)</figcaption></figure>'
            % ("big" if i == 0 or len(plots) <= 2 else "small", _href(h), _href(h), _e(name),
               _e(cap), _e(cap))
            for i, (_lbl, h, cap) in enumerate(plots)))
    elif st != ERROR:
        parts.append('<div class="plots na">%s</div>' % (
            "No plot: the pump refused the program, nothing was delivered."
            if not r.get("accepted", True) else "No plot (run with plots on)."))
    parts.append("</section>")
    return "".join(parts)


def _summary_row(r: dict[str, Any]) -> str:
    st = r["status"]
    lim = limits(r)
    fe = r.get("fault_excess_ml")
    if r.get("faults") and _isnum(fe):
        ok = None if "fault_excess_ml" not in lim else float(fe) <= lim["fault_excess_ml"]
        fault = "%s mL%s" % (fmt_num(fe), "" if ok is None else " %s %s mL" % (
            "≤" if ok else "&gt;", fmt_num(lim["fault_excess_ml"])))
        fcls = "" if ok is None else ("ok" if ok else "bad")
    else:
        fault, fcls = "-", ""
    lat = r.get("detection_latency_s")
    if r.get("faults"):
        if _isnum(lat):
            ok = None if "latency_s" not in lim else float(lat) <= lim["latency_s"]
            det = "%s %s%s" % (_code(r.get("detection_alarm")), fmt_duration(lat),
                               "" if ok is None else " %s %s" % ("≤" if ok else "&gt;",
                                                                 fmt_duration(lim["latency_s"])))
        else:
            ok = False if "latency_s" in lim else None
            det = "none"
        dcls = "" if ok is None else ("ok" if ok else "bad")
    else:
        det, dcls = "-", ""
    return (
        '<tr class="%s"><td><a href="#%s">%s</a></td>' % (_e(st), _e(anchor(r.get("scenario"))),
                                                          _e(r.get("scenario")))
        + '<td class="status %s">%s</td>' % (_e(st), _e(st))
        + "<td>%s</td>" % ("accepted" if r.get("accepted") and not r.get("error") else
                           "-" if r.get("error") else
                           "refused: %s" % _code(r.get("reject_code") or "?"))
        + "<td>%s</td>" % _code(_alarm_summary(r, 3).replace(" x", " ×"))
        + '<td class="num %s">%s</td>' % (fcls, fault)
        + '<td class="num %s">%s</td>' % (dcls, det)
        + '<td class="num">%s</td>' % _e(_volume(r, " / "))
        + '<td class="num">%s</td></tr>' % _e(_exp_summary(r)))


def _traceability_html(rows: Sequence[dict[str, Any]], tests_junit: str | None) -> str:
    from sim import traceability as tr
    reqs = tr.requirements() if tr.REQUIREMENTS.exists() else []
    tmap = tr.tests_by_requirement() if tr.TESTS.exists() else {}
    bmap = tr.benchmarks_by_requirement() if tr.BENCH.exists() else {}
    smap: dict[str, list[str]] = {}
    for r in rows:
        text = " ".join([str(r.get("description") or "")] + [str(t) for t in r.get("tags") or []])
        text += " " + " ".join(str(e.get("name")) for e in r.get("expectations") or [])
        for req in tr._ids(tr._MENTION.findall(text)):
            smap.setdefault(req, []).append(str(r.get("scenario")))
    if tests_junit:
        tres = tr.junit_results(tests_junit)
        src = "from %s" % tests_junit
    elif tr.DOC.exists():
        tres, line = tr.recorded_results(tr.DOC.read_text(encoding="utf-8"))
        src = "as recorded in docs/traceability.md (%s)" % line
    else:
        tres, src = {}, "none available"
    status = {str(r.get("scenario")): str(r["status"]) for r in rows}
    known = {q.id for q in reqs}
    for req in sorted(set(tmap) | set(smap), key=tr._order):
        if req not in known:
            reqs.append(tr.Requirement(req, ""))
    out = ['<p class="legend">Every requirement of docs/requirements.md; a test checks it when '
           "its name carries the ID (<code>test_sr4_...</code>), a scenario of this run when its "
           "tags or description name it. Scenario results: this run. Test results: %s.</p>"
           % _e(src)]
    if not reqs:
        return out[0] + "<p>docs/requirements.md is not here (an installed tool).</p>"
    unchecked = [q.id for q in reqs if not tmap.get(q.id) and not smap.get(q.id)]
    out.append('<p class="%s">%s</p>' % (
        "bad" if unchecked else "ok",
        "Nothing checks %s." % ", ".join(unchecked) if unchecked else
        "Every requirement is checked by at least one test or scenario."))
    out.append('<table class="trace"><tr><th class="req">requirement</th><th class="res">'
               "result</th><th>scenarios (this run)</th><th>tests (latest result)</th></tr>")
    for q in reqs:
        tests = tmap.get(q.id, [])
        scens = smap.get(q.id, [])
        q.tests, q.scenarios, q.benchmarks = tests, scens, bmap.get(q.id, [])
        verdict = tr.verdict(q, tres, status)
        bad = "FAIL" in verdict or "NOTHING" in verdict
        sc_html = ", ".join('<a href="#%s">%s</a> <span class="status %s">%s</span>' % (
            _e(anchor(s)), _e(s), _e(status.get(s, "")), _e(status.get(s, ""))) for s in scens) \
            or '<span class="na">none</span>'
        if tests:
            fails = [t for t in tests if tres.get(t) == tr.FAIL]
            te_html = "<details><summary>%d test%s%s</summary><ul>%s</ul></details>" % (
                len(tests), "s" if len(tests) != 1 else "",
                ", %d failed" % len(fails) if fails else "", "".join(
                    "<li><code>%s</code> %s</li>" % (_e(t), _e(tres.get(t, tr.NOT_RUN)))
                    for t in tests))
        else:
            te_html = '<span class="na">none</span>'
        out.append('<tr id="req-%s"><td><b>%s</b> %s</td><td class="%s">%s</td><td>%s</td>'
                   "<td>%s</td></tr>" % (_e(q.id), _e(q.id), _md_code(q.text or "(not in "
                                                                          "requirements.md)"),
                                         "bad" if bad else "ok", _e(verdict), sc_html, te_html))
    out.append("</table>")
    return "".join(out)


def index_html(rows: Sequence[dict[str, Any]], wall_s: float, title: str = "pumpsim suite",
               source: str = "", extra_links: Iterable[tuple[str, str]] = (),
               command: str | None = None, info: dict[str, str] | None = None,
               tests_junit: str | None = None) -> str:
    c = counts(rows)
    hours = sum(float(r.get("sim_hours") or 0.0) for r in rows)
    ok = all_ok(rows)
    chips = "".join('<span class="chip %s">%d %s</span>' % (cls if n else "zero", n, label)
                    for cls, n, label in (
        (PASS, c[PASS], "pass"), (FAIL, c[FAIL], "fail"),
        (XFAIL, c[XFAIL], "expected to fail"), (XPASS, c[XPASS], "unexpectedly pass"),
        (ERROR, c[ERROR], "error")) if n or cls in (PASS, FAIL))
    chips += '<span class="chip">%.1f sim hours (%.1f days)</span>' % (hours, hours / 24.0)
    chips += '<span class="chip">%.1f s wall</span>' % wall_s
    verdict = ('<div class="verdict ok">Every scenario meets its expectations.</div>' if ok else
               '<div class="verdict bad">%d scenario(s) need attention (fail, error or '
               'unexpected pass).</div>' % (c[FAIL] + c[ERROR] + c[XPASS]))
    if info is None:
        info = build_info(command, source)
    build = "".join("<tr><th>%s</th><td>%s</td></tr>" % (
        _e(k), "<code>%s</code>" % _e(v) if k in ("command line", "firmware sha256",
                                                   "git commit") else _e(v))
        for k, v in info.items() if v)
    extra = " ".join('<a href="%s">%s</a>' % (_href(h), _e(t)) for t, h in extra_links)
    ordered = sorted(rows, key=lambda r: (_ORDER.get(r["status"], 9), str(r.get("scenario"))))
    head = ('<tr><th style="width:25%">scenario</th><th style="width:7%">status</th>'
            '<th style="width:15%">program</th><th style="width:14%">alarms</th>'
            '<th style="width:11%">fault excess (limit)</th>'
            '<th style="width:13%">detected after (limit)</th>'
            '<th style="width:9%">delivered / prescribed mL</th>'
            '<th style="width:6%">expect&shy;ations</th></tr>')
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>%s</title>" % _e(title),
        "<style>%s</style></head><body>" % _CSS,
        "<h1>%s</h1>" % _e(title),
        verdict,
        '<div class="summary">%s</div>' % chips,
        '<table class="build">%s</table>' % build,
        '<nav>Contents: <a href="#scenarios">scenarios</a> <a href="#details">each scenario'
        '</a> <a href="#requirements">requirement traceability</a> %s</nav>' % extra,
        '<h2 id="scenarios">Scenarios</h2>',
        '<p class="legend">Rows that need attention come first; click a name for its details. '
        "<i>Fault excess</i>: what the injected fault made the pump deliver above the "
        "programmed line (the cassette's own drift before it taken out); <i>detected "
        "after</i>: from the fault to the alarm that answered it. docs/report.md explains "
        "every figure.</p>",
        '<table class="scen">', head, *(_summary_row(r) for r in ordered), "</table>",
        '<h2 id="details">Each scenario</h2>',
        *(_card_html(r) for r in ordered),
        '<h2 id="requirements">Requirement traceability</h2>',
        _traceability_html(rows, tests_junit),
        "</body></html>", ""])


def write_index(out_dir: str | Path, rows: Sequence[dict[str, Any]], wall_s: float,
                **kw: Any) -> Path:
    p = Path(out_dir) / "index.html"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(index_html(rows, wall_s, **kw), encoding="utf-8")
    return p
