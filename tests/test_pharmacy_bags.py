"""Every bag of the drug library through `pumpctl rx` and the pump (issue 11, items 6 and 7):
72 h and 96 h preservative bags prepared from sourced library values, the labelled infusible
volume keyed as the VTBI and accepted (SR-1, no nuisance refusal), the preservative rules of
each label version (SR-2), the benzyl alcohol on the label in mg/kg/day, and small drug
volumes flagged with what to do."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest
from fakehal import FakeHal, tmpdir
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from host import units
from host.pharmacy import SMALL_VOLUME, RxError, preparation, rx_main, sheet
from pump import codes, druglib, program
from pump.codes import CLINICIAN
from pump.commands import Commands
from pump.controller import Controller

BLIN = "blinatumomab"
VERSIONS = tuple(sorted(druglib.read()["label_versions"]))
LIBS = {v: druglib.load(label_version=v) for v in VERSIONS}
BAGS = sorted(LIBS[VERSIONS[0]].drug(BLIN).bags)


def keyed(label: dict[str, Any]) -> dict[str, str]:
    """What the nurse keys from the printed label: its rate and its infusible volume, as
    printed (host.units: '3.3', '240', '129.6')."""
    return {"rate": units.dec(label["rate_ul_per_h"]), "unit": "mL/h",
            "vtbi_ml": units.dec(label["infusible_ul"])}


def prepare(version: str, weight_g: int, height_mm: int, hours: int, step: int) -> dict:
    drug = LIBS[version].drug(BLIN)
    kw: dict[str, Any] = {}
    if weight_g >= drug.adult_min_weight_g:
        kw["dose_ug_per_day"] = units.dec(drug.fixed_steps[step])
    else:
        kw["dose_ug_per_m2_per_day"] = units.dec(drug.bsa_steps[step])
    return preparation(BLIN, units.dec(weight_g), units.dec(height_mm, 10), bag_hours=hours,
                       label_version=version, **kw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.sampled_from(VERSIONS), st.sampled_from(BAGS), st.integers(3000, 150000),
       st.integers(450, 2100), st.integers(0, 1))
def test_sr1_every_library_bag_as_labelled_is_accepted(version, hours, weight_g, height_mm,
                                                       step):
    """For every bag of every label version, any patient and dose step: the label rx prints,
    keyed as printed (rate, and the labelled infusible volume as the VTBI), is accepted by the
    pump's propose path, and the bag rx describes holds what the label says."""
    try:
        prep = prepare(version, weight_g, height_mm, hours, step)
    except RxError as e:
        # a preservative bag below its weight, or a weight no body of that height has
        assert e.code in (codes.PRESERVATIVE_WEIGHT_LIMIT, codes.MEASURES_IMPLAUSIBLE), e
        assume(False)
    lab = prep["label"]
    lib = LIBS[version]
    bag = lib.drug(BLIN).bags[hours]
    prop = program.propose(lab, keyed(lab), 1, lib)
    assert isinstance(prop, program.Proposal), (version, hours, prop)
    prog = program.confirm(prop, prop.echo)
    assert (prog.rate_ul_per_h, prog.vtbi_nl) == (bag.rate_ul_per_h, bag.infused_ul * 1000)
    # the bag as prepared: its parts add up, its concentration is the label's (1 %: the drug
    # volume is given to the µL)
    assert prep["final_ul"] == prep["diluent_ul"] + prep["stabilizer_ul"] + prep["drug_ul"]
    assert abs(prep["actual_conc_pg_per_ml"] - lab["conc_pg_per_ml"]) * 100 \
        <= lab["conc_pg_per_ml"]
    assert lab["bag_volume_ul"] == prep["final_ul"] >= lab["infusible_ul"]
    # a preservative bag states its benzyl alcohol; a preservative-free one none
    assert (prep["benzyl_alcohol"] is not None) == bag.preservative


@pytest.mark.parametrize("hours", BAGS)
@pytest.mark.parametrize("weight_kg,height_cm,dose,cycle", [
    ("70", "175", {"dose_ug_per_day": "9"}, 1), ("70", "175", {"dose_ug_per_day": "28"}, 2),
    ("30", "135", {"dose_ug_per_m2_per_day": "15"}, 2),
])
def test_sr1_labelled_bag_accepted_through_the_pumps_door(hours, weight_kg, height_cm, dose,
                                                          cycle):
    """The same through the pump's one door (PROPOSE, CONFIRM with the echo) on the pump's
    own library (its default label version), the label made for day 1 of a cycle whose
    first step is that dose (the pump checks the plan position, issue 11)."""
    prep = preparation(BLIN, weight_kg, height_cm, bag_hours=hours, cycle=cycle, day=1,
                       **dose)
    ctl = Controller(FakeHal(tmpdir("rx-door")))
    ctl.boot()
    door = Commands(ctl)
    got = door.execute("PROPOSE", {"label": prep["label"], "entry": keyed(prep["label"])},
                       CLINICIAN, 1)
    assert isinstance(got, dict), got
    got = door.execute("CONFIRM", {"echo": got["echo"]}, CLINICIAN, 2)
    assert isinstance(got, dict), got
    assert ctl.program.vtbi_nl == prep["infusible_ul"] * 1000


def _older_72h() -> dict[str, Any]:
    return preparation(BLIN, "70", "175", dose_ug_per_day="28", bag_hours=72,
                       label_version="older")


def test_sr1_72h_bag_keyed_with_its_labelled_240_ml_is_accepted():
    """The issue's case: the older label's 72 h bag, 3.3 mL/h and 240 mL (3.3 x 72 = 237.6
    mL), keyed as labelled, was refused RATE_VOLUME_MISMATCH; now accepted."""
    prep = _older_72h()
    lab = prep["label"]
    assert (lab["rate_ul_per_h"], lab["infusible_ul"]) == (3300, 240000)
    assert "infuse at 3.3 mL/h" in sheet(prep) and "infuse      240 mL (VTBI)" in sheet(prep)
    lib = LIBS["older"]
    for vtbi in ("240", "237.6"):
        entry = {"rate": "3.3", "unit": "mL/h", "vtbi_ml": vtbi}
        assert isinstance(program.propose(lab, entry, 1, lib), program.Proposal), vtbi
    # the label's own pair sits on SR-1's 1 % line: a rate keyed below the label's makes
    # rate x 72 h more than 1 % short of 240 mL, and key bounces are refused as before
    for rate, code in (("3.29", codes.RATE_VOLUME_MISMATCH), ("33", codes.RATE_VOLUME_MISMATCH),
                       ("0.33", codes.RATE_VOLUME_MISMATCH),
                       ("3.34", codes.DOSE_RATE_MISMATCH)):
        entry = {"rate": rate, "unit": "mL/h", "vtbi_ml": "240"}
        assert program.propose(lab, entry, 1, lib) == code, rate
    # a 270 mL VTBI (the whole bag) is still not the infusible volume
    entry = {"rate": "3.3", "unit": "mL/h", "vtbi_ml": "270"}
    assert program.propose(lab, entry, 1, lib) == codes.RATE_VOLUME_MISMATCH


@pytest.mark.parametrize("hours", [72, 96, 168])
def test_sr2_preservative_bag_weight_limit_per_label_version(hours):
    """The label copies: the preservative bags are not for small patients, 22 kg on the older label,
    5.4 kg on the current copy; 4 kg is below both."""
    def rx(weight_kg: str, height_cm: str, version: str) -> dict[str, Any]:
        return preparation(BLIN, weight_kg, height_cm, dose_ug_per_m2_per_day="5",
                           bag_hours=hours, label_version=version)

    for version, refused, accepted, height in (("older", "21.9", "22", "110"),
                                               ("current", "5.3", "5.4", "60")):
        with pytest.raises(RxError) as e:
            rx(refused, height, version)
        assert e.value.code == codes.PRESERVATIVE_WEIGHT_LIMIT
        prep = rx(accepted, height, version)
        assert prep["preservative"] and prep["benzyl_alcohol"]["min_weight_g"] \
            == LIBS[version].drug(BLIN).bags[hours].min_weight_g
    with pytest.raises(RxError):
        rx("15", "100", "older")
    assert rx("15", "100", "current")["preservative"]
    for version in VERSIONS:
        with pytest.raises(RxError) as e:
            rx("4", "55", version)
        assert e.value.code == codes.PRESERVATIVE_WEIGHT_LIMIT


def test_preservative_label_shows_benzyl_alcohol_in_mg_per_kg_per_day():
    prep = _older_72h()
    ba = prep["benzyl_alcohol"]
    # bacteriostatic saline: 9 mg/mL benzyl alcohol; the patient gets rate x 24 h of the bag
    in_bag_mg = Fraction(prep["diluent_ul"] * 9, 1000)
    per_day_mg = in_bag_mg * Fraction(3300 * 24, prep["final_ul"])
    assert ba["diluent_ug_per_ml"] == 9000
    assert abs(ba["ug_per_kg_per_day"] - per_day_mg * 1000 / 70) <= 1
    assert round(per_day_mg / 70, 2) == Fraction(969, 100)      # 9.69 mg/kg/day at 70 kg
    text = sheet(prep)
    assert "PRESERVATIVE benzyl alcohol 9.69 mg/kg/day" in text
    assert "= 9.69 mg/kg/day for 70 kg. Not for patients under 22 kg" in text
    # the smaller the patient, the larger the dose per kg: a 5.4 kg infant on the current
    # copy's 72 h bag gets about 70 mg/kg/day
    small = preparation(BLIN, "5.4", "58", dose_ug_per_m2_per_day="5", bag_hours=72,
                        label_version="current")
    assert 68000 < small["benzyl_alcohol"]["ug_per_kg_per_day"] < 72000
    free = preparation(BLIN, "70", "175", dose_ug_per_day="28", bag_hours=24)
    assert free["benzyl_alcohol"] is None and "benzyl" not in sheet(free).split("Bag:")[1]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("hours", [72, 96])
def test_72h_96h_preparation_from_sourced_values_marked_unverified(version, hours):
    """Every library value the 72/96 h sheet uses has its source; those that differ between
    label versions (or were derived) are listed as UNVERIFIED on the sheet."""
    prep = preparation(BLIN, "70", "175", dose_ug_per_day="28", bag_hours=hours,
                       label_version=version)
    prov = prep["provenance"]
    for key in ("rate_ul_per_h", "infused_ul", "min_weight_g", "final_ul", "stabilizer_ul",
                "benzyl_alcohol_ug_per_ml", "diluent", "vial/conc_ng_per_ml",
                "vial/min_measurable_ul"):
        assert len(prov[key]["source"]) > 10, key
    bag = LIBS[version].drug(BLIN).bags[hours]
    assert (prov["rate_ul_per_h"]["value"], prov["final_ul"]["value"]) \
        == (bag.rate_ul_per_h, bag.final_ul)
    flagged = {u["where"].rsplit("/", 1)[1] for u in prep["unverified"]}
    assert {"rate_ul_per_h", "infused_ul", "min_weight_g", "final_ul",
            "stabilizer_ul"} <= flagged
    for key in flagged & set(prov):
        assert prov[key]["verified"] is False
    text = sheet(prep)
    assert "UNVERIFIED library values used" in text
    assert f"/bags/{hours}h/final_ul = {bag.final_ul}" in text
    assert prep["diluent"].startswith("Bacteriostatic") and prep["final_ul"] == bag.final_ul


def _infant(hours: int = 24, weight: str = "3", height: str = "50") -> dict[str, Any]:
    return preparation(BLIN, weight, height, dose_ug_per_m2_per_day="5", bag_hours=hours)


def test_small_drug_volume_flagged_with_its_threshold_and_what_to_do(capsys):
    """A 3 kg, 50 cm infant at 5 ug/m2/day: a 24 h bag needs under 0.1 mL of reconstituted
    drug, less than a 1 mL syringe measures accurately (Uppal et al., CMAJ 2011). The sheet
    flags it and names the bag this patient may have that needs more (48 h: preservative
    bags are not for 3 kg)."""
    prep = _infant()
    sv = prep["small_volume"]
    assert prep["drug_ul"] < 100 and sv["code"] == SMALL_VOLUME and sv["min_ul"] == 100
    assert "CMAJ" in sv["source"]
    assert [a["bag_hours"] for a in sv["alternatives"]] == [48]
    assert sv["alternatives"][0]["drug_ul"] >= 100
    text = sheet(prep)
    assert f"FLAG {SMALL_VOLUME}" in text and "below 0.1 mL" in text
    assert "Do not measure it directly" in text and "48 h bag: " in text
    assert "SMALL VOLUME: SEE FLAG" in text
    # a flag, not a refusal: exit 0, in the JSON too
    assert rx_main(["--weight-kg", "3", "--height-cm", "50", "--dose-ug-per-m2-per-day", "5",
                    "--bag-hours", "24", "--cycle", "1", "--day", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["small_volume"]["code"] == SMALL_VOLUME
    # the 48 h bag itself is not flagged; nor is an adult's
    assert _infant(48)["small_volume"] is None
    assert _older_72h()["small_volume"] is None


def test_small_drug_volume_with_no_other_bag_says_so():
    """The smallest patient: no bag option needs 0.1 mL or more."""
    prep = _infant(48, "0.5", "30")
    assert prep["small_volume"]["alternatives"] == []
    assert "No bag option for this patient needs 0.1 mL or more" in sheet(prep)
