"""Controller edges a patient or clinician would notice: the lockout's length (SR-6), the
interruption rules of the drug library (SR-7: bag hang time, premedication), the pause
reminder (SR-14), the patient's plan after power loss (SR-9) and the open interruption as
reported (STATUS) and as a new program is checked against it."""
from fakehal import FakeHal, clinical, pump, run_for, tmpdir
from memstore import MemStore

from pump import codes
from pump import journal as jn
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.controller import FLAG_PREMED, LOW_BATTERY_MV, Controller
from pump.hal import EV_BATTERY, EV_DOOR, EV_ROTATION
from pump.runtime import Runtime

_H = 3600 * 1000                 # one hour of virtual time, ms


def _alarms(ctl):
    seen = []
    ctl.listener = lambda kind, code, v: seen.append(code) if kind == "alarm" else None
    return seen


def _patient_pump(tag):
    """A patient's blinatumomab bag (24 h, 10 mL/h; library: 4 h premedication threshold,
    4 h hang tolerance, 12 h lockout) running for a minute."""
    hal = FakeHal(tmpdir(tag))
    ctl = Controller(hal)
    ctl.boot()
    assert ctl.request("program", CLINICIAN, clinical(1, patient=ctl.patient())) is None
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 60000)
    return hal, ctl


def _rebooted(hal):
    """The pump after a power loss: a new controller booted from the same journal."""
    ctl = Controller(hal)
    ctl.boot()
    return ctl


def _program(ctl, pid):
    """The clinician programs the same patient's next bag."""
    return ctl.request("program", CLINICIAN, clinical(pid, patient=ctl.patient()))


def _interrupt(ctl, hal, ms):
    """Pause, and leave the pump paused for `ms` (the rtc runs on)."""
    assert ctl.request("pause", PATIENT) is None
    hal.t += ms


def test_sr6_over_infusion_lockout_lasts_the_drugs_lockout_time():
    hal, ctl = _patient_pump("e-lock")
    ctl.raise_alarm(codes.OVER_INFUSION)
    assert ctl.state == codes.LOCKOUT
    assert ctl.snapshot()["lockout_remaining_s"] == 12 * 3600
    assert _program(ctl, 2) == codes.LOCKOUT_ACTIVE
    hal.t += 12 * _H - 1000
    assert ctl.snapshot()["lockout_remaining_s"] == 1
    assert _program(ctl, 3) == codes.LOCKOUT_ACTIVE
    hal.t += 1000
    assert _program(ctl, 4) is None


def test_sr7_bag_runs_until_its_hang_time_plus_tolerance_then_expires():
    hal, ctl = _patient_pump("e-bag")
    # 21 h after the bag first ran (24 h bag, 4 h tolerance): still within its hang time
    _interrupt(ctl, hal, 21 * _H)
    assert ctl.request("resume", CLINICIAN) == codes.PREMEDICATION_REQUIRED
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("resume", CLINICIAN) is None
    assert ctl.state == codes.RUNNING
    # past 28 h: the bag has expired, whatever else was confirmed
    _interrupt(ctl, hal, 7 * _H + 120000)
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("resume", CLINICIAN) == codes.BAG_EXPIRED
    assert ctl.state == codes.PAUSED


def test_sr7_premedication_is_needed_and_marked_from_the_threshold_on():
    # 1 s short of the library's 4 h: neither asked nor marked; at 4 h: both
    for ms, needed in ((4 * _H - 1000, False), (4 * _H, True)):
        hal, ctl = _patient_pump("e-thr-%d" % ms)
        _interrupt(ctl, hal, ms)
        if needed:
            assert ctl.request("resume", PATIENT) == codes.PREMEDICATION_REQUIRED
            assert ctl.premedicated(CLINICIAN) is None
        assert ctl.request("resume", PATIENT) is None
        assert bool(ctl.flags & FLAG_PREMED) == needed
        # the journal says the same after power loss
        assert bool(_rebooted(hal).flags & FLAG_PREMED) == needed


def test_sr7_a_premedication_confirmation_covers_one_restart_only():
    hal, ctl = _patient_pump("e-once")
    # a confirmation given 3 h into a pause, then a restart (no premedication was needed)
    _interrupt(ctl, hal, 3 * _H)
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("resume", PATIENT) is None
    run_for(ctl, hal, 60000)
    # a second, long interruption: the earlier confirmation does not cover it
    _interrupt(ctl, hal, 4 * _H + 60000)
    assert not ctl.snapshot()["premedicated"]
    assert ctl.request("resume", PATIENT) == codes.PREMEDICATION_REQUIRED
    assert ctl.state == codes.PAUSED


def test_sr7_status_reports_no_premedication_until_a_clinician_confirms_it():
    hal, ctl = _patient_pump("e-stat")
    _interrupt(ctl, hal, 10 * 60000)
    assert ctl.snapshot()["premedicated"] is False
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.snapshot()["premedicated"] is True


def test_sr7_open_interruption_is_reported_and_checked_in_seconds():
    hal, ctl = _patient_pump("e-gap")
    assert ctl.snapshot()["interrupted_s"] == 0 and ctl.patient()[3] == 0
    _interrupt(ctl, hal, 10 * 60000)
    assert ctl.snapshot()["interrupted_s"] == 600
    assert ctl.patient()[3] == 600


def test_sr9_patients_plan_survives_power_loss():
    hal, ctl = _patient_pump("e-plan")
    weight, plan = ctl.weight_g, ctl.plan
    assert weight == 70000 and plan != 0
    ctl2 = _rebooted(hal)
    assert ctl2.patient()[:2] == (weight, plan)


def test_sr14_pause_reminder_sounds_once_per_pause():
    hal, ctl = _patient_pump("e-remind")
    alarms = _alarms(ctl)
    assert ctl.request("pause", PATIENT) is None
    run_for(ctl, hal, 3 * _H)
    assert alarms == [codes.PAUSE_TIMEOUT] and ctl.state == codes.PAUSED


def test_sr9_unreadable_journal_locks_out_for_the_full_lockout_time():
    hal = FakeHal(tmpdir("e-garbage"))
    hal.storage = MemStore({"journal.bin": bytes(range(256)) * 3})
    ctl = Controller(hal, jn.Journal(hal.storage, "journal.bin", 12))
    ctl.boot()
    assert ctl.state == codes.LOCKOUT and ctl.alarm == codes.STORAGE_FAULT
    assert ctl.snapshot()["lockout_remaining_s"] == 12 * 3600
    hal.t += 12 * _H - 1000
    assert ctl.request("override", CLINICIAN) == codes.LOCKOUT_ACTIVE
    hal.t += 1000
    assert ctl.request("override", CLINICIAN) is None and ctl.state == codes.IDLE


def test_sr14_pause_reminder_on_time_across_the_tick_wrap():
    hal, ctl = pump("e-wrap", start_ticks=(1 << 30) - 300000)
    rt = Runtime(hal, ctl)                     # its wakes, as the main loop serves them
    alarms = _alarms(ctl)
    run_for(ctl, hal, 60000)
    assert ctl.request("pause", PATIENT) is None
    run_for(ctl, hal, 900000 - 1)
    rt.service(hal.ticks_ms())                 # 1 ms before: not yet
    assert alarms == []
    hal.t += 1                                 # 15 min to the ms: the reminder sounds
    rt.service(hal.ticks_ms())
    assert alarms == [codes.PAUSE_TIMEOUT]
    run_for(ctl, hal, 2 * _H)
    assert alarms == [codes.PAUSE_TIMEOUT] and ctl.state == codes.PAUSED


def test_sr7_premedication_confirmation_expires_two_hours_after_it_rounded_down():
    hal, ctl = _patient_pump("e-valid")
    _interrupt(ctl, hal, 5 * _H + 30000)      # confirmed 5 h 30 s into the interruption
    assert ctl.premedicated(CLINICIAN) is None
    # counted from the whole minute before it (never fresher than it was): valid 2 h less 30 s
    hal.t += 7200000 - 30000 - 1000
    assert ctl.snapshot()["premedicated"] is True
    hal.t += 1000
    assert ctl.snapshot()["premedicated"] is False
    assert ctl.request("resume", PATIENT) == codes.PREMEDICATION_REQUIRED
    assert ctl.premedicated(CLINICIAN) is None              # asked again: a fresh one
    assert ctl.request("resume", PATIENT) is None


def test_sr7_bag_expiry_to_the_second():
    hal, ctl = _patient_pump("e-bag-s")
    expires_s = ctl.bag_start_s + 24 * 3600 + 4 * 3600      # bag hours + hang tolerance
    _interrupt(ctl, hal, 0)
    hal.t = (expires_s - hal.rtc0) * 1000                   # the last second it may run
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("resume", PATIENT) is None
    assert ctl.request("pause", PATIENT) is None
    hal.t += 1000
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("resume", PATIENT) == codes.BAG_EXPIRED


def test_sr9_power_loss_while_running_counts_as_an_interruption():
    hal, ctl = _patient_pump("e-cut")
    run_for(ctl, hal, 600000)
    hal.t += 5 * _H                                         # the pump lay dead for 5 h
    ctl2 = Controller(hal)
    assert ctl2.boot() == codes.PAUSED
    assert ctl2.snapshot()["interrupted_s"] >= 5 * 3600
    assert ctl2.request("resume", PATIENT) == codes.PREMEDICATION_REQUIRED
    assert ctl2.state == codes.PAUSED


def test_sr11_status_reports_the_highest_authentication_counter():
    hal, ctl = _patient_pump("e-auth")
    assert ctl.accept_auth_counter(5, "c") and ctl.accept_auth_counter(7, "s")
    assert ctl.snapshot()["auth_counter"] == 7
    assert ctl.accept_auth_counter(9, "c")
    assert ctl.snapshot()["auth_counter"] == 9
    assert ctl.snapshot()["auth_counters"] == {"c": 9, "s": 7}


def test_sr6_overdose_report_refuses_a_bad_reason_and_changes_nothing():
    hal, ctl = _patient_pump("e-od-bad")
    for bad in (None, 1, "", "typo", "WRONG_BAG"):
        assert ctl.overdose(CLINICIAN, bad) == codes.BAD_INPUT, bad
        assert ctl.state == codes.RUNNING and ctl.snapshot()["lockout_remaining_s"] == 0
    assert ctl.overdose(PATIENT, "wrong_bag") == codes.NOT_AUTHORISED
    assert ctl.state == codes.RUNNING


def test_sr6_overdose_report_during_a_lockout_extends_it():
    hal, ctl = _patient_pump("e-od-ext")
    assert ctl.overdose(CLINICIAN, "wrong_bag") is None
    assert ctl.state == codes.LOCKOUT and not hal.motor.enabled()
    assert ctl.snapshot()["lockout_remaining_s"] == 12 * 3600
    hal.t += 3 * _H
    assert ctl.overdose(CLINICIAN, "preparation_error") is None
    assert ctl.state == codes.LOCKOUT
    assert ctl.snapshot()["lockout_remaining_s"] == 12 * 3600


def test_sr10_alarms_sound_again_and_stop_sounding_when_cleared():
    hal, ctl = _patient_pump("e-buzz")
    rt = Runtime(hal, ctl)                     # its wakes, as the main loop serves them
    hal.door = False
    ctl.signal(EV_DOOR)
    rt.service(hal.ticks_ms())
    assert ctl.state == codes.ALARM and hal.buzzing
    assert ctl.silence(PATIENT) is None and not hal.buzzing and ctl.snapshot()["silenced"]
    hal.door = True
    assert ctl.request("resume", CLINICIAN) is None
    assert ctl.state == codes.RUNNING and not hal.buzzing
    # a new alarm sounds although the last one was silenced
    hal.door = False
    ctl.signal(EV_DOOR)
    rt.service(hal.ticks_ms())
    assert hal.buzzing and not ctl.snapshot()["silenced"]
    hal.door = True
    assert ctl.request("stop", CLINICIAN) is None
    assert ctl.state == codes.PROGRAMMED and not hal.buzzing and ctl.alarm is None
    # an over-infusion lockout sounds too, silenced or not before
    assert ctl.request("start", CLINICIAN) is None
    ctl.raise_alarm(codes.OVER_INFUSION)
    assert hal.buzzing and not ctl.snapshot()["silenced"]


def test_sr13_cleared_pump_reports_nothing_to_deliver():
    hal, ctl = _patient_pump("e-clear")
    assert ctl.request("pause", PATIENT) is None
    assert ctl.request("stop", CLINICIAN) is None and ctl.state == codes.PROGRAMMED
    assert ctl.request("clear", CLINICIAN) is None and ctl.state == codes.IDLE
    s = ctl.snapshot()
    assert (s["rate_ul_per_h"], s["vtbi_nl"], s["reserved_nl"], s["program_id"]) == \
        (0, 0, 0, None)
    # entering service mode clears the patient: nothing of them reaches a bench program
    assert ctl.request("service", SERVICE_ROLE) is None
    s = ctl.snapshot()
    assert (s["rate_ul_per_h"], s["vtbi_nl"], s["reserved_nl"], s["interrupted_s"]) == \
        (0, 0, 0, 0)
    assert ctl.patient() == (0, 0, 0, 0)


def test_sr10_door_opened_while_paused_raises_door_open():
    hal, ctl = _patient_pump("e-door-p")
    rt = Runtime(hal, ctl)                     # its wakes, as the main loop serves them
    assert ctl.request("pause", PATIENT) is None
    hal.door = False
    ctl.signal(EV_DOOR)
    rt.service(hal.ticks_ms())
    assert ctl.state == codes.ALARM and ctl.alarm == codes.DOOR_OPEN and hal.buzzing


def test_sr10_low_battery_warns_at_the_comparator_level_and_sounds():
    hal, ctl = _patient_pump("e-batt")
    rt = Runtime(hal, ctl)                     # its wakes, as the main loop serves them
    alarms = _alarms(ctl)
    assert ctl.snapshot()["silenced"] is False
    hal.battery = LOW_BATTERY_MV + 1
    ctl.signal(EV_BATTERY)
    rt.service(hal.ticks_ms())
    assert alarms == []
    hal.battery = LOW_BATTERY_MV
    ctl.signal(EV_BATTERY)
    rt.service(hal.ticks_ms())
    assert alarms == [codes.LOW_BATTERY] and ctl.notice == codes.LOW_BATTERY
    assert hal.buzzing and ctl.snapshot()["silenced"] is False
    assert ctl.silence(PATIENT) is None
    assert not hal.buzzing and ctl.snapshot()["silenced"] is True
    assert ctl.state == codes.RUNNING


def test_sr5_rotation_wake_reports_when_the_full_step_must_run():
    hal, ctl = pump("e-rot", rate=100000)
    rt = Runtime(hal, ctl)                     # its wakes, as the main loop serves them
    hal.cam_speed(0, 1)              # the camshaft follows spin() alone
    ctl.monitor.n_check = 1
    run_for(ctl, hal, 1000)
    d = ctl.delivery
    assert d.running and hal.ticks_diff(d.seg_end, hal.ticks_ms()) > 0
    # a rotation edge mid-segment, nothing else pending: the light path handles it
    hal.spin(50)
    hal.rotation.armed = -1
    ctl.signal(EV_ROTATION)
    now = hal.ticks_ms()
    wake = ctl.on_rotation(now)
    assert wake != -1 and not ctl.pending() and ctl.state == codes.RUNNING
    assert wake == (d.seg_end if hal.ticks_diff(d.seg_end, now) < 60000
                    else hal.ticks_add(now, 60000))
    # another interrupt pending with it: the full step must run
    ctl.signal(EV_ROTATION | EV_BATTERY)
    assert ctl.on_rotation(now) == -1 and ctl.pending()
    rt.service(now)
    # the door open: the full step must run (it raises DOOR_OPEN)
    hal.door = False
    hal.flags = 0
    ctl.signal(EV_ROTATION)
    assert ctl.on_rotation(now) == -1 and ctl.pending()
    hal.door = True
    # the segment due: the full step must run
    rt.service(now)
    seg_end = d.seg_end
    ctl.signal(EV_ROTATION)
    assert ctl.on_rotation(seg_end) == -1 and ctl.pending()
    rt.service(now)
    # paused: the full step must run
    assert ctl.request("pause", PATIENT) is None
    ctl.signal(EV_ROTATION)
    assert ctl.on_rotation(hal.ticks_ms()) == -1 and ctl.pending()



def test_sr7_reprogramming_the_same_bag_keeps_its_hang_clock():
    hal, ctl = _patient_pump("e-same-bag")
    _interrupt(ctl, hal, 21 * _H)
    assert ctl.request("stop", CLINICIAN) is None
    assert _program(ctl, 2) is None                   # the same bag's label, a new program
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("start", CLINICIAN) is None
    assert ctl.request("pause", PATIENT) is None
    hal.t += 8 * _H                                   # 29 h after the bag first ran
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("resume", CLINICIAN) == codes.BAG_EXPIRED
    assert ctl.request("stop", CLINICIAN) is None
    assert _program(ctl, 3) is None
    assert ctl.request("start", CLINICIAN) == codes.BAG_EXPIRED
