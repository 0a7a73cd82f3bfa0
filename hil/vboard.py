# mypy: ignore-errors
# (Runs on MicroPython too: unannotated on purpose; tests/hil and tests/test_vboard.py check it.)
"""The virtual board: the firmware's own main loop (pump.runtime.run) on a virtual-clock HAL
over the one plant (plant.vhal.VirtualHal, plant.physics), accelerated against the wall
clock, with the bench-rig protocol of docs/rig.md. One module for both backings: CPython
(`--board virtual`: hil/simboard.py serves it on a pipe) and real MicroPython (`--board
virtual-mpy`: hil/vboard.mjs runs it in the WebAssembly port under Node, in the same
interpreter as the firmware, so no HAL call crosses a pipe).

Host interface:
    b = Board(root, accel, start_ticks)     then b.boot()
    b.feed(hex)          UART bytes from the host (hex text)
    b.rig(line) -> str   one rig command (docs/rig.md), its reply line
    b.service(wall_ms) -> ms until the next call is due (the host sleeps at most that)
    b.take() -> str      UART bytes to the host (hex text, '' when none)
"""
from binascii import hexlify, unhexlify

from boards.fs import DirStorage
from plant.vhal import VirtualHal
from pump.controller import Controller
from pump.runtime import Runtime, run

_MAX_SLEEP_MS = 50          # wall ms between host calls at most (bytes and rig commands)
RX_BUFFER = 4096            # the UART's receive buffer: bytes beyond it are lost (overrun)


class Board:
    def __init__(self, root, accel=100, start_ticks=0):
        self.storage = DirStorage(root)
        self.hal = hal = VirtualHal(self.storage, start_ticks)
        hal.signal = self._irq
        self.plant = hal.plant
        self.accel = accel
        hal.time_scale = accel        # a person's windows stay wall-clock (pump/hal.py)
        self.idle_ms = 500 * accel if 500 * accel > 2000 else 2000
        self.w0 = -1                  # wall ms at virtual time t0
        self.t0 = hal.t
        self.target = hal.t           # run the board up to this virtual ms
        self.rt = None                # the firmware, while powered
        self.steps_before = 0         # driver steps of earlier boots (the rig counts them all)
        self.extra_pulses = 0         # pulses injected by the rig
        self.overruns = 0             # UART bytes lost to a full receive buffer

    # --- firmware ---------------------------------------------------------------------------
    def boot(self):
        """Power on: the firmware boots from its journal, as main.py does on a board."""
        ctl = Controller(self.hal)
        rt = Runtime(self.hal, ctl, self.idle_ms)
        rt.boot()
        self.rt = rt

    def _irq(self, flag):
        rt = self.rt
        if rt is not None:
            rt.ctl.signal(flag)

    def _idle(self, wake):
        """The board's sleep: virtual time jumps to the wake, the plant's next crossing (its
        interrupt ends the sleep) or the wall-clock target, whichever comes first."""
        hal = self.hal
        t = hal.t + hal.ticks_diff(wake, hal.ticks_ms())
        if t > self.target:
            t = self.target
        at = hal.next_at()
        if at is not None and at < t:
            t = at
        hal.advance_to(t)

    def _stop(self):
        return self.hal.t >= self.target and not self.rt.pending()

    def power_off(self):
        rt = self.rt
        if rt is None:
            return
        self.rt = None
        self.hal.power_off()
        rt.ctl.journal.close()
        self.hal.uart.rx = bytearray()
        self.hal.uart.tx = bytearray()

    def power_on(self):
        if self.rt is not None:
            return
        self.steps_before += self.hal.motor.position()
        self.hal.power_on()
        self.boot()

    # --- host interface -----------------------------------------------------------------------
    def service(self, wall_ms):
        wall_ms = int(wall_ms)
        if self.w0 < 0:
            self.w0 = wall_ms
        target = self.t0 + (wall_ms - self.w0) * self.accel
        if target > self.target:
            self.target = target
        rt = self.rt
        hal = self.hal
        if rt is None:
            hal.advance_to(self.target)
            return _MAX_SLEEP_MS
        run(rt, self._idle, self._stop)
        if rt.pending():
            return 0
        d = hal.ticks_diff(rt.wake, hal.ticks_ms())
        at = hal.next_at()
        if at is not None and at - hal.t < d:
            d = at - hal.t
        d = d // self.accel
        return 0 if d < 0 else (_MAX_SLEEP_MS if d > _MAX_SLEEP_MS else d)

    def feed(self, hex_text):
        """Bytes on the UART line: into the receive buffer while it has room (a full buffer
        overruns, as a UART's does); lost without power."""
        if self.rt is None:
            return
        u = self.hal.uart
        room = RX_BUFFER - u.any()
        if room < 0:
            room = 0
        n = len(hex_text) // 2
        if n > room:
            self.overruns += n - room
            hex_text = hex_text[:2 * room]
        if hex_text:
            try:
                u.feed(unhexlify(hex_text))
            except ValueError:
                pass

    def take(self):
        u = self.hal.uart
        if not u.tx:
            return ""
        return hexlify(u.take()).decode()

    def rig(self, line):
        """One rig command (docs/rig.md): its reply line. Never raises."""
        try:
            return self._rig(line.strip().split())
        except Exception as e:  # noqa: BLE001 - a rig reply, never a crash of the board
            return "ERR %s" % (e,)

    def _rig(self, p):
        if not p:
            return "ERR empty command"
        c = p[0].upper()
        a = p[1].upper() if len(p) > 1 else ""
        hal = self.hal
        t = hal.t
        pl = self.plant
        if c == "PING":
            return "OK rig virtual"
        if c == "STEPS?":
            return "OK %d" % (self.steps_before + hal.motor.position())
        if c == "PULSES?":
            return "OK %d" % (pl.rotation_count(t) + self.extra_pulses)
        if c == "VOLUME?":
            return "OK %d" % int(pl.delivered_ul(t))
        if c == "TIME?":
            return "OK %d" % (t - self.t0)
        if c == "PRESSURE?":
            return "OK %d" % pl.pressure_mmhg(t)
        if c == "WAKES?":
            return "OK %d" % (self.rt.wakes if self.rt is not None else 0)
        if c == "OVERRUNS?":
            return "OK %d" % self.overruns
        if c == "PRESSURE":
            pl.set_source(t, 0 if a == "OFF" else int(a))
        elif c == "OCCLUDE":
            pl.set_occluded(t, _onoff(a))
        elif c == "AIR":
            pl.set_air(_onoff(a))
        elif c == "DOOR":
            if a not in ("OPEN", "CLOSED"):
                return "ERR DOOR OPEN|CLOSED"
            pl.set_door(t, a == "CLOSED")
        elif c == "PULSES":
            n = int(a)
            if n < 0 or n > 100000:
                return "ERR PULSES 0..100000"
            self.extra_pulses += n
            hal.rotation.offset -= n          # the MCU's counter reads n more
            if pl.armed >= 0:
                pl.arm_compare(t, pl.armed - n)   # the same compare, evaluated at once
        elif c == "RUNAWAY":
            f = float(a)
            if not 1.0 <= f <= 1000.0:
                return "ERR RUNAWAY factor 1..1000"
            pl.set_speed_factor(t, runaway=f)
        elif c == "POWER":
            if _onoff(a):
                self.power_on()
            else:
                self.power_off()
        elif c == "RESET":
            pl.set_speed_factor(t, runaway=1.0)
            pl.set_source(t, 0)
            pl.set_air(False)
            pl.set_door(t, True)
            pl.set_occluded(t, False)
            self.power_on()
        else:
            return "ERR unknown rig command %s" % c
        return "OK"


def _onoff(a):
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise ValueError("expected ON or OFF, got %s" % a)


# --- module-level API for the Node driver (one board per interpreter) ------------------------
_board = None


def start(root, accel, start_ticks):
    global _board
    _board = Board(root, int(accel), int(start_ticks))
    _board.boot()
    return "READY"


def service(wall_ms):
    return _board.service(int(wall_ms))


def feed(hex_text):
    _board.feed(hex_text)


def take():
    return _board.take()


def rig(line):
    return _board.rig(line)
