"""What the programming door takes and what it refuses, value by value (SR-1, SR-3, SR-5,
SR-13): every keyed decimal, label field and identifier at the ends of its range, the bag
label's check code as keyed, and the check values that let a copy of a program (the safety
monitor's, the journal's) or a proposal waiting for its echo prove it is unchanged. Drug
library programs throughout. Runs on CPython and MicroPython.
"""
from test_program_rx import OLDER, _accept, _entry, _keyed, _label, _rx

from pump import codes, druglib, program

# --- check values: any single flipped bit is seen (SR-5, SR-9) --------------------------------

def test_sr5_a_program_copy_with_any_one_bit_changed_is_not_intact():
    prog = _accept(_label(_rx()))
    assert prog.intact() and 0 <= prog.check < (1 << 30)
    names = ("pid", "rate_ul_per_h", "vtbi_nl", "drug", "conc_pg_per_ml", "dose_ng_per_day",
             "bag_hours", "flags")
    for name in names:
        v = getattr(prog, name)
        for bit in range(30):
            setattr(prog, name, v ^ (1 << bit))
            assert not prog.intact(), (name, bit)
        setattr(prog, name, v)
    assert prog.intact()
    # the check of given values is the same in every release: a PROGRAM record journalled
    # before an update is restored after it (SR-9)
    assert program.Program(1, 10000, 240000000, 1, 116667, 28000, 24, 7).check == 531095203
    assert program.Program(2, 600, 100800000, 1, 1944444, 28000, 168, 3).check == 1063236521
    # and a program rebuilt from a journal record whose check does not match is refused
    rec = [0] * 13
    program.to_record(prog, rec)
    assert program.from_record(rec).fields() == prog.fields()
    rec[1] ^= 1 << 9
    assert program.from_record(rec) is None


def test_sr3_a_waiting_proposal_with_any_one_bit_changed_is_refused_at_confirm():
    prop = _keyed(_label(_rx()))
    assert isinstance(prop, program.Proposal)
    fields = list(prop._fields)
    echo = list(prop.echo)
    for i in range(len(fields)):
        for bit in range(30):
            f = list(fields)
            f[i] ^= 1 << bit
            prop._fields = tuple(f)
            assert program.confirm(prop, echo) == codes.BAD_INPUT, (i, bit)
    prop._fields = tuple(fields)
    for i in range(1, len(echo)):
        for bit in range(30):
            e = list(echo)
            e[i] ^= 1 << bit
            prop.echo = tuple(e)
            assert program.confirm(prop, e) == codes.BAD_INPUT, (i, bit)
    prop.echo = tuple(echo)
    assert isinstance(program.confirm(prop, echo), program.Program)


# --- keyed decimals (SR-3, SR-13) ---------------------------------------------------------------

def test_sr13_keyed_decimals_at_the_ends_of_their_range():
    m = program.milli
    for v, want in ((0, 0), (999999999, 999999999000), ("0", 0), ("0.001", 1),
                    ("999999999", 999999999000), ("999999999.999", 999999999999),
                    (1.5, 1500), (0.0, 0), (999999999.5, 999999999500), ("10.", 10000),
                    (".5", 500), (" 0.6 ", 600), ("1.5" + "0" * 17, 1500), ("0.600000", 600)):
        assert m(v) == want, (v, m(v))
    for v in (-1, 1000000000, -0.5, 1e9, float("nan"), float("inf"), "", " " * 21,
              "1.5" + "0" * 18, "1234567890", "0.0001", ".", "1e3", "-1", "+1", "1,5", True, None,
              [1], "0x10"):
        assert m(v) is None, v


def test_sr13_keyed_text_up_to_32_characters_and_two_words():
    pad = " " * 30
    ok = program.propose_basic({"rate": "10 mL/h" + pad[:25], "vtbi": "240 mL"}, 1)
    assert isinstance(ok, program.Proposal)                         # 32 characters
    assert program.propose_basic({"rate": "10 mL/h" + pad[:26], "vtbi": "240 mL"}, 1) == \
        codes.BAD_INPUT                                             # 33
    assert program.propose_basic({"rate": "10", "vtbi": "240 mL"}, 1) == codes.UNIT_REJECTED
    assert program.propose_basic({"rate": "10 mL / h", "vtbi": "240 mL"}, 1) == \
        codes.BAD_INPUT
    for d in ({"rate": "10 mL/h"}, {"rate": "10 mL/h", "vtbi": "240 mL", "x": 1}, None,
              ["10 mL/h", "240 mL"], "10 mL/h"):
        assert program.propose_basic(d, 1) == codes.BAD_INPUT, d


# --- the label's check code as keyed (SR-13) ---------------------------------------------------

def test_sr13_a_check_code_keyed_with_separators_in_any_case_up_to_16_characters():
    lab = _label(_rx())
    code = lab["check"]
    assert len(code) == program.CHECK_LEN
    variants = (code.lower(), code[:3] + "-" + code[3:], " ".join(code),
                code[:2] + " - " + code[2:], "-" * 10 + code)
    for v in variants:
        lab["check"] = v
        assert isinstance(_keyed(lab), program.Proposal), v
    # Crockford's readings: O for 0, I and L for 1
    swapped = code.replace("0", "O").replace("1", "I")
    lab["check"] = swapped
    assert isinstance(_keyed(lab), program.Proposal), swapped
    for v in ("-" * 11 + code, code + "0", code[:-1], code + "U", None, 123456):
        lab["check"] = v
        assert _keyed(lab) == codes.LABEL_CHECK_MISMATCH, v


# --- identifiers and label fields at their ends (SR-13) ---------------------------------------

def test_sr13_program_id_0_to_2_30_exclusive():
    lab = _label(_rx())
    for pid in (0, 1, (1 << 30) - 1):
        assert isinstance(_keyed(lab, pid=pid), program.Proposal), pid
    for pid in (-1, 1 << 30, "7", 7.0, True, None):
        assert _keyed(lab, pid=pid) == codes.BAD_INPUT, pid


def test_sr13_a_label_or_prescription_missing_a_field_or_out_of_range_is_refused():
    lab = _label(_rx())
    assert isinstance(_keyed(lab), program.Proposal)
    entry = _entry(lab["rate_ul_per_h"], lab["infusible_ul"])
    for k in ("weight_g", "bag_hours", "rate_ul_per_h", "conc_pg_per_ml", "bag_volume_ul",
              "infusible_ul"):
        bad = dict(lab)
        del bad[k]
        assert program.label_values(bad, OLDER) is None, k
        assert program.propose(bad, entry, 7, OLDER) == codes.BAD_INPUT, k
    # a field at 2**30 is not a label value; 2**30 - 1 is (and is then judged on its merits)
    for k in ("bag_volume_ul", "infusible_ul", "conc_pg_per_ml"):
        big = dict(lab)
        big[k] = 1 << 30
        assert program.label_values(big, OLDER) is None, k
        big[k] = (1 << 30) - 1
        assert program.label_values(big, OLDER) is not None, k
    rx = _rx()
    for k in ("weight_g", "bag_hours"):
        r = dict(rx)
        del r[k]
        assert program.prescribe(r, OLDER) == codes.BAD_INPUT, k
    for ovr, ok in ((0, True), ((1 << 30) - 1, True), (1 << 30, False), (-1, False)):
        got = program.prescribe(_rx(override=ovr), OLDER)
        assert isinstance(got, dict) == ok, (ovr, got)
    for rx in ("x", {"drug": 5}, {"weight_g": 70000}, None):
        assert program.propose(rx, entry, 7, OLDER) == codes.BAD_INPUT, rx
    assert program.propose(lab, "10 mL/h", 7, OLDER) == codes.BAD_INPUT


def test_sr2_a_child_dose_without_a_body_size_is_refused():
    # under the adult weight the dose is per m²: no height, nothing to dose by
    rx = {"drug": "blinatumomab", "weight_g": 20000, "bag_hours": 24,
          "dose_ng_per_m2_per_day": 5000}
    assert program.prescribe(rx, OLDER) == codes.HEIGHT_REQUIRED
    rx["height_mm"] = 1100
    assert isinstance(program.prescribe(rx, OLDER), dict)


def test_sr2_a_dose_on_the_label_steps_needs_no_override_and_is_not_flagged():
    got = program.prescribe(_rx(), OLDER)
    assert isinstance(got, dict) and not got["flags"] & druglib.FLAG_OVERRIDE
    off = program.prescribe(_rx(dose=20000), OLDER)
    assert off == codes.OVERRIDE_REQUIRED
    ovr = program.prescribe(_rx(dose=20000, override=1), OLDER)
    assert isinstance(ovr, dict) and ovr["flags"] & druglib.FLAG_OVERRIDE


# --- values the pharmacy prints: fixed from release to release (SR-1, SR-2) ------------------

def test_sr1_label_check_codes_are_those_printed_by_every_release():
    """A label printed by the pharmacy tool of another release verifies on this pump: the
    check code of given values does not change (Crockford base32 of the CRC's 30 bits)."""
    for vals, code in (([0] * 11, "1J8SGW"),
                       ([0, 70000, 1750, 0, 28000000, 0, 24, 10000, 116667, 270000, 240000],
                        "6PTDSD"),
                       ([1] * 11, "3CW13Z"), ([(1 << 30) - 1] * 11, "VD4DDX")):
        assert program.label_code(vals) == code, (vals, program.label_code(vals))


def test_sr2_bsa_is_mosteller_rounded_to_the_nearest_cm2():
    # 5/3 x sqrt(weight g x height mm) cm2, to the nearest: .67 up, .33 down, whole as is
    assert program.bsa_cm2(1000, 1000) == 1667
    assert program.bsa_cm2(1001, 1001) == 1668
    assert program.bsa_cm2(1002, 1002) == 1670
    for n in (0, 1, 2, 3, 4, 15, 16, 17, 99, 100, 101, 1 << 20, (1 << 20) + 1):
        r = program.isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1), n


def test_sr2_what_the_pharmacy_is_told_for_an_adult():
    got = program.prescribe(_rx(), OLDER)
    assert got["height_mm"] == 1750 and got["bsa_cm2"] == program.bsa_cm2(70000, 1750)
    assert got["daily_ng"] == 28000 and got["flags"] == OLDER.drug("blinatumomab").flags
    lab = program.make_label(_rx(), 270000, OLDER)
    assert "bsa_cm2" not in lab and "dose_ng_per_m2_per_day" not in lab
    assert lab["dose_ng_per_day"] == 28000


def test_sr13_dose_and_duration_must_be_at_least_1():
    assert program.prescribe(_rx(dose=0), OLDER) == codes.BAD_INPUT
    assert program.prescribe(_rx(dose=1), OLDER) == codes.OVERRIDE_REQUIRED   # off-step
    child = {"drug": "blinatumomab", "weight_g": 20000, "height_mm": 1100, "bag_hours": 24}
    child["dose_ng_per_m2_per_day"] = 0
    assert program.prescribe(child, OLDER) == codes.BAD_INPUT
    child["dose_ng_per_m2_per_day"] = 1
    assert program.prescribe(child, OLDER) != codes.BAD_INPUT
    assert program.prescribe(_rx(hours=0), OLDER) == codes.BAD_INPUT
    assert program.prescribe(_rx(hours=23), OLDER) == codes.DURATION_NOT_OFFERED


def test_sr1_a_label_printed_with_an_empty_bag_is_a_volume_mismatch():
    lab = _label(_rx(), bag_volume_ul=0)
    assert _keyed(lab) == codes.RATE_VOLUME_MISMATCH


def test_sr13_a_basic_program_carries_no_drug_dose_bag_or_flag():
    prog = program.basic(3, 10000, 240000)
    assert prog.fields() == (3, 10000, 240000000, 0, 0, 0, 0, 0)
    for pid in (0, (1 << 30) - 1):
        assert isinstance(program.basic(pid, 10000, 240000), program.Program), pid
    for args in ((-1, 10000, 240000), (1 << 30, 10000, 240000), ("1", 10000, 240000),
                 (1, "10000", 240000), (1, 10000, 240000.0)):
        assert program.basic(*args) == codes.BAD_INPUT, args


def test_sr1_what_is_confirmed_is_what_was_proposed_field_for_field():
    prop = _keyed(_label(_rx()))
    prog = program.confirm(prop, list(prop.echo))
    assert prog.fields() == tuple(prop._fields)
    assert prog.drug == OLDER.drug("blinatumomab").index and prog.vtbi_nl == 240000000
    assert prog.conc_pg_per_ml == 116667 and prog.dose_ng_per_day == 28000
    basic = program.propose_basic({"rate": "10 mL/h", "vtbi": "240 mL"}, 4)
    got = program.confirm(basic, list(basic.echo))
    assert got.fields() == (4, 10000, 240000000, 0, 0, 0, 0, 0)


def test_sr2_concentration_is_the_daily_dose_over_24_h_of_the_rate_to_the_pg():
    for dose, rate, conc in ((28000, 10000, 116667), (9000, 10000, 37500),
                             (28000, 600, 1944444), (9000, 5000, 75000)):
        hours = {10000: 24, 5000: 48, 600: 168}[rate]
        got = program.prescribe(_rx(dose=dose, hours=hours), OLDER)
        assert got["conc_pg_per_ml"] == conc, (dose, rate, got)


def test_sr13_label_values_never_raise_and_take_0_to_2_30_exclusive():
    for junk in ("x", None, 5, ["drug"]):
        assert program.label_values(junk, OLDER) is None, junk
    lab = _label(_rx())
    neg = dict(lab)
    neg["bsa_cm2"] = -1                       # an optional field, negative: not absent
    assert program.label_values(neg, OLDER) is None
    # an absent optional field counts as 0 in the check code the pharmacy printed
    assert program.make_label(_rx(), 270000, OLDER)["check"] == "1AZXCH"
    child = {"drug": "blinatumomab", "weight_g": 20000, "height_mm": 1100, "bag_hours": 24,
             "dose_ng_per_m2_per_day": 15000}
    lab = program.make_label(child, 270000, OLDER)
    assert lab["check"] == "ACR4GC" and "dose_ng_per_day" not in lab and "bsa_cm2" not in lab


def test_sr2_a_dose_under_1_ng_a_day_is_refused_and_override_0_is_none():
    tiny = {"drug": "blinatumomab", "weight_g": 6000, "height_mm": 620, "bag_hours": 24,
            "dose_ng_per_m2_per_day": 1}          # 0.32 cm2-weighted ng/day: rounds to 0
    assert program.prescribe(tiny, OLDER) == codes.BAD_INPUT
    assert program.prescribe(_rx(dose=20000, override=0), OLDER) == codes.OVERRIDE_REQUIRED


def test_sr13_a_label_bsa_must_agree_with_its_height_within_5_percent():
    # 70 kg, 1504 mm: 17100 cm2 by Mosteller; a printed BSA up to 855 cm2 off agrees
    for bsa, ok in ((17100 + 855, True), (17100 - 855, True), (17100 + 856, False),
                    (17100 - 856, False)):
        got = program.prescribe(_rx(height_mm=1504, bsa_cm2=bsa), OLDER)
        assert isinstance(got, dict) == ok, (bsa, got)
