"""A HAL for firmware unit tests: virtual clock with MicroPython's tick wrap, a motor that
moves on that clock, switchable sensors and real files. Runs on CPython and MicroPython.

The camshaft rotation sensor follows the motor: 4 pulses a revolution of 200 steps (a pulse
every 50 steps of travel, either direction). Tests can make the camshaft turn faster than
the driver commands (`hal.cam_speed(num, den)`: runaway, drift), turn on its own
(`hal.spin(steps)`), give the slots fixed jitter, or break the sensor (`rotation.stuck()`,
`rotation.dropout(keep_num, keep_den)`). With `hal.compare = True`, `advance` honours the
rotation compare (`arm`): it stops at the ms the armed count is reached and signals
EV_ROTATION, as the board's counter interrupt does. Off by default (old behaviour).
"""
import os

from boards.fs import DirStorage
from pump.hal import EV_ROTATION
from pump.ticks import TICKS_PERIOD, ticks_add, ticks_diff

_MASK = TICKS_PERIOD - 1


class Storage(DirStorage):
    """Journal files in a real directory, and a way to empty it."""

    def wipe(self):
        for n in os.listdir(self.root):
            os.remove(self.path(n))


class Motor:
    def __init__(self, hal):
        self.hal = hal
        self.on = False
        self.base = 0         # position when the current move began
        self.steps = 0
        self.ms = 1
        self.t0 = 0
        self.moves = 0
        self.travel0 = 0      # absolute steps travelled before the current move (camshaft)

    def enable(self, on):
        if not on:
            self._travelled()
            self.base = self.position()
            self.steps = 0
        self.on = on

    def enabled(self):
        return self.on

    def move(self, steps, ms):
        self._travelled()
        self.base = self.position()
        self.steps = steps
        self.ms = ms if ms > 0 else 1
        self.t0 = self.hal.t
        self.moves += 1

    def stop(self):
        self._travelled()
        self.base = self.position()
        self.steps = 0

    def _travelled(self):
        d = self.position() - self.base
        self.travel0 += d if d >= 0 else -d

    def travel(self):
        """Absolute steps the camshaft has been driven, both directions."""
        d = self.position() - self.base
        return self.travel0 + (d if d >= 0 else -d)

    def position(self):
        if not self.on:
            return self.base
        el = self.hal.t - self.t0
        if el >= self.ms:
            return self.base + self.steps
        return self.base + self.steps * el // self.ms

    def busy(self):
        return self.on and self.steps > 0 and self.hal.t - self.t0 < self.ms


class Rotation:
    def __init__(self, hal=None):
        self.hal = hal
        self.pulses = 0       # added to the camshaft's own pulses
        self.armed = -1
        self.jitter = None    # per-slot edge offsets in steps (4 values), or None
        self.frozen = -1      # >= 0: the count reads this (stuck or dead sensor)
        self.keep_num = 1     # dropout: only keep_num/keep_den of new pulses are counted
        self.keep_den = 1
        self.true0 = 0
        self.count0 = 0

    def true_count(self):
        hal = self.hal
        if hal is None:
            return 0
        cam = hal.cam_steps()
        m = cam // 50
        j = self.jitter
        if j is None:
            return m
        # edge k sits at 50 k + jitter[k % 4]; count the edges at or below cam
        n = m - 1
        k = m - 1
        while k <= m + 1:
            if k >= 1 and 50 * k + j[k % 4] <= cam:
                n = k
            k += 1
        return n if n > 0 else 0

    def count(self):
        if self.frozen >= 0:
            return self.frozen
        t = self.true_count()
        if self.keep_num != self.keep_den:
            t = self.count0 + (t - self.true0) * self.keep_num // self.keep_den
        return self.pulses + t

    def arm(self, count):
        self.armed = count

    def stuck(self):
        """The count freezes where it is (a stuck or dead sensor)."""
        self.frozen = self.count()

    def dropout(self, keep_num, keep_den):
        """From now on only keep_num/keep_den of the pulses are counted."""
        self.count0 = self.count() - self.pulses
        self.true0 = self.true_count()
        self.keep_num = keep_num
        self.keep_den = keep_den


class FakeHal:
    def __init__(self, root, start_ticks=0, rtc0=800000000):
        self.t = start_ticks          # unwrapped virtual ms
        self.rtc0 = rtc0
        self.motor = Motor(self)
        self.rotation = Rotation(self)
        self.compare = False          # advance() honours rotation.arm (see module doc)
        self.cam_num = 1              # camshaft speed / commanded speed
        self.cam_den = 1
        self.cam_base = 0             # camshaft steps when the speed factor last changed
        self.travel_base = 0
        self.cam_extra = 0            # steps turned with no motor command (spin)
        self.occluded_at = None       # motor position when the line was occluded
        self.compliance_nl_per_mmhg = 500
        self.storage = Storage(root)
        self.door = True
        self.air = False
        self.pressure = 0
        self.battery = 4000
        self.buzzing = False
        self.clamped = False
        self.uart = None
        self.feeds = 0

    def ticks_ms(self):
        return self.t & _MASK

    def ticks_add(self, t, d):
        return ticks_add(t, d)

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def rtc_s(self):
        return self.rtc0 + self.t // 1000

    def pressure_mmhg(self):
        if self.occluded_at is None:
            return self.pressure
        return self.pressure + self.stored_nl() // self.compliance_nl_per_mmhg

    def occlude(self):
        """Downstream occlusion: from now on what the motor pushes stays in the line's
        compliance and raises the pressure; running backwards takes it out again."""
        self.occluded_at = self.motor.position()

    def stored_nl(self):
        """Volume held in the line by an occlusion (what its release would bolus)."""
        if self.occluded_at is None:
            return 0
        d = (self.motor.position() - self.occluded_at) * 250
        return d if d > 0 else 0

    def release(self):
        """The occlusion clears; returns the bolus (nL) that reaches the patient."""
        b = self.stored_nl()
        self.occluded_at = None
        return b

    def air_detected(self):
        return self.air

    def door_closed(self):
        return self.door

    def battery_mv(self):
        return self.battery

    def buzzer(self, on):
        self.buzzing = on

    def led(self, on):
        pass

    def clamp(self, closed):
        self.clamped = closed

    def cam_steps(self):
        """Camshaft position in steps of travel (both directions count)."""
        return (self.cam_base + (self.motor.travel() - self.travel_base) * self.cam_num
                // self.cam_den + self.cam_extra)

    def cam_speed(self, num, den):
        """From now on the camshaft turns num/den times what the driver commands."""
        self.cam_base = self.cam_steps() - self.cam_extra
        self.travel_base = self.motor.travel()
        self.cam_num = num
        self.cam_den = den

    def spin(self, steps):
        """The camshaft turns `steps` on its own (no motor command)."""
        self.cam_extra += steps

    def wdt_feed(self):
        self.feeds += 1


def advance(ctl, hal, end):
    """One wake: step, then jump virtual time to the wake (never past `end`). With
    hal.compare, stop earlier at the ms the armed rotation count is reached and signal
    EV_ROTATION (the counter's compare interrupt)."""
    wake = ctl.step(hal.ticks_ms())
    dt = ticks_diff(wake, hal.ticks_ms())
    if dt < 1:
        dt = 1
    target = end if hal.t + dt > end else hal.t + dt
    if hal.compare and hal.rotation.armed >= 0:
        at = _compare_time(hal, target)
        if at >= 0:
            hal.t = at
            hal.rotation.armed = -1
            ctl.signal(EV_ROTATION)
            return
    hal.t = target


def _compare_time(hal, target):
    """The first ms in [hal.t, target] at which count() >= armed, or -1 (the count only
    grows between steps, so a bisection finds it)."""
    rot = hal.rotation
    want = rot.armed
    t0 = hal.t
    if rot.count() >= want:
        return t0
    hal.t = target
    reached = rot.count() >= want
    hal.t = t0
    if not reached:
        return -1
    lo = t0               # count < want at lo
    hi = target           # count >= want at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        hal.t = mid
        if rot.count() >= want:
            hi = mid
        else:
            lo = mid
    hal.t = t0
    return hi


def run_for(ctl, hal, ms):
    """Step the controller on virtual time for `ms`, jumping from wake to wake."""
    end = hal.t + ms
    n = 0
    while hal.t < end:
        advance(ctl, hal, end)
        n += 1
    return n


def run_until_state(ctl, hal, state, limit_ms):
    end = hal.t + limit_ms
    while ctl.state != state and hal.t < end:
        advance(ctl, hal, end)
    return ctl.state == state


_counter = [0]


def tmpdir(tag):
    """A fresh, empty directory for a test's journal (same call on both interpreters)."""
    _counter[0] += 1
    base = "/tmp" if _exists("/tmp") else "."
    root = "%s/pumpfw-%s-%d-%d" % (base, tag, _pid(), _counter[0])
    Storage(root).wipe()
    return root


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _pid():
    try:
        return os.getpid()
    except AttributeError:
        return 0


def skip_unless_micropython():
    """Allocation is measured on MicroPython only; under CPython pytest skips the test."""
    import sys
    if sys.implementation.name != "micropython":
        import pytest
        pytest.skip("allocation is measured on MicroPython (tests/test_micropython.py)")


def heap_growth(fn, steps):
    """Bytes the MicroPython heap grows by over `steps` calls of fn(), collector off."""
    import gc
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        i = 0
        while i < steps:
            fn()
            i += 1
        return gc.mem_alloc() - a
    finally:
        gc.enable()


def pump(tag, rate=10000, vtbi_ul=240000, start=True, start_ticks=0, compare=False):
    """A booted controller on a fresh FakeHal with a basic program accepted (and started):
    (hal, controller). `compare` turns on the rotation compare interrupt."""
    from pump import program
    from pump.codes import CLINICIAN
    from pump.controller import Controller
    hal = FakeHal(tmpdir(tag), start_ticks)
    hal.compare = compare
    ctl = Controller(hal)
    ctl.boot()
    assert ctl.request("program", CLINICIAN, program.basic(1, rate, vtbi_ul)) is None
    if start:
        assert ctl.request("start", CLINICIAN) is None
    return hal, ctl
