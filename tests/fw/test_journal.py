"""Journal: records survive, torn or corrupt ones are skipped, the ring keeps the latest."""
from fakehal import Storage, tmpdir

from pump import journal as jn


def _journal(tag, capacity=64):
    return jn.Journal(Storage(tmpdir(tag)), "j", capacity)


def _write(j, kind, state, delivered):
    p = j.payload
    for i in range(9):
        p[i] = 0
    p[jn.P_PROGRAM_ID] = 7
    p[jn.P_DELIVERED_NL] = delivered
    j.append(kind, state)


def test_append_then_replay():
    j = _journal("a")
    j.replay()
    for v in range(10):
        _write(j, jn.CHECKPOINT, 4, v * 1000)
    j.close()
    k = jn.Journal(j.storage, "j")
    assert k.replay() == 10
    assert k.last[2] == 9 and k.last[3][jn.P_DELIVERED_NL] == 9000
    assert k.seq == 10 and k.skipped == 0


def test_torn_tail_is_skipped():
    j = _journal("b")
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    path = j.storage.path("j")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-5])
    k = jn.Journal(j.storage, "j")
    k.replay()
    assert k.last[3][jn.P_DELIVERED_NL] == 2 and k.skipped == 1


def test_flipped_byte_is_skipped():
    j = _journal("c")
    j.replay()
    for v in range(3):
        _write(j, jn.CHECKPOINT, 4, v + 1)
    j.close()
    path = j.storage.path("j")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[2 * jn.REC_SIZE + 13] ^= 0x40
    with open(path, "wb") as f:
        f.write(data)
    k = jn.Journal(j.storage, "j")
    k.replay()
    assert k.last[3][jn.P_DELIVERED_NL] == 2 and k.skipped == 1


def test_ring_wraps_keeping_program_and_latest_checkpoint():
    j = _journal("d", capacity=10)
    j.replay()
    p = j.payload
    for i in range(9):
        p[i] = i + 1
    j.append(jn.PROGRAM, 2)
    for v in range(95):
        _write(j, jn.CHECKPOINT, 4, v)
    j.close()
    assert j.storage.size("j") == 10 * jn.REC_SIZE
    k = jn.Journal(j.storage, "j", 10)
    k.replay()
    assert k.program is not None and k.program[3] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert k.last[3][jn.P_DELIVERED_NL] == 94
    assert k.seq == j.seq and k.slot == j.slot and k.records == 10


def test_torn_slot_is_rewritten_next():
    j = _journal("f", capacity=8)
    j.replay()
    for v in range(5):
        _write(j, jn.CHECKPOINT, 4, v)
    j.close()
    path = j.storage.path("j")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: 4 * jn.REC_SIZE + 20])      # the fifth record torn mid-write
    k = jn.Journal(j.storage, "j", 8)
    k.replay()
    assert k.last[3][jn.P_DELIVERED_NL] == 3 and k.slot == 4
    _write(k, jn.CHECKPOINT, 4, 77)
    k.close()
    m = jn.Journal(j.storage, "j", 8)
    m.replay()
    assert m.last[3][jn.P_DELIVERED_NL] == 77 and m.skipped == 0 and m.records == 5


def test_replay_of_nothing():
    j = _journal("e")
    assert j.replay() == 0
    assert j.last is None and j.program is None and j.seq == 0
