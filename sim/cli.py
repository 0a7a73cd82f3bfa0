"""pumpsim command line: `pumpsim run FILE [--json] [--out DIR] [--interpreter CMD]`.

Exit codes: 0 ok, 1 an expectation failed, 2 invalid input (the message names the field).
Subcommands are registered in SUBCOMMANDS: run; suite and trumpet (sim.suite); study
(sim.study); board, a virtual board on a pty (hil.cli). Each module is imported only when
its subcommand is given, so `pumpsim --help` loads no numpy, matplotlib or hil.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from typing import Any

from sim.engine import SimError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run one scenario file", description="Run one scenario "
                       "file (docs/scenarios.md) through the firmware on the simulated pump and "
                       "print its summary: the fault, its detection and its excess against "
                       "their limits, the expectations. Exit 0 when every expectation is met "
                       "(or the scenario is expected to fail), 1 otherwise, 2 for an invalid "
                       "file.")
    p.add_argument("file", help="scenario TOML file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", metavar="DIR", help="write result.json, trace.csv, journal.bin "
                   "(and journal.csv decoded), plot.png and, with a fault, fault.csv and "
                   "fault.png under DIR/<name>/")
    p.add_argument("--interpreter", metavar="CMD", help="simulate on another Python, e.g. "
                   "pypy3 (PyPy 3.9 or newer): the same result, trace and journal, about 3x "
                   "faster on a 28-day cycle, slower on a short scenario (its start-up and "
                   "JIT warm-up; docs/performance.md); the file is read and checked here "
                   "first")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from sim import runner, scenario, worker

    if args.interpreter:
        data = scenario.tables(scenario.read(args.file), args.file)
        sc = scenario.from_tables(data, args.file)
        res = worker.run_on(args.interpreter, data, args.file, args.out)
    else:
        sc = scenario.load(args.file)
        res = runner.run_scenario(sc, args.out)
    if args.out:
        from pathlib import Path

        from sim import suite
        suite.finish(res, sc, Path(args.out))
        res.pop("links", None)
        res.pop("plot", None)
    ok = runner.passed(res)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(summary(res))
    if ok or res.get("xfail"):
        return EXIT_OK
    return EXIT_FAILED


def summary(res: dict[str, Any]) -> str:
    """A short human summary of one result: the figures of the report's card (the fault,
    its detection and its own excess against their limits, the whole run's excess with the
    cassette's drift told apart), then the expectations in words with their limits."""
    from sim import report

    accepted = "accepted" if res["accepted"] else "refused: %s" % res["reject_code"]
    lines = [
        "%s: %s" % (res["scenario"], _verdict(res)),
        "  program %s; final state %s; %.1f h simulated in %.2f s"
        % (accepted, res["final_state"], res["sim_hours"], res["wall_s"]),
    ]
    if not res["accepted"] and res.get("reject_code"):
        from host import refusals
        lines.append("    %s" % refusals.explain(str(res["reject_code"])))
    for what, val, notes, limit, ok in report.qa_rows(res):
        if what.startswith("final state"):
            continue
        verdict = "" if not limit else "  (limit %s: %s)" % (limit, "met" if ok else "NOT met")
        lines.append("  %s: %s%s" % (what, val, verdict))
        lines += ["      %s" % n for n in notes]
    lines.append("  the firmware counted %.3f mL delivered; the programmed line: %.3f mL"
                 % (res["counted_ml"], res["allowed_ml"]))
    alarms = res["alarms"]
    if alarms:
        shown = ", ".join("%s at %s" % (a["code"], report.fmt_duration(a["t_s"]))
                          for a in alarms[:6])
        more = "" if len(alarms) <= 6 else " (+%d more)" % (len(alarms) - 6)
        lines.append("  alarms: " + shown + more)
    exps = res["expectations"]
    if exps:
        bad = sum(1 for e in exps if not e["passed"])
        lines.append("  expectations (%d/%d met):" % (len(exps) - bad, len(exps)))
    for e in exps:
        lines.append("    [%s] %s" % ("pass" if e["passed"] else "FAIL",
                                      report.expectation_text(e, key=True)))
    for label, key in (("trace", "trace_file"), ("plot", "plot_file"),
                       ("fault plot", "fault_plot_file")):
        if res.get(key):
            lines.append("  %s: %s" % (label, res[key]))
    return "\n".join(lines)


def _verdict(res: dict[str, Any]) -> str:
    ok = all(e["passed"] for e in res["expectations"])
    if res.get("xfail"):
        return "XPASS" if ok else "XFAIL (%s)" % res["xfail"]
    return "ok" if ok else "FAILED"


# name -> (the function adding its subparser, as "module:function" (each sets `func`), its
# one-line help for `pumpsim --help`). The module is imported only when the name is given.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sim.cli:_add_run", "run one scenario file"),
    "suite": ("sim.suite:add_parser", "run every scenario of a folder in parallel; table, "
              "JUnit XML and an HTML report"),
    "trumpet": ("sim.suite:add_parser", "IEC 60601-2-24 style accuracy run: trumpet curve of "
                "the second hour (PR-6)"),
    "study": ("sim.study:add_parser", "Monte Carlo study of the safety monitor (PR-1, PR-2, "
              "PR-3)"),
    "board": ("hil.cli:add_parser", "start a virtual board; print its UART and rig ports"),
}


class VersionAction(argparse.Action):
    """`--version`: the tool's version, git commit and firmware hash (host/version.py, as
    `pumpctl --version` and the report's header say them), then exit 0."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version, the git commit and the firmware's hash, "
                         "and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from host.version import version_text
        print(version_text(parser.prog))
        parser.exit(0)


def _add(sub: Any, name: str) -> None:
    """The real subparser(s) of `name` (one function may add several: suite and trumpet)."""
    mod, _, fn = SUBCOMMANDS[name][0].partition(":")
    getattr(importlib.import_module(mod), fn)(sub)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the real subparser of the subcommand named in argv (the first word
    that is not an option) and a one-line entry for each of the others."""
    parser = argparse.ArgumentParser(prog="pumpsim", description="Infusion-pump simulator.")
    parser.add_argument("--version", action=VersionAction)
    parser.set_defaults(func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in SUBCOMMANDS:
        _add(sub, chosen)
    for name, (_, text) in SUBCOMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.command_line = "pumpsim " + " ".join(shlex.quote(a) for a in argv)
    if args.func is None:
        parser.print_help()
        return EXIT_INVALID
    try:
        return int(args.func(args))
    except SimError as e:
        print("pumpsim: %s" % e, file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
