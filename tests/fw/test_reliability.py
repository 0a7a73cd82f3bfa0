"""Issue 10's fault classes, fixed by design (runs on CPython and MicroPython):

1. a calibration cannot blind the monitor (SR-5): calibrations are bounded by the mechanism's
   geometry, and the monitor's geometry check does not use them;
4. one frame cannot exhaust the authentication counters, which are per key (SR-11);
5. the key store fails closed and recovers from its intact copy (SR-11);
7. a power cut costs at most one stroke (plus a pulse), at every rate up to the maximum, and
   a pump that knew what it had moved never counts more (SR-9, SR-4).
(2, 3: tests/fw/test_latches.py; 6: tests/fw/test_protocol.py; 8: tests/hil.)
"""
from fakehal import FakeHal, bench, run_for, run_until_state, tmpdir
from memstore import MemStore, PowerCut

from pump import auth, calibration, codes, program
from pump import journal as jn
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE, STORAGE_FAULT
from pump.commands import Commands
from pump.controller import AUTH_WINDOW, Controller
from pump.monitor import GEO_PULSE_NL

KEY_C = "c1" * 32
KEY_S = "5e" * 32
STROKE_NL = 50000
PULSE_NL = 12500


def _pump(tag, rate, vtbi_ul, stroke_nl=50000, storage=None):
    hal = FakeHal(tmpdir(tag))
    hal.compare = True
    if storage is not None:
        hal.storage = storage
    ctl = Controller(hal, jn.Journal(hal.storage, "journal.bin", 60), stroke_nl, 200)
    ctl.boot()
    assert bench(ctl, program.basic(1, rate, vtbi_ul)) is None
    assert ctl.request("start", CLINICIAN) is None
    return hal, ctl


# --- 1. calibration ---------------------------------------------------------------------------

def test_sr5_calibration_is_bounded_by_the_mechanism_and_says_why():
    assert calibration.NOMINAL_STROKE_NL // 4 == GEO_PULSE_NL
    for s in (calibration.STROKE_NL_MIN, 50000, calibration.STROKE_NL_MAX):
        assert calibration.valid(s, 200) and calibration.why(s, 200) == ""
    for s, n in ((12500, 200), (200000, 200), (45992, 200), (54008, 200), (50004, 200),
                 (50000, 204), (50000, 100), (50000, 6400)):
        assert not calibration.valid(s, n) and calibration.why(s, n), (s, n)
    hal = FakeHal(tmpdir("calbound"))
    ctl = Controller(hal)
    ctl.boot()
    assert ctl.request("service", SERVICE_ROLE) is None
    door = Commands(ctl, auth.Keys(hal.storage))
    got = door.execute("CAL", {"stroke_nl": 12500}, SERVICE_ROLE, 0)
    assert got == codes.BAD_INPUT and "50 uL" in door.why
    assert ctl.delivery.stroke_nl == 50000 and ctl.monitor.stroke_nl == 50000
    try:
        Controller(hal, None, 12500, 200)
        raise AssertionError("an out-of-bounds calibration was accepted")
    except ValueError:
        pass


def test_sr5_a_stored_calibration_out_of_bounds_is_ignored_and_annunciated():
    """A quarter of the true stroke, in a file with a valid CRC (written by an earlier
    firmware, or forged): ignored, the nominal geometry used, STORAGE_FAULT annunciated."""
    hal = FakeHal(tmpdir("calfile"))
    calibration.save(hal.storage, 12496, 200, 4)
    ctl = Controller(hal)
    assert ctl.delivery.stroke_nl == 50000 and ctl.cal_fault
    ctl.boot()
    assert ctl.notice == STORAGE_FAULT


def _caught(stroke_nl, num, den, rate):
    """Run with calibration stroke_nl while the camshaft turns num/den of what the driver
    commands (the physical stroke, at the mechanism's geometry, num/den x 50 µL /
    stroke_nl of what the program needs); the alarm raised within 3 h, or None."""
    hal, ctl = _pump("geo", rate, 50000, stroke_nl)
    hal.cam_speed(num, den)
    run_until_state(ctl, hal, codes.ALARM, 3 * 3600000)
    if ctl.state == codes.LOCKOUT:
        return codes.OVER_INFUSION
    return ctl.alarm if ctl.state == codes.ALARM else None


def test_sr5_any_accepted_calibration_with_a_physical_stroke_off_by_a_quarter_is_caught():
    """At the bounds and the middle of the accepted range, a physical delivery 25 % above or
    below the program (at the mechanism's geometry) is caught; with the camshaft as
    commanded nothing is raised."""
    for s in (calibration.STROKE_NL_MIN, 50000, calibration.STROKE_NL_MAX):
        # camshaft factor f such that f * 50 µL / s = 1.25 (over) or 0.75 (under)
        over = _caught(s, 125 * s, 100 * 50000, 10000)
        under = _caught(s, 75 * s, 100 * 50000, 10000)
        fine = _caught(s, 1, 1, 10000)
        assert over == codes.OVER_INFUSION, (s, over)
        assert under == codes.UNDER_INFUSION, (s, under)
        assert fine is None, (s, fine)


def test_sr5_a_calibration_forced_past_the_bounds_cannot_blind_the_monitor():
    """Defence in depth: a monitor handed a quarter of the true stroke (as a calibration
    could once say) still catches the fourfold delivery by the geometry alone."""
    from pump.monitor import Monitor
    hal, ctl = _pump("forced", 10000, 50000)
    ctl.monitor = Monitor(hal, 12496, 200)
    ctl.monitor.load(ctl.program, 0)
    ctl.delivery.stroke_nl = 12496
    ctl.request("pause", CLINICIAN)
    ctl.request("resume", CLINICIAN)
    run_until_state(ctl, hal, codes.LOCKOUT, 3600000)
    assert ctl.state == codes.LOCKOUT and ctl.alarm == codes.OVER_INFUSION
    assert hal.motor.position() * 250 < 4 * 62500 + 300000   # well under a tenth of a mL


# --- 4. authentication counters ---------------------------------------------------------------

def test_sr11_one_frame_cannot_exhaust_the_counter_and_each_key_has_its_own():
    hal = FakeHal(tmpdir("ctr"))
    ctl = Controller(hal)
    ctl.boot()
    assert not ctl.accept_auth_counter((1 << 30) - 1, "c")       # one frame, the top: no
    assert not ctl.accept_auth_counter(AUTH_WINDOW + 1, "c")
    assert ctl.accept_auth_counter(AUTH_WINDOW, "c")
    assert not ctl.accept_auth_counter(AUTH_WINDOW, "c")          # replayed
    assert ctl.accept_auth_counter(1, "s")                        # the service key's own
    assert not ctl.accept_auth_counter(1, "s")
    assert not ctl.accept_auth_counter(5, "x") and not ctl.accept_auth_counter(True, "c")
    # pushing the clinician's counter to the top takes a million frames, and then the
    # service key still works
    frames = ((1 << 30) - 1) // AUTH_WINDOW      # each accepted frame moves it AUTH_WINDOW
    assert frames > 1000000                         # at most
    ctl.auth_counter = (1 << 30) - 1 - AUTH_WINDOW  # as a million such frames leave it
    assert ctl.accept_auth_counter((1 << 30) - 1, "c")
    assert not ctl.accept_auth_counter(1 << 30, "c")  # the clinician's counter is used up
    assert ctl.accept_auth_counter(2, "s")          # the service key is not locked out
    ctl2 = Controller(hal)
    ctl2.boot()
    assert ctl2.auth_counter == (1 << 30) - 1 and ctl2.auth_service == 2
    assert ctl2.snapshot()["auth_counters"] == {"c": (1 << 30) - 1, "s": 2}


# --- 5. the key store -------------------------------------------------------------------------

def _keyed(tag):
    st = MemStore()
    keys = auth.Keys(st)
    assert keys.factory() and keys.set("c", KEY_C) and keys.set("s", KEY_S)
    return st, keys


def test_sr11_key_store_recovers_from_its_intact_copy():
    for name in auth.KEY_FILES:
        for byte in (0, 5, 40, 100, 140):
            st, keys = _keyed("rec")
            data = bytearray(st.files[name])
            data[byte] ^= 0x10
            st.files[name] = data
            again = auth.Keys(st)
            assert again.hexes == {"c": KEY_C, "s": KEY_S} and again.fault, (name, byte)
            assert not again.factory() and not again.locked
            assert st.files[auth.KEY_FILES[0]] == st.files[auth.KEY_FILES[1]]   # repaired
            assert not auth.Keys(st).fault


def test_sr11_key_store_fails_closed():
    """Both copies unreadable: no key verifies, nobody may provision one (the factory state
    is no key file at all), and the pump annunciates STORAGE_FAULT."""
    st, keys = _keyed("closed")
    for name in auth.KEY_FILES:
        st.files[name] = bytearray(b"garbage")
    locked = auth.Keys(st)
    assert locked.locked and locked.fault and not locked.factory()
    assert locked.provisioned() == [] and not locked.set("c", KEY_C)
    msg = auth.message("c", 1, "START", "{}")
    assert not locked.verify("c", msg, auth.hmac_sha256(bytes.fromhex(KEY_C), msg))
    hal = FakeHal(tmpdir("closed"))
    hal.storage = st
    ctl = Controller(hal)
    ctl.boot()
    door = Commands(ctl, locked)
    for role in (PATIENT, CLINICIAN, SERVICE_ROLE):
        got = door.execute("KEY", {"slot": "c", "key": KEY_C}, role, 0)
        assert got == codes.NOT_AUTHORISED, role
    # the legacy files of earlier firmware, present but not two equal copies: closed too
    st2 = MemStore({"keys.json": b'{"c": "' + KEY_C.encode() + b'"}'})
    assert auth.Keys(st2).locked


def test_sr11_a_torn_first_provisioning_leaves_the_pump_factory_fresh():
    st = MemStore()
    st.budget = 20
    try:
        auth.Keys(st).set("c", KEY_C)
        raise AssertionError("no power cut")
    except PowerCut:
        pass
    st.budget = -1
    keys = auth.Keys(st)
    assert keys.factory() and not keys.locked and keys.set("c", KEY_C)


def test_sr11_keys_of_earlier_firmware_are_taken_only_from_two_equal_copies():
    st = MemStore()
    text = '{"c": "%s"}' % KEY_C
    st.files["keys.json"] = bytearray(text.encode())
    st.files["keys.new"] = bytearray(text.encode())
    keys = auth.Keys(st)
    assert keys.hexes == {"c": KEY_C} and "keys.json" not in st.files
    assert auth.Keys(st).hexes == {"c": KEY_C}
    st2 = MemStore()
    st2.files["keys.json"] = bytearray(text.encode())
    st2.files["keys.new"] = bytearray(text.replace("c1c1", "c1c0", 1).encode())
    assert auth.Keys(st2).locked


# --- 7. power cuts ----------------------------------------------------------------------------

_SEED = [12345]


def _rand(n):
    _SEED[0] = (_SEED[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return _SEED[0] % n


def _cuts(rate, cuts, in_write):
    """Deliver 2 mL at `rate` with `cuts` power cuts at pseudo-random instants (inside a
    journal write when `in_write`); after each the pump boots from its journal and the
    clinician resumes. Returns (losses per cut in nL, the final controller, volume the motor
    moved in all in nL)."""
    st = MemStore()
    hal, ctl = _pump("cut", rate, 2000, storage=st)
    moved_before = 0
    losses = []
    period = 2000 * 3600000 // rate // (cuts + 1)
    for _ in range(cuts):
        try:
            if in_write:
                st.budget = _rand(6 * jn.REC_SIZE)
                run_for(ctl, hal, 2 * period)
                st.budget = -1
            else:
                run_for(ctl, hal, 1 + _rand(period))
        except PowerCut:
            st.budget = -1
        moved = moved_before + hal.motor.position() * 250
        t = hal.t
        hal = FakeHal(tmpdir("cut2"))
        hal.compare = True
        hal.storage = st
        hal.t = t
        ctl = Controller(hal, jn.Journal(st, "journal.bin", 60), 50000, 200)
        ctl.boot()
        losses.append(ctl.reserved_nl - moved - sum(losses))   # counted, never moved
        moved_before = moved
        if ctl.state in (codes.ALARM, codes.PAUSED):
            assert ctl.request("resume", CLINICIAN) is None, ctl.state
        if ctl.state == codes.COMPLETE:
            break
    run_until_state(ctl, hal, codes.COMPLETE, 3 * 2000 * 3600000 // rate)
    return losses, ctl, moved_before + hal.motor.position() * 250


def test_sr9_a_power_cut_costs_at_most_a_stroke_and_a_pulse_at_every_rate():
    for rate in (600, 10000, 50000, 100000):
        for in_write in (False, True):
            losses, ctl, moved = _cuts(rate, 6, in_write)
            for loss in losses:
                assert -250 < loss <= STROKE_NL + PULSE_NL, (rate, in_write, losses)
            assert ctl.state == codes.COMPLETE, (rate, ctl.state)
            assert ctl.delivery.commanded_nl == 2000000
            # what the pump counted beyond what moved is only the cuts' losses
            assert 2000000 - moved <= sum(losses) + 250, (rate, moved, losses)


def test_sr9_a_pause_before_the_cut_loses_nothing():
    """A pump that stopped part-way through a stroke knows what it moved: the journal counts
    that, not the reservation, so a later power cut costs nothing and COMPLETE comes only
    when the whole VTBI has moved."""
    for rate in (10000, 100000):
        hal, ctl = _pump("pausecut", rate, 2000)
        run_for(ctl, hal, 3600000 // rate * 17 + 123)       # mid-stroke
        assert ctl.request("pause", PATIENT) is None
        moved = hal.motor.position() * 250
        assert ctl.reserved_nl - moved < 250
        hal2 = FakeHal(tmpdir("pausecut2"))
        hal2.storage = hal.storage
        hal2.t = hal.t
        ctl2 = Controller(hal2, jn.Journal(hal.storage, "journal.bin", 60))
        ctl2.boot()
        assert ctl2.state == codes.PAUSED and ctl2.reserved_nl - moved < 250
        assert ctl2.request("resume", PATIENT) is None
        run_until_state(ctl2, hal2, codes.COMPLETE, 2 * 2000 * 3600000 // rate)
        assert ctl2.state == codes.COMPLETE
        assert moved + hal2.motor.position() * 250 > 2000000 - 250
