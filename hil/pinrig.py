# mypy: ignore-errors
# (Runs inside MicroPython's WebAssembly port under hil/rp2board.mjs, and on CPython in the
# tests: unannotated on purpose, like hil/vboard.py.)
"""The one plant (plant.physics) on the reference board's pins, with the bench-rig protocol
of docs/rig.md: the rig of a board whose firmware runs on a chip of its own (the emulated
RP2040 of hil/rp2board.mjs). The chip's pins are the only contact, as on a bench:

    in  (what the board drives)   STEP rising edges, DIR, ENABLE, CLAMP (boards/rp2_ref.py)
    out (what the board senses)   rotation-sensor pulses, door and air levels, the ADC counts
                                  of the pressure transducer and of the battery divider

Each STEP edge with ENABLE high turns the camshaft one step (RUNAWAY factor steps: the fluid
moves and the sensor sees the edges it passes); the rotation sensor's pulses are the
plant's count plus those the rig injects. Time `t` is the board's ms since the rig started
(integer, never backwards, across chip resets).

    r = PinRig()
    r.step(t)                    a STEP rising edge (the owner calls it only with ENABLE high)
    r.pulses(t) -> int           rotation pulses the sensor has produced by t (plant + injected)
    r.adc(ch, t) -> int          12-bit ADC count of channel ch (0: pressure, 1: battery)
    r.door_level(), r.air_level() -> 0/1: what the door and air pins read
    r.rig(t, line) -> str        one rig command (docs/rig.md), its reply line
    r.powered, r.hung            what the owner must do to the chip (after a rig command)
"""
from plant.physics import Plant

_STEPS_PER_STROKE = 200
_PRESSURE_MMHG_PER_COUNT_X1000 = 12   # the transducer: 0.012 mmHg per 16-bit count
_ADC_FULL = 4095                      # 12-bit converter
_ADC_MV_FULL = 3300                   # its reference
_BATTERY_DIVIDER = 2


class PinRig:
    def __init__(self, name="rp2040js"):
        self.name = name
        self.plant = Plant()
        self.dir = 1                  # DIR pin: 1 forward
        self.runaway = 1.0
        self.steps = 0                # STEP edges the rig counted (across reboots)
        self.injected = 0             # pulses the rig added
        self.powered = True
        self.hung = False
        self.clamp_open = False       # CLAMP pin driven high (an undriven pin: closed)
        self.restarts = 0             # MCU restarts: power cycles, watchdog, reset
        self.plant.set_clamp(0, True)

    # --- the board's outputs --------------------------------------------------------------
    def step(self, t):
        self.steps += 1
        if self.powered:
            self.plant.turn(t, self.dir * self.runaway)

    def count_step(self):
        """A STEP edge with ENABLE low: counted on the line, no motion."""
        self.steps += 1

    def set_dir(self, forward):
        self.dir = 1 if forward else -1

    def set_clamp(self, t, open_):
        self.clamp_open = bool(open_)
        self.plant.set_clamp(t, not (open_ and self.powered))

    # --- the board's inputs -----------------------------------------------------------------
    def pulses(self, t):
        return self.plant.rotation_count(t) + self.injected

    def adc(self, ch, t):
        if ch == 0:
            mmhg = self.plant.pressure_at(t)
            counts16 = mmhg * 1000.0 / _PRESSURE_MMHG_PER_COUNT_X1000
            raw = int(counts16 / 16.0 + 0.5)
        elif ch == 1:
            pin_mv = self.plant.battery_mv(t) / _BATTERY_DIVIDER
            raw = int(pin_mv * _ADC_FULL / _ADC_MV_FULL + 0.5)
        else:
            raw = 0
        return 0 if raw < 0 else (_ADC_FULL if raw > _ADC_FULL else raw)

    def door_level(self):
        return 0 if self.plant.door else 1          # low = closed

    def air_level(self):
        return 1 if self.plant.air else 0           # high = air

    def chip_reset(self):
        """The chip reset itself (the watchdog, machine.reset()): whatever hung it is gone."""
        self.hung = False
        self.clamp_open = False
        self.restarts += 1

    # --- power --------------------------------------------------------------------------------
    def power(self, t, on):
        if on == self.powered:
            return
        self.powered = on
        self.plant.set_power(t, on)
        if on:
            self.restarts += 1
        if not on:
            self.plant.set_clamp(t, True)           # an unpowered clamp is closed
            self.clamp_open = False
            self.hung = False

    # --- the rig protocol ---------------------------------------------------------------------
    def rig(self, t, line):
        """One rig command (docs/rig.md): its reply line. Never raises."""
        try:
            return self._rig(t, line.strip().split())
        except Exception as e:  # noqa: BLE001 - a rig reply, never a crash of the board
            return "ERR %s" % (e,)

    def _rig(self, t, p):
        if not p:
            return "ERR empty command"
        c = p[0].upper()
        a = p[1].upper() if len(p) > 1 else ""
        pl = self.plant
        if c == "PING":
            return "OK rig %s" % self.name
        if c == "STEPS?":
            return "OK %d" % self.steps
        if c == "PULSES?":
            return "OK %d" % self.pulses(t)
        if c == "VOLUME?":
            return "OK %d" % int(pl.delivered_ul(t))
        if c == "TIME?":
            return "OK %d" % t
        if c == "PRESSURE?":
            return "OK %d" % pl.pressure_mmhg(t)
        if c == "RESETS?":
            return "OK %d" % self.restarts
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
            self.injected += n
        elif c == "RUNAWAY":
            f = float(a)
            if not 1.0 <= f <= 1000.0:
                return "ERR RUNAWAY factor 1..1000"
            self.runaway = f
        elif c == "POWER":
            self.power(t, _onoff(a))
        elif c == "HANG":
            if not self.powered:
                return "ERR HANG: the board has no power"
            self.hung = True
        elif c == "RESET":
            self.runaway = 1.0
            pl.set_source(t, 0)
            pl.set_air(False)
            pl.set_door(t, True)
            pl.set_occluded(t, False)
            if self.hung:                   # a hung board comes back through a power cycle
                self.power(t, False)
            self.power(t, True)
        else:
            return "ERR unknown rig command %s" % c
        return "OK"


def _onoff(a):
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise ValueError("expected ON or OFF, got %s" % a)


# --- module-level API for the Node driver (one rig per interpreter) ---------------------------
_rig = None


def start(name="rp2040js"):
    global _rig
    _rig = PinRig(name)
    return _rig
