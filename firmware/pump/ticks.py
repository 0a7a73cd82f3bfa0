"""MicroPython tick arithmetic for HALs that keep their own (virtual) clock.

Same semantics as time.ticks_add / time.ticks_diff: ticks wrap every 2**30 ms and a
difference is valid for spans up to 2**29 ms (about 6.2 days). Longer spans use RTC seconds.
"""

TICKS_PERIOD = 1 << 30
_MASK = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD >> 1


def ticks_add(t, delta):
    return (t + delta) & _MASK


def ticks_diff(a, b):
    """a - b in ms, signed, across the wrap."""
    return ((a - b + _HALF) & _MASK) - _HALF
