"""Pharmacy preparation calculator and bag label (`pumpctl rx`).

From the drug, the patient and the prescribed dose and bag option: the label values the pump
will check (the firmware's own `program.prescribe`, so there is one implementation of the
arithmetic), the number of vials, the reconstitution, the volume of reconstituted drug to
add, the final volume and concentration, and a printed label whose check code the pump
verifies when the label is keyed in (`program.label_code`).
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from typing import Any

from host.errors import RxError
from pump import druglib, program


def _units(value: float | str | None, scale: int, name: str) -> int | None:
    """A decimal given on the command line as an integer number of 1/scale units."""
    if value is None:
        return None
    try:
        f = Fraction(str(value)) * scale
    except (ValueError, ZeroDivisionError) as e:
        raise RxError(f"{name}: expected a number, got {value!r}") from e
    if f <= 0:
        raise RxError(f"{name}: expected a number > 0, got {value!r}")
    return round(f)


def _ml(ul: int) -> str:
    return "%d.%03d" % (ul // 1000, ul % 1000)


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
) -> dict[str, Any]:
    """The preparation sheet and the bag label as a dict (integers in the pump's units)."""
    if lib is None:
        try:
            lib = druglib.load(label_version=label_version)
        except ValueError as e:
            raise RxError(str(e)) from e
    entry = lib.drug(drug)
    if entry is None:
        raise RxError(f"{drug!r} is not in the drug library", "UNKNOWN_DRUG")
    if (dose_ug_per_day is None) == (dose_ug_per_m2_per_day is None):
        raise RxError("expected exactly one of the dose per day and the dose per m² per day")
    rx: dict[str, Any] = {"drug": drug, "bag_hours": bag_hours}
    rx["weight_g"] = _units(weight_kg, 1000, "weight_kg")
    if height_cm is not None:
        rx["height_mm"] = _units(height_cm, 10, "height_cm")
    if dose_ug_per_day is not None:
        rx["dose_ng_per_day"] = _units(dose_ug_per_day, 1000, "dose_ug_per_day")
    else:
        rx["dose_ng_per_m2_per_day"] = _units(dose_ug_per_m2_per_day, 1000, "dose_ug_per_m2")
    if override:
        rx["override"] = override
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
    unverified = [
        {"where": w, "value": v, "source": s}
        for w, v, s in druglib.unverified(doc, lib.label_version)
        if f"/bags/{bag_hours}h/" in w or "/bags/" not in w
    ]
    return {
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
        "label": label,
        "unverified": unverified,
    }


def sheet(prep: dict[str, Any]) -> str:
    """The preparation sheet and bag label as text."""
    lab = prep["label"]
    bsa = prep["bsa_cm2"]
    lines = [
        f"PREPARATION: {prep['drug']} (label version {prep['label_version']})",
        "Patient: %s kg%s%s; %s dosing"
        % (_ml(lab["weight_g"]), f", {lab['height_mm'] / 10:.1f} cm" if "height_mm" in lab else "",
           f", BSA {bsa / 10000:.4f} m2" if bsa else "",
           "fixed (>= adult weight)" if prep["patient_class"] == "fixed" else "BSA-based"),
        "Dose: %s ug/day%s" % (_ml(prep["daily_ng"]), "  ** SOFT LIMIT OVERRIDDEN **"
                               if prep["override"] else ""),
        "Bag: %d h at %s mL/h, %s mL infused%s"
        % (prep["bag_hours"], _ml(prep["rate_ul_per_h"]), _ml(prep["infusible_ul"]),
           ", PRESERVATIVE (benzyl alcohol)" if prep["preservative"] else ", preservative-free"),
        "",
        "1. Reconstitute %d vial(s) of %d ug, each with %s mL sterile water -> %s ug/mL"
        % (prep["vials"], prep["vial_ug"], _ml(prep["water_ul_per_vial"]),
           _ml(prep["vial_conc_ng_per_ml"])),
        "2. Add %s mL %s to the empty bag" % (_ml(prep["diluent_ul"]), prep["diluent"]),
        "3. Add %s mL IV Solution Stabilizer" % _ml(prep["stabilizer_ul"]),
        "4. Add %s mL reconstituted drug (%s ug)" % (_ml(prep["drug_ul"]),
                                                    _ml(prep["drug_ng_in_bag"])),
        "Final: %s mL at %s ng/mL" % (_ml(prep["final_ul"]), _ml(prep["actual_conc_pg_per_ml"])),
    ]
    if prep["no_flush"]:
        lines.append("DO NOT FLUSH THE LINE (bag change or end of infusion). No bolus.")
    if prep["unverified"]:
        lines.append("")
        lines.append("UNVERIFIED library values used (check against your label copy):")
        for u in prep["unverified"]:
            lines.append(f"  {u['where']} = {u['value']}  [{u['source']}]")
    lines += [
        "",
        "+------------------------- BAG LABEL -------------------------+",
        f"  {prep['drug'].upper()}   infuse at {_ml(lab['rate_ul_per_h'])} mL/h",
        f"  weight      {_ml(lab['weight_g'])} kg",
    ]
    if "height_mm" in lab:
        lines.append(f"  height      {lab['height_mm'] // 10}.{lab['height_mm'] % 10} cm")
    if "dose_ng_per_day" in lab:
        lines.append(f"  dose        {_ml(lab['dose_ng_per_day'])} ug/day")
    else:
        lines.append(f"  dose        {_ml(lab['dose_ng_per_m2_per_day'])} ug/m2/day")
    lines += [
        f"  bag         {lab['bag_hours']} h",
        f"  conc        {_ml(lab['conc_pg_per_ml'])} ng/mL",
        f"  bag volume  {_ml(lab['bag_volume_ul'])} mL",
        f"  infuse      {_ml(lab['infusible_ul'])} mL (VTBI)",
        f"  label ver.  {lab['label_version']}",
        f"  CHECK       {lab['check'][:3]}-{lab['check'][3:]}",
        "+-------------------------------------------------------------+",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumpctl rx", description="Pharmacy preparation sheet and bag label."
    )
    p.add_argument("--drug", default="blinatumomab")
    p.add_argument("--weight-kg", required=True)
    p.add_argument("--height-cm")
    dose = p.add_mutually_exclusive_group(required=True)
    dose.add_argument("--dose-ug-per-day")
    dose.add_argument("--dose-ug-per-m2-per-day")
    p.add_argument("--bag-hours", type=int, required=True, help="24, 48, 72, 96 or 168")
    p.add_argument("--label-version", help="drug-library label version (default: the file's)")
    p.add_argument("--override", type=int, default=0,
                   help="clinician id overriding a soft limit (logged)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def rx_main(argv: list[str] | None = None) -> int:
    """`pumpctl rx`: exit 0 printed, 1 the prescription is refused, 2 bad arguments."""
    try:
        a = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        prep = preparation(
            a.drug, a.weight_kg, a.height_cm, a.dose_ug_per_day, a.dose_ug_per_m2_per_day,
            a.bag_hours, a.label_version, a.override,
        )
    except RxError as e:
        if a.json:
            print(json.dumps({"ok": False, "code": e.code, "error": str(e)}))
        else:
            print(f"pumpctl rx: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(dict(prep, ok=True), sort_keys=True))
    else:
        print(sheet(prep))
    return 0


if __name__ == "__main__":
    raise SystemExit(rx_main())
