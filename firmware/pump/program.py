"""Programs: what the controller accepts to deliver, and how a prescription, its bag label and
the operator's entries become one (SR-1, SR-2, SR-3). Also the bag label's check code.

A Program is only built by the functions here, after validation; the controller takes
nothing else. Integers only: rate in µL/h, VTBI in nL (µL when keyed), dose in ng/day or
ng/m²/day, concentration in pg/mL, weight in g, height in mm, BSA in cm² (1 m² = 10000).
Validation may use larger intermediate ints (it is not the steady-state path); every value
a Program keeps is below 2**30.

Two steps (SR-3): `propose(rx, entry, pid)` (or `propose_basic(d, pid)` for a bench program
without the drug library) checks everything and returns a Proposal whose `echo` the pump
shows; `confirm(proposal, echo)` accepts only the very same values and returns the Program.
Neither raises on any input: a bad one gets a code from pump.codes (the cases are tabled in
docs/program-rejections.md). A rate's unit is judged in one place: `keyed_rate`.
"""
from pump import druglib
from pump.codes import (
    BAD_INPUT,
    BSA_MISMATCH,
    CONCENTRATION_OUT_OF_RANGE,
    DOSE_ABOVE_LIMIT,
    DOSE_RATE_MISMATCH,
    DOSE_STEP_MISMATCH,
    DURATION_NOT_OFFERED,
    HEIGHT_REQUIRED,
    LABEL_CHECK_MISMATCH,
    MEASURES_IMPLAUSIBLE,
    OVERRIDE_REQUIRED,
    PLAN_REQUIRED,
    PRESERVATIVE_WEIGHT_LIMIT,
    RATE_VOLUME_MISMATCH,
    UNIT_REJECTED,
    UNKNOWN_DRUG,
)
from pump.crc import crc32

RATE_MIN_UL_PER_H = 100        # 0.1 mL/h
RATE_MAX_UL_PER_H = 100000     # 100 mL/h
VTBI_MIN_UL = 1000             # 1 mL
VTBI_MAX_UL = 1000000          # 1000 mL
# Plausible-input ranges (outside: BAD_INPUT). Clinical limits come from the library.
WEIGHT_MIN_G = 500
WEIGHT_MAX_G = 350000
HEIGHT_MIN_MM = 300
HEIGHT_MAX_MM = 2600
BSA_MIN_CM2 = 1000             # 0.1 m²
BSA_MAX_CM2 = 35000            # 3.5 m²
BSA_AGREE_PCT = 5              # a label giving both BSA and height: they must agree
CONC_MAX_PG_PER_ML = 1 << 29   # 537 µg/mL, far above any bag (keeps label ints small)
BAG_MAX_UL = 10000000          # 10 L
RATE_UNITS = ("mL/h", "ml/h")  # SR-3: the only unit a rate is keyed in
VTBI_UNIT = "mL"               # a basic program's VTBI, keyed with its unit

# The bag label's fields, in check-code order. The dose is the prescription's: one of the two
# dose fields and one of height/BSA may be absent (0 in the code).
LABEL_KEYS = ("drug", "weight_g", "height_mm", "bsa_cm2", "dose_ng_per_day",
              "dose_ng_per_m2_per_day", "bag_hours", "rate_ul_per_h", "conc_pg_per_ml",
              "bag_volume_ul", "infusible_ul")
_OPTIONAL = ("height_mm", "bsa_cm2", "dose_ng_per_day", "dose_ng_per_m2_per_day")
# The plan position a label was made for (issue 11): the regimen (a name of the drug's
# regimens), the cycle and the infusion days the bag covers. When present, the check code
# covers them too (after LABEL_KEYS: the regimen as its 1-based place in the sorted names).
PLAN_KEYS = ("cycle", "day_from", "day_to")
DAY_S = 86400
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"   # Crockford base32: no I, L, O, U
CHECK_LEN = 6                                 # 6 x 5 bits = 30 bits of CRC-32


class Program:
    """An accepted program. `check` is a CRC over the delivery fields, so a copy kept
    elsewhere (the safety monitor's) can prove it still matches."""

    def __init__(self, pid, rate_ul_per_h, vtbi_nl, drug=0, conc_pg_per_ml=0,
                 dose_ng_per_day=0, bag_hours=0, flags=0):
        self.pid = pid
        self.rate_ul_per_h = rate_ul_per_h
        self.vtbi_nl = vtbi_nl
        self.drug = drug
        self.conc_pg_per_ml = conc_pg_per_ml
        self.dose_ng_per_day = dose_ng_per_day
        self.bag_hours = bag_hours
        self.flags = flags
        self.check = self.compute_check()
        # A clinical program's patient and plan position, for the controller's record:
        # (weight g, plan_word, cycle running time s); None for a bench program.
        self.patient = None
        # The bag's label (its check code as an int, 0: none, a bench program): the same
        # label is the same bag, whose hang time runs from its first run (SR-7).
        self.label = 0

    def fields(self):
        return (self.pid, self.rate_ul_per_h, self.vtbi_nl, self.drug, self.conc_pg_per_ml,
                self.dose_ng_per_day, self.bag_hours, self.flags)

    def compute_check(self):
        return _crc_ints(self.fields()) & 0x3FFFFFFF

    def intact(self):
        return self.check == self.compute_check()


def _crc_ints(values):
    """CRC-32 over the values as little-endian u32 (each must be 0 <= v < 2**32)."""
    b = bytearray(4 * len(values))
    i = 0
    for v in values:
        b[i] = v & 0xFF
        b[i + 1] = (v >> 8) & 0xFF
        b[i + 2] = (v >> 16) & 0xFF
        b[i + 3] = (v >> 24) & 0xFF
        i += 4
    return crc32(b)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def basic(pid, rate_ul_per_h, vtbi_ul):
    """A Program from a rate (µL/h) and VTBI (µL), or a rejection code. Never raises.
    No drug library checks: for service and bench use, not for a prescription."""
    code = _basic_check(pid, rate_ul_per_h, vtbi_ul)
    if code is not None:
        return code
    return Program(pid, rate_ul_per_h, vtbi_ul * 1000)


def _basic_check(pid, rate_ul_per_h, vtbi_ul):
    if not (is_int(pid) and is_int(rate_ul_per_h) and is_int(vtbi_ul)):
        return BAD_INPUT
    if pid < 0 or pid >= (1 << 30):
        return BAD_INPUT
    if not (RATE_MIN_UL_PER_H <= rate_ul_per_h <= RATE_MAX_UL_PER_H):
        return RATE_VOLUME_MISMATCH
    if not (VTBI_MIN_UL <= vtbi_ul <= VTBI_MAX_UL):
        return RATE_VOLUME_MISMATCH
    return None


def from_record(payload):
    """Rebuild a Program from a journal PROGRAM payload; None when it fails its check."""
    p = Program(payload[0], payload[1], payload[2], payload[3], payload[4], payload[5],
                payload[6], payload[7])
    if p.check != payload[8]:
        return None
    return p


def to_record(p, payload):
    """Fill a journal PROGRAM payload from a Program."""
    f = p.fields()
    i = 0
    for v in f:
        payload[i] = v
        i += 1
    payload[8] = p.check


# --- integer helpers ---------------------------------------------------------------------

def isqrt(n):
    """The largest r with r * r <= n (0 for n <= 0): Newton's method on integers."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


def bsa_cm2(weight_g, height_mm):
    """Mosteller BSA in cm²: sqrt(h_cm * w_kg / 3600) m² = (5/3) * sqrt(h_mm * w_g) cm²."""
    return (5 * isqrt(weight_g * height_mm) + 1) // 3


def _near(x, ref):
    """x equals ref within 1 % of ref (ref > 0)."""
    d = x - ref
    if d < 0:
        d = -d
    return d * 100 <= ref


def _div_round(a, b):
    return (2 * a + b) // (2 * b)


def milli(v):
    """A keyed decimal as an integer number of thousandths, or None when it is not one.

    Accepts an int (whole units), a decimal string ("0.6", "240", "100.800") or a float
    (formatted once to 3 decimals, never used in arithmetic). More than 3 significant
    decimals, signs, exponents, blanks and anything else give None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v * 1000 if 0 <= v < 1000000000 else None
    if isinstance(v, float):
        if not (0 <= v < 1000000000):      # also false for NaN
            return None
        v = "%.3f" % v
    if not isinstance(v, str) or not (0 < len(v) <= 20):
        return None
    s = v.strip()
    i = s.find(".")
    if i < 0:
        w = s
        f = ""
    else:
        w = s[:i]
        f = s[i + 1:].rstrip("0")
    if (w == "" and f == "") or len(f) > 3 or len(w) > 9:
        return None
    for c in w + f:
        if c not in "0123456789":
            return None
    return int(w or "0") * 1000 + int((f + "000")[:3])


# --- the bag label's check code ----------------------------------------------------------

def label_code(values):
    """The 6-character check code over the label values (in LABEL_KEYS order, the drug as
    its library index, absent fields as 0). The host prints it; propose verifies it."""
    c = _crc_ints(values) & 0x3FFFFFFF
    out = ""
    for _ in range(CHECK_LEN):
        out = _B32[c & 31] + out
        c >>= 5
    return out


def _norm_code(s):
    """A keyed check code in canonical form (Crockford: O->0, I/L->1, case-insensitive)."""
    if not isinstance(s, str) or len(s) > 16:
        return None
    out = ""
    for c in s.upper():
        if c == "O":
            c = "0"
        elif c == "I" or c == "L":
            c = "1"
        elif c == "-" or c == " ":
            continue
        if c not in _B32:
            return None
        out += c
    return out


# --- the prescription ----------------------------------------------------------------------

_ABSENT = -1


def _field(d, key, lo, hi):
    """d[key] as an int in [lo, hi] (hi None: unbounded); _ABSENT when missing, else None."""
    if key not in d:
        return _ABSENT
    v = d[key]
    if not is_int(v) or v < lo or (hi is not None and v > hi):
        return None
    return v


class _Rx:
    """A parsed prescription: the patient, the dose and the bag option (no label yet)."""

    def __init__(self):
        self.drug = None
        self.bag = None
        self.weight_g = 0
        self.height_mm = 0
        self.bsa_cm2 = 0          # as given on the label (0: absent)
        self.bsa_used_cm2 = 0     # given or computed
        self.dose_ng_per_day = 0
        self.dose_ng_per_m2_per_day = 0
        self.daily_ng = 0         # the daily dose to deliver
        self.flags = 0


def _prescription(rx, lib):
    """Check patient, dose and bag option against the library (SR-2): an _Rx or a code."""
    if not isinstance(rx, dict):
        return BAD_INPUT
    name = rx.get("drug")
    if not isinstance(name, str):
        return BAD_INPUT
    if "label_version" in rx and rx["label_version"] != lib.label_version:
        return BAD_INPUT
    drug = lib.drug(name)
    if drug is None:
        return UNKNOWN_DRUG
    r = _Rx()
    r.drug = drug
    ck = drug.checks
    w = _field(rx, "weight_g", WEIGHT_MIN_G, WEIGHT_MAX_G)
    h = _field(rx, "height_mm", HEIGHT_MIN_MM, HEIGHT_MAX_MM)
    b = _field(rx, "bsa_cm2", BSA_MIN_CM2, BSA_MAX_CM2)
    fixed = _field(rx, "dose_ng_per_day", 1, None)
    per_m2 = _field(rx, "dose_ng_per_m2_per_day", 1, None)
    hours = _field(rx, "bag_hours", 1, None)
    ovr = _field(rx, "override", 0, (1 << 30) - 1)
    if None in (w, h, b, fixed, per_m2, hours, ovr) or w == _ABSENT or hours == _ABSENT:
        return BAD_INPUT
    # The patient's measures, cross-checked: a weight is judged against a height (a body mass
    # index no living patient has is a slip: 4.5 kg keyed as 45 kg), and the pump uses the
    # BSA it computes from them; a label BSA must agree with it.
    if h == _ABSENT:
        return HEIGHT_REQUIRED
    r.weight_g = w
    r.height_mm = h
    hh = h * h                               # BMI (kg/m²) = weight g x 1000 / height mm²
    if w * 1000 < ck[0] * hh or w * 1000 > ck[1] * hh:
        return MEASURES_IMPLAUSIBLE
    r.bsa_used_cm2 = bsa_cm2(w, h)
    if b != _ABSENT:
        if not _near_pct(b, r.bsa_used_cm2, BSA_AGREE_PCT):
            return BSA_MISMATCH
        r.bsa_cm2 = b
    bag = drug.bag(hours)
    if bag is None:
        return DURATION_NOT_OFFERED
    r.bag = bag
    if bag.preservative:
        r.flags |= druglib.FLAG_PRESERVATIVE
        if w < bag.min_weight_g:
            return PRESERVATIVE_WEIGHT_LIMIT
    code = _dose(r, drug, fixed, per_m2, ovr)
    if code is not None:
        return code
    r.flags |= drug.flags
    return r


def _near_pct(x, ref, pct):
    d = x - ref
    if d < 0:
        d = -d
    return d * 100 <= ref * pct


def _dose(r, drug, fixed, per_m2, ovr):
    """The daily dose for the patient's class (fixed >= the adult weight, else per m²).
    A dose that is not one of the label's steps is a soft limit: accepted only with a
    clinician override (logged through FLAG_OVERRIDE), else OVERRIDE_REQUIRED."""
    soft = False
    if r.weight_g >= drug.adult_min_weight_g:
        if per_m2 != _ABSENT:
            return UNIT_REJECTED          # >= 45 kg: fixed dosing in µg/day only
        if fixed == _ABSENT:
            return BAD_INPUT
        if fixed > drug.dose_cap_ng_per_day():
            return DOSE_ABOVE_LIMIT
        soft = fixed not in drug.fixed_steps
        r.dose_ng_per_day = fixed
        r.daily_ng = fixed
    else:
        if fixed != _ABSENT:
            return UNIT_REJECTED          # < 45 kg: BSA-based dosing in µg/m²/day only
        if per_m2 == _ABSENT or r.bsa_used_cm2 == 0:
            return BAD_INPUT
        steps = drug.bsa_steps
        if per_m2 > steps[len(steps) - 1]:
            return DOSE_ABOVE_LIMIT
        i = 0
        while steps[i] < per_m2:
            i += 1
        soft = steps[i] != per_m2
        cap = drug.bsa_caps[i]
        r.dose_ng_per_m2_per_day = per_m2
        daily = _div_round(per_m2 * r.bsa_used_cm2, 10000)
        r.daily_ng = cap if daily > cap else daily
    if r.daily_ng < 1:
        return BAD_INPUT
    if soft:
        if ovr == _ABSENT or ovr == 0:
            return OVERRIDE_REQUIRED
        r.flags |= druglib.FLAG_OVERRIDE
    return None


def _conc_for(daily_ng, rate_ul_per_h):
    """pg/mL that gives daily_ng per day at the rate: ng * 10^6 / (µL/h * 24)."""
    return _div_round(daily_ng * 1000000, rate_ul_per_h * 24)


def _lib(lib):
    return lib if lib is not None else druglib.default()


def prescribe(rx, lib=None):
    """The label values the library gives for a prescription (drug, patient, dose, bag_hours):
    a dict with rate_ul_per_h, infusible_ul, conc_pg_per_ml, daily_ng, bsa_cm2 and flags, or a
    code. The host's pharmacy calculator uses this: one place for the arithmetic."""
    try:
        lib = _lib(lib)
        r = _prescription(rx, lib)
        if isinstance(r, str):
            return r
        bag = r.bag
        return {
            "drug_index": r.drug.index, "weight_g": r.weight_g, "height_mm": r.height_mm,
            "bsa_cm2": r.bsa_used_cm2, "daily_ng": r.daily_ng, "bag_hours": bag.hours,
            "rate_ul_per_h": bag.rate_ul_per_h, "infusible_ul": bag.infused_ul,
            "conc_pg_per_ml": _conc_for(r.daily_ng, bag.rate_ul_per_h), "flags": r.flags,
            "preservative": bag.preservative, "label_version": lib.label_version,
        }
    except Exception:   # noqa: BLE001 - never raise on user input
        return BAD_INPUT


def label_values(rx, lib=None):
    """The LABEL_KEYS values of a label dict as ints (drug as its index), or None."""
    try:
        lib = _lib(lib)
        drug = lib.drug(rx.get("drug"))
        if drug is None:
            return None
        out = [drug.index]
        for k in LABEL_KEYS[1:]:
            v = _field(rx, k, 0, (1 << 30) - 1)
            if v is None or (v == _ABSENT and k not in _OPTIONAL):
                return None
            out.append(0 if v == _ABSENT else v)
        if "regimen" in rx or "cycle" in rx:
            reg = regimen_index(drug, rx.get("regimen"))
            if reg == 0:
                return None
            out.append(reg)
            for k in PLAN_KEYS:
                v = _field(rx, k, 1, 366)
                if v is None or v == _ABSENT:
                    return None
                out.append(v)
        return out
    except Exception:   # noqa: BLE001 - never raise on user input
        return None


def make_label(rx, bag_volume_ul, lib=None):
    """The full bag label for a prescription (its computed rate, infusible volume and
    concentration, the given bag volume and the check code), or a code."""
    p = prescribe(rx, lib)
    if isinstance(p, str):
        return p
    out = {}
    for k in LABEL_KEYS + ("override", "regimen", "cycle"):
        if k in rx:
            out[k] = rx[k]
    if "cycle" in rx or "regimen" in rx:
        # the plan position: from day_from, the days this bag covers, and its dose must be
        # the step the plan has due that day (the pharmacy's own check)
        pos = _label_position(rx, p, lib)
        if isinstance(pos, str):
            return pos
        out["day_from"] = pos[0]
        out["day_to"] = pos[1]
    out["rate_ul_per_h"] = p["rate_ul_per_h"]
    out["conc_pg_per_ml"] = p["conc_pg_per_ml"]
    out["infusible_ul"] = p["infusible_ul"]
    out["bag_volume_ul"] = bag_volume_ul
    out["label_version"] = p["label_version"]
    vals = label_values(out, lib)
    if vals is None:
        return BAD_INPUT
    out["check"] = label_code(vals)
    return out


# --- propose / confirm ---------------------------------------------------------------------

class Proposal:
    """Validated values waiting for the operator's echo (SR-3). `echo` is what the pump
    shows: (drug name, rate µL/h, VTBI µL, dose ng/day, concentration pg/mL, bag hours).
    It holds no Program: only confirm() makes one."""

    def __init__(self, fields, echo, patient=None, label=0):
        self._fields = fields
        self.echo = echo
        self.patient = patient        # handed to the Program (see Program.patient)
        self.label = label            # handed to the Program (see Program.label)
        self._check = self._compute()

    def _compute(self):
        return _crc_ints(self._fields) ^ _crc_ints(self.echo[1:])

    def intact(self):
        return self._check == self._compute()


def propose(rx, entry, pid, lib=None, patient=None):
    """A Proposal for the prescription/label `rx` and the operator's `entry`
    ({"rate": keyed value, "unit": "mL/h", "vtbi_ml": keyed value}, and
    "weight_confirmed": true when a clinician confirms a changed weight), or a rejection
    code. `patient`: what the pump holds of this patient (Controller.patient(): weight g,
    plan word, cycle running time s, open interruption s), None for a new patient.
    Never raises."""
    try:
        return _propose(rx, entry, pid, _lib(lib), patient)
    except Exception:   # noqa: BLE001 - defence in depth: never raise on user input
        return BAD_INPUT


def _propose(rx, entry, pid, lib, patient):
    if not is_int(pid) or pid < 0 or pid >= (1 << 30) or not isinstance(entry, dict):
        return BAD_INPUT
    if not isinstance(rx, dict) or not isinstance(rx.get("drug"), str):
        return BAD_INPUT
    if lib.drug(rx["drug"]) is None:
        return UNKNOWN_DRUG
    # The label as keyed: every field a plain int, and its check code matching. First, so a
    # transcription error reads as one whatever field it hit.
    vals = label_values(rx, lib)
    if vals is None:
        return BAD_INPUT
    if _norm_code(rx.get("check")) != label_code(vals):
        return LABEL_CHECK_MISMATCH
    bag_label = (_crc_ints(vals) & 0x3FFFFFFF) or 1          # never 0 (0: no label)
    r = _prescription(rx, lib)
    if isinstance(r, str):
        return r
    pt = None
    if patient is not None:
        pt = _plan_check(rx, r, patient, lib)
        if isinstance(pt, str):
            return pt
    if patient is not None and patient[0]:
        # the same patient's weight on the previous bag: a large change is confirmed
        d = r.weight_g - patient[0]
        if d < 0:
            d = -d
        if d * 100 > patient[0] * r.drug.checks[2]:
            if entry.get("weight_confirmed") is not True:
                return OVERRIDE_REQUIRED
            r.flags |= druglib.FLAG_OVERRIDE
    rate = keyed_rate(entry.get("rate"), entry.get("unit"))
    if isinstance(rate, str):
        return rate
    vtbi_ul = milli(entry.get("vtbi_ml"))
    if vtbi_ul is None:
        return BAD_INPUT
    bag = r.bag
    conc = rx["conc_pg_per_ml"]
    label_rate = rx["rate_ul_per_h"]
    infusible = rx["infusible_ul"]
    bag_ul = rx["bag_volume_ul"]
    # SR-2 hard limit: the concentration range this bag option allows for this drug.
    lo = _conc_for(r.drug.dose_min_ng_per_day, bag.rate_ul_per_h) * 99 // 100
    hi = _conc_for(r.drug.dose_cap_ng_per_day(), bag.rate_ul_per_h) * 101 // 100
    if conc < lo or conc > hi or conc > CONC_MAX_PG_PER_ML:
        return CONCENTRATION_OUT_OF_RANGE
    # SR-1 on the label: its rate and volumes are the bag option's.
    if not (_near(label_rate, bag.rate_ul_per_h) and _near(infusible, bag.infused_ul)):
        return RATE_VOLUME_MISMATCH
    if bag_ul < infusible or bag_ul * 100 > infusible * (100 + r.drug.max_overfill_pct) \
            or bag_ul > BAG_MAX_UL:
        return RATE_VOLUME_MISMATCH
    # SR-1 on the keyed values: rate x duration = infusible volume; VTBI = infusible volume.
    if not (RATE_MIN_UL_PER_H <= rate <= RATE_MAX_UL_PER_H):
        return RATE_VOLUME_MISMATCH
    if not _near(rate * bag.hours, infusible):
        return RATE_VOLUME_MISMATCH
    if not (VTBI_MIN_UL <= vtbi_ul <= VTBI_MAX_UL) or not _near(vtbi_ul, infusible) \
            or vtbi_ul > bag_ul:
        return RATE_VOLUME_MISMATCH
    # SR-1: dose/day = rate x 24 x concentration (pg -> ng: / 10^6).
    if not _near(rate * 24 * conc, r.daily_ng * 1000000):
        return DOSE_RATE_MISMATCH
    fields = (pid, rate, vtbi_ul * 1000, r.drug.index, conc, r.daily_ng, bag.hours, r.flags)
    echo = (r.drug.name, rate, vtbi_ul, r.daily_ng, conc, bag.hours)
    return Proposal(fields, echo, pt, bag_label)


def keyed_rate(value, unit):
    """A keyed rate in µL/h: `value` a keyed decimal in `unit`, which must be one of
    RATE_UNITS (SR-3: mL/h only), else UNIT_REJECTED; BAD_INPUT for a value that is not a
    decimal. The one place a rate's unit is judged."""
    if not isinstance(unit, str) or unit not in RATE_UNITS:
        return UNIT_REJECTED
    v = milli(value)
    return BAD_INPUT if v is None else v


def _split_keyed(text):
    """A keyed '<decimal> <unit>' as [decimal, unit], or a code (one word: no unit)."""
    if not isinstance(text, str) or len(text) > 32:
        return BAD_INPUT
    p = text.split()
    if len(p) != 2:
        return UNIT_REJECTED if len(p) == 1 else BAD_INPUT
    return p


def propose_basic(d, pid):
    """A Proposal for a basic program (no drug library: bench and service use) from the
    operator's {"rate": "10 mL/h", "vtbi": "240 mL"}, or a rejection code. Confirmed like
    any proposal (confirm); its echo is ("-", rate µL/h, VTBI µL, 0, 0, 0). Never raises."""
    try:
        if not isinstance(d, dict) or len(d) != 2:
            return BAD_INPUT
        p = _split_keyed(d.get("rate"))
        if isinstance(p, str):
            return p
        rate = keyed_rate(p[0], p[1])
        if isinstance(rate, str):
            return rate
        p = _split_keyed(d.get("vtbi"))
        if isinstance(p, str):
            return p
        if p[1] != VTBI_UNIT:
            return UNIT_REJECTED
        vtbi_ul = milli(p[0])
        if vtbi_ul is None:
            return BAD_INPUT
        code = _basic_check(pid, rate, vtbi_ul)
        if code is not None:
            return code
        return Proposal((pid, rate, vtbi_ul * 1000, 0, 0, 0, 0, 0), ("-", rate, vtbi_ul, 0, 0, 0))
    except Exception:   # noqa: BLE001 - never raise on user input
        return BAD_INPUT


def same_echo(echo, mine):
    """True when `echo` (a list or tuple) repeats `mine` exactly: same length, and each value
    the same value of the same type (1 is not 1.0 nor True). Never raises."""
    if not isinstance(echo, (tuple, list)) or len(echo) != len(mine):
        return False
    i = 0
    for v in echo:
        if type(v) is not type(mine[i]) or v != mine[i]:
            return False
        i += 1
    return True


def confirm(proposal, echo):
    """The Program when `echo` repeats the proposal's echo exactly (same values, same
    types), else BAD_INPUT. Never raises."""
    try:
        if not isinstance(proposal, Proposal) or not proposal.intact():
            return BAD_INPUT
        if not same_echo(echo, proposal.echo):
            return BAD_INPUT
        f = proposal._fields
        p = Program(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7])
        p.patient = proposal.patient
        p.label = proposal.label
        return p
    except Exception:   # noqa: BLE001 - never raise on user input
        return BAD_INPUT


# --- the plan position ----------------------------------------------------------------------

def plan_word(drug_index, regimen, cycle):
    """The plan position the pump keeps as one int: drug index, regimen (1-based position in
    the drug's sorted regimen names, 0: none) and cycle number."""
    return drug_index | regimen << 8 | cycle << 16


def regimen_index(drug, name):
    """The 1-based place of a regimen name among the drug's (sorted), 0 when it has none."""
    names = sorted(drug.regimens)
    i = 0
    for n in names:
        i += 1
        if n == name:
            return i
    return 0


def _cycle_spec(drug, reg, cycle):
    """The library's spec of cycle `cycle` of regimen `reg` (1-based index), or None."""
    names = sorted(drug.regimens)
    if not 0 < reg <= len(names):
        return None
    for c in drug.regimens[names[reg - 1]]["cycles"]:
        if c["from"] <= cycle <= c["to"]:
            return c
    return None


def step_due(drug, reg, cycle, day):
    """The dose step (index into the drug's steps) the plan has due on infusion day `day` of
    the cycle, and the last day of that step: (step, last day), or None past the cycle."""
    c = _cycle_spec(drug, reg, cycle)
    if c is None:
        return None
    for span in c["steps"]:
        if span[0] <= day <= span[1]:
            return (span[2], span[1])
    return None


def _step_dose(drug, rx, step):
    """The label's dose against a step: 0 it is that step's dose, -1 a lower step's, 1 not."""
    fixed = rx.get("dose_ng_per_day")
    steps = drug.fixed_steps if fixed is not None else drug.bsa_steps
    d = fixed if fixed is not None else rx.get("dose_ng_per_m2_per_day")
    if d == steps[step]:
        return 0
    i = 0
    while i < step:
        if d == steps[i]:
            return -1
        i += 1
    return 1


def _label_position(rx, p, lib):
    """(day_from, day_to) of a prescription's plan position, or a code: the regimen and cycle
    must be the drug's, the dose the step due on day_from (a lower step only with a
    clinician's override: a restart after toxicity), and the bag ends by the step's last day
    (or the cycle's)."""
    drug = _lib(lib).by_index.get(p["drug_index"])
    reg = regimen_index(drug, rx.get("regimen"))
    cycle = rx.get("cycle")
    day = rx.get("day_from")
    if reg == 0 or not is_int(cycle) or not is_int(day) or day < 1:
        return BAD_INPUT
    due = step_due(drug, reg, cycle, day)
    if due is None:
        return DOSE_STEP_MISMATCH
    k = _step_dose(drug, rx, due[0])
    if k > 0 or (k < 0 and not rx.get("override")):
        return DOSE_STEP_MISMATCH
    last = day + (p["bag_hours"] + 23) // 24 - 1
    return (day, last if last < due[1] else due[1])


def _plan_check(rx, r, patient, lib):
    """Issue 11: the bag against the treatment plan the pump holds (Controller.patient()).
    Returns the patient tuple the program records (weight g, plan word, cycle running time
    s), or a code. A pump with no plan starts one from the label's position; with a plan,
    the pump's own count of infusion days rules: after a finished cycle and its
    treatment-free interval the next cycle begins (that interval is no interruption), after
    an interruption longer than the plan allows within a cycle the cycle restarts at day 1;
    the label's cycle and days must cover today, and its dose must be the step due today (a
    lower step only with the label's clinician override)."""
    drug = r.drug
    if "cycle" not in rx:
        return PLAN_REQUIRED
    reg = regimen_index(drug, rx.get("regimen"))
    cycle = rx["cycle"]
    word = patient[1]
    if not word:                                    # a new patient: the label starts the plan
        run_s = (rx["day_from"] - 1) * DAY_S
    else:
        if word & 0xFF != drug.index or (word >> 8) & 0xFF != reg:
            return DOSE_STEP_MISMATCH
        cur = word >> 16
        run_s = patient[2]
        gap = patient[3]
        slack = drug.plan_day_slack_s
        if run_s + slack >= drug.infusion_days * DAY_S:
            # a finished cycle: the time off since is its treatment-free interval, not an
            # interruption (so first, before the restart rule below)
            spec = _cycle_spec(drug, reg, cur)
            if spec is None or gap + slack < spec["off_days"] * DAY_S:
                return DOSE_STEP_MISMATCH           # the treatment-free interval is not over
            cur += 1
            run_s = 0
        elif gap > drug.interruption_continue_max_s:
            run_s = 0                                # the cycle restarts at its first step
        if cycle != cur:
            return DOSE_STEP_MISMATCH
        today = (run_s + slack) // DAY_S + 1
        if not rx["day_from"] <= today <= rx["day_to"]:
            return DOSE_STEP_MISMATCH
        if rx["day_from"] != today:
            rx = dict(rx)
            rx["day_from"] = today
    due = step_due(drug, reg, cycle, rx["day_from"])
    # the bag is due today and ends by its step's last day (a bag never crosses a step-up)
    if due is None or rx["day_from"] + (r.bag.hours + 23) // 24 - 1 > due[1]:
        return DOSE_STEP_MISMATCH
    k = _step_dose(drug, rx, due[0])
    if k > 0 or (k < 0 and not rx.get("override")):
        return DOSE_STEP_MISMATCH
    return (r.weight_g, plan_word(drug.index, reg, cycle), run_s)


def plan_status(word, cycle_s, weight_g, lib=None):
    """The plan position for STATUS: {"drug", "regimen", "cycle", "day", "step", the step's
    dose, "weight_g"}, or None when the pump holds no patient's plan."""
    if not word:
        return None
    drug = _lib(lib).by_index.get(word & 0xFF)
    if drug is None:
        return None
    reg = (word >> 8) & 0xFF
    cycle = word >> 16
    day = (cycle_s + drug.plan_day_slack_s) // DAY_S + 1
    out = {"drug": drug.name, "weight_g": weight_g, "regimen": None, "cycle": cycle,
           "day": day, "step": None}
    names = sorted(drug.regimens)
    if 0 < reg <= len(names):
        out["regimen"] = names[reg - 1]
    due = step_due(drug, reg, cycle, day)
    if due is not None:
        out["step"] = due[0]
        if weight_g >= drug.adult_min_weight_g:
            out["dose_ng_per_day"] = drug.fixed_steps[due[0]]
        else:
            out["dose_ng_per_m2_per_day"] = drug.bsa_steps[due[0]]
    return out
