"""Pharmacy calculator and bag label (issue 3): the printed label is what the pump accepts."""

from __future__ import annotations

import json

import pytest

from host.pharmacy import RxError, preparation, rx_main, sheet
from pump import codes, druglib, program


def _propose(prep, rate_ul=None, lib=None):
    lab = prep["label"]
    r = lab["rate_ul_per_h"] if rate_ul is None else rate_ul
    entry = {"rate": "%d.%03d" % (r // 1000, r % 1000), "unit": "mL/h",
             "vtbi_ml": "%d.%03d" % (lab["infusible_ul"] // 1000, lab["infusible_ul"] % 1000)}
    return program.propose(lab, entry, 1, lib or druglib.load(label_version=lab["label_version"]))


@pytest.mark.parametrize("hours", [24, 48, 168])
@pytest.mark.parametrize("dose", ["9", "28"])
def test_adult_label_accepted_by_pump(hours, dose):
    prep = preparation("blinatumomab", "70", "175", dose_ug_per_day=dose, bag_hours=hours)
    prop = _propose(prep)
    assert isinstance(prop, program.Proposal), prop
    prog = program.confirm(prop, prop.echo)
    assert prog.rate_ul_per_h == {24: 10000, 48: 5000, 168: 600}[hours]
    assert abs(prep["actual_conc_pg_per_ml"] - prep["conc_pg_per_ml"]) * 1000 \
        <= prep["conc_pg_per_ml"]
    assert _propose(prep, prog.rate_ul_per_h * 10) == codes.RATE_VOLUME_MISMATCH


def test_label_table_volumes():
    # label 2.4 tables (24 h bag: 0.83 mL for 9 ug/day, 2.6 mL for 28 ug/day; 48 h: 5.2 mL,
    # 2 vials for 28 ug/day)
    p = preparation("blinatumomab", "70", "175", dose_ug_per_day="9", bag_hours=24)
    assert (p["vials"], round(p["drug_ul"], -1)) == (1, 830)
    p = preparation("blinatumomab", "70", "175", dose_ug_per_day="28", bag_hours=24)
    assert (p["vials"], round(p["drug_ul"], -2)) == (1, 2600)
    p = preparation("blinatumomab", "70", "175", dose_ug_per_day="28", bag_hours=48)
    assert (p["vials"], round(p["drug_ul"], -2)) == (2, 5200)
    assert p["final_ul"] == p["diluent_ul"] + p["stabilizer_ul"] + p["drug_ul"]


def test_bsa_label_accepted_and_capped():
    p = preparation("blinatumomab", "20", "110", dose_ug_per_m2_per_day="15", bag_hours=24)
    assert p["patient_class"] == "bsa" and abs(p["daily_ng"] - 11726) < 20
    assert isinstance(_propose(p), program.Proposal)
    with pytest.raises(RxError) as e:
        preparation("blinatumomab", "15", "100", dose_ug_per_m2_per_day="15", bag_hours=168)
    assert e.value.code == codes.PRESERVATIVE_WEIGHT_LIMIT


def test_refusals_carry_the_pump_code():
    for kw, code in (
        ({"dose_ug_per_day": "30", "bag_hours": 24}, codes.DOSE_ABOVE_LIMIT),
        ({"dose_ug_per_day": "28", "bag_hours": 36}, codes.DURATION_NOT_OFFERED),
        ({"dose_ug_per_m2_per_day": "15", "bag_hours": 24}, codes.UNIT_REJECTED),
        ({"dose_ug_per_day": "15", "bag_hours": 24}, codes.OVERRIDE_REQUIRED),
    ):
        with pytest.raises(RxError) as e:
            preparation("blinatumomab", "70", "175", **kw)
        assert e.value.code == code
    with pytest.raises(RxError):
        preparation("heparin", "70", dose_ug_per_day="28", bag_hours=24)
    with pytest.raises(RxError) as e:   # a 72 h preservative bag for a 15 kg child
        preparation("blinatumomab", "15", "100", dose_ug_per_m2_per_day="5", bag_hours=72)
    assert e.value.code == codes.PRESERVATIVE_WEIGHT_LIMIT


def test_soft_limit_override_marked_on_sheet():
    p = preparation("blinatumomab", "70", "175", dose_ug_per_day="15", bag_hours=24, override=42)
    assert "OVERRIDDEN" in sheet(p)
    prog = program.confirm(_propose(p), _propose(p).echo)
    assert prog.flags & druglib.FLAG_OVERRIDE


def test_rx_main_prints_sheet_and_label(capsys):
    assert rx_main(["--weight-kg", "70", "--height-cm", "175", "--dose-ug-per-day", "28",
                    "--bag-hours", "24", "--cycle", "2", "--day", "1"]) == 0
    out = capsys.readouterr().out
    p = preparation("blinatumomab", "70", "175", dose_ug_per_day="28", bag_hours=24, cycle=2,
                    day=1)
    code = p["label"]["check"]
    assert "plan        r/r cycle 2 days 1-1" in out        # the plan position it is for
    assert len(code) == 7 and code[3] == "-"            # as printed: XXX-XXX, in JSON too
    assert f"CHECK       {code}" in out
    # no trailing zeros on the label (ISMP: "10.0" is read as 100)
    assert "DO NOT FLUSH" in out and "BAG LABEL" in out and "infuse at 10 mL/h" in out
    assert "10.000" not in out and "conc        116.667 ng/mL" in out
    # the code as printed (with its dash) is accepted by the pump, and so is the bare form
    assert isinstance(_propose(p), program.Proposal)
    lab = dict(p["label"], check=code.replace("-", ""))
    assert isinstance(_propose(dict(p, label=lab)), program.Proposal)


def test_rx_main_json_and_exit_codes(capsys):
    assert rx_main(["--weight-kg", "70", "--height-cm", "175", "--dose-ug-per-day", "9",
                    "--bag-hours", "48", "--cycle", "1", "--day", "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] and d["label"]["rate_ul_per_h"] == 5000 and len(d["label"]["check"]) == 7
    assert rx_main(["--weight-kg", "70", "--height-cm", "175", "--dose-ug-per-day", "30",
                    "--bag-hours", "24", "--cycle", "2", "--day", "1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["code"] == codes.DOSE_ABOVE_LIMIT
    assert rx_main(["--weight-kg", "70", "--height-cm", "175", "--bag-hours", "24"]) == 2  # no dose
    # bad input is exit 2 (bad arguments), a refusal exit 1
    assert rx_main(["--weight-kg", "seventy", "--dose-ug-per-day", "9", "--bag-hours",
                    "24"]) == 2
    assert rx_main(["--weight-kg", "70", "--height-cm", "175", "--dose-ug-per-day", "9",
                    "--bag-hours", "72", "--label-version", "2099"]) == 2
