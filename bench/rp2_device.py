# mypy: ignore-errors
# (Runs on the emulated Pico, sent by bench/bench_rp2.py with `mpremote run`.)
"""The firmware's own main loop (pump.runtime.run on boards.rp2_ref, as main.py runs it) for
_RUN_MS of pump time at 10 mL/h, with every wake timed (time.ticks_us: the chip's µs) and
its heap allocation counted (gc.mem_alloc before and after; a wake during which the
collector ran is not counted). Prints one JSON line: the figures bench/bench_rp2.py
reports. The rotation pulses come from the plant of the emulated board's rig."""
import gc
import json
import time
from array import array

from boards import rp2_ref
from pump.controller import Controller
from pump.hal import EV_AIR, EV_DOOR, EV_ROTATION
from pump.runtime import Runtime, run

_RUN_MS = 3600000
_CLINICIAN = 2
_SERVICE = 3
_N = 4096


def _buffers():
    """µs of each wake, its kind (1: a compare wake, the monitor's edge check alone), the
    bytes it allocated. Made here so that the temporaries die with this frame."""
    return array("I", bytes(4 * _N)), bytearray(_N), array("I", bytes(4 * _N))


def main():
    holder = []

    def signal(flag):
        holder[0].signal(flag)

    hal = rp2_ref.make_hal(signal, EV_ROTATION, EV_DOOR, EV_AIR)
    ctl = Controller(hal)
    holder.append(ctl)
    rt = Runtime(hal, ctl)
    rt.boot(False)
    gc.collect()
    free_boot = gc.mem_free()
    dts, kinds, allocs = _buffers()
    gc.collect()
    instrumentation = free_boot - gc.mem_free()
    cm = rt.proto
    ctl.now = time.ticks_ms()
    cm.execute("SERVICE", {}, _SERVICE, 0)             # a bench program: service mode
    r = cm.execute("PROPOSE", {"basic": {"rate": "10 mL/h", "vtbi": "100 mL"}}, _SERVICE, 0)
    cm.execute("CONFIRM", {"echo": r["echo"]}, _SERVICE, 0)
    cm.execute("START", {}, _CLINICIAN, 0)

    n = [0]
    kind = [0]
    on_rotation = ctl.on_rotation
    service = rt.service

    def timed_on_rotation(now):
        w = on_rotation(now)
        kind[0] = 1 if w >= 0 else 0
        return w

    def timed_service(now):
        kind[0] = 0
        a = gc.mem_alloc()
        t0 = time.ticks_us()
        w = service(now)
        dt = time.ticks_diff(time.ticks_us(), t0)
        b = gc.mem_alloc()
        i = n[0]
        if i < _N:
            dts[i] = dt
            kinds[i] = kind[0]
            allocs[i] = b - a if b >= a else 0xFFFFFFFF   # the collector ran: not counted
            n[0] = i + 1
        return w

    ctl.on_rotation = timed_on_rotation
    rt.service = timed_service
    end = time.ticks_add(time.ticks_ms(), _RUN_MS)

    def stop():
        return time.ticks_diff(time.ticks_ms(), end) >= 0

    run(rt, rp2_ref.idle, stop)
    rt.service = service
    ctl.on_rotation = on_rotation
    gc.collect()
    free_end = gc.mem_free() + instrumentation     # as if the arrays were not there
    st = ctl.snapshot()
    print(json.dumps({"free_boot": free_boot, "free_end": free_end, "n": n[0],
                      "dts": list(dts[:n[0]]), "kinds": list(kinds[:n[0]]),
                      "allocs": list(allocs[:n[0]]), "state": st["state"],
                      "commanded_nl": st["commanded_nl"], "run_ms": _RUN_MS}))


main()
