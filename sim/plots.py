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
                  faults: list[dict[str, Any]] | None = None) -> Path:
    """Volume, excess and rate plot of one scenario's trace. `alarms` (the result's list of
    {t_s, code}) wins over the trace's alarm column when given; `faults` (the result's list
    of {t_s, kind}) are marked as dashed lines labelled at the bottom."""
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
