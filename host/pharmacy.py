"""Pharmacy preparation calculator and bag label (`pumpctl rx`).

From the drug, the patient and the prescribed dose and bag option: the label values the pump
will check (the firmware's own `program.prescribe`, so there is one implementation of the
arithmetic), the number of vials, the reconstitution, the volume of reconstituted drug to
add, the final volume and concentration, and a printed label whose check code the pump
verifies when the label is keyed in (`program.label_code`).

Every bag of the library (24, 48, 72, 96 h, 7 days) is prepared from library values; the
sheet lists the unverified ones it used and the JSON gives each value's source
(`provenance`). A preservative bag shows the benzyl alcohol the patient gets in mg/kg/day;
a drug volume below what a syringe measures accurately is flagged with what to do
(docs/drug-library.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from typing import Any

from host import units
from host.errors import RxError, UsageError
from pump import druglib, program

# The plausible range of each input (outside: bad input, exit 2); clinical limits are the drug
# library's (the pump's codes, exit 1). Weight and height are the pump's own plausible ranges.
WEIGHT_KG = (Fraction(program.WEIGHT_MIN_G, 1000), Fraction(program.WEIGHT_MAX_G, 1000))
HEIGHT_CM = (Fraction(program.HEIGHT_MIN_MM, 10), Fraction(program.HEIGHT_MAX_MM, 10))
DOSE_UG = (Fraction(1, 1000), Fraction(1000))   # far above any cap (which gives the pump's
                                                # DOSE_ABOVE_LIMIT), far below absurd
BAG_HOURS_MAX = 24 * 31
OVERRIDE_MAX = (1 << 30) - 1


def _units(value: float | str | None, scale: int, name: str, lo: Fraction, hi: Fraction,
           unit: str) -> int | None:
    """A decimal given on the command line (in `unit`, from lo to hi) as an integer number of
    1/scale units. Anything else is a UsageError naming the option and the range."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if not text or len(text) > 32 or text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise ValueError(text)
        f = Fraction(text)
    except (ValueError, ZeroDivisionError):
        f = None
    if f is None or f < lo or f > hi or f * scale < 1:
        raise UsageError(f"{name}: expected a number of {unit} from {_dec(lo)} to {_dec(hi)}, "
                         f"got {value!r}")
    return round(f * scale)


def _dec(f: Fraction) -> str:
    return units.dec(round(f * 1000))


def preparation(
    drug: str,
    weight_kg: float | str,
    height_cm: float | str | None = None,
    dose_ug_per_day: float | str | None = None,
    dose_ug_per_m2_per_day: float | str | None = None,
    bag_hours: int = 24,
    label_version: str | None = None,
    override: int = 0,
    lib: druglib.Library | None = None,
    regimen: str = "r/r",
    cycle: int | None = None,
    day: int | None = None,
    *,
    alternatives: bool = True,
) -> dict[str, Any]:
    """The preparation sheet and the bag label as a dict (integers in the pump's units).
    `regimen`, `cycle`, `day`: the plan position the bag is made for (its first infusion day
    in the cycle); the label carries it and its check code covers it (the pump refuses a
    label without one, PLAN_REQUIRED)."""
    if lib is None:
        try:
            lib = druglib.load(label_version=label_version)
        except ValueError as e:
            raise UsageError(f"--label-version: {e}") from e
    entry = lib.drug(drug)
    if entry is None:
        raise RxError(f"{drug!r} is not in the drug library", "UNKNOWN_DRUG")
    if (dose_ug_per_day is None) == (dose_ug_per_m2_per_day is None):
        raise UsageError("expected exactly one of the dose per day and the dose per m² per day")
    if not isinstance(bag_hours, int) or isinstance(bag_hours, bool) \
            or not 0 < bag_hours <= BAG_HOURS_MAX:
        raise UsageError(f"--bag-hours: expected whole hours from 1 to {BAG_HOURS_MAX}, "
                         f"got {bag_hours!r}")
    if not isinstance(override, int) or isinstance(override, bool) \
            or not 0 <= override <= OVERRIDE_MAX:
        raise UsageError(f"--override: expected a clinician id from 1 to {OVERRIDE_MAX}, "
                         f"got {override!r}")
    rx: dict[str, Any] = {"drug": drug, "bag_hours": bag_hours}
    rx["weight_g"] = _units(weight_kg, 1000, "--weight-kg", *WEIGHT_KG, unit="kg")
    if height_cm is not None:
        rx["height_mm"] = _units(height_cm, 10, "--height-cm", *HEIGHT_CM, unit="cm")
    if dose_ug_per_day is not None:
        rx["dose_ng_per_day"] = _units(dose_ug_per_day, 1000, "--dose-ug-per-day",
                                       *DOSE_UG, unit="ug/day")
    else:
        rx["dose_ng_per_m2_per_day"] = _units(dose_ug_per_m2_per_day, 1000,
                                              "--dose-ug-per-m2-per-day", *DOSE_UG,
                                              unit="ug/m2/day")
    if override:
        rx["override"] = override
    if cycle is not None or day is not None:
        for name, v in (("--cycle", cycle), ("--day", day)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= 366:
                raise UsageError(f"{name}: expected a whole number from 1 to 366, got {v!r}")
        rx.update(regimen=regimen, cycle=cycle, day_from=day)
    p = program.prescribe(rx, lib)
    if isinstance(p, str):
        raise RxError(f"the pump would reject this prescription: {p}", p)
    bag = entry.bags[bag_hours]
    if bag.stabilizer_ul is None or (bag.diluent_ul is None) == (bag.final_ul is None):
        raise RxError(
            f"preparation volumes for the {bag_hours} h bag are not in the drug library "
            f"(label version {lib.label_version}): consult the label's preparation table"
        )
    # Target concentration (ng/mL) so that rate x 24 h delivers the daily dose.
    target = Fraction(p["daily_ng"] * 1000, p["rate_ul_per_h"] * 24)
    vial = entry.vial_conc_ng_per_ml
    if bag.final_ul is not None:
        # diluent tops the bag up to a fixed final volume: c_vial * V = c_target * final
        final_ul = bag.final_ul
        drug_ul = round(target * final_ul / vial)
        diluent_ul = final_ul - bag.stabilizer_ul - drug_ul
    else:
        # fixed diluent: V solves c_vial * V = c_target * (diluent + stabilizer + V)
        diluent_ul = bag.diluent_ul
        base_ul = diluent_ul + bag.stabilizer_ul
        drug_ul = round(target * base_ul / (vial - target))
        final_ul = base_ul + drug_ul
    if diluent_ul <= 0:
        raise RxError("the drug volume exceeds the bag's final volume")
    actual_pg_per_ml = Fraction(vial * drug_ul * 1000, final_ul)
    vials = -(-drug_ul // entry.vial_withdrawable_ul)
    label = program.make_label(rx, final_ul, lib)
    if isinstance(label, str):
        raise RxError(f"the pump would reject this label: {label}", label)
    doc = druglib.read()
    extra = _bag_extras(doc, lib.label_version, drug, bag, diluent_ul, final_ul,
                        p["rate_ul_per_h"], rx["weight_g"], drug_ul)
    unverified = [
        {"where": w, "value": v, "source": s}
        for w, v, s in druglib.unverified(doc, lib.label_version)
        if f"/bags/{bag_hours}h/" in w or "/bags/" not in w
    ]
    prep = {
        "drug": drug,
        "label_version": lib.label_version,
        "patient_class": "fixed" if rx["weight_g"] >= entry.adult_min_weight_g else "bsa",
        "bsa_cm2": p["bsa_cm2"],
        "daily_ng": p["daily_ng"],
        "bag_hours": bag_hours,
        "rate_ul_per_h": p["rate_ul_per_h"],
        "infusible_ul": p["infusible_ul"],
        "preservative": bag.preservative,
        "diluent": bag.diluent,
        "diluent_ul": diluent_ul,
        "stabilizer_ul": bag.stabilizer_ul,
        "vials": vials,
        "vial_ug": entry.vial_ug,
        "water_ul_per_vial": entry.vial_water_ul,
        "vial_conc_ng_per_ml": vial,
        "drug_ul": drug_ul,
        "drug_ng_in_bag": vial * drug_ul // 1000,
        "final_ul": final_ul,
        "conc_pg_per_ml": label["conc_pg_per_ml"],
        "actual_conc_pg_per_ml": round(actual_pg_per_ml),
        "no_flush": bool(entry.flags & druglib.FLAG_NO_FLUSH),
        "override": bool(override),
        "label": dict(label, check=units.check(label["check"])),   # as printed on the bag
        "unverified": unverified,
        **extra,
    }
    if prep["small_volume"] is not None and alternatives:
        prep["small_volume"]["alternatives"] = _alternatives(
            drug, weight_kg, height_cm, dose_ug_per_day, dose_ug_per_m2_per_day, bag_hours,
            lib, override, prep["small_volume"]["min_ul"])
    return prep


# --- preservative, small volumes, provenance (issue 11) ---------------------------------------

SMALL_VOLUME = "SMALL_DRUG_VOLUME"     # the sheet's flag (not a refusal: exit 0)
_PROVENANCE = ("rate_ul_per_h", "infused_ul", "preservative", "min_weight_g", "diluent",
               "diluent_ul", "final_ul", "stabilizer_ul", "benzyl_alcohol_ug_per_ml")
_VIAL = ("ug", "water_ul", "conc_ng_per_ml", "withdrawable_ul", "min_measurable_ul")


def _doc_node(doc: dict[str, Any], drug: str, hours: int | None, key: str) -> Any:
    """The library document's node for `key`: of the bag of `hours`, or of the drug's vial
    (hours None); None when absent."""
    for d in doc.get("drugs", []):
        if d.get("name") != drug:
            continue
        if hours is None:
            return d.get("vial", {}).get(key)
        for b in d.get("bags", []):
            if b.get("hours") == hours:
                return b.get(key)
    return None


def _sourced(node: Any, version: str) -> dict[str, Any]:
    """{value, source, verified} of one library node for a label version."""
    return {"value": druglib.value(node, version), "source": node.get("source", ""),
            "verified": node.get("verified") is not False}


def _bag_extras(doc: dict[str, Any], version: str, drug: str, bag: Any, diluent_ul: int,
                final_ul: int, rate_ul_per_h: int, weight_g: int,
                drug_ul: int) -> dict[str, Any]:
    """What the sheet adds to the arithmetic: the library values used with their sources,
    the benzyl alcohol a preservative bag gives (mg/kg/day), and the small-volume
    flag (a drug volume below what a standard syringe measures accurately)."""
    provenance = {}
    for key in _PROVENANCE:
        node = _doc_node(doc, drug, bag.hours, key)
        if node is not None:
            provenance[key] = _sourced(node, version)
    for key in _VIAL:
        node = _doc_node(doc, drug, None, key)
        if node is not None:
            provenance["vial/" + key] = _sourced(node, version)
    benzyl = None
    if bag.preservative:
        node = _doc_node(doc, drug, bag.hours, "benzyl_alcohol_ug_per_ml")
        ug_per_ml = None if node is None else druglib.value(node, version)
        if not isinstance(ug_per_ml, int) or ug_per_ml <= 0:
            raise RxError(f"the {bag.hours} h bag is a preservative bag but its benzyl alcohol "
                          f"content is not in the drug library: consult the label")
        in_bag_ug = Fraction(diluent_ul * ug_per_ml, 1000)
        per_day_ug = in_bag_ug * rate_ul_per_h * 24 / final_ul
        benzyl = {
            "diluent_ug_per_ml": ug_per_ml,
            "in_bag_ug": round(in_bag_ug),
            "ug_per_day": round(per_day_ug),
            "ug_per_kg_per_day": round(per_day_ug * 1000 / weight_g),
            "min_weight_g": bag.min_weight_g,
        }
    small = None
    node = _doc_node(doc, drug, None, "min_measurable_ul")
    if node is not None:
        min_ul = druglib.value(node, version)
        if isinstance(min_ul, int) and drug_ul < min_ul:
            small = {"code": SMALL_VOLUME, "drug_ul": drug_ul, "min_ul": min_ul,
                     "source": node.get("source", ""), "alternatives": []}
    return {"provenance": provenance, "benzyl_alcohol": benzyl, "small_volume": small}


def _alternatives(drug: str, weight_kg: float | str, height_cm: float | str | None,
                  dose_ug_per_day: float | str | None,
                  dose_ug_per_m2_per_day: float | str | None, bag_hours: int,
                  lib: druglib.Library, override: int, min_ul: int) -> list[dict[str, int]]:
    """The other bag options this patient may have (the library accepts them) whose drug
    volume is at least min_ul: what the pharmacist may propose to the prescriber."""
    entry = lib.drug(drug)
    out = []
    for hours in sorted(entry.bags if entry is not None else ()):
        if hours == bag_hours:
            continue
        try:
            alt = preparation(drug, weight_kg, height_cm, dose_ug_per_day,
                              dose_ug_per_m2_per_day, hours, lib.label_version, override, lib,
                              alternatives=False)
        except RxError:
            continue
        if alt["drug_ul"] >= min_ul:
            out.append({"bag_hours": hours, "drug_ul": alt["drug_ul"]})
    return out


def _mg_kg(ug_per_kg_per_day: int) -> str:
    """µg/kg/day written as mg/kg/day to 0.01."""
    return units.dec(round(Fraction(ug_per_kg_per_day, 10)), 100)


def _label_preservative(prep: dict[str, Any]) -> list[str]:
    """The bag label's preservative line: benzyl alcohol in mg/kg/day."""
    ba = prep["benzyl_alcohol"]
    if ba is None:
        return []
    return [f"  PRESERVATIVE benzyl alcohol {_mg_kg(ba['ug_per_kg_per_day'])} mg/kg/day"]


def _small_volume_lines(prep: dict[str, Any]) -> list[str]:
    """The small-volume flag in words, with what to do."""
    sv = prep["small_volume"]
    if sv is None:
        return []
    u = units
    lines = [
        "",
        "** FLAG %s: %s of reconstituted drug is below %s, the least volume a syringe "
        "measures accurately." % (sv["code"], u.volume(sv["drug_ul"]), u.volume(sv["min_ul"])),
        "   Source: %s" % sv["source"],
        "   Do not measure it directly.",
    ]
    if sv["alternatives"]:
        lines.append("   Ask the prescriber for a longer bag, which holds more drug: "
                     + "; ".join("%d h bag: %s" % (a["bag_hours"], u.volume(a["drug_ul"]))
                                 for a in sv["alternatives"]) + ".")
        lines.append("   Otherwise prepare by your site's validated intermediate-dilution "
                     "procedure, checked by a second pharmacist.")
    else:
        lines.append("   No bag option for this patient needs %s or more: prepare by your "
                     "site's validated intermediate-dilution procedure, checked by a second "
                     "pharmacist, or ask the prescriber." % u.volume(sv["min_ul"]))
    return lines


def _preservative_lines(prep: dict[str, Any]) -> list[str]:
    """The preservative (benzyl alcohol) the bag gives the patient, for the sheet."""
    ba = prep["benzyl_alcohol"]
    if ba is None:
        return []
    u = units
    return [
        "Benzyl alcohol: %s mg in the bag (diluent %s mg/mL); %s mg/day = %s mg/kg/day "
        "for %s. Not for patients under %s (label version %s)."
        % (u.dec(round(Fraction(ba["in_bag_ug"], 1000)), 1), u.dec(ba["diluent_ug_per_ml"]),
           u.dec(round(Fraction(ba["ug_per_day"], 100)), 10),
           _mg_kg(ba["ug_per_kg_per_day"]), u.weight(prep["label"]["weight_g"]),
           u.weight(ba["min_weight_g"]), prep["label_version"]),
    ]


def sheet(prep: dict[str, Any]) -> str:
    """The preparation sheet and bag label as text (numbers written as host.units writes them:
    the pump's echo shows the very same text)."""
    lab = prep["label"]
    bsa = prep["bsa_cm2"]
    u = units
    lines = [
        f"PREPARATION: {prep['drug']} (label version {prep['label_version']})",
        "Patient: %s%s%s; %s dosing"
        % (u.weight(lab["weight_g"]),
           f", {u.dec(lab['height_mm'], 10)} cm" if "height_mm" in lab else "",
           f", BSA {u.dec(bsa, 10000)} m2" if bsa else "",
           "fixed (>= adult weight)" if prep["patient_class"] == "fixed" else "BSA-based"),
        "Dose: %s%s" % (u.dose(prep["daily_ng"]), "  ** SOFT LIMIT OVERRIDDEN **"
                        if prep["override"] else ""),
        "Bag: %d h at %s, %s infused%s"
        % (prep["bag_hours"], u.rate(prep["rate_ul_per_h"]), u.volume(prep["infusible_ul"]),
           ", PRESERVATIVE (benzyl alcohol)" if prep["preservative"] else ", preservative-free"),
        *_preservative_lines(prep),
        *_small_volume_lines(prep),
        "",
        "1. Reconstitute %d vial(s) of %d ug, each with %s sterile water -> %s ug/mL"
        % (prep["vials"], prep["vial_ug"], u.volume(prep["water_ul_per_vial"]),
           u.dec(prep["vial_conc_ng_per_ml"])),
        "2. Add %s %s to the empty bag" % (u.volume(prep["diluent_ul"]), prep["diluent"]),
        "3. Add %s IV Solution Stabilizer" % u.volume(prep["stabilizer_ul"]),
        "4. Add %s reconstituted drug (%s ug)%s" % (u.volume(prep["drug_ul"]),
                                                   u.dec(prep["drug_ng_in_bag"]),
                                                   "  ** SMALL VOLUME: SEE FLAG **"
                                                   if prep["small_volume"] else ""),
        "Final: %s at %s" % (u.volume(prep["final_ul"]), u.conc(prep["actual_conc_pg_per_ml"])),
    ]
    if prep["no_flush"]:
        lines.append("DO NOT FLUSH THE LINE (bag change or end of infusion). No bolus.")
    if prep["unverified"]:
        lines.append("")
        lines.append("UNVERIFIED library values used (check against your label copy):")
        for v in prep["unverified"]:
            lines.append(f"  {v['where']} = {v['value']}  [{v['source']}]")
    lines += [
        "",
        "+------------------------- BAG LABEL -------------------------+",
        f"  {prep['drug'].upper()}   infuse at {u.rate(lab['rate_ul_per_h'])}",
        f"  weight      {u.weight(lab['weight_g'])}",
    ]
    if "height_mm" in lab:
        lines.append(f"  height      {u.dec(lab['height_mm'], 10)} cm")
    if "dose_ng_per_day" in lab:
        lines.append(f"  dose        {u.dose(lab['dose_ng_per_day'])}")
    else:
        lines.append(f"  dose        {u.dose_m2(lab['dose_ng_per_m2_per_day'])}")
        lines.append(f"              = {u.dose(prep['daily_ng'])} (the pump shows this)")
    lines += [
        f"  bag         {lab['bag_hours']} h",
        f"  conc        {u.conc(lab['conc_pg_per_ml'])}",
        f"  bag volume  {u.volume(lab['bag_volume_ul'])}",
        f"  infuse      {u.volume(lab['infusible_ul'])} (VTBI)",
        *_label_preservative(prep),
        f"  label ver.  {lab['label_version']}",
        *([f"  plan        {lab['regimen']} cycle {lab['cycle']} days {lab['day_from']}-"
           f"{lab['day_to']}"] if "cycle" in lab else []),
        f"  CHECK       {u.check(lab['check'])}",
        "+-------------------------------------------------------------+",
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `pumpctl rx` (host/cli.py adds them to its rx subcommand)."""
    p.add_argument("--drug", default="blinatumomab")
    p.add_argument("--weight-kg", required=True, help="0.5 to 350 kg")
    p.add_argument("--height-cm", help="30 to 260 cm (the pump checks the weight against it)")
    dose = p.add_mutually_exclusive_group(required=True)
    dose.add_argument("--dose-ug-per-day", help="the prescribed dose (patients >= 45 kg)")
    dose.add_argument("--dose-ug-per-m2-per-day", help="the prescribed dose (< 45 kg)")
    p.add_argument("--bag-hours", type=int, required=True, help="24, 48, 72, 96 or 168")
    p.add_argument("--label-version", help="drug-library label version (default: the file's)")
    p.add_argument("--override", type=int, default=0,
                   help="clinician id overriding a soft limit (logged)")
    p.add_argument("--regimen", default="r/r", help="the treatment plan (default r/r)")
    p.add_argument("--cycle", type=int, required=True, help="the plan's cycle (1, 2, ...)")
    p.add_argument("--day", type=int, required=True,
                   help="the infusion day of the cycle the bag is hung on (1 to 28)")


def run(a: argparse.Namespace) -> int:
    """`pumpctl rx` with parsed options: print the sheet (or JSON); 0. A prescription the pump
    would refuse raises RxError (exit 1), bad input UsageError (exit 2)."""
    prep = preparation(
        a.drug, a.weight_kg, a.height_cm, a.dose_ug_per_day, a.dose_ug_per_m2_per_day,
        a.bag_hours, a.label_version, a.override, regimen=a.regimen, cycle=a.cycle,
        day=a.day,
    )
    if a.json:
        print(json.dumps(dict(prep, ok=True), sort_keys=True))
    else:
        print(sheet(prep))
    return 0


def rx_main(argv: list[str] | None = None) -> int:
    """`pumpctl rx ARGS`: exit 0 printed, 1 the prescription is refused, 2 bad arguments
    (pumpctl's own error handling and exit codes)."""
    from host import cli

    return cli.main(["rx", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(rx_main())
