"""Pump calibration (stroke volume and steps a stroke), kept power-safe on the board.

Two small files written in turn, each `seq stroke_nl steps_per_stroke crc` on one line; the
valid one with the higher sequence wins, so a write torn by a power cut leaves the previous
calibration in force. Set by the service role (Controller.calibrate), read at boot.
"""
from pump.crc import crc32

NAMES = ("cal.0", "cal.1")
STROKE_NL_MIN = 1000
STROKE_NL_MAX = 200000
STEPS_MIN = 4
STEPS_MAX = 5000
DEFAULT = (50000, 200)


def valid(stroke_nl, steps_per_stroke):
    """Values Delivery and the monitor both accept (whole pulses: multiples of 8 nL, 4 steps)."""
    for v in (stroke_nl, steps_per_stroke):
        if not isinstance(v, int) or isinstance(v, bool):
            return False
    return (STROKE_NL_MIN <= stroke_nl <= STROKE_NL_MAX and stroke_nl % 8 == 0
            and STEPS_MIN <= steps_per_stroke <= STEPS_MAX and steps_per_stroke % 4 == 0)


def _line(seq, s, n):
    body = "%d %d %d" % (seq, s, n)
    return "%s %d\n" % (body, crc32(body.encode()))


def _read(storage, name):
    if storage.size(name) <= 0:
        return None
    f = storage.open(name, "rb")
    try:
        parts = f.read(80).decode().split()
    except (OSError, UnicodeError):
        return None
    finally:
        f.close()
    if len(parts) != 4:
        return None
    try:
        seq, s, n, crc = [int(p) for p in parts]
    except ValueError:
        return None
    if crc != crc32(("%d %d %d" % (seq, s, n)).encode()) or not valid(s, n):
        return None
    return seq, s, n


def load(storage):
    """(stroke_nl, steps_per_stroke, seq) of the newest valid calibration, or the default
    with seq -1 when there is none."""
    best = None
    for name in NAMES:
        r = _read(storage, name)
        if r is not None and (best is None or r[0] > best[0]):
            best = r
    if best is None:
        return DEFAULT[0], DEFAULT[1], -1
    return best[1], best[2], best[0]


def save(storage, stroke_nl, steps_per_stroke, seq):
    """Write calibration `seq` into the file the previous one is not in."""
    f = storage.open(NAMES[seq & 1], "wb")
    try:
        f.write(_line(seq, stroke_nl, steps_per_stroke).encode())
        f.flush()
    finally:
        f.close()
