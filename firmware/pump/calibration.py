"""Pump calibration (stroke volume and steps a stroke), bounded by the mechanism's geometry and
kept power-safe on the board.

The mechanism (plant/physics.py) fixes what a calibration may say. One camshaft revolution is one
stroke of NOMINAL_STROKE_NL (50 µL) through the cassette; the rotation sensor has 4 slots;
the camshaft gear takes 200 full motor steps a revolution. A calibration only corrects for
the cassette in place, so it is accepted (service CAL, boot, the Controller's constructor)
only within these bounds:

- stroke_nl: STROKE_NL_MIN..STROKE_NL_MAX = 46..54 µL (nominal ± 8 %), a multiple of 8 nL
  (whole nL a half pulse). Cassettes of the reference pump displace 50 µL within a few per
  cent; a measurement outside ±8 % is a wrong cassette or a bad measurement, not a cassette
  to compensate. The bound also keeps the safety monitor's geometry check (pump/monitor.py:
  revolutions against the program at the nominal 50 µL, ±12.5 %) free of false alarms
  with 3.5 % to spare, so that check can stay blind to the calibration: a calibration can
  no longer blind the monitor (a stroke stored at a quarter of the true one made the pump
  deliver 4x unseen).
- steps_per_stroke: 200 full steps x the driver's microstepping (1, 2, 4, 8 or 16).

Two small files, each `seq stroke_nl steps_per_stroke crc` on one line, written one after
the other with the same line; the valid one with the higher sequence wins. A power cut tears
at most one of them (the first: the previous calibration stays in force in the second; the
second: the new one is whole in the first), and a flipped bit spoils one copy of the same
values. A file that is present but not byte for byte a valid line, or holds values outside
the bounds, is reported (`load`'s fault flag: the controller annunciates STORAGE_FAULT) and
ignored. Set by the service role (Controller.calibrate), read at boot.
"""
from pump.crc import crc32

NAMES = ("cal.0", "cal.1")
NOMINAL_STROKE_NL = 50000     # the mechanism's geometry: nL a camshaft revolution
GEAR_STEPS = 200              # full motor steps a camshaft revolution
STROKE_NL_MIN = 46000
STROKE_NL_MAX = 54000
STEPS = (200, 400, 800, 1600, 3200)
DEFAULT = (NOMINAL_STROKE_NL, GEAR_STEPS)


def valid(stroke_nl, steps_per_stroke):
    """Values within the bounds above (whole pulses: multiples of 8 nL)."""
    for v in (stroke_nl, steps_per_stroke):
        if not isinstance(v, int) or isinstance(v, bool):
            return False
    return (STROKE_NL_MIN <= stroke_nl <= STROKE_NL_MAX and stroke_nl % 8 == 0
            and steps_per_stroke in STEPS)


def why(stroke_nl, steps_per_stroke):
    """A short reason a calibration is refused (for the CAL reply), '' when it is valid."""
    for v in (stroke_nl, steps_per_stroke):
        if not isinstance(v, int) or isinstance(v, bool):
            return "integers only"
    if not STROKE_NL_MIN <= stroke_nl <= STROKE_NL_MAX:
        return "stroke_nl %d..%d (the mechanism's 50 uL +/- 8 %%)" % (STROKE_NL_MIN,
                                                                      STROKE_NL_MAX)
    if stroke_nl % 8:
        return "stroke_nl a multiple of 8"
    if steps_per_stroke not in STEPS:
        return "steps_per_stroke 200 x 1, 2, 4, 8 or 16"
    return ""


def _line(seq, s, n):
    body = "%d %d %d" % (seq, s, n)
    return "%s %d\n" % (body, crc32(body.encode()))


def _read(storage, name):
    """(seq, stroke, steps) of a valid file, None when the file is missing, False when it
    is present but unreadable or out of bounds."""
    if storage.size(name) < 0:
        return None
    f = storage.open(name, "rb")
    try:
        raw = f.read(80)
        parts = raw.decode().split(" ")
        seq, s, n = int(parts[0]), int(parts[1]), int(parts[2])
    except (OSError, UnicodeError, ValueError, IndexError):
        return False
    finally:
        f.close()
    if raw != _line(seq, s, n).encode() or not valid(s, n):   # byte for byte, CRC included
        return False
    return seq, s, n


def load(storage):
    """(stroke_nl, steps_per_stroke, seq, fault) of the newest valid calibration, or the
    default with seq -1 when there is none; fault is True when a calibration file is present
    but unreadable or out of bounds (it is ignored)."""
    best = None
    fault = False
    for name in NAMES:
        r = _read(storage, name)
        if r is False:
            fault = True
        elif r is not None and (best is None or r[0] > best[0]):
            best = r
    if best is None:
        return DEFAULT[0], DEFAULT[1], -1, fault
    return best[1], best[2], best[0], fault


def save(storage, stroke_nl, steps_per_stroke, seq):
    """Write calibration `seq` into both files, one after the other."""
    text = _line(seq, stroke_nl, steps_per_stroke).encode()
    for name in NAMES:
        f = storage.open(name, "wb")
        try:
            f.write(text)
            f.flush()
        finally:
            f.close()
