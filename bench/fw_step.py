"""Steady-state control steps, timed on whichever interpreter runs this (CPython or
MicroPython). Prints one JSON line. Used by bench_firmware.py; needs firmware/ and tests/fw/
on the path (fakehal: a virtual clock and a motor, so only firmware work is timed)."""
import gc
import json
import sys
import time

from fakehal import FakeHal, advance, tmpdir

from pump import program
from pump.codes import CLINICIAN
from pump.controller import Controller

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
REPEATS = 5


def _clock_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return time.perf_counter_ns() // 1000


def _elapsed_us(a, b):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(b, a)
    return b - a


def one(steps):
    hal = FakeHal(tmpdir("bench"))
    ctl = Controller(hal)
    ctl.boot()
    ctl.request("program", CLINICIAN, program.basic(1, 5000, 1000000))
    ctl.request("start", CLINICIAN)
    end = hal.t + 30 * 24 * 3600000
    i = 0
    while i < 100:
        advance(ctl, hal, end)
        i += 1
    # the loop's own cost (advance's HAL arithmetic) is inside the figure: it is small
    gc.collect()
    gc.disable()
    a_mem = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    t0 = _clock_us()
    i = 0
    while i < steps:
        advance(ctl, hal, end)
        i += 1
    t1 = _clock_us()
    used = (gc.mem_alloc() - a_mem) if hasattr(gc, "mem_alloc") else -1
    gc.enable()
    ctl.journal.close()
    return _elapsed_us(t0, t1) / steps, used


def main():
    times = []
    used = 0
    for _ in range(REPEATS):
        us, used = one(STEPS)
        times.append(us)
    times.sort()
    print(json.dumps({"impl": sys.implementation.name, "steps": STEPS, "repeats": REPEATS,
                      "us_per_step_median": times[REPEATS // 2], "us_per_step_min": times[0],
                      "bytes_per_step": used / STEPS if used >= 0 else None}))


main()
