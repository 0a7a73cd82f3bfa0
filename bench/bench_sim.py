"""Simulator speed (PR-4): a 28-day adult cycle with the firmware in the loop; pump-days per
second in a batch on one core; and the same cycle stepped on a fixed 100 ms tick instead of
tickless, for comparison (a shorter span, extrapolated: 24 million steps take minutes).

Prints `name: value unit` lines: wall and CPU medians of 5 runs, wakes, µs per wake, the
batch throughput per CPU-second, and the fixed-tick ratio measured in the same process.
CPU time is what one core spent (the PR-4 figure on a busy machine); wall time equals it
on a quiet one. Run: .venv/bin/python bench/bench_sim.py

`--where` prints instead where a wake's work goes: the Python bytecodes executed per wake,
by source file and by function, over one hour of the cycle at 10 mL/h (counted with the
interpreter's opcode tracing: exact and the same on any machine, unlike a profiler's times).
"""

from __future__ import annotations

import collections
import os
import platform
import shutil
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

from sim import runner, scenario, worker

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
REPEAT = 5


def cycle(seed: int = 1, hours: float | None = None) -> scenario.Scenario:
    sc = scenario.loads(CYCLE % seed)
    if hours is not None:
        sc.hours = hours
    return sc


def run_tickless(seed: int, storage: str = "memory") -> tuple[float, float, dict]:
    """One 28-day cycle: (wall s, CPU s, result)."""
    t = time.perf_counter()
    c = time.process_time()
    res = runner.run_scenario(cycle(seed), storage=storage)
    return time.perf_counter() - t, time.process_time() - c, res


def run_fixed_tick(hours: float) -> tuple[float, float, int]:
    """The same cycle, but the main loop polls: a wake every 100 ms whatever the firmware
    asked for (SimHal.fixed_tick_ms), interrupts waiting for the next tick.
    Returns (wall s, CPU s, wakes)."""
    sim = runner.Sim(cycle(1, hours))
    sim.hal.fixed_tick_ms = FIXED_TICK_MS
    t = time.perf_counter()
    c = time.process_time()
    try:
        sim.run()
    finally:
        sim.close()
    return time.perf_counter() - t, time.process_time() - c, sim.hal.steps


def where(hours: float = 1.0, top: int = 25) -> None:
    """Bytecodes executed per wake, by file and by function, over `hours` of the cycle
    (after its first hour)."""
    root = str(Path(__file__).resolve().parents[1]) + "/"
    sim = runner.Sim(cycle(1, 1.0 + hours))
    sim.start()
    sim.advance(3600000)
    by_file: collections.Counter[str] = collections.Counter()
    by_fn: collections.Counter[str] = collections.Counter()

    def trace(frame: types.FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            f = code.co_filename.replace(root, "")
            by_file[f] += 1
            by_fn[f.rsplit("/", 1)[-1] + ":" + code.co_name] += 1
        return trace

    w0 = sim.hal.steps
    sys.settrace(trace)
    try:
        sim.advance(int((1.0 + hours) * 3600000))
    finally:
        sys.settrace(None)
        sim.close()
    wakes = sim.hal.steps - w0
    total = sum(by_file.values())
    fw = sum(v for k, v in by_file.items() if k.startswith("firmware/pump/"))
    print("where_wakes: %d (%.1f h of the 28-day cycle at 10 mL/h)" % (wakes, hours))
    print("where_bytecodes_per_wake: %.0f (firmware %.0f = %.0f %%, simulator %.0f)"
          % (total / wakes, fw / wakes, 100.0 * fw / total, (total - fw) / wakes))
    for k, v in by_file.most_common(top):
        print("where_file %-36s %7.1f per wake  %5.1f %%" % (k, v / wakes, 100.0 * v / total))
    for k, v in by_fn.most_common(top):
        print("where_fn   %-36s %7.1f per wake  %5.1f %%" % (k, v / wakes, 100.0 * v / total))


def optional_runtime(cpython_res: dict, interpreter: str = "pypy3") -> None:
    """The same cycle on PyPy when it is installed (pumpsim run --interpreter): wall medians
    inside the interpreter (a fresh process each run: its JIT starts cold) and with the
    process start-up, and whether the result is CPython's."""
    if shutil.which(interpreter) is None:
        print("cycle_28d_%s: not installed (optional runtime; Debian: apt-get install pypy3)"
              % interpreter)
        return
    data = scenario.tables(CYCLE % 1)
    inside: list[float] = []
    whole: list[float] = []
    got: dict = {}
    for _ in range(REPEAT):
        t = time.perf_counter()
        got = worker.run_on(interpreter, data)
        whole.append(time.perf_counter() - t)
        inside.append(got["wall_s"])
    same = {k: v for k, v in got.items() if k != "wall_s"} == \
        {k: v for k, v in cpython_res.items() if k != "wall_s"}
    print("cycle_28d_%s_wall_median_of_%d: %.3f s in the interpreter (cold JIT; min %.3f), "
          "%.3f s with its start-up; result identical to CPython's: %s"
          % (interpreter, REPEAT, statistics.median(inside), min(inside),
             statistics.median(whole), "yes" if same else "NO"))


def main() -> None:
    if "--where" in sys.argv[1:]:
        where()
        return
    print("interpreter: %s %s" % (platform.python_implementation(), platform.python_version()))
    print("load_average_1min: %.1f (other processes: wall times are noisy above ~0.5)"
          % os.getloadavg()[0])
    walls: list[float] = []
    cpus: list[float] = []
    res: dict = {}
    for _ in range(REPEAT):
        w, c, res = run_tickless(1)
        walls.append(w)
        cpus.append(c)
    days = res["sim_hours"] / 24.0
    wakes = res["controller_steps"]
    wall = statistics.median(walls)
    cpu = statistics.median(cpus)
    print("cycle_28d_sim_days: %.2f d" % days)
    print("cycle_28d_bags_completed: %d" % res["bags_completed"])
    print("cycle_28d_delivered_ml: %.1f mL" % res["delivered_ml"])
    print("cycle_28d_ticks_wraps: %d" % res["ticks_wraps"])
    print("cycle_28d_alarms_other_than_complete: %d"
          % sum(1 for a in res["alarms"] if a["code"] != "INFUSION_COMPLETE"))
    print("cycle_28d_wakes: %d (firmware wakes: controller steps and rotation compares)" % wakes)
    print("cycle_28d_wall_median_of_%d: %.3f s (PR-4 target <= 2 s; min %.3f)"
          % (REPEAT, wall, min(walls)))
    print("cycle_28d_cpu_median_of_%d: %.3f s (min %.3f)" % (REPEAT, cpu, min(cpus)))
    print("cycle_28d_us_per_wake_cpu: %.2f us" % (cpu / wakes * 1e6))
    print("cycle_28d_us_per_wake_wall: %.2f us" % (wall / wakes * 1e6))
    files = [run_tickless(1, "files") for _ in range(REPEAT)]
    print("cycle_28d_files_journal_wall_median: %.3f s, cpu median %.3f s (the journal in "
          "real files: a system call per flush)" % (statistics.median(m[0] for m in files),
                                                   statistics.median(m[1] for m in files)))

    n = 6
    for storage in ("memory", "files"):
        t = time.perf_counter()
        c = time.process_time()
        sim_days = 0.0
        for i in range(n):
            r = runner.run_scenario(scenario.loads(BATCH_BAG % (i, 100 + i)), storage=storage)
            sim_days += r["sim_hours"] / 24.0
        bw = time.perf_counter() - t
        bc = time.process_time() - c
        print("batch_pump_days_per_cpu_s_%s_journal: %.1f d/s (%d x 7-day bag, one core; "
              "PR-4 target >= 20; wall: %.1f d/s)" % (storage, sim_days / bc, n,
                                                      sim_days / bw))

    optional_runtime(res)

    fw, fc, steps = run_fixed_tick(FIXED_TICK_SPAN_H)
    scale = days * 24.0 / FIXED_TICK_SPAN_H
    print("fixed_tick_100ms_span: %.0f h simulated, %d wakes, %.2f s wall, %.2f s cpu" % (
        FIXED_TICK_SPAN_H, steps, fw, fc))
    print("fixed_tick_100ms_28d_extrapolated: %.1f s wall, %.1f s cpu" % (fw * scale,
                                                                        fc * scale))
    print("fixed_tick_over_tickless_ratio: %.0f x wall, %.0f x cpu" % (fw * scale / wall,
                                                                     fc * scale / cpu))


if __name__ == "__main__":
    main()
