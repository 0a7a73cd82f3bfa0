"""Simulator speed (PR-4): a 28-day adult cycle with the firmware in the loop; pump-days per
second in a batch on one core; and the same cycle stepped on a fixed 100 ms tick instead of
tickless, for comparison (a shorter span, extrapolated: 24 million steps take minutes).

Prints `name: value unit` lines. Run: .venv/bin/python bench/bench_sim.py
"""

from __future__ import annotations

import statistics
import time

from sim import runner, scenario

CYCLE = """
name = "bench-adult-cycle1-24h-bags"
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
bag_hours = 24
[[steps]]
dose_ug_per_day = 9.0       # days 1-7
repeat = 7
pause_min = 10
[[steps]]
dose_ug_per_day = 28.0      # days 8-28
repeat = 21
pause_min = 10
[run]
seed = %d                   # hours: the plan (28 bags and 27 changes) + 1 h
"""

BATCH_BAG = """
name = "bench-7day-bag-%d"
[prescription]
dose_ug_per_day = 28.0
bag_hours = 168
[run]
hours = 168.0
seed = %d
"""

FIXED_TICK_MS = 100
FIXED_TICK_SPAN_H = 24.0


def cycle(seed: int = 1, hours: float | None = None) -> scenario.Scenario:
    sc = scenario.loads(CYCLE % seed)
    if hours is not None:
        sc.hours = hours
    return sc


def run_tickless(seed: int, storage: str = "files") -> tuple[float, dict]:
    t = time.perf_counter()
    c = time.process_time()
    res = runner.run_scenario(cycle(seed), storage=storage)
    CPU.append(time.process_time() - c)
    return time.perf_counter() - t, res


CPU: list[float] = []


def run_fixed_tick(hours: float) -> tuple[float, int]:
    """The same cycle, but the main loop polls: a wake every 100 ms whatever the firmware
    asked for (SimHal.fixed_tick_ms), interrupts waiting for the next tick."""
    sim = runner.Sim(cycle(1, hours))
    sim.hal.fixed_tick_ms = FIXED_TICK_MS
    t = time.perf_counter()
    try:
        sim.run()
    finally:
        sim.close()
    return time.perf_counter() - t, sim.hal.steps


def main() -> None:
    walls = []
    res: dict = {}
    for _ in range(3):
        w, res = run_tickless(1)
        walls.append(w)
    days = res["sim_hours"] / 24.0
    wall = statistics.median(walls)
    print("cycle_28d_sim_days: %.2f d" % days)
    print("cycle_28d_bags_completed: %d" % res["bags_completed"])
    print("cycle_28d_delivered_ml: %.1f mL" % res["delivered_ml"])
    print("cycle_28d_ticks_wraps: %d" % res["ticks_wraps"])
    print("cycle_28d_alarms_other_than_complete: %d"
          % sum(1 for a in res["alarms"] if a["code"] != "INFUSION_COMPLETE"))
    print("cycle_28d_controller_steps: %d" % res["controller_steps"])
    print("cycle_28d_wall_median_of_3: %.3f s (PR-4 target <= 2 s)" % wall)
    print("cycle_28d_cpu_median_of_3: %.3f s" % statistics.median(CPU))
    print("cycle_28d_us_per_wake: %.1f us" % (wall / res["controller_steps"] * 1e6))
    mem = statistics.median(run_tickless(1, "memory")[0] for _ in range(3))
    print("cycle_28d_wall_memory_journal_median_of_3: %.3f s" % mem)

    n = 6
    for storage in ("files", "memory"):
        t = time.perf_counter()
        sim_days = 0.0
        for i in range(n):
            r = runner.run_scenario(scenario.loads(BATCH_BAG % (i, 100 + i)), storage=storage)
            sim_days += r["sim_hours"] / 24.0
        batch_wall = time.perf_counter() - t
        print("batch_pump_days_per_s_%s_journal: %.1f d/s (%d x 7-day bag, one core; PR-4 "
              "target >= 20)" % (storage, sim_days / batch_wall, n))

    fw, steps = run_fixed_tick(FIXED_TICK_SPAN_H)
    extrapolated = fw * days * 24.0 / FIXED_TICK_SPAN_H
    print("fixed_tick_100ms_span: %.0f h simulated, %d steps, %.2f s wall" % (
        FIXED_TICK_SPAN_H, steps, fw))
    print("fixed_tick_100ms_28d_extrapolated: %.1f s" % extrapolated)
    print("fixed_tick_over_tickless_ratio: %.0f x" % (extrapolated / wall))


if __name__ == "__main__":
    main()
