"""The journal's small-int CRC-32 equals the standard one (binascii/zlib)."""
import binascii

from pump.crc import crc32, crc32_halves, crc32_of, table_crc32_halves


def test_crc32_matches_binascii():
    seed = 12345
    out = [0, 0]
    for n in (0, 1, 2, 7, 44, 48, 100, 255):
        b = bytearray(n)
        for i in range(n):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            b[i] = seed >> 16 & 0xFF
        assert crc32(b) == binascii.crc32(b) & 0xFFFFFFFF, n
        table_crc32_halves(b, n, out)
        assert (out[1] << 16 | out[0]) == binascii.crc32(b) & 0xFFFFFFFF, n


def test_crc32_halves_prefix_only():
    b = bytearray(b"0123456789abcdef")
    out = [0, 0]
    crc32_halves(b, 10, out)
    want = binascii.crc32(bytes(b[:10])) & 0xFFFFFFFF
    assert (out[1] << 16 | out[0]) == want


def test_table_path_equals_fast_path():
    b = bytearray(range(48))
    fast = [0, 0]
    table = [0, 0]
    for n in (0, 1, 44, 48):
        crc32_halves(b, n, fast)
        table_crc32_halves(b, n, table)
        assert fast == table, n


def test_crc32_of_a_prefix_equals_the_table_path():
    """crc32_of (journal replay: the interpreter's native CRC) gives the table's value."""
    b = bytearray(range(64))
    table = [0, 0]
    for n in (0, 1, 44, 60, 64):
        table_crc32_halves(b, n, table)
        assert crc32_of(b, n) & 0xFFFFFFFF == (table[1] << 16 | table[0]), n
