"""How the host tools write the pump's integers for a person: one place, so the bag label, the
pump's echo and every other line show the same number in the same unit.

No trailing zeros and always a leading zero (ISMP: "1.0" is read as 10, ".5" as 5): 240 mL,
0.6 mL/h, 116.667 ng/mL. Rates in mL/h, volumes in mL, doses in ug/day (or ug/m2/day), the
concentration in ng/mL, and the label's check code as printed, XXX-XXX.
"""

from __future__ import annotations


def dec(n: int, per: int = 1000) -> str:
    """An integer count of 1/per units as a decimal: dec(600) == '0.6', dec(240000) == '240'."""
    n = int(n)
    sign = "-" if n < 0 else ""
    whole, frac = divmod(abs(n), per)
    digits = len(str(per)) - 1
    text = f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".") if digits else str(whole)
    return sign + text


def rate(ul_per_h: int) -> str:
    return f"{dec(ul_per_h)} mL/h"


def volume(ul: int) -> str:
    return f"{dec(ul)} mL"


def volume_nl(nl: int) -> str:
    return f"{dec(nl, 1000000)} mL"


def dose(ng_per_day: int) -> str:
    return f"{dec(ng_per_day)} ug/day"


def dose_m2(ng_per_m2_per_day: int) -> str:
    return f"{dec(ng_per_m2_per_day)} ug/m2/day"


def conc(pg_per_ml: int) -> str:
    return f"{dec(pg_per_ml)} ng/mL"


def weight(g: int) -> str:
    return f"{dec(g)} kg"


def check(code: str) -> str:
    """A label check code as printed on the bag: 'ZBS259' -> 'ZBS-259' (the pump ignores the
    dash, so the printed form is also what is keyed)."""
    c = str(code).replace("-", "").replace(" ", "").upper()
    return f"{c[:3]}-{c[3:]}" if len(c) == 6 else str(code)
