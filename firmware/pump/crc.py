"""CRC-32 (the zlib/binascii polynomial) in small integers.

binascii.crc32 returns a 32-bit value, which is a heap-allocated long int on a 32-bit
MicroPython board. The journal writes checkpoints on the steady-state path, so it keeps the
CRC as two 16-bit halves and allocates nothing. Values equal binascii.crc32 (tested).

Where a native zlib.crc32 exists (CPython: the simulator and host tools) it is used
instead, for speed; MicroPython has none and takes the table path. Both give the same
values (tests/fw/test_crc.py checks the table path against binascii on both interpreters).
"""
from array import array

try:
    from zlib import crc32 as _native  # type: ignore[import-not-found]  # absent on MicroPython
except ImportError:
    _native = None
try:
    from binascii import crc32 as _binascii  # native on MicroPython too, but allocates
except ImportError:
    _binascii = None  # type: ignore[assignment]  # a port built without it: the table path

_LO = array("H", bytes(512))
_HI = array("H", bytes(512))


def _build():
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        _LO[n] = c & 0xFFFF
        _HI[n] = c >> 16


_build()


def crc32_halves(buf, n, out):
    """CRC-32 of buf[0:n]; stores (low 16 bits, high 16 bits) into out[0], out[1]."""
    if _native is not None:
        c = _native(memoryview(buf)[:n])
        out[0] = c & 0xFFFF
        out[1] = c >> 16
        return
    table_crc32_halves(buf, n, out)


def table_crc32_halves(buf, n, out):
    """The table implementation (no allocation on MicroPython)."""
    lo = 0xFFFF
    hi = 0xFFFF
    lo_t = _LO
    hi_t = _HI
    i = 0
    while i < n:
        x = (lo ^ buf[i]) & 0xFF
        lo = ((lo >> 8) | ((hi & 0xFF) << 8)) ^ lo_t[x]
        hi = (hi >> 8) ^ hi_t[x]
        i += 1
    out[0] = lo ^ 0xFFFF
    out[1] = hi ^ 0xFFFF


def crc32_of(buf, n):
    """CRC-32 of buf[0:n] as one int, by the fastest means there is (binascii's native code
    on MicroPython): allocates, so for boot-time work (journal replay), not the hot path."""
    if _native is not None:
        return _native(memoryview(buf)[:n])
    if _binascii is not None:
        return _binascii(memoryview(buf)[:n])
    out = [0, 0]
    table_crc32_halves(buf, n, out)
    return (out[1] << 16) | out[0]


def crc32(buf):
    """CRC-32 of the whole buffer as one int (allocates on a board: not for hot paths)."""
    out = [0, 0]
    crc32_halves(buf, len(buf), out)
    return (out[1] << 16) | out[0]
