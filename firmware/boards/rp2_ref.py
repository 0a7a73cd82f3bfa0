"""Reference board (RP2040): pin map and the HAL of pump/hal.py on `machine`.

Nothing here runs at import: `make_hal(signal)` builds the hardware objects. `signal` is
the controller's flag setter; interrupt handlers call only that (or bump a counter).
"""
import time

import machine
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
_UART_TX = const(0)
_UART_RX = const(1)

# Calibration of the analogue inputs (service role may adjust)
_PRESSURE_MMHG_PER_COUNT_X1000 = const(12)      # 12/1000 mmHg per ADC count (16 bit)
_BATTERY_MV_PER_COUNT_X1000 = const(101)        # 3300 mV * 2 / 65535 ~ 0.1007 mV
_EPOCH_2000 = const(946684800)


class Motor:
    """Step generator on a hardware timer: move(steps, ms) spreads steps evenly."""

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
        self._timer.deinit()
        if steps == 0 or not self.enabled():
            self._left = 0
            return
        self._sign = 1 if steps > 0 else -1
        self._dir.value(1 if steps > 0 else 0)
        self._left = steps if steps > 0 else -steps
        period_ms = ms // self._left if ms >= self._left else 1
        self._timer.init(mode=machine.Timer.PERIODIC, period=period_ms, callback=self._tick_cb)

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
    """Counts camshaft pulses in an IRQ; a compare value signals the controller."""

    def __init__(self, signal, flag):
        self._count = 0
        self._armed = -1
        self._signal = signal
        self._flag = flag
        self._pin = machine.Pin(_ROT, machine.Pin.IN, machine.Pin.PULL_UP)
        self._pin.irq(trigger=machine.Pin.IRQ_RISING, handler=self._irq)

    def _irq(self, _pin):
        self._count += 1
        if 0 <= self._armed <= self._count:
            self._armed = -1
            self._signal(self._flag)

    def count(self):
        return self._count

    def arm(self, count):
        self._armed = count
        if 0 <= count <= self._count:
            self._armed = -1
            self._signal(self._flag)


class Uart:
    def __init__(self):
        self._u = machine.UART(0, baudrate=115200, tx=machine.Pin(_UART_TX),
                               rx=machine.Pin(_UART_RX), timeout=0)

    def read(self, n):
        if self._u.any():
            return self._u.read(n)
        return None

    def any(self):
        return self._u.any()

    def write(self, b):
        return self._u.write(b)


class Rp2Hal:
    def __init__(self, signal, ev_rotation, ev_door, ev_air):
        self.motor = Motor()
        self.rotation = Rotation(signal, ev_rotation)
        self.storage = DirStorage("/data")
        self.uart = Uart()
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
        self._wdt = machine.WDT(timeout=8000)
        self._door.irq(trigger=machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING,
                       handler=lambda _p: signal(ev_door))
        self._air.irq(trigger=machine.Pin.IRQ_RISING, handler=lambda _p: signal(ev_air))
        self._epoch = _EPOCH_2000 if time.gmtime(0)[0] == 1970 else 0

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_add(self, t, d):
        return time.ticks_add(t, d)

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def rtc_s(self):
        return time.time() - self._epoch

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


def make_hal(signal, ev_rotation, ev_door, ev_air):
    return Rp2Hal(signal, ev_rotation, ev_door, ev_air)


def watchdog_reset():
    return machine.reset_cause() == machine.WDT_RESET


def idle(wake):
    """Sleep until any interrupt (the 1 ms system tick included); `wake`, the tick the
    firmware wants to run at, is a hint this board does not need."""
    machine.idle()
