"""Steady-state control steps, timed on whichever interpreter runs this (CPython or
MicroPython). Prints one JSON line. Used by bench_firmware.py; needs firmware/ and tests/fw/
on the path (fakehal: a virtual clock and a motor, so only firmware work is timed)."""
import gc
import json
import sys
import time

from fakehal import FakeHal, advance, bench, heap_growth, tmpdir

from pump import program
from pump.codes import CLINICIAN, RUNNING
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
    # a basic (rate/VTBI) program is the bench's, in service mode (fakehal.bench)
    code = bench(ctl, program.basic(1, 5000, 1000000))
    if code is None:
        code = ctl.request("start", CLINICIAN)
    if code is not None or ctl.state != RUNNING:
        raise SystemExit("fw_step: the pump did not start (%s, %s)" % (code, ctl.state))
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
    if ctl.state != RUNNING:
        raise SystemExit("fw_step: the pump left RUNNING (%s)" % ctl.state)
    fw_used = -1
    if hasattr(gc, "mem_alloc"):
        # the firmware's own: the heap locked to it, the fake's plant excepted (PR-5)
        try:
            # (at most 2000 more: 10,000 + 10,000 would reach the program's VTBI)
            fw_used = heap_growth(lambda: advance(ctl, hal, end), min(steps, 2000))
        except AssertionError:
            fw_used = None
    if ctl.state != RUNNING:
        raise SystemExit("fw_step: the pump left RUNNING (%s)" % ctl.state)
    ctl.journal.close()
    return _elapsed_us(t0, t1) / steps, used, fw_used


def main():
    times = []
    used = 0
    fw_used = -1
    for _ in range(REPEATS):
        us, used, fw_used = one(STEPS)
        times.append(us)
    times.sort()
    print(json.dumps({"impl": sys.implementation.name, "steps": STEPS, "repeats": REPEATS,
                      "us_per_step_median": times[REPEATS // 2], "us_per_step_min": times[0],
                      "bytes_per_step": used / STEPS if used >= 0 else None,
                      "firmware_allocates": None if fw_used == -1 else fw_used is None}))


main()
