"""Programming: a scenario's bag -> what the clinician keys into the pump. One place.

The pump is programmed the way a clinician does it, through the firmware's own door
(pump.commands: PROPOSE, CONFIRM with the echo, START; the runner drives it): the
pharmacy's bag label (`pump.program.make_label` from the prescription, then the label values
the scenario states — a wrong concentration printed on the label is a pharmacy error, so the
label's check code covers the wrong value) and the operator's keyed rate, unit and VTBI. A
scenario with no patient weight (a bare rate/VTBI study of the mechanism) is programmed as a
basic program (rate and VTBI keyed as text with their units) instead, in the pump's service
mode (no patient attached), by the service role: the pump refuses it anywhere else.
"""

from __future__ import annotations

from typing import Any

from pump import program as fwprogram
from sim.scenario import Bag, Scenario


def _rate_text(v: float) -> str:
    return ("%.3f" % v).rstrip("0").rstrip(".")


# The height of a scenario's adult patient when it gives none: the pump checks every weight
# against a height (issue 11), and 170 cm is a plausible height for any adult weight from 45 to
# 230 kg (BMI 15.6 to 80). A patient under 45 kg (BSA dosing) must have its own height.
DEFAULT_ADULT_HEIGHT_CM = 170.0
ADULT_KG = 45.0


def is_basic(bag: Bag) -> bool:
    """A bag programmed as a basic rate/VTBI (no patient: service mode)."""
    return bag.weight_kg is None


def prescription(bag: Bag) -> dict[str, Any]:
    """The prescription as the firmware takes it: integer units."""
    rx: dict[str, Any] = {"drug": bag.drug, "bag_hours": int(round(bag.bag_hours))}
    if bag.weight_kg is not None:
        rx["weight_g"] = int(round(bag.weight_kg * 1000))
    height = bag.height_cm
    if height is None and bag.weight_kg is not None and bag.weight_kg >= ADULT_KG:
        height = DEFAULT_ADULT_HEIGHT_CM
    if height is not None:
        rx["height_mm"] = int(round(height * 10))
    if bag.bsa_m2 is not None:
        rx["bsa_cm2"] = int(round(bag.bsa_m2 * 10000))
    if bag.dose_ug_per_m2_per_day is not None:
        rx["dose_ng_per_m2_per_day"] = int(round(bag.dose_ug_per_m2_per_day * 1000))
    else:
        rx["dose_ng_per_day"] = int(round(bag.dose_ug_per_day * 1000))
    return rx


DAY_H = 24


def plan_position(scenario: Scenario, step: int) -> tuple[str, int, int]:
    """(regimen, cycle, infusion day) bag `step` is hung on, as the pump counts it: the first
    bag's cycle and day as the scenario gives them (default: day 1 of the first cycle whose
    day-1 step is the first bag's dose), then each bag's hours; an interruption longer than
    the library allows restarts the cycle at day 1."""
    from pump import druglib

    bags = scenario.bags
    first = bags[0]
    drug = druglib.default().drug(first.drug)
    day = first.day or 1
    cycle = first.cycle or 0
    if not cycle:
        rx = prescription(first)
        reg = fwprogram.regimen_index(drug, first.regimen) if drug is not None else 0
        cycle = 1
        if drug is not None and reg:
            due = fwprogram.step_due(drug, reg, 1, day)
            if due is None or fwprogram._step_dose(drug, rx, due[0]) != 0:
                cycle = 2
    hours = 0.0
    limit_ms = drug.interruption_continue_max_s * 1000 if drug is not None else 1 << 62
    for b in bags[1:step + 1]:
        hours += bags[b.index - 1].bag_hours
        if b.gap_ms > limit_ms:
            hours = 0.0
            day = 1
    return first.regimen, cycle, day + int(hours // DAY_H)


def bag_label(bag: Bag, position: tuple[str, int, int] | None = None) -> dict[str, Any] | str:
    """The label the pharmacy prints for the bag: the library's values for the prescription
    and its plan position, with the concentration and volumes the scenario says were printed
    (and the day, when the bag was made for another); or a rejection code
    when the prescription itself is refused (dose above the cap, preservative bag for a small
    patient, unknown drug, ...)."""
    rx = prescription(bag)
    if position is not None:
        rx.update(regimen=position[0], cycle=position[1],
                  day_from=bag.label_day or position[2])
    label: Any = fwprogram.make_label(rx, int(round(bag.fill_ml * 1000)))
    if isinstance(label, str):
        return label
    label["conc_pg_per_ml"] = int(round(bag.concentration_ug_per_ml * 1e6))
    label["infusible_ul"] = int(round(bag.infusible_ml * 1000))
    values = fwprogram.label_values(label)
    if values is None:
        return "BAD_INPUT"
    label["check"] = fwprogram.label_code(values)
    return label


def proposal_args(scenario: Scenario, step: int) -> dict[str, Any] | str:
    """The PROPOSE arguments for bag `step` of the scenario's plan: the bag label and the
    operator's entry, or a basic rate/VTBI; or a rejection code when the pharmacy cannot
    make the label (the prescription itself is refused)."""
    bag = scenario.bags[step]
    if is_basic(bag):
        return {"basic": {"rate": f"{_rate_text(bag.rate_ml_per_h)} {bag.rate_unit}",
                          "vtbi": f"{_rate_text(bag.vtbi_ml)} mL"}}
    label = bag_label(bag, plan_position(scenario, step))
    if isinstance(label, str):
        return label
    entry: dict[str, Any] = {"rate": _rate_text(bag.rate_ml_per_h), "unit": bag.rate_unit,
                             "vtbi_ml": _rate_text(bag.vtbi_ml)}
    if bag.weight_confirmed:
        entry["weight_confirmed"] = True
    return {"label": label, "entry": entry}


def prescribed_dose_ug(scenario: Scenario, hours: float) -> float:
    """What the prescription meant the patient to receive within the first `hours`: each
    bag's ordered dose/day over its label duration, laid out on the plan's timeline."""
    t = 0.0
    total = 0.0
    for bag in scenario.bags:
        t += bag.gap_ms / 3600000.0
        end = t + bag.bag_hours
        overlap = max(0.0, min(end, hours) - t)
        total += bag.dose_ug_per_day * overlap / 24.0
        t = end
    return total


def bag_dose_ug(bag: Bag) -> float:
    """The dose the label says one bag holds for its duration."""
    return bag.dose_ug_per_day * bag.bag_hours / 24.0
