"""Journal: every entry in two mirrored files; records survive, a torn or corrupt copy is
never believed, a lost entry is only ever the torn newest one, the ring keeps the latest."""
from fakehal import Storage, tmpdir

from pump import journal as jn


def _journal(tag, capacity=60):
    return jn.Journal(Storage(tmpdir(tag)), "j", capacity)


def _write(j, kind, state, delivered):
    p = j.payload
    for i in range(jn.FIELDS):
        p[i] = 0
    p[jn.P_PROGRAM_ID] = 7
    p[jn.P_DELIVERED_NL] = delivered
    j.append(kind, state)


def _bytes(j, name):
    with open(j.storage.path(name), "rb") as f:
        return bytearray(f.read())


def _put(j, name, data):
    with open(j.storage.path(name), "wb") as f:
        f.write(data)


def _reread(j, capacity=None):
    k = jn.Journal(j.storage, "j", capacity or j.capacity)
    k.replay()
    return k


def test_append_then_replay():
    j = _journal("a")
    j.replay()
    for v in range(10):
        _write(j, jn.CHECKPOINT, 4, v * 1000)
    j.close()
    assert _bytes(j, "j") == _bytes(j, "j.2")          # the mirror holds the same entries
    k = jn.Journal(j.storage, "j")
    assert k.replay() == 10
    assert k.last[2] == 9 and k.last[3][jn.P_DELIVERED_NL] == 9000
    assert k.seq == 10 and k.skipped == 0 and not k.torn and k.corrupt == 0


def test_sr9_torn_primary_write_loses_only_that_entry_and_says_so():
    j = _journal("b")
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    _put(j, "j", _bytes(j, "j")[:-5])                 # the third entry's primary copy torn
    _put(j, "j.2", _bytes(j, "j.2")[:-jn.REC_SIZE])   # its mirror copy never written
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 2 and k.skipped == 1
    assert k.torn and k.corrupt == 0 and k.slot == 2


def test_sr9_torn_mirror_write_loses_nothing():
    j = _journal("b2")
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    _put(j, "j.2", _bytes(j, "j.2")[:-7])             # the primary copy was complete
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 3
    assert not k.torn and k.corrupt == 0 and k.repaired == 1
    assert _bytes(j, "j") == _bytes(j, "j.2")         # the mirror was written back


def test_sr9_a_flipped_bit_in_either_copy_of_any_entry_loses_nothing_and_is_reported():
    j = _journal("c")
    j.replay()
    for v in range(5):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    good_a, good_b = _bytes(j, "j"), _bytes(j, "j.2")
    for name in ("j", "j.2"):
        for slot in range(5):
            data = bytearray(good_a if name == "j" else good_b)
            data[slot * jn.REC_SIZE + 13] ^= 0x40
            _put(j, "j", good_a)
            _put(j, "j.2", good_b)
            _put(j, name, data)
            k = _reread(j)
            assert k.last[3][jn.P_DELIVERED_NL] == 5, (name, slot)
            assert not k.torn and k.corrupt == 1, (name, slot)
            assert _bytes(j, "j") == good_a and _bytes(j, "j.2") == good_b   # repaired


def test_ring_wraps_keeping_program_and_latest_checkpoint():
    j = _journal("d", capacity=10)
    j.replay()
    p = j.payload
    for i in range(jn.FIELDS):
        p[i] = i + 1
    j.append(jn.PROGRAM, 2)
    for v in range(95):
        _write(j, jn.CHECKPOINT, 4, v)
    j.close()
    assert j.storage.size("j") == 10 * jn.REC_SIZE == j.storage.size("j.2")
    k = jn.Journal(j.storage, "j", 10)
    k.replay()
    assert k.program is not None and k.program[3] == list(range(1, jn.FIELDS + 1))
    assert k.last[3][jn.P_DELIVERED_NL] == 94
    assert k.seq == j.seq and k.slot == j.slot and k.records == 10
    assert not k.torn and k.corrupt == 0


def test_torn_slot_is_rewritten_next():
    j = _journal("f", capacity=9)
    j.replay()
    for v in range(5):
        _write(j, jn.CHECKPOINT, 4, v)
    j.close()
    _put(j, "j", _bytes(j, "j")[: 4 * jn.REC_SIZE + 20])   # the fifth entry torn mid-write
    _put(j, "j.2", _bytes(j, "j.2")[: 4 * jn.REC_SIZE])
    k = jn.Journal(j.storage, "j", 9)
    k.replay()
    assert k.last[3][jn.P_DELIVERED_NL] == 3 and k.slot == 4 and k.torn
    _write(k, jn.CHECKPOINT, 4, 77)
    k.close()
    m = jn.Journal(j.storage, "j", 9)
    m.replay()
    assert m.last[3][jn.P_DELIVERED_NL] == 77 and m.skipped == 0 and m.records == 5
    assert not m.torn and m.corrupt == 0


def test_replay_of_nothing():
    j = _journal("e")
    assert j.replay() == 0
    assert j.last is None and j.program is None and j.seq == 0
    assert not j.torn and j.corrupt == 0


def test_sr9_a_journal_with_nothing_readable_is_corrupt_not_empty():
    j = _journal("g")
    _put(j, "j", bytes(range(256)) * 2)               # e.g. an earlier firmware's format
    k = _reread(j)
    assert k.last is None and k.corrupt > 0


def test_sr9_the_first_write_torn_reads_as_a_fresh_journal():
    j = _journal("h")
    _put(j, "j", b"PJ\x01\x01")
    k = _reread(j)
    assert k.last is None and k.torn and k.corrupt == 0


def test_log_reads_the_mirror_where_the_primary_copy_is_bad():
    j = _journal("i")
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    data = _bytes(j, "j")
    data[jn.REC_SIZE + 9] ^= 1
    _put(j, "j", data)
    recs = j.read_records(0, 3)
    assert [j.parse(r)[3][jn.P_DELIVERED_NL] for r in recs] == [1, 2, 3]


def _bits(x):
    n = 0
    while x:
        n += x & 1
        x >>= 1
    return n


def test_sr9_a_capacity_is_taken_only_when_a_torn_first_byte_shows():
    """A ring's capacity is accepted exactly when every entry's first byte (its sequence's
    low byte) differs in two bits at least from the byte it overwrites, whatever that byte
    (so a torn write never passes for the old entry nor for one flipped bit), and it holds
    4 entries at least; a refusal names the capacity."""
    st = Storage(tmpdir("cap"))
    for cap in range(1, 530):
        ok = cap >= 4
        x = 0
        while ok and x < 256:
            ok = _bits(x ^ ((x + cap) & 0xFF)) >= 2
            x += 1
        try:
            jn.Journal(st, "j", cap)
            taken = True
        except ValueError as exc:
            taken = False
            assert ("capacity %d" % cap) in str(exc), str(exc)
        assert taken == ok, cap


def test_sr9_a_reopened_journal_writes_after_its_newest_entry():
    """After a reboot the next entry goes to the slot after the newest one, whatever slot
    that is (the first, the last, after a wrap): nothing written before is overwritten."""
    for n in (1, 2, 9, 10, 11, 23):
        j = _journal("reopen-%d" % n, capacity=10)
        j.replay()
        for v in range(n):
            _write(j, jn.CHECKPOINT, 4, v + 1)
        j.close()
        k = _reread(j)
        _write(k, jn.CHECKPOINT, 4, 1000)
        _write(k, jn.CHECKPOINT, 4, 1001)
        k.close()
        m = _reread(j)
        assert m.last[3][jn.P_DELIVERED_NL] == 1001 and m.seq == n + 2, n
        assert m.records == min(n + 2, 10) and m.skipped == 0, n
        assert not m.torn and m.corrupt == 0, n
        got = sorted(m.parse(r)[3][jn.P_DELIVERED_NL] for r in m.read_records(0, 10))
        written = list(range(1, n + 1)) + [1000, 1001]
        assert got == sorted(written[-10:]), (n, got)   # the newest ten, none overwritten


def test_sr9_the_program_is_copied_forward_every_half_ring_and_no_more():
    """The newest PROGRAM entry is never half a ring old (so the ring never loses it), and
    copying it costs one entry each half ring, not one each append."""
    cap = 60
    j = _journal("fwd", capacity=cap)
    j.replay()
    p = j.payload
    for i in range(jn.FIELDS):
        p[i] = 100 + i
    j.append(jn.PROGRAM, 3)                   # any state: the journal does not read it
    oldest = 0
    for v in range(300):
        _write(j, jn.CHECKPOINT, 4, v)
        if v < 70 or v % 3 == 0 or v > 270:
            k = _reread(j)                    # what a reboot would find now
            assert k.program[3] == [100 + i for i in range(jn.FIELDS)], v
            assert k.program[0] == jn.PROGRAM and k.program[1] == 3, v
            assert k.last[3][jn.P_DELIVERED_NL] == v
            age = (k.seq - 1) - k.program[2]
            oldest = age if age > oldest else oldest
    assert oldest == cap // 2 - 1
    assert j.seq == 1 + 300 + 300 // (cap // 2 - 1), j.seq


def test_sr9_an_emptied_copy_is_rebuilt_from_the_other():
    for lost in ("j", "j.2"):
        j = _journal("empty-" + lost)
        j.replay()
        for v in range(10):
            _write(j, jn.CHECKPOINT, 4, v + 1)
        j.close()
        keep = "j.2" if lost == "j" else "j"
        good = _bytes(j, keep)
        _put(j, lost, b"")
        k = _reread(j)
        assert k.last[3][jn.P_DELIVERED_NL] == 10 and k.records == 10, lost
        assert k.corrupt > 0 and k.repaired == 10, lost      # reported, and written back
        assert _bytes(j, lost) == good


def test_sr9_the_newest_entry_is_kept_when_its_mirror_copy_was_not_yet_written():
    """A cut after the primary's copy of the newest entry and before the mirror's, in a
    ring that has wrapped: the mirror's slot still holds the entry a lap older. The newest
    one is believed, nothing is lost, and the mirror is written back."""
    j = _journal("lap", capacity=10)
    j.replay()
    for v in range(24):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    old = _bytes(j, "j.2")
    for v in range(24, 25):
        _write(j, jn.CHECKPOINT, 4, v + 1)            # seq 24, slot 4 (over seq 14)
    j.close()
    _put(j, "j.2", old)                               # the mirror's copy not yet written
    fresh = jn.Journal(j.storage, "j", 10)            # LOG before any replay: the newest
    assert fresh.parse(fresh.read_records(4, 1)[0])[3][jn.P_DELIVERED_NL] == 25
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 25 and k.seq == 25
    assert not k.torn and k.corrupt == 0 and k.repaired == 1
    assert _bytes(j, "j") == _bytes(j, "j.2")
    again = _reread(j)                                # the repair kept the newest
    assert again.last[3][jn.P_DELIVERED_NL] == 25 and again.repaired == 0


def test_log_reads_any_slot_counts_exactly_and_needs_no_mirror():
    j = _journal("log2", capacity=10)
    j.replay()
    for v in range(8):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    data = _bytes(j, "j")
    data[5 * jn.REC_SIZE + 9] ^= 1                    # slot 5's primary copy bad
    _put(j, "j", data)

    def log(slot, n):
        return [j.parse(r)[3][jn.P_DELIVERED_NL] if j.parse(r) else None
                for r in j.read_records(slot, n)]
    assert log(4, 3) == [5, 6, 7]                     # the mirror's copy of slot 5
    assert log(6, 2) == [7, 8] and log(6, 10) == [7, 8] and log(0, 0) == []
    j.close()
    j.storage.remove("j.2")
    assert log(4, 3) == [5, None, 7]                  # no mirror: the primary as it is
    assert log(3, 1) == [4]


def test_sr9_the_second_entry_torn_is_a_torn_write_not_corruption():
    j = _journal("second")
    j.replay()
    for v in range(2):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    _put(j, "j", _bytes(j, "j")[:jn.REC_SIZE + 30])  # the second entry's primary torn
    _put(j, "j.2", _bytes(j, "j.2")[:jn.REC_SIZE])
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 1 and k.torn and k.corrupt == 0 and k.slot == 1


def test_sr9_a_copy_with_a_hole_is_written_back_at_its_slots():
    """Slots 0-4 bad in both copies, the mirror file lost: the valid entries 5-9 are written
    back to the mirror at their own slots (the slots before them zero: still bad)."""
    j = _journal("hole", capacity=10)
    j.replay()
    for v in range(10):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    a = _bytes(j, "j")
    for slot in range(5):
        a[slot * jn.REC_SIZE + 20] ^= 0x81
    _put(j, "j", a)
    j.storage.remove("j.2")
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 10 and k.repaired == 5
    b = _bytes(j, "j.2")
    assert len(b) == 10 * jn.REC_SIZE and b[5 * jn.REC_SIZE:] == a[5 * jn.REC_SIZE:]
    assert b[:5 * jn.REC_SIZE] == bytes(5 * jn.REC_SIZE)


def test_sr9_a_record_with_a_good_crc_but_another_magic_or_kind_is_not_believed():
    import struct

    from pump.crc import crc32
    j = _journal("magic")
    for magic, kind, ok in ((0x4A50, jn.CHECKPOINT, True), (0x4A51, jn.CHECKPOINT, False),
                            (0x4A50, 9, False), (0x4A50, 0, False), (0x1234, 7, False),
                            (0x4A50, jn.EVENT, True), (0x4A50, jn.PROGRAM, True)):
        rec = bytearray(jn.REC_SIZE)
        struct.pack_into("<IHBB", rec, 0, 5, magic, kind, 4)
        c = crc32(bytes(rec[:60]))
        struct.pack_into("<HH", rec, 60, c & 0xFFFF, c >> 16)
        assert (j.parse(bytes(rec)) is not None) == ok, (magic, kind)


def test_sr9_the_record_layout_is_the_documented_one():
    """The bytes on flash (docs: journal.py) are what an earlier or later release and the
    host's LOG decoder read: sequence, magic "PJ", kind, state, 13 fields, CRC-32 halves."""
    j = _journal("layout")
    j.replay()
    p = j.payload
    for i in range(jn.FIELDS):
        p[i] = 0x01020304 * (i + 1) & 0x3FFFFFFF
    j.append(jn.CHECKPOINT, 4)
    j.append(jn.EVENT, 5)
    j.append(jn.PROGRAM, 6)
    j.close()
    data = _bytes(j, "j")
    assert data[0:8] == bytes([0, 0, 0, 0, 0x50, 0x4A, 1, 4])
    assert data[64:72] == bytes([1, 0, 0, 0, 0x50, 0x4A, 3, 5])
    assert data[128:136] == bytes([2, 0, 0, 0, 0x50, 0x4A, 2, 6])
    assert data[8:12] == bytes([4, 3, 2, 1]) and data[12:16] == bytes([8, 6, 4, 2])
    from pump.crc import crc32
    c = crc32(bytes(data[0:60]))
    assert data[60:64] == bytes([c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, c >> 24])
    # the checkpoint fields a reboot restores, by their documented positions
    assert (jn.P_PROGRAM_ID, jn.P_DELIVERED_NL, jn.P_LOCKOUT_UNTIL_S, jn.P_RTC_S, jn.P_ALARM,
            jn.P_EVENT, jn.P_ARG, jn.P_AUTH_COUNTER, jn.P_FLAGS, jn.P_AUTH_SERVICE) == \
        tuple(range(10))


def test_sr9_a_rebooted_journal_still_copies_its_program_forward():
    j = _journal("fwd-boot", capacity=20)
    j.replay()
    p = j.payload
    for i in range(jn.FIELDS):
        p[i] = 7 + i
    j.append(jn.PROGRAM, 2)
    _write(j, jn.CHECKPOINT, 4, 1)
    j.close()
    k = _reread(j)                            # a reboot, then two rings of checkpoints
    for v in range(40):
        _write(k, jn.CHECKPOINT, 4, v + 2)
    k.close()
    m = _reread(j)
    assert m.program is not None and m.program[3] == [7 + i for i in range(jn.FIELDS)]


def test_sr9_corruption_is_counted_once_per_bad_copy_and_nothing_bad_is_written_back():
    # a slot bad in both copies: one corruption, nothing to write back, the rest intact
    j = _journal("both-bad", capacity=10)
    j.replay()
    for v in range(6):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    a, b = _bytes(j, "j"), _bytes(j, "j.2")
    a[2 * jn.REC_SIZE + 20] ^= 0x11
    b[2 * jn.REC_SIZE + 30] ^= 0x11
    _put(j, "j", a)
    _put(j, "j.2", b)
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 6 and k.corrupt == 1 and k.repaired == 0
    assert not k.torn and _bytes(j, "j") == a and _bytes(j, "j.2") == b
    # the last slot of a full ring with a flipped bit: one corruption, repaired
    j = _journal("last-slot", capacity=10)
    j.replay()
    for v in range(10):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    good = _bytes(j, "j")
    a = bytearray(good)
    a[9 * jn.REC_SIZE + 20] ^= 0x02
    _put(j, "j", a)
    k = _reread(j)
    assert k.corrupt == 1 and k.repaired == 1 and not k.torn and _bytes(j, "j") == good
    # an older copy beside a newer one (not the newest entry): one corruption, repaired
    j = _journal("twin", capacity=10)
    j.replay()
    for v in range(12):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    older = _bytes(j, "j.2")
    for v in range(12, 14):
        _write(j, jn.CHECKPOINT, 4, v + 1)    # seq 12 and 13 over slots 2 and 3
    j.close()
    b = _bytes(j, "j.2")
    b[2 * jn.REC_SIZE:3 * jn.REC_SIZE] = older[2 * jn.REC_SIZE:3 * jn.REC_SIZE]
    _put(j, "j.2", b)
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 14 and k.corrupt == 1 and k.repaired == 1
    assert not k.torn and _bytes(j, "j") == _bytes(j, "j.2")


def test_sr9_a_torn_newest_write_beside_a_bad_older_mirror_copy_is_both():
    j = _journal("torn-bad", capacity=10)
    j.replay()
    for v in range(13):
        _write(j, jn.CHECKPOINT, 4, v + 1)    # slot 3 holds seq 3 (lap 0) in the mirror
    j.close()
    a, b = _bytes(j, "j"), _bytes(j, "j.2")
    # the 14th entry (seq 13, slot 3): its primary copy torn after 20 bytes, its mirror
    # copy not yet written; the mirror's lap-old copy there has a flipped bit as well
    a[3 * jn.REC_SIZE:3 * jn.REC_SIZE + 20] = bytes([13]) + a[3 * jn.REC_SIZE + 1:
                                                              3 * jn.REC_SIZE + 20]
    a[3 * jn.REC_SIZE + 5] ^= 0x30
    b[3 * jn.REC_SIZE + 40] ^= 0x08
    _put(j, "j", a)
    _put(j, "j.2", b)
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 13 and k.torn and k.corrupt == 1


def test_sr9_a_flipped_first_byte_is_a_flipped_bit_not_a_torn_write():
    j = _journal("byte0", capacity=10)
    j.replay()
    for v in range(14):
        _write(j, jn.CHECKPOINT, 4, v + 1)    # newest seq 13 at slot 3; slot 4 holds seq 4
    j.close()
    good = _bytes(j, "j")
    a = bytearray(good)
    a[4 * jn.REC_SIZE] ^= 0x01                # the slot after the newest, byte 0
    _put(j, "j", a)
    k = _reread(j)
    assert not k.torn and k.corrupt == 1 and k.repaired == 1 and _bytes(j, "j") == good


def test_sr9_the_first_entry_after_an_unreadable_journal_goes_to_the_first_slot():
    j = _journal("unread", capacity=10)
    _put(j, "j", bytes(range(256)))
    k = _reread(j)
    assert k.last is None and k.corrupt > 0
    _write(k, jn.CHECKPOINT, 4, 5)
    k.close()
    assert k.parse(bytes(_bytes(j, "j")[:jn.REC_SIZE]))[2] == 0
    # a first write torn after its first byte: a fresh journal, the cut noticed
    j = _journal("one-byte")
    _put(j, "j", b"\x00")
    k = _reread(j)
    assert k.last is None and k.torn and k.corrupt == 0


def test_sr9_the_newest_entry_with_no_mirror_copy_yet_is_no_corruption():
    j = _journal("nomirror")
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    _put(j, "j.2", _bytes(j, "j.2")[:-jn.REC_SIZE])   # the cut came before the mirror write
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 3 and not k.torn and k.corrupt == 0
    assert k.repaired == 1 and _bytes(j, "j") == _bytes(j, "j.2")


def test_sr9_a_program_record_decodes_with_the_names_the_host_reads_it_by():
    """`pumpctl log` decodes PROGRAM records by the journal's G_* positions: they are where
    the pump writes each value."""
    from pump import program
    prog = program.Program(5, 10000, 240000000, 1, 116667, 28000, 24, 7)
    rec = [0] * jn.FIELDS
    program.to_record(prog, rec)
    got = (rec[jn.G_PROGRAM_ID], rec[jn.G_RATE_UL_PER_H], rec[jn.G_VTBI_NL], rec[jn.G_DRUG],
           rec[jn.G_CONC_PG_PER_ML], rec[jn.G_DOSE_NG_PER_DAY], rec[jn.G_BAG_HOURS],
           rec[jn.G_FLAGS], rec[jn.G_CHECK])
    assert got == prog.fields() + (prog.check,)


def test_sr9_two_bits_changed_in_the_next_slot_are_a_torn_write():
    """The slot after the newest entry differs from its twin in two bits of the first byte:
    what a write torn after its first byte leaves (never one flipped bit), so the entry is
    lost and the cut said, not reported as corruption."""
    j = _journal("twobits", capacity=10)
    j.replay()
    for v in range(14):
        _write(j, jn.CHECKPOINT, 4, v + 1)    # newest at slot 3; slot 4 holds seq 4
    j.close()
    a = _bytes(j, "j")
    a[4 * jn.REC_SIZE] ^= 0x03                # two adjacent bits of the first byte
    _put(j, "j", a)
    k = _reread(j)
    assert k.torn and k.corrupt == 0 and k.last[3][jn.P_DELIVERED_NL] == 14


def test_log_never_returns_part_of_a_record():
    j = _journal("log-tail", capacity=10)
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    _put(j, "j", _bytes(j, "j")[:-20])               # the third record torn in the file
    j.storage.remove("j.2")
    recs = j.read_records(0, 5)
    assert [len(r) for r in recs] == [jn.REC_SIZE, jn.REC_SIZE]


class _CountingStorage:
    """A storage that counts the files left open (each one holds a buffer of the board's
    little heap, for as long as it stays open)."""

    def __init__(self, inner):
        self.inner = inner
        self.open_files = 0

    def size(self, name):
        return self.inner.size(name)

    def path(self, name):
        return self.inner.path(name)

    def remove(self, name):
        self.inner.remove(name)

    def open(self, name, mode):
        f = self.inner.open(name, mode)
        self.open_files += 1
        return _CountedFile(self, f)


class _CountedFile:
    def __init__(self, store, f):
        self.store = store
        self.f = f

    def read(self, n=-1):
        return self.f.read(n)

    def write(self, b):
        return self.f.write(b)

    def seek(self, off, whence=0):
        return self.f.seek(off, whence)

    def tell(self):
        return self.f.tell()

    def flush(self):
        self.f.flush()

    def close(self):
        self.store.open_files -= 1
        self.f.close()


def test_sr9_a_boot_leaves_only_the_two_append_files_open():
    """Replay (every boot) closes what it read, a repair what it wrote back, and close()
    the two files appending holds: a pump booted again and again leaks no file buffer."""
    st = _CountingStorage(Storage(tmpdir("open-files")))
    j = jn.Journal(st, "j", 10)
    j.replay()
    assert st.open_files == 0
    for v in range(12):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    assert st.open_files == 2                         # the primary and the mirror
    j.replay()                                        # a boot in the same process
    assert st.open_files == 0 and j.last[3][jn.P_DELIVERED_NL] == 12
    _write(j, jn.CHECKPOINT, 4, 13)
    j.close()
    assert st.open_files == 0
    st.remove("j.2")                                  # a boot that writes the mirror back
    k = jn.Journal(st, "j", 10)
    k.replay()
    assert k.repaired == 10 and st.open_files == 0
    assert k.last[3][jn.P_DELIVERED_NL] == 13


def test_log_reads_no_slot_past_the_end_of_the_ring():
    """A file longer than the ring (left by a build with a bigger one): LOG returns the
    ring's slots only, to its last, never what lies past it."""
    j = _journal("log-ring", capacity=14)
    j.replay()
    for v in range(14):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    k = jn.Journal(j.storage, "j", 10)
    got = [k.parse(r)[3][jn.P_DELIVERED_NL] for r in k.read_records(7, 5)]
    assert got == [8, 9, 10]
    assert k.read_records(9, 4) == k.read_records(9, 1) and k.read_records(10, 2) == []


def _record(seq, kind, state, delivered):
    import struct

    from pump.crc import crc32
    rec = bytearray(jn.REC_SIZE)
    struct.pack_into("<IHBB", rec, 0, seq, 0x4A50, kind, state)
    struct.pack_into("<I", rec, 8 + 4 * jn.P_DELIVERED_NL, delivered)
    c = crc32(bytes(rec[:60]))
    struct.pack_into("<HH", rec, 60, c & 0xFFFF, c >> 16)
    return bytes(rec)


def test_sr9_the_ring_is_the_documented_2000_slots():
    """docs/firmware.md: entry `seq` goes to slot `seq % 2000`, two files of 2 x 125 KiB. A
    journal whose newest entry is in the last slot (as a pump left it) is found whole after
    an update, and the next entry goes to the first slot: the files never grow past the
    ring."""
    st = Storage(tmpdir("ring-2000"))
    rec = _record(1999, jn.CHECKPOINT, 4, 4321)
    for name in ("journal.bin", "journal.bin.2"):
        with open(st.path(name), "wb") as f:
            f.write(bytes(1999 * jn.REC_SIZE) + rec)
    j = jn.Journal(st)
    assert j.replay() == 1 and j.last[3][jn.P_DELIVERED_NL] == 4321
    assert j.seq == 2000 and j.slot == 0
    _write(j, jn.CHECKPOINT, 4, 4322)
    j.close()
    assert st.size("journal.bin") == st.size("journal.bin.2") == 2000 * jn.REC_SIZE == 128000
    k = jn.Journal(st)
    k.replay()
    assert k.last[2] == 2000 and k.last[3][jn.P_DELIVERED_NL] == 4322


def test_sr9_a_newer_mirror_copy_is_believed_over_an_older_primary_copy():
    """Replay keeps the valid entry with the highest sequence from either file: where the
    primary's copy of the newest entry is a lap older than the mirror's (the primary's slot
    gone back to its earlier content), the pump wakes with the newest (the volume counted
    as delivered: never less), writes it back over the older copy, and keeps it at every
    later boot."""
    j = _journal("mirror-newer", capacity=10)
    j.replay()
    for v in range(24):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    old = _bytes(j, "j")
    _write(j, jn.CHECKPOINT, 4, 25)                   # seq 24, slot 4 (over seq 14)
    j.close()
    a = _bytes(j, "j")
    a[4 * jn.REC_SIZE:5 * jn.REC_SIZE] = old[4 * jn.REC_SIZE:5 * jn.REC_SIZE]
    _put(j, "j", a)
    k = _reread(j)
    assert k.last[3][jn.P_DELIVERED_NL] == 25 and k.seq == 25 and k.slot == 5
    assert not k.torn and k.repaired == 1
    assert _bytes(j, "j") == _bytes(j, "j.2")
    again = _reread(j)
    assert again.last[3][jn.P_DELIVERED_NL] == 25 and again.repaired == 0


def test_sr9_the_log_shows_the_program_copied_every_half_ring_to_the_entry():
    """The copy comes when half the ring has been written since the program's last copy,
    not an entry sooner or later: a 60-slot ring holds the program at entries 0, 30, 60,
    90 and a checkpoint at every other entry."""
    j = _journal("fwd-where", capacity=60)
    j.replay()
    p = j.payload
    for i in range(jn.FIELDS):
        p[i] = 100 + i
    j.append(jn.PROGRAM, 3)
    for v in range(100):
        _write(j, jn.CHECKPOINT, 4, v)
    j.close()
    kinds = {}
    for r in j.read_records(0, 60):
        kind, _, seq, _ = j.parse(r)
        kinds[seq] = kind
    assert sorted(kinds) == list(range(j.seq - 60, j.seq))
    assert [s for s in sorted(kinds) if kinds[s] == jn.PROGRAM] == [60, 90]
    assert j.seq == 104
