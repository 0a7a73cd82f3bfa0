"""Issue 11, the holes a review found in the plan, lockout and interruption rules (SR-6,
SR-7, SR-9, SR-11): each test is what a patient or clinician would have met. Runs on CPython
and MicroPython."""
from fakehal import run_for
from test_dose_holes import _DAY_S, _H, _door, _program
from test_dose_holes import _bag as _plan_bag

from pump import auth, codes
from pump import journal as jn
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.commands import Commands
from pump.controller import Controller


def _reboot(hal):
    ctl = Controller(hal)
    st = ctl.boot()
    return ctl, Commands(ctl, auth.Keys(None)), st


def _bag(dose=28000, day=1, cycle=2, hours=24):
    """A 70 kg patient's bag (cycle 2's step by default) at its plan position."""
    return _plan_bag(dose, day, cycle, hours)


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


# --- cycle 1 -> cycle 2 (SR-2, label 2.1) -----------------------------------------------------

def test_sr2_after_cycle_one_and_its_14_days_off_the_cycle_two_bag_is_taken():
    """The 14 days off after a finished cycle are its treatment-free interval, not an
    interruption beyond 7 days: the 28 ug/day cycle-2 bag is accepted, a cycle-1 day-1 bag
    (9 ug/day: an underdose) refused."""
    hal, ctl, door = _door("c1c2")
    assert _program(door, _bag(9000, day=1, cycle=1), 1) is None
    assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
    run_for(ctl, hal, _H)
    assert door.execute("STOP", {}, CLINICIAN, 3) == {"state": codes.PROGRAMMED}
    ctl.cycle_run_s = 28 * _DAY_S                     # as if its 28 infusion days had run
    assert door.execute("CLEAR", {}, CLINICIAN, 4) == {"state": codes.IDLE}
    hal.t += 13 * _DAY_S * 1000
    assert _program(door, _bag(28000, day=1, cycle=2), 5) == codes.DOSE_STEP_MISMATCH
    hal.t += _DAY_S * 1000                            # the 14 days are over
    assert _program(door, _bag(9000, day=1, cycle=1), 6) == codes.DOSE_STEP_MISMATCH
    assert _program(door, _bag(28000, day=1, cycle=2), 7) is None
    plan = door.execute("STATUS", {}, PATIENT, 0)["plan"]
    assert (plan["cycle"], plan["day"], plan["dose_ng_per_day"]) == (2, 1, 28000)


# --- STOP is an interruption (SR-7) -----------------------------------------------------------

def test_sr7_stop_then_start_5h_later_needs_premedication():
    hal, ctl, door = _running("stop5h")
    assert door.execute("STOP", {}, PATIENT, 0) == {"state": codes.PROGRAMMED}
    run_for(ctl, hal, 5 * _H)
    assert door.execute("STATUS", {}, PATIENT, 0)["interrupted_s"] == 5 * 3600
    assert door.execute("START", {}, CLINICIAN, 3) == codes.PREMEDICATION_REQUIRED
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 4) == {"state": codes.PROGRAMMED}
    assert door.execute("START", {}, CLINICIAN, 5) == {"state": codes.RUNNING}


def test_sr7_stop_for_8_days_restarts_the_cycle_at_day_1():
    """Label 2.3: more than 7 days off within a cycle restarts it at its first step: after a
    STOP and 8 days, the cycle's day-2 bag is refused and a day-1 bag taken."""
    hal, ctl, door = _door("stop8d")
    assert _program(door, _bag(9000, day=1, cycle=1), 1) is None
    assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
    run_for(ctl, hal, 23 * _H + 30 * 60000)
    assert door.execute("STOP", {}, CLINICIAN, 3) == {"state": codes.PROGRAMMED}
    hal.t += 8 * _DAY_S * 1000
    assert _program(door, _bag(9000, day=2, cycle=1), 4) == codes.DOSE_STEP_MISMATCH
    assert _program(door, _bag(9000, day=1, cycle=1, hours=48), 5) is None   # a fresh bag
    plan = door.execute("STATUS", {}, PATIENT, 0)["plan"]
    assert (plan["cycle"], plan["day"]) == (1, 1)
    assert door.execute("START", {}, CLINICIAN, 6) == codes.PREMEDICATION_REQUIRED


def test_sr7_stopping_a_prime_before_the_bag_ran_interrupts_nothing():
    hal, ctl, door = _door("stopprime")
    assert _program(door, _bag(), 1) is None
    assert ctl.request("prime", CLINICIAN, True) is None
    assert door.execute("STOP", {}, CLINICIAN, 2) == {"state": codes.PROGRAMMED}
    hal.t += 5 * _H
    assert door.execute("START", {}, CLINICIAN, 3) == {"state": codes.RUNNING}


# --- a bag's hang time runs from its first run, whatever re-programming (SR-7) ----------------

def test_sr7_an_expired_bag_stays_expired_when_its_label_is_programmed_again():
    hal, ctl, door = _running("hang")
    bag = _bag()
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    hal.t += 29 * _H
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 3) == {"state": codes.PAUSED}
    assert door.execute("RESUME", {}, PATIENT, 0) == codes.BAG_EXPIRED
    assert door.execute("STOP", {}, CLINICIAN, 4) == {"state": codes.PROGRAMMED}
    assert _program(door, bag, 5) is None                 # the very same label: the same bag
    assert door.execute("START", {}, CLINICIAN, 6) == codes.BAG_EXPIRED
    ctl, door, st = _reboot(hal)                          # and after a power cut
    assert st == codes.PROGRAMMED
    assert _program(door, bag, 7) is None
    assert door.execute("START", {}, CLINICIAN, 8) == codes.BAG_EXPIRED
    # a new bag (another label) starts its own clock
    assert _program(door, _bag(hours=48), 9) is None
    assert door.execute("START", {}, CLINICIAN, 10) == {"state": codes.RUNNING}


def test_sr7_the_same_bag_reprogrammed_within_its_hang_time_runs_on_its_first_clock():
    hal, ctl, door = _running("hang2")
    first = ctl.bag_start_s
    assert door.execute("STOP", {}, CLINICIAN, 3) == {"state": codes.PROGRAMMED}
    assert _program(door, _bag(), 4) is None
    assert door.execute("START", {}, CLINICIAN, 5) == {"state": codes.RUNNING}
    assert ctl.bag_start_s == first


# --- a premedication confirmation goes stale (SR-7) -------------------------------------------

def test_sr7_a_premedication_confirmation_20h_old_is_asked_again_even_after_a_reboot():
    hal, ctl, door = _running("premold")
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    hal.t += 5 * _H
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 3) == {"state": codes.PAUSED}
    assert door.execute("STATUS", {}, PATIENT, 0)["premedicated"] is True
    hal.t += 20 * _H
    ctl, door, st = _reboot(hal)
    assert st == codes.PAUSED
    assert door.execute("STATUS", {}, PATIENT, 0)["premedicated"] is False
    assert door.execute("RESUME", {}, CLINICIAN, 4) == codes.PREMEDICATION_REQUIRED
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 5) == {"state": codes.PAUSED}
    assert door.execute("RESUME", {}, CLINICIAN, 6) == {"state": codes.RUNNING}


def test_sr7_a_premedication_confirmation_covers_two_hours_and_one_restart():
    hal, ctl, door = _running("premwin")
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    hal.t += 5 * _H
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 3) == {"state": codes.PAUSED}
    hal.t += 2 * _H - 60000                               # 1 h 59 min later: still covered
    assert door.execute("RESUME", {}, CLINICIAN, 4) == {"state": codes.RUNNING}
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    hal.t += 5 * _H                                       # the next long pause: asked again
    assert door.execute("RESUME", {}, CLINICIAN, 5) == codes.PREMEDICATION_REQUIRED
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 6) == {"state": codes.PAUSED}
    hal.t += 2 * _H                                       # 2 h later: stale
    assert door.execute("RESUME", {}, CLINICIAN, 7) == codes.PREMEDICATION_REQUIRED


# --- service mode and its state restore together, with no patient program (SR-9, SR-11) -------

def test_sr11_two_reboots_in_service_mode_wake_in_service_with_no_patient_program():
    hal, ctl, door = _door("svc2")
    assert _program(door, _bag(), 1) is None
    assert door.execute("CLEAR", {}, CLINICIAN, 2) == {"state": codes.IDLE}
    assert ctl.request("service", SERVICE_ROLE) is None
    for _ in range(2):
        ctl, door, st = _reboot(hal)
        s = door.execute("STATUS", {}, PATIENT, 0)
        assert (st, s["mode"], s["program_id"], s["plan"]) == \
            (codes.SERVICE, codes.SERVICE, None, None)
        ctl._journal(jn.CHECKPOINT, 0, 0)                 # any checkpoint (an auth counter)
    assert _program(door, _bag(day=2), 3) == codes.NOT_AUTHORISED
    assert door.execute("OVERDOSE", {"reason": "wrong_bag"}, CLINICIAN, 4) == \
        codes.NOT_AUTHORISED
    assert ctl.request("exit_service", SERVICE_ROLE) is None
    assert door.execute("STATUS", {}, PATIENT, 0)["mode"] == "CLINICAL"
