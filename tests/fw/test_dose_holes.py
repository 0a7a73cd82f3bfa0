"""Issue 11 on the pump: the treatment plan it keeps, the patient measures it cross-checks,
and the interruption rules it enforces (SR-2, SR-6, SR-7), through the one command door as
a clinician would program. Runs on CPython and MicroPython."""
from fakehal import FakeHal, run_for, tmpdir

from pump import auth, codes, program
from pump.codes import CLINICIAN, PATIENT
from pump.commands import Commands
from pump.controller import Controller

_H = 3600000
_DAY_S = 86400


def _door(tag):
    hal = FakeHal(tmpdir(tag))
    ctl = Controller(hal)
    ctl.boot()
    return hal, ctl, Commands(ctl, auth.Keys(None))


def _bag(dose=9000, day=1, cycle=1, hours=24, weight_g=70000, height_mm=1750, **extra):
    """A pharmacy label for a patient's bag, made for its plan position, and its entry."""
    rx = {"drug": "blinatumomab", "weight_g": weight_g, "height_mm": height_mm,
          "dose_ng_per_day": dose, "bag_hours": hours, "regimen": "r/r", "cycle": cycle,
          "day_from": day}
    for k in extra:
        rx[k] = extra[k]
    label = program.make_label(rx, 270000 if hours < 168 else 110000)
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


def _ran(ctl, hal, days):
    """As if the plan's cycle had run `days` of infusion (its journalled running time)."""
    ctl.cycle_run_s = days * _DAY_S
    ctl.request("stop", CLINICIAN)
    ctl.request("clear", CLINICIAN)


# --- item 2: the plan on the pump ------------------------------------------------------------

def test_sr2_the_step_due_today_is_the_pumps_not_the_labels():
    hal, ctl, door = _door("plan")
    assert _program(door, _bag(9000, day=1), 1) is None          # a new patient: the plan
    s = door.execute("STATUS", {}, PATIENT, 0)["plan"]
    assert (s["regimen"], s["cycle"], s["day"], s["dose_ng_per_day"]) == ("r/r", 1, 1, 9000)
    _ran(ctl, hal, 2)
    # day 3: a correctly labelled day-8 step-up bag, and a 28 ug/day bag made for day 3
    assert _program(door, _bag(28000, day=8), 2) == codes.DOSE_STEP_MISMATCH
    assert program.make_label(dict(_bag(28000, day=8)["label"], day_from=3), 270000) == \
        codes.DOSE_STEP_MISMATCH                                  # the pharmacy refuses it too
    assert _program(door, _bag(9000, day=3), 3) is None
    # the step-up comes only after the library's 7 days on the first step
    _ran(ctl, hal, 7)
    assert _program(door, _bag(9000, day=7), 4) == codes.DOSE_STEP_MISMATCH
    assert _program(door, _bag(28000, day=8), 5) is None
    assert door.execute("STATUS", {}, PATIENT, 0)["plan"]["day"] == 8
    # day 10: a 9 ug/day bag made for day 1 is refused; a lower step needs the override
    _ran(ctl, hal, 9)
    assert _program(door, _bag(9000, day=1), 6) == codes.DOSE_STEP_MISMATCH
    assert _program(door, _bag(28000, day=10, cycle=2), 7) == codes.DOSE_STEP_MISMATCH


def test_sr2_a_label_without_its_plan_position_is_refused_on_the_pump():
    hal, ctl, door = _door("noplan")
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": 28000, "bag_hours": 24}
    label = program.make_label(rx, 270000)
    args = {"label": label, "entry": {"rate": "10", "unit": "mL/h", "vtbi_ml": "240"}}
    assert _program(door, args, 1) == codes.PLAN_REQUIRED
    # the plan position is under the check code: a cycle altered on the label is caught
    lab = _bag(28000, day=1, cycle=2)
    lab["label"]["cycle"] = 3
    assert _program(door, lab, 2) == codes.LABEL_CHECK_MISMATCH


def test_sr7_infusion_days_count_running_time_only_and_survive_power_loss():
    hal, ctl, door = _door("days")
    assert _program(door, _bag(9000, day=1), 1) is None
    assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
    run_for(ctl, hal, 2 * _H)
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    run_for(ctl, hal, 3 * _H)                                   # paused: not counted
    assert abs(ctl.cycle_s() - 7200) <= 1
    ctl2 = Controller(hal)                                      # power loss
    assert ctl2.boot() == codes.PAUSED
    assert abs(ctl2.cycle_s() - 7200) <= 40                     # the last checkpoint's count
    assert ctl2.plan == ctl.plan and ctl2.weight_g == 70000


def test_sr7_beyond_seven_days_off_the_cycle_restarts_at_its_first_step():
    hal, ctl, door = _door("restart")
    assert _program(door, _bag(9000, day=1), 1) is None
    _ran(ctl, hal, 9)
    ctl.interrupted_at_s = hal.rtc_s()
    hal.t += (7 * _DAY_S + 3600) * 1000                         # 7 days and 1 h off
    assert _program(door, _bag(28000, day=10), 2) == codes.DOSE_STEP_MISMATCH
    assert _program(door, _bag(9000, day=1), 3) is None
    assert door.execute("STATUS", {}, PATIENT, 0)["plan"]["day"] == 1


# --- item 3: patient measures ------------------------------------------------------------------

def test_sr2_weight_slip_and_adult_bsa_on_an_infant_are_refused():
    hal, ctl, door = _door("measures")
    rx = {"drug": "blinatumomab", "weight_g": 45000, "height_mm": 550,
          "dose_ng_per_day": 9000, "bag_hours": 24, "regimen": "r/r", "cycle": 1,
          "day_from": 1}
    assert program.prescribe(rx) == codes.MEASURES_IMPLAUSIBLE    # 4.5 kg keyed as 45 kg
    infant = {"drug": "blinatumomab", "weight_g": 4000, "height_mm": 550, "bsa_cm2": 18000,
              "dose_ng_per_m2_per_day": 5000, "bag_hours": 24}
    assert program.prescribe(infant) == codes.BSA_MISMATCH        # 1.8 m2 on a 4 kg infant
    del infant["height_mm"]
    assert program.prescribe(infant) == codes.HEIGHT_REQUIRED
    # a weight 14 % off the same patient's previous bag: a clinician confirms it
    assert _program(door, _bag(28000, day=1, cycle=2), 1) is None
    heavier = _bag(28000, day=1, cycle=2, weight_g=80000)
    assert _program(door, heavier, 2) == codes.OVERRIDE_REQUIRED
    heavier["entry"]["weight_confirmed"] = True
    assert _program(door, heavier, 3) is None
    assert ctl.program.flags & 16 and ctl.weight_g == 80000      # FLAG_OVERRIDE: logged


# --- item 4: the lockout ------------------------------------------------------------------------

def test_sr6_a_clinicians_overdose_report_locks_out_and_nobody_ends_it_early():
    hal, ctl, door = _door("overdose")
    assert _program(door, _bag(28000, day=1, cycle=2), 1) is None
    assert door.execute("OVERDOSE", {"reason": "wrong"}, CLINICIAN, 2) == codes.BAD_INPUT
    assert door.execute("OVERDOSE", {"reason": "wrong_bag"}, PATIENT, 2) == \
        codes.NOT_AUTHORISED
    assert door.execute("OVERDOSE", {"reason": "wrong_bag"}, CLINICIAN, 2) == \
        {"state": codes.LOCKOUT}
    j = ctl.journal
    events = []
    for raw in j.read_records(0, j.seq):
        r = j.parse(raw)
        if r is not None and r[0] == 3:                            # EVENT records
            events.append((r[3][5], r[3][6]))
    reason = codes.index_of(codes.OVERDOSE_REASONS, "wrong_bag")
    assert (codes.EV_OVERDOSE, reason) in events                  # journalled, with the reason
    s = door.execute("STATUS", {}, PATIENT, 0)
    assert s["lockout_remaining_s"] == 12 * 3600
    assert door.execute("OVERRIDE", {}, CLINICIAN, 3) == codes.LOCKOUT_ACTIVE
    hal.t += 12 * _H - 1000
    assert door.execute("OVERRIDE", {}, CLINICIAN, 4) == codes.LOCKOUT_ACTIVE
    hal.t += 1000
    assert door.execute("OVERRIDE", {}, CLINICIAN, 5) == {"state": codes.IDLE}


# --- item 5: interruptions ---------------------------------------------------------------------

def test_sr7_premedication_before_a_restart_after_four_hours():
    hal, ctl, door = _door("premed")
    assert _program(door, _bag(28000, day=1, cycle=2), 1) is None
    assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
    run_for(ctl, hal, _H)
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    run_for(ctl, hal, 4 * _H - 2000)
    assert door.execute("RESUME", {}, PATIENT, 0) == {"state": codes.RUNNING}  # under 4 h
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    run_for(ctl, hal, 4 * _H)
    assert door.execute("RESUME", {}, PATIENT, 0) == codes.PREMEDICATION_REQUIRED
    assert door.execute("PREMEDICATED", {}, PATIENT, 0) == codes.NOT_AUTHORISED
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 3) == {"state": codes.PAUSED}
    assert door.execute("RESUME", {}, PATIENT, 0) == {"state": codes.RUNNING}
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 4) == codes.INVALID_STATE  # none open


def test_sr7_a_bag_is_not_run_past_its_hang_time():
    hal, ctl, door = _door("expired")
    assert _program(door, _bag(28000, day=1, cycle=2), 1) is None
    assert door.execute("START", {}, CLINICIAN, 2) == {"state": codes.RUNNING}
    run_for(ctl, hal, _H)
    assert door.execute("PAUSE", {}, PATIENT, 0) == {"state": codes.PAUSED}
    hal.t += (24 + 4) * _H                                      # past 24 h + the 4 h tolerance
    assert door.execute("PREMEDICATED", {}, CLINICIAN, 3) == {"state": codes.PAUSED}
    assert door.execute("RESUME", {}, PATIENT, 0) == codes.BAG_EXPIRED
    assert ctl.state == codes.PAUSED
