"""PR-5 / issue 5: the safety monitor allocates nothing per rotation pulse or per steady step.

Measured on MicroPython with gc.mem_alloc and the collector off (skipped on CPython, where
the measure means nothing). The rotation compare is live (`hal.compare`), so the steps
measured include the monitor's compare wakes on the pulse edges, the drift checkpoints, the
segment ends with their journal writes, and, paused, the uncommanded-motion watch.
"""

from fakehal import FakeHal, advance, bench, heap_growth, skip_unless_micropython, tmpdir

from pump import program
from pump.codes import CLINICIAN, PATIENT, PAUSED, RUNNING
from pump.controller import Controller
from pump.hal import EV_ROTATION

_STEPS = 4000


def _measure(fn, ctl, hal, steps):
    end = hal.t + 5 * 24 * 3600000
    return heap_growth(lambda: fn(ctl, hal, end), steps)


def _pump(tag, rate):
    hal = FakeHal(tmpdir(tag))
    hal.compare = True
    hal.rotation.jitter = (2, -2, 1, -1)
    ctl = Controller(hal)
    ctl.boot()
    assert bench(ctl, program.basic(1, rate, 1000000)) is None
    assert ctl.request("start", CLINICIAN) is None
    return hal, ctl


def test_monitor_steady_running_with_compare_wakes_allocates_nothing():
    skip_unless_micropython()
    for rate in (10000, 600):
        hal, ctl = _pump("malloc%d" % rate, rate)
        _measure(advance, ctl, hal, 200)               # warm-up
        pulses0 = hal.rotation.count()
        trips0 = ctl.monitor.trips
        used = _measure(advance, ctl, hal, _STEPS)
        assert ctl.state == RUNNING and ctl.monitor.trips == trips0
        assert hal.rotation.count() - pulses0 > _STEPS // 10   # pulses really went by
        print("rate %d: bytes allocated over %d steps with %d pulses: %d"
              % (rate, _STEPS, hal.rotation.count() - pulses0, used))
        assert used == 0, used


def _pulse_step(ctl, hal, end):
    """One pulse edge exactly: the camshaft moves to the next slot (50 steps in 4.5 s,
    10 mL/h), the compare fires, the controller steps."""
    hal.spin(50)
    hal.rotation.armed = -1
    ctl.signal(EV_ROTATION)
    ctl.step(hal.ticks_ms())
    hal.t += 4500


def test_monitor_per_pulse_check_allocates_nothing():
    skip_unless_micropython()
    hal, ctl = _pump("mpulse", 10000)
    hal.cam_speed(0, 1)           # the camshaft follows spin() alone: a pulse a step
    ctl.monitor.n_check = 1
    _measure(_pulse_step, ctl, hal, 50)
    used = _measure(_pulse_step, ctl, hal, _STEPS)
    assert ctl.monitor.trips == 0
    print("bytes allocated over %d pulse wakes: %d" % (_STEPS, used))
    assert used == 0, used


def test_monitor_paused_watch_allocates_nothing():
    skip_unless_micropython()
    hal, ctl = _pump("mpause", 10000)
    _measure(advance, ctl, hal, 100)
    assert ctl.request("pause", PATIENT) is None
    _measure(advance, ctl, hal, 10)
    used = _measure(advance, ctl, hal, _STEPS)
    assert ctl.state == PAUSED
    print("bytes allocated over %d paused steps: %d" % (_STEPS, used))
    assert used == 0, used


def _pulse_light(ctl, hal, end):
    """The same pulse edge through the light path (Controller.on_rotation, the soft IRQ)."""
    hal.spin(50)
    hal.rotation.armed = -1
    ctl.signal(EV_ROTATION)
    if ctl.on_rotation(hal.ticks_ms()) < 0:
        ctl.step(hal.ticks_ms())
    hal.t += 4500


def test_monitor_light_compare_path_allocates_nothing():
    skip_unless_micropython()
    hal, ctl = _pump("mlight", 10000)
    hal.cam_speed(0, 1)
    ctl.monitor.n_check = 1
    _measure(_pulse_light, ctl, hal, 50)
    used = _measure(_pulse_light, ctl, hal, _STEPS)
    assert ctl.monitor.trips == 0
    print("bytes allocated over %d light compare wakes: %d" % (_STEPS, used))
    assert used == 0, used
