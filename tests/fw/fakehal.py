"""A HAL for firmware unit tests: plant.vhal.VirtualHal (virtual clock with MicroPython's
tick wrap, the motor, the rotation sensor and the line of plant.physics) on real files, plus
the knobs the tests turn. Runs on CPython and MicroPython.

The plant is the nominal one (no stroke noise, no slot jitter: 250 nL a step at venous
pressure, 8 mmHg, and a rotation pulse every 50 steps of camshaft travel, either way) with
a bag that does not run dry.
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

try:
    import micropython
except ImportError:            # CPython: allocation is measured on MicroPython only
    micropython = None

from boards.fs import DirStorage
from plant.physics import Config, Counter, Driver, Plant
from plant.vhal import VirtualHal
from pump.hal import EV_ROTATION
from pump.ticks import ticks_diff


class _PlantWork:
    """`with _PLANT:` around the fake's plant work. While heap_growth measures, the heap is
    locked to the firmware (micropython.heap_lock) and this unlocks it for the plant, whose
    floats MicroPython boxes (a board has no plant); otherwise it does nothing."""

    def __init__(self):
        self.measuring = False

    def __enter__(self):
        if self.measuring:
            micropython.heap_unlock()

    def __exit__(self, kind, value, tb):
        if self.measuring:
            micropython.heap_lock()


_PLANT = _PlantWork()


class Storage(DirStorage):
    """Journal files in a real directory, and a way to empty it."""

    def wipe(self):
        for n in os.listdir(self.root):
            os.remove(self.path(n))


class Motor(Driver):
    """The physics' driver (its plant work may allocate: _PlantWork)."""

    def enable(self, on):
        with _PLANT:
            Driver.enable(self, on)

    def move(self, steps, ms):
        with _PLANT:
            Driver.move(self, steps, ms)

    def stop(self):
        with _PLANT:
            Driver.stop(self)


class Rotation(Counter):
    """The MCU's counter over the physics' sensor, with the tests' knobs (module doc)."""

    def __init__(self, hal):
        Counter.__init__(self, hal.plant, hal.clock)
        self.hal = hal
        self._jitter = None

    def count(self):
        with _PLANT:
            return Counter.count(self)

    def arm(self, count):
        with _PLANT:
            Counter.arm(self, count)

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

    # --- the plant's work, let allocate (_PlantWork) ------------------------------------------
    def pressure_mmhg(self):
        with _PLANT:
            return VirtualHal.pressure_mmhg(self)

    def battery_mv(self):
        with _PLANT:
            return VirtualHal.battery_mv(self)

    def clamp(self, closed):
        with _PLANT:
            VirtualHal.clamp(self, closed)

    def advance_to(self, t):
        with _PLANT:
            VirtualHal.advance_to(self, t)

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
        with _PLANT:
            self.plant.turn(self.t, steps)


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
    """Bytes the firmware allocates over `steps` calls of fn() on MicroPython: 0, or an
    AssertionError. The heap is locked to the firmware (micropython.heap_lock: an allocation
    fails at once), the fake's plant excepted (_PlantWork)."""
    import gc
    gc.collect()
    micropython.heap_lock()
    _PLANT.measuring = True
    i = 0
    try:
        while i < steps:
            fn()
            i += 1
    except MemoryError:
        pass
    finally:
        _PLANT.measuring = False
        micropython.heap_unlock()
    assert i == steps, "the firmware allocated during call %d of %d" % (i + 1, steps)
    return 0


def bench(ctl, prog):
    """Accept a basic (rate/VTBI) program the way a bench does: service mode first, entered
    and programmed by the service role (a basic program is refused outside it)."""
    from pump.codes import SERVICE_ROLE
    if not ctl.service:
        code = ctl.request("service", SERVICE_ROLE)
        if code is not None:
            return code
    return ctl.request("program", SERVICE_ROLE, prog)


# A patient's bag by its rate (µL/h): (bag hours, infusible µL, bag volume µL)
_BAGS = {10000: (24, 240000, 270000), 5000: (48, 240000, 270000), 600: (168, 100800, 110000)}


def clinical(pid=1, rate=10000, dose_ng_per_day=28000, patient=None, **plan):
    """A patient's Program from the drug library (70 kg, 175 cm, the bag of that rate), made
    the way the pump makes one: label, propose, confirm. `plan`: the label's plan position
    (default: cycle 2, day 1 of r/r, where 28 ug/day is due)."""
    from pump import program
    hours, infusible, volume = _BAGS[rate]
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": dose_ng_per_day, "bag_hours": hours}
    rx.update(regimen="r/r", cycle=2, day_from=1)
    rx.update(plan)
    label = program.make_label(rx, volume)
    assert isinstance(label, dict), label
    entry = {"rate": "%d.%03d" % (rate // 1000, rate % 1000), "unit": "mL/h",
             "vtbi_ml": "%d.%03d" % (infusible // 1000, infusible % 1000)}
    prop = program.propose(label, entry, pid, None, patient)
    assert not isinstance(prop, str), prop
    return program.confirm(prop, prop.echo)


def pump(tag, rate=10000, vtbi_ul=240000, start=True, start_ticks=0, compare=False,
         patient=False):
    """A booted controller on a fresh FakeHal with a basic program accepted in service mode
    (and started): (hal, controller). `compare` turns on the rotation compare interrupt.
    `patient`: a patient's program from the library instead (clinical(), its bag's VTBI)."""
    from pump import program
    from pump.codes import CLINICIAN
    from pump.controller import Controller
    hal = FakeHal(tmpdir(tag), start_ticks)
    hal.compare = compare
    ctl = Controller(hal)
    ctl.boot()
    if patient:
        assert ctl.request("program", CLINICIAN, clinical(1, rate)) is None
    else:
        assert bench(ctl, program.basic(1, rate, vtbi_ul)) is None
    if start:
        assert ctl.request("start", CLINICIAN) is None
    return hal, ctl
