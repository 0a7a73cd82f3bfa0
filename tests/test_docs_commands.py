"""Docs are executed: every command line in the code blocks of README.md and docs/*.md runs
here, in order, one shell session per document, and the test fails when one no longer parses
or exits other than documented.

- `console` blocks: the lines after `$ ` are commands, the others their documented output (a
  documented `pumpctl: ...` error line must be what the command prints); `sh`/`bash` blocks:
  every line; unlabelled and `text` blocks: lines that start with a tool (`pumpctl`,
  `pumpsim`, `python`, `pytest`, `make`, `.venv/bin/...`).
- A session runs in a fresh folder holding `.venv/bin` (this environment's tools),
  `scenarios/` (two small bundled scenarios, so `pumpsim suite scenarios` stays quick), and
  `bench/` and `tools/` (the repository's, for the scripts docs run by their path).
  `FILE` stands for a scenario file. The tools are on PATH as docs/pumpctl.md says to put
  them; not for README.md, which a new user follows without (its lines name `.venv/bin/`).
- `pumpsim board` / `python -m hil board` start a virtual board (`--accel 1000` is added so
  `watch --period 300` takes a fraction of a second; the confirm window scales with it): its
  ports replace the documented `/dev/pts/4` (UART) and `/dev/pts/5` (rig) in later lines.
  `/dev/ttyACM0` in a pumpctl line is a second, factory-fresh virtual board.
- `export` lines set the session's environment; every command gets `yes` on stdin (the
  confirm prompt).
- A usage synopsis (`pumpsim suite DIR [--out DIR] ...`) is checked against the command's
  `--help`: every option it shows must exist.
- Lines that cannot run here are listed in NOT_HERE with the reason, each shown as a skipped
  test; nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hil.bridge import VirtualBoard

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOOLS = ("pumpctl", "pumpsim", "python", "pytest", "make", ".venv/bin/")
SCENARIOS = ("runaway-motor-10x-24h-bag.toml", "wrong-unit-ml-per-24h.toml")
PLACEHOLDERS = {"FILE": "scenarios/runaway-motor-10x-24h-bag.toml"}
BOARD = re.compile(r"^(\S*pumpsim|python -m hil) board\b")
BOARD_ACCEL = "1000"
TIMEOUT_S = 120

# Lines that cannot run in this test, each with the reason (regex on the command).
NOT_HERE: dict[str, str] = {
    r"^make suite\b": "the whole bundled suite (minutes, on every CPU); `pumpsim suite` runs "
                      "here on two scenarios (README), and tests/sim run every scenario",
    r"^make test\b": "this very test run",
    r"pytest tests/hil(?!.*/dev/)": "the HIL suite itself: this test session runs tests/hil on "
                                    "both virtual boards",
    r"/dev/ttyUSB0|pytest .*/dev/ttyACM0": "needs a real pump board on /dev/ttyACM0 and a bench "
                                           "rig on /dev/ttyUSB0",
    r"pumpctl (--port \S+ )?flash( --port /dev/ttyACM0)?\b(?!.*--target-dir)":
        "flash speaks MicroPython's raw REPL (mpremote) to a board running the official "
        "MicroPython, not to a virtual board's pty; the rp2040js HIL backing flashes an "
        "emulated Pico (tests/hil/test_rp2040js.py) and tests/test_flash.py flashes a "
        "--target-dir and a stand-in for mpremote",
    r"--backing rp2040js|/dev/pts/N": "the emulated Pico needs the UF2 and the boot ROM of "
                                      "../shared/rp2/: tests/hil/test_rp2040js.py and .ci/run "
                                      "(pytest tests/hil --board rp2040js) run it",
    r"pumpsim study .*--scheduler tcp://": "needs a Dask cluster on other machines (a test "
                                           "contacts loopback only); tests/sim/test_study.py "
                                           "runs --scheduler against a cluster on 127.0.0.1",
    r"pumpsim study( --full\b.*)?$|pumpsim study .*--days 100000\b":
        "a campaign of minutes to hours on every core; "
                                     "tests/sim/test_study.py runs samples of it, and the "
                                     "quick lines of docs/study.md run here",
    r"bench/bench_sim\.py$": "the whole speed benchmark (minutes, timed: on a quiet machine); "
                              "its --where line runs here",
    r"^make mutation\b|bench/bench_mutation\.py": "the mutation run (tens of minutes on one "
                                                 "core); tests/test_mutation.py runs the "
                                                 "issue's named bugs through its driver",
}
if shutil.which("pypy3") is None:
    NOT_HERE[r"--interpreter pypy3|compare_runs\.py out/pypy"] = (
        "pypy3 is not installed here (the optional runtime; .ci/run installs it, and "
        "tests/sim/test_interpreters.py says when it is skipped)")
# Documented exit statuses other than 0 (regex on the command -> status).
EXPECT_EXIT: dict[str, int] = {
    r'pumpctl program bag\.json --rate "240 mL/24h"': 1,        # UNIT_REJECTED, documented
}


@dataclass
class Line:
    doc: str
    lineno: int
    text: str                       # the command, comment stripped
    output: list[str] = field(default_factory=list)    # documented output (console blocks)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.lineno}"


def _strip_comment(text: str) -> str:
    """The command without a trailing shell comment (` # ...` outside quotes)."""
    quote = ""
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _is_command(text: str) -> bool:
    words = text.split()
    if not words or not text.startswith(TOOLS):
        return False
    return not any(w.endswith(":") for w in words[:2])      # "pumpsim suite: invalid ..."


def command_lines(path: Path) -> list[Line]:
    rel = path.relative_to(REPO).as_posix()
    out: list[Line] = []
    lang: str | None = None
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", raw)
        if fence:
            lang = fence.group(1) if lang is None else None
            continue
        if lang is None:
            continue
        s = raw.strip()
        if lang == "console":
            if s.startswith("$ "):
                out.append(Line(rel, n, _strip_comment(s[2:])))
            elif out and out[-1].doc == rel and s:
                out[-1].output.append(s)
        elif lang in ("sh", "bash", "shell"):
            if s and not s.startswith("#"):
                out.append(Line(rel, n, _strip_comment(s)))
        elif lang in ("", "text") and _is_command(s):
            out.append(Line(rel, n, _strip_comment(s)))
    return out


def not_here(line: Line) -> str | None:
    for pattern, reason in NOT_HERE.items():
        if re.search(pattern, line.text):
            return reason
    return None


def is_synopsis(line: Line) -> bool:
    return " [" in line.text


ALL = [ln for d in DOCS for ln in command_lines(d)]


# --- a session: one document's commands, in order -----------------------------------------------

ON_PATH = {"README.md": False}       # documents read without .venv/bin on PATH


class Session:
    def __init__(self, root: Path, tools_on_path: bool = True) -> None:
        self.root = root
        if (BIN.parent / "pyvenv.cfg").exists():     # this venv: .venv/bin/python is its
            (root / ".venv").symlink_to(BIN.parent)
        else:
            (root / ".venv").mkdir()
            (root / ".venv" / "bin").symlink_to(BIN)
        for d in ("bench", "tools"):                # the scripts docs run by their path
            (root / d).symlink_to(REPO / d)
        (root / "scenarios").mkdir()
        for name in SCENARIOS:
            shutil.copy(REPO / "scenarios" / name, root / "scenarios" / name)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PUMP_")}
        path = [p for p in self.env.get("PATH", "").split(os.pathsep)
                if p and Path(p).resolve() != BIN.resolve()]
        self.env["PATH"] = os.pathsep.join(([str(BIN)] if tools_on_path else []) + path)
        self.env["XDG_CONFIG_HOME"] = str(root / "config")
        self.subs = dict(PLACEHOLDERS)
        self.boards: list[subprocess.Popen[bytes]] = []
        self.fresh: VirtualBoard | None = None

    def close(self) -> None:
        for p in self.boards:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.fresh is not None:
            self.fresh.close()

    def expand(self, text: str) -> str:
        for k, v in self.subs.items():
            text = re.sub(rf"(?<![\w/.-]){re.escape(k)}(?![\w])", v, text)
        return text

    def start_board(self, line: Line, text: str) -> None:
        argv = shlex.split(text) + ["--accel", BOARD_ACCEL]
        p = subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.boards.append(p)
        assert p.stdout is not None
        got = b""
        deadline = time.monotonic() + 60
        while b"rig:" not in got:
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None:
                err = p.stderr.read().decode(errors="replace") if p.poll() is not None \
                    and p.stderr else ""
                pytest.fail(f"{line.where}: `{line.text}` printed no ports in 60 s:\n"
                            f"{got.decode(errors='replace')}{err}", pytrace=False)
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                got += os.read(p.stdout.fileno(), 4096)
        ports = dict(re.findall(r"(uart|rig):\s*(\S+)", got.decode()))
        self.subs["/dev/pts/4"], self.subs["/dev/pts/5"] = ports["uart"], ports["rig"]

    def run(self, line: Line) -> None:
        if "/dev/ttyACM0" in line.text and self.fresh is None:
            self.fresh = VirtualBoard("virtual", accel=int(BOARD_ACCEL)).start()
            self.subs["/dev/ttyACM0"] = self.fresh.uart_path
        text = self.expand(line.text)
        if BOARD.match(line.text):
            self.start_board(line, text)
            return
        if text.startswith("export "):
            for kv in shlex.split(text)[1:]:
                k, _, v = kv.partition("=")
                self.env[k] = v
            return
        want = next((c for p, c in EXPECT_EXIT.items() if re.search(p, line.text)), 0)
        try:
            p = subprocess.run(["bash", "-c", text], cwd=self.root, env=self.env, input="yes\n",
                               capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{line.where}: `{line.text}` did not finish in {TIMEOUT_S} s "
                        f"(ran: {text})\n{e.stdout!r}\n{e.stderr!r}", pytrace=False)
        said = p.stdout + p.stderr
        if p.returncode != want or "Traceback" in said:
            pytest.fail(f"{line.where}: `{line.text}` exited {p.returncode}, documented "
                        f"{want} (ran: {text})\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n"
                        f"{p.stderr[-3000:]}", pytrace=False)
        for doc_line in line.output:
            if doc_line.startswith("pumpctl:"):
                assert doc_line in said, f"{line.where}: documented {doc_line!r}, got:\n{said}"

    def check_synopsis(self, line: Line) -> None:
        words = line.text.split()
        cmd = []
        for w in words:
            if w.startswith("[") or w.isupper():
                break
            cmd.append(w)
        p = subprocess.run(["bash", "-c", " ".join(cmd) + " --help"], cwd=self.root,
                           env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S,
                           check=False)
        assert p.returncode == 0, f"{line.where}: `{' '.join(cmd)} --help` failed:\n{p.stderr}"
        for opt in re.findall(r"\[(-{1,2}[\w-]+)", line.text):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", p.stdout), \
                f"{line.where}: `{line.text}` shows {opt}, which `{' '.join(cmd)} --help` " \
                f"does not have"


DOCS_WITH_COMMANDS = sorted({ln.doc for ln in ALL if not_here(ln) is None})


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS)
def test_every_documented_command_line_runs(doc: str, tmp_path: Path) -> None:
    session = Session(tmp_path, ON_PATH.get(doc, True))
    try:
        for line in [ln for ln in ALL if ln.doc == doc and not_here(ln) is None]:
            if is_synopsis(line):
                session.check_synopsis(line)
            else:
                session.run(line)
    finally:
        session.close()


@pytest.mark.parametrize("line", [ln for ln in ALL if not_here(ln) is not None],
                         ids=lambda ln: f"{ln.where}")
def test_documented_line_that_cannot_run_here(line: Line) -> None:
    pytest.skip(f"`{line.text}`: {not_here(line)}")


def test_the_docs_have_command_lines_and_every_exception_is_used() -> None:
    """The extraction finds the documented commands, and NOT_HERE / EXPECT_EXIT name no line
    that is gone."""
    assert any(ln.text.startswith("pumpctl ") for ln in ALL)
    assert any("pumpsim run" in ln.text for ln in ALL)
    for pattern in (*NOT_HERE, *EXPECT_EXIT):
        assert any(re.search(pattern, ln.text) for ln in ALL), f"stale pattern {pattern!r}"
