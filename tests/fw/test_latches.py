"""SR-6, SR-9, SR-11: no single corrupted record or torn write unlatches a stop, forgets the
program, re-delivers, or opens the key store (issue 10, classes 2, 3 and 5).

One scripted run (keys provisioned, a program, delivery, a door-open alarm, a clinician
resume, a runaway latched as OVER_INFUSION lockout, more frames after it) is recorded write
by write on an in-memory flash (memstore). Then the pump is booted:

- from every torn write of the run: the files as they were with that write cut after each
  of its bytes (the power failed inside it);
- from every single-bit flip of every stored file (both journal copies, both key copies) as
  they stood once the alarm was latched and at the end of the run (locked out).

Each boot must wake where the patient cannot deliver (never RUNNING or PAUSED) once a stop
was latched (from the latch entry's own write on) and whenever a torn write lost an entry of
a running pump (it may have been a latch); keep a lockout that was on flash; count as
delivered at least what the motor had moved; keep the program; keep the keys (never a
factory-open store once a key was stored); and raise STORAGE_FAULT for every corrupt copy.

On MicroPython the same checks run on a sample (every 13th cut and bit): the exhaustive
sweep runs on CPython.
"""
import sys

from fakehal import FakeHal, bench, run_for, run_until_state, tmpdir
from memstore import MemStore, image

from pump import auth, codes, program
from pump import journal as jn
from pump.codes import ALARM, CLINICIAN, LOCKOUT, PATIENT, SERVICE_ROLE, STORAGE_FAULT
from pump.commands import Commands
from pump.controller import Controller
from pump.hal import EV_DOOR

_CAP = 12                     # journal slots a file: the run wraps the ring
_STRIDE = 13 if sys.implementation.name == "micropython" else 1
KEY_C = "c1" * 32
KEY_S = "5e" * 32
_NAMES = ("journal.bin", "journal.bin.2", auth.KEY_FILES[0], auth.KEY_FILES[1])


def _steps_nl(hal):
    """Volume the driver has been commanded to move (nominal 250 nL a step)."""
    return hal.motor.position() * 250


class _Run:
    """The recorded run: log of writes, per write the time, the driver's volume and the
    state, and snapshots of the files at named moments."""

    def __init__(self):
        hal = FakeHal(tmpdir("latch"))
        hal.compare = True
        st = MemStore()
        hal.storage = st
        st.log = []
        self.at = []                  # per write: (t, volume the driver had moved)
        log = st._log

        def spy(name, pos, b):
            self.at.append((hal.t, _steps_nl(hal)))
            log(name, pos, b)

        st._log = spy
        ctl = Controller(hal, jn.Journal(st, "journal.bin", _CAP))
        ctl.boot()
        door = Commands(ctl, auth.Keys(st))
        self.snaps = {}
        assert door.execute("KEY", {"slot": "c", "key": KEY_C}, PATIENT, 0)["keys"] == ["c"]
        self.keyed = len(st.log)      # the clinician key is on flash from here on
        assert door.execute("KEY", {"slot": "s", "key": KEY_S}, SERVICE_ROLE, 0)
        assert bench(ctl, program.basic(3, 10000, 20000)) is None
        assert ctl.accept_auth_counter(3, "c")
        assert ctl.request("start", CLINICIAN) is None
        self.started = len(st.log)
        run_for(ctl, hal, 60000)
        assert ctl.accept_auth_counter(5, "c")
        hal.door = False
        ctl.signal(EV_DOOR)
        run_for(ctl, hal, 1000)
        assert ctl.state == ALARM and ctl.alarm == codes.DOOR_OPEN
        self.snaps[ALARM] = (st.snapshot(), hal.t, _steps_nl(hal))
        hal.door = True
        ctl.signal(EV_DOOR)
        run_for(ctl, hal, 10000)
        self.resumed = len(st.log)    # the clinician lifts the alarm: the resume's writes
        assert ctl.request("resume", CLINICIAN) is None
        run_for(ctl, hal, 40000)
        hal.cam_speed(10, 1)
        assert run_until_state(ctl, hal, LOCKOUT, 60000)
        self.locked = len(st.log)     # writes from here on: the lockout entry's mirror on
        self.lockout_until = ctl.lockout_until_s
        hal.cam_speed(1, 1)
        run_for(ctl, hal, 60000)
        assert ctl.accept_auth_counter(6, "c")
        assert ctl.silence(CLINICIAN) is None
        run_for(ctl, hal, 60000)
        self.snaps[LOCKOUT] = (st.snapshot(), hal.t, _steps_nl(hal))
        self.log = st.log
        self.pid = ctl.program.pid
        self.rate = ctl.program.rate_ul_per_h
        self.alarm_op = self._first(ALARM)
        self.lock_op = self._first(LOCKOUT)

    def _first(self, state):
        """The write of the first primary record in `state` (the latch entry's first copy)."""
        want = codes.index_of(codes.STATES, state)
        for i in range(len(self.log)):
            name, pos, b = self.log[i]
            if name == "journal.bin" and len(b) == jn.REC_SIZE and b[7] == want:
                return i
        raise AssertionError("no %s record" % state)

    def latched(self, i):
        """True when write i is the latch entry's first copy or comes after it (and before
        the clinician lifted the latch)."""
        return self.alarm_op <= i < self.resumed or i >= self.lock_op


_RUN = []


def _run():
    if not _RUN:
        _RUN.append(_Run())
    return _RUN[0]


_ROOT = []


def _boot(files, t):
    if not _ROOT:
        _ROOT.append(tmpdir("boot"))
    hal = FakeHal(_ROOT[0])
    hal.t = t
    hal.storage = MemStore(files)
    ctl = Controller(hal, jn.Journal(hal.storage, "journal.bin", _CAP))
    ctl.boot()
    return hal, ctl, auth.Keys(hal.storage)


def _faulted(ctl):
    return ctl.alarm == STORAGE_FAULT or ctl.notice == STORAGE_FAULT


def test_sr9_every_torn_write_of_the_run_boots_safe():
    r = _run()
    n = 0
    for i in range(len(r.log)):
        name, pos, b = r.log[i]
        t, moved = r.at[i]
        for k in range(1, len(b)):
            n += 1
            if n % _STRIDE:
                continue
            hal, ctl, keys = _boot(image({}, r.log, i, k), t)
            where = (i, name, k)
            assert ctl.reserved_nl >= moved, where               # never re-delivers
            assert ctl.delivery.commanded_nl == ctl.reserved_nl, where
            if r.latched(i):
                assert ctl.state not in (codes.RUNNING, codes.PAUSED), where
            elif i >= r.started and name == "journal.bin":
                assert ctl.state not in (codes.RUNNING, codes.PAUSED), where  # entry lost
            if i > r.lock_op:
                assert ctl.state == LOCKOUT, where
                assert ctl.lockout_until_s == r.lockout_until, where
            if i > r.keyed:
                assert not keys.factory() and not keys.locked, where
                assert keys.hexes.get("c") == KEY_C, where
            if ctl.program is not None:
                assert ctl.program.intact(), where
    assert n > 1000


def _flips(state):
    r = _run()
    files, t, moved = r.snaps[state]
    n = 0
    for name in _NAMES:
        data = files[name]
        for byte in range(len(data)):
            for bit in range(8):
                n += 1
                if n % _STRIDE:
                    continue
                bad = {}
                for m in files:
                    bad[m] = files[m]
                flipped = bytearray(data)
                flipped[byte] ^= 1 << bit
                bad[name] = bytes(flipped)
                hal, ctl, keys = _boot(bad, t)
                where = (state, name, byte, bit)
                assert ctl.state == state, where                   # the latch holds
                assert ctl.reserved_nl >= moved, where
                assert ctl.program is not None and ctl.program.pid == r.pid, where
                assert ctl.program.rate_ul_per_h == r.rate, where
                if state == LOCKOUT:
                    assert ctl.lockout_until_s == r.lockout_until, where
                assert keys.hexes.get("c") == KEY_C and keys.hexes.get("s") == KEY_S, where
                if name.startswith("journal"):
                    assert _faulted(ctl), where
                else:
                    assert keys.fault, where                       # Runtime.boot annunciates
    return n


def test_sr9_every_bit_flip_after_a_stopping_alarm_keeps_it_latched():
    assert _flips(ALARM) > 5000 // _STRIDE


def test_sr6_every_bit_flip_after_a_lockout_keeps_it_latched():
    assert _flips(LOCKOUT) > 5000 // _STRIDE


def test_sr9_corruption_is_repaired_from_the_intact_copy():
    """After a boot that found a flipped copy, the next boot finds nothing to report."""
    r = _run()
    files, t, moved = r.snaps[LOCKOUT]
    bad = dict(files)
    data = bytearray(files["journal.bin"])
    data[3 * jn.REC_SIZE + 20] ^= 4
    bad["journal.bin"] = bytes(data)
    hal, ctl, keys = _boot(bad, t)
    assert ctl.notice == STORAGE_FAULT and ctl.journal.repaired >= 1
    again = Controller(hal, jn.Journal(hal.storage, "journal.bin", _CAP))
    again.boot()
    assert again.journal.corrupt == 0 and again.notice is None and again.state == LOCKOUT


def test_sr9_a_journal_with_nothing_readable_fails_closed():
    """Nothing readable (every copy corrupt, or a journal of another format): the pump
    cannot know whether a lockout was in force, so it wakes locked out (STORAGE_FAULT)."""
    hal = FakeHal(tmpdir("garbage"))
    hal.storage = MemStore({"journal.bin": bytes(range(256)) * 3})
    ctl = Controller(hal, jn.Journal(hal.storage, "journal.bin", _CAP))
    ctl.boot()
    assert ctl.state == LOCKOUT and ctl.alarm == STORAGE_FAULT
    assert ctl.request("program", CLINICIAN, program.basic(1, 10000, 1000)) == \
        codes.LOCKOUT_ACTIVE
    # nobody lifts it early (SR-6, issue 11): the override only acknowledges its end
    assert ctl.request("override", CLINICIAN) == codes.LOCKOUT_ACTIVE
    hal.advance_to(hal.t + ctl.lockout_s * 1000)
    assert ctl.request("override", CLINICIAN) is None and ctl.state == codes.IDLE
