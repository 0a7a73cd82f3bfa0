"""A HAL for firmware unit tests: plant.vhal.VirtualHal (virtual clock with MicroPython's
tick wrap, the motor, the rotation sensor and the line of plant.physics) on real files, plus
the knobs the tests turn. Runs on CPython and MicroPython.

The plant is the nominal one (no stroke noise, no slot jitter: 250 nL and a rotation pulse
every 50 steps of camshaft travel, either direction) with a bag that does not run dry.
Knobs: `hal.door`, `hal.air`, `hal.battery` (mV), `hal.pressure` (an external pressure
source, mmHg: the line reads the higher of it and its own pressure); `occlude()`,
`release()`, `stored_nl()`; `cam_speed(num, den)` (from now on the camshaft turns num/den
times what the driver commands: runaway, drift), `spin(steps)` (it turns on its own);
`cam_steps()`; and on the sensor `rotation.jitter` (per-slot edge offsets, steps),
`rotation.stuck()`, `rotation.dropout(keep_num, keep_den)`, `rotation.pulses` (counts
added to the camshaft's own) and `rotation.armed` (the compare value; -1: none).

Interrupts the plant raises (a knob's own line included, e.g. the door switch) are latched
in `hal.flags`; `advance` hands them to the controller before it steps. A test that calls
ctl.step itself raises the flags it wants. The rotation compare's EV_ROTATION is handed over
only with `hal.compare = True` (off by default: the compare interrupt is not wired); then
`advance` stops at the ms the armed count is reached, as the board's counter interrupt does.
"""
import math
import os

from boards.fs import DirStorage
from plant.physics import Config, Counter, Driver, Plant
from plant.vhal import VirtualHal
from pump.hal import EV_ROTATION
from pump.ticks import ticks_diff

try:
    from gc import mem_alloc as _mem_alloc
except ImportError:            # CPython: allocation is measured on MicroPython only
    def _mem_alloc():
        return 0

# Bytes the fake's plant allocated (MicroPython boxes floats; a board has no plant):
# heap_growth leaves them out, so it measures the firmware's allocations alone.
_PLANT_BYTES = [0]


def _plant_bytes(since):
    _PLANT_BYTES[0] += _mem_alloc() - since


class Storage(DirStorage):
    """Journal files in a real directory, and a way to empty it."""

    def wipe(self):
        for n in os.listdir(self.root):
            os.remove(self.path(n))


class Motor(Driver):
    """The physics' driver, its plant work metered (see _PLANT_BYTES)."""

    def enable(self, on):
        a = _mem_alloc()
        Driver.enable(self, on)
        _plant_bytes(a)

    def move(self, steps, ms):
        a = _mem_alloc()
        Driver.move(self, steps, ms)
        _plant_bytes(a)

    def stop(self):
        a = _mem_alloc()
        Driver.stop(self)
        _plant_bytes(a)


class Rotation(Counter):
    """The MCU's counter over the physics' sensor, with the tests' knobs (module doc)."""

    def __init__(self, hal):
        Counter.__init__(self, hal.plant, hal.clock)
        self.hal = hal
        self._jitter = None

    def count(self):
        a = _mem_alloc()
        c = Counter.count(self)
        _plant_bytes(a)
        return c

    def arm(self, count):
        a = _mem_alloc()
        Counter.arm(self, count)
        _plant_bytes(a)

    @property
    def armed(self):
        a = self.plant.armed
        return a - self.offset if a >= 0 else -1

    @armed.setter
    def armed(self, count):
        self.arm(count)

    @property
    def pulses(self):
        return -self.offset

    @pulses.setter
    def pulses(self, n):
        armed = self.armed
        self.offset = -n
        if armed >= 0:
            self.arm(armed)

    @property
    def jitter(self):
        return self._jitter

    @jitter.setter
    def jitter(self, offsets):
        """Per-slot edge offsets (steps; None: none): edge k sits at 50 k + jitter[k % 4]."""
        self._jitter = offsets
        n = self.plant.cfg.pulses_per_rev
        self.plant.set_slot_offsets(self.hal.t, offsets if offsets is not None else [0] * n)

    def stuck(self):
        """The count freezes where it is (a stuck or dead sensor)."""
        self.plant.set_stuck(self.hal.t, True)

    def dropout(self, keep_num, keep_den):
        """From now on only keep_num/keep_den of the pulses are counted."""
        self.plant.set_dropout(self.hal.t, 1.0 - keep_num / keep_den)


class FakeHal(VirtualHal):
    def __init__(self, root, start_ticks=0, rtc0=800000000):
        cfg = Config()
        cfg.bag_fill_ml = 1000000.0           # a bag that does not run dry
        super().__init__(Storage(root), start_ticks, rtc0, Plant(cfg))
        self.motor = Motor(self.plant, self.clock)
        self.rotation = Rotation(self)
        self.compare = False          # advance() hands over the rotation compare (module doc)
        self.flags = 0                # interrupts latched for advance()
        self.signal = self._latch

    def _latch(self, flag):
        self.flags |= flag

    @property
    def rtc0(self):
        return self.rtc0_s

    # --- the plant's readings, metered (_PLANT_BYTES) -----------------------------------------
    def pressure_mmhg(self):
        a = _mem_alloc()
        p = VirtualHal.pressure_mmhg(self)
        _plant_bytes(a)
        return p

    def battery_mv(self):
        a = _mem_alloc()
        v = VirtualHal.battery_mv(self)
        _plant_bytes(a)
        return v

    def clamp(self, closed):
        a = _mem_alloc()
        VirtualHal.clamp(self, closed)
        _plant_bytes(a)

    def advance_to(self, t):
        a = _mem_alloc()
        VirtualHal.advance_to(self, t)
        _plant_bytes(a)

    # --- knobs ----------------------------------------------------------------------------------
    @property
    def door(self):
        return self.plant.door

    @door.setter
    def door(self, closed):
        self.plant.set_door(self.t, closed)

    @property
    def air(self):
        return self.plant.air

    @air.setter
    def air(self, on):
        self.plant.set_air(on)

    @property
    def battery(self):
        return self.plant.battery_mv(self.t)

    @battery.setter
    def battery(self, mv):
        self.plant.set_battery(self.t, mv)

    @property
    def pressure(self):
        return self.plant.source_mmhg

    @pressure.setter
    def pressure(self, mmhg):
        self.plant.set_source(self.t, mmhg)

    def occlude(self):
        """Downstream occlusion: from now on what the camshaft pushes stays in the line's
        compliance and raises the pressure; running backwards takes it out again."""
        self.plant.set_occluded(self.t, True)

    def stored_nl(self):
        """Volume held in the line (what its release would bolus)."""
        self.plant.settle(self.t)
        return int(round(self.plant.stored_ul * 1000.0))

    def release(self):
        """The occlusion clears; returns the bolus (nL) that reaches the patient (none while
        the pump's own clamp still holds the line)."""
        p = self.plant
        b = p.bolus_ul
        p.set_occluded(self.t, False)
        return int(round((p.bolus_ul - b) * 1000.0))

    def cam_steps(self):
        """Camshaft position in whole steps."""
        return math.floor(self.plant.cam(self.t))

    def cam_speed(self, num, den):
        """From now on the camshaft turns num/den times what the driver commands."""
        self.plant.set_speed_factor(self.t, runaway=num / den)

    def spin(self, steps):
        """The camshaft turns `steps` on its own (no motor command)."""
        a = _mem_alloc()
        self.plant.turn(self.t, steps)
        _plant_bytes(a)


def _hand_over(ctl, hal):
    """Give the controller the interrupts latched since the last call; True if any."""
    f = hal.flags
    hal.flags = 0
    if not hal.compare:
        f &= ~EV_ROTATION
    if f:
        ctl.signal(f)
        return True
    return False


def advance(ctl, hal, end):
    """One wake: hand over the latched interrupts, step, then jump virtual time to the wake
    (never past `end`), stopping earlier at a plant crossing that raises an interrupt (the
    next call hands it over)."""
    _hand_over(ctl, hal)
    wake = ctl.step(hal.ticks_ms())
    if _hand_over(ctl, hal):
        return                              # raised during the step: step again at once
    dt = ticks_diff(wake, hal.ticks_ms())
    if dt < 1:
        dt = 1
    target = end if hal.t + dt > end else hal.t + dt
    at = hal.next_at()
    while at is not None and at <= target:
        hal.advance_to(at)
        if hal.flags and (hal.compare or hal.flags != EV_ROTATION):
            return
        at = hal.next_at()
    hal.advance_to(target)


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
    """Bytes the MicroPython heap grows by over `steps` calls of fn(), collector off, less
    what the fake's plant allocated (_PLANT_BYTES): the firmware's allocations alone."""
    import gc
    gc.collect()
    gc.disable()
    try:
        own = _PLANT_BYTES[0]
        a = gc.mem_alloc()
        i = 0
        while i < steps:
            fn()
            i += 1
        return gc.mem_alloc() - a - (_PLANT_BYTES[0] - own)
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
