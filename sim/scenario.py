"""Scenario files (TOML, docs/scenarios.md): load, validate, and expand into a plan of bags.

Every field is checked; an invalid file raises ScenarioError whose message starts with the
field's path, e.g. "faults[2].at_h: expected a number >= 0, got 'soon'". Unknown fields are
errors too (a typo must not silently fall back to a default).

Beyond the first version's fields (extensions, nothing renamed):
  description, tags                       free text / list of strings
  [patient] height_cm                     for BSA dosing (Mosteller)
  [prescription] dose_ug_per_m2_per_day, max_dose_ug_per_day, infusible_ml,
      concentration_ug_per_ml (label), prepared_concentration_ug_per_ml (what is really in
      the bag: a pharmacy error), overfill_ml (default 30), fill_ml
  [run] start_ticks, sample_s (default 60), resume_after_power_loss (default true)
  [plant] any PlantConfig field, and ideal = true (no variation)
  [[faults]] duration_s and the kind's own parameters (sim/faults.py)
  [[steps]] a treatment plan: each step is one or more bags (repeat) of a program, with
      bag_hours / dose / concentration (defaults: [prescription]) and rate_ml_per_h /
      vtbi_ml (defaults: [programming], else the label values); pause_min before each of
      its bags (the bag change; default 10; none before the plan's very first bag) and
      interruption_h before its first bag
  [expect] alarm, alarm_within_min, no_alarms_except, final_state, max_excess_ml,
      max_fault_excess_ml, delivered_ml_min/max, max_bolus_ml, dose_ug_min/max, accepted,
      reject_code, xfail (reason: the failure is a known finding)
  [report] free-form, passed through to the report
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from pump import calibration, codes, druglib
from pump.monitor import PULSES_PER_STROKE
from sim.engine import SimError
from sim.faults import FAULTS
from sim.plant import PlantConfig


@functools.cache
def bag_table() -> dict[int, tuple[float, float]]:
    """The label's bag options, hours -> (rate mL/h, infusible mL), from the firmware's drug
    library (its default label version): one place for the label's numbers."""
    drug = druglib.default().drug("blinatumomab")
    assert drug is not None, "druglib.json has no blinatumomab entry"
    return {h: (b.rate_ul_per_h / 1000.0, b.infused_ul / 1000.0) for h, b in drug.bags.items()}

DEFAULT_OVERFILL_ML = 30.0
DEFAULT_BAG_CHANGE_MIN = 10.0

# --- what a scenario may say: physical ranges and limits (docs/scenarios.md states them) ------
# field -> (low, high, low excluded). Numbers must be finite and inside: a weight of 1e308 kg
# or a stroke of 0 uL is not a pump or a patient, and would crash or hang the run.
RANGES: dict[str, tuple[float, float, bool]] = {
    "weight_kg": (0.0, 700.0, True),
    "height_cm": (0.0, 300.0, True),
    "bsa_m2": (0.0, 5.0, True),
    "dose_ug_per_day": (0.0, 10000.0, False),
    "dose_ug_per_m2_per_day": (0.0, 10000.0, False),
    "max_dose_ug_per_day": (0.0, 10000.0, False),
    "bag_hours": (0.0, 720.0, True),
    "infusible_ml": (0.0, 10000.0, True),
    "concentration_ug_per_ml": (0.0, 10000.0, False),
    "prepared_concentration_ug_per_ml": (0.0, 10000.0, False),
    "overfill_ml": (0.0, 10000.0, False),
    "fill_ml": (0.0, 20000.0, True),
    "rate_ml_per_h": (0.0, 10000.0, True),
    "vtbi_ml": (0.0, 100000.0, True),
    "pause_min": (0.0, 10080.0, False),
    "interruption_h": (0.0, 2400.0, False),
    "hours": (0.0, 2400.0, True),
    "sample_s": (1.0, 3600.0, False),
    "at_h": (0.0, 2400.0, False),
    # [[faults]] parameters
    "factor": (0.01, 1000.0, False),
    "fraction": (0.0, 1.0, False),
    "duration_s": (0.0, 8640000.0, False),
    "mv_per_h": (0.0, 100000.0, False),
    # [expect]
    "alarm_within_min": (0.0, 144000.0, False),
    "max_excess_ml": (0.0, 100000.0, False),
    "max_fault_excess_ml": (0.0, 100000.0, False),
    "delivered_ml_min": (0.0, 1000000.0, False),
    "delivered_ml_max": (0.0, 1000000.0, False),
    "max_bolus_ml": (0.0, 100000.0, False),
    "dose_ug_min": (-1000000.0, 1000000.0, False),
    "dose_ug_max": (-1000000.0, 1000000.0, False),
}
# [plant] numbers: the reference mechanism (a 50 uL stroke, plant/physics.py) and what can
# physically vary about it. The cassette the seed draws must also calibrate to a value the firmware
# accepts (checked in _plant_problem).
PLANT_RANGES: dict[str, tuple[float, float, bool]] = {
    "stroke_ul": (40.0, 60.0, False),
    "cassette_sd": (0.0, 0.2, False),
    "calibration_sd": (0.0, 0.1, False),
    "stroke_noise": (0.0, 0.5, False),
    "backpressure_per_mmhg": (0.0, 0.001, False),
    "compliance_ul_per_mmhg": (0.01, 100.0, False),
    "venous_mmhg": (0.0, 100.0, False),
    "stall_mmhg": (100.0, 5000.0, False),
    "pressure_threshold_mmhg": (10.0, 5000.0, False),
    "free_flow_ml_per_min": (0.0, 100.0, False),
    "rotation_jitter_steps": (0.0, 1000.0, False),
    "battery_mv": (0.0, 10000.0, False),
    "battery_low_mv": (0.0, 10000.0, False),
    "battery_drain_mv_per_h": (0.0, 100000.0, False),
    "bag_fill_ml": (0.0, 20000.0, True),
    "concentration_ug_per_ml": (0.0, 10000.0, False),
}
# [plant] integers: (low, high, must be a multiple of). The firmware's monitor counts
# PULSES_PER_STROKE rotation pulses a stroke, so the steps of a stroke divide by it.
PLANT_INTS: dict[str, tuple[int, int, int]] = {
    "steps_per_stroke": (PULSES_PER_STROKE, 5000, PULSES_PER_STROKE),
    "pulses_per_rev": (1, 64, 1),
}
MAX_REPEAT = 1000            # bags in one [[steps]] entry, and in the whole plan
MAX_SEED = (1 << 63) - 1
MAX_SAMPLES = 500000         # trace rows: hours x 3600 / sample_s (memory of one run)
MAX_FILE_BYTES = 1 << 20     # a scenario file is a few hundred bytes; 1 MiB is not one
MAX_DEPTH = 4                # tables and arrays inside each other ([[faults]] is 2 deep)
MAX_ITEMS = 1000             # entries of one table or array
MAX_TEXT = 10000             # characters of one string
NAME_MAX = 100               # characters of a name (it is also a folder name)
_NAME_BAD = '/\\:*?"<>|'     # path separators, and what Windows forbids in a file name


def range_text(lo: float, hi: float, lo_open: bool) -> str:
    """'0 < x ≤ 700' / '1 ≤ x ≤ 3600': how docs/scenarios.md states a range."""
    return "%s %s x ≤ %s" % (_g(lo), "<" if lo_open else "≤", _g(hi))


def _g(v: float) -> str:
    return "%d" % v if v == int(v) and abs(v) < 1e15 else "%g" % v


class ScenarioError(SimError):
    """An invalid scenario file; the message names the field."""


@dataclass
class Bag:
    """One bag of the plan, fully resolved."""

    index: int
    gap_ms: int                      # wait before this bag (bag change, interruption)
    bag_hours: float
    dose_ug_per_day: float
    infusible_ml: float              # label volume to be infused
    concentration_ug_per_ml: float   # label
    prepared_concentration_ug_per_ml: float
    fill_ml: float
    rate_ml_per_h: float             # what the operator keys
    vtbi_ml: float
    drug: str = "blinatumomab"
    rate_unit: str = "mL/h"          # the unit the operator keys the rate in
    dose_ug_per_m2_per_day: float | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    # the plan position (issue 11): the regimen, and for the plan's first bag its cycle and
    # infusion day (None: from the dose); label_day: the day printed on this bag's label when
    # it is not the day the bag is hung (a bag made for another day)
    regimen: str = "r/r"
    cycle: int | None = None
    day: int | None = None
    label_day: int | None = None
    weight_confirmed: bool = False      # a clinician confirms a changed weight at the pump
    premedicated: bool = False          # a clinician confirms premedication before its start
    bsa_m2: float | None = None         # a BSA printed on the label (else none: computed)


@dataclass
class FaultSpec:
    at_h: float
    kind: str
    params: dict[str, Any]


@dataclass
class Scenario:
    name: str
    path: str | None
    bags: list[Bag]
    faults: list[FaultSpec]
    expect: dict[str, Any]
    hours: float
    seed: int = 0
    start_ticks: int = 0
    sample_s: float = 60.0
    resume_after_power_loss: bool = True
    plant: PlantConfig = field(default_factory=PlantConfig)
    weight_kg: float | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def plan_hours(self) -> float:
        return sum(b.gap_ms / 3600000.0 + b.bag_hours for b in self.bags)


# --- field readers ----------------------------------------------------------------------------
def _fail(path: str, msg: str) -> ScenarioError:
    return ScenarioError("%s: %s" % (path, msg))


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(t: dict, key: str, path: str, default: Any = None, required: bool = False,
         ranges: dict[str, tuple[float, float, bool]] = RANGES) -> Any:
    """The number at t[key] (a finite number inside RANGES[key]), or default when absent."""
    p = _join(path, key)
    if key not in t:
        if required:
            raise _fail(p, "missing (expected a number)")
        return default
    v = t[key]
    lo, hi, lo_open = ranges[key]
    if not _is_num(v):
        what = "not finite" if isinstance(v, float) else "got %s" % _show(v)
        raise _fail(p, "expected a number %s, %s" % (range_text(lo, hi, lo_open), what))
    if v < lo or (lo_open and v == lo) or v > hi:
        raise _fail(p, "expected a number %s, got %s" % (range_text(lo, hi, lo_open),
                                                         _show(v)))
    return float(v)


def _show(v: Any) -> str:
    """A value for an error message: its repr, cut short."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _int(t: dict, key: str, path: str, default: int, lo: int = 0, hi: int = MAX_SEED,
         step: int = 1) -> int:
    p = _join(path, key)
    if key not in t:
        return default
    v = t[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi or v % step:
        mult = "" if step == 1 else ", a multiple of %d" % step
        raise _fail(p, "expected an integer %d ≤ n ≤ %d%s, got %s" % (lo, hi, mult, _show(v)))
    return v


def _str(t: dict, key: str, path: str, default: Any = None, choices: Any = None) -> Any:
    p = _join(path, key)
    if key not in t:
        return default
    v = t[key]
    if not isinstance(v, str):
        raise _fail(p, "expected a string, got %s" % _show(v))
    if choices is not None and v not in choices:
        raise _fail(p, "expected one of %s, got %s" % (", ".join(choices), _show(v)))
    return v


def _bool(t: dict, key: str, path: str, default: bool) -> bool:
    if key not in t:
        return default
    v = t[key]
    if not isinstance(v, bool):
        raise _fail(_join(path, key), "expected true or false, got %s" % _show(v))
    return v


def _table(t: dict, key: str, path: str = "") -> dict:
    if key not in t:
        return {}
    v = t[key]
    if not isinstance(v, dict):
        raise _fail(_join(path, key), "expected a table, got %s" % _show(v))
    return v


def _join(path: str, key: str) -> str:
    return key if not path else path + "." + key


def _known(t: dict, allowed: Any, path: str) -> None:
    for k in t:
        if k not in allowed:
            raise _fail(_join(path, k), "unknown field (expected one of %s)"
                        % ", ".join(sorted(allowed)))


# --- the file ---------------------------------------------------------------------------------
_TOP = ("name", "description", "tags", "patient", "prescription", "programming", "run",
        "plant", "faults", "steps", "expect", "report")
_PATIENT = ("weight_kg", "height_cm", "bsa_m2")
_PRESCRIPTION = ("drug", "dose_ug_per_day", "dose_ug_per_m2_per_day", "max_dose_ug_per_day",
                 "bag_hours", "infusible_ml", "concentration_ug_per_ml",
                 "prepared_concentration_ug_per_ml", "overfill_ml", "fill_ml",
                 "regimen", "cycle", "day", "label_day", "weight_confirmed", "premedicated")
_PROGRAMMING = ("rate_ml_per_h", "vtbi_ml", "rate_unit")
_STEP = _PRESCRIPTION + _PROGRAMMING + ("repeat", "pause_min", "interruption_h", "weight_kg")
_RUN = ("hours", "seed", "start_ticks", "sample_s", "resume_after_power_loss")
_EXPECT = ("alarm", "alarm_within_min", "no_alarms_except", "final_state", "max_excess_ml",
           "max_fault_excess_ml", "delivered_ml_min", "delivered_ml_max", "max_bolus_ml",
           "dose_ug_min", "dose_ug_max", "accepted", "reject_code", "xfail")
ALARM_CODES = tuple(c for c in codes.ALARMS if c is not None)


def load(path: str) -> Scenario:
    """Read and validate a scenario file; every error message starts with the file's path."""
    return loads(read(path), path)


def read(path: str) -> str:
    """A scenario file's text (at most MAX_FILE_BYTES, UTF-8), or a clear error."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ScenarioError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError("%s: larger than %d KiB: not a scenario file"
                            % (path, MAX_FILE_BYTES // 1024))
    return decode(raw, path)


def decode(raw: bytes, path: str) -> str:
    """The file's text: UTF-8 (a leading byte-order mark is allowed), else a clear error."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ScenarioError("%s: not UTF-8 text: byte 0x%02x on line %d (save the file as "
                            "UTF-8)" % (path, raw[e.start], line)) from None


def loads(text: str, path: str | None = None) -> Scenario:
    """Validate a scenario from its text. With `path`, errors start with it: "x.toml: field:
    problem"; without, with the field."""
    return from_tables(tables(text, path), path)


def from_tables(data: dict[str, Any], path: str | None = None) -> Scenario:
    """Validate a scenario from its TOML tables (`tables`); errors as loads() gives them."""
    try:
        return parse(data, path)
    except ScenarioError as e:
        if path is None:
            raise
        raise ScenarioError("%s: %s" % (path, e)) from None


def tables(text: str, path: str | None = None) -> dict[str, Any]:
    """The TOML tables of a scenario's text, not yet validated (parse() does that), or a
    clear error. (tomllib is imported here, not by the module: sim.worker runs parsed
    scenarios on interpreters without it, PyPy 3.9.)"""
    import tomllib

    where = path or "<string>"
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError("%s: larger than %d KiB: not a scenario file"
                            % (where, MAX_FILE_BYTES // 1024))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("%s: not valid TOML: %s" % (where, e)) from None
    except RecursionError:
        raise ScenarioError("%s: not a scenario: arrays or tables nested too deeply"
                            % where) from None


def _check_tree(v: Any, path: str, depth: int = 0) -> None:
    """Shape limits on the whole document, before the fields are read: nesting depth, table
    and array sizes, text length and characters (no NUL or other control characters)."""
    if isinstance(v, dict):
        if depth >= MAX_DEPTH:
            raise _fail(path, "nested more than %d tables or arrays deep" % MAX_DEPTH)
        if len(v) > MAX_ITEMS:
            raise _fail(path, "more than %d entries" % MAX_ITEMS)
        for k, x in v.items():
            if len(k) > NAME_MAX:
                raise _fail(path or "<top>", "a key longer than %d characters: %s"
                            % (NAME_MAX, _show(k)))
            _check_text(k, _join(path, _show(k)))
            _check_tree(x, _join(path, k), depth + 1)
    elif isinstance(v, list):
        if depth >= MAX_DEPTH:
            raise _fail(path, "nested more than %d tables or arrays deep" % MAX_DEPTH)
        if len(v) > MAX_ITEMS:
            raise _fail(path, "more than %d entries" % MAX_ITEMS)
        for i, x in enumerate(v):
            _check_tree(x, "%s[%d]" % (path, i), depth + 1)
    elif isinstance(v, str):
        _check_text(v, path)


def _check_text(v: str, path: str) -> None:
    if len(v) > MAX_TEXT:
        raise _fail(path, "text longer than %d characters" % MAX_TEXT)
    bad = next((c for c in v if (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127), None)
    if bad is not None:
        raise _fail(path, "contains the control character U+%04X (text only)" % ord(bad))


def check_name(name: Any) -> str:
    """The scenario name rules: 1 to NAME_MAX printable characters, none of / \\ : * ? " < > |,
    not starting with '.' or a space nor ending with a space (it names the output folder)."""
    if not isinstance(name, str) or not name:
        raise _fail("name", "missing (expected a non-empty string)")
    if len(name) > NAME_MAX:
        raise _fail("name", "longer than %d characters (%d)" % (NAME_MAX, len(name)))
    bad = next((c for c in name if c in _NAME_BAD or not c.isprintable()), None)
    if bad is not None:
        raise _fail("name", "must not contain %r (it names the output folder), got %s"
                    % (bad, _show(name)))
    if name[0] in ". " or name[-1] == " ":
        raise _fail("name", "must not start with '.' or a space, nor end with a space (it "
                    "names the output folder), got %s" % _show(name))
    return name


def parse(data: dict[str, Any], path: str | None = None) -> Scenario:
    _check_tree(data, "")
    _known(data, _TOP, "")
    name = check_name(data.get("name"))
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
        raise _fail("tags", "expected a list of strings, got %s" % _show(tags))
    patient = _table(data, "patient")
    _known(patient, _PATIENT, "patient")
    weight = _num(patient, "weight_kg", "patient")
    height = _num(patient, "height_cm", "patient")
    rx = _table(data, "prescription")
    _known(rx, _PRESCRIPTION, "prescription")
    prog = _table(data, "programming")
    _known(prog, _PROGRAMMING, "programming")
    run = _table(data, "run")
    _known(run, _RUN, "run")

    steps_raw = data.get("steps")
    bags: list[Bag] = []
    if steps_raw is None:
        bags.append(_bag(0, 0, {**rx, **prog}, {}, "prescription", weight, height))
    else:
        if not isinstance(steps_raw, list) or not steps_raw:
            raise _fail("steps", "expected a non-empty array of tables ([[steps]])")
        for i, st in enumerate(steps_raw):
            sp = "steps[%d]" % i
            if not isinstance(st, dict):
                raise _fail(sp, "expected a table, got %s" % _show(st))
            _known(st, _STEP, sp)
            repeat = _int(st, "repeat", sp, 1, 1, MAX_REPEAT)
            if len(bags) + repeat > MAX_REPEAT:
                raise _fail(sp + ".repeat", "the plan would have %d bags, more than %d"
                            % (len(bags) + repeat, MAX_REPEAT))
            pause = _num(st, "pause_min", sp, None)
            inter = _num(st, "interruption_h", sp, 0.0)
            base = {**rx, **prog}
            for r in range(repeat):
                first = not bags
                if first:
                    p_min = 0.0          # the plan starts with a primed line: no change
                else:
                    p_min = pause if pause is not None else DEFAULT_BAG_CHANGE_MIN
                gap = p_min * 60000.0 + (inter * 3600000.0 if r == 0 else 0.0)
                bags.append(_bag(len(bags), int(round(gap)), base, st, sp, weight, height))

    label_bsa = _num(patient, "bsa_m2", "patient")
    for b in bags:
        b.bsa_m2 = label_bsa
    faults = _faults(data.get("faults", []))
    plant = _plant(_table(data, "plant"))
    expect = _expect(_table(data, "expect"))
    sc = Scenario(name=name, path=path, bags=bags, faults=faults, expect=expect, hours=0.0,
                  plant=plant, weight_kg=weight, description=_str(data, "description", "", None)
                  or "", tags=list(tags), report=_table(data, "report"), raw=data)
    hours = _num(run, "hours", "run")
    if hours is None:
        hours = float(math.ceil(sc.plan_hours() + 1.0))
        top = RANGES["hours"][1]
        if hours > top:
            raise _fail("run.hours", "missing, and the plan lasts %g h: longer than a run may "
                        "be (%g h); set run.hours or shorten the plan" % (hours - 1, top))
    sc.hours = hours
    sc.seed = _int(run, "seed", "run", 0)
    _plant_problem(plant, sc.seed)
    sc.start_ticks = _int(run, "start_ticks", "run", 0, 0, (1 << 30) - 1)
    sc.sample_s = _num(run, "sample_s", "run", 60.0)
    if sc.hours * 3600.0 / sc.sample_s > MAX_SAMPLES:
        raise _fail("run.sample_s", "%g s over %g h is %d trace rows, more than %d: sample "
                    "less often" % (sc.sample_s, sc.hours, sc.hours * 3600.0 / sc.sample_s,
                                    MAX_SAMPLES))
    sc.resume_after_power_loss = _bool(run, "resume_after_power_loss", "run", True)
    for i, f in enumerate(faults):
        if f.at_h > sc.hours:
            raise _fail("faults[%d].at_h" % i, "%g is after the end of the run (%g h)"
                        % (f.at_h, sc.hours))
    return sc


def _bag(index: int, gap_ms: int, base: dict, over: dict, path: str,
         weight: float | None, height: float | None) -> Bag:
    """Resolve one bag: step fields override the prescription/programming defaults (a
    step's weight_kg the patient's: the weight on that bag's label)."""
    t = {**base, **over}
    if "weight_kg" in over:
        weight = _num(over, "weight_kg", path)

    def where(key: str) -> str:
        return path if key in over else ("programming" if key in _PROGRAMMING
                                          else "prescription")

    drug = _str(t, "drug", where("drug"), "blinatumomab")
    bag_hours = _num(t, "bag_hours", where("bag_hours"))
    if bag_hours is None:
        raise _fail(where("bag_hours") + ".bag_hours", "missing (expected a number of hours)")
    label = bag_table().get(int(bag_hours)) if bag_hours == int(bag_hours) else None
    infusible = _num(t, "infusible_ml", where("infusible_ml"))
    if infusible is None:
        infusible = label[1] if label is not None else 240.0
    dose = _num(t, "dose_ug_per_day", where("dose_ug_per_day"), None)
    per_m2 = _num(t, "dose_ug_per_m2_per_day", where("dose_ug_per_m2_per_day"), None)
    if dose is None and per_m2 is not None:
        if weight is None or height is None:
            raise _fail("patient.height_cm", "BSA dosing needs patient.weight_kg and "
                        "patient.height_cm")
        dose = per_m2 * bsa_m2(weight, height)
        cap = _num(t, "max_dose_ug_per_day", where("max_dose_ug_per_day"), None)
        if cap is not None and dose > cap:
            dose = cap
    if dose is None:
        dose = 0.0
    conc = _num(t, "concentration_ug_per_ml", where("concentration_ug_per_ml"), None)
    if conc is None:
        conc = dose * (bag_hours / 24.0) / infusible
        if label is not None and infusible == label[1] \
                and abs(label[0] * bag_hours - infusible) > 1e-9 * infusible:
            # the label's rate is not infusible / hours (older 72 h bag: 3.3 mL/h, 240 mL):
            # the pharmacy makes the bag for the rate (pumpctl rx: dose/day = rate x 24 x conc)
            conc = dose / (24.0 * label[0])
    prepared = _num(t, "prepared_concentration_ug_per_ml",
                    where("prepared_concentration_ug_per_ml"), conc)
    overfill = _num(t, "overfill_ml", where("overfill_ml"), DEFAULT_OVERFILL_ML)
    fill = _num(t, "fill_ml", where("fill_ml"), infusible + overfill)
    rate = _num(t, "rate_ml_per_h", where("rate_ml_per_h"))
    vtbi = _num(t, "vtbi_ml", where("vtbi_ml"))
    if rate is None:
        rate = label[0] if label is not None and infusible == label[1] else \
            infusible / bag_hours
    if vtbi is None:
        vtbi = infusible
    unit = _str(t, "rate_unit", where("rate_unit"), "mL/h")
    plan: dict[str, Any] = {
        "regimen": _str(t, "regimen", where("regimen"), "r/r") or "r/r",
        "cycle": _int(t, "cycle", where("cycle"), 0, 0, 99) or None,
        "day": _int(t, "day", where("day"), 0, 0, 366) or None,
        "label_day": _int(t, "label_day", where("label_day"), 0, 0, 366) or None,
        "weight_confirmed": _bool(t, "weight_confirmed", where("weight_confirmed"), False),
        "premedicated": _bool(t, "premedicated", where("premedicated"), False)}
    return Bag(**plan, index=index, gap_ms=gap_ms, bag_hours=bag_hours, dose_ug_per_day=dose,
               infusible_ml=infusible, concentration_ug_per_ml=conc,
               prepared_concentration_ug_per_ml=prepared, fill_ml=fill,
               rate_ml_per_h=rate, vtbi_ml=vtbi, drug=drug, rate_unit=unit or "mL/h",
               dose_ug_per_m2_per_day=per_m2, weight_kg=weight, height_cm=height)


def bsa_m2(weight_kg: float, height_cm: float) -> float:
    """Body surface area, Mosteller."""
    return math.sqrt(weight_kg * height_cm / 3600.0)


def _faults(raw: Any) -> list[FaultSpec]:
    if not isinstance(raw, list):
        raise _fail("faults", "expected an array of tables ([[faults]])")
    out = []
    for i, f in enumerate(raw):
        p = "faults[%d]" % i
        if not isinstance(f, dict):
            raise _fail(p, "expected a table, got %s" % _show(f))
        at_h = _num(f, "at_h", p, None, required=True)
        kind = f.get("kind")
        if not isinstance(kind, str) or kind not in FAULTS:
            raise _fail(p + ".kind", "unknown fault %s (known: %s)"
                        % (_show(kind), ", ".join(FAULTS)))
        spec = FAULTS[kind].params
        _known(f, ("at_h", "kind") + tuple(spec), p)
        params: dict[str, Any] = {}
        for key, (typ, default) in spec.items():
            if typ is bool:
                params[key] = _bool(f, key, p, default)
            elif typ is str:
                params[key] = _str(f, key, p, default, FAULTS[kind].choices.get(key))
            else:
                params[key] = _num(f, key, p, default)
        out.append(FaultSpec(at_h=at_h, kind=kind, params=params))
    return out


def _plant(t: dict) -> PlantConfig:
    cfg = PlantConfig()
    names = PlantConfig.names()
    _known(t, tuple(names) + ("ideal",), "plant")
    for key in t:
        if key == "ideal":
            if _bool(t, key, "plant", False):
                cfg.ideal()
            continue
        typ = names[key]
        if typ is bool:
            setattr(cfg, key, _bool(t, key, "plant", False))
        elif typ is int:
            lo, hi, step = PLANT_INTS[key]
            setattr(cfg, key, _int(t, key, "plant", 0, lo, hi, step))
        else:
            setattr(cfg, key, _num(t, key, "plant", ranges=PLANT_RANGES))
    if cfg.pressure_threshold_mmhg <= cfg.venous_mmhg:
        raise _fail("plant.pressure_threshold_mmhg", "expected above venous_mmhg (%g), got %g"
                    % (cfg.venous_mmhg, cfg.pressure_threshold_mmhg))
    return cfg


def _calibration_problem(stroke_nl: int, steps_per_stroke: int) -> str:
    """Why the firmware would refuse this cassette calibration ('' when it takes it)."""
    if calibration.valid(stroke_nl, steps_per_stroke):
        return ""
    return "pump/calibration.py takes %g-%g uL a stroke, with its own step counts" % (
        calibration.STROKE_NL_MIN / 1000.0, calibration.STROKE_NL_MAX / 1000.0)


def _plant_problem(cfg: PlantConfig, seed: int) -> None:
    """The seed's cassette, as the runner will draw it, must calibrate to a value the
    firmware accepts (else the pump could not be set up for it)."""
    from sim.engine import Engine
    from sim.plant import Plant
    stroke_nl = Plant(Engine(), cfg, seed).calibrated_stroke_nl
    why = _calibration_problem(stroke_nl, cfg.steps_per_stroke)
    if why:
        field = "plant.steps_per_stroke" if stroke_nl == 8 * round(
            cfg.stroke_ul * 125.0) else "plant.stroke_ul"
        raise _fail(field, "with run.seed %d the cassette calibrates to %d nL and %d steps a "
                    "stroke, which the firmware refuses (%s): change plant.stroke_ul, "
                    "plant.cassette_sd, plant.steps_per_stroke or run.seed"
                    % (seed, stroke_nl, cfg.steps_per_stroke, why))


def _expect(t: dict) -> dict[str, Any]:
    _known(t, _EXPECT, "expect")
    out: dict[str, Any] = {}
    for key, v in t.items():
        p = "expect." + key
        if key in ("alarm", "reject_code"):
            allowed = ALARM_CODES if key == "alarm" else codes.REJECTIONS
            vals = v if isinstance(v, list) else [v]
            for x in vals:
                if x not in allowed:
                    raise _fail(p, "expected one of %s, got %s" % (", ".join(allowed), _show(x)))
            out[key] = v
        elif key == "no_alarms_except":
            if not isinstance(v, list) or any(x not in ALARM_CODES for x in v):
                raise _fail(p, "expected a list of alarm codes (%s), got %r"
                            % (", ".join(ALARM_CODES), v))
            out[key] = list(v)
        elif key == "final_state":
            out[key] = _str(t, key, "expect", None, codes.STATES + ("OFF",))
        elif key == "accepted":
            out[key] = _bool(t, key, "expect", True)
        elif key == "xfail":
            out[key] = _str(t, key, "expect")
        else:
            out[key] = _num(t, key, "expect")
    return out
