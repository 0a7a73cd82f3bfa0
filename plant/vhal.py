"""A virtual-clock HAL over the physics: the whole HAL contract of firmware/pump/hal.py, for
the firmware unit tests and the virtual boards, on CPython and MicroPython alike.

    hal = VirtualHal(storage, start_ticks=0, rtc0_s=800000000, plant=None)

Clock: `hal.t` is unwrapped virtual ms, moved only by the owner (a test, a board's loop);
ticks_ms() is MicroPython's, masked to 2**30, and restarts at 0 when the MCU reboots
(power_on); rtc_s() is the battery-backed clock, seconds since 2000-01-01, and runs on.
The motor is the shipped board's driver and the rotation sensor the MCU's counter over it
(plant.physics.Driver, Counter), both on that clock; pressure, air, door, battery and clamp
are the plant's; the uart is a boards.memuart.MemUart.

Interrupts (the rotation compare, the pressure comparator, a stall, air, the door switch,
low battery) go to `hal.signal(flag)`, a callable the owner sets (the controller's signal,
or a latch). A loop jumps virtual time: next_at() is the next ms at which the plant has a
crossing due (None: nothing can happen until the motion changes); advance_to(t) moves the
clock to t, running each crossing due on the way at its own ms.
"""
from boards.memuart import MemUart
from plant.physics import Counter, Driver, Plant, power_off, power_on
from pump.ticks import TICKS_PERIOD, ticks_add, ticks_diff

_MASK = TICKS_PERIOD - 1


class VirtualHal:
    def __init__(self, storage, start_ticks=0, rtc0_s=800000000, plant=None):
        self.t = start_ticks          # unwrapped virtual ms
        self.tick_off = 0             # ticks_ms() - t, mod 2**30 (0 until the MCU reboots)
        self.rtc0_s = rtc0_s
        self.storage = storage
        self.plant = p = plant if plant is not None else Plant()
        self.signal = _ignore
        p.signal = self._irq
        self.clock = self._now        # the driver's and the counter's clock: ms, .t
        self.motor = Driver(p, self.clock)
        self.rotation = Counter(p, self.clock)
        self.uart = MemUart()
        self.ticks_add = ticks_add
        self.ticks_diff = ticks_diff
        self.buzzing = False
        self.led_on = False
        self.wdt_feeds = 0
        self.time_scale = 1           # ms of this clock per wall-clock ms (a virtual board sets it)

    def _now(self):
        return self.t

    def _irq(self, flag):
        self.signal(flag)

    # --- clock ------------------------------------------------------------------------------
    def ticks_ms(self):
        return (self.t + self.tick_off) & _MASK

    def rtc_s(self):
        return self.rtc0_s + self.t // 1000

    # --- sensors and actuators ----------------------------------------------------------------
    def pressure_mmhg(self):
        return self.plant.pressure_mmhg(self.t)

    def air_detected(self):
        return self.plant.air

    def door_closed(self):
        return self.plant.door_switch

    def battery_mv(self):
        return self.plant.battery_mv(self.t)

    def clamp(self, closed):
        self.plant.set_clamp(self.t, bool(closed))

    @property
    def clamped(self):
        return self.plant.clamp_closed

    def buzzer(self, on):
        self.buzzing = bool(on)

    def led(self, on):
        self.led_on = bool(on)

    def wdt_feed(self):
        self.wdt_feeds += 1

    # --- virtual time -----------------------------------------------------------------------
    def next_at(self):
        """Virtual ms of the plant's next crossing, or None."""
        return self.plant.due

    def advance_to(self, t):
        """Move the clock to t (never back), each crossing due on the way at its own ms."""
        p = self.plant
        at = p.due
        while at is not None and at <= t:
            if at > self.t:
                self.t = at
            p.crossing(self.t)
            at = p.due
        if t > self.t:
            self.t = t

    # --- power --------------------------------------------------------------------------------
    def power_off(self):
        """Power lost: the driver stops, the clamp closes (unpowered), the outputs fall."""
        power_off(self.t, self.plant, self.motor)
        self.buzzing = False
        self.led_on = False

    def power_on(self, ticks_reset=True):
        """Power back: the MCU reboots (ticks, step and pulse counters from 0)."""
        if ticks_reset:
            self.tick_off = -self.t
        power_on(self.t, self.plant, self.motor, self.rotation)


def _ignore(flag):
    pass
