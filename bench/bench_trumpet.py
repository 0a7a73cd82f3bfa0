"""PR-6 figures: IEC 60601-2-24 style trumpet curves at 10 and 0.6 mL/h (second hour of a 2 h
run sampled every 30 s, plant truth), on the nominal plant (seed 1), on the ideal plant (no
variation), over a sweep of seeds (the cassette factor and the stroke noise vary with the
seed), and over the same seeds with the cassette factor taken out (what a per-cassette
calibration would give). Prints one `name: value unit` line per figure; writes plots under
bench/out/trumpet/.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sim import trumpet
from sim.runner import run_scenario
from sim.suite import label_bag, run_trumpet, trumpet_scenario

REPO = Path(__file__).resolve().parents[1]

RATES = ((10.0, 5), (0.6, 31))   # (mL/h, the window PR-6 judges at that rate)
SEEDS = range(1, 51)
OUT = REPO / "bench" / "out" / "trumpet"


def worst(tr: trumpet.Trumpet, window_min: int) -> float:
    w = tr.window(window_min)
    return max(abs(w.max_pct), abs(w.min_pct))


def calibrated(rate: float, seed: int) -> trumpet.Trumpet:
    """The nominal plant with the cassette factor taken out (as a per-cassette calibration
    would): stroke-to-stroke noise and sensor jitter only."""
    sc = trumpet_scenario(rate, 2.0, seed)
    sc.plant.cassette_sd = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-trumpet-") as tmp:
        res = run_scenario(sc, out_dir=tmp)
        return trumpet.from_trace(res["trace_file"], label_bag(rate)[1])


def main() -> None:
    t0 = time.perf_counter()
    for rate, win in RATES:
        tag = ("%g" % rate).replace(".", "_")
        tr, _ = run_trumpet(rate, 2.0, None, seed=1)
        trumpet.write_trumpet(tr, OUT, "trumpet-%s-ml-h-seed1" % tag,
                              title="Trumpet curve, %g mL/h, nominal plant (seed 1)" % rate)
        for w in tr.windows:
            print("trumpet_%s_ml_h_seed1_%gmin_Ep_max: %+.3f %%" % (tag, w.window_min, w.max_pct))
            print("trumpet_%s_ml_h_seed1_%gmin_Ep_min: %+.3f %%" % (tag, w.window_min, w.min_pct))
        print("trumpet_%s_ml_h_seed1_mean_error_A: %+.3f %%" % (tag, tr.mean_error_pct))
        for chk in trumpet.pr6_checks(tr):
            print("pr6_%s_ml_h_%gmin_worst_seed1: %.3f %% (limit %g %%, %s)"
                  % (tag, chk["window_min"], chk["worst_pct"], chk["limit_pct"],
                     "met" if chk["met"] else "NOT met"))
        ideal, _ = run_trumpet(rate, 2.0, None, seed=1, ideal=True)
        print("pr6_%s_ml_h_%dmin_worst_ideal_plant: %.3f %%" % (tag, win, worst(ideal, win)))
        sweep = [run_trumpet(rate, 2.0, None, seed=s)[0] for s in SEEDS]
        ws = sorted(worst(t, win) for t in sweep)
        limit = [lim for r, wi, lim in trumpet.PR6_TARGETS if r == rate and wi == win][0]
        met = sum(1 for x in ws if x <= limit)
        print("pr6_%s_ml_h_%dmin_worst_median_%d_seeds: %.3f %%" % (tag, win, len(ws),
                                                                      statistics.median(ws)))
        print("pr6_%s_ml_h_%dmin_worst_max_%d_seeds: %.3f %%" % (tag, win, len(ws), ws[-1]))
        print("pr6_%s_ml_h_%dmin_met: %d of %d seeds" % (tag, win, met, len(ws)))
        cal = sorted(worst(calibrated(rate, s), win) for s in SEEDS)
        print("pr6_%s_ml_h_%dmin_worst_max_%d_seeds_calibrated_cassette: %.3f %%"
              % (tag, win, len(cal), cal[-1]))
        print("pr6_%s_ml_h_%dmin_met_calibrated_cassette: %d of %d seeds"
              % (tag, win, sum(1 for x in cal if x <= limit), len(cal)))
        a = [abs(t.mean_error_pct) for t in sweep]
        print("trumpet_%s_ml_h_abs_mean_error_A_median_%d_seeds: %.3f %%"
              % (tag, len(a), statistics.median(a)))
    print("bench_trumpet_wall_s: %.2f s" % (time.perf_counter() - t0))
    print("plots: %s" % OUT)


if __name__ == "__main__":
    main()
