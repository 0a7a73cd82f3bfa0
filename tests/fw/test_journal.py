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
