"""The first figures from the real port: the firmware flashed with `pumpctl flash` onto the
official MicroPython v1.27 for the Pico, on an emulated RP2040 (rp2040js, 125 MHz; the
harness hil/rp2board.mjs). Prints figures; judges nothing.

    .venv/bin/python bench/bench_rp2.py [--hours H]

- the cost of a wake, from the chip's own µs timer around Runtime.service during an hour of
  pump time at 10 mL/h (bench/rp2_device.py runs main.py's loop, instrumented): a compare
  wake (the monitor's edge check alone) and a full control step (segment ends, journalling),
  in µs and in cycles at 125 MHz; bytes allocated per wake (goal 0);
- gc.mem_free() after boot and after that hour;
- the latency from the rotation-sensor edge that crosses the monitor's envelope (runaway
  x10) to the motor enable's fall (the rig's STOPLAT?);
- the flash the firmware takes (the .mpy files, main.py and the drug library);
- boot after a power cut mid-delivery: power on -> the pump answers (PAUSED), and -> RUNNING
  after a clinician's immediate resume (board ms, ticks_ms of the replies).

The emulator counts instruction cycles approximately (rp2040js: no flash wait states, no bus
contention), so the µs are the emulated chip's, not a measurement of silicon.
The fixtures come from ../shared/rp2/ (or RP2_UF2, RP2_BOOTROM): absent, it says so.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hil import rp2
from hil.bridge import VirtualBoard
from hil.harness import provision
from hil.rig import Rig
from host import flash as fl
from host.client import KeyRing, PumpClient

REPO = Path(__file__).resolve().parents[1]
MHZ = 125


def _pct(xs: list[int], q: float) -> int:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def _line(name: str, xs: list[int]) -> None:
    if not xs:
        print(f"{name}: none")
        return
    med = statistics.median(xs)
    print(f"{name}_us: median {med:.0f} us, p90 {_pct(xs, 0.9)} us, max {max(xs)} us "
          f"(n={len(xs)}; {med * MHZ / 1000:.0f} k cycles at {MHZ} MHz)")


def device_run(fx: rp2.Fixtures, hours: float) -> dict:
    """A Pico fresh from its UF2, flashed with pumpctl and left in its REPL (--no-reset): the
    instrumented main loop runs there for `hours` of pump time, as fast as the emulator
    goes."""
    script = (REPO / "bench" / "rp2_device.py").read_text().replace(
        "_RUN_MS = 3600000\n", f"_RUN_MS = {int(hours * 3600000)}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    with VirtualBoard("rp2040js", accel=0, start_ticks=0, rp2_fixtures=fx) as vb:
        r = subprocess.run([sys.executable, "-m", "host.cli", "--port", vb.uart_path, "flash",
                            "--no-reset", "--wait", "20"], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"pumpctl flash failed:\n{r.stdout}{r.stderr}")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "mpremote", "connect", vb.uart_path,
                            "run", f.name], capture_output=True, text=True, timeout=3600)
        wall = time.monotonic() - t0
    Path(f.name).unlink()
    last = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not last:
        raise SystemExit(f"the device run failed ({r.returncode}):\n{r.stdout[-2000:]}"
                         f"{r.stderr[-2000:]}")
    out = json.loads(last[-1])
    out["wall_s"] = wall
    return out


def stop_latency(fx: rp2.Fixtures, image: Path, rate: str) -> tuple[int, str]:
    ring = KeyRing.generate("bench")
    with VirtualBoard("rp2040js", accel=20, rp2_fixtures=fx, flash_image=image) as vb, \
            PumpClient(vb.uart_path, timeout=2.0, retries=4) as c:
        rig = Rig(vb.rig_path)
        provision(c, ring)
        c.bench_program(rate, "10 mL")
        c.start()
        time.sleep(2.0)
        rig.runaway(10)
        s = c.wait_state(("ALARM", "LOCKOUT"), 120)
        us = int(rig.cmd("STOPLAT?"))
        rig.close()
        return us, s["alarm"]


def boot_after_power_cut(fx: rp2.Fixtures, image: Path) -> tuple[int, int, int]:
    ring = KeyRing.generate("bench")
    with VirtualBoard("rp2040js", accel=20, rp2_fixtures=fx, flash_image=image) as vb, \
            PumpClient(vb.uart_path, timeout=0.5, retries=40) as c:
        rig = Rig(vb.rig_path)
        provision(c, ring)
        c.bench_program("10 mL/h", "10 mL")
        c.start()
        time.sleep(1.0)
        rig.power(False)
        rig.power(True)
        t_on = rig.time_ms()
        s = c.status()
        t_answer = s["t_ms"]                       # the chip's ticks_ms: 0 at power-on
        r = c.resume(role="clinician")
        t_running = c.status()["t_ms"]
        rig.close()
        assert s["state"] == "PAUSED" and r["state"] == "RUNNING"
        return t_answer, t_running, t_on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="pump time of the device run")
    a = ap.parse_args()
    try:
        fx = rp2.find()
    except rp2.FixtureMissing as e:
        print(f"bench_rp2: skipped: {e}")
        return
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    img = rp2.make_image(fx, out / "rp2-flash.bin")
    print(f"flash_via_pumpctl_s: {img.seconds:.1f} s (fresh Pico from its UF2: dry run, "
          "mpy-cross, mpremote cp, sha256 verify)")
    b = fl.build(REPO / "firmware")
    try:
        mpy = sum((b.root / p.lstrip("/")).stat().st_size for p in b.files if p.endswith(".mpy"))
        allb = sum((b.root / p.lstrip("/")).stat().st_size for p in b.files)
        n_mpy = sum(1 for p in b.files if p.endswith(".mpy"))
    finally:
        b.cleanup()
    print(f"flash_firmware_bytes: {mpy} B in {n_mpy} .mpy files ({mpy / 1024:.1f} KiB); "
          f"{allb} B with main.py and druglib.json ({allb / 1024:.1f} KiB)")

    d = device_run(fx, a.hours)
    dts, kinds, allocs = d["dts"], d["kinds"], d["allocs"]
    compare = [t for t, k in zip(dts, kinds, strict=True) if k == 1]
    full = [t for t, k in zip(dts, kinds, strict=True) if k == 0]
    counted = [(x, k) for x, k in zip(allocs, kinds, strict=True) if x != 0xFFFFFFFF]
    _line("compare_wake", compare)
    _line("control_step", full)
    for name, k in (("compare_wake", 1), ("control_step", 0)):
        xs = [x for x, kk in counted if kk == k]
        nz = [x for x in xs if x]
        print(f"bytes_allocated_per_{name}: mean {statistics.mean(xs) if xs else 0:.1f} B, "
              f"{len(nz)} of {len(xs)} wakes allocated (max {max(nz) if nz else 0} B)")
    which = [f"#{i} ({x} B)" for i, x in enumerate(allocs) if x and x != 0xFFFFFFFF]
    print(f"allocating_wakes: {', '.join(which[:8]) or 'none'} (#0: the wake after START, "
          "which sends the state-change events)")
    print(f"gc_mem_free_after_boot: {d['free_boot']} B")
    print(f"gc_mem_free_after_{d['run_ms'] / 3600000:g}h: {d['free_end']} B (state {d['state']}, "
          f"{d['commanded_nl'] / 1e6:.3f} mL counted; {d['n']} wakes; "
          f"{d['wall_s']:.0f} s wall)")

    for rate in ("10 mL/h", "0.6 mL/h"):
        us, alarm = stop_latency(fx, img.path, rate)
        print(f"rotation_edge_to_motor_stop_us: {us} us at {rate}, runaway x10 ({alarm})")
    t_answer, t_running, _ = boot_after_power_cut(fx, img.path)
    print(f"boot_after_power_cut_ms: answering (PAUSED) by {t_answer} ms, RUNNING by "
          f"{t_running} ms after a clinician's immediate RESUME (ticks_ms since power-on; "
          "includes the 500 ms Ctrl-C window)")


if __name__ == "__main__":
    main()
