"""Property tests (hypothesis) of the firmware's safety invariants, on CPython.

The same firmware code runs under MicroPython in tests/test_micropython.py; hypothesis does
not exist there, so the properties are checked here.
"""
import tempfile

from fakehal import FakeHal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memstore import MemStore, image

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
    d = Delivery(hal.motor, ticks_add, ticks_diff, 50000, 200)
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


def _recorded_run():
    """A scripted run journalling as it goes, on a flash that logs every write. Returns the
    write log and, per write, the volume the motor had truly moved when it began."""
    hal = FakeHal(tempfile.mkdtemp())
    st_ = MemStore()
    hal.storage = st_
    st_.log = []
    moved_at = []
    log = st_._log

    def spy(name, pos, b):
        moved_at.append(hal.motor.position() * 250)
        log(name, pos, b)

    st_._log = spy
    ctl = Controller(hal, jn.Journal(st_, "journal.bin", 4000))
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
    return st_.log, moved_at


_RUN = _recorded_run()


def _replay(files):
    j = jn.Journal(MemStore(files), "journal.bin", 4000)
    j.replay()
    return j


def _delivered(j):
    return j.last[3][jn.P_DELIVERED_NL] if j.last is not None else 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_journal_cut_anywhere_recovers_the_newest_whole_entry(data):
    """SR-9: power cut inside any write, after any byte of it: replay recovers the newest
    entry whose primary copy was whole, never reports less volume than the motor had moved
    when the cut came, and says whether an entry was lost (only a torn primary copy)."""
    log, moved = _RUN
    i = data.draw(st.integers(0, len(log) - 1))
    name, pos, b = log[i]
    k = data.draw(st.integers(0, len(b)))
    j = _replay(image({}, log, i, k))
    whole = _replay(image({}, log, i + 1 if k == len(b) else i, 0))
    assert j.last == whole.last and j.program == whole.program
    assert _delivered(j) >= moved[i]                    # never re-delivers
    assert j.corrupt == 0
    assert j.torn == (name == "journal.bin" and 0 < k < len(b))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_journal_flip_any_bit_of_any_copy_loses_nothing(data):
    """SR-9: a flipped bit in either copy of any entry (the newest included): replay gives
    the very same records, reports the corruption, and writes the copy back."""
    log, moved = _RUN
    files = image({}, log, len(log), 0)
    name = data.draw(st.sampled_from(["journal.bin", "journal.bin.2"]))
    off = data.draw(st.integers(0, len(files[name]) - 1))
    if data.draw(st.booleans()):
        off = len(files[name]) - 1 - off % jn.REC_SIZE    # the newest entry's copy
    bit = data.draw(st.integers(0, 7))
    bad = dict(files)
    flipped = bytearray(files[name])
    flipped[off] ^= 1 << bit
    bad[name] = bytes(flipped)
    good = _replay(files)
    j = _replay(bad)
    assert j.last == good.last and j.program == good.program
    assert j.corrupt == 1 and not j.torn and j.repaired == 1
    assert _delivered(j) >= moved[-1]
