"""A HAL for firmware unit tests: virtual clock with MicroPython's tick wrap, a motor that
moves on that clock, switchable sensors and real files. Runs on CPython and MicroPython."""
import os

from pump.ticks import TICKS_PERIOD, ticks_add, ticks_diff

_MASK = TICKS_PERIOD - 1


class Storage:
    """Journal files in a real directory."""

    def __init__(self, root):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass

    def path(self, name):
        return self.root + "/" + name

    def open(self, name, mode):
        return open(self.path(name), mode)

    def size(self, name):
        try:
            return os.stat(self.path(name))[6]
        except OSError:
            return -1

    def remove(self, name):
        try:
            os.remove(self.path(name))
        except OSError:
            pass

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

    def enable(self, on):
        if not on:
            self.base = self.position()
            self.steps = 0
        self.on = on

    def enabled(self):
        return self.on

    def move(self, steps, ms):
        self.base = self.position()
        self.steps = steps
        self.ms = ms if ms > 0 else 1
        self.t0 = self.hal.t
        self.moves += 1

    def stop(self):
        self.base = self.position()
        self.steps = 0

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
    def __init__(self):
        self.pulses = 0
        self.armed = -1

    def count(self):
        return self.pulses

    def arm(self, count):
        self.armed = count


class FakeHal:
    def __init__(self, root, start_ticks=0, rtc0=800000000):
        self.t = start_ticks          # unwrapped virtual ms
        self.rtc0 = rtc0
        self.motor = Motor(self)
        self.rotation = Rotation()
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
        return self.pressure

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

    def wdt_feed(self):
        self.feeds += 1


def advance(ctl, hal, end):
    """One wake: step, then jump virtual time to the wake (never past `end`)."""
    wake = ctl.step(hal.ticks_ms())
    dt = ticks_diff(wake, hal.ticks_ms())
    if dt < 1:
        dt = 1
    if hal.t + dt > end:
        hal.t = end
    else:
        hal.t += dt


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
