"""Reference board (RP2040, MicroPython's rp2 port): pin map and the HAL of pump/hal.py on
`machine`, the host link on the USB serial (CDC).

Nothing here runs at import: `make_hal(signal, ...)` builds the hardware objects. `signal`
is the controller's flag setter; interrupt handlers only count, compare and call it.

Boot (`make_hal`): for _BREAK_MS the board listens for Ctrl-C on the USB serial before
anything is driven or the watchdog starts; a Ctrl-C then stops main.py and leaves the
MicroPython REPL (what `pumpctl flash` and mpremote use). After that window Ctrl-C is a byte
like any other (kbd_intr(-1)): the protocol owns the USB serial and a stray 0x03 from a host
is a malformed frame, not a stop of the pump.

The sleep between wakes (`idle`) waits in select.poll on the USB serial and on the board's
interrupt flag, up to the wake the firmware asked for but never longer than _FEED_MS: the
watchdog (at most 8.3 s on the RP2040) is fed there as well as at every wake, because the
controller may sleep for a minute.
"""
import io
import select
import sys
import time

import machine
import micropython
from micropython import const

from boards.fs import DirStorage

# Pin map (GPIO numbers)
_STEP = const(2)
_DIR = const(3)
_EN = const(4)             # motor power-stage enable, active high; pulled low when unpowered
_ROT = const(5)            # camshaft rotation sensor (slotted disc, 4 slots a revolution)
_AIR = const(6)            # air-in-line detector, high = air
_DOOR = const(7)           # cassette/door switch, low = closed
_CLAMP = const(8)          # downstream pinch clamp, high = open (closed when unpowered)
_BUZZ = const(9)
_LED = const(25)
_ADC_PRESSURE = const(26)  # downstream pressure transducer
_ADC_BATTERY = const(27)   # battery through a 1:2 divider

# Calibration of the analogue inputs (service role may adjust)
_PRESSURE_MMHG_PER_COUNT_X1000 = const(12)      # 12/1000 mmHg per ADC count (16 bit)
_BATTERY_MV_PER_COUNT_X1000 = const(101)        # 3300 mV * 2 / 65535 ~ 0.1007 mV
_EPOCH_2000 = const(946684800)

_WDT_MS = const(8000)          # watchdog timeout (the RP2040's longest is 8388 ms)
_FEED_MS = const(2000)         # the longest sleep between two feeds
_BREAK_MS = const(500)         # the boot window for Ctrl-C (maintenance: pumpctl flash)
_RX_MAX = const(512)           # bytes read from the USB serial per call at most
_RTC_REBASE_MS = const(86400000)   # rtc_s() reads the RTC again after a day of ticks

# The watchdog's registers: REASON says a watchdog caused the last reset, SCRATCH4 holds the
# pico-sdk's magic when it was armed by watchdog_enable (machine.WDT), not by
# watchdog_reboot (machine.reset(), mpremote reset: SCRATCH4 = 0).
_WATCHDOG_REASON = const(0x40058008)
_WATCHDOG_SCRATCH4 = const(0x4005801C)
_WATCHDOG_NON_REBOOT_MAGIC = const(0x6AB73121)
_POLL_STREAM = const(3)        # MP_STREAM_POLL
_POLLIN = const(1)


class Motor:
    """Step generator on a timer: move(steps, ms) spreads steps evenly, to the microsecond
    (a timer period of whole ms would run a move up to 1/period fast: 7 % at 120 mL/h)."""

    def __init__(self):
        self._step = machine.Pin(_STEP, machine.Pin.OUT, value=0)
        self._dir = machine.Pin(_DIR, machine.Pin.OUT, value=0)
        self._en = machine.Pin(_EN, machine.Pin.OUT, value=0)
        self._timer = machine.Timer()
        self._pos = 0
        self._left = 0
        self._sign = 1
        self._tick_cb = self._tick        # bound once: no allocation in the ISR path

    def enable(self, on):
        if not on:
            self.stop()
        self._en.value(1 if on else 0)

    def enabled(self):
        return self._en.value() == 1

    def move(self, steps, ms):
        """The first step now, the others every ms/steps (to the µs): the last one falls a
        period before the move's end, so the next move (delivery's next segment, due at
        that end) never replaces a step not yet made."""
        self._timer.deinit()
        if steps == 0 or not self.enabled():
            self._left = 0
            return
        self._sign = 1 if steps > 0 else -1
        self._dir.value(1 if steps > 0 else 0)
        n = steps if steps > 0 else -steps
        period_us = ms * 1000 // n
        self._left = n
        self._tick(None)
        if self._left > 0:
            self._timer.init(mode=machine.Timer.PERIODIC,
                             period=period_us if period_us > 0 else 1,
                             tick_hz=1000000, callback=self._tick_cb)

    def _tick(self, _t):
        if self._left <= 0:
            self._timer.deinit()
            return
        self._step.value(1)
        self._step.value(0)
        self._left -= 1
        self._pos += self._sign

    def stop(self):
        self._timer.deinit()
        self._left = 0

    def position(self):
        return self._pos

    def busy(self):
        return self._left > 0


class Rotation:
    """Counts camshaft pulses in a hard IRQ (never lost to a full scheduler queue); a compare
    value signals the controller. The handler allocates nothing (a hard IRQ must not)."""

    def __init__(self, signal, flag, woke):
        self._count = 0
        self._armed = -1
        self._signal = signal
        self._flag = flag
        self._woke = woke
        self._pin = machine.Pin(_ROT, machine.Pin.IN, machine.Pin.PULL_UP)
        self._pin.irq(trigger=machine.Pin.IRQ_RISING, handler=self._irq, hard=True)

    def _irq(self, _pin):
        self._count += 1
        if 0 <= self._armed <= self._count:
            self._armed = -1
            self._woke.flag = 1
            self._signal(self._flag)

    def count(self):
        return self._count

    def arm(self, count):
        self._armed = count
        if 0 <= count <= self._count:
            self._armed = -1
            self._woke.flag = 1
            self._signal(self._flag)


class UsbSerial:
    """The host link on the USB serial (MicroPython's stdin/stdout over CDC), non-blocking."""

    def __init__(self, poll):
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._poll = poll
        self._buf = bytearray(_RX_MAX)
        self._one = bytearray(1)

    def _ready(self):
        for _ in self._poll.ipoll(0):
            return True
        return False

    def any(self):
        return 1 if self._ready() else 0

    def read(self, n):
        if not self._ready():
            return None
        if n > _RX_MAX:
            n = _RX_MAX
        i = 0
        one = self._one
        buf = self._buf
        while i < n and self._ready():
            self._in.readinto(one)
            buf[i] = one[0]
            i += 1
        return bytes(buf[:i])

    def write(self, b):
        return self._out.write(b)


class Woke(io.IOBase):
    """A pollable flag: readable once an interrupt has asked for a wake (select.poll sees it
    when the interrupt ends the sleep's WFE)."""

    def __init__(self):
        self.flag = 0

    def ioctl(self, req, arg):
        if req == _POLL_STREAM and self.flag:
            return arg & _POLLIN
        return 0


class Rp2Hal:
    def __init__(self, signal, ev_rotation, ev_door, ev_air):
        woke = Woke()
        self.woke = woke

        def wake_signal(flag):
            woke.flag = 1
            signal(flag)

        self.motor = Motor()
        self.rotation = Rotation(signal, ev_rotation, woke)
        self.storage = DirStorage("/data")
        self._stdin_poll = select.poll()
        self._stdin_poll.register(sys.stdin, select.POLLIN)
        self.uart = UsbSerial(self._stdin_poll)
        self.sleep_poll = select.poll()
        self.sleep_poll.register(sys.stdin, select.POLLIN)
        self.sleep_poll.register(woke, select.POLLIN)
        self.time_scale = 1               # the board's clock is the wall clock
        self._air = machine.Pin(_AIR, machine.Pin.IN)
        self._door = machine.Pin(_DOOR, machine.Pin.IN, machine.Pin.PULL_UP)
        self._clamp = machine.Pin(_CLAMP, machine.Pin.OUT, value=0)
        self._led = machine.Pin(_LED, machine.Pin.OUT, value=0)
        self._buzz = machine.PWM(machine.Pin(_BUZZ))
        self._buzz.freq(2700)
        self._buzz.duty_u16(0)
        self._p = machine.ADC(_ADC_PRESSURE)
        self._b = machine.ADC(_ADC_BATTERY)
        self._door.irq(trigger=machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING,
                       handler=lambda _p: wake_signal(ev_door))
        self._air.irq(trigger=machine.Pin.IRQ_RISING, handler=lambda _p: wake_signal(ev_air))
        self._epoch = _EPOCH_2000 if time.gmtime(0)[0] == 1970 else 0
        self._rtc_s0 = 0
        self._rtc_t0 = 0
        self._rtc_rebase()
        self._wdt = machine.WDT(timeout=_WDT_MS)

    def _rtc_rebase(self):
        # time.time() counts from 1970 on rp2: past 2**30 s, a heap integer. Read it here (at
        # boot, then once a day), then count the RTC forward from ticks_ms in small ints.
        self._rtc_s0 = time.time() - self._epoch
        self._rtc_t0 = time.ticks_ms()

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_add(self, t, d):
        return time.ticks_add(t, d)

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def rtc_s(self):
        """Seconds since 2000-01-01 without allocating (the journal's checkpoints read it on
        the steady path): the RTC at the last rebase plus the ticks since."""
        d = time.ticks_diff(time.ticks_ms(), self._rtc_t0)
        if d >= _RTC_REBASE_MS:
            self._rtc_rebase()
            d = 0
        return self._rtc_s0 + d // 1000

    def pressure_mmhg(self):
        return self._p.read_u16() * _PRESSURE_MMHG_PER_COUNT_X1000 // 1000

    def air_detected(self):
        return self._air.value() == 1

    def door_closed(self):
        return self._door.value() == 0

    def battery_mv(self):
        return self._b.read_u16() * _BATTERY_MV_PER_COUNT_X1000 // 1000

    def buzzer(self, on):
        self._buzz.duty_u16(32768 if on else 0)

    def led(self, on):
        self._led.value(1 if on else 0)

    def clamp(self, closed):
        self._clamp.value(0 if closed else 1)

    def wdt_feed(self):
        self._wdt.feed()


_hal = None


def maintenance_window(ms=_BREAK_MS):
    """Before the pump starts: a Ctrl-C on the USB serial within `ms` raises
    KeyboardInterrupt (main.py stops, the REPL takes the USB serial: flashing). Then Ctrl-C
    becomes data for the protocol."""
    micropython.kbd_intr(3)
    try:
        time.sleep_ms(ms)
    finally:
        micropython.kbd_intr(-1)


def make_hal(signal, ev_rotation, ev_door, ev_air):
    global _hal
    maintenance_window()
    _hal = Rp2Hal(signal, ev_rotation, ev_door, ev_air)
    return _hal


def watchdog_reset():
    """True when the watchdog bit (a hang), not machine.reset() or a power cycle: both of
    those leave REASON set or clear alike for reset_cause(), SCRATCH4 tells them apart."""
    return (machine.mem32[_WATCHDOG_REASON] & 1) != 0 and \
        machine.mem32[_WATCHDOG_SCRATCH4] == _WATCHDOG_NON_REBOOT_MAGIC


def idle(wake):
    """Sleep until `wake` (a tick), bytes on the USB serial or an interrupt that asked for a
    wake, at most _FEED_MS; feed the watchdog on the way out."""
    hal = _hal
    d = time.ticks_diff(wake, time.ticks_ms())
    if d > _FEED_MS:
        d = _FEED_MS
    if d > 0 and not hal.woke.flag:
        for _ in hal.sleep_poll.ipoll(d):
            break
    hal.woke.flag = 0
    hal.wdt_feed()
    hal.rtc_s()                       # keeps the RTC's tick base under a day old
