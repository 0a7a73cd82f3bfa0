"""bench/bench_firmware.py measures what it says: the steady step of a RUNNING pump (not an
idle one refused its program), on CPython and on real MicroPython, with the one plant
model mounted as the firmware tests have it. A small run of its own runners."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_firmware",
                                                  REPO / "bench" / "bench_firmware.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pr5_bench_firmware_times_a_running_pump_on_both_interpreters():
    b = _bench()
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
