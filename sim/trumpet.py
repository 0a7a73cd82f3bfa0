"""Delivery accuracy the IEC 60601-2-24 way: the trumpet curve of a run (PR-6).

The standard's start-up-and-trumpet test samples the delivered volume every S = 0.5 min over
2 h and analyses the second hour (T = 60 min). With Q_i the flow over sample interval i and
r the programmed rate, the error over an observation window of P minutes (m = P/S intervals)
starting at interval j is

    E_j(P) = (S/P) * sum_{i=j}^{j+m-1} 100 (Q_i - r) / r
           = 100 * (V(t_j + P) - V(t_j) - r P) / (r P)

(the sum telescopes: it is the window's mean flow error). E_p(max) and E_p(min) are the
largest and smallest E_j over the k = T/S - m + 1 window positions, for P = 2, 5, 11, 19 and
31 min; their plot against P is the trumpet. The overall mean error A = 100 (Q - r) / r uses
the volume delivered over the whole analysis hour.

Input is the plant's delivered volume (the truth that entered the patient) from a trace; the
sample grid is taken from the trace's rows (a trace sampled every 30 s has them exactly).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WINDOWS_MIN = (2, 5, 11, 19, 31)
SAMPLE_S = 30
START_S = 3600      # the analysis period is the second hour of the run
END_S = 7200
# PR-6 targets: (rate mL/h, window min, ± limit %). Reported next to the measured figures.
PR6_TARGETS = ((10.0, 5, 2.0), (0.6, 31, 5.0))


class TrumpetError(ValueError):
    """The trace cannot be analysed (too short, no rate, coarse sampling)."""


@dataclass
class WindowErrors:
    window_min: float
    max_pct: float         # E_p(max)
    min_pct: float         # E_p(min)
    positions: int         # k: window positions evaluated


@dataclass
class Trumpet:
    rate_ml_per_h: float             # r, the programmed rate the errors are relative to
    start_s: float
    end_s: float
    sample_s: float
    mean_error_pct: float            # A, over the whole analysis period
    windows: list[WindowErrors] = field(default_factory=list)

    def window(self, minutes: float) -> WindowErrors:
        for w in self.windows:
            if w.window_min == minutes:
                return w
        raise KeyError(minutes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = pr6_checks(self)
        return d


def sample_grid(t_s: Sequence[float] | np.ndarray, volume_ml: Sequence[float] | np.ndarray,
                start_s: float, end_s: float, sample_s: float) -> np.ndarray:
    """Volume at start_s, start_s + S, ..., end_s. Trace rows at those times are used as they
    are; a time between rows is interpolated linearly (motion is continuous between rows).
    Rows at one time (a state change logged at a sample instant) keep the last value."""
    t = np.asarray(t_s, dtype=float)
    v = np.asarray(volume_ml, dtype=float)
    if t.size == 0:
        raise TrumpetError("the trace is empty")
    if t[0] > start_s + 1e-9 or t[-1] < end_s - 1e-9:
        raise TrumpetError(
            "the trace covers %.0f..%.0f s; the analysis needs %.0f..%.0f s (run at least %.2f h)"
            % (t[0], t[-1], start_s, end_s, end_s / 3600.0))
    # keep the last row of each run of equal times
    last = np.append(t[1:] != t[:-1], True)
    t, v = t[last], v[last]
    n = round((end_s - start_s) / sample_s)
    if n < 1 or abs(n * sample_s - (end_s - start_s)) > 1e-6:
        raise TrumpetError("the analysis period %.0f s is not a whole number of %.0f s samples"
                           % (end_s - start_s, sample_s))
    # coarser trace than the IEC sample interval: the "samples" would be interpolations
    inside = t[(t >= start_s - 1e-9) & (t <= end_s + 1e-9)]
    if inside.size >= 2 and float(np.max(np.diff(inside))) > sample_s + 1e-6:
        raise TrumpetError("the trace is sampled more coarsely than every %.0f s "
                           "(set [run] sample_s = %d)" % (sample_s, int(sample_s)))
    grid = start_s + sample_s * np.arange(n + 1)
    return np.interp(grid, t, v)


def trumpet_curve(t_s: Sequence[float] | np.ndarray, volume_ml: Sequence[float] | np.ndarray,
                  rate_ml_per_h: float, *, start_s: float = START_S, end_s: float = END_S,
                  sample_s: float = SAMPLE_S,
                  windows_min: Sequence[float] = WINDOWS_MIN) -> Trumpet:
    """The trumpet curve of delivered volume (mL) over time (s) against a programmed rate."""
    if not rate_ml_per_h > 0.0:
        raise TrumpetError("the programmed rate must be > 0 mL/h (got %r)" % (rate_ml_per_h,))
    v = sample_grid(t_s, volume_ml, start_s, end_s, sample_s)
    n = v.size - 1
    period_h = (end_s - start_s) / 3600.0
    mean = 100.0 * ((v[-1] - v[0]) / period_h - rate_ml_per_h) / rate_ml_per_h
    out = Trumpet(rate_ml_per_h, start_s, end_s, sample_s, _clean(mean))
    for p in windows_min:
        m = p * 60.0 / sample_s
        mi = round(m)
        if abs(m - mi) > 1e-9 or mi < 1:
            raise TrumpetError("window %g min is not a whole number of %g s samples"
                               % (p, sample_s))
        if mi > n:
            raise TrumpetError("window %g min is longer than the analysis period" % p)
        expected = rate_ml_per_h * p / 60.0
        e = 100.0 * ((v[mi:] - v[:-mi]) - expected) / expected
        out.windows.append(WindowErrors(float(p), _clean(e.max()), _clean(e.min()),
                                        int(e.size)))
    return out


def _clean(x: Any) -> float:
    """Float rounding noise off (1e-9 %), and -0.0 as 0.0: a perfect trace reads +0.000."""
    return round(float(x), 9) + 0.0


def pr6_checks(tr: Trumpet) -> list[dict[str, Any]]:
    """The PR-6 targets that apply to this rate, each with the measured worst error."""
    rows = []
    for rate, win, limit in PR6_TARGETS:
        if abs(tr.rate_ml_per_h - rate) > 1e-9:
            continue
        try:
            w = tr.window(win)
        except KeyError:
            continue
        worst = max(abs(w.max_pct), abs(w.min_pct))
        rows.append({"requirement": "PR-6", "rate_ml_per_h": rate, "window_min": win,
                     "limit_pct": limit, "worst_pct": worst, "met": worst <= limit})
    return rows


# --- on simulator output ----------------------------------------------------------------------

def read_trace(path: str | Path) -> dict[str, Any]:
    """A trace CSV as columns: numeric ones as float arrays (empty cells NaN), `state` and
    `alarm` as lists of strings."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise TrumpetError("%s: empty trace (no header)" % path)
    header = rows[0]
    body = rows[1:]
    cols = list(zip(*body, strict=False)) if body else [() for _ in header]
    out: dict[str, Any] = {}
    for name, vals in zip(header, cols, strict=False):
        if name in ("state", "alarm"):
            out[name] = list(vals)
        else:
            arr = np.array(vals, dtype=object)
            arr[arr == ""] = "nan"
            out[name] = arr.astype(float)
    return out


def programmed_rate(t_s: np.ndarray, allowed_ml: np.ndarray, start_s: float = START_S,
                    end_s: float = END_S) -> float:
    """The programmed rate over the analysis period, from the trace's programmed line."""
    a0, a1 = np.interp([start_s, end_s], t_s, allowed_ml)
    return float((a1 - a0) / ((end_s - start_s) / 3600.0))


def from_trace(path: str | Path, rate_ml_per_h: float | None = None, **kw: Any) -> Trumpet:
    """Trumpet of a trace CSV; the rate defaults to the slope of its `allowed_ml` column."""
    tr = read_trace(path)
    t = np.asarray(tr["t_s"], dtype=float)
    if rate_ml_per_h is None:
        rate_ml_per_h = programmed_rate(t, np.asarray(tr["allowed_ml"], dtype=float),
                                        kw.get("start_s", START_S), kw.get("end_s", END_S))
    return trumpet_curve(t, np.asarray(tr["delivered_ml"], dtype=float), rate_ml_per_h, **kw)


def from_result(result: dict[str, Any], rate_ml_per_h: float | None = None,
                **kw: Any) -> Trumpet:
    """Trumpet of a scenario result (its `trace_file`)."""
    trace = result.get("trace_file")
    if not trace:
        raise TrumpetError("result of %r has no trace_file" % result.get("scenario"))
    return from_trace(trace, rate_ml_per_h, **kw)


def plot_trumpet(tr: Trumpet, path: str | Path, title: str = "") -> Path:
    """The trumpet curve as a PNG: E_p(max), E_p(min) per window, the mean error A."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = [w.window_min for w in tr.windows]
    hi = [w.max_pct for w in tr.windows]
    lo = [w.min_pct for w in tr.windows]
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
    ax.fill_between(p, lo, hi, color="tab:blue", alpha=0.12)
    ax.plot(p, hi, "o-", color="tab:red", label="E_p(max)")
    ax.plot(p, lo, "s-", color="tab:blue", label="E_p(min)")
    ax.axhline(tr.mean_error_pct, color="k", ls="--", lw=1,
               label="mean error A = %+.2f %%" % tr.mean_error_pct)
    ax.axhline(0.0, color="0.6", lw=0.8)
    for chk in pr6_checks(tr):
        lim = chk["limit_pct"]
        ax.plot([chk["window_min"]] * 2, [-lim, lim], "_", color="tab:green", ms=18, mew=2)
        ax.annotate("PR-6 limit ±%g %% (%g-min windows)" % (lim, chk["window_min"]),
                    (chk["window_min"], -lim), textcoords="offset points", va="top",
                    xytext=(-14, -4) if chk["window_min"] == max(p) else (14, -4),
                    ha="right" if chk["window_min"] == max(p) else "left",
                    color="tab:green", fontsize=8)
    for w in tr.windows:
        ax.annotate("%+.2f" % w.max_pct, (w.window_min, w.max_pct), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7, color="tab:red")
        ax.annotate("%+.2f" % w.min_pct, (w.window_min, w.min_pct), textcoords="offset points",
                    xytext=(0, -12), ha="center", fontsize=7, color="tab:blue")
    ax.set_xticks(p)
    ax.set_xlabel("observation window P (min)")
    ax.set_ylabel("flow-rate error (%)")
    span = max([abs(x) for x in hi + lo] + [abs(tr.mean_error_pct), 1.0])
    for chk in pr6_checks(tr):
        span = max(span, chk["limit_pct"])
    ax.set_ylim(-span * 1.35, span * 1.35)
    ax.set_title(title or "Trumpet curve, %g mL/h, %.0f-%.0f min (IEC 60601-2-24 style)"
                 % (tr.rate_ml_per_h, tr.start_s / 60, tr.end_s / 60), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_trumpet(tr: Trumpet, out_dir: str | Path, stem: str = "trumpet",
                  title: str = "") -> dict[str, str]:
    """trumpet.json and trumpet.png in out_dir; returns their paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    j = d / ("%s.json" % stem)
    j.write_text(json.dumps(tr.to_dict(), indent=2) + "\n")
    png = plot_trumpet(tr, d / ("%s.png" % stem), title)
    return {"json": str(j), "png": str(png)}


def format_table(tr: Trumpet) -> str:
    """The figures as text: one line per window, then A and the PR-6 verdicts."""
    lines = ["trumpet %g mL/h, %g-%g s, sampled every %g s"
             % (tr.rate_ml_per_h, tr.start_s, tr.end_s, tr.sample_s),
             "  window_min  Ep_max_%   Ep_min_%  positions"]
    for w in tr.windows:
        lines.append("  %10g  %+8.3f  %+8.3f  %9d" % (w.window_min, w.max_pct, w.min_pct,
                                                      w.positions))
    lines.append("  mean error A: %+.3f %%" % tr.mean_error_pct)
    for c in pr6_checks(tr):
        lines.append("  PR-6 %g mL/h, %g-min windows: worst %.3f %% (limit ±%g %%): %s"
                     % (c["rate_ml_per_h"], c["window_min"], c["worst_pct"], c["limit_pct"],
                        "met" if c["met"] else "NOT met"))
    return "\n".join(lines)
