"""The benchmarks' workers run, small, and measure what they say: bench/bench_firmware.py
times the steady step of a RUNNING pump (not an idle one refused its program) on CPython
and on real MicroPython with the one plant model mounted; bench/bench_reliability.py's
power-cut and bit-flip rows run their programs (a bench program in service mode, a
patient's from the library) and report what held. Each through the script's own runner,
as `make bench` runs it."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pr5_bench_firmware_times_a_running_pump_on_both_interpreters() -> None:
    b = _bench("bench_firmware")
    cpy = b.run_cpython(300)
    mpy = b.run_micropython(300)
    assert cpy["impl"] == "cpython" and mpy["impl"] == "micropython"
    for got in (cpy, mpy):
        assert got["steps"] == 300 and got["us_per_step_median"] > 0
    # on MicroPython it also checks the firmware's own allocations (heap locked to it)
    assert mpy["firmware_allocates"] is False
    assert cpy["firmware_allocates"] is None
    # the steady step journals and moves the plant: its gross allocation is the plant's
    assert mpy["bytes_per_step"] > 0


def test_sr9_reliability_power_cut_row_runs_bench_programs_through_lockouts() -> None:
    got = _bench("bench_reliability")._py("rel_power.py", 10000, 12, 3)
    assert got["cuts"] == 12 and got["violations"] == 0, got
    assert got["programs"] >= 2                   # a program after a lockout was taken
    assert "LOCKOUT" in got["by_state"]


def test_sr9_reliability_bit_flip_row_holds_on_every_file() -> None:
    rows = _bench("bench_reliability")._py_lines("rel_flips.py", 20)
    assert {r["file"] for r in rows} >= {"journal.bin", "journal.bin.2", "keys.0", "keys.1",
                                         "cal.0", "cal.1"}
    for r in rows:
        assert r["flips"] == 8 * r["bytes"] and r["held"] == r["flips"], r
        assert r["state"] == "LOCKOUT" and not r["first_failures"], r
