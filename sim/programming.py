"""Programming: a scenario's bag -> the firmware Program the clinician confirms. One place.

For now programs come from `pump.program.basic` (rate and VTBI only); when the drug-library
path (`pump.program.propose` / `confirm`) lands, only `build_program` changes.
"""

from __future__ import annotations

from typing import Any

from pump import program as fwprogram
from pump.program import Program
from sim.scenario import Bag, Scenario


def build_program(scenario: Scenario, pid: int, step: int = 0) -> tuple[Program | None,
                                                                         str | None]:
    """The Program for bag `step` of the scenario's plan, or (None, rejection code)."""
    bag = scenario.bags[step]
    rate_ul_per_h = int(round(bag.rate_ml_per_h * 1000.0))
    vtbi_ul = int(round(bag.vtbi_ml * 1000.0))
    r: Any = fwprogram.basic(pid, rate_ul_per_h, vtbi_ul)
    if isinstance(r, Program):
        return r, None
    return None, str(r)


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
