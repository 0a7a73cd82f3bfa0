"""Requirement traceability: every SR-n and PR-n of docs/requirements.md, the tests and the
scenarios that check it, and their latest result.

What checks a requirement is read from the source, never kept by hand:

- a test checks SR-n when its function name carries the token `srN` (`test_sr4_...`,
  `test_pr3_occlusion_and_sr10_dropout`), in any tests/**/*.py;
- a scenario checks it when its tags or description name it (`tags = ["sr-4"]`,
  "... (PR-1)");
- a benchmark (bench/*.py) that names it measures it: listed, but a benchmark prints
  figures and judges nothing, so it does not count as a check.

Results come from a pytest JUnit XML (`--junit`, or `--run-tests` to run the mapped tests
now; a firmware test run under MicroPython by tests/test_micropython.py counts as a run of
the same test) and from a suite's results.json (`--results`).

    python -m sim.traceability --run-tests --results report/results.json
        writes docs/traceability.md (the default --out)

tests/test_traceability.py fails when the map in docs/traceability.md is not the map of the
source tree (a requirement, a test or a scenario added, renamed or removed without
regenerating it); the results it records are those of the day it was generated.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "docs" / "requirements.md"
DOC = ROOT / "docs" / "traceability.md"
TESTS = ROOT / "tests"
SCENARIOS = ROOT / "scenarios"
BENCH = ROOT / "bench"

_REQ_ROW = re.compile(r"^\|\s*((?:SR|PR)-\d+)\s*\|\s*(.+?)\s*\|\s*$")
_TOKEN = re.compile(r"^(sr|pr)(\d+)$")
_MENTION = re.compile(r"\b(SR|PR)-(\d+)\b", re.I)
_MPY = re.compile(r"\[mpy::(\w+)::(\w+)\]")

PASS, FAIL, SKIP, NOT_RUN = "pass", "fail", "skipped", "not run"


@dataclass
class Requirement:
    id: str
    text: str
    tests: list[str] = field(default_factory=list)       # "tests/x.py::test_name"
    scenarios: list[str] = field(default_factory=list)   # scenario names
    benchmarks: list[str] = field(default_factory=list)  # "bench/x.py"

    @property
    def checked(self) -> bool:
        return bool(self.tests or self.scenarios)


def requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    """The SR-n and PR-n rows of docs/requirements.md, in document order."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _REQ_ROW.match(line)
        if m:
            out.append(Requirement(m.group(1), m.group(2)))
    return out


def _ids(tokens: Iterable[tuple[str, str]]) -> list[str]:
    return sorted({"%s-%d" % (k.upper(), int(n)) for k, n in tokens}, key=_order)


def _order(req: str) -> tuple[str, int]:
    kind, _, n = req.partition("-")
    return kind, int(n)


def tests_by_requirement(root: Path = TESTS) -> dict[str, list[str]]:
    """{"SR-4": ["tests/fw/test_delivery.py::test_sr4_...", ...]}: every test function (or
    method) whose name carries a requirement token."""
    out: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.name.startswith("test"):
                owner = _owner(tree, node)
                tid = "%s::%s%s" % (rel, owner + "::" if owner else "", node.name)
                toks = [(m.group(1), m.group(2)) for m in map(_TOKEN.match, node.name.split("_"))
                        if m]
                for req in _ids(toks):
                    out.setdefault(req, []).append(tid)
    return {k: sorted(set(v)) for k, v in out.items()}


def _owner(tree: ast.Module, fn: ast.AST) -> str:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and fn in node.body:
            return node.name
    return ""


def scenarios_by_requirement(folder: Path = SCENARIOS) -> dict[str, list[str]]:
    """{"PR-1": ["runaway-motor-10x-24h-bag", ...]}: scenarios whose tags or description
    name the requirement."""
    out: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        name = str(data.get("name", path.stem))
        text = " ".join([str(data.get("description", ""))]
                        + [str(t) for t in data.get("tags", [])])
        for req in _ids(_MENTION.findall(text)):
            out.setdefault(req, []).append(name)
    return {k: sorted(v) for k, v in out.items()}


def benchmarks_by_requirement(folder: Path = BENCH) -> dict[str, list[str]]:
    """{"PR-4": ["bench/bench_sim.py"]}: benchmark scripts that name the requirement."""
    out: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.py")):
        for req in _ids(_MENTION.findall(path.read_text(encoding="utf-8"))):
            out.setdefault(req, []).append(path.relative_to(folder.parent).as_posix())
    return out


def trace(reqs: Sequence[Requirement] | None = None, tests_root: Path = TESTS,
          scenario_dir: Path = SCENARIOS, bench_dir: Path = BENCH) -> list[Requirement]:
    """Every requirement with what checks it (a test or scenario naming an ID that
    docs/requirements.md lacks is listed under that ID too, with no text: a typo to fix)."""
    rs = list(reqs) if reqs is not None else requirements()
    by_id = {r.id: r for r in rs}
    for src, attr in ((tests_by_requirement(tests_root), "tests"),
                      (scenarios_by_requirement(scenario_dir), "scenarios"),
                      (benchmarks_by_requirement(bench_dir), "benchmarks")):
        for req, items in src.items():
            if req not in by_id:
                by_id[req] = Requirement(req, "")
                rs.append(by_id[req])
            setattr(by_id[req], attr, items)
    return rs


# --- results ----------------------------------------------------------------------------------

def junit_results(path: str | Path) -> dict[str, str]:
    """{test id: pass/fail/skipped} from a pytest JUnit XML. Parametrized cases and the
    MicroPython runs of a firmware test fold into one result per test: fail if any failed,
    pass if any passed, else skipped."""
    root = ET.parse(path).getroot()
    seen: dict[str, set[str]] = {}
    for tc in root.iter("testcase"):
        name = tc.get("name") or ""
        cls = tc.get("classname") or ""
        m = _MPY.search(name)
        if m:
            tid = "tests/fw/%s.py::%s" % m.groups()
        else:
            parts = cls.split(".")
            # classname is the module path, plus a class when the test is a method
            mod, owner = (parts[:-1], parts[-1]) if parts and parts[-1][:1].isupper() \
                else (parts, "")
            tid = "%s.py::%s%s" % ("/".join(mod), owner + "::" if owner else "",
                                   name.split("[")[0])
        if tc.find("failure") is not None or tc.find("error") is not None:
            st = FAIL
        elif tc.find("skipped") is not None:
            st = SKIP
        else:
            st = PASS
        seen.setdefault(tid, set()).add(st)
    return {k: FAIL if FAIL in v else PASS if PASS in v else SKIP for k, v in seen.items()}


def run_tests(test_ids: Sequence[str], cwd: Path = ROOT) -> dict[str, str]:
    """Run these tests now (pytest, this interpreter) and return their results. The
    MicroPython runs of the firmware tests among them run too."""
    fw = [t.split("::")[-1] for t in test_ids if t.startswith("tests/fw/")]
    with tempfile.TemporaryDirectory(prefix="trace-") as tmp:
        xml = Path(tmp) / "tests.xml"
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--junitxml", str(xml), *sorted({t.split("::")[0] for t in test_ids})]
        if fw:
            args += ["tests/test_micropython.py"]
        # only the mapped tests: a -k expression over their names
        names = sorted({t.split("::")[-1] for t in test_ids})
        args += ["-k", " or ".join(names)]
        subprocess.run(args, cwd=cwd, check=False, stdout=subprocess.DEVNULL)
        if not xml.exists():
            return {}
        got = junit_results(xml)
    return {t: got.get(t, NOT_RUN) for t in test_ids}


def scenario_results(path: str | Path) -> dict[str, str]:
    """{scenario: status} from a suite's results.json."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return {str(r.get("scenario")): str(r.get("status")) for r in rows}


def verdict(r: Requirement, tests: dict[str, str], scenarios: dict[str, str]) -> str:
    """One line for the latest-result column."""
    if not r.checked:
        return "NOTHING CHECKS IT" + ("; measured by %s (figures, no pass/fail)"
                                      % ", ".join(r.benchmarks) if r.benchmarks else "")
    parts = []
    for what, items, res, ok in (("test", r.tests, tests, (PASS,)),
                                 ("scenario", r.scenarios, scenarios, ("pass", "xfail"))):
        if not items:
            continue
        known = [res[i] for i in items if i in res and res[i] != NOT_RUN]
        good = sum(1 for s in known if s in ok)
        bad = [s for s in known if s not in ok and s != SKIP]
        text = "%d/%d %s%s pass" % (good, len(items), what, "s" if len(items) != 1 else "")
        if bad:
            text += ", %d FAIL" % len(bad)
        if len(known) < len(items):
            text += ", %d not run" % (len(items) - len(known))
        parts.append(text)
    return "; ".join(parts)


# --- docs/traceability.md --------------------------------------------------------------------

def markdown(reqs: Sequence[Requirement], tests: dict[str, str], scenarios: dict[str, str],
             generated: str) -> str:
    lines = [
        "# Requirement traceability",
        "",
        "Every safety requirement (SR-n) and performance target (PR-n) of",
        "[requirements.md](requirements.md), the tests and the bundled scenarios that check",
        "it, and their latest result. Generated by `python -m sim.traceability` (see",
        "`sim/traceability.py`): a test checks a requirement when its name carries the ID",
        "(`test_sr4_...`), a scenario when its tags or description name it.",
        "`tests/test_traceability.py` fails when this map is not the source tree's.",
        "",
        "Results: %s." % generated,
        "",
    ]
    unchecked = [r.id for r in reqs if not r.checked]
    lines += ["**Nothing checks %s.**" % ", ".join(unchecked) if unchecked else
              "Every requirement is checked by at least one test or scenario.", ""]
    lines += ["| requirement | latest result | tests | scenarios | benchmarks |",
              "|---|---|---|---|---|"]
    for r in reqs:
        t = "<br>".join("`%s` %s" % (i, tests.get(i, NOT_RUN)) for i in r.tests) or "—"
        s = "<br>".join("`%s` %s" % (i, scenarios.get(i, NOT_RUN)) for i in r.scenarios) \
            or "—"
        head = "**%s** %s" % (r.id, r.text.replace("|", "\\|")) if r.text else \
            "**%s** (not in requirements.md)" % r.id
        b = "<br>".join("`%s`" % i for i in r.benchmarks) or "—"
        lines.append("| %s | %s | %s | %s | %s |" % (head, verdict(r, tests, scenarios), t, s,
                                                     b))
    return "\n".join(lines) + "\n"


def parse_markdown(text: str) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """{requirement: (tests, scenarios, benchmarks)} as a generated docs/traceability.md
    lists them."""
    out: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for line in text.splitlines():
        m = re.match(r"^\| \*\*((?:SR|PR)-\d+)\*\*", line)
        if not m:
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        tests = re.findall(r"`([^`]+)`", cells[2])
        scens = re.findall(r"`([^`]+)`", cells[3])
        bench = re.findall(r"`([^`]+)`", cells[4])
        out[m.group(1)] = (tests, scens, bench)
    return out


def recorded_results(text: str) -> tuple[dict[str, str], str]:
    """({test id or scenario: result}, the 'Results:' line) as docs/traceability.md
    recorded them."""
    got: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("| **"):
            for name, res in re.findall(r"`([^`]+)` ([a-zA-Z][\w ]*?)(?=<br>| \|)", line):
                got[name] = res.strip()
    m = re.search(r"^Results: (.*)\.$", text, re.M)
    return got, m.group(1) if m else ""


def _git_commit() -> str:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return p.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.traceability",
                                 description="Write docs/traceability.md: every requirement, "
                                 "the tests and scenarios that check it, their latest result.")
    ap.add_argument("--out", default=str(DOC), help="the file to write (default: %(default)s)")
    ap.add_argument("--junit", metavar="FILE", help="test results: a pytest JUnit XML")
    ap.add_argument("--run-tests", action="store_true",
                    help="run the mapped tests now for their results (a few minutes)")
    ap.add_argument("--results", metavar="FILE",
                    help="scenario results: a pumpsim suite results.json")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when --out's map is not the source tree's")
    args = ap.parse_args(argv)
    reqs = trace()
    out = Path(args.out)
    if args.check:
        doc = parse_markdown(out.read_text(encoding="utf-8")) if out.exists() else {}
        now = {r.id: (r.tests, r.scenarios, r.benchmarks) for r in reqs}
        if doc != now:
            print("%s is stale: regenerate it with python -m sim.traceability" % out,
                  file=sys.stderr)
            return 1
        return 0
    ids = sorted({t for r in reqs for t in r.tests})
    tests: dict[str, str] = {}
    how = []
    if args.run_tests:
        tests = run_tests(ids)
        how.append("tests run %s" % datetime.date.today().isoformat())
    elif args.junit:
        tests = junit_results(args.junit)
        how.append("tests from %s" % Path(args.junit).name)
    scen: dict[str, str] = {}
    if args.results:
        scen = scenario_results(args.results)
        how.append("scenarios from a suite run")
    generated = "%s at commit %s" % (", ".join(how) or "none recorded", _git_commit())
    out.write_text(markdown(reqs, tests, scen, generated), encoding="utf-8")
    print("%s: %d requirements, %d unchecked" % (out, len(reqs),
                                                 sum(1 for r in reqs if not r.checked)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
