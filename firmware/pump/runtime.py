"""One wake of the pump, in one order: the only place that decides what the firmware does when
it wakes. The board's main loop (`run`, called by main.py), the simulator and the virtual boards
call `Runtime.service(now)` and nothing else, so what they verify is the order that ships.

The order of one wake:

1. feed the watchdog;
2. the rotation compare fast path (`Controller.on_rotation`: only the monitor's edge check
   when that is all the wake is for), else the full controller step (interrupt flags, the
   safety monitor, delivery, reminders);
3. the serial protocol: read the UART and answer complete frames; when a frame was answered
   the controller steps again at once, so a command (start, pause, ...) takes effect in the
   wake that received it (at most _AGAIN times a wake: a flood of frames waits for the next);
4. telemetry out, and the next wake: the earliest of the controller's, the next periodic
   telemetry frame and the protocol's partial-line deadline.

`service` returns the tick to wake at next. Between wakes a board sleeps (`run`) until that
tick or until an interrupt sets a flag or bytes arrive on the UART (`pending`).
"""
from pump.codes import STORAGE_FAULT
from pump.compat import const
from pump.protocol import Protocol

_AGAIN = const(8)     # controller steps for answered frames within one wake


class Runtime:
    """The firmware on one HAL: its controller and its serial protocol."""

    def __init__(self, hal, ctl, idle_ms=2000):
        self.hal = hal
        self.ctl = ctl
        self.proto = Protocol(ctl, hal.uart, hal.storage, idle_ms)
        self.wake = -1                    # the tick asked for by the last wake (-1: none yet)
        self.wakes = 0

    def boot(self, watchdog_reset=False):
        """Replay the journal (SR-9); returns the state the pump wakes in. A key store found
        corrupt (repaired from its copy, or unreadable: locked) is annunciated too."""
        ctl = self.ctl
        state = ctl.boot(watchdog_reset)
        if self.proto.keys.fault:
            ctl.annunciate(STORAGE_FAULT)
        return state

    def service(self, now):
        """Serve one wake at tick `now`; returns the tick of the next wake."""
        hal = self.hal
        ctl = self.ctl
        self.wakes += 1
        hal.wdt_feed()
        wake = ctl.on_rotation(now)
        if wake < 0:
            wake = ctl.step(now)
        proto = self.proto
        n = 0
        while proto.poll(now):
            wake = ctl.step(now)
            n += 1
            if n >= _AGAIN:
                wake = now                # frames still waiting: come back at once
                break
        wake = proto.wake(now, wake)
        self.wake = wake
        return wake

    def pending(self):
        """True when something waits for a wake now: an interrupt flag or UART bytes."""
        return self.ctl.pending() or self.hal.uart.any() > 0


def run(rt, idle, stop=None):
    """The board's main loop: sleep until the wake asked for (or an interrupt, or UART
    bytes), serve it, again. `idle(wake)` sleeps until an interrupt or the tick `wake` (a
    hint: machine.idle() returns on any interrupt, the 1 ms system tick included). `stop()`,
    when given, ends the loop (tests, virtual boards: a board runs for ever); a later call
    goes on where it stopped, sleeping until the same wake."""
    hal = rt.hal
    while True:
        while rt.wake >= 0 and hal.ticks_diff(rt.wake, hal.ticks_ms()) > 0 \
                and not rt.pending():
            if stop is not None and stop():
                return
            idle(rt.wake)
        if stop is not None and stop():
            return
        rt.service(hal.ticks_ms())
