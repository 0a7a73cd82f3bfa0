"""`pumpsim study`: the Monte Carlo campaign that measures the safety monitor.

Two parts, both run through the real firmware on the plant (sim.runner.Sim), in batches on
Dask (sim/campaign.py: a local cluster on 127.0.0.1 by default, or an existing one):

- **fault cells**: fault kind x rate (10, 5, 0.6 mL/h: the 24 h, 48 h and 7-day bags) x
  sampled (plant seed, onset time). Per cell: detection rate, the excess volume the fault
  put beyond the programmed line (the runner's `fault_excess_ml`: max, p99, median),
  detection latency (minutes from the onset to the alarm: max, p99, median), and for
  occlusions the bolus (volume released, plus what is still held in the line and would be
  released on reopening). Targets: PR-1, PR-3.
- **false-alarm campaign**: nominal bags with realistic plant noise (cassette factor,
  stroke-to-stroke volume, rotation-slot jitter: the PlantConfig defaults), counted in
  pump-days (time RUNNING), spread evenly over the rates; whole bags, and one shorter run per
  rate for the remainder, so `--days D` runs D pump-days. Any OVER_INFUSION,
  UNDER_INFUSION, OCCLUSION, SENSOR_FAULT or FREE_FLOW there is a false alarm (PR-2).

Each run's plant seed and fault onset are drawn with numpy from (master seed, group, index),
so a run is the same whichever batch or worker runs it. Every batch returns a partial
aggregate (counts, integer sums, maxima, log histograms) that folds into the study's in any
order: the same master seed gives the same table on one worker or many, and memory does not
grow with the number of runs. Per-run rows are kept only for failures and extremes (and, with
`--rows FILE`, every row is streamed to a JSON-lines file).

Writes study.json (summary and kept rows), study.md (the tables), two plots (PNG) and the
campaign's checkpoint (checkpoint.jsonl, for `--resume`) under --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sim import campaign, worker
from sim.engine import SimError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

# rate mL/h -> bag hours (the label's bags, sim.scenario.bag_table())
RATES: dict[float, int] = {10.0: 24, 5.0: 48, 0.6: 168}


class Cell:
    """One fault kind with its parameters, what must be raised, and the targets."""

    def __init__(self, name: str, kind: str, params: dict[str, Any], code: str,
                 horizon_h: float, max_excess_ml: float | None = None,
                 max_latency_min: float | None = None, max_bolus_ml: float | None = None,
                 target: str = "") -> None:
        self.name = name
        self.kind = kind
        self.params = params
        self.code = code
        self.horizon_h = horizon_h            # how long the run goes on after the onset
        self.max_excess_ml = max_excess_ml
        self.max_latency_min = max_latency_min
        self.max_bolus_ml = max_bolus_ml
        self.target = target


CELLS: dict[str, Cell] = {c.name: c for c in (
    Cell("runaway-x2", "motor_runaway", {"factor": 2.0}, "OVER_INFUSION", 1.0,
         max_excess_ml=0.1, target="PR-1"),
    Cell("runaway-x10", "motor_runaway", {"factor": 10.0}, "OVER_INFUSION", 0.5,
         max_excess_ml=0.1, target="PR-1"),
    Cell("runaway-x100", "motor_runaway", {"factor": 100.0}, "OVER_INFUSION", 0.5,
         max_excess_ml=0.1, target="PR-1"),
    Cell("controller-x2", "controller_rate_error", {"factor": 2.0}, "OVER_INFUSION", 1.0,
         max_excess_ml=0.25, target="PR-1"),
    Cell("drift+10%", "rate_drift", {"factor": 1.1}, "OVER_INFUSION", 1.5,
         max_latency_min=60.0, target="PR-1"),
    Cell("free-flow", "free_flow", {"clamp_open": True}, "FREE_FLOW", 0.25,
         max_excess_ml=0.1, target="PR-1"),
    Cell("occlusion", "occlusion", {"duration_s": 3600.0}, "OCCLUSION", 1.5,
         max_latency_min=30.0, max_bolus_ml=0.05, target="PR-3"),
    Cell("sensor-dropout", "rotation_sensor_dropout", {"fraction": 1.0}, "SENSOR_FAULT", 1.0,
         target="SR-10"),
)}
ONSET_H = (0.25, 2.25)                    # onset sampled uniformly in this window
TAIL_H = 0.5                              # a whole nominal bag runs on this long after its end
MIN_PART_H = 0.05                         # a remainder shorter than this is not run
BATCH_WAKES = 200000                      # estimated firmware wakes per batch (about 2 s)
KEEP_FAILED = 20                          # failed runs kept per group (the lowest indices)
FULL = (100, 10000.0)                     # --full: runs per cell, nominal pump-days


# --- the plan ----------------------------------------------------------------------------------

def groups(cells: list[str], rates: list[float], seeds: int,
           days: float) -> list[dict[str, Any]]:
    """The campaign's groups of alike runs: one per fault cell and rate, one per rate of
    nominal bags. `g` numbers them; a run is (group, index)."""
    out: list[dict[str, Any]] = []
    for name in cells:
        for rate in rates:
            out.append({"g": len(out), "part": "fault", "cell": name, "rate": rate,
                        "n": seeds})
    if days > 0:
        per_rate_h = days * 24.0 / len(rates)
        for rate in rates:
            bag_h = RATES[rate]
            whole = int(math.floor(per_rate_h / bag_h + 1e-9))
            rem = per_rate_h - whole * bag_h
            rem_h = round(rem, 6) if rem >= MIN_PART_H else 0.0
            out.append({"g": len(out), "part": "nominal", "cell": "nominal", "rate": rate,
                        "n": whole + (1 if rem_h else 0), "bag_h": bag_h, "rem_h": rem_h,
                        "whole": whole})
    return out


def draw(master_seed: int, g: int, i: int) -> tuple[int, float]:
    """The plant seed and fault onset (h) of run i of group g: numpy, from the master seed."""
    rng = np.random.default_rng([master_seed, g, i])
    seed = int(rng.integers(1, 2**31 - 1))
    onset = round(float(rng.uniform(ONSET_H[0], ONSET_H[1])), 6)
    return seed, onset


def run_hours(group: dict[str, Any], i: int, onset_h: float) -> float:
    if group["part"] == "fault":
        return onset_h + CELLS[group["cell"]].horizon_h
    if i >= group["whole"]:
        return group["rem_h"]
    return group["bag_h"] + TAIL_H


def _wakes_per_h(rate: float) -> float:
    """Firmware wakes an hour at a rate: a delivery segment every 36 s and a rotation
    compare about every 3.5 pulses of 12.5 µL (the batch size's estimate)."""
    return 100.0 + 23.0 * rate


def _group_cost(group: dict[str, Any]) -> tuple[float, float]:
    """(estimated wakes of one run, pump-days of one run) for sizing the batches."""
    if group["part"] == "fault":
        h = sum(ONSET_H) / 2.0 + CELLS[group["cell"]].horizon_h
        return h * _wakes_per_h(group["rate"]), h / 24.0
    h = group["bag_h"] + TAIL_H
    return h * _wakes_per_h(group["rate"]), group["bag_h"] / 24.0


def batches(plan: list[dict[str, Any]], master_seed: int, rows: bool = False,
            batch_wakes: float = BATCH_WAKES,
            interpreter: str | None = None) -> Iterator[campaign.Batch]:
    """The campaign's batches, each of about `batch_wakes` firmware wakes, ids in a fixed
    order: the fault cells first (short runs), then the nominal groups interleaved by
    pump-days (the next batch from the rate with the fewest so far), so that an interrupted
    campaign has covered every cell and every rate evenly. `interpreter`: the Python the
    runs go to (sim.worker; None: the worker's own)."""
    def chunks(g: dict[str, Any]) -> Iterator[tuple[float, float, dict[str, Any]]]:
        wakes, days = _group_cost(g)
        per = max(1, int(batch_wakes // max(wakes, 1.0)))
        for start in range(0, g["n"], per):
            stop = min(g["n"], start + per)
            n = stop - start
            pump_days = n * days
            if g["part"] == "nominal" and stop > g["whole"]:
                pump_days -= (g["bag_h"] - g["rem_h"]) / 24.0
            yield n * wakes, pump_days, {"master": master_seed, "group": g, "start": start,
                                         "stop": stop, "rows": rows,
                                         "interpreter": interpreter}

    bid = 0
    for g in plan:
        if g["part"] == "fault":
            for cost, days, payload in chunks(g):
                yield campaign.Batch(bid, cost, days, payload)
                bid += 1
    streams = [(0.0, g["g"], chunks(g)) for g in plan if g["part"] == "nominal"]
    while streams:
        streams.sort(key=lambda s: (s[0], s[1]))
        done, gid, it = streams[0]
        nxt = next(it, None)
        if nxt is None:
            streams.pop(0)
            continue
        cost, days, payload = nxt
        yield campaign.Batch(bid, cost, days, payload)
        bid += 1
        streams[0] = (done + days, gid, it)


# --- one run (on a worker) ---------------------------------------------------------------------

def _scenario_dict(name: str, rate: float, hours: float, seed: int,
                   faults: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "patient": {"weight_kg": 70.0},
        "prescription": {"drug": "blinatumomab", "dose_ug_per_day": 28.0,
                         "bag_hours": RATES[rate]},
        "run": {"hours": hours, "seed": seed},
        "faults": faults,
    }


def spec(master_seed: int, group: dict[str, Any], i: int) -> dict[str, Any]:
    """Run i of a group: what it is and its scenario."""
    seed, onset = draw(master_seed, group["g"], i)
    rate = group["rate"]
    hours = run_hours(group, i, onset)
    if group["part"] == "fault":
        cell = CELLS[group["cell"]]
        fault = {"at_h": onset, "kind": cell.kind, **cell.params}
        return {"part": "fault", "cell": cell.name, "rate": rate, "g": group["g"], "i": i,
                "seed": seed, "onset_h": onset, "code": cell.code,
                "scenario": _scenario_dict("study-%s-%g-%d" % (cell.name, rate, seed), rate,
                                           hours, seed, [fault])}
    return {"part": "nominal", "cell": "nominal", "rate": rate, "g": group["g"], "i": i,
            "seed": seed, "onset_h": 0.0, "code": None, "partial": i >= group["whole"],
            "scenario": _scenario_dict("study-nominal-%g-%d" % (rate, seed), rate, hours,
                                       seed, [])}


def work(payload: dict[str, Any]) -> dict[str, Any]:
    """One batch (on a worker): its runs, folded into a partial aggregate of its group. With
    an interpreter in the payload the runs go to that Python (sim.worker, a process kept for
    the worker's next batches) and its CPU time is counted with this one's."""
    c0 = time.thread_time()
    g = payload["group"]
    agg = new_agg(g)
    rows: list[dict[str, Any]] = []
    specs = [spec(payload["master"], g, i) for i in range(payload["start"], payload["stop"])]
    other = payload.get("interpreter")
    child_cpu_s = 0.0
    if other:
        got, child_cpu_s = worker.run_specs_on(other, specs)
    else:
        got = [worker.run_spec_kept(sp) for sp in specs]
    for row in got:
        add_row(agg, g, row)
        if payload["rows"]:
            rows.append(row)
    out: dict[str, Any] = {"g": g["g"], "agg": agg,
                           "cpu_s": time.thread_time() - c0 + child_cpu_s,
                           "child_cpu_s": child_cpu_s}
    if payload["rows"]:
        out["rows"] = rows
    return out


# --- aggregates: fold in any order --------------------------------------------------------------

_LOG_STEP = math.log(1.01)                # histogram bins: 1 % wide
_TINY = 1e-9                              # values at or below: the zero bin


def hist_add(h: dict[str, Any], v: float) -> None:
    if v <= _TINY:
        h["zero"] += 1
        return
    k = str(int(math.floor(math.log(v) / _LOG_STEP)))
    b = h["bins"]
    b[k] = b.get(k, 0) + 1


def hist_merge(h: dict[str, Any], o: dict[str, Any]) -> None:
    h["zero"] += o["zero"]
    b = h["bins"]
    for k, n in o["bins"].items():
        b[k] = b.get(k, 0) + n


def hist_quantile(h: dict[str, Any], q: float, top: float | None) -> float | None:
    """The q-quantile (nearest rank) as its bin's upper edge: never below the true value,
    at most 1 % above it (and never above the exact maximum `top`)."""
    n = h["zero"] + sum(h["bins"].values())
    if n == 0:
        return None
    rank = max(1, int(math.ceil(q * n - 1e-9)))
    if rank <= h["zero"]:
        return 0.0
    seen = h["zero"]
    for k in sorted(h["bins"], key=int):
        seen += h["bins"][k]
        if seen >= rank:
            edge = math.exp((int(k) + 1) * _LOG_STEP)
            return edge if top is None or edge < top else top
    return top


def _hist() -> dict[str, Any]:
    return {"zero": 0, "bins": {}}


def new_agg(group: dict[str, Any]) -> dict[str, Any]:
    a: dict[str, Any] = {"n": 0, "errors": 0, "run_ms": 0, "sim_ms": 0, "failed": 0,
                         "kept": [], "max": {}, "min": {}}
    if group["part"] == "fault":
        a.update(detected=0, early=0, excess=_hist(), latency=_hist(), bolus=_hist())
    else:
        a.update(false_alarms=0, false_runs=0, completed=0, whole=0, excess=_hist())
    return a


def _extreme(a: dict[str, Any], key: str, v: float, row: dict[str, Any]) -> None:
    """Keep the largest (and smallest) value of `key` with its row; ties: the lower index."""
    cur = a["max"].get(key)
    if cur is None or v > cur[0] or (v == cur[0] and row["i"] < cur[1]["i"]):
        a["max"][key] = [v, row]
    low = a["min"].get(key)
    if low is None or v < low:
        a["min"][key] = v


def _failed(group: dict[str, Any], row: dict[str, Any]) -> bool:
    if "error" in row:
        return True
    if group["part"] == "nominal":
        want = "RUNNING" if row["partial"] else "COMPLETE"
        return bool(row["false"]) or row["final_state"] != want
    cell = CELLS[group["cell"]]
    lat = row["latency_s"]
    return (not row["detected"] or bool(row["early"])
            or (cell.max_excess_ml is not None and row["fault_excess_ml"] > cell.max_excess_ml)
            or (cell.max_latency_min is not None
                and (lat is None or lat / 60.0 > cell.max_latency_min))
            or (cell.max_bolus_ml is not None and row["bolus_ml"] > cell.max_bolus_ml))


def _keep(a: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    kept = a["kept"] + rows
    kept.sort(key=lambda r: r["i"])
    a["kept"] = kept[:KEEP_FAILED]


def add_row(a: dict[str, Any], group: dict[str, Any], row: dict[str, Any]) -> None:
    a["n"] += 1
    if "error" in row:
        a["errors"] += 1
        a["failed"] += 1
        _keep(a, [row])
        return
    a["run_ms"] += row["run_ms"]
    a["sim_ms"] += row["sim_ms"]
    if group["part"] == "fault":
        if row["detected"]:
            a["detected"] += 1
            lat = row["latency_s"] / 60.0
            hist_add(a["latency"], lat)
            _extreme(a, "latency_min", lat, row)
        if row["early"]:
            a["early"] += 1
        hist_add(a["excess"], row["fault_excess_ml"])
        _extreme(a, "fault_excess_ml", row["fault_excess_ml"], row)
        hist_add(a["bolus"], row["bolus_ml"])
        _extreme(a, "bolus_ml", row["bolus_ml"], row)
    else:
        a["false_alarms"] += len(row["false"])
        a["false_runs"] += 1 if row["false"] else 0
        if not row["partial"]:
            a["whole"] += 1
            a["completed"] += 1 if row["final_state"] == "COMPLETE" else 0
        hist_add(a["excess"], row["excess_ml"])
        _extreme(a, "excess_ml", row["excess_ml"], row)
    if _failed(group, row):
        a["failed"] += 1
        _keep(a, [row])


def merge(a: dict[str, Any], o: dict[str, Any]) -> None:
    """Fold partial aggregate o (same group) into a; the result does not depend on order."""
    for k, v in o.items():
        if k in ("kept", "max", "min"):
            continue
        if isinstance(v, dict):
            hist_merge(a[k], v)
        else:
            a[k] += v
    for key, (v, row) in o["max"].items():
        _extreme(a, key, v, row)
    for key, v in o["min"].items():
        if key not in a["min"] or v < a["min"][key]:
            a["min"][key] = v
    _keep(a, o["kept"])


class Study:
    """The study's aggregates, one per group, folded from the batches' partials."""

    def __init__(self, plan: list[dict[str, Any]], rows_file: str | None = None) -> None:
        self.plan = plan
        self.aggs = {g["g"]: new_agg(g) for g in plan}
        self.rows_file = rows_file
        self._rows: Any = None
        self.part = {g["g"]: g["part"] for g in plan}
        self.cpu_s = {"fault": 0.0, "nominal": 0.0}    # the workers' CPU time, by part

    def fold(self, partial: dict[str, Any]) -> None:
        merge(self.aggs[partial["g"]], partial["agg"])
        self.cpu_s[self.part[partial["g"]]] += partial.get("cpu_s", 0.0)
        rows = partial.pop("rows", None)
        if rows and self.rows_file is not None:
            if self._rows is None:
                self._rows = open(self.rows_file, "a")
            for r in rows:
                self._rows.write(json.dumps(r) + "\n")
            self._rows.flush()

    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()
            self._rows = None


# --- summary -----------------------------------------------------------------------------------

def _stats(a: dict[str, Any], key: str, hist: str) -> dict[str, float | None]:
    top = a["max"].get(key)
    mx = None if top is None else top[0]
    return {"max": mx, "p99": hist_quantile(a[hist], 0.99, mx),
            "median": hist_quantile(a[hist], 0.5, mx), "min": a["min"].get(key)}


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[int, int]] = set()
    out = []
    for r in rows:
        if (r["g"], r["i"]) not in seen:
            seen.add((r["g"], r["i"]))
            out.append(r)
    return out


def summarise(study: Study, wall_s: float = 0.0, cpu_s: float = 0.0) -> dict[str, Any]:
    """Per-cell statistics against the targets, and the false-alarm campaign."""
    cells: list[dict[str, Any]] = []
    nominal: dict[str, Any] = {"runs": 0, "whole_bags": 0, "run_ms": 0, "sim_ms": 0,
                               "false_alarms": 0, "false_runs": 0, "completed": 0,
                               "errors": 0, "failed": 0, "by_rate": {}, "kept": []}
    for g in study.plan:
        a = study.aggs[g["g"]]
        if g["part"] == "fault":
            if a["n"] == 0:
                continue
            cell = CELLS[g["cell"]]
            s: dict[str, Any] = {
                "cell": cell.name, "rate_ml_per_h": g["rate"], "kind": cell.kind,
                "params": cell.params, "code": cell.code, "target": cell.target,
                "n": a["n"], "detected": a["detected"], "early_alarms": a["early"],
                "errors": a["errors"], "failed": a["failed"],
                "fault_excess_ml": _stats(a, "fault_excess_ml", "excess"),
                "latency_min": _stats(a, "latency_min", "latency"),
                "bolus_ml": _stats(a, "bolus_ml", "bolus"),
                "limits": {"max_excess_ml": cell.max_excess_ml,
                           "max_latency_min": cell.max_latency_min,
                           "max_bolus_ml": cell.max_bolus_ml},
                "kept": _unique([a["max"][k][1] for k in ("fault_excess_ml", "latency_min",
                                                           "bolus_ml") if k in a["max"]]
                                + a["kept"]),
            }
            s["passed"] = a["failed"] == 0 and a["detected"] == a["n"]
            cells.append(s)
        else:
            nominal["runs"] += a["n"]
            nominal["whole_bags"] += a["whole"]
            for k in ("run_ms", "sim_ms", "false_alarms", "false_runs", "completed",
                      "errors", "failed"):
                nominal[k] += a[k]
            top = a["max"].get("excess_ml")
            nominal["by_rate"][str(g["rate"])] = {
                "runs": a["n"], "whole_bags": a["whole"],
                "pump_days": a["run_ms"] / 86400000.0,
                "false_alarms": a["false_alarms"],
                "max_excess_ml": top[0] if top is not None else 0.0}
            nominal["kept"] += ([top[1]] if top is not None else []) + a["kept"]
    nominal["pump_days"] = nominal["run_ms"] / 86400000.0
    nominal["sim_days"] = nominal["sim_ms"] / 86400000.0
    nominal["passed"] = nominal["failed"] == 0 and nominal["completed"] == nominal["whole_bags"]
    runs = sum(a["n"] for a in study.aggs.values())
    has_nominal = nominal["runs"] > 0
    return {"cells": cells, "nominal": nominal, "runs": runs,
            "wall_s": wall_s, "cpu_s": cpu_s,
            "passed": all(c["passed"] for c in cells) and (not has_nominal
                                                            or nominal["passed"])}


# --- report ------------------------------------------------------------------------------------

def _f(v: float | None, fmt: str = "%.3f") -> str:
    return "-" if v is None else fmt % v


def format_tables(summary: dict[str, Any]) -> str:
    """The study's tables in Markdown: the fault cells' (when it has any), the false-alarm
    campaign's (when it ran one), and a line of runs and timing."""
    lines = [
        "| cell | rate mL/h | n | detected | excess mL: max / p99 / median | detection "
        "latency, minutes: max / p99 / median | bolus mL max | target | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ] if summary["cells"] else []
    for c in summary["cells"]:
        e = c["fault_excess_ml"]
        lat = c["latency_min"]
        lim = c["limits"]
        tgt = []
        if lim["max_excess_ml"] is not None:
            tgt.append("excess <= %g mL" % lim["max_excess_ml"])
        if lim["max_latency_min"] is not None:
            tgt.append("latency <= %g min" % lim["max_latency_min"])
        if lim["max_bolus_ml"] is not None:
            tgt.append("bolus <= %g mL" % lim["max_bolus_ml"])
        lines.append("| %s | %g | %d | %d | %s / %s / %s | %s / %s / %s | %s | %s | %s |" % (
            c["cell"], c["rate_ml_per_h"], c["n"], c["detected"],
            _f(e["max"]), _f(e["p99"]), _f(e["median"]),
            _f(lat["max"], "%.2f"), _f(lat["p99"], "%.2f"), _f(lat["median"], "%.2f"),
            _f(c["bolus_ml"]["max"]) if c["kind"] == "occlusion" else "-",
            "%s: %s" % (c["target"], ", ".join(tgt) or "detected"),
            "yes" if c["passed"] else "**NO**"))
    n = summary["nominal"]
    if n["runs"]:
        lines += [""] if lines else []
        lines += [
            "| false-alarm campaign | runs | pump-days running | false alarms | whole bags "
            "completed | max excess mL |",
            "|---|---|---|---|---|---|",
            "| nominal, all rates | %d | %.1f | %d | %d/%d | %.3f |" % (
                n["runs"], n["pump_days"], n["false_alarms"], n["completed"], n["whole_bags"],
                max([b["max_excess_ml"] for b in n["by_rate"].values()], default=0.0)),
        ]
        for rate, b in n["by_rate"].items():
            lines.append("| %s mL/h | %d | %.1f | %d | | %.3f |" % (
                rate, b["runs"], b["pump_days"], b["false_alarms"], b["max_excess_ml"]))
    lines += ["", "%d runs; %s (%s)." % (summary["runs"], timing(summary),
                                          "all targets met" if summary["passed"]
                                          else "SOME TARGETS MISSED")]
    return "\n".join(lines)


def timing(summary: dict[str, Any]) -> str:
    c = summary.get("campaign", {})
    s = "%.1f s wall, %.1f CPU-s" % (summary["wall_s"], summary["cpu_s"])
    if c.get("scheduler"):
        s += " on %s" % c["scheduler"]
    if c.get("resumed_batches"):
        s += "; %d of %d batches resumed from the checkpoint (%.1f s wall in all invocations)" \
            % (c["resumed_batches"], c["batches"], c.get("wall_s_all_invocations", 0.0))
    return s


def plot(summary: dict[str, Any], out: Path) -> list[str]:
    """Two charts, one row per cell and rate: the median, p99 and maximum of the fault's
    excess volume and of the detection latency, each against its own limit (a red mark on
    the rows it applies to, none elsewhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[str] = []
    cells = list(summary["cells"])
    if not cells:
        return files
    labels = ["%s @ %g mL/h" % (c["cell"], c["rate_ml_per_h"]) for c in cells]
    for key, limit, title, xlab, floor, fname in (
            ("fault_excess_ml", "max_excess_ml",
             "Excess volume the fault put beyond the programmed line",
             "mL (log scale; values below 0.0001 drawn at 0.0001)", 1e-4,
             "study-excess.png"),
            ("latency_min", "max_latency_min", "Detection latency: fault onset to alarm",
             "minutes (log scale; values below 0.001 drawn at 0.001)", 1e-3,
             "study-latency.png")):
        h = 0.32 * len(cells) + 1.6
        fig, ax = plt.subplots(figsize=(9.0, h))
        ys = list(range(len(cells)))[::-1]
        for y, c in zip(ys, cells, strict=True):
            st = c[key]
            if st["max"] is None:
                ax.text(floor, y, "  not detected", va="center", fontsize=7, color="r")
                continue
            lo = max(st["min"] if st["min"] is not None else floor, floor)
            med, p99, mx = (max(st[k], floor) for k in ("median", "p99", "max"))
            ax.plot([lo, mx], [y, y], color="0.6", lw=1)
            ax.plot([med], [y], "o", color="C0", ms=4)
            ax.plot([p99], [y], "s", color="C1", ms=4)
            ax.plot([mx], [y], "^", color="k", ms=4)
            lim = c["limits"][limit]
            if lim is not None:
                ax.plot([lim, lim], [y - 0.4, y + 0.4], color="r", lw=2)
        ax.set_xscale("log")
        ax.set_yticks(ys, labels, fontsize=7)
        ax.set_ylim(-0.8, len(cells) - 0.2)
        ax.set_xlabel(xlab, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", which="both", color="0.92")
        handles = [
            plt.Line2D([], [], color="0.6", lw=1, label="min to max"),
            plt.Line2D([], [], marker="o", ls="", color="C0", label="median"),
            plt.Line2D([], [], marker="s", ls="", color="C1", label="p99"),
            plt.Line2D([], [], marker="^", ls="", color="k", label="max"),
            plt.Line2D([], [], color="r", lw=2, label="the cell's limit (where it has one)"),
        ]
        ax.legend(handles=handles, fontsize=7, loc="upper center", ncol=5,
                  bbox_to_anchor=(0.5, -0.5 / h - 0.04), frameon=False)
        path = out / fname
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(str(path))
    return files


# --- the study ---------------------------------------------------------------------------------

INTERIM_S = 300.0                         # an interim report this often (long campaigns)


def run_study(cells: list[str], rates: list[float], seeds: int, days: float,
              master_seed: int = 5, jobs: int | None = None, out: str | None = None,
              plots: bool = True, stream: Any = None, scheduler: str | None = None,
              resume: bool = False, rows_file: str | None = None,
              batch_wakes: float = BATCH_WAKES,
              interpreter: str | None = None) -> dict[str, Any]:
    """The whole study; returns {summary, files}. `scheduler`: None for a local Dask cluster
    of `jobs` workers, an address for an existing one, campaign.IN_PROCESS for none. A long
    campaign writes an interim study.md/study.json under `out` every INTERIM_S seconds.
    `interpreter`: simulate on that Python (e.g. pypy3; sim.worker), the same table."""
    plan = groups(cells, rates, seeds, days)
    key = {"cells": cells, "rates": rates, "seeds_per_cell": seeds, "nominal_days": days,
           "master_seed": master_seed, "batch_wakes": batch_wakes}
    if out is not None:               # a checkpoint resumes only on the firmware it began with
        from host.version import firmware_hash
        try:
            key["firmware_sha256"] = firmware_hash()[0]
        except (OSError, RuntimeError) as e:
            key["firmware_sha256"] = "unavailable: %s" % e
    study = Study(plan, rows_file)
    if rows_file is not None and not resume and os.path.exists(rows_file):
        os.remove(rows_file)
    total = sum(1 for _ in batches(plan, master_seed, False, batch_wakes))
    last = [time.perf_counter()]
    seen: list[campaign.Outcome] = []

    def write_interim(oc: campaign.Outcome) -> None:
        if out is not None:
            s = _summary(study, oc, plan, key)
            s["interim"] = {"batches_done": oc.batches, "batches": total}
            _write(Path(out), s, False)

    def interim(oc: campaign.Outcome) -> None:
        seen[:] = [oc]
        now = time.perf_counter()
        if now - last[0] >= INTERIM_S and oc.batches < total:
            last[0] = now
            write_interim(oc)

    try:
        oc = campaign.run(batches(plan, master_seed, rows_file is not None, batch_wakes,
                                  interpreter),
                          work, study.fold, out, key, scheduler, jobs, resume, stream,
                          on_fold=interim)
    except KeyboardInterrupt:
        if seen:
            write_interim(seen[0])    # the tables of the batches finished so far
        raise
    finally:
        study.close()
    summary = _summary(study, oc, plan, key)
    files = _write(Path(out), summary, plots) if out is not None else []
    return {"summary": summary, "files": files}


def _summary(study: Study, oc: campaign.Outcome, plan: list[dict[str, Any]],
             key: dict[str, Any]) -> dict[str, Any]:
    summary = summarise(study, oc.wall_s, oc.cpu_s)
    nom_cpu = study.cpu_s["nominal"]
    summary["campaign"] = {
        "cells": key["cells"], "rates": key["rates"], "seeds_per_cell": key["seeds_per_cell"],
        "nominal_days_asked": key["nominal_days"], "master_seed": key["master_seed"],
        "firmware_sha256": key.get("firmware_sha256"),
        "scheduler": oc.scheduler, "address": oc.address, "workers": oc.workers,
        "wall_s_all_invocations": oc.wall_s_all,
        "batches": oc.batches, "resumed_batches": oc.resumed,
        "cpu_s_fault": study.cpu_s["fault"], "cpu_s_nominal": nom_cpu,
        "cpu_s_this_invocation": oc.cpu_s_now,
        "pump_days_this_invocation": oc.pump_days_now,
        "nominal_pump_days_per_cpu_s": (summary["nominal"]["pump_days"] / nom_cpu
                                        if nom_cpu > 0 else None),
    }
    return summary


def _write(d: Path, summary: dict[str, Any], plots: bool) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    (d / "study.json").write_text(json.dumps({"summary": summary}, indent=1,
                                             default=str) + "\n")
    md = format_tables(summary)
    it = summary.get("interim")
    if it:
        md = ("**Interim**: %d of %d batches done; the campaign goes on (or, interrupted, "
              "continues with --resume).\n\n" % (it["batches_done"], it["batches"])) + md
    (d / "study.md").write_text(md + "\n")
    files = [str(d / "study.json"), str(d / "study.md")]
    if plots:
        files += plot(summary, d)
    return files


# --- command line --------------------------------------------------------------------------

def add_parser(sub: Any) -> None:
    """Called by sim/cli.py (SUBCOMMANDS["study"])."""
    p = sub.add_parser(
        "study", help="Monte Carlo study of the safety monitor (PR-1, PR-2, PR-3)",
        description="Fault kind x rate x sampled (seed, onset) through the firmware, plus a "
        "false-alarm campaign over nominal pump-days; per-cell excess volume and detection "
        "latency (max, p99, median). Runs on Dask: a local cluster on 127.0.0.1 by default, "
        "or an existing one (--scheduler). Exit 0 when every target is met, 1 otherwise, "
        "2 for bad arguments.")
    p.add_argument("--seeds", type=int, default=20, metavar="N",
                   help="sampled (seed, onset) runs per fault cell and rate (default 20)")
    p.add_argument("--days", type=float, default=30.0, metavar="D",
                   help="nominal pump-days (time running) for the false-alarm campaign, "
                   "spread evenly over the rates (default 30; 0: none)")
    p.add_argument("--full", action="store_true",
                   help="the full campaign: %d runs per cell and %s nominal pump-days"
                   % (FULL[0], f"{FULL[1]:,.0f}"))
    p.add_argument("--cells", default=",".join(CELLS), metavar="LIST",
                   help="fault cells, comma-separated (default: all; none: only the "
                   "false-alarm campaign): " + ", ".join(CELLS).replace("%", "%%"))
    p.add_argument("--rates", default="10,5,0.6", metavar="LIST",
                   help="rates in mL/h, comma-separated, among 10, 5, 0.6 (default: all)")
    p.add_argument("--seed", type=int, default=5, help="master seed (default 5)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: one per CPU)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (docs/study.md); "
                   "'none': every batch in this process, without Dask")
    p.add_argument("--resume", action="store_true",
                   help="continue the campaign checkpointed in --out (same options): "
                   "finished batches are not run again")
    p.add_argument("--rows", metavar="FILE", default=None,
                   help="also stream every run's row to FILE (JSON lines)")
    p.add_argument("--out", default="report/study", metavar="DIR",
                   help="folder for study.json, study.md, the plots and the checkpoint "
                   "(default report/study)")
    p.add_argument("--no-plots", action="store_true",
                   help="write study.json and study.md only, no PNG plots")
    p.add_argument("--interpreter", metavar="CMD", default=None,
                   help="simulate on another Python, e.g. pypy3 (a process kept by each "
                   "worker): the same table, about 3x the pump-days per CPU-second "
                   "(docs/study.md); on a cluster every worker machine needs it")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=main)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt     # SIGTERM stops a campaign as Ctrl-C does: cleanly


def _invalid(msg: str) -> int:
    print("pumpsim study: %s" % msg, file=sys.stderr)
    return EXIT_INVALID


def main(args: argparse.Namespace) -> int:
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if cells == ["none"]:
        cells = []
    bad = [c for c in cells if c not in CELLS]
    if bad:
        return _invalid("--cells: unknown %s (known: %s, or none)" % (", ".join(bad),
                                                                      ", ".join(CELLS)))
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        return _invalid("--rates: expected numbers, got %r" % args.rates)
    if not rates or any(r not in RATES for r in rates):
        return _invalid("--rates: each must be one of %s" % ", ".join("%g" % r for r in RATES))
    seeds, days = FULL if args.full else (args.seeds, args.days)
    if seeds < 1 or not days >= 0 or not math.isfinite(days):
        return _invalid("--seeds must be >= 1 and --days a number >= 0")
    if not cells and days == 0:
        return _invalid("nothing to run: no fault cell and --days 0")
    if args.jobs is not None and args.jobs < 1:
        return _invalid("--jobs must be >= 1")
    if args.interpreter:
        try:
            worker.executable(args.interpreter)
        except SimError as e:
            return _invalid("--interpreter %s" % e)
    t0 = time.perf_counter()
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        res = run_study(cells, rates, seeds, days, args.seed, args.jobs, args.out,
                        not args.no_plots, sys.stderr, args.scheduler, args.resume, args.rows,
                        interpreter=args.interpreter)
    except campaign.CampaignError as e:
        return _invalid(str(e))
    except KeyboardInterrupt:
        print("\npumpsim study: interrupted; the tables of the finished batches are in %s, "
              "the batches in %s; the same command with --resume continues the campaign"
              % (os.path.join(args.out, "study.md"),
                 os.path.join(args.out, campaign.CHECKPOINT)), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, old)
    s = res["summary"]
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    else:
        print(format_tables(s))
        for f in res["files"]:
            print("wrote %s" % f)
        if args.rows:
            print("wrote %s" % args.rows)
        print("(%.1f s in all)" % (time.perf_counter() - t0), file=sys.stderr)
    return EXIT_OK if s["passed"] else EXIT_FAILED
