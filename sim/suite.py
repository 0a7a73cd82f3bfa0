"""`pumpsim suite DIR`: every scenario of a folder, in parallel processes, judged and reported.

Flow: load and validate every `*.toml` in DIR first (any invalid file: exit 2 naming the file
and the field, nothing run); run them in a process pool (longest first, so the pool ends
together), each worker writing its result JSON, trace, journal and plots under
`<out>/<name>/`; then print the table, write `<out>/index.html`, `<out>/results.json`,
`<out>/summary.txt` and the JUnit XML.

Exit codes: 0 every scenario meets its expectations (an expected-to-fail scenario that fails
counts as ok); 1 a scenario failed, crashed, or passed while marked xfail (a stale marker
is a finding); 2 an invalid scenario file or folder.

`pumpsim trumpet --rate R` (also here) runs the IEC 60601-2-24 style accuracy run: a 2-hour
infusion sampled every 30 s on the nominal plant, analysed by sim.trumpet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sim import report
from sim.scenario import Scenario, ScenarioError, bag_table, load, loads

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2
# Per-scenario wall-clock limit: the longest bundled scenario (a 28-day cycle) takes about
# 10 s, the longest run a file may ask for (2400 h) well under a minute; ten minutes means
# something is wrong (a hang, a runaway loop), and the rest of the suite must still run.
DEFAULT_TIMEOUT_S = 600.0


class ScenarioTimeout(BaseException):
    """Raised inside a scenario's run when its time limit is up. A BaseException, so that no
    `except Exception` on the way can swallow it."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after `seconds` of wall-clock time (SIGALRM; where there is no
    such signal, or off the main thread, the block runs unlimited)."""
    if not seconds or not hasattr(signal, "setitimer") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise ScenarioTimeout("still running after %g s" % seconds)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)


# --- one scenario (runs in a worker process) --------------------------------------------------

def prescribed_ml(sc: Scenario, hours: float) -> float:
    """What the plan means to infuse within `hours`: each bag's label volume, pro rata over
    its label duration on the plan's timeline (bag changes and interruptions included)."""
    t = 0.0
    total = 0.0
    for bag in sc.bags:
        t += bag.gap_ms / 3600000.0
        end = t + bag.bag_hours
        total += bag.infusible_ml * max(0.0, min(end, hours) - t) / bag.bag_hours
        t = end
    return total


def run_one(path: str, out_dir: str, plots: bool = True,
            timeout_s: float | None = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Run one scenario file within `timeout_s` seconds of wall-clock time (None or 0: no
    limit); returns its report row (never raises). A scenario still running at its limit is
    stopped and reported as an error."""
    row: dict[str, Any] = {"file": path, "scenario": Path(path).stem}
    t0 = time.perf_counter()
    try:
        with time_limit(timeout_s):
            _run_one(row, path, out_dir, plots)
    except ScenarioError as e:
        row["invalid"] = "%s: %s" % (path, e) if not str(e).startswith(path) else str(e)
    except ScenarioTimeout:
        row["timed_out"] = timeout_s
        row["error"] = ("timed out: still running after %g s of wall-clock time, stopped "
                        "(pumpsim suite --timeout sets the limit)" % (timeout_s or 0.0))
        row["wall_s"] = round(time.perf_counter() - t0, 4)
    except Exception:
        row["error"] = traceback.format_exc()
        row.setdefault("wall_s", time.perf_counter() - t0)
    row["status"] = report.outcome(row, row.get("xfail"))
    return row


def _run_one(row: dict[str, Any], path: str, out_dir: str, plots: bool) -> None:
    sc = load(path)
    row["scenario"] = sc.name
    row["xfail"] = sc.expect.get("xfail")
    row["description"] = sc.description
    row["tags"] = list(sc.tags)
    from sim.runner import run_scenario
    row.update(run_scenario(sc, out_dir=out_dir))
    finish(row, sc, Path(out_dir), plots)


def finish(row: dict[str, Any], sc: Scenario, out: Path, plots: bool = True) -> None:
    """What `pumpsim run --out` and the suite write beside a run's result: the plots (volume,
    excess and rate; the fault up close; the trumpet curve), the decoded journal, and the
    links the report needs (relative to `out`). Adds `plot_file` / `fault_plot_file` and the
    PR-6 expectations of a trumpet run to `row`."""
    row.setdefault("prescribed_ml", round(prescribed_ml(sc, sc.hours), 3))
    sdir = out / sc.name
    sdir.mkdir(parents=True, exist_ok=True)
    if plots:
        _plots(row, sc, sdir)
        for key, name in (("plot_file", "plot.png"), ("fault_plot_file", "fault.png")):
            if (sdir / name).exists():
                row[key] = str(sdir / name)
    _links(row, sdir, out)


def _plots(row: dict[str, Any], sc: Scenario, sdir: Path) -> None:
    trace = row.get("trace_file")
    if not trace or not Path(trace).exists():
        return
    lim = report.limits(row)
    if row.get("accepted", True) or float(row.get("delivered_ml") or 0.0) > 0.0:
        # a program the pump refused delivers nothing: no all-zero plot for it
        from sim.plots import plot_scenario
        title = "%s — %s" % (sc.name, _verdict_text(row))
        plot_scenario(trace, sdir / "plot.png", title=title, alarms=row.get("alarms"),
                      faults=row.get("faults"), excess_limit_ml=lim.get("excess_ml"))
    fault = row.get("fault_file")
    if fault and Path(fault).exists() and row.get("faults"):
        from sim.plots import plot_fault_window
        plot_fault_window(fault, sdir / "fault.png", float(row["faults"][0]["t_s"]),
                          trace_csv=trace, alarms=row.get("alarms"), faults=row.get("faults"),
                          excess_limit_ml=lim.get("fault_excess_ml"),
                          latency_limit_s=lim.get("latency_s"),
                          detection=report.detection(row),
                          title=sc.name)
    if sc.report.get("trumpet"):
        from sim import trumpet
        tr = trumpet.from_trace(trace)
        trumpet.write_trumpet(tr, sdir, title="%s: trumpet curve, %g mL/h" %
                              (sc.name, tr.rate_ml_per_h))
        row["trumpet"] = tr.to_dict()
        # PR-6 is a product requirement: where it applies, the suite judges it too.
        for chk in trumpet.pr6_checks(tr):
            row.setdefault("expectations", []).append({
                "name": "PR-6 trumpet %g-min windows at %g mL/h within ±%g %%"
                        % (chk["window_min"], chk["rate_ml_per_h"], chk["limit_pct"]),
                "expected": "<= %g %%" % chk["limit_pct"],
                "actual": "%.3f %%" % chk["worst_pct"], "passed": bool(chk["met"])})


def decode_journal(src: Path, dest: Path) -> int:
    """journal.bin as journal.csv: every valid record in slot order, decoded by the
    firmware's own parser into the columns of `pumpctl log`; returns the record count."""
    import csv
    import io

    from host.client import record_dict
    from pump.journal import REC_SIZE, Journal

    data = src.read_bytes()
    j = Journal(None)
    recs = []
    for slot in range(len(data) // REC_SIZE):
        p = j.parse(data[slot * REC_SIZE:(slot + 1) * REC_SIZE])
        if p is not None:
            recs.append(record_dict(slot, p))
    recs.sort(key=lambda d: d["seq"])
    cols: list[str] = []
    for r in recs:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols or ["slot", "seq", "kind", "state"])
    w.writeheader()
    w.writerows(recs)
    dest.write_text(buf.getvalue(), encoding="utf-8")
    return len(recs)


def _verdict_text(row: dict[str, Any]) -> str:
    if not row.get("accepted", True):
        return "rejected %s" % row.get("reject_code")
    return "%s, delivered %.2f mL, dose %.1f µg (prescribed %.1f µg)" % (
        row.get("final_state"), row.get("delivered_ml") or 0.0, row.get("dose_ug") or 0.0,
        row.get("prescribed_dose_ug") or 0.0)


def _links(row: dict[str, Any], sdir: Path, out: Path) -> None:
    """Links relative to the report folder, only to files that exist. The journal is linked
    decoded (journal.csv, as `pumpctl log` writes it), not as the raw binary."""
    j = row.get("journal_file")
    if j and Path(j).exists():
        try:
            row["journal_records"] = decode_journal(Path(j), sdir / "journal.csv")
        except (OSError, ValueError) as e:
            row["journal_error"] = str(e)
    names = (("plot", "plot.png"), ("fault plot", "fault.png"), ("trumpet", "trumpet.png"),
             ("result", "result.json"), ("trace", "trace.csv"), ("fault window", "fault.csv"),
             ("journal", "journal.csv"), ("trumpet data", "trumpet.json"))
    links: dict[str, str] = {}
    for label, fname in names:
        if (sdir / fname).exists():
            links[label] = (sdir / fname).relative_to(out).as_posix()
    row["links"] = links
    if "plot" in links:
        row["plot"] = links["plot"]


# --- the suite --------------------------------------------------------------------------------

def discover(folder: str) -> list[str]:
    p = Path(folder)
    if not p.is_dir():
        raise ScenarioError("%s: not a folder of scenario files" % folder)
    files = sorted(str(f) for f in p.glob("*.toml"))
    if not files:
        raise ScenarioError("%s: no *.toml scenario files" % folder)
    return files


def validate(files: list[str]) -> tuple[list[tuple[str, Scenario]], list[str]]:
    """Load every file; returns (loaded, error messages naming file and field)."""
    loaded: list[tuple[str, Scenario]] = []
    errors: list[str] = []
    names: dict[str, str] = {}
    for f in files:
        try:
            sc = load(f)
        except ScenarioError as e:
            msg = str(e)
            errors.append(msg if msg.startswith(f) else "%s: %s" % (f, msg))
            continue
        problem = _report_problem(sc)
        if problem:
            errors.append("%s: %s" % (f, problem))
            continue
        if sc.name in names:
            errors.append("%s: name: %r is also the name of %s (outputs would collide)"
                          % (f, sc.name, names[sc.name]))
            continue
        names[sc.name] = f
        loaded.append((f, sc))
    return loaded, errors


def _report_problem(sc: Scenario) -> str | None:
    """The [report] options the suite acts on, checked before anything runs."""
    tr = sc.report.get("trumpet", False)
    if not isinstance(tr, bool):
        return "report.trumpet: expected true or false, got %r" % (tr,)
    if tr and sc.sample_s > 30.0:
        return "report.trumpet: needs run.sample_s <= 30 (IEC samples every 30 s), got %g" \
            % sc.sample_s
    if tr and sc.hours < 2.0:
        return "report.trumpet: needs run.hours >= 2 (it analyses the second hour), got %g" \
            % sc.hours
    return None


class Progress:
    """A one-line progress bar on a terminal; one line per finished scenario otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 28) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.t0 = time.perf_counter()
        self.tty = self.stream.isatty()

    def update(self, name: str, status: str) -> None:
        self.done += 1
        el = time.perf_counter() - self.t0
        if self.tty:
            fill = int(self.width * self.done / max(self.total, 1))
            bar = "#" * fill + "." * (self.width - fill)
            self.stream.write("\r[%s] %d/%d %5.1fs  %-40.40s" % (bar, self.done, self.total,
                                                               el, "%s %s" % (name, status)))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write("[%*d/%d] %5.1fs %-6s %s\n" % (len(str(self.total)), self.done,
                                                             self.total, el, status, name))
        self.stream.flush()


def run_suite(folder: str, out: str = "report", jobs: int | None = None,
              junit: str | None = None, plots: bool = True, match: str | None = None,
              stdout: TextIO | None = None, stderr: TextIO | None = None,
              timeout_s: float | None = DEFAULT_TIMEOUT_S, command: str | None = None,
              tests_junit: str | None = None) -> int:
    """The whole `pumpsim suite`; returns the exit code. `command` is the command line the
    report's header shows; `tests_junit` a pytest JUnit XML whose results the report's
    requirement traceability shows (else those docs/traceability.md recorded)."""
    so = stdout if stdout is not None else sys.stdout
    se = stderr if stderr is not None else sys.stderr
    t0 = time.perf_counter()
    try:
        files = discover(folder)
    except ScenarioError as e:
        se.write("pumpsim suite: %s\n" % e)
        return EXIT_INVALID
    loaded, errors = validate(files)
    if errors:
        for m in errors:
            se.write("pumpsim suite: invalid scenario: %s\n" % m)
        se.write("pumpsim suite: %d invalid file(s); nothing was run\n" % len(errors))
        return EXIT_INVALID
    if match:
        loaded = [(f, sc) for f, sc in loaded if match in sc.name]
        if not loaded:
            se.write("pumpsim suite: no scenario name contains %r\n" % match)
            return EXIT_INVALID
    # longest first: a 28-day run started last would leave the other workers idle
    loaded.sort(key=lambda fs: -fs[1].hours)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(loaded)))
    progress = Progress(len(loaded), se)
    rows: list[dict[str, Any]] = []
    if n_jobs == 1:
        for f, _sc in loaded:
            row = run_one(f, str(outp), plots, timeout_s)
            rows.append(row)
            progress.update(row["scenario"], row["status"])
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures: dict[Future[dict[str, Any]], Scenario] = {
                pool.submit(run_one, f, str(outp), plots, timeout_s): sc for f, sc in loaded}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        row = fut.result()
                    except Exception:      # a worker died (killed, out of memory)
                        sc = futures[fut]
                        row = {"scenario": sc.name, "file": sc.path, "xfail": None,
                               "error": traceback.format_exc()}
                        row["status"] = report.outcome(row)
                    rows.append(row)
                    progress.update(row["scenario"], row["status"])
    invalid = [r for r in rows if r.get("invalid")]
    if invalid:
        for r in invalid:
            se.write("pumpsim suite: invalid scenario: %s\n" % r["invalid"])
        return EXIT_INVALID
    rows.sort(key=lambda r: str(r.get("scenario")))
    wall = time.perf_counter() - t0
    table = report.format_table(rows)
    details = report.format_details(rows)
    summary = report.summary_line(rows, wall)
    so.write(table + "\n\n")
    if details:
        so.write(details + "\n\n")
    so.write(summary + "\n")
    junit_path = Path(junit) if junit else outp / "junit.xml"
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    junit_path.write_text(report.junit_xml(rows, wall), encoding="utf-8")
    (outp / "summary.txt").write_text("\n\n".join(x for x in (table, details, summary) if x)
                                      + "\n", encoding="utf-8")
    (outp / "results.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k not in ("links", "plot")} for r in rows],
        indent=1, default=str) + "\n", encoding="utf-8")
    extra = [("results.json", "results.json"), ("summary.txt", "summary.txt")]
    try:
        extra.append(("JUnit XML", junit_path.resolve().relative_to(outp.resolve()).as_posix()))
    except ValueError:
        extra.append(("JUnit XML", junit_path.resolve().as_uri()))
    index = report.write_index(outp, rows, wall, source=str(folder), extra_links=extra,
                               command=command, tests_junit=tests_junit)
    so.write("report: %s\n" % index)
    return EXIT_OK if report.all_ok(rows) else EXIT_FAIL


def add_suite_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="folder of scenario files (*.toml)")
    p.add_argument("--out", default="report", metavar="DIR",
                   help="report folder (default: report)")
    p.add_argument("--jobs", "-j", type=number(1, 1024, integer=True), default=None,
                   metavar="N",
                   help="worker processes (default: one per CPU)")
    p.add_argument("--junit", default=None, metavar="FILE",
                   help="JUnit XML file (default: OUT/junit.xml)")
    p.add_argument("-k", dest="match", default=None, metavar="TEXT",
                   help="only scenarios whose name contains TEXT")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="skip the PNG plots (faster)")
    p.add_argument("--timeout", type=number(0.0, 86400.0), default=DEFAULT_TIMEOUT_S,
                   metavar="S", help="stop a scenario still running after S seconds of wall-"
                   "clock time and report it as an error (default %g; 0: no limit)"
                   % DEFAULT_TIMEOUT_S)
    p.add_argument("--tests-junit", metavar="FILE", default=None,
                   help="a pytest JUnit XML (pytest --junitxml FILE): the report's "
                   "requirement traceability shows those test results (default: the ones "
                   "docs/traceability.md recorded)")


def number(lo: float, hi: float, integer: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number lo <= x <= hi (an int with `integer`)."""
    def parse(text: str) -> float:
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected %s, got %r"
                                             % ("an integer" if integer else "a number",
                                                text)) from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise argparse.ArgumentTypeError("expected %g to %g, got %r" % (lo, hi, text))
        return v
    return parse


def main_suite(args: argparse.Namespace) -> int:
    return run_suite(args.folder, out=args.out, jobs=args.jobs, junit=args.junit,
                     plots=args.plots, match=args.match, timeout_s=args.timeout or None,
                     command=getattr(args, "command_line", None), tests_junit=args.tests_junit)


# --- pumpsim trumpet --------------------------------------------------------------------------

def label_bag(rate_ml_per_h: float) -> tuple[int, float]:
    """(bag hours, label rate) of the bag whose label rate is rate_ml_per_h (within 1 %)."""
    for h, (rate, _ml) in sorted(bag_table().items()):
        if abs(rate - rate_ml_per_h) <= 0.01 * rate:
            return h, rate
    known = ", ".join("%.3g" % r for r, _ in sorted(bag_table().values()))
    raise ScenarioError("--rate: %g mL/h is not the label rate of any bag (%s)"
                        % (rate_ml_per_h, known))


def trumpet_scenario(rate_ml_per_h: float, hours: float = 2.0, seed: int = 1,
                     ideal: bool = False) -> Scenario:
    """A nominal infusion at a label rate, sampled every 30 s (the IEC sample interval)."""
    bag_hours, _rate = label_bag(rate_ml_per_h)
    text = "\n".join([
        'name = "trumpet-%g-ml-h"' % rate_ml_per_h,
        'description = "IEC 60601-2-24 style accuracy run (PR-6)"',
        "[patient]", "weight_kg = 70.0",
        "[prescription]", 'drug = "blinatumomab"', "dose_ug_per_day = 28.0",
        "bag_hours = %d" % bag_hours,
        "[run]", "hours = %r" % float(hours), "seed = %d" % seed, "sample_s = 30",
        "[plant]", "ideal = %s" % ("true" if ideal else "false"),
        "[report]", "trumpet = true", ""])
    return loads(text, "<trumpet %g mL/h>" % rate_ml_per_h)


def run_trumpet(rate_ml_per_h: float, hours: float = 2.0, out: str | None = None,
                seed: int = 1, ideal: bool = False) -> tuple[Any, dict[str, Any]]:
    """Run the accuracy scenario and analyse it against the label rate; returns
    (Trumpet, result). With `out`, the run's trace.csv, journal.bin and result.json go into
    that folder itself (the result's paths say where)."""
    import shutil
    import tempfile

    from sim import trumpet
    from sim.runner import run_scenario
    _h, label_rate = label_bag(rate_ml_per_h)
    sc = trumpet_scenario(rate_ml_per_h, hours, seed, ideal)
    with tempfile.TemporaryDirectory(prefix="pumpsim-trumpet-") as tmp:
        result = run_scenario(sc, out_dir=tmp)
        if not result.get("accepted"):
            raise trumpet.TrumpetError("the program was rejected: %s" % result.get("reject_code"))
        tr = trumpet.from_trace(result["trace_file"], label_rate)
        if out is not None:
            dest = Path(out)
            dest.mkdir(parents=True, exist_ok=True)
            for key, name in (("trace_file", "trace.csv"), ("journal_file", "journal.bin")):
                if result.get(key) and Path(result[key]).exists():
                    shutil.copyfile(result[key], dest / name)
                    result[key] = str(dest / name)
            (dest / "result.json").write_text(json.dumps(result, indent=2) + "\n",
                                              encoding="utf-8")
        else:
            result.pop("trace_file", None)
            result.pop("journal_file", None)
    return tr, result


def add_trumpet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=number(0.001, 10000.0), required=True, metavar="ML_PER_H",
                   help="programmed rate in mL/h: a bag's label rate (10, 5, 0.6, ...)")
    p.add_argument("--hours", type=number(2.0, 48.0), default=2.0,
                   help="length of the run, 2 to 48 (default 2; the analysis is the second "
                   "hour)")
    p.add_argument("--out", default="report/trumpet", metavar="DIR",
                   help="the folder trace.csv, result.json, journal.bin, trumpet.png and "
                        "trumpet.json are written to (default: report/trumpet)")
    p.add_argument("--seed", type=number(0, 2 ** 63 - 1, integer=True), default=1,
                   help="the plant's random seed: the same seed, the same run (default 1)")
    p.add_argument("--ideal", action="store_true",
                   help="no stroke or cassette variation (default: the nominal plant)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def main_trumpet(args: argparse.Namespace) -> int:
    from sim import trumpet
    try:
        tr, _result = run_trumpet(args.rate, args.hours, args.out, int(args.seed), args.ideal)
    except (ScenarioError, trumpet.TrumpetError) as e:
        sys.stderr.write("pumpsim trumpet: %s\n" % e)
        return EXIT_INVALID
    files = trumpet.write_trumpet(tr, Path(args.out),
                                  title="Trumpet curve, %g mL/h, %s plant (seed %d)"
                                  % (args.rate, "ideal" if args.ideal else "nominal",
                                     args.seed))
    if args.json:
        print(json.dumps({**tr.to_dict(), "files": files}, indent=2))
    else:
        print(trumpet.format_table(tr))
        print("plot: %s" % files["png"])
    return EXIT_OK


# --- registration with sim/cli.py -------------------------------------------------------------

def add_parser(sub: Any) -> None:
    """Called by sim/cli.py (SUBCOMMANDS["suite"]): adds `pumpsim suite` and `pumpsim trumpet`."""
    p = sub.add_parser("suite", help="run every scenario of a folder in parallel; table, JUnit "
                       "XML and an HTML report",
                       description="Run every *.toml scenario in DIR in parallel processes. "
                       "Exit 0 when every scenario meets its expectations (expected-to-fail "
                       "ones may fail), 1 otherwise, 2 for an invalid file.")
    add_suite_arguments(p)
    p.set_defaults(func=main_suite)
    t = sub.add_parser("trumpet", help="IEC 60601-2-24 style accuracy run: trumpet curve "
                       "of the second hour (PR-6)",
                       description="Run a nominal infusion at --rate for --hours (sampled every "
                       "30 s) and compute the trumpet curve of the second hour.")
    add_trumpet_arguments(t)
    t.set_defaults(func=main_trumpet)
