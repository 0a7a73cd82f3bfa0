"""Property tests (hypothesis) of the firmware's safety invariants, on CPython.

The same firmware code runs under MicroPython in tests/test_micropython.py; hypothesis does
not exist there, so the properties are checked here.
"""
import os
import tempfile

from fakehal import FakeHal, Storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pump import codes, program
from pump import journal as jn
from pump.controller import Controller
from pump.delivery import Delivery
from pump.ticks import TICKS_PERIOD, ticks_add, ticks_diff

_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(rate=st.integers(100, 100000), vtbi_ul=st.integers(1000, 1000000),
       start=st.integers(0, TICKS_PERIOD - 1),
       wakes=st.lists(st.integers(0, 200000), max_size=60))
def test_sr4_commanded_never_exceeds_vtbi_and_reaches_it(rate, vtbi_ul, start, wakes):
    """SR-4: for any valid rate and VTBI and any sequence of wake times, the commanded
    volume never exceeds the VTBI, and delivery ends with it reached."""
    hal = FakeHal(tempfile.mkdtemp(), start)
    hal.motor.enable(True)
    d = Delivery(hal.motor, ticks_add, ticks_diff)
    d.load(rate, vtbi_ul * 1000, 0)
    d.start(hal.ticks_ms())
    for gap in wakes:                       # arbitrary (early, late, repeated) wakes
        hal.t += gap
        d.service(hal.ticks_ms())
        assert d.commanded_nl <= d.vtbi_nl
        assert hal.motor.position() * 250 <= d.vtbi_nl
    while d.running:                        # then on time to the end
        hal.t += max(1, ticks_diff(d.seg_end, hal.ticks_ms()))
        d.service(hal.ticks_ms())
        assert d.commanded_nl <= d.vtbi_nl
    assert d.commanded_nl == d.vtbi_nl
    assert d.vtbi_nl - 250 < hal.motor.position() * 250 <= d.vtbi_nl


def _recorded_run(root):
    """A scripted run journalling as it goes. Returns the journal bytes and, per record
    boundary, the volume the motor had truly moved when that record was written."""
    hal = FakeHal(root)
    ctl = Controller(hal, jn.Journal(hal.storage, "journal.bin", 4000))
    moved_at_record = []
    real_write = ctl.journal._write

    def spy(kind, state, p):
        real_write(kind, state, p)
        moved_at_record.append(hal.motor.position() * 250)

    ctl.journal._write = spy
    ctl.boot()
    ctl.request("program", codes.CLINICIAN, program.basic(1, 10000, 5000))
    ctl.request("start", codes.CLINICIAN)
    for _ in range(8):
        ctl.step(hal.ticks_ms())
        hal.t += 36000
    ctl.request("pause", codes.PATIENT)
    hal.t += 20000
    ctl.request("resume", codes.PATIENT)
    for _ in range(30):
        ctl.step(hal.ticks_ms())
        hal.t += 20000
    ctl.journal.close()
    with open(os.path.join(root, "journal.bin"), "rb") as f:
        return f.read(), moved_at_record


_RUN = _recorded_run(tempfile.mkdtemp())


def _replay(data):
    root = tempfile.mkdtemp()
    with open(os.path.join(root, "journal.bin"), "wb") as f:
        f.write(data)
    j = jn.Journal(Storage(root), "journal.bin", 4000)
    j.replay()
    return j


def _delivered(j):
    return j.last[3][jn.P_DELIVERED_NL] if j.last is not None else 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_journal_cut_anywhere_recovers_last_intact_checkpoint(data):
    """SR-9: cut at any byte offset, replay recovers the last intact record; the volume
    it reports is never less than recorded before the cut, nor less than the motor had
    moved when the last intact record was written (write-ahead)."""
    raw, moved = _RUN
    cut = data.draw(st.integers(0, len(raw)))
    j = _replay(raw[:cut])
    whole = cut // jn.REC_SIZE
    assert j.records == whole
    if whole == 0:
        assert j.last is None
        return
    full = _replay(raw[: whole * jn.REC_SIZE])
    assert j.last == full.last
    recorded_before = [_delivered(_replay(raw[: (i + 1) * jn.REC_SIZE])) for i in range(whole)]
    assert _delivered(j) >= max(recorded_before)
    assert _delivered(j) >= moved[whole - 1]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_journal_flip_any_byte_of_last_record(data):
    """SR-9: a flipped byte in the last record makes replay fall back to the one before,
    whose volume is never less than any recorded before it."""
    raw, moved = _RUN
    n = len(raw) // jn.REC_SIZE
    off = data.draw(st.integers(0, jn.REC_SIZE - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(raw)
    bad[(n - 1) * jn.REC_SIZE + off] ^= 1 << bit
    j = _replay(bytes(bad))
    prev = _replay(raw[: (n - 1) * jn.REC_SIZE])
    assert j.skipped == 1 and j.records == n - 1
    assert j.last == prev.last and j.program == prev.program
    assert _delivered(j) >= max(
        _delivered(_replay(raw[: (i + 1) * jn.REC_SIZE])) for i in range(n - 1))
    assert _delivered(j) >= moved[n - 2]
