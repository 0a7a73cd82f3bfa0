# mypy: ignore-errors
# (MicroPython code: unannotated on purpose; its tests and the HIL suite check it.)
"""A virtual board small enough to run inside MicroPython: a minimal plant, a HAL on it, the
real firmware (controller + serial protocol) and a time-accelerated main loop.

The MicroPython backing of the virtual board (`--board virtual-mpy`) runs this module in the
WebAssembly port under Node (hil/vboard.mjs); the plant and the virtual clock live here, in
the same interpreter as the firmware, so no HAL call crosses a pipe. It runs on CPython too
(`--board virtual-lite`, and its own tests). The CPython backing proper (`--board virtual`)
uses the simulator's plant instead (hil/simboard.py); both answer the same rig protocol
(docs/rig.md), so one HIL suite runs on both.

Integers only (MicroPython): time in ms, the camshaft in 1/100 steps, volumes in nL.
The plant is deliberately simple: nominal stroke (50 µL = 200 steps, 4 rotation pulses a
revolution), a runaway factor on the camshaft, a compliant downstream line that stores
volume while occluded (0.5 µL/mmHg) and releases it as a bolus, an external pressure
source, air, door, power.

Host interface (all the Node script or a CPython loop needs):
    b = Board(root, accel, start_ticks)     then b.boot()
    b.feed(hex)          UART bytes from the host (hex text)
    b.rig(line) -> str   one rig command (docs/rig.md), its reply line
    b.service(wall_ms) -> ms until the next call is due (the loop sleeps at most that)
    b.take() -> str      UART bytes to the host (hex text, '' when none)
"""
from binascii import hexlify, unhexlify

from boards.fs import DirStorage
from boards.memuart import MemUart
from pump.controller import Controller
from pump.hal import EV_AIR, EV_DOOR, EV_PRESSURE, EV_ROTATION
from pump.runtime import Runtime
from pump.ticks import TICKS_PERIOD, ticks_add, ticks_diff

_MASK = TICKS_PERIOD - 1
STEPS_PER_STROKE = 200
PULSES_PER_REV = 4
NL_PER_STEP = 250                    # 50 µL / 200 steps
COMPLIANCE_NL_PER_MMHG = 500
VENOUS_MMHG = 8
STALL_MMHG = 1500
PRESSURE_THRESHOLD_MMHG = 300
QUANTUM_MS = 20                      # plant crossings are checked this often while moving
RTC0_S = 800000000


class Motor:
    """The driver: position() counts the steps it issues, evenly over each move."""

    def __init__(self, board):
        self.b = board
        self.on = False
        self.base = 0
        self.steps = 0
        self.ms = 1
        self.t0 = 0

    def enable(self, on):
        self.b.settle()
        if not on:
            self.base = self.position()
            self.steps = 0
        self.on = bool(on) and self.b.powered

    def enabled(self):
        return self.on

    def move(self, steps, ms):
        self.b.settle()
        self.base = self.position()
        self.steps = steps
        self.ms = ms if ms > 0 else 1
        self.t0 = self.b.t

    def stop(self):
        self.b.settle()
        self.base = self.position()
        self.steps = 0

    def position(self):
        if not self.on or not self.steps:
            return self.base
        el = self.b.t - self.t0
        if el >= self.ms:
            return self.base + self.steps
        if self.steps < 0:
            return self.base - (-self.steps * el) // self.ms
        return self.base + self.steps * el // self.ms

    def busy(self):
        return self.on and self.steps != 0 and self.b.t - self.t0 < self.ms

    def moving(self):
        return self.busy()


class Rotation:
    def __init__(self, board):
        self.b = board
        self.armed = -1
        self.offset = 0               # count at the MCU's last boot (the counter restarts)

    def count(self):
        self.b.settle()
        return self.b.pulses() - self.offset

    def arm(self, count):
        self.armed = count + self.offset if count >= 0 else -1
        self.b.check()


class Hal:
    def __init__(self, board):
        self.b = board
        self.motor = Motor(board)
        self.rotation = Rotation(board)
        self.uart = MemUart()
        self.storage = board.storage
        self.buzzing = False
        self.clamped = False

    def ticks_ms(self):
        return (self.b.t + self.b.tick_off) & _MASK

    def ticks_add(self, t, d):
        return ticks_add(t, d)

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def rtc_s(self):
        return RTC0_S + self.b.t // 1000

    def pressure_mmhg(self):
        self.b.settle()
        return self.b.pressure()

    def air_detected(self):
        return self.b.air

    def door_closed(self):
        return self.b.door

    def battery_mv(self):
        return 4000

    def buzzer(self, on):
        self.buzzing = bool(on)

    def led(self, on):
        pass

    def clamp(self, closed):
        self.b.settle()
        self.clamped = bool(closed)

    def wdt_feed(self):
        pass


class Board:
    def __init__(self, root, accel=100, start_ticks=0):
        self.storage = DirStorage(root)
        self.accel = accel
        self.t = 0                    # virtual ms since the board was made (unwrapped)
        self.tick_off = start_ticks
        self.w0 = None                # wall ms at virtual 0
        # plant
        self.cam_q = 0                # camshaft, 1/100 steps
        self.last_pos = 0             # driver position at the last settle
        self.runaway_pct = 100
        self.extra_pulses = 0
        self.delivered_nl = 0         # into the patient
        self.stored_nl = 0            # held in the occluded line
        self.occluded = False
        self.source_mmhg = 0          # external pressure source (0: none)
        self.air = False
        self.door = True
        self.powered = True
        self.high = False             # pressure comparator output
        self.steps_total = 0          # driver steps over every boot (the rig counts them)
        # firmware
        self.hal = None
        self.ctl = None
        self.rt = None
        self.wake_at = 0

    # --- plant ------------------------------------------------------------------------------
    def pulses(self):
        return self.cam_q // (100 * STEPS_PER_STROKE // PULSES_PER_REV) + self.extra_pulses

    def pressure(self):
        p = VENOUS_MMHG + self.stored_nl // COMPLIANCE_NL_PER_MMHG
        if p > STALL_MMHG:
            p = STALL_MMHG
        return p if p > self.source_mmhg else self.source_mmhg

    def settle(self):
        """Move the camshaft and the fluid to the present."""
        hal = self.hal
        if hal is None:
            return
        pos = hal.motor.position()
        d = pos - self.last_pos
        if d:
            self.last_pos = pos
            self.steps_total += d
            dq = d * self.runaway_pct
            if d > 0 and (self.occluded or hal.clamped) and self.pressure() >= STALL_MMHG:
                dq = 0                                    # stalled against a closed line
            self.cam_q += dq
            nl = dq * NL_PER_STEP // 100
            if self.occluded or hal.clamped:
                self.stored_nl += nl
                if self.stored_nl < 0:
                    self.delivered_nl += self.stored_nl
                    self.stored_nl = 0
            else:
                self.delivered_nl += nl

    def check(self):
        """Raise the interrupts whose conditions now hold."""
        self.settle()
        ctl = self.ctl
        if ctl is None:
            return
        rot = self.hal.rotation
        if rot.armed >= 0 and self.pulses() >= rot.armed:
            rot.armed = -1
            self._irq(EV_ROTATION)
        high = self.pressure() >= PRESSURE_THRESHOLD_MMHG
        if high != self.high:
            self.high = high
            self._irq(EV_PRESSURE)

    def _irq(self, flag):
        if self.ctl is not None:
            self.ctl.signal(flag)
            self.wake_at = self.t

    def set_line(self, occluded):
        self.settle()
        was = self.occluded or (self.hal is not None and self.hal.clamped)
        self.occluded = occluded
        now = self.occluded or (self.hal is not None and self.hal.clamped)
        if was and not now and self.stored_nl:
            self.delivered_nl += self.stored_nl           # the bolus on release
            self.stored_nl = 0
        self.check()

    # --- firmware lifecycle -----------------------------------------------------------------
    def boot(self):
        self.powered = True
        self.hal = Hal(self)
        self.last_pos = 0
        self.hal.rotation.offset = self.pulses()
        self.ctl = Controller(self.hal)
        idle = 500 * self.accel
        self.rt = Runtime(self.hal, self.ctl, idle if idle > 2000 else 2000)
        self.rt.boot()
        self.wake_at = self.t
        self.high = self.pressure() >= PRESSURE_THRESHOLD_MMHG

    def power_off(self):
        if self.ctl is None:
            return
        self.settle()
        self.ctl.journal.close()
        self.ctl = None
        self.rt = None
        self.hal.motor.on = False
        self.hal = None
        self.powered = False

    def _step(self):
        now = self.hal.ticks_ms()
        dt = ticks_diff(self.rt.service(now), now)
        self.wake_at = self.t + (dt if dt > 0 else 1)

    def advance(self, target):
        """Run the world to virtual time target: every controller wake on the way at its
        exact time, plant crossings checked every QUANTUM_MS while the motor moves."""
        guard = 0
        while True:
            if self.ctl is not None:
                self.check()
                if self.t >= self.wake_at or self.ctl.pending():
                    self._step()
                    guard += 1
                    if guard > 100000:
                        return
                    continue
            if self.t >= target:
                return
            nt = target
            if self.ctl is not None and self.wake_at < nt:
                nt = self.wake_at
            if self.hal is not None and self.hal.motor.moving() and self.t + QUANTUM_MS < nt:
                nt = self.t + QUANTUM_MS
            self.t = nt

    # --- host interface -----------------------------------------------------------------------
    def service(self, wall_ms):
        wall_ms = int(wall_ms)
        if self.w0 is None:
            self.w0 = wall_ms
        self.advance((wall_ms - self.w0) * self.accel)
        if self.ctl is None:
            return 50
        d = (self.wake_at - self.t) // self.accel
        if self.hal.motor.moving():
            q = QUANTUM_MS // self.accel
            d = q if q < d else d
        return 0 if d < 0 else (50 if d > 50 else d)

    def feed(self, hex_text):
        if self.hal is None:
            return                                   # no power: the bytes are lost
        self.hal.uart.feed(unhexlify(hex_text))
        self.wake_at = self.t

    def take(self):
        if self.hal is None or not self.hal.uart.tx:
            return ""
        return hexlify(self.hal.uart.take()).decode()

    def rig(self, line):
        """One rig command (docs/rig.md): its reply line."""
        try:
            return self._rig(line.strip().split())
        except Exception as e:  # noqa: BLE001 - a rig reply, never a crash of the board
            return "ERR %s" % (e,)

    def _rig(self, p):
        if not p:
            return "ERR empty command"
        c = p[0].upper()
        a = p[1].upper() if len(p) > 1 else ""
        self.settle()
        if c == "PING":
            return "OK rig virtual-mpy"
        if c == "STEPS?":
            return "OK %d" % self.steps_total
        if c == "PULSES?":
            return "OK %d" % self.pulses()
        if c == "VOLUME?":
            return "OK %d" % (self.delivered_nl // 1000)
        if c == "TIME?":
            return "OK %d" % self.t
        if c == "PRESSURE?":
            return "OK %d" % self.pressure()
        if c == "PRESSURE":
            self.source_mmhg = 0 if a == "OFF" else int(a)
        elif c == "OCCLUDE":
            self.set_line(_onoff(a))
        elif c == "AIR":
            self.air = _onoff(a)
            if self.air:
                self._irq(EV_AIR)
        elif c == "DOOR":
            if a not in ("OPEN", "CLOSED"):
                return "ERR DOOR OPEN|CLOSED"
            self.door = a == "CLOSED"
            self._irq(EV_DOOR)
        elif c == "PULSES":
            n = int(a)
            if n < 0 or n > 100000:
                return "ERR PULSES 0..100000"
            self.extra_pulses += n
        elif c == "RUNAWAY":
            pct = _pct(a)
            if pct < 100 or pct > 100000:
                return "ERR RUNAWAY factor 1..1000"
            self.runaway_pct = pct
        elif c == "POWER":
            if _onoff(a):
                if self.ctl is None:
                    self.boot()
            else:
                self.power_off()
        elif c == "RESET":
            self.runaway_pct = 100
            self.source_mmhg = 0
            self.air = False
            self.door = True
            self.set_line(False)
            if self.ctl is None:
                self.boot()
        else:
            return "ERR unknown rig command %s" % c
        self.check()
        return "OK"


def _onoff(a):
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise ValueError("expected ON or OFF, got %s" % a)


def _pct(a):
    """'10' or '2.5' as an integer percentage (1000, 250)."""
    if "." in a:
        w, f = a.split(".", 1)
        return int(w or "0") * 100 + int((f + "00")[:2])
    return int(a) * 100


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
