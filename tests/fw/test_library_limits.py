"""Every limit a program is judged by, at its boundary and one unit either side (SR-1,
SR-2, SR-3): the 1 % tolerances of rate x duration against the bag's volume and of the
dose against rate x concentration, the drug library's hard limits (dose caps, BSA steps
and caps, concentration range, bag durations, preservative weight limit, adult weight,
overfill) and the plausible-input ranges. At the limit the program is accepted (or the
next check speaks); one unit past it, the refusal names the limit. Labels here are printed
with a matching check code: the values are what the pharmacy prepared. Runs on CPython and
MicroPython.
"""
from pump import codes, druglib, program

BLIN = "blinatumomab"
OLDER = druglib.load(label_version="older")
CURRENT = druglib.load(label_version="current")


def _rx(weight_g=70000, height_mm=1750, dose=9000, per_m2=None, hours=24, **extra):
    rx = {"drug": BLIN, "weight_g": weight_g, "height_mm": height_mm, "bag_hours": hours}
    if per_m2 is None:
        rx["dose_ng_per_day"] = dose
    else:
        rx["dose_ng_per_m2_per_day"] = per_m2
    for k in extra:
        rx[k] = extra[k]
    return rx


def _label(rx, lib=OLDER, bag_ul=None, **printed):
    """The pharmacy's label for rx, with `printed` values on it and their check code."""
    p = program.prescribe(rx, lib)
    assert isinstance(p, dict), p
    lab = program.make_label(rx, bag_ul if bag_ul is not None else p["infusible_ul"] * 9 // 8,
                             lib)
    assert isinstance(lab, dict), lab
    for k in printed:
        lab[k] = printed[k]
    lab["check"] = program.label_code(program.label_values(lab, lib))
    return lab


def _ml(ul):
    return "%d.%03d" % (ul // 1000, ul % 1000)


def _propose(lab, rate_ul=None, vtbi_ul=None, lib=OLDER):
    """The pump's answer to the label with the operator keying `rate_ul` and `vtbi_ul`
    (default: the label's own): "OK" or the rejection code."""
    r = lab["rate_ul_per_h"] if rate_ul is None else rate_ul
    v = lab["infusible_ul"] if vtbi_ul is None else vtbi_ul
    got = program.propose(lab, {"rate": _ml(r), "unit": "mL/h", "vtbi_ml": _ml(v)}, 7, lib)
    if isinstance(got, str):
        return got
    prog = program.confirm(got, list(got.echo))
    assert isinstance(prog, program.Program), prog
    assert prog.rate_ul_per_h == r and prog.vtbi_nl == v * 1000
    return "OK"


def _code(p):
    return p if isinstance(p, str) else "OK"


# --- SR-1: the 1 % tolerances ------------------------------------------------------------------

def test_sr1_keyed_rate_times_duration_within_1_percent_of_the_bag():
    # 9 µg/day bags: the concentration is exact, so the dose check (also 1 %) stays quiet
    # while the rate moves through the bag's 1 %; one µL/h further is a mismatch
    for hours, lib in ((24, OLDER), (48, OLDER), (168, OLDER), (72, CURRENT), (96, CURRENT)):
        lab = _label(_rx(hours=hours), lib)
        infusible = lab["infusible_ul"]
        hi = (infusible * 101 // 100) // hours          # the highest rate within 1 %
        lo = -((-infusible * 99) // 100 // hours)        # the lowest
        for rate in (lo, hi):
            assert _propose(lab, rate, lib=lib) in ("OK", codes.DOSE_RATE_MISMATCH), \
                (hours, rate)
        assert _propose(lab, hi + 1, lib=lib) == codes.RATE_VOLUME_MISMATCH, (hours, hi + 1)
        assert _propose(lab, lo - 1, lib=lib) == codes.RATE_VOLUME_MISMATCH, (hours, lo - 1)


def test_sr1_the_24h_bag_at_exactly_1_percent_either_way():
    lab = _label(_rx(hours=24, dose=9000))          # 240 mL, 37500 pg/mL exactly
    assert lab["conc_pg_per_ml"] == 37500
    assert _propose(lab, 10100) == "OK"               # 242.4 mL in 24 h: +1 %
    assert _propose(lab, 9900) == "OK"                # 237.6 mL: -1 %
    assert _propose(lab, 10101) == codes.RATE_VOLUME_MISMATCH
    assert _propose(lab, 9899) == codes.RATE_VOLUME_MISMATCH
    assert _propose(lab, 11000) == codes.RATE_VOLUME_MISMATCH      # +10 %
    assert _propose(lab, 10200) == codes.RATE_VOLUME_MISMATCH      # +2 %


def test_sr1_keyed_vtbi_within_1_percent_of_the_infusible_volume():
    lab = _label(_rx(hours=24))                        # 240 mL infusible, 270 mL bag
    for vtbi in (242400, 237600):
        assert _propose(lab, vtbi_ul=vtbi) == "OK", vtbi
    for vtbi in (242401, 237599, 264000):
        assert _propose(lab, vtbi_ul=vtbi) == codes.RATE_VOLUME_MISMATCH, vtbi
    # and never more than the bag holds
    tight = _label(_rx(hours=24), bag_ul=241000)
    assert _propose(tight, vtbi_ul=241000) == "OK"
    assert _propose(tight, vtbi_ul=241001) == codes.RATE_VOLUME_MISMATCH


def test_sr1_printed_rate_and_volume_within_1_percent_of_the_bag_option():
    rx = _rx(hours=24)
    assert _propose(_label(rx, rate_ul_per_h=10100), 10000) == "OK"
    assert _propose(_label(rx, rate_ul_per_h=9900), 10000) == "OK"
    assert _propose(_label(rx, rate_ul_per_h=10101), 10000) == codes.RATE_VOLUME_MISMATCH
    assert _propose(_label(rx, rate_ul_per_h=9899), 10000) == codes.RATE_VOLUME_MISMATCH
    assert _propose(_label(rx, infusible_ul=242400), vtbi_ul=242400) == "OK"
    assert _propose(_label(rx, infusible_ul=237600), 9900, vtbi_ul=237600) == "OK"
    assert _propose(_label(rx, infusible_ul=242401), vtbi_ul=242400) == \
        codes.RATE_VOLUME_MISMATCH
    assert _propose(_label(rx, infusible_ul=237599), 9900, vtbi_ul=237600) == \
        codes.RATE_VOLUME_MISMATCH


def test_sr1_dose_against_rate_times_concentration_within_1_percent():
    rx = _rx(hours=24, dose=9000)                      # 37500 pg/mL at 10 mL/h
    assert _propose(_label(rx, conc_pg_per_ml=37875)) == "OK"          # +1 %
    assert _propose(_label(rx, conc_pg_per_ml=37125)) == "OK"          # -1 %
    assert _propose(_label(rx, conc_pg_per_ml=37876)) == codes.DOSE_RATE_MISMATCH
    assert _propose(_label(rx, conc_pg_per_ml=37124)) == codes.DOSE_RATE_MISMATCH
    assert _propose(_label(rx, conc_pg_per_ml=41250)) == codes.DOSE_RATE_MISMATCH  # +10 %


# --- SR-2: the drug library's hard limits --------------------------------------------------------

def test_sr2_concentration_range_of_the_bag_at_its_ends():
    # highest: the dose cap's concentration + 1 % (28 µg/day at 10 mL/h: 116667 pg/mL)
    rx = _rx(hours=24, dose=28000)
    assert _propose(_label(rx, conc_pg_per_ml=117833)) == "OK"
    assert _propose(_label(rx, conc_pg_per_ml=117834)) == codes.CONCENTRATION_OUT_OF_RANGE
    # lowest: the library's smallest dose's concentration - 1 % (0.5 µg/day: 2083 pg/mL)
    small = _rx(1200, 300, per_m2=5000, hours=24)       # 1.2 kg, 30 cm: 0.1 m² exactly
    lab = _label(small)
    assert lab["conc_pg_per_ml"] == 2083 and _propose(lab) == "OK"
    assert _propose(_label(small, conc_pg_per_ml=2062)) == codes.DOSE_RATE_MISMATCH
    assert _propose(_label(small, conc_pg_per_ml=2061)) == codes.CONCENTRATION_OUT_OF_RANGE


def test_sr2_dose_caps_and_steps_at_their_boundaries():
    assert _code(program.prescribe(_rx(dose=28000), OLDER)) == "OK"
    assert program.prescribe(_rx(dose=28001), OLDER) == codes.DOSE_ABOVE_LIMIT
    assert _code(program.prescribe(_rx(dose=9000), OLDER)) == "OK"
    # between the steps: a soft limit, accepted only with the clinician's override
    for dose in (8999, 9001, 27999):
        assert program.prescribe(_rx(dose=dose), OLDER) == codes.OVERRIDE_REQUIRED, dose
        got = program.prescribe(_rx(dose=dose, override=5), OLDER)
        assert got["flags"] & druglib.FLAG_OVERRIDE, dose
    child = (20000, 1100)                               # BSA 0.78 m²
    assert _code(program.prescribe(_rx(*child, per_m2=15000), OLDER)) == "OK"
    assert program.prescribe(_rx(*child, per_m2=15001), OLDER) == codes.DOSE_ABOVE_LIMIT
    assert program.prescribe(_rx(*child, per_m2=4999), OLDER) == codes.OVERRIDE_REQUIRED
    assert _code(program.prescribe(_rx(*child, per_m2=5000), OLDER)) == "OK"


def test_sr2_bsa_dose_capped_at_the_step_cap_exactly():
    # 5 µg/m²/day is capped at 9 µg/day: 44.999 kg at 2.592 m is 1.7998 m² (8999 ng/day),
    # at 2.593 m 1.8002 m² (9001 computed, 9000 given); the cap holds to 2.6 m
    def daily(h, per_m2=5000):
        return program.prescribe(_rx(44999, h, per_m2=per_m2), OLDER)["daily_ng"]
    assert daily(2592) == 8999
    assert daily(2593) == 9000 and daily(2600) == 9000
    # 15 µg/m²/day is capped at 28 µg/day, at 1.87 m²: no plausible child reaches it
    assert daily(2600, 15000) == 27041 < 28000


def test_sr2_adult_weight_boundary_decides_the_dosing_unit():
    assert _code(program.prescribe(_rx(45000, dose=28000), OLDER)) == "OK"
    assert program.prescribe(_rx(45000, per_m2=15000), OLDER) == codes.UNIT_REJECTED
    assert program.prescribe(_rx(44999, dose=28000), OLDER) == codes.UNIT_REJECTED
    assert _code(program.prescribe(_rx(44999, per_m2=15000), OLDER)) == "OK"


def test_sr2_preservative_weight_limit_at_its_boundary():
    # the 7-day, 96 h and 72 h bags: not below the library's weight (22 kg on the older
    # label, 5.4 kg on the current one); at the weight itself the bag is allowed
    for lib, limit in ((OLDER, 22000), (CURRENT, 5400)):
        for hours in (72, 96, 168):
            h = 1100 if limit > 10000 else 600          # a plausible height for the weight
            at = program.prescribe(_rx(limit, h, per_m2=5000, hours=hours), lib)
            assert isinstance(at, dict) and at["preservative"], (lib.label_version, hours, at)
            assert at["flags"] & druglib.FLAG_PRESERVATIVE
            below = program.prescribe(_rx(limit - 1, h, per_m2=5000, hours=hours), lib)
            assert below == codes.PRESERVATIVE_WEIGHT_LIMIT, (lib.label_version, hours)
        # the preservative-free bags have no weight limit
        assert _code(program.prescribe(_rx(3000, 500, per_m2=5000, hours=24), lib)) == "OK"
    # a label for the limit weight is accepted at the pump; one gram less is refused there
    lab = _label(_rx(22000, 1100, per_m2=5000, hours=168))
    assert _propose(lab) == "OK"
    assert _propose(_label(_rx(22000, 1100, per_m2=5000, hours=168), weight_g=21999)) == \
        codes.PRESERVATIVE_WEIGHT_LIMIT


def test_sr2_only_the_library_bag_durations():
    for lib in (OLDER, CURRENT):
        for hours in (24, 48, 72, 96, 168):
            assert _code(program.prescribe(_rx(hours=hours), lib)) == "OK", hours
        for hours in (1, 23, 25, 47, 49, 71, 73, 95, 97, 167, 169, 336):
            assert program.prescribe(_rx(hours=hours), lib) == codes.DURATION_NOT_OFFERED


def test_sr2_bag_volume_between_the_infusible_volume_and_the_overfill_limit():
    rx = _rx(hours=24)                                  # 240 mL infusible, 50 % overfill
    assert _propose(_label(rx, bag_ul=360000)) == "OK"
    assert _propose(_label(rx, bag_ul=360001)) == codes.RATE_VOLUME_MISMATCH
    assert _propose(_label(rx, bag_ul=240000)) == "OK"
    assert _propose(_label(rx, bag_ul=239999)) == codes.RATE_VOLUME_MISMATCH


# --- plausible inputs and the basic program ------------------------------------------------------

def test_sr13_patient_values_plausible_ranges():
    edges = (("weight_g", 500, 350000), ("height_mm", 300, 2600))
    for key, lo, hi in edges:
        for v in (lo, hi):
            rx = _rx(**{key: v}) if key == "height_mm" else _rx(v, per_m2=5000) \
                if v < 45000 else _rx(v)
            assert program.prescribe(rx, OLDER) not in (codes.BAD_INPUT,), (key, v)
        for v in (lo - 1, hi + 1):
            rx = _rx(**{key: v}) if key == "height_mm" else _rx(v, per_m2=5000) \
                if v < 45000 else _rx(v)
            assert program.prescribe(rx, OLDER) == codes.BAD_INPUT, (key, v)
    for bsa, ok in ((1000, True), (999, False), (35000, True), (35001, False)):
        rx = _rx(30000, per_m2=5000, bsa_cm2=bsa)
        del rx["height_mm"]
        got = program.prescribe(rx, OLDER)
        assert (got != codes.BAD_INPUT) == ok, (bsa, got)
    # a BSA printed beside the height must agree with it within 5 %
    base = program.bsa_cm2(30000, 1350)
    for bsa, ok in ((base * 105 // 100, True), (base * 95 // 100 + 1, True),
                    (base * 105 // 100 + 1, False), (base * 95 // 100 - 1, False)):
        got = program.prescribe(_rx(30000, 1350, per_m2=5000, bsa_cm2=bsa), OLDER)
        assert (got != codes.BSA_MISMATCH) == ok, (bsa, base, got)


def test_basic_program_rate_and_volume_ranges():
    assert isinstance(program.basic(1, 100, 1000), program.Program)
    assert isinstance(program.basic(1, 100000, 1000000), program.Program)
    for rate, vtbi in ((99, 1000), (100001, 1000), (100, 999), (100, 1000001)):
        assert program.basic(1, rate, vtbi) == codes.RATE_VOLUME_MISMATCH, (rate, vtbi)
    assert isinstance(program.basic((1 << 30) - 1, 100, 1000), program.Program)
    for pid in (1 << 30, -1):
        assert program.basic(pid, 100, 1000) == codes.BAD_INPUT
    prog = program.basic(3, 600, 100800)
    assert (prog.rate_ul_per_h, prog.vtbi_nl) == (600, 100800000)
