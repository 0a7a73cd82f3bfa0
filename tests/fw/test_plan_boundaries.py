"""Issue 11/15: the treatment plan's boundaries as the pump judges a bag against them (SR-2,
SR-7): the day a step changes, a bag that would run past its step's last day, the 1 h day
slack, the treatment-free interval and the longest interruption that continues a cycle, a
weight change exactly at the library's bound. Each test is a bag a clinician hands the pump
and what the pump answers. Runs on CPython and MicroPython."""
from pump import codes, druglib, program

BLIN = "blinatumomab"
_DAY = 86400
_SLACK = 3600                       # the library's plan day slack (1 h)
_WORD1 = program.plan_word(1, 2, 1)  # blinatumomab, r/r (2nd of its sorted regimens), cycle 1
_WORD2 = program.plan_word(1, 2, 2)


def _label(dose=9000, day=1, cycle=1, hours=24, weight=70000, regimen="r/r", **extra):
    rx = {"drug": BLIN, "weight_g": weight, "height_mm": 1750, "dose_ng_per_day": dose,
          "bag_hours": hours, "regimen": regimen, "cycle": cycle, "day_from": day}
    rx.update(extra)
    p = program.prescribe(rx)
    if isinstance(p, str):
        return p
    return program.make_label(rx, p["infusible_ul"])


def _entry(label, **extra):
    rate = label["rate_ul_per_h"]
    vtbi = label["infusible_ul"]
    e = {"rate": "%d.%03d" % (rate // 1000, rate % 1000), "unit": "mL/h",
         "vtbi_ml": "%d.%03d" % (vtbi // 1000, vtbi % 1000)}
    e.update(extra)
    return e


def _offer(patient, dose=9000, day=1, cycle=1, hours=24, weight=70000, entry=None, **extra):
    """The pump's answer to a bag: a code, or the plan position it would record (weight,
    plan word, cycle running time s)."""
    label = _label(dose, day, cycle, hours, weight, **extra)
    assert isinstance(label, dict), label
    got = program.propose(label, _entry(label, **(entry or {})), 1, None, patient)
    return got if isinstance(got, str) else got.patient


# --- the label's plan position (pharmacy) ---------------------------------------------------

def test_sr7_label_days_cover_the_bag_and_stop_at_the_step_end():
    """day_to on the label: the days the bag runs, never past its step's (or cycle's) end."""
    assert _label(9000, 1, hours=24)["day_to"] == 1
    assert _label(9000, 1, hours=48)["day_to"] == 2
    assert _label(9000, 5, hours=72)["day_to"] == 7
    assert _label(9000, 1, hours=168)["day_to"] == 7
    assert _label(28000, 8, hours=96)["day_to"] == 11
    assert _label(28000, 27, cycle=2, hours=48)["day_to"] == 28
    assert _label(28000, 26, cycle=2, hours=48)["day_to"] == 27
    assert _label(28000, 28, cycle=2, hours=168)["day_to"] == 28


def test_sr2_label_dose_must_be_the_step_due_on_its_first_day():
    assert _label(9000, 7)["day_to"] == 7
    assert _label(28000, 7) == codes.DOSE_STEP_MISMATCH        # the step-up is on day 8
    assert _label(28000, 8)["day_to"] == 8
    assert _label(9000, 8) == codes.DOSE_STEP_MISMATCH          # an underdose without override
    assert _label(9000, 8, override=1)["day_to"] == 8        # restart after toxicity
    assert _label(28000, 29, cycle=2) == codes.DOSE_STEP_MISMATCH   # past the cycle
    assert _label(28000, 0, cycle=2) == codes.BAD_INPUT


# --- a new patient: the label's position starts the plan ------------------------------------

def test_sr2_a_multi_day_bag_never_crosses_the_day_8_step_up():
    new = (0, 0, 0, 0)
    assert _offer(new, 9000, 6, hours=48) == (70000, _WORD1, 5 * _DAY)
    assert _offer(new, 9000, 7, hours=48) == codes.DOSE_STEP_MISMATCH
    assert _offer(new, 9000, 5, hours=72) == (70000, _WORD1, 4 * _DAY)
    assert _offer(new, 9000, 6, hours=72) == codes.DOSE_STEP_MISMATCH
    assert _offer(new, 9000, 7, hours=24) == (70000, _WORD1, 6 * _DAY)
    assert _offer(new, 9000, 1, hours=168) == (70000, _WORD1, 0)
    assert _offer(new, 9000, 2, hours=168) == codes.DOSE_STEP_MISMATCH
    assert _offer(new, 28000, 8, hours=168) == (70000, _WORD1, 7 * _DAY)


def test_sr2_a_bag_never_runs_past_the_cycle_end():
    new = (0, 0, 0, 0)
    assert _offer(new, 28000, 27, cycle=2, hours=48) == (70000, _WORD2, 26 * _DAY)
    assert _offer(new, 28000, 28, cycle=2, hours=24) == (70000, _WORD2, 27 * _DAY)
    assert _offer(new, 28000, 28, cycle=2, hours=48) == codes.DOSE_STEP_MISMATCH
    assert _offer(new, 28000, 22, cycle=2, hours=168) == (70000, _WORD2, 21 * _DAY)
    assert _offer(new, 28000, 23, cycle=2, hours=168) == codes.DOSE_STEP_MISMATCH


# --- a running plan: the pump's own count of days rules -------------------------------------

def test_sr7_day_8_starts_one_hour_early_not_earlier():
    """The 1 h slack: 7 days less 1 h of running is day 8 (the 28 ug bag), 1 s less is
    still day 7 (the 9 ug bag)."""
    at = (70000, _WORD1, 7 * _DAY - _SLACK, 0)
    assert _offer(at, 28000, 8, hours=24) == (70000, _WORD1, 7 * _DAY - _SLACK)
    assert _offer(at, 9000, 7, hours=24) == codes.DOSE_STEP_MISMATCH
    before = (70000, _WORD1, 7 * _DAY - _SLACK - 1, 0)
    assert _offer(before, 9000, 7, hours=24) == (70000, _WORD1, 7 * _DAY - _SLACK - 1)
    assert _offer(before, 28000, 8, hours=24) == codes.DOSE_STEP_MISMATCH
    # a label for days 6-7 taken on day 7 (its position moves to today)
    assert _offer(before, 9000, 6, hours=48) == codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD1, 5 * _DAY, 0), 9000, 6, hours=48) == \
        (70000, _WORD1, 5 * _DAY)


def test_sr7_a_label_must_cover_today():
    at = (70000, _WORD1, 4 * _DAY, 0)                   # day 5
    assert _offer(at, 9000, 5, hours=24)[2] == 4 * _DAY
    assert _offer(at, 9000, 4, hours=48)[2] == 4 * _DAY  # days 4-5: taken for day 5
    assert _offer(at, 9000, 4, hours=24) == codes.DOSE_STEP_MISMATCH
    assert _offer(at, 9000, 6, hours=24) == codes.DOSE_STEP_MISMATCH
    # a 72 h label for days 4-6 taken on day 5 would run into day 7 only: accepted
    assert _offer(at, 9000, 4, hours=72)[2] == 4 * _DAY
    # days 5-7 taken on day 6 would run into day 8: refused
    assert _offer((70000, _WORD1, 5 * _DAY, 0), 9000, 5, hours=72) == codes.DOSE_STEP_MISMATCH


def test_sr7_cycle_ends_one_hour_early_and_14_days_off_to_the_hour():
    """28 days less 1 h of running end the cycle; the next cycle's bag is taken after the
    14-day treatment-free interval less 1 h, not a second sooner."""
    done = 28 * _DAY - _SLACK
    assert _offer((70000, _WORD1, done, 14 * _DAY - _SLACK), 28000, 1, cycle=2) == \
        (70000, _WORD2, 0)
    assert _offer((70000, _WORD1, done, 14 * _DAY - _SLACK - 1), 28000, 1, cycle=2) == \
        codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD1, done, 0), 28000, 1, cycle=2) == codes.DOSE_STEP_MISMATCH
    # 1 s short of the end: still cycle 1, day 28 (its interruption just continues it)
    short = 28 * _DAY - _SLACK - 1
    assert _offer((70000, _WORD1, short, 14 * _DAY), 28000, 1, cycle=2) == \
        codes.DOSE_STEP_MISMATCH
    # after 14 days off cycle 1 restarts instead (an interruption over 7 days)
    assert _offer((70000, _WORD1, short, 14 * _DAY), 9000, 1) == (70000, _WORD1, 0)
    assert _offer((70000, _WORD1, short, 3600), 28000, 28) == (70000, _WORD1, short)


def test_sr7_continued_cycles_have_56_days_off():
    w5 = program.plan_word(1, 2, 5)
    w6 = program.plan_word(1, 2, 6)
    assert _offer((70000, w5, 28 * _DAY, 14 * _DAY), 28000, 1, cycle=6) == (70000, w6, 0)
    w7 = program.plan_word(1, 2, 7)
    assert _offer((70000, w6, 28 * _DAY, 56 * _DAY - _SLACK), 28000, 1, cycle=7) == \
        (70000, w7, 0)
    assert _offer((70000, w6, 28 * _DAY, 56 * _DAY - _SLACK - 1), 28000, 1, cycle=7) == \
        codes.DOSE_STEP_MISMATCH
    w9 = program.plan_word(1, 2, 9)
    assert _offer((70000, w9, 28 * _DAY, 60 * _DAY), 28000, 1, cycle=9) == \
        codes.DOSE_STEP_MISMATCH                          # cycle 9 is over: not again


def test_sr7_an_interruption_of_exactly_7_days_continues_the_cycle():
    run = 10 * _DAY
    assert _offer((70000, _WORD1, run, 7 * _DAY), 28000, 11) == (70000, _WORD1, run)
    assert _offer((70000, _WORD1, run, 7 * _DAY + 1), 28000, 11) == codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD1, run, 7 * _DAY + 1), 9000, 1) == (70000, _WORD1, 0)


def test_sr2_another_drug_regimen_or_cycle_is_refused():
    run = 10 * _DAY
    other_reg = program.plan_word(1, 1, 1)
    assert _offer((70000, other_reg, run, 0), 28000, 11) == codes.DOSE_STEP_MISMATCH
    assert _offer((70000, program.plan_word(2, 2, 1), run, 0), 28000, 11) == \
        codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD2, run, 0), 28000, 11) == codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD1, run, 0), 28000, 11, cycle=2) == codes.DOSE_STEP_MISMATCH


# --- weight change on the same patient ------------------------------------------------------

def test_sr2_weight_change_exactly_at_the_bound_needs_no_confirmation():
    """The library's bound is 10 %: 70 kg -> 77 kg or 63 kg is taken, a gram more needs the
    clinician's confirmation (and is then flagged an override)."""
    for w in (77000, 63000):
        assert _offer((70000, 0, 0, 0), weight=w)[0] == w
    for w in (77001, 62999):
        assert _offer((70000, 0, 0, 0), weight=w) == codes.OVERRIDE_REQUIRED
        assert _offer((70000, 0, 0, 0), weight=w, entry={"weight_confirmed": True})[0] == w
    assert _offer((0, 0, 0, 0), weight=100000)[0] == 100000   # no weight known: nothing to check


def test_sr2_a_lower_step_label_without_override_is_refused_even_with_a_good_check():
    """A mis-made label (9 ug/day on day 8, no override) whose check code was computed for
    it: the pump still refuses it; with the clinician's override it is the restart dose."""
    rx = {"drug": BLIN, "weight_g": 70000, "height_mm": 1750, "dose_ng_per_day": 9000,
          "bag_hours": 24, "regimen": "r/r", "cycle": 1, "day_from": 8, "day_to": 8}
    p = program.prescribe(rx)
    for k in ("rate_ul_per_h", "conc_pg_per_ml", "infusible_ul", "label_version"):
        rx[k] = p[k]
    rx["bag_volume_ul"] = p["infusible_ul"]
    rx["check"] = program.label_code(program.label_values(rx))
    got = program.propose(rx, _entry(rx), 1, None, (70000, _WORD1, 7 * _DAY, 0))
    assert got == codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD1, 7 * _DAY, 0), 9000, 8, override=1) == \
        (70000, _WORD1, 7 * _DAY)


def test_sr2_body_mass_index_bounds_are_inclusive():
    """The library's plausible BMI is 5-80 kg/m2: at 1 m, 5 kg and 80 kg are taken, a gram
    outside is a slip (MEASURES_IMPLAUSIBLE)."""
    def rx(w):
        d = {"drug": BLIN, "weight_g": w, "height_mm": 1000, "bag_hours": 24}
        d["dose_ng_per_m2_per_day" if w < 45000 else "dose_ng_per_day"] = \
            5000 if w < 45000 else 9000
        return program.prescribe(d)
    assert rx(5000)["weight_g"] == 5000 and rx(5000)["height_mm"] == 1000
    assert rx(5000)["bsa_cm2"] == program.bsa_cm2(5000, 1000)
    assert rx(80000)["weight_g"] == 80000
    assert rx(4999) == codes.MEASURES_IMPLAUSIBLE
    assert rx(80001) == codes.MEASURES_IMPLAUSIBLE


def test_sr7_status_shows_the_plan_day_step_and_dose():
    """STATUS's plan position: day 8 from 7 days less 1 h of running, its step's dose, per
    m2 under the adult weight."""
    st = program.plan_status(_WORD1, 7 * _DAY - _SLACK, 45000)
    assert (st["regimen"], st["cycle"], st["day"], st["step"]) == ("r/r", 1, 8, 1)
    assert st["dose_ng_per_day"] == 28000 and "dose_ng_per_m2_per_day" not in st
    st = program.plan_status(_WORD1, 7 * _DAY - _SLACK - 1, 44999)
    assert (st["day"], st["step"], st["dose_ng_per_m2_per_day"]) == (7, 0, 5000)
    assert "dose_ng_per_day" not in st
    st = program.plan_status(program.plan_word(1, 1, 1), 0, 70000)
    assert (st["regimen"], st["step"], st["dose_ng_per_day"]) == ("mrd", 1, 28000)
    st = program.plan_status(program.plan_word(1, 0, 1), 0, 70000)
    assert st["regimen"] is None and st["step"] is None
    assert program.plan_status(0, 0, 70000) is None


def _crafted(dose, day, day_to=None, **extra):
    """A label with a correct check code for any plan position (a pharmacy slip the
    pharmacy's own check did not stop): the pump's plan check is all that is left."""
    rx = {"drug": BLIN, "weight_g": 70000, "height_mm": 1750, "dose_ng_per_day": dose,
          "bag_hours": 24, "regimen": "r/r", "cycle": 1, "day_from": day,
          "day_to": day if day_to is None else day_to}
    rx.update(extra)
    p = program.prescribe(rx)
    for k in ("rate_ul_per_h", "conc_pg_per_ml", "infusible_ul", "label_version"):
        rx[k] = p[k]
    rx["bag_volume_ul"] = p["infusible_ul"]
    rx["check"] = program.label_code(program.label_values(rx))
    return rx


def test_sr2_a_step_up_ahead_of_its_day_is_refused_even_with_override():
    """28 ug/day on day 3 is an overdose: no override makes it the step due."""
    for extra in ({}, {"override": 1}):
        assert _label(28000, 3, **extra) == codes.DOSE_STEP_MISMATCH
        rx = _crafted(28000, 3, **extra)
        assert program.propose(rx, _entry(rx), 1, None, (70000, _WORD1, 2 * _DAY, 0)) == \
            codes.DOSE_STEP_MISMATCH
        assert program.propose(rx, _entry(rx), 1, None, (0, 0, 0, 0)) == \
            codes.DOSE_STEP_MISMATCH


def test_sr2_a_mrd_plan_is_its_own_regimen():
    w = program.plan_word(1, 1, 1)
    assert _label(28000, 1, regimen="mrd")["day_to"] == 1
    assert _offer((0, 0, 0, 0), 28000, 1, regimen="mrd") == (70000, w, 0)
    assert _offer((70000, w, 10 * _DAY, 0), 28000, 11, regimen="mrd") == (70000, w, 10 * _DAY)
    assert _offer((70000, w, 10 * _DAY, 0), 28000, 11) == codes.DOSE_STEP_MISMATCH
    assert _offer((70000, _WORD1, 10 * _DAY, 0), 28000, 11, regimen="mrd") == \
        codes.DOSE_STEP_MISMATCH


def test_sr2_a_label_with_a_bad_plan_position_is_bad_input():
    assert _label(9000, 1, regimen="weekly") == codes.BAD_INPUT
    assert _label(9000, 1, cycle="1") == codes.BAD_INPUT
    assert _label(9000, "1") == codes.BAD_INPUT
    assert _label(9000, 1, cycle=0) == codes.DOSE_STEP_MISMATCH
    rx = _crafted(9000, 1)
    assert program.label_values(rx)[-4:] == [2, 1, 1, 1]     # r/r, cycle 1, days 1-1
    for k, v in (("cycle", 0), ("cycle", 367), ("day_to", 0), ("day_from", 367)):
        bad = dict(rx)
        bad[k] = v
        assert program.label_values(bad) is None, (k, v)
    for k, v, want in (("cycle", 366, [2, 366, 1, 1]), ("day_to", 366, [2, 1, 1, 366])):
        ok = dict(rx)
        ok[k] = v
        assert program.label_values(ok)[-4:] == want, (k, v)
    for k in ("regimen", "day_to"):
        bad = dict(rx)
        del bad[k]
        assert program.label_values(bad) is None, k
        assert program.propose(bad, _entry(rx), 1, None, None) == codes.BAD_INPUT


def test_sr9_each_bag_label_is_its_own_bag():
    """The pump knows a re-hung bag by its label: the same label gives the same nonzero bag
    label, another bag's label another."""
    seen = []
    for day in (1, 2, 3, 4, 5, 6, 7):
        label = _label(9000, day)
        a = program.propose(label, _entry(label), 1, None, None).label
        b = program.propose(label, _entry(label), 2, None, None).label
        assert a == b and a != 0
        assert a not in seen
        seen.append(a)


def test_sr2_a_bag_of_a_day_and_an_hour_covers_two_days():
    """A library with a 25 h bag: it covers two plan days, so on day 7 it would run into the
    day-8 step-up (refused) and on day 6 it ends on day 7 (taken)."""
    doc = druglib.read()
    bag = doc["drugs"][0]["bags"][0]
    bag["hours"] = 25
    bag["infused_ul"]["value"] = 250000
    lib = druglib.Library(doc, None)
    rx = {"drug": BLIN, "weight_g": 70000, "height_mm": 1750, "dose_ng_per_day": 9000,
          "bag_hours": 25, "regimen": "r/r", "cycle": 1}
    rx["day_from"] = 6
    label = program.make_label(rx, 260000, lib)
    assert (label["day_from"], label["day_to"]) == (6, 7)
    got = program.propose(label, _entry(label), 1, lib, (0, 0, 0, 0))
    assert got.patient == (70000, _WORD1, 5 * _DAY)
    rx["day_from"] = 7
    label = program.make_label(rx, 260000, lib)
    assert (label["day_from"], label["day_to"]) == (7, 7)   # the label stops at the step
    assert program.propose(label, _entry(label), 1, lib, (0, 0, 0, 0)) == \
        codes.DOSE_STEP_MISMATCH


def test_sr2_a_dose_between_or_below_the_steps_is_no_step_even_with_override():
    for dose, day in ((10000, 8), (10000, 1), (5000, 8)):
        assert _label(dose, day, override=1) == codes.DOSE_STEP_MISMATCH, (dose, day)
        rx = _crafted(dose, day, override=1)
        assert program.propose(rx, _entry(rx), 1, None, (0, 0, 0, 0)) == \
            codes.DOSE_STEP_MISMATCH, (dose, day)


def test_sr9_a_program_without_a_label_is_never_a_re_hung_bag():
    """Basic programs (service, bench) carry no bag label (0), so the pump never takes one
    for the bag it already knows."""
    assert program.basic(1, 10000, 240000).label == 0
    prop = program.propose_basic({"rate": "10 mL/h", "vtbi": "240 mL"}, 1)
    assert prop.label == 0
    assert program.confirm(prop, prop.echo).label == 0


def test_sr2_a_restart_may_be_any_lower_step_of_a_three_step_plan():
    """A library with a middle step (days 8-14): on day 15 a clinician's override restarts
    at either lower step; the step due needs none; a step above is refused."""
    doc = druglib.read()
    d = doc["drugs"][0]
    d["fixed_steps_ng_per_day"]["value"] = [9000, 18000, 28000]
    d["bsa_steps_ng_per_m2_per_day"]["value"] = [5000, 10000, 15000]
    d["bsa_caps_ng_per_day"]["value"] = [9000, 18000, 28000]
    d["regimens"]["r/r"]["cycles"][0]["steps"] = [[1, 7, 0], [8, 14, 1], [15, 28, 2]]
    lib = druglib.Library(doc, None)
    rx = {"drug": BLIN, "weight_g": 70000, "height_mm": 1750, "bag_hours": 24,
          "regimen": "r/r", "cycle": 1, "day_from": 15}
    for dose, override, want in ((18000, 1, 15), (9000, 1, 15), (28000, 0, 15),
                                 (18000, 0, codes.DOSE_STEP_MISMATCH)):
        rx["dose_ng_per_day"] = dose
        rx["override"] = override
        p = program.prescribe(rx, lib)
        label = program.make_label(rx, p["infusible_ul"], lib)
        assert (label if isinstance(label, str) else label["day_to"]) == want, (dose, override)
        if isinstance(label, dict):
            got = program.propose(label, _entry(label), 1, lib, (70000, _WORD1, 14 * _DAY, 0))
            assert got.patient == (70000, _WORD1, 14 * _DAY), (dose, override)
