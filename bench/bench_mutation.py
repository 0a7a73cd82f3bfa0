"""Mutation testing of the firmware (issue 15): how much of pump/ the tests really pin down.

Mutants come from cosmic-ray's engine (its parso-based operators and mutation visitor; the
results go into a cosmic-ray session file per module, readable with `cr-report`). Each mutant
is one small change of one module's source, written to a private copy of the checkout (the
working tree is never touched), and run against real tests in two stages:

1. stage 1 (CPython, fast): the module's focused firmware tests (tests/fw/test_*.py, plain
   functions, as tools/mpy_fwtests.py runs them), in a child process forked for the mutant:
   it imports the mutated firmware afresh and stops at the first failing test;
2. stage 2, for what stage 1 leaves alive: the same firmware tests and the allocation tests
   under real MicroPython (Node, tools/mpy_run.mjs), then a pytest selection of simulator,
   property and host tests, then the bundled scenarios with their expectations
   (`pumpsim suite`), each in its own process.

A mutant is killed when a test fails (or the module no longer imports), timed out when a
stage runs past its time limit (3 x its unmutated time + a margin), survived otherwise. A
survivor listed in docs/mutation.md as equivalent (same behaviour, with the reason) is
reported as such. Prints, per module: mutants, killed, survived, timed out, kill ratio
((killed + timed out) / mutants), survivors listed as equivalent, unexplained survivors.

    .venv/bin/python bench/bench_mutation.py                  # every module (about an hour)
    .venv/bin/python bench/bench_mutation.py --modules monitor,auth --stage1-only
    .venv/bin/python bench/bench_mutation.py --safety --check # the five safety modules; exit
                                                              # 1 below 90 % or when a
                                                              # survivor is unexplained
    .venv/bin/python bench/bench_mutation.py --modules auth --stage1-only \
        --rerun bench/out/mutation/summary.json               # only the last run's survivors

One worker: mutants run one after the other (the mutated file is shared by both stages).
Results: bench/out/mutation/ (summary.json, survivors.txt, <module>.sqlite).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "mutation"
EQUIVALENTS_DOC = REPO / "docs" / "mutation.md"

SAFETY = ("monitor", "delivery", "journal", "program", "auth")
THRESHOLD = 0.90

# --- the operators -------------------------------------------------------------------------
# cosmic-ray replaces every binary operator by each of the eleven others and every comparison
# by each of the others; most of those cross products are killed by any test that runs the
# line. We keep the mutations that model a plausible one-token slip (PIT's and mutmut's
# classic set): + <-> -, * <-> //, % -> //, shifts swapped, & <-> |, a comparison's boundary
# moved (< to <=) or negated (< to >=), == <-> !=, is <-> is not; plus every number +/- 1,
# True <-> False, and <-> or, not added or removed, unary minus dropped, break <-> continue,
# a loop that never iterates, an exception handler that catches nothing else.
_BINARY = ("Add_Sub", "Sub_Add", "Mul_FloorDiv", "FloorDiv_Mul", "Div_Mul", "Mod_FloorDiv",
           "Pow_Mul", "BitAnd_BitOr", "BitOr_BitAnd", "BitXor_BitOr", "LShift_RShift",
           "RShift_LShift")
_COMPARE = ("Lt_LtE", "Lt_GtE", "LtE_Lt", "LtE_Gt", "Gt_GtE", "Gt_LtE", "GtE_Gt", "GtE_Lt",
            "Eq_NotEq", "NotEq_Eq", "Is_IsNot", "IsNot_Is")
_UNARY = ("USub_UAdd", "Delete_Not", "Invert_UAdd")
_OTHERS = ("AddNot", "ReplaceTrueWithFalse", "ReplaceFalseWithTrue", "ReplaceAndWithOr",
           "ReplaceOrWithAnd", "ReplaceBreakWithContinue", "ReplaceContinueWithBreak",
           "NumberReplacer", "ZeroIterationForLoop", "ExceptionReplacer")
OPERATORS = (
    tuple("core/ReplaceBinaryOperator_" + o for o in _BINARY)
    + tuple("core/ReplaceComparisonOperator_" + o for o in _COMPARE)
    + tuple("core/ReplaceUnaryOperator_" + o for o in _UNARY)
    + tuple("core/" + o for o in _OTHERS)
)

# --- what runs against each module -----------------------------------------------------------
# stage 1: firmware test modules (tests/fw), CPython, forked per mutant.
# stage 2: "mpy": firmware test modules under MicroPython (the allocation tests where the
# module is on the steady path, else its main test module); "pytest": simulator and host
# test files; "scenarios": the bundled scenarios (all but the multi-week regimens) with
# their [expect]. The property tests (tests/test_props_*.py) are left out of stage 2: a
# run of them takes half a minute to a minute, per mutant.
_SIM = ("tests/sim/test_sim_faults.py", "tests/sim/test_sim_nominal.py")


@dataclass(frozen=True)
class Selection:
    stage1: tuple[str, ...]
    mpy: tuple[str, ...]
    pytest: tuple[str, ...]
    scenarios: bool = True


MODULES: dict[str, Selection] = {
    "monitor": Selection(("test_monitor_detectors", "test_monitor_books", "test_monitor",
                          "test_monitor_stops", "test_controller", "test_tick_wrap",
                          "test_reliability"),
                         ("test_monitor_alloc",), _SIM),
    "delivery": Selection(("test_delivery", "test_power_cut", "test_tick_wrap",
                           "test_monitor_books", "test_controller", "test_monitor",
                           "test_monitor_stops", "test_reliability"),
                          ("test_alloc",), _SIM + ("tests/sim/test_trumpet.py",)),
    "journal": Selection(("test_journal", "test_power_cut", "test_controller", "test_commands",
                          "test_protocol", "test_reliability",
                          "test_latches::test_sr9_every_torn_write_of_the_run_boots_safe"),
                         ("test_alloc",), ("tests/fw/test_latches.py",
                                           "tests/sim/test_sim_faults.py",
                                           "tests/test_host_client.py")),
    "program": Selection(("test_program_rx", "test_library_limits", "test_program_inputs",
                          "test_dose_holes", "test_plan_boundaries", "test_commands",
                          "test_protocol", "test_plan", "test_controller"),
                         ("test_library_limits",),
                         ("tests/test_refusals.py", "tests/test_pharmacy.py",
                          "tests/sim/test_sim_door.py", "tests/sim/test_sim_scenario.py")),
    "auth": Selection(("test_auth", "test_reliability", "test_protocol", "test_commands"),
                      ("test_auth",), ("tests/test_host_client.py", "tests/test_roles.py"),
                      False),
    "protocol": Selection(("test_protocol", "test_protocol_edges", "test_auth", "test_commands",
                           "test_tick_wrap", "test_reliability"),
                          ("test_protocol",),
                          ("tests/test_host_client.py", "tests/test_one_runtime.py"), False),
    "controller": Selection(("test_controller", "test_controller_edges", "test_tick_wrap",
                             "test_power_cut", "test_monitor_books", "test_monitor",
                             "test_monitor_stops",
                             "test_delivery", "test_commands", "test_reliability"),
                            ("test_alloc",),
                            _SIM + ("tests/test_refusals.py", "tests/test_one_runtime.py")),
    "states": Selection(("test_controller", "test_commands", "test_monitor_stops", "test_codes",
                         "test_protocol"),
                        ("test_controller",), ("tests/test_roles.py", "tests/test_refusals.py",
                                               "tests/test_states_transitions.py")),
    "druglib": Selection(("test_druglib", "test_druglib_file", "test_library_limits",
                          "test_program_rx", "test_plan"),
                         ("test_druglib",), ("tests/test_pharmacy.py",), False),
}

# Scenarios left out of stage 2: the multi-week regimens (seconds each, and nothing the
# single-bag scenarios do not exercise in the firmware).
_SLOW_SCENARIOS = ("adult-cycle1-24h-bags", "adult-cycle2-48h-bags", "child-cycle1-bsa-24h-bags")

# What the private copy holds (plus node_modules, linked).
_COPY = ("firmware", "plant", "sim", "hil", "host", "tests", "tools", "scenarios", "docs",
         "pyproject.toml", "package.json")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "out")


# --- mutants ---------------------------------------------------------------------------------

@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    original: str                # the changed source lines, stripped, joined by " / "
    mutated: str
    outcome: str = "pending"     # killed, timed out, survived, no mutation
    stage: int = 0               # the stage that decided it
    killer: str = ""             # the test (or run) that failed
    equivalent: str = ""         # the reason, when docs/mutation.md lists it
    seconds: float = 0.0
    start: tuple[int, int] = (0, 0)   # where cosmic-ray's operator applies (line, column)
    end: tuple[int, int] = (0, 1)
    lines: tuple[int, int] = (0, 0)   # first and last line of the statement it changes

    def key(self) -> tuple[str, str, str]:
        return (self.module, self.original, self.mutated)


def _changed(before: str, after: str) -> tuple[int, str, str]:
    """(first changed line, removed lines, added lines) of a one-place edit."""
    a = before.splitlines()
    b = after.splitlines()
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            return (i1 + 1, " / ".join(s.strip() for s in a[i1:i2]),
                    " / ".join(s.strip() for s in b[j1:j2]))
    return (0, "", "")


_STATEMENTS = ("simple_stmt", "if_stmt", "while_stmt", "for_stmt", "try_stmt", "with_stmt",
               "funcdef", "classdef", "decorated", "file_input")


def _statement(node):
    """The statement a parso node belongs to (its first line is where the tracer sees it)."""
    n = node
    while n.parent is not None and n.type not in _STATEMENTS:
        n = n.parent
    return n


def enumerate_mutants(module: str, source: str) -> list[tuple[Mutant, str]]:
    """Every mutant of `source` (pump/<module>.py) under OPERATORS, with its mutated text."""
    from cosmic_ray.ast import ast_nodes, get_ast
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    nodes = list(ast_nodes(get_ast(source)))
    out = []
    for name in OPERATORS:
        op = get_operator(name)()
        positions = []
        spans = []
        for node in nodes:
            for pos in op.mutation_positions(node):
                positions.append(pos)
                spans.append((_statement(node).start_pos[0], node.end_pos[0]))
        for occurrence in range(len(positions)):
            mutated = mutate_code(source, op, occurrence)
            if mutated is None or mutated == source:
                continue
            line, before, after = _changed(source, mutated)
            if before == after:       # a change of layout only (e.g. a number's spelling)
                continue
            m = Mutant(module, name.split("/", 1)[1], occurrence, line, before, after,
                       start=positions[occurrence][0], end=positions[occurrence][1],
                       lines=spans[occurrence])
            out.append((m, mutated))
    return out


# --- the equivalents list (docs/mutation.md) --------------------------------------------------

_ROW = re.compile(r"^\|\s*`(?P<module>[a-z_]+)`\s*\|\s*`(?P<orig>.*?)`\s*\|\s*`(?P<mut>.*?)`"
                  r"\s*\|\s*(?P<why>.+?)\s*\|\s*$")


def _unescape(s: str) -> str:
    return s.replace("\\|", "|")


def load_equivalents(path: Path = EQUIVALENTS_DOC) -> dict[tuple[str, str, str], str]:
    """(module, original, mutant) -> reason, from the tables of docs/mutation.md whose rows
    read | `module` | `original line` | `mutated line` | reason |."""
    out: dict[tuple[str, str, str], str] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            key = (m["module"], _unescape(m["orig"]), _unescape(m["mut"]))
            out[key] = m["why"]
    return out


# --- the private copy -------------------------------------------------------------------------

def make_copy(dest: Path) -> Path:
    for name in _COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_IGNORE, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    nm = REPO / "node_modules"
    if nm.exists():
        os.symlink(nm.resolve(), dest / "node_modules")
    scen = dest / "mutation-scenarios"
    scen.mkdir()
    for f in sorted((dest / "scenarios").glob("*.toml")):
        if f.stem not in _SLOW_SCENARIOS:
            shutil.copy2(f, scen / f.name)
    return dest


# --- stage 1: firmware tests on CPython, forked per mutant ------------------------------------

def _fw_tests(root: Path, modules: tuple[str, ...]) -> list[tuple[str, str]]:
    """(module, test) of every top-level test function, in file order."""
    import ast
    out = []
    for entry in present(root, modules):
        mod, _, only = entry.partition("::")
        path = root / "tests" / "fw" / (mod + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") \
                    and (not only or node.name == only):
                out.append((mod, node.name))
    return out


def present(root: Path, modules: tuple[str, ...]) -> tuple[str, ...]:
    """The firmware test modules of `modules` (or `module::test`, one test of it) that exist
    (a selection may name tests that a branch does not have yet)."""
    return tuple(m for m in modules
                 if (root / "tests" / "fw" / (m.partition("::")[0] + ".py")).exists())


def _forget_checkout(root: Path) -> None:
    """In a forked child: drop the modules the parent imported from the checkout (a pytest
    plugin may have imported `pump` before the tests ran), so that the copy's are imported."""
    here = str(REPO) + os.sep
    mine = str(root) + os.sep
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None) or ""
        if f.startswith(here) and not f.startswith(mine):
            del sys.modules[name]


def _child(root: Path, tests: list[tuple[str, str]], wfd: int) -> None:
    """In the forked child: import the (mutated) firmware afresh and run the tests; exit 1
    at the first failure, naming it on the pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.dont_write_bytecode = True
    sys.path[:0] = [str(root / "firmware"), str(root / "tests" / "fw"), str(root)]
    _forget_checkout(root)
    from _pytest.outcomes import Skipped
    try:
        import pump
        if not str(pump.__file__).startswith(str(root)):
            os.write(wfd, b"setup: pump is not imported from the copy")
            os._exit(3)
    except BaseException as exc:  # noqa: BLE001 - reported
        os.write(wfd, ("import: %s" % type(exc).__name__).encode())
        os._exit(1)
    for mod, name in tests:
        try:
            getattr(importlib.import_module(mod), name)()
        except Skipped:
            continue
        except BaseException as exc:  # noqa: BLE001 - any failure kills the mutant
            os.write(wfd, ("%s::%s: %s" % (mod, name, type(exc).__name__)).encode()[:500])
            os._exit(1)
    os._exit(0)


def _coverage_child(root: Path, module: str, tests: list[tuple[str, str]], wfd: int) -> None:
    """In a forked child: the lines of pump/<module>.py each test executes, and those run
    at import (module level, class bodies, def lines), as JSON on the pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.dont_write_bytecode = True
    sys.path[:0] = [str(root / "firmware"), str(root / "tests" / "fw"), str(root)]
    _forget_checkout(root)
    from _pytest.outcomes import Skipped
    target = str(root / "firmware" / "pump" / (module + ".py"))
    seen: set[int] = set()

    def local(frame, event, arg):
        if event == "line":
            seen.add(frame.f_lineno)
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == target else None

    sys.settrace(tracer)
    importlib.import_module("pump." + module)
    for mod, _ in tests:
        importlib.import_module(mod)
    out: dict[str, list[int]] = {"": sorted(seen)}
    for mod, name in tests:
        seen.clear()
        try:
            getattr(importlib.import_module(mod), name)()
        except Skipped:
            pass
        out["%s::%s" % (mod, name)] = sorted(seen)
    sys.settrace(None)
    data = json.dumps(out).encode()
    while data:
        n = os.write(wfd, data)
        data = data[n:]
    os._exit(0)


def coverage(root: Path, module: str, tests: list[tuple[str, str]]) -> dict[str, set[int]]:
    """{"": lines run at import, "mod::test": lines the test runs} for pump/<module>.py."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # pragma: no cover - the child
        os.close(r)
        try:
            _coverage_child(root, module, tests, w)
        finally:
            os._exit(2)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("bench_mutation: the coverage run of %s failed" % module)
    return {k: set(v) for k, v in json.loads(b"".join(chunks)).items()}


def covering(cov: dict[str, set[int]], tests: list[tuple[str, str]],
             lines: tuple[int, int]) -> list[tuple[str, str]]:
    """The tests that run any line of `lines` (all of them for a line run at import: a
    constant, a default argument, a class attribute), in the order of `tests`."""
    span = set(range(lines[0], lines[1] + 1))
    if span & cov[""]:
        return list(tests)
    return [t for t in tests if span & cov.get("%s::%s" % t, set())]


def run_stage1(root: Path, tests: list[tuple[str, str]], timeout_s: float) -> tuple[str, str]:
    """('killed' | 'survived' | 'timed out', what failed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # pragma: no cover - the child
        os.close(r)
        try:
            _child(root, tests, w)
        finally:
            os._exit(2)
    os.close(w)
    deadline = time.monotonic() + timeout_s
    msg = b""
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            msg += chunk
    os.close(r)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return "timed out", "stage 1 past %.0f s" % timeout_s
    code = os.waitstatus_to_exitcode(status)
    if code == 3:
        raise SystemExit("bench_mutation: " + msg.decode(errors="replace"))
    if code == 0:
        return "survived", ""
    return "killed", msg.decode(errors="replace") or "exit status %d" % code


# --- stage 2: MicroPython, pytest, scenarios --------------------------------------------------

def _run(cmd: list[str], cwd: Path, timeout_s: float) -> tuple[str, int, str]:
    """Run cmd in its own process group: ('done', exit status, output) or ('timed out', ...)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timed out", -1, ""
    return "done", proc.returncode, out


def mpy_cmd(root: Path, modules: tuple[str, ...]) -> list[str]:
    node = shutil.which("node") or "node"
    return [node, str(root / "tools" / "mpy_run.mjs"),
            "--mount", "%s:/flash" % (root / "firmware"),
            "--mount", "%s:/fw" % (root / "tests" / "fw"),
            "--mount", "%s:/lib/plant" % (root / "plant"),
            "--path", "/flash", "--path", "/fw", "--path", "/lib",
            str(root / "tools" / "mpy_fwtests.py"), "-x", *modules]


def _mpy_failure(out: str) -> str:
    """The first failing test of an mpy_fwtests run ('' when every test passed)."""
    summary = False
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("kind") == "summary":
            summary = True
        elif not rec.get("ok") and not rec.get("skipped"):
            return "mpy %s::%s" % (rec.get("module"), rec.get("test"))
    return "" if summary else "mpy: the run crashed"


def pytest_cmd(files: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            "--hypothesis-seed=0", *files]


# The bundled scenarios with their [expect] (those marked xfail excepted), in one process,
# no report files: exit 1 naming the first scenario whose expectations fail.
_SCENARIOS = """
import sys
from pathlib import Path
from sim import runner, scenario
for f in sorted(Path(sys.argv[1]).glob("*.toml")):
    sc = scenario.load(str(f))
    res = runner.run_scenario(sc, None)
    if not runner.passed(res) and not res.get("xfail"):
        print("FAILED scenario " + sc.name)
        sys.exit(1)
"""


def scenarios_cmd(root: Path) -> list[str]:
    return [sys.executable, "-c", _SCENARIOS, str(root / "mutation-scenarios")]


@dataclass
class Stage2:
    root: Path
    sel: Selection
    limits: dict[str, float] = field(default_factory=dict)

    def steps(self) -> list[tuple[str, list[str]]]:
        out = [("mpy", mpy_cmd(self.root, present(self.root, self.sel.mpy)))]
        files = tuple(f for f in self.sel.pytest if (self.root / f).exists())
        if files:
            out.append(("pytest", pytest_cmd(files)))
        if self.sel.scenarios:
            out.append(("scenarios", scenarios_cmd(self.root)))
        return out

    def baseline(self) -> None:
        """Run every step unmutated: each must pass; its time sets its limit."""
        for name, cmd in self.steps():
            t0 = time.monotonic()
            verdict, code, out = _run(cmd, self.root, 1800)
            dt = time.monotonic() - t0
            failed = verdict != "done" or code != 0 or (name == "mpy" and _mpy_failure(out))
            if failed:
                raise SystemExit("bench_mutation: stage 2 %s fails unmutated:\n%s\n%s"
                                 % (name, " ".join(cmd), out[-3000:]))
            self.limits[name] = 3 * dt + 20

    def run(self) -> tuple[str, str]:
        """Run the steps, quickest first, until one fails."""
        for name, cmd in sorted(self.steps(), key=lambda step: self.limits[step[0]]):
            shutil.rmtree(self.root / ".hypothesis", ignore_errors=True)
            verdict, code, out = _run(cmd, self.root, self.limits[name])
            if verdict == "timed out":
                return "timed out", "stage 2 %s past %.0f s" % (name, self.limits[name])
            if name == "mpy":
                why = _mpy_failure(out)
                if why:
                    return "killed", why
            elif code != 0:
                return "killed", name + ": " + _last_failure(out)
        return "survived", ""


def _last_failure(out: str) -> str:
    for line in out.splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line[:200]
    lines = [s for s in out.splitlines() if s.strip()]
    return lines[-1][:200] if lines else "exit status != 0"


# --- the named bugs of issue 15 -------------------------------------------------------------
# Hand-made, plausible, safety-relevant bugs, one small change each: the classes the issue
# found passing the whole suite (the monitor losing its books across a pause/resume, the
# write-ahead reservation after the motor started, the rate/volume tolerance widened, a
# library limit's boundary, a plain subtraction in place of ticks_diff), each with the
# firmware test modules that claim to catch it. (name, module, old text, new text, tests)
_RESERVE = ("        if ledger is not None:\n"
            "            ledger.reserve(self.commanded_nl + upto_nl)\n")
_MOVE = ("        self.seg_end = end\n"
         "        steps = upto_steps - (self.motor.position() - self.seg_pos0)\n"
         "        if steps < 0:\n            steps = 0\n"
         "        run_ms = self.ticks_diff(end, now)\n"
         "        if run_ms < 1:\n            run_ms = 1\n"
         "        self.motor.move(steps, run_ms)\n")
NAMED: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("books reset at every start/resume", "monitor",
     "        self.latched = None\n        self.c_last = c\n",
     "        self.latched = None\n        self._reset_books()\n        self.c_last = c\n",
     ("test_monitor_books",)),
    ("envelope cap from the full VTBI after power loss", "controller",
     "self.monitor.load(prog, self.reserved_nl)", "self.monitor.load(prog, 0)",
     ("test_monitor_books",)),
    ("reservation journalled after the motor started", "delivery",
     _RESERVE + _MOVE, _MOVE + _RESERVE, ("test_power_cut",)),
    ("rate/volume tolerance 10 %", "program", "return d * 100 <= ref\n", "return d * 10 <= ref\n",
     ("test_library_limits",)),
    ("rate/volume tolerance 2 %", "program", "return d * 100 <= ref\n", "return d * 50 <= ref\n",
     ("test_library_limits",)),
    ("preservative weight limit excludes its own weight", "program",
     "if w < bag.min_weight_g:", "if w <= bag.min_weight_g:", ("test_library_limits",)),
    ("preservative weight limit one gram short", "program",
     "if w < bag.min_weight_g:", "if w < bag.min_weight_g - 1:", ("test_library_limits",)),
    ("dose cap admits a dose above it", "program",
     "if fixed > drug.dose_cap_ng_per_day():", "if fixed > drug.dose_cap_ng_per_day() + 1:",
     ("test_library_limits",)),
    ("concentration range 1 % wider", "program",
     "bag.rate_ul_per_h) * 101 // 100", "bag.rate_ul_per_h) * 102 // 100",
     ("test_library_limits",)),
    ("segment due: subtraction", "delivery",
     "self.ticks_diff(now, self.seg_end) >= 0", "now - self.seg_end >= 0", ("test_tick_wrap",)),
    ("segment service: subtraction", "delivery",
     "self.ticks_diff(now, self.seg_end) < 0", "now - self.seg_end < 0", ("test_tick_wrap",)),
    ("late-wake slip: subtraction", "delivery",
     "self.ticks_diff(now, start) > _MAX_SLIP_MS", "now - start > _MAX_SLIP_MS",
     ("test_tick_wrap",)),
    ("segment motor time: subtraction", "delivery",
     "run_ms = self.ticks_diff(end, now)", "run_ms = end - now", ("test_tick_wrap",)),
    ("part lateness: subtraction", "delivery",
     "late = self.ticks_diff(now, self.seg_end)", "late = now - self.seg_end",
     ("test_tick_wrap",)),
    ("envelope interval: subtraction", "monitor",
     "dt = self.io.ticks_diff(now, self.t_last)", "dt = now - self.t_last", ("test_tick_wrap",)),
    ("back-off end: subtraction", "controller",
     "hal.ticks_diff(now, d.backoff_end) >= 0", "now - d.backoff_end >= 0", ("test_tick_wrap",)),
    ("back-off wake: subtraction", "controller",
     "hal.ticks_diff(d.backoff_end, wake) < 0", "d.backoff_end - wake < 0", ("test_tick_wrap",)),
    ("segment wake (step): subtraction", "controller",
     "            if d.running and hal.ticks_diff(d.seg_end, wake) < 0:",
     "            if d.running and d.seg_end - wake < 0:", ("test_tick_wrap",)),
    ("segment due (compare path): subtraction", "controller",
     "ahead = hal.ticks_diff(now, d.seg_end) if running else -1",
     "ahead = now - d.seg_end if running else -1", ("test_tick_wrap",)),
    ("pause reminder due: subtraction", "controller",
     "hal.ticks_diff(now, self.pause_deadline) >= 0", "now - self.pause_deadline >= 0",
     ("test_tick_wrap",)),
    ("pause reminder wake: subtraction", "controller",
     "hal.ticks_diff(self.pause_deadline, wake) < 0", "self.pause_deadline - wake < 0",
     ("test_tick_wrap",)),
    ("partial frame timeout: subtraction", "protocol",
     "hal.ticks_diff(now, self.last_rx) >= self.idle_ms", "now - self.last_rx >= self.idle_ms",
     ("test_tick_wrap",)),
    ("telemetry due: subtraction", "protocol",
     "hal.ticks_diff(now, self.next_tlm) >= 0", "now - self.next_tlm >= 0", ("test_tick_wrap",)),
    ("telemetry wake: subtraction", "protocol",
     "hal.ticks_diff(self.next_tlm, wake) < 0", "self.next_tlm - wake < 0", ("test_tick_wrap",)),
    ("partial frame wake: subtraction", "protocol",
     "hal.ticks_diff(drop, wake) < 0", "drop - wake < 0", ("test_tick_wrap",)),
    ("confirm window: subtraction", "commands",
     "self.hal.ticks_diff(self.hal.ticks_ms(), p[1]) >= 0", "self.hal.ticks_ms() - p[1] >= 0",
     ("test_tick_wrap",)),
    ("main loop sleep: subtraction", "runtime",
     "hal.ticks_diff(rt.wake, hal.ticks_ms()) > 0", "rt.wake - hal.ticks_ms() > 0",
     ("test_tick_wrap",)),
)


def run_named(root: Path, log, names: tuple[str, ...] = ()) -> list[Mutant]:
    """Each named bug, applied alone, against its tests (stage 1): killed, or survived."""
    out = []
    for name, module, old, new, tests in NAMED:
        if names and name not in names:
            continue
        path = root / "firmware" / "pump" / (module + ".py")
        source = path.read_text(encoding="utf-8")
        if source.count(old) != 1:
            raise SystemExit("bench_mutation: named bug %r: its text is not found once in "
                             "pump/%s.py (the code changed: update NAMED)" % (name, module))
        m = Mutant(module, "named: " + name, 0, 0, old.strip(), new.strip())
        path.write_text(source.replace(old, new), encoding="utf-8")
        try:
            t0 = time.monotonic()
            m.outcome, m.killer = run_stage1(root, _fw_tests(root, tests), 120)
            m.stage = 1
            m.seconds = time.monotonic() - t0
        finally:
            path.write_text(source, encoding="utf-8")
        log("%-50s %-9s %s" % (name, m.outcome, m.killer))
        out.append(m)
    return out


# --- one module -------------------------------------------------------------------------------

@dataclass
class Summary:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    timed_out: int = 0
    equivalent: int = 0
    unexplained: int = 0
    stage2_kills: int = 0
    seconds: float = 0.0
    complete: bool = True

    @property
    def ratio(self) -> float:
        return (self.killed + self.timed_out) / self.mutants if self.mutants else 1.0

    @property
    def score(self) -> float:
        """The mutation score: killed over the mutants that can change behaviour (the
        listed equivalents left out)."""
        n = self.mutants - self.equivalent
        return (self.killed + self.timed_out) / n if n else 1.0


def _workdb(path: Path, root: Path, rel: str, mutants: list[tuple[Mutant, str]]):
    """A cosmic-ray session file with one work item per mutant (for cr-report)."""
    from cosmic_ray.work_db import WorkDB
    from cosmic_ray.work_item import MutationSpec, WorkItem

    if path.exists():
        path.unlink()
    db = WorkDB(str(path), WorkDB.Mode.create)
    items = []
    for i, (m, _) in enumerate(mutants):
        spec = MutationSpec(module_path=rel, operator_name="core/" + m.operator,
                            occurrence=m.occurrence, start_pos=m.start, end_pos=m.end)
        items.append(WorkItem.single(job_id="%s-%05d" % (m.module, i), mutation=spec))
    db.add_work_items(items)
    return db


def _record(db, job_id: str, m: Mutant, diff: str) -> None:
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    outcome = TestOutcome.SURVIVED if m.outcome == "survived" else TestOutcome.KILLED
    db.set_result(job_id, WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=outcome,
                                     output="%s (stage %d) %s" % (m.outcome, m.stage, m.killer),
                                     diff=diff))


def run_module(root: Path, module: str, stage2: bool, equivalents: dict, deadline: float,
               log, limit: int = 0, out: Path = OUT,
               previous: dict | None = None) -> tuple[Summary, list[Mutant]]:
    sel = MODULES[module]
    rel = "firmware/pump/%s.py" % module
    path = root / rel
    source = path.read_text(encoding="utf-8")
    mutants = enumerate_mutants(module, source)
    if limit:
        mutants = mutants[:limit]
    out.mkdir(parents=True, exist_ok=True)
    db = _workdb(out / ("%s.sqlite" % module), root, rel, mutants)
    summary = Summary(module, mutants=len(mutants))
    t_start = time.monotonic()

    tests = _fw_tests(root, sel.stage1)
    t0 = time.monotonic()
    verdict, why = run_stage1(root, tests, 1800)
    base1 = time.monotonic() - t0
    if verdict != "survived":
        raise SystemExit("bench_mutation: stage 1 of %s fails unmutated: %s" % (module, why))
    limit1 = 3 * base1 + 5
    cov = coverage(root, module, tests)
    s2 = Stage2(root, sel)
    if stage2:
        s2.baseline()
    log("%s: %d mutants; stage 1 takes %.1f s unmutated%s" % (
        module, len(mutants), base1,
        "; stage 2 " + ", ".join("%s %.0f s" % kv for kv in s2.limits.items()) + " (limits)"
        if stage2 else ""))

    done: list[Mutant] = []
    try:
        for i, (m, text) in enumerate(mutants):
            if time.monotonic() > deadline:
                summary.complete = False
                break
            before = (previous or {}).get((m.operator, m.occurrence, m.original, m.mutated))
            if before is not None and before["outcome"] in ("killed", "timed out"):
                # --rerun: killed in the previous run; the tests only grew since
                m.outcome, m.stage, m.killer = before["outcome"], before["stage"], before["killer"]
                _record(db, "%s-%05d" % (module, i), m, "- %s\n+ %s" % (m.original, m.mutated))
                done.append(m)
                _count(summary, m)
                continue
            t0 = time.monotonic()
            path.write_text(text, encoding="utf-8")
            try:
                mine = covering(cov, tests, m.lines)
                if mine:
                    m.outcome, m.killer = run_stage1(root, mine, limit1)
                else:
                    m.outcome, m.killer = "survived", ""    # no stage-1 test runs it
                m.stage = 1
                if m.outcome == "killed":
                    # the test that killed this one first, next time: mutants of one place
                    # tend to fall to the same test (the verdict does not depend on the order)
                    mod, _, name = m.killer.split(": ", 1)[0].partition("::")
                    if (mod, name) in tests:
                        tests.remove((mod, name))
                        tests.insert(0, (mod, name))
                if m.outcome == "survived" and stage2:
                    m.outcome, m.killer = s2.run()
                    m.stage = 2
                    if m.outcome != "survived":
                        summary.stage2_kills += 1
            finally:
                path.write_text(source, encoding="utf-8")
            m.seconds = time.monotonic() - t0
            if m.outcome == "survived":
                m.equivalent = equivalents.get(m.key(), "")
            _record(db, "%s-%05d" % (module, i), m, "- %s\n+ %s" % (m.original, m.mutated))
            done.append(m)
            _count(summary, m)
            if len(done) % 100 == 0:
                log("%s: %d/%d, %d survived so far" % (module, len(done), len(mutants),
                                                      summary.survived))
    finally:
        path.write_text(source, encoding="utf-8")
        db.close()
    summary.mutants = len(done) if not summary.complete else summary.mutants
    summary.seconds = time.monotonic() - t_start
    return summary, done


def _count(s: Summary, m: Mutant) -> None:
    if m.outcome == "killed":
        s.killed += 1
    elif m.outcome == "timed out":
        s.timed_out += 1
    else:
        s.survived += 1
        if m.equivalent:
            s.equivalent += 1
        else:
            s.unexplained += 1


# --- the report -------------------------------------------------------------------------------

def table(summaries: list[Summary]) -> str:
    head = ("module", "mutants", "killed", "survived", "timed out", "kill ratio",
            "equivalent", "unexplained", "score", "stage-2 kills", "time")
    rows = [head]
    for s in summaries:
        rows.append((s.module + ("" if s.complete else " (partial)"), str(s.mutants),
                     str(s.killed), str(s.survived), str(s.timed_out),
                     "%.1f %%" % (100 * s.ratio), str(s.equivalent), str(s.unexplained),
                     "%.1f %%" % (100 * s.score), str(s.stage2_kills), "%.0f s" % s.seconds))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def survivors_text(mutants: list[Mutant]) -> str:
    out = []
    for m in mutants:
        if m.outcome == "survived":
            tag = "equivalent: " + m.equivalent if m.equivalent else "UNEXPLAINED"
            out.append("%s:%d %s\n  - %s\n  + %s\n  %s" % (m.module, m.line, m.operator,
                                                        m.original, m.mutated, tag))
    return "\n".join(out)


def write_results(out: Path, summaries: list[Summary], everything: list[Mutant],
                  seconds: float, stage2: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(
        {"modules": [asdict(s) | {"kill_ratio": s.ratio, "score": s.score}
                     for s in summaries],
         "mutants": [asdict(m) for m in everything], "seconds": seconds,
         "stage2": stage2, "operators": list(OPERATORS)}, indent=1))
    (out / "survivors.txt").write_text(survivors_text(everything) + "\n")
    (out / "table.txt").write_text(table(summaries) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", default=",".join(MODULES),
                    help="comma-separated pump modules (default: %(default)s)")
    ap.add_argument("--safety", action="store_true",
                    help="the safety modules only: " + ", ".join(SAFETY))
    ap.add_argument("--stage1-only", action="store_true",
                    help="no stage 2 (MicroPython, simulator): survivors of stage 1 stay")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="stop starting mutants after this many seconds (a module cut short "
                         "is reported as partial)")
    ap.add_argument("--limit", type=int, default=0,
                    help="at most this many mutants per module (0: all)")
    ap.add_argument("--out", type=Path, default=OUT,
                    help="where the results go (default: bench/out/mutation)")
    ap.add_argument("--named", action="store_true",
                    help="only the hand-made bugs of issue 15 (NAMED), each against the "
                         "tests that claim to catch it")
    ap.add_argument("--rerun", type=Path, default=None,
                    help="a previous run's summary.json: run only the mutants that survived "
                         "it (those it killed count as killed): a quick check of new tests")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when a safety module is below 90 %% or has an unexplained "
                         "survivor")
    args = ap.parse_args(argv)
    # a polite stop (kill PID) restores the mutated file and removes the copy on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    modules = list(SAFETY) if args.safety else [s.strip() for s in args.modules.split(",")
                                                 if s.strip()]
    for mod in modules:
        if mod not in MODULES:
            ap.error("unknown module %r (known: %s)" % (mod, ", ".join(MODULES)))
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        print("bench_mutation: cosmic-ray is missing: .venv/bin/pip install -e '.[dev]'",
              file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.named:
        with tempfile.TemporaryDirectory(prefix="pump-mutation-") as tmp:
            got = run_named(make_copy(Path(tmp)), log)
        missed = [m for m in got if m.outcome == "survived"]
        print("named bugs: %d, caught %d, missed %d" % (len(got), len(got) - len(missed),
                                                        len(missed)))
        return 1 if missed else 0
    equivalents = load_equivalents()
    previous: dict = {}
    if args.rerun is not None:
        for d in json.loads(args.rerun.read_text())["mutants"]:
            previous[(d["module"], d["operator"], d["occurrence"], d["original"],
                      d["mutated"])] = d
    t_start = time.monotonic()
    deadline = t_start + args.budget_s if args.budget_s > 0 else float("inf")
    summaries: list[Summary] = []
    everything: list[Mutant] = []
    with tempfile.TemporaryDirectory(prefix="pump-mutation-") as tmp:
        root = make_copy(Path(tmp))
        for mod in modules:
            mine = {k[1:]: v for k, v in previous.items() if k[0] == mod}
            s, ms = run_module(root, mod, not args.stage1_only, equivalents, deadline, log,
                               args.limit, args.out, mine if args.rerun else None)
            summaries.append(s)
            everything.extend(ms)
            log("%s: done in %.0f s" % (mod, s.seconds))
            write_results(args.out, summaries, everything, time.monotonic() - t_start,
                          not args.stage1_only)
    total = time.monotonic() - t_start
    out = args.out
    print(table(summaries))
    print("mutation_run_s: %.0f s" % total)
    print("survivors: %s" % (out / "survivors.txt"))
    if args.check:
        bad = [s.module for s in summaries if s.module in SAFETY
               and (s.ratio < THRESHOLD or s.unexplained or not s.complete)]
        if bad:
            print("below %d %% or with unexplained survivors: %s"
                  % (100 * THRESHOLD, ", ".join(bad)), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
