"""Issue 11, the holes a review found in the plan, lockout and interruption rules (SR-6,
SR-7, SR-9, SR-11): each test is what a patient or clinician would have met. Runs on CPython
and MicroPython."""
from fakehal import FakeHal, run_for, tmpdir

from pump import auth, codes, program
from pump import journal as jn
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.commands import Commands
from pump.controller import Controller

_H = 3600000
_DAY_S = 86400


def _door(tag):
    hal = FakeHal(tmpdir(tag))
    ctl = Controller(hal)
    ctl.boot()
    return hal, ctl, Commands(ctl, auth.Keys(None))


def _reboot(hal):
    ctl = Controller(hal)
    st = ctl.boot()
    return ctl, Commands(ctl, auth.Keys(None)), st


def _bag(dose=28000, day=1, cycle=2, hours=24):
    """A pharmacy label for a 70 kg patient's bag at its plan position, and its entry."""
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": dose, "bag_hours": hours, "regimen": "r/r", "cycle": cycle,
          "day_from": day}
    label = program.make_label(rx, 270000)
    assert isinstance(label, dict), label
    rate = label["rate_ul_per_h"]
    vtbi = label["infusible_ul"]
    entry = {"rate": "%d.%03d" % (rate // 1000, rate % 1000), "unit": "mL/h",
             "vtbi_ml": "%d.%03d" % (vtbi // 1000, vtbi % 1000)}
    return {"label": label, "entry": entry}


def _program(door, args, pid):
    got = door.execute("PROPOSE", args, CLINICIAN, pid)
    if isinstance(got, str):
        return got
    got = door.execute("CONFIRM", {"echo": got["echo"]}, CLINICIAN, pid)
    return got if isinstance(got, str) else None


def _running(tag):
    hal, ctl, door = _door(tag)
    assert _program(door, _bag(), 1) is None
    assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
    run_for(ctl, hal, _H)
    return hal, ctl, door


# --- the 12 h lockout survives a cut at any point (SR-6, SR-9) ------------------------------

def _lockout_holds(hal, ctl, door, st):
    assert st == codes.LOCKOUT
    assert door.execute("STATUS", {}, PATIENT, 0)["lockout_remaining_s"] == 12 * 3600
    assert door.execute("RESUME", {}, PATIENT, 0) == codes.INVALID_STATE
    assert _program(door, _bag(), 5) == codes.LOCKOUT_ACTIVE
    assert door.execute("START", {}, CLINICIAN, 6) != {"state": codes.RUNNING}
    assert ctl.lockout_until_s == hal.rtc_s() + 12 * 3600


def test_sr6_overdose_report_cut_before_the_lockout_transition_wakes_locked_out():
    """The OVERDOSE record is on flash, the lockout transition's is not: the pump wakes in
    LOCKOUT, a re-program is refused LOCKOUT_ACTIVE and nothing starts for 12 h."""
    for running in (False, True):
        hal, ctl, door = _door("ovcut%d" % running)
        assert _program(door, _bag(), 1) is None
        if running:
            assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
            run_for(ctl, hal, _H)
        ctl.machine.fire = lambda trigger: None       # the cut: the transition never lands
        assert ctl.overdose(CLINICIAN, "wrong_bag") is None
        ctl, door, st = _reboot(hal)
        _lockout_holds(hal, ctl, door, st)


def test_sr9_overdose_lockout_record_torn_off_the_journal_still_locks_out():
    """A real cut: both journal files lose the lockout transition's record."""
    hal, ctl, door = _running("ovtorn")
    assert door.execute("OVERDOSE", {"reason": "wrong_bag"}, CLINICIAN, 3) == \
        {"state": codes.LOCKOUT}
    for name in ("journal.bin", "journal.bin.2"):
        p = hal.storage.path(name)
        with open(p, "rb") as fh:
            data = fh.read()
        with open(p, "wb") as fh:
            fh.write(data[:-jn.REC_SIZE])             # the last write never happened
    ctl, door, st = _reboot(hal)
    _lockout_holds(hal, ctl, door, st)


def test_sr6_no_program_is_taken_while_a_lockout_end_is_ahead_in_any_state():
    hal, ctl, door = _running("ovany")
    ctl.lockout_until_s = hal.rtc_s() + 3600          # as a journal could leave it
    assert door.execute("STOP", {}, CLINICIAN, 3) == {"state": codes.PROGRAMMED}
    assert _program(door, _bag(), 4) == codes.LOCKOUT_ACTIVE
    assert door.execute("START", {}, CLINICIAN, 5) == codes.LOCKOUT_ACTIVE
    assert ctl.lockout_until_s == hal.rtc_s() + 3600
