"""One runtime (docs/architecture.md): the board's own main loop (firmware/main.py, through
pump.runtime.run) on a fake board and the simulator's engine glue (sim.hal.SimHal) serve the
same wakes. One scripted run — keys, a program over serial (propose, confirm), start, a
status request, the door opened (DOOR_OPEN), the alarm acknowledged, the door closed, a
clinician's resume, run to COMPLETE — gives the same controller trace (every state change
and alarm at the same ms), the same bytes on the UART and the same journal on both.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

import main
from boards.fs import DirStorage
from host.client import decode, encode
from plant.vhal import VirtualHal
from pump.controller import Controller
from pump.runtime import Runtime
from sim.engine import PRIO_FAULT, Engine
from sim.hal import SimHal
from sim.plant import Plant, PlantConfig

KEY_S = binascii.unhexlify("5e" * 32)   # a bench: the service key, service mode
END_MS = 40 * 60000


class Ctx:
    """What a scripted action sees: the plant, the board's UART, the time and the replies."""

    def __init__(self, plant: Any, uart: Any) -> None:
        self.plant = plant
        self.uart = uart
        self.t = 0
        self.frames: list[Any] = []

    def send(self, raw: bytes) -> None:
        self.uart.feed(raw)

    def collect(self) -> None:
        for line in self.uart.take().splitlines():
            if line:
                self.frames.append(decode(line))

    def reply(self, seq: int) -> dict[str, Any]:
        got = [f for f in self.frames if f.seq == str(seq)]
        assert len(got) == 1, (seq, self.frames)
        assert got[0].kind == "OK", got[0]
        return got[0].obj


def _confirm(c: Ctx) -> None:
    c.send(encode(3, "CONFIRM", {"echo": c.reply(2)["echo"]}, "s", 3, KEY_S))


SCRIPT: list[tuple[int, Callable[[Ctx], None]]] = [
    (1000, lambda c: c.send(encode(1, "KEY", {"slot": "s", "key": "5e" * 32}))),
    (1500, lambda c: c.send(encode(8, "SERVICE", {}, "s", 1, KEY_S))),
    (2000, lambda c: c.send(encode(2, "PROPOSE", {"basic": {"rate": "10 mL/h",
                                                             "vtbi": "5 mL"}}, "s", 2, KEY_S))),
    (3000, _confirm),
    (4000, lambda c: c.send(encode(4, "START", {}, "s", 4, KEY_S))),
    (600000, lambda c: c.send(encode(5, "STATUS"))),
    (900000, lambda c: c.plant.set_door(c.t, False)),
    (960000, lambda c: c.send(encode(6, "ACK"))),
    (1000000, lambda c: c.plant.set_door(c.t, True)),
    (1020000, lambda c: c.send(encode(7, "RESUME", {}, "s", 5, KEY_S))),
    (END_MS - 1, lambda c: None),
]


class FakeBoard:
    """A board module for main.main(board): make_hal, watchdog_reset, idle — on the one
    plant, with virtual time that jumps from wake to wake (or to a plant crossing, or to the
    script's next action)."""

    def __init__(self, root: str) -> None:
        self.storage = DirStorage(root)
        self.hal: Any = None
        self.ctx: Any = None
        self.script = list(SCRIPT)

    def make_hal(self, signal: Callable[[int], None], *_flags: int) -> VirtualHal:
        hal = VirtualHal(self.storage)
        hal.signal = signal
        self.hal = hal
        self.ctx = Ctx(hal.plant, hal.uart)
        return hal

    def watchdog_reset(self) -> bool:
        return False

    def idle(self, wake: int) -> None:
        hal = self.hal
        t = hal.t + hal.ticks_diff(wake, hal.ticks_ms())
        t = min(t, self.script[0][0] if self.script else END_MS, END_MS)
        at = hal.next_at()
        if at is not None and at < t:
            t = at
        hal.advance_to(t)
        while self.script and self.script[0][0] <= hal.t:
            _, act = self.script.pop(0)
            self.ctx.t = hal.t
            self.ctx.collect()
            act(self.ctx)

    def stop(self) -> bool:
        return self.hal.t >= END_MS


def _trace(ctl: Any, clock: Callable[[], int]) -> list[tuple[int, str, Any, int]]:
    out: list[tuple[int, str, Any, int]] = []
    ctl.listeners.append(lambda kind, code, value: out.append((clock(), kind, code, value)))
    return out


def run_on_main_loop(root: str) -> tuple[list[Any], list[Any], bytes]:
    board = FakeBoard(root)
    traces: list[Any] = []
    real_controller = main.Controller

    def controller(hal: Any) -> Any:          # main.py builds it; the test listens in
        ctl = real_controller(hal)
        traces.append(_trace(ctl, lambda: board.hal.t))
        return ctl

    main.Controller = controller
    try:
        rt = main.main(board, board.stop)
    finally:
        main.Controller = real_controller
    board.ctx.collect()
    rt.ctl.journal.close()
    return traces[0], board.ctx.frames, _journal(board.storage)


def run_in_simulator(root: str) -> tuple[list[Any], list[Any], bytes]:
    engine = Engine()
    cfg = PlantConfig()
    cfg.ideal()
    cfg.backpressure_per_mmhg = PlantConfig.backpressure_per_mmhg
    plant = Plant(engine, cfg, 1)
    storage = DirStorage(root)
    hal = SimHal(engine, plant, storage)
    ctl = Controller(hal)
    trace = _trace(ctl, lambda: engine.now)
    rt = Runtime(hal, ctl)
    rt.boot()
    hal.attach(rt)
    ctx = Ctx(plant, hal.uart)
    for t, act in SCRIPT:
        def fire(act: Callable[[Ctx], None] = act) -> None:
            ctx.t = engine.now
            ctx.collect()
            act(ctx)
        engine.schedule(t, PRIO_FAULT, fire)
    engine.run_until(END_MS)
    ctx.collect()
    ctl.journal.close()
    return trace, ctx.frames, _journal(storage)


def _journal(storage: DirStorage) -> bytes:
    with open(storage.path("journal.bin"), "rb") as f:
        return f.read()


def test_main_loop_and_simulator_serve_the_same_wakes(tmp_path: Any) -> None:
    trace_b, frames_b, journal_b = run_on_main_loop(str(tmp_path / "board"))
    trace_s, frames_s, journal_s = run_in_simulator(str(tmp_path / "sim"))
    states = [e[2] for e in trace_b if e[1] == "state"]
    alarms = [e[2] for e in trace_b if e[1] == "alarm"]
    # the run did what the script says, over serial and through the plant
    assert states[-1] == "COMPLETE", trace_b
    assert "RUNNING" in states and "ALARM" in states
    assert "DOOR_OPEN" in alarms and "INFUSION_COMPLETE" in alarms
    replies = [f for f in frames_b if f.seq.isdigit()]
    assert [f.kind for f in replies] == ["OK"] * 8, replies
    # and the two main loops saw it identically
    assert trace_b == trace_s
    assert [f.raw for f in frames_b] == [f.raw for f in frames_s]
    assert journal_b == journal_s
