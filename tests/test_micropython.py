"""Run the firmware unit tests (tests/fw/test_*.py) under real MicroPython.

Each firmware test shows up here once more as ``mpy::<module>::<test>``. Test names are found
statically (``ast``) at collection time; the first test of a module runs the whole module in
one Node process (tools/mpy_run.mjs + tools/mpy_fwtests.py, firmware/ mounted at /flash,
tests/fw/ at /fw and the plant package at /lib/plant, with /flash, /fw and /lib on sys.path:
`mpy_command`) and the results are cached for the rest of the module.

A module-level ``MPY_SKIP = {"test_name": "reason"}`` in a firmware test module marks tests
as CPython-only: they are reported as skipped here. Missing node or node_modules is a failure,
not a skip: run ``make setup``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FW_TESTS_DIR = REPO / "tests" / "fw"
PLANT_DIR = REPO / "plant"
RUNNER = REPO / "tools" / "mpy_run.mjs"
FWTESTS = REPO / "tools" / "mpy_fwtests.py"
MPY_PACKAGE = REPO / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
TIMEOUT_S = float(os.environ.get("MPY_TEST_TIMEOUT", "600"))


def discover() -> list[tuple[str, str]]:
    """(module, test) for every top-level ``def test_*`` in tests/fw/test_*.py, in file order."""
    found = []
    for path in sorted(FW_TESTS_DIR.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.append((path.stem, node.name))
    return found


@dataclass
class ModuleRun:
    """What one Node process reported for one firmware test module."""

    module: str
    returncode: int
    stderr: str
    results: dict[str, dict] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)  # what each test printed
    import_error: str | None = None
    summary: dict | None = None

    def context(self) -> str:
        return f"node exit status {self.returncode}\n--- stderr ---\n{self.stderr.strip()}"


_RUNS: dict[str, ModuleRun] = {}


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js, then run `make setup`", pytrace=False)
    if not (MPY_PACKAGE / "package.json").is_file():
        pytest.fail(
            f"{MPY_PACKAGE.relative_to(REPO)} is missing: run `make setup` (npm ci)",
            pytrace=False,
        )
    return node


def mpy_command(script: Path, *args: str) -> list[str]:
    """The Node command running `script` under MicroPython with the firmware (/flash), the
    firmware test helpers (/fw) and the plant package (/lib/plant) importable, as on CPython."""
    return [
        _require_node(), str(RUNNER),
        "--mount", f"{REPO / 'firmware'}:/flash",
        "--mount", f"{FW_TESTS_DIR}:/fw",
        "--mount", f"{PLANT_DIR}:/lib/plant",
        "--path", "/flash", "--path", "/fw", "--path", "/lib",
        str(script), *args,
    ]  # fmt: skip


def run_module(module: str) -> ModuleRun:
    """Run one firmware test module under MicroPython (once per session)."""
    if module in _RUNS:
        return _RUNS[module]
    cmd = mpy_command(FWTESTS, module)
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"MicroPython run of {module} timed out after {TIMEOUT_S:.0f} s: {exc}")
    run = ModuleRun(module, proc.returncode, proc.stderr)
    pending: list[str] = []
    for line in proc.stdout.splitlines():
        record = None
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
        if not isinstance(record, dict) or record.get("kind") not in ("test", "import", "summary"):
            pending.append(line)
            continue
        if record["kind"] == "test":
            run.results[record["test"]] = record
            run.output[record["test"]] = "\n".join(pending)
            pending = []
        elif record["kind"] == "import":
            run.import_error = record["error"] + "\n".join(pending)
        else:
            run.summary = record
    _RUNS[module] = run
    return run


CASES = discover()


@pytest.mark.parametrize(
    ("module", "test"),
    [pytest.param(m, t, id=f"mpy::{m}::{t}") for m, t in CASES]
    or [pytest.param(None, None, id="mpy::no-firmware-tests")],
)
def test_firmware_under_micropython(module: str | None, test: str | None) -> None:
    if module is None or test is None:
        pytest.fail(f"no firmware tests found: expected def test_* in {FW_TESTS_DIR}/test_*.py")
    run = run_module(module)
    if run.import_error is not None:
        pytest.fail(
            f"MicroPython: importing {module} failed:\n{run.import_error}", pytrace=False
        )
    record = run.results.get(test)
    if record is None:
        why = "the run crashed" if run.summary is None else "not found at run time"
        pytest.fail(f"MicroPython: {module}::{test} did not run ({why})\n{run.context()}",
                    pytrace=False)
    if record.get("skipped"):
        pytest.skip(f"MPY_SKIP: {record['skipped']}")
    if not record["ok"]:
        impl = run.summary or {}
        out = run.output.get(test, "")
        msg = (
            f"MicroPython {impl.get('version', '?')}: {module}::{test} failed\n"
            f"{record['error'].rstrip()}"
        )
        if out:
            msg += f"\n--- output ---\n{out}"
        pytest.fail(msg, pytrace=False)
