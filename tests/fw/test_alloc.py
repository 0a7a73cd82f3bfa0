"""PR-5: a steady-state control step allocates nothing on MicroPython.

Steady state: RUNNING, each wake ends a motor segment, begins the next and journals its
write-ahead reservation (a file write). Measured with gc.mem_alloc and the collector off.
"""
from fakehal import FakeHal, advance, bench, heap_growth, skip_unless_micropython, tmpdir

from pump import program
from pump.codes import CLINICIAN, RUNNING
from pump.controller import Controller

_STEPS = 10000


def _measure(ctl, hal, steps):
    end = hal.t + 10 * 24 * 3600000
    return heap_growth(lambda: advance(ctl, hal, end), steps)


def test_pr5_steady_state_step_allocates_nothing():
    skip_unless_micropython()
    hal = FakeHal(tmpdir("alloc"))
    ctl = Controller(hal)
    ctl.boot()
    # 5 mL/h for 1000 mL: 200 h, longer than 10,000 segments of 36 s
    assert bench(ctl, program.basic(1, 5000, 1000000)) is None
    assert ctl.request("start", CLINICIAN) is None
    _measure(ctl, hal, 100)                     # warm-up: first records, caches
    seq0 = ctl.journal.seq
    used = _measure(ctl, hal, _STEPS)
    assert ctl.state == RUNNING
    assert ctl.journal.seq - seq0 >= _STEPS - 1   # each step really journalled
    print("bytes allocated over %d steady steps: %d" % (_STEPS, used))
    assert used == 0, used
