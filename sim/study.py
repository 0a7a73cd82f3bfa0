"""`pumpsim study`: the Monte Carlo campaign that measures the safety monitor (issue 5).

Two parts, both run through the real firmware on the plant (sim.runner.Sim), in parallel
worker processes:

- **fault cells**: fault kind x rate (10, 5, 0.6 mL/h: the 24 h, 48 h and 7-day bags) x
  sampled (plant seed, onset time). Per cell: detection rate, the excess volume the fault
  put beyond the programmed line (the runner's `fault_excess_ml`: max, p99, median),
  detection latency (max, p99, median), and for occlusions the bolus (volume released, plus
  what is still held in the line and would be released on reopening). Targets: PR-1, PR-3.
- **false-alarm campaign**: whole nominal bags with realistic plant noise (cassette factor,
  stroke-to-stroke volume, rotation-slot jitter: the PlantConfig defaults), counted in
  pump-days; any OVER_INFUSION, UNDER_INFUSION, OCCLUSION, SENSOR_FAULT or FREE_FLOW there is
  a false alarm (PR-2).

Sampling and statistics use numpy (one master seed: the same command gives the same table).
Writes study.json, study.md (the tables) and plots (PNG) under --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

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
FALSE_ALARMS = ("OVER_INFUSION", "UNDER_INFUSION", "OCCLUSION", "SENSOR_FAULT", "FREE_FLOW")
ONSET_H = (0.25, 2.25)                    # onset sampled uniformly in this window


# --- one run (in a worker process) -------------------------------------------------------------

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


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one sampled scenario; return the figures the study needs."""
    from sim import runner, scenario

    t0 = time.perf_counter()
    sc = scenario.parse(spec["scenario"])
    sim = runner.Sim(sc, storage="memory")
    try:
        sim.run()
        p = sim.plant
        alarms = [(a["t_s"], a["code"]) for a in sim.alarms]
        row: dict[str, Any] = {k: spec[k] for k in ("part", "cell", "rate", "seed", "onset_h")}
        row["hours"] = sim.now / 3600000.0
        row["final_state"] = sim.controller.state if sim.controller is not None else "OFF"
        row["alarms"] = sorted({c for _, c in alarms})
        row["excess_ml"] = max(0.0, sim.excess_ul) / 1000.0
        row["fault_excess_ml"] = max(0.0, sim.fault_excess_ul) / 1000.0
        # bolus: what was released, or is still held in the line and would be on reopening
        row["bolus_ml"] = max(p.bolus_ul, p.stored_ul) / 1000.0
        row["run_h"] = (sim.run_ms if sim.run_since is None
                        else sim.run_ms + sim.now - sim.run_since) / 3600000.0
        code = spec.get("code")
        if code is not None:
            applied = sim.faults_applied
            onset_s = applied[0]["t_s"] if applied else spec["onset_h"] * 3600.0
            hits = [t for t, c in alarms if c == code and t >= onset_s]
            row["detected"] = bool(hits)
            row["latency_s"] = hits[0] - onset_s if hits else None
            row["early"] = sorted({c for t, c in alarms if t < onset_s and c in FALSE_ALARMS})
        else:
            row["false"] = sorted({c for _, c in alarms if c in FALSE_ALARMS})
    finally:
        sim.close()
    row["wall_s"] = time.perf_counter() - t0
    return row


# --- the campaign ------------------------------------------------------------------------------

def plan(cells: list[str], rates: list[float], seeds: int, days: float,
         master_seed: int) -> list[dict[str, Any]]:
    """Every run of the campaign, sampled with numpy from one master seed."""
    rng = np.random.default_rng(master_seed)
    specs: list[dict[str, Any]] = []
    for name in cells:
        cell = CELLS[name]
        for rate in rates:
            sim_seeds = rng.integers(1, 2**31 - 1, size=seeds)
            onsets = rng.uniform(ONSET_H[0], ONSET_H[1], size=seeds)
            for s, on in zip(sim_seeds, onsets, strict=True):
                on = round(float(on), 6)
                fault = {"at_h": on, "kind": cell.kind, **cell.params}
                specs.append({
                    "part": "fault", "cell": name, "rate": rate, "seed": int(s),
                    "onset_h": on, "code": cell.code,
                    "scenario": _scenario_dict("study-%s-%g-%d" % (name, rate, s), rate,
                                               on + cell.horizon_h, int(s), [fault]),
                })
    # nominal pump-days, spread evenly over the rates; whole bags (+ 30 min after the end)
    if days > 0:
        per_rate = days / len(rates)
        for rate in rates:
            bag_h = RATES[rate]
            n = max(1, math.ceil(per_rate * 24.0 / bag_h - 1e-9))
            for s in rng.integers(1, 2**31 - 1, size=n):
                specs.append({
                    "part": "nominal", "cell": "nominal", "rate": rate, "seed": int(s),
                    "onset_h": 0.0, "code": None,
                    "scenario": _scenario_dict("study-nominal-%g-%d" % (rate, s), rate,
                                               bag_h + 0.5, int(s), []),
                })
    return specs


def run_campaign(specs: list[dict[str, Any]], jobs: int | None = None,
                 stream: Any = None) -> list[dict[str, Any]]:
    """Run every spec, longest first, in parallel processes (in-process when jobs == 1)."""
    order = sorted(range(len(specs)), key=lambda i: -specs[i]["scenario"]["run"]["hours"])
    ordered = [specs[i] for i in order]
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(ordered) or 1))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if n_jobs == 1:
        it: Any = map(run_spec, ordered)
        _collect(it, rows, len(ordered), t0, stream)
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            _collect(pool.map(run_spec, ordered, chunksize=4), rows, len(ordered), t0, stream)
    return rows


def _collect(it: Any, rows: list[dict[str, Any]], total: int, t0: float, stream: Any) -> None:
    step = max(1, total // 20)
    for row in it:
        rows.append(row)
        if stream is not None and (len(rows) % step == 0 or len(rows) == total):
            stream.write("[%d/%d] %.1fs\n" % (len(rows), total, time.perf_counter() - t0))
            stream.flush()


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"max": None, "p99": None, "median": None}
    a = np.asarray(values, dtype=float)
    return {"max": float(a.max()), "p99": float(np.percentile(a, 99)),
            "median": float(np.median(a))}


def summarise(rows: list[dict[str, Any]], cells: list[str], rates: list[float],
              wall_s: float) -> dict[str, Any]:
    """Per-cell statistics against the targets, and the false-alarm campaign."""
    out: list[dict[str, Any]] = []
    for name in cells:
        cell = CELLS[name]
        for rate in rates:
            rs = [r for r in rows if r["part"] == "fault" and r["cell"] == name
                  and r["rate"] == rate]
            if not rs:
                continue
            det = [r for r in rs if r["detected"]]
            lat = [r["latency_s"] / 60.0 for r in det]
            exc = [r["fault_excess_ml"] for r in rs]
            bol = [r["bolus_ml"] for r in rs]
            s: dict[str, Any] = {
                "cell": name, "rate_ml_per_h": rate, "kind": cell.kind, "params": cell.params,
                "code": cell.code, "target": cell.target, "n": len(rs),
                "detected": len(det), "early_alarms": sum(1 for r in rs if r["early"]),
                "fault_excess_ml": _stats(exc), "latency_min": _stats(lat),
                "bolus_ml": _stats(bol),
            }
            ok = len(det) == len(rs) and s["early_alarms"] == 0
            if cell.max_excess_ml is not None:
                ok = ok and max(exc) <= cell.max_excess_ml
            if cell.max_latency_min is not None:
                ok = ok and bool(lat) and max(lat) <= cell.max_latency_min
            if cell.max_bolus_ml is not None:
                ok = ok and max(bol) <= cell.max_bolus_ml
            s["limits"] = {"max_excess_ml": cell.max_excess_ml,
                           "max_latency_min": cell.max_latency_min,
                           "max_bolus_ml": cell.max_bolus_ml}
            s["passed"] = ok
            out.append(s)
    nom = [r for r in rows if r["part"] == "nominal"]
    false_rows = [r for r in nom if r["false"]]
    nominal = {
        "runs": len(nom),
        "pump_days": sum(r["run_h"] for r in nom) / 24.0,
        "sim_days": sum(r["hours"] for r in nom) / 24.0,
        "false_alarms": sum(len(r["false"]) for r in nom),
        "false_runs": [{"rate": r["rate"], "seed": r["seed"], "codes": r["false"]}
                       for r in false_rows],
        "completed": sum(1 for r in nom if r["final_state"] == "COMPLETE"),
        "cpu_s": sum(r["wall_s"] for r in nom),
        "by_rate": {str(rate): {
            "runs": sum(1 for r in nom if r["rate"] == rate),
            "pump_days": sum(r["run_h"] for r in nom if r["rate"] == rate) / 24.0,
            "max_excess_ml": max([r["excess_ml"] for r in nom if r["rate"] == rate],
                                 default=0.0)}
            for rate in rates},
    }
    nominal["passed"] = nominal["false_alarms"] == 0 and nominal["completed"] == nominal["runs"]
    fault_cpu = sum(r["wall_s"] for r in rows if r["part"] == "fault")
    return {"cells": out, "nominal": nominal, "runs": len(rows), "wall_s": wall_s,
            "fault_cpu_s": fault_cpu,
            "passed": all(c["passed"] for c in out) and (not nom or nominal["passed"])}


# --- report ------------------------------------------------------------------------------------

def _f(v: float | None, fmt: str = "%.3f") -> str:
    return "-" if v is None else fmt % v


def format_tables(summary: dict[str, Any]) -> str:
    lines = [
        "| cell | rate mL/h | n | detected | excess mL max / p99 / median | latency min "
        "max / p99 / median | bolus mL max | target | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
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
        lines += [
            "",
            "| false-alarm campaign | runs | pump-days running | false alarms | completed | "
            "cpu s |",
            "|---|---|---|---|---|---|",
            "| nominal bags, all rates | %d | %.1f | %d | %d/%d | %.0f |" % (
                n["runs"], n["pump_days"], n["false_alarms"], n["completed"], n["runs"],
                n["cpu_s"]),
        ]
        for rate, b in n["by_rate"].items():
            lines.append("| %s mL/h | %d | %.1f | | | |" % (rate, b["runs"], b["pump_days"]))
    lines += ["", "%d runs in %.1f s wall (%s)." % (
        summary["runs"], summary["wall_s"], "all targets met" if summary["passed"]
        else "SOME TARGETS MISSED")]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[str] = []
    cells = [c for c in summary["cells"]]
    if not cells:
        return files
    labels = ["%s\n%g" % (c["cell"], c["rate_ml_per_h"]) for c in cells]

    def series(c: dict[str, Any], key: str) -> list[float]:
        rs = [r for r in rows if r["part"] == "fault" and r["cell"] == c["cell"]
              and r["rate"] == c["rate_ml_per_h"]]
        if key == "latency":
            return [max(r["latency_s"] / 60.0, 1e-3) for r in rs
                    if r["latency_s"] is not None]
        return [max(r[key], 1e-4) for r in rs]

    for key, title, ylab, fname in (
            ("fault_excess_ml", "Excess volume beyond the programmed line after the fault",
             "mL (log)", "study-excess.png"),
            ("latency", "Detection latency", "minutes (log)", "study-latency.png")):
        fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(cells)), 4.8))
        data = [series(c, key) or [float("nan")] for c in cells]
        ax.boxplot(data, whis=(0, 100), widths=0.6)
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(cells) + 1), labels, rotation=90, fontsize=7)
        if key == "fault_excess_ml":
            ax.axhline(0.1, color="r", lw=0.8, ls="--", label="0.1 mL (PR-1)")
            ax.axhline(0.25, color="orange", lw=0.8, ls="--", label="0.25 mL (PR-1, x2 rate)")
        else:
            ax.axhline(30, color="orange", lw=0.8, ls="--", label="30 min (PR-3)")
            ax.axhline(60, color="r", lw=0.8, ls="--", label="60 min (PR-1 drift)")
        ax.legend(fontsize=7)
        ax.set_title(title + " (whiskers: min-max; values under %g drawn at it)"
                     % (1e-3 if key == "latency" else 1e-4), fontsize=10)
        ax.set_ylabel(ylab)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    return files


def run_study(cells: list[str], rates: list[float], seeds: int, days: float,
              master_seed: int = 5, jobs: int | None = None, out: str | None = None,
              plots: bool = True, stream: Any = None) -> dict[str, Any]:
    """The whole study; returns {summary, rows, files}."""
    t0 = time.perf_counter()
    specs = plan(cells, rates, seeds, days, master_seed)
    rows = run_campaign(specs, jobs, stream)
    summary = summarise(rows, cells, rates, time.perf_counter() - t0)
    summary["campaign"] = {"cells": cells, "rates": rates, "seeds_per_cell": seeds,
                           "nominal_days_asked": days, "master_seed": master_seed,
                           "jobs": jobs or os.cpu_count()}
    files: list[str] = []
    if out is not None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "study.json").write_text(json.dumps({"summary": summary, "runs": rows},
                                                 indent=1, default=str) + "\n")
        (d / "study.md").write_text(format_tables(summary) + "\n")
        files = [str(d / "study.json"), str(d / "study.md")]
        if plots:
            files += plot(rows, summary, d)
    return {"summary": summary, "rows": rows, "files": files}


# --- command line --------------------------------------------------------------------------

def add_parser(sub: Any) -> None:
    """Called by sim/cli.py (SUBCOMMANDS["study"])."""
    p = sub.add_parser(
        "study", help="Monte Carlo study of the safety monitor (PR-1, PR-2, PR-3)",
        description="Fault kind x rate x sampled (seed, onset) through the firmware, plus a "
        "false-alarm campaign over nominal pump-days; per-cell excess volume and detection "
        "latency (max, p99, median). Exit 0 when every target is met, 1 otherwise.")
    p.add_argument("--seeds", type=int, default=20, metavar="N",
                   help="sampled (seed, onset) runs per fault cell (default 20)")
    p.add_argument("--days", type=float, default=30.0, metavar="D",
                   help="nominal pump-days for the false-alarm campaign (default 30)")
    p.add_argument("--full", action="store_true",
                   help="the full campaign: 100 runs per cell and 10,000 nominal pump-days")
    p.add_argument("--cells", default=",".join(CELLS), metavar="LIST",
                   help="fault cells, comma-separated (default: all): "
                   + ", ".join(CELLS).replace("%", "%%"))
    p.add_argument("--rates", default="10,5,0.6", metavar="LIST",
                   help="rates in mL/h, comma-separated, among 10, 5, 0.6 (default: all)")
    p.add_argument("--seed", type=int, default=5, help="master seed (default 5)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="worker processes (default: one per CPU)")
    p.add_argument("--out", default="report/study", metavar="DIR",
                   help="folder for study.json, study.md and plots (default report/study)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        print("pumpsim study: --cells: unknown %s (known: %s)" % (", ".join(bad),
                                                                  ", ".join(CELLS)),
              file=sys.stderr)
        return EXIT_INVALID
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        print("pumpsim study: --rates: expected numbers, got %r" % args.rates, file=sys.stderr)
        return EXIT_INVALID
    if not rates or any(r not in RATES for r in rates):
        print("pumpsim study: --rates: each must be one of %s" % ", ".join(
            "%g" % r for r in RATES), file=sys.stderr)
        return EXIT_INVALID
    seeds, days = (100, 10000.0) if args.full else (args.seeds, args.days)
    if seeds < 1 or days < 0:
        print("pumpsim study: --seeds must be >= 1 and --days >= 0", file=sys.stderr)
        return EXIT_INVALID
    res = run_study(cells, rates, seeds, days, args.seed, args.jobs, args.out,
                    not args.no_plots, sys.stderr)
    s = res["summary"]
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    else:
        print(format_tables(s))
        for f in res["files"]:
            print("wrote %s" % f)
    return EXIT_OK if s["passed"] else EXIT_FAILED
