"""Scenario files (TOML, DESIGN §6): load, validate, and expand into a plan of bags.

Every field is checked; an invalid file raises ScenarioError whose message starts with the
field's path, e.g. "faults[2].at_h: expected a number >= 0, got 'soon'". Unknown fields are
errors too (a typo must not silently fall back to a default).

Beyond DESIGN §6 (extensions, nothing renamed):
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
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pump import codes, druglib
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


def _num(t: dict, key: str, path: str, default: Any = None, lo: float | None = 0.0,
         gt: bool = False, required: bool = False) -> Any:
    p = _join(path, key)
    if key not in t:
        if required:
            raise _fail(p, "missing (expected a number)")
        return default
    v = t[key]
    ok = _is_num(v) and (lo is None or (v > lo if gt else v >= lo))
    if not ok:
        bound = "" if lo is None else (" > %g" % lo if gt else " >= %g" % lo)
        raise _fail(p, "expected a number%s, got %r" % (bound, v))
    return float(v)


def _int(t: dict, key: str, path: str, default: int, lo: int = 0) -> int:
    p = _join(path, key)
    if key not in t:
        return default
    v = t[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise _fail(p, "expected an integer >= %d, got %r" % (lo, v))
    return v


def _str(t: dict, key: str, path: str, default: Any = None, choices: Any = None) -> Any:
    p = _join(path, key)
    if key not in t:
        return default
    v = t[key]
    if not isinstance(v, str):
        raise _fail(p, "expected a string, got %r" % (v,))
    if choices is not None and v not in choices:
        raise _fail(p, "expected one of %s, got %r" % (", ".join(choices), v))
    return v


def _bool(t: dict, key: str, path: str, default: bool) -> bool:
    if key not in t:
        return default
    v = t[key]
    if not isinstance(v, bool):
        raise _fail(_join(path, key), "expected true or false, got %r" % (v,))
    return v


def _table(t: dict, key: str, path: str = "") -> dict:
    if key not in t:
        return {}
    v = t[key]
    if not isinstance(v, dict):
        raise _fail(_join(path, key), "expected a table, got %r" % (v,))
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
_PATIENT = ("weight_kg", "height_cm")
_PRESCRIPTION = ("drug", "dose_ug_per_day", "dose_ug_per_m2_per_day", "max_dose_ug_per_day",
                 "bag_hours", "infusible_ml", "concentration_ug_per_ml",
                 "prepared_concentration_ug_per_ml", "overfill_ml", "fill_ml")
_PROGRAMMING = ("rate_ml_per_h", "vtbi_ml", "rate_unit")
_STEP = _PRESCRIPTION + _PROGRAMMING + ("repeat", "pause_min", "interruption_h")
_RUN = ("hours", "seed", "start_ticks", "sample_s", "resume_after_power_loss")
_EXPECT = ("alarm", "alarm_within_min", "no_alarms_except", "final_state", "max_excess_ml",
           "max_fault_excess_ml", "delivered_ml_min", "delivered_ml_max", "max_bolus_ml",
           "dose_ug_min", "dose_ug_max", "accepted", "reject_code", "xfail")
ALARM_CODES = tuple(c for c in codes.ALARMS if c is not None)


def load(path: str) -> Scenario:
    """Read and validate a scenario file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ScenarioError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("%s: not valid TOML: %s" % (path, e)) from None
    return parse(data, path)


def loads(text: str, path: str | None = None) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("%s: not valid TOML: %s" % (path or "<string>", e)) from None
    return parse(data, path)


def parse(data: dict[str, Any], path: str | None = None) -> Scenario:
    _known(data, _TOP, "")
    name = _str(data, "name", "")
    if not name:
        raise _fail("name", "missing (expected a non-empty string)")
    if any(c in name for c in "/\\") or name in (".", ".."):
        raise _fail("name", "must not contain a path separator, got %r" % name)
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
        raise _fail("tags", "expected a list of strings, got %r" % (tags,))
    patient = _table(data, "patient")
    _known(patient, _PATIENT, "patient")
    weight = _num(patient, "weight_kg", "patient", None, 0.0, gt=True)
    height = _num(patient, "height_cm", "patient", None, 0.0, gt=True)
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
                raise _fail(sp, "expected a table, got %r" % (st,))
            _known(st, _STEP, sp)
            repeat = _int(st, "repeat", sp, 1, 1)
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

    faults = _faults(data.get("faults", []))
    plant = _plant(_table(data, "plant"))
    expect = _expect(_table(data, "expect"))
    sc = Scenario(name=name, path=path, bags=bags, faults=faults, expect=expect, hours=0.0,
                  plant=plant, weight_kg=weight, description=_str(data, "description", "", None)
                  or "", tags=list(tags), report=_table(data, "report"), raw=data)
    hours = _num(run, "hours", "run", None, 0.0, gt=True)
    sc.hours = hours if hours is not None else math.ceil(sc.plan_hours() + 1.0)
    sc.seed = _int(run, "seed", "run", 0)
    st_ticks = _int(run, "start_ticks", "run", 0)
    if st_ticks >= 1 << 30:
        raise _fail("run.start_ticks", "expected an integer < 2**30, got %r" % st_ticks)
    sc.start_ticks = st_ticks
    sc.sample_s = _num(run, "sample_s", "run", 60.0, 0.0, gt=True)
    sc.resume_after_power_loss = _bool(run, "resume_after_power_loss", "run", True)
    for i, f in enumerate(faults):
        if f.at_h > sc.hours:
            raise _fail("faults[%d].at_h" % i, "%g is after the end of the run (%g h)"
                        % (f.at_h, sc.hours))
    return sc


def _bag(index: int, gap_ms: int, base: dict, over: dict, path: str,
         weight: float | None, height: float | None) -> Bag:
    """Resolve one bag: step fields override the prescription/programming defaults."""
    t = {**base, **over}

    def where(key: str) -> str:
        return path if key in over else ("programming" if key in _PROGRAMMING
                                          else "prescription")

    drug = _str(t, "drug", where("drug"), "blinatumomab")
    bag_hours = _num(t, "bag_hours", where("bag_hours"), None, 0.0, gt=True)
    if bag_hours is None:
        raise _fail(where("bag_hours") + ".bag_hours", "missing (expected a number of hours)")
    label = bag_table().get(int(bag_hours)) if bag_hours == int(bag_hours) else None
    infusible = _num(t, "infusible_ml", where("infusible_ml"), None, 0.0, gt=True)
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
    prepared = _num(t, "prepared_concentration_ug_per_ml",
                    where("prepared_concentration_ug_per_ml"), conc)
    overfill = _num(t, "overfill_ml", where("overfill_ml"), DEFAULT_OVERFILL_ML)
    fill = _num(t, "fill_ml", where("fill_ml"), infusible + overfill, 0.0, gt=True)
    rate = _num(t, "rate_ml_per_h", where("rate_ml_per_h"), None, 0.0, gt=True)
    vtbi = _num(t, "vtbi_ml", where("vtbi_ml"), None, 0.0, gt=True)
    if rate is None:
        rate = label[0] if label is not None and infusible == label[1] else \
            infusible / bag_hours
    if vtbi is None:
        vtbi = infusible
    unit = _str(t, "rate_unit", where("rate_unit"), "mL/h")
    return Bag(index=index, gap_ms=gap_ms, bag_hours=bag_hours, dose_ug_per_day=dose,
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
            raise _fail(p, "expected a table, got %r" % (f,))
        at_h = _num(f, "at_h", p, None, 0.0, required=True)
        kind = f.get("kind")
        if not isinstance(kind, str) or kind not in FAULTS:
            raise _fail(p + ".kind", "unknown fault %r (known: %s)" % (kind, ", ".join(FAULTS)))
        spec = FAULTS[kind].params
        _known(f, ("at_h", "kind") + tuple(spec), p)
        params: dict[str, Any] = {}
        for key, (typ, default) in spec.items():
            if typ is bool:
                params[key] = _bool(f, key, p, default)
            else:
                v = _num(f, key, p, default, 0.0, gt=key == "factor")
                if key == "fraction" and v > 1.0:
                    raise _fail(p + ".fraction", "expected a number in [0, 1], got %r" % v)
                params[key] = v
        out.append(FaultSpec(at_h=at_h, kind=kind, params=params))
    return out


def _plant(t: dict) -> PlantConfig:
    cfg = PlantConfig()
    names = PlantConfig.names()
    _known(t, tuple(names) + ("ideal",), "plant")
    for key, v in t.items():
        p = "plant." + key
        if key == "ideal":
            if _bool(t, key, "plant", False):
                cfg.ideal()
            continue
        typ = names[key]
        if typ is bool:
            setattr(cfg, key, _bool(t, key, "plant", False))
        elif typ is int:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise _fail(p, "expected an integer >= 1, got %r" % (v,))
            setattr(cfg, key, v)
        else:
            if not _is_num(v) or v < 0:
                raise _fail(p, "expected a number >= 0, got %r" % (v,))
            setattr(cfg, key, float(v))
    if cfg.compliance_ul_per_mmhg <= 0:
        raise _fail("plant.compliance_ul_per_mmhg", "expected a number > 0")
    return cfg


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
                    raise _fail(p, "expected one of %s, got %r" % (", ".join(allowed), x))
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
            out[key] = _num(t, key, "expect", None, None if key.startswith("dose") else 0.0)
    return out
