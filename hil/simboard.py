"""The virtual board on CPython: the firmware on the simulator's SimHal and plant, on a
virtual clock accelerated against the wall clock, as a process speaking the board pipe
protocol of hil/vboard.mjs (U = UART bytes in hex, R = rig commands, Q = quit).

    python -m hil.simboard [--plant sim|mini] [--accel N] [--start-ticks N] [--root DIR]

`--plant sim` (default, `--board virtual`): sim.plant.Plant through sim.hal.SimHal, driven
by sim.engine.Engine — the same plant the simulator judges the firmware against.
`--plant mini` (`--board virtual-lite`): hil/vplant.py, the plant the MicroPython backing
runs, here on CPython (to tell a firmware difference from a plant difference).
Both answer the rig protocol of docs/rig.md.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import sys
import tempfile
import time
from typing import Any

import hil  # noqa: F401  (puts firmware/ on sys.path)
from pump.controller import Controller
from pump.hal import EV_PRESSURE
from pump.runtime import Runtime
from sim.engine import Engine
from sim.hal import DirStorage, SimHal
from sim.plant import Plant, PlantConfig

WRAP_SOON = (1 << 30) - 30000       # start 30 s of board time before ticks_ms wraps (SR-12)


class SimBoard:
    """Same host interface as hil.vplant.Board: feed, rig, service, take."""

    def __init__(self, root: str, accel: int = 100, start_ticks: int = 0, seed: int = 1) -> None:
        self.accel = accel
        self.engine = Engine()
        self.plant = Plant(self.engine, PlantConfig(), seed)
        self.storage = DirStorage(root)
        self.hal = SimHal(self.engine, self.plant, self.storage, start_ticks)
        self.ctl: Any = None
        self.rt: Any = None
        self.w0: float | None = None
        self.steps_before = 0           # driver steps of earlier boots (the rig counts all)
        self.extra_pulses = 0
        self.source_mmhg = 0            # external pressure source on the rig (0: none)
        plant_pressure = self.hal.pressure_mmhg

        def pressure_mmhg() -> int:
            p = plant_pressure()
            return p if p > self.source_mmhg else self.source_mmhg

        setattr(self.hal, "pressure_mmhg", pressure_mmhg)  # noqa: B010 - the rig's source

    # --- firmware ---------------------------------------------------------------------------
    def boot(self) -> None:
        ctl = Controller(self.hal)
        rt = Runtime(self.hal, ctl, idle_ms=max(2000, 500 * self.accel))
        rt.boot()
        self.ctl = ctl
        self.rt = rt
        self.hal.attach(rt)

    def power_off(self) -> None:
        if self.ctl is None:
            return
        self.hal.power_off()
        self.ctl.journal.close()
        self.ctl = None
        self.rt = None
        self.hal.uart.rx.clear()
        self.hal.uart.tx.clear()

    def power_on(self) -> None:
        if self.ctl is not None:
            return
        self.steps_before += self.hal.motor.position()
        self.hal.power_on()
        self.boot()

    # --- host interface -----------------------------------------------------------------------
    def service(self, wall_ms: float) -> float:
        if self.w0 is None:
            self.w0 = wall_ms
        target = int((wall_ms - self.w0) * self.accel)
        eng = self.engine
        eng.run_until(max(target, eng.now))
        nxt = eng.peek()
        if nxt is None:
            return 50.0
        return max(0.0, min(50.0, (nxt - eng.now) / self.accel))

    def feed(self, hex_text: str) -> None:
        if self.ctl is not None:
            self.hal.uart.feed(bytes.fromhex(hex_text))

    def take(self) -> str:
        return self.hal.uart.take().hex() if self.ctl is not None else ""

    def rig(self, line: str) -> str:
        try:
            return self._rig(line.strip().split())
        except (ValueError, IndexError) as e:
            return f"ERR {e}"

    def _rig(self, p: list[str]) -> str:
        if not p:
            return "ERR empty command"
        c = p[0].upper()
        a = p[1].upper() if len(p) > 1 else ""
        now = self.engine.now
        pl = self.plant
        hal = self.hal
        if c == "PING":
            return "OK rig virtual"
        if c == "STEPS?":
            return "OK %d" % (self.steps_before + hal.motor.position())
        if c == "PULSES?":
            return "OK %d" % (pl.rotation_count(now) + self.extra_pulses)
        if c == "VOLUME?":
            return "OK %d" % int(pl.delivered_ul(now))
        if c == "TIME?":
            return "OK %d" % now
        if c == "PRESSURE?":
            return "OK %d" % hal.pressure_mmhg()
        if c == "PRESSURE":
            before = hal.pressure_mmhg() >= pl.cfg.pressure_threshold_mmhg
            self.source_mmhg = 0 if a == "OFF" else int(a)
            if (hal.pressure_mmhg() >= pl.cfg.pressure_threshold_mmhg) != before:
                hal.interrupt(EV_PRESSURE)
        elif c == "OCCLUDE":
            pl.set_occluded(now, _onoff(a))
        elif c == "AIR":
            pl.set_air(_onoff(a))
        elif c == "DOOR":
            if a not in ("OPEN", "CLOSED"):
                return "ERR DOOR OPEN|CLOSED"
            pl.set_door(now, a == "CLOSED")
        elif c == "PULSES":
            n = int(a)
            if not 0 <= n <= 100000:
                return "ERR PULSES 0..100000"
            rot = hal.rotation
            armed = pl.armed - rot.offset if pl.armed >= 0 else -1
            rot.offset -= n             # the firmware's counter reads n more
            self.extra_pulses += n
            if armed >= 0:
                rot.arm(armed)          # re-evaluate the compare at once
        elif c == "RUNAWAY":
            f = float(a)
            if not 1.0 <= f <= 1000.0:
                return "ERR RUNAWAY factor 1..1000"
            pl.set_speed_factor(now, runaway=f)
        elif c == "POWER":
            if _onoff(a):
                self.power_on()
            else:
                self.power_off()
        elif c == "RESET":
            pl.set_speed_factor(now, runaway=1.0)
            self.source_mmhg = 0
            pl.set_air(False)
            pl.set_door(now, True)
            pl.set_occluded(now, False)
            self.power_on()
        else:
            return f"ERR unknown rig command {c}"
        return "OK"


def _onoff(a: str) -> bool:
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise ValueError(f"expected ON or OFF, got {a!r}")


def serve(board: Any, inp: Any = None, out: Any = None) -> int:
    """The board pipe protocol on stdin/stdout (see hil/vboard.mjs)."""
    inp = inp if inp is not None else sys.stdin.buffer
    out = out if out is not None else sys.stdout.buffer
    fd = inp.fileno()
    out.write(b"READY\n")
    out.flush()
    buf = b""

    def ms() -> float:
        return time.monotonic() * 1000.0

    while True:
        delay = board.service(ms())
        tx = board.take()
        if tx:
            out.write(b"U " + tx.encode() + b"\n")
            out.flush()
        r, _, _ = select.select([fd], [], [], delay / 1000.0)
        if not r:
            continue
        data = os.read(fd, 65536)
        if not data:
            return 0
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("ascii", "replace")
            if text.startswith("U "):
                board.feed(text[2:].strip())
                board.service(ms())
            elif text.startswith("R "):
                reply = board.rig(text[2:])
                out.write(b"R " + reply.encode() + b"\n")
            elif text.strip() == "Q":
                return 0
        tx = board.take()
        if tx:
            out.write(b"U " + tx.encode() + b"\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.simboard", description=__doc__)
    p.add_argument("--plant", choices=("sim", "mini"), default="sim")
    p.add_argument("--accel", type=int, default=100)
    p.add_argument("--start-ticks", type=int, default=WRAP_SOON)
    p.add_argument("--root", help="journal directory (default: a fresh temporary one)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    root = a.root or tempfile.mkdtemp(prefix="vboard-")
    board: Any
    try:
        if a.plant == "sim":
            board = SimBoard(root, a.accel, a.start_ticks, a.seed)
            board.boot()
        else:
            from hil import vplant

            board = vplant.Board(root, a.accel, a.start_ticks)
            board.boot()
        return serve(board)
    finally:
        if a.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
