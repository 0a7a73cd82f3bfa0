"""Per-scenario plots (PNG, matplotlib Agg): volume over time with alarms, and delivery rate.

Top panel: plant-delivered volume (truth) against the programmed line (`allowed_ml`, the
programmed rate integrated over running time, capped at each VTBI) and the firmware's own
count, with every alarm as a vertical line labelled with its code. Middle panel: the excess,
delivered minus programmed, at a scale where 0.1 mL shows. Bottom panel: delivery rate in
mL/h from differencing the delivered volume on a regular grid, with the programmed rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.trumpet import read_trace

# Long runs are shown in days, short ones in hours or minutes.
_UNITS = ((3 * 86400.0, 86400.0, "days"), (3 * 3600.0, 3600.0, "h"), (0.0, 60.0, "min"))
_RATE_POINTS = 400        # about this many rate points across the run, whatever its length
_PLOT_POINTS = 6000       # drawn points per curve (a 28-day trace has ~40,000 rows)


def _time_unit(span_s: float) -> tuple[float, str]:
    for above, div, name in _UNITS:
        if span_s > above:
            return div, name
    return 60.0, "min"


def rate_series(t_s: np.ndarray, volume_ml: np.ndarray,
                step_s: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Rate (mL/h) from differencing volume on a regular grid of `step_s` seconds.

    Returns (midpoints s, rate mL/h, step s). The default step is the trace's sampling
    interval widened so a run shows about _RATE_POINTS points (a 28-day run averages over
    ~100 min; a 2-hour run shows every sample)."""
    t = np.asarray(t_s, dtype=float)
    v = np.asarray(volume_ml, dtype=float)
    if t.size < 2 or t[-1] <= t[0]:
        return np.zeros(0), np.zeros(0), 0.0
    keep = np.append(t[1:] != t[:-1], True)   # last value at each time
    t, v = t[keep], v[keep]
    if step_s is None:
        d = np.diff(t)
        base = float(np.median(d)) if d.size else 60.0
        base = max(base, 1.0)
        want = (t[-1] - t[0]) / _RATE_POINTS
        step_s = base * max(1.0, np.ceil(want / base))
    n = int((t[-1] - t[0]) // step_s)
    if n < 1:
        step_s = float(t[-1] - t[0])
        n = 1
    grid = t[0] + step_s * np.arange(n + 1)
    vg = np.interp(grid, t, v)
    rate = np.diff(vg) / (step_s / 3600.0)
    return (grid[:-1] + grid[1:]) / 2.0, rate, float(step_s)


def decimate(x: np.ndarray, ys: list[np.ndarray], points: int = _PLOT_POINTS
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    """At most about `points` points per series for drawing, keeping each bucket's first,
    smallest and largest value of the last series (the excess: a short spike must survive)."""
    n = x.size
    if n <= points:
        return x, ys
    k = int(np.ceil(n / (points / 3.0)))
    m = (n // k) * k
    base = np.arange(0, m, k)
    key = ys[-1][:m].reshape(-1, k)
    lo = base + np.argmin(key, axis=1)
    hi = base + np.argmax(key, axis=1)
    idx = np.unique(np.concatenate([base, lo, hi, np.arange(m, n)]))
    return x[idx], [y[idx] for y in ys]


def alarm_events(trace: dict[str, Any]) -> list[tuple[float, str]]:
    """(t_s, code) for each alarm raised in the trace (a row whose alarm column is set)."""
    t = trace["t_s"]
    out = []
    prev = ""
    for ti, a in zip(t, trace.get("alarm", []), strict=False):
        a = (a or "").strip()
        if a and a != prev:
            out.append((float(ti), a))
        prev = a
    return out


def plot_scenario(trace_path: str | Path, out_png: str | Path, title: str = "",
                  alarms: list[dict[str, Any]] | None = None,
                  prescribed_ml: float | None = None,
                  faults: list[dict[str, Any]] | None = None,
                  excess_limit_ml: float | None = None) -> Path:
    """Volume, excess and rate plot of one scenario's trace. `alarms` (the result's list of
    {t_s, code}) wins over the trace's alarm column when given; `faults` (the result's list
    of {t_s, kind}) are marked as dashed lines labelled at the bottom; `excess_limit_ml` (the
    scenario's max_excess_ml) is drawn on the excess panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = read_trace(trace_path)
    t = np.asarray(tr["t_s"], dtype=float)
    delivered = np.asarray(tr["delivered_ml"], dtype=float)
    allowed = np.asarray(tr["allowed_ml"], dtype=float)
    counted = np.asarray(tr.get("counted_ml", np.full_like(t, np.nan)), dtype=float)
    span = float(t[-1] - t[0]) if t.size else 0.0
    div, unit = _time_unit(span)
    events = ([(float(a["t_s"]), str(a["code"])) for a in alarms] if alarms is not None
              else alarm_events(tr))

    fig, (ax1, ax3, ax2) = plt.subplots(3, 1, figsize=(10.0, 7.6), dpi=100, sharex=True,
                                        gridspec_kw={"height_ratios": [3, 1.4, 2]})
    xs, (allowed_d, counted_d, delivered_d, diff) = decimate(
        t / div, [allowed, counted, delivered, delivered - allowed])
    x = xs
    ax1.plot(x, allowed_d, color="tab:green", lw=2.2, alpha=0.7, label="programmed (allowed)")
    ax1.plot(x, counted_d, color="tab:orange", lw=1.0, ls="--", label="firmware count")
    ax1.plot(x, delivered_d, color="tab:blue", lw=1.2, label="delivered (plant truth)")
    if prescribed_ml:
        ax1.axhline(prescribed_ml, color="0.5", lw=0.8, ls=":",
                    label="prescribed %.1f mL" % prescribed_ml)
    ax1.set_ylabel("volume (mL)")
    ax1.grid(True, alpha=0.3)

    # the safety quantity at a readable scale: how far truth is above the programmed line
    ax3.axhline(0.0, color="0.5", lw=0.8)
    ax3.fill_between(x, diff, 0.0, where=diff > 0, color="tab:red", alpha=0.25, lw=0)
    ax3.plot(x, diff, color="tab:red", lw=1.0, label="delivered - programmed")
    if diff.size:
        k = int(np.nanargmax(diff))
        if diff[k] > 0:
            right = x[k] > (x[0] + x[-1]) / 2.0
            ax3.annotate("max %+.3f mL" % diff[k], (x[k], diff[k]), textcoords="offset points",
                         xytext=(-4 if right else 4, -10), ha="right" if right else "left",
                         fontsize=8, color="tab:red")
    if excess_limit_ml is not None:
        ok = not diff.size or float(np.nanmax(diff)) <= excess_limit_ml
        ax3.axhline(excess_limit_ml, color="tab:green" if ok else "tab:red", lw=1.4, ls="--",
                    label="limit %g mL" % excess_limit_ml)
        lo, hi = ax3.get_ylim()
        ax3.set_ylim(lo, max(hi, excess_limit_ml * 1.2))
    ax3.set_ylabel("excess (mL)")
    ax3.grid(True, alpha=0.3)
    ax3.legend(fontsize=8, loc="upper left")

    mid, rate, step = rate_series(t, delivered)
    pmid, prate, _ = rate_series(t, allowed, step or None)
    if rate.size:
        ax2.step(pmid / div, prate, where="mid", color="tab:green", lw=2.0, alpha=0.6,
                 label="programmed")
        ax2.plot(mid / div, rate, color="tab:blue", lw=1.0,
                 label="delivered (%s averages)" % _fmt_step(step))
    ax2.set_ylabel("rate (mL/h)")
    ax2.set_xlabel("time (%s)" % unit)
    ax2.grid(True, alpha=0.3)
    if rate.size:
        # show a runaway or a free flow whole up to 25x the programmed rate; clip beyond
        prog = max(float(np.nanmax(prate)) if prate.size else 0.0, 0.1)
        peak = float(np.nanmax(rate))
        top = min(max(prog * 2.0, peak * 1.15), prog * 25.0)
        ax2.set_ylim(min(0.0, float(np.nanmin(rate)) * 1.1), top)
        if peak > top:
            k = int(np.nanargmax(rate))
            ax2.annotate("clipped: peak %.3g mL/h" % peak, xy=(mid[k] / div, top),
                         xytext=(4, -12), textcoords="offset points", fontsize=8,
                         color="tab:red")

    _mark_faults(ax1, (ax3, ax2), faults or [], div)
    repeated = _mark_alarms(ax1, (ax3, ax2), events, div)
    handles, labels = ax1.get_legend_handles_labels()
    ax1.legend(handles + repeated, labels + [h.get_label() for h in repeated], fontsize=8,
               loc="best")
    ax2.legend(fontsize=8, loc="best")
    ax1.set_title(title, fontsize=11)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _fmt_step(step_s: float) -> str:
    if step_s >= 3600 and step_s % 3600 == 0:
        return "%g h" % (step_s / 3600)
    if step_s >= 60:
        return "%g min" % (step_s / 60)
    return "%g s" % step_s


def _mark_faults(ax1: Any, others: tuple[Any, ...], faults: list[dict[str, Any]],
                 div: float) -> None:
    """Injected faults: a dashed purple line on every panel, the kind written at the bottom."""
    ymin, ymax = ax1.get_ylim()
    for f in faults:
        x = float(f["t_s"]) / div
        for ax in (ax1, *others):
            ax.axvline(x, color="tab:purple", lw=1.0, ls="--", alpha=0.8)
        ax1.text(x, ymin + (ymax - ymin) * 0.03, " fault: %s" % f.get("kind", "?"), rotation=90,
                 va="bottom", ha="right", fontsize=8, color="tab:purple",
                 bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})


def _mark_alarms(ax1: Any, others: tuple[Any, ...], events: list[tuple[float, str]],
                 div: float) -> list[Any]:
    """A vertical line per alarm on every panel, labelled with its code on the top one. A code
    raised many times (INFUSION_COMPLETE at each bag of a cycle) goes in the legend instead,
    with its count, so the labels stay readable. Returns those legend entries."""
    from matplotlib.lines import Line2D

    colors = {"INFUSION_COMPLETE": "tab:green", "RESERVOIR_LOW": "tab:olive",
              "PAUSE_TIMEOUT": "tab:gray", "LOW_BATTERY": "tab:olive"}
    total: dict[str, int] = {}
    for _t, code in events:
        total[code] = total.get(code, 0) + 1
    ymin, ymax = ax1.get_ylim()
    xr = ax1.get_xlim()
    near = (xr[1] - xr[0]) * 0.01
    groups: list[tuple[float, list[str]]] = []      # alarms close together share one label
    for t, code in events:
        x = t / div
        many = total[code] > 3
        c = colors.get(code, "tab:red")
        for ax in (ax1, *others):
            ax.axvline(x, color=c, lw=0.8 if many else 1.2, alpha=0.5 if many else 0.9)
        if many:
            continue
        if groups and x - groups[-1][0] < near:
            if code not in groups[-1][1]:
                groups[-1][1].append(code)
        else:
            groups.append((x, [code]))
    for x, group in groups:
        c = "tab:red" if any(colors.get(g) is None for g in group) else colors[group[0]]
        ax1.text(x, ymax - (ymax - ymin) * 0.03, " " + " + ".join(group), rotation=90,
                 va="top", ha="left", fontsize=8, color=c,
                 bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    return [Line2D([], [], color=colors.get(code, "tab:red"), lw=0.8,
                   label="alarm %s x%d" % (code, n)) for code, n in total.items() if n > 3]


def plot_fault_window(fault_csv: str | Path, out_png: str | Path, fault_t_s: float,
                      trace_csv: str | Path | None = None,
                      alarms: list[dict[str, Any]] | None = None,
                      faults: list[dict[str, Any]] | None = None,
                      excess_limit_ml: float | None = None,
                      latency_limit_s: float | None = None,
                      detection: tuple[float, str] | None = None, title: str = "") -> Path:
    """The first fault up close: time from the fault on the x axis (s, or min for a long
    window), a short lead-in before it.

    Top: the excess the fault caused (delivered − programmed line, less its value when the
    fault struck: the cassette's own drift before it taken out) with the scenario's limit as
    a horizontal line. Bottom: volume since the fault, delivered against programmed. Both:
    the fault (dashed purple), each alarm (solid, labelled), the detection-time limit (dotted)
    with the detection time written beside it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fw = read_trace(fault_csv)
    t = np.asarray(fw["t_s"], dtype=float) - fault_t_s
    exc = np.asarray(fw["fault_excess_ml"], dtype=float)
    dlv = np.asarray(fw["delivered_ml"], dtype=float)
    line = np.asarray(fw["allowed_ml"], dtype=float)
    d0 = float(dlv[0]) if dlv.size else 0.0
    l0 = float(line[0]) if line.size else 0.0
    # the view: up to 2.5 x the detection time (the limit line too when it is that near),
    # else the whole recorded window
    if detection is not None:
        end = max(2.5 * (detection[0] - fault_t_s), 5.0)
        if latency_limit_s and latency_limit_s <= 4.0 * end:
            end = max(end, 1.1 * latency_limit_s)
    else:
        end = max(float(t[-1]) if t.size else 60.0, 5.0)
    lead = 0.15 * end
    div, unit = (1.0, "s") if end <= 300.0 else (60.0, "min")

    # the lead-in: the trace's rows just before the fault
    lt = np.zeros(0)
    ld = np.zeros(0)
    ll = np.zeros(0)
    if trace_csv is not None and Path(trace_csv).exists():
        tr = read_trace(trace_csv)
        tt = np.asarray(tr["t_s"], dtype=float) - fault_t_s
        keep = (tt >= -lead) & (tt < 0.0)
        lt = tt[keep]
        ld = np.asarray(tr["delivered_ml"], dtype=float)[keep] - d0
        ll = np.asarray(tr["allowed_ml"], dtype=float)[keep] - l0

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10.0, 6.4), dpi=100, sharex=True,
                                   gridspec_kw={"height_ratios": [1.2, 1]})
    inside = t <= end * 1.05
    top = float(np.nanmax(exc)) if exc.size else 0.0     # over the whole window
    t, exc, dlv, line = t[inside], exc[inside], dlv[inside], line[inside]
    x = t / div
    ax1.axhline(0.0, color="0.5", lw=0.8)
    ax1.fill_between(x, exc, 0.0, where=exc > 0, interpolate=True, color="tab:red",
                     alpha=0.25, lw=0)
    ax1.plot(x, exc, color="tab:red", lw=1.4, marker=".", ms=3,
             label="excess the fault caused (delivered − programmed, from the fault)")
    if exc.size and top > 0 and float(np.nanmax(exc)) > 0:
        k = int(np.nanargmax(exc))
        ax1.annotate("max %.3f mL at %s" % (exc[k], _fmt_t(t[k])), (x[k], exc[k]),
                     textcoords="offset points", xytext=(6, 4), fontsize=9, color="tab:red")
    if excess_limit_ml is not None:
        ok = top <= excess_limit_ml
        ax1.axhline(excess_limit_ml, color="tab:green" if ok else "tab:red", lw=1.6, ls="--",
                    label="limit %g mL (%s)" % (excess_limit_ml, "met" if ok else "EXCEEDED"))
        ymax = max(top, excess_limit_ml) * 1.25
    else:
        ymax = max(top * 1.25, 0.01)
    ax1.set_ylim(min(0.0, float(np.nanmin(exc)) * 1.1 if exc.size else 0.0), ymax)
    ax1.set_ylabel("excess (mL)")
    ax1.grid(True, alpha=0.3)

    ax2.plot(np.concatenate([lt, t]) / div, np.concatenate([ll, line - l0]), color="tab:green",
             lw=2.2, alpha=0.7, label="programmed (allowed)")
    ax2.plot(np.concatenate([lt, t]) / div, np.concatenate([ld, dlv - d0]), color="tab:blue",
             lw=1.2, marker=".", ms=3, label="delivered (plant truth)")
    ax2.set_ylabel("volume since the fault (mL)")
    ax2.set_xlabel("time since the fault (%s)" % unit)
    ax2.grid(True, alpha=0.3)

    for ax in (ax1, ax2):
        ax.axvline(0.0, color="tab:purple", lw=1.2, ls="--")
    kinds = ", ".join(sorted({str(f.get("kind")) for f in faults or []
                              if abs(float(f["t_s"]) - fault_t_s) < 1e-6})) or "fault"
    ax2.text(0.0, 0.02, " fault: %s" % kinds, transform=ax2.get_xaxis_transform(),
             rotation=90, va="bottom", ha="right", fontsize=8, color="tab:purple")
    met = detection is not None and latency_limit_s is not None and \
        detection[0] - fault_t_s <= latency_limit_s
    if latency_limit_s and latency_limit_s <= end:
        for ax in (ax1, ax2):
            ax.axvline(latency_limit_s / div, color="tab:green" if met else "tab:red", lw=1.6,
                       ls=":")
        ax1.text(latency_limit_s / div, 0.97, "detection limit %s " % _fmt_t(latency_limit_s),
                 transform=ax1.get_xaxis_transform(), rotation=90, va="top", ha="right",
                 fontsize=8, color="tab:green" if met else "tab:red")
    shown: set[float] = set()
    alarms = alarms or []
    for a in alarms:
        ta = float(a["t_s"]) - fault_t_s
        if ta < -lead or ta > end:
            continue
        for ax in (ax1, ax2):
            ax.axvline(ta / div, color="tab:red", lw=1.2, alpha=0.9)
        if round(ta, 3) in shown:
            continue
        shown.add(round(ta, 3))
        same = " + ".join(dict.fromkeys(str(b["code"]) for b in alarms
                                        if abs(float(b["t_s"]) - fault_t_s - ta) < 1e-3))
        ax1.text(ta / div, 0.97, " %s at %s" % (same, _fmt_t(ta)),
                 transform=ax1.get_xaxis_transform(), rotation=90, va="top", ha="left",
                 fontsize=8, color="tab:red",
                 bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    ax1.set_xlim(-lead / div, end / div)
    ax1.legend(fontsize=8, loc="upper left")
    ax2.legend(fontsize=8, loc="upper left")
    det = ("detected by %s after %s" % (detection[1], _fmt_t(detection[0] - fault_t_s))
           if detection is not None else "no alarm answered it")
    if latency_limit_s:
        det += " (limit %s: %s)" % (_fmt_t(latency_limit_s), "met" if met else "MISSED")
    if excess_limit_ml is not None:
        det += "; excess %.3f mL (limit %g mL: %s)" % (
            max(top, 0.0), excess_limit_ml, "met" if top <= excess_limit_ml else "EXCEEDED")
    ax1.set_title((title + "\n" if title else "") + "the fault up close: " + det, fontsize=10)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _fmt_t(s: float) -> str:
    """A duration for a label: '0.84 s', '21 s', '5.4 min', '1.5 h'."""
    a = abs(s)
    if a < 10.0:
        return "%.2f s" % s
    if a < 120.0:
        return "%.0f s" % s
    if a < 7200.0:
        return "%.1f min" % (s / 60.0)
    return "%.1f h" % (s / 3600.0)
