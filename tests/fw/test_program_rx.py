"""Prescriptions to programs: SR-1, SR-2, SR-3 and the bag label's check code (issue 3).
Every rejection case of docs/program-rejections.md has its test here."""
from fakehal import FakeHal, run_for, tmpdir

from pump import codes, druglib, program
from pump.codes import CLINICIAN
from pump.controller import Controller

BLIN = "blinatumomab"
OLDER = druglib.load(label_version="older")
CURRENT = druglib.load(label_version="current")
# The label's bag rates, by label version (independent of the library file).
RATES = {
    "older": {24: 10000, 48: 5000, 72: 3300, 96: 2500, 168: 600},
    "current": {24: 10000, 48: 5000, 72: 1800, 96: 1800, 168: 600},
}
ADULT = (70000, 1750)
# (weight g, height mm, Mosteller BSA in cm² computed in floating point off-line)
CHILDREN = ((6000, 620, 3214.6), (10000, 750, 4564.4), (20000, 1100, 7817.4),
            (30000, 1350, 10606.6), (44000, 1500, 13540.1))


def _ml(ul):
    """µL as the operator keys it in mL ("0.600")."""
    return "%d.%03d" % (ul // 1000, ul % 1000)


def _rx(weight_g=70000, height_mm=1750, dose=28000, per_m2=None, hours=24, drug=BLIN,
        lib=OLDER, **extra):
    rx = {"drug": drug, "weight_g": weight_g, "height_mm": height_mm, "bag_hours": hours}
    if per_m2 is not None:
        rx["dose_ng_per_m2_per_day"] = per_m2
    else:
        rx["dose_ng_per_day"] = dose
    for k in extra:
        rx[k] = extra[k]
    return rx


def _label(rx, lib=OLDER, **wrong):
    """The pharmacy's label for rx (12.5 % overfill), with `wrong` values printed on it and a
    check code that matches what is printed (a preparation error, not a transcription one)."""
    p = program.prescribe(rx, lib)
    assert isinstance(p, dict), p
    lab = program.make_label(rx, p["infusible_ul"] * 9 // 8, lib)
    assert isinstance(lab, dict), lab
    for k in wrong:
        lab[k] = wrong[k]
    lab["check"] = program.label_code(program.label_values(lab, lib))
    return lab


def _entry(rate_ul, vtbi_ul, unit="mL/h"):
    return {"rate": _ml(rate_ul), "unit": unit, "vtbi_ml": _ml(vtbi_ul)}


def _keyed(lab, rate_ul=None, unit="mL/h", lib=OLDER, pid=7):
    """Propose with the label's own values keyed, or a different rate."""
    r = lab["rate_ul_per_h"] if rate_ul is None else rate_ul
    return program.propose(lab, _entry(r, lab["infusible_ul"], unit), pid, lib)


def _accept(lab, lib=OLDER, pid=7):
    prop = _keyed(lab, lib=lib, pid=pid)
    assert isinstance(prop, program.Proposal), prop
    prog = program.confirm(prop, list(prop.echo))
    assert isinstance(prog, program.Program), prog
    return prog


def _within_1pct(x, ref):
    return abs(x - ref) * 100 <= ref


def _check_program(prog, rate, expected_daily_ng):
    assert prog.rate_ul_per_h == rate, (prog.rate_ul_per_h, rate)
    assert _within_1pct(prog.dose_ng_per_day, expected_daily_ng)
    delivered_ng_per_day = prog.rate_ul_per_h * 24 * prog.conc_pg_per_ml // 1000000
    assert _within_1pct(delivered_ng_per_day, expected_daily_ng), (delivered_ng_per_day,
                                                                     expected_daily_ng)
    assert prog.intact()
    assert prog.vtbi_nl == rate * prog.bag_hours * 1000 or prog.bag_hours == 72


# --- accepted programs: every bag option and dose of the label --------------------------------

def test_sr1_every_bag_and_dose_adult_gives_label_rate():
    n = 0
    for lib in (OLDER, CURRENT):
        for hours in (24, 48, 72, 96, 168):
            for dose in (9000, 28000):
                lab = _label(_rx(dose=dose, hours=hours), lib)
                prog = _accept(lab, lib)
                _check_program(prog, RATES[lib.label_version][hours], dose)
                assert prog.flags & druglib.FLAG_NO_BOLUS and prog.flags & druglib.FLAG_NO_KVO
                n += 1
    assert n == 20


def test_sr1_every_bag_and_dose_bsa_several_body_sizes():
    n = 0
    for lib in (OLDER, CURRENT):
        drug = lib.drug(BLIN)
        for w, h, bsa in CHILDREN:
            for per_m2, cap in ((5000, 9000), (15000, 28000)):
                expected = per_m2 * bsa / 10000
                if expected > cap:
                    expected = cap
                for hours in (24, 48, 72, 96, 168):
                    rx = _rx(w, h, per_m2=per_m2, hours=hours)
                    if drug.bags[hours].preservative and w < drug.bags[hours].min_weight_g:
                        assert program.prescribe(rx, lib) == codes.PRESERVATIVE_WEIGHT_LIMIT
                        continue
                    prog = _accept(_label(rx, lib), lib)
                    _check_program(prog, RATES[lib.label_version][hours], int(expected))
                    n += 1
    assert n >= 70, n


def test_bsa_integer_mosteller():
    for w, h, bsa in CHILDREN:
        assert abs(program.bsa_cm2(w, h) - bsa) < 2, (w, h)
    assert program.isqrt(0) == 0 and program.isqrt(1) == 1 and program.isqrt(99) == 9
    for n in (2, 15, 16, 17, 1 << 29, (1 << 40) + 3):
        r = program.isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1)


def test_sr2_bsa_dose_cap_is_beyond_any_plausible_child():
    # 15 µg/m² reaches the 28 µg cap at 1.87 m²: no patient under 45 kg has that BSA. Even
    # at the pump's tallest height, 2.6 m, a 44 kg patient has 1.78 m²: 26.7 µg/day.
    prog = _accept(_label(_rx(44000, 2340, per_m2=15000, hours=24)))
    assert abs(prog.dose_ng_per_day - 15000 * program.bsa_cm2(44000, 2340) / 10000) <= 1
    assert prog.dose_ng_per_day < 28000
    # a label claiming 2.0 m² for 44 kg: refused whatever height it gives
    assert program.prescribe(_rx(44000, 1500, per_m2=15000, bsa_cm2=20000), OLDER) == \
        codes.BSA_MISMATCH
    assert program.prescribe(_rx(4400, 1750, per_m2=15000), OLDER) == \
        codes.MEASURES_IMPLAUSIBLE                               # 44 kg keyed as 4.4 kg


def test_sr3_two_steps_echo_must_match():
    prop = _keyed(_label(_rx()))
    assert isinstance(prop, program.Proposal)
    assert prop.echo == (BLIN, 10000, 240000, 28000, 116667, 24)
    bad = list(prop.echo)
    bad[1] = 100000
    assert program.confirm(prop, bad) == codes.BAD_INPUT
    assert program.confirm(prop, list(prop.echo)[:5]) == codes.BAD_INPUT
    assert program.confirm(prop, None) == codes.BAD_INPUT
    assert program.confirm(prop, [BLIN, True, 240000, 28000, 116667, 24]) == codes.BAD_INPUT
    assert program.confirm(None, prop.echo) == codes.BAD_INPUT
    assert program.confirm(prop.echo, prop.echo) == codes.BAD_INPUT
    prop._fields = (7, 100000) + prop._fields[2:]          # tampered after propose
    assert program.confirm(prop, prop.echo) == codes.BAD_INPUT


def test_keyed_decimals():
    assert program.milli("0.6") == 600
    assert program.milli("10") == 10000
    assert program.milli(" 100.800 ") == 100800
    assert program.milli(10) == 10000
    assert program.milli(".5") == 500
    for bad in ("", ".", "1.2345", "-1", "1e3", "1,5", "0x10", None, True, [], "１０"):
        assert program.milli(bad) is None, bad


# --- rejections: one test per case of docs/program-rejections.md ----------------------------

def test_reject_key_bounce_10_to_100_ml_h_on_24h_bag():
    assert _keyed(_label(_rx(hours=24)), 100000) == codes.RATE_VOLUME_MISMATCH


def test_reject_decimal_slip_0_6_to_6_ml_h_on_7_day_bag():
    assert _keyed(_label(_rx(hours=168)), 6000) == codes.RATE_VOLUME_MISMATCH


def test_reject_24h_volume_keyed_as_rate_240_ml_h():
    assert _keyed(_label(_rx(hours=24)), 240000) == codes.RATE_VOLUME_MISMATCH


def test_reject_7_day_bag_at_10_ml_h():
    assert _keyed(_label(_rx(hours=168)), 10000) == codes.RATE_VOLUME_MISMATCH


def test_reject_label_concentration_10x_prescription():
    lab = _label(_rx(dose=28000, hours=24))
    ten_x = _label(_rx(dose=28000, hours=24), conc_pg_per_ml=lab["conc_pg_per_ml"] * 10)
    assert _keyed(ten_x) == codes.CONCENTRATION_OUT_OF_RANGE
    # A small child's bag: 10x is still inside the bag's range, so SR-1's dose check catches it.
    rx = _rx(6000, 620, per_m2=5000, hours=24)
    lab = _label(rx)
    ten_x = _label(rx, conc_pg_per_ml=lab["conc_pg_per_ml"] * 10)
    assert _keyed(ten_x) == codes.DOSE_RATE_MISMATCH


def test_reject_bsa_dose_given_to_adult_as_ug_per_day():
    # 15 µg/m²/day (the < 45 kg dose) written as 15 µg/day for a 70 kg patient: not a label
    # dose for >= 45 kg -> soft limit, refused without a clinician override.
    rx = _rx(dose=15000)
    assert program.prescribe(rx, OLDER) == codes.OVERRIDE_REQUIRED
    # With a (logged) clinician override it is accepted and the program says so.
    rx["override"] = 42
    prog = _accept(_label(rx))
    assert prog.flags & druglib.FLAG_OVERRIDE
    # The BSA-based unit itself for a >= 45 kg patient is refused.
    assert program.prescribe(_rx(per_m2=15000), OLDER) == codes.UNIT_REJECTED
    # ... and a fixed µg/day dose for a < 45 kg patient.
    assert program.prescribe(_rx(20000, 1100, dose=9000), OLDER) == codes.UNIT_REJECTED


def test_reject_7_day_preservative_bag_under_weight_limit():
    rx = _rx(15000, 1000, per_m2=15000, hours=168)
    assert program.prescribe(rx, OLDER) == codes.PRESERVATIVE_WEIGHT_LIMIT
    # A pharmacy label for it still fails at the pump.
    lab = program.make_label(rx, 110000, CURRENT)      # 15 kg is allowed under 5.4 kg
    assert isinstance(lab, dict)
    lab["label_version"] = "older"
    assert _keyed(lab) == codes.PRESERVATIVE_WEIGHT_LIMIT
    rx = _rx(4000, 550, per_m2=5000, hours=168)
    assert program.prescribe(rx, CURRENT) == codes.PRESERVATIVE_WEIGHT_LIMIT
    for hours in (72, 96):
        assert program.prescribe(_rx(15000, 1000, per_m2=5000, hours=hours), OLDER) == \
            codes.PRESERVATIVE_WEIGHT_LIMIT


def test_reject_dose_above_cap():
    assert program.prescribe(_rx(dose=28001), OLDER) == codes.DOSE_ABOVE_LIMIT
    assert program.prescribe(_rx(dose=280000), OLDER) == codes.DOSE_ABOVE_LIMIT
    assert program.prescribe(_rx(dose=10 ** 30), OLDER) == codes.DOSE_ABOVE_LIMIT
    assert program.prescribe(_rx(20000, 1100, per_m2=20000), OLDER) == codes.DOSE_ABOVE_LIMIT
    # the override does not lift a hard limit
    assert program.prescribe(_rx(dose=30000, override=42), OLDER) == codes.DOSE_ABOVE_LIMIT


def test_reject_unknown_drug():
    lab = _label(_rx())
    lab["drug"] = "blinatumumab"
    assert _keyed(lab) == codes.UNKNOWN_DRUG
    assert program.prescribe(_rx(drug="heparin"), OLDER) == codes.UNKNOWN_DRUG


def test_reject_rate_in_ml_per_day():
    lab = _label(_rx())
    for unit in ("mL/day", "mL/24h", "mL/min", "L/h", "ug/day", "mcg/day", "", None, 1):
        assert _keyed(lab, 240000, unit) == codes.UNIT_REJECTED, unit
        assert _keyed(lab, None, unit) == codes.UNIT_REJECTED, unit


def test_reject_restart_during_overdose_lockout():
    drug = OLDER.drug(BLIN)
    hal = FakeHal(tmpdir("rxlock"))
    ctl = Controller(hal, lockout_s=drug.lockout_s, pause_reminder_s=drug.pause_reminder_s)
    ctl.boot()
    lab = _label(_rx())
    assert ctl.request("program", CLINICIAN, _accept(lab, pid=1)) is None
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 600000)
    ctl.raise_alarm(codes.OVER_INFUSION)
    assert ctl.state == codes.LOCKOUT
    again = _accept(lab, pid=2)
    assert ctl.request("program", CLINICIAN, again) == codes.LOCKOUT_ACTIVE
    hal.t += (drug.lockout_s - 60) * 1000          # 11 h 59 min later: still locked out
    assert ctl.request("program", CLINICIAN, again) == codes.LOCKOUT_ACTIVE
    assert ctl.state == codes.LOCKOUT
    hal.t += 120 * 1000                            # past 12 h: the correct dose may restart
    assert ctl.request("program", CLINICIAN, again) is None
    assert ctl.state == codes.PROGRAMMED


def test_reject_label_check_code_mismatch():
    lab = _label(_rx())
    # a transcription error in any label field
    for k, v in (("conc_pg_per_ml", 116676), ("infusible_ul", 240001), ("weight_g", 7000),
                 ("dose_ng_per_day", 9000), ("bag_volume_ul", 207000), ("height_mm", 1570)):
        bad = dict(lab)
        bad[k] = v
        assert _keyed(bad) == codes.LABEL_CHECK_MISMATCH, k
    for check in ("", "000000", "515QQR", None, 515, "ZZZZZZZZZZZZZZZZZZZ"):
        bad = dict(lab)
        bad["check"] = check
        if check == lab["check"]:
            continue
        assert _keyed(bad) == codes.LABEL_CHECK_MISMATCH, check
    bad = dict(lab)
    del bad["check"]
    assert _keyed(bad) == codes.LABEL_CHECK_MISMATCH
    # the code reads the same however it is keyed (Crockford: O = 0, I = L = 1, any case)
    ok = dict(lab)
    ok["check"] = lab["check"].lower().replace("0", "o").replace("1", "l")
    assert isinstance(_keyed(ok), program.Proposal)


def test_reject_duration_not_offered():
    assert program.prescribe(_rx(hours=36), OLDER) == codes.DURATION_NOT_OFFERED
    assert program.prescribe(_rx(hours=12), OLDER) == codes.DURATION_NOT_OFFERED


def test_reject_vtbi_not_the_infusible_volume():
    lab = _label(_rx())
    e = _entry(10000, 270000)       # the whole bag, overfill included
    assert program.propose(lab, e, 1, OLDER) == codes.RATE_VOLUME_MISMATCH
    e = _entry(10000, 237600)       # 1 % short: still the bag's volume
    assert isinstance(program.propose(lab, e, 1, OLDER), program.Proposal)


def test_reject_label_from_another_label_version():
    lab = _label(_rx(hours=72), CURRENT)
    assert _keyed(lab, lib=CURRENT) is not None
    assert isinstance(_keyed(lab, lib=CURRENT), program.Proposal)
    assert _keyed(lab, lib=OLDER) == codes.BAD_INPUT       # says "current" on it
    del lab["label_version"]
    # without the version the values themselves disagree with the older label's 72 h bag
    assert _keyed(lab, lib=OLDER) in (codes.RATE_VOLUME_MISMATCH,
                                      codes.CONCENTRATION_OUT_OF_RANGE)



def test_sr1_older_72h_bag_keyed_with_its_labelled_240_ml_accepted():
    """The older label's 72 h bag says 240 mL at 3.3 mL/h (3.3 x 72 = 237.6 mL, 1 % under):
    keyed as labelled it is accepted; a rate keyed below the label's is more than 1 % short
    of 240 mL and refused (SR-1)."""
    lab = _label(_rx(hours=72), OLDER)
    assert (lab["rate_ul_per_h"], lab["infusible_ul"]) == (3300, 240000)
    for vtbi in (240000, 237600):
        prop = program.propose(lab, _entry(3300, vtbi), 7, OLDER)
        assert isinstance(prop, program.Proposal), (vtbi, prop)
    prog = program.confirm(prop, list(prop.echo))
    assert (prog.rate_ul_per_h, prog.vtbi_nl) == (3300, 237600000)
    assert program.propose(lab, _entry(3290, 240000), 7, OLDER) == codes.RATE_VOLUME_MISMATCH

# --- never raises ---------------------------------------------------------------------------

def test_sr13_propose_never_raises_on_junk():
    lab = _label(_rx())
    good_entry = _entry(10000, 240000)
    junk = (None, 0, -1, 1.5, float("nan"), "x", "", [], {}, [1, 2], {"a": {"b": [None]}},
            10 ** 40, -10 ** 40, True, b"\x00", (1,), {"drug": None}, set())
    for j in junk:
        assert program.propose(j, good_entry, 1) in codes.REJECTIONS
        assert program.propose(lab, j, 1, OLDER) in codes.REJECTIONS
        assert program.propose(lab, good_entry, j, OLDER) in codes.REJECTIONS or j == 0 or \
            j is True
        for k in list(lab) + ["override", "label_version"]:
            bad = dict(lab)
            bad[k] = j
            r = program.propose(bad, good_entry, 1, OLDER)
            assert r in codes.REJECTIONS or isinstance(r, program.Proposal), (k, j)
        for k in ("rate", "unit", "vtbi_ml"):
            e = dict(good_entry)
            e[k] = j
            r = program.propose(lab, e, 1, OLDER)
            assert r in codes.REJECTIONS, (k, j)
        assert program.prescribe(j, OLDER) in codes.REJECTIONS
        assert program.confirm(j, j) == codes.BAD_INPUT
    assert program.propose(lab, good_entry, True, OLDER) == codes.BAD_INPUT


def test_flags_and_check_fit_journal():
    prog = _accept(_label(_rx(30000, 1350, per_m2=15000, hours=168)))
    assert prog.flags & druglib.FLAG_PRESERVATIVE
    payload = [0] * 9
    program.to_record(prog, payload)
    back = program.from_record(payload)
    assert back is not None and back.fields() == prog.fields()
    for v in prog.fields():
        assert 0 <= v < (1 << 30)
