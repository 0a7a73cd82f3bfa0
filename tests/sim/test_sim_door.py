"""One programming door: the simulator programs each bag through the firmware's command door
(pump.commands: PROPOSE, CONFIRM with the echo, START) exactly as serial frames do through
the protocol, so a bag programmed by the simulator and the same bag keyed over the wire
journal the very same PROGRAM record (SR-3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakehal import FakeHal, tmpdir

from boards.memuart import MemUart
from pump import auth, codes, frames
from pump.controller import Controller
from pump.protocol import Protocol
from sim import runner, scenario
from sim.programming import proposal_args

KEY_C = bytes(range(32))
KEY_S = bytes(range(32, 64))

LABELLED = """
name = "door-label"
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
dose_ug_per_day = 28.0
bag_hours = 24
[run]
hours = 0.5
seed = 3
"""
# no patient weight: a bare rate/VTBI program (no drug library), keyed with its units
BASIC = """
name = "door-basic"
[prescription]
drug = "blinatumomab"
bag_hours = 24
[programming]
rate_ml_per_h = 10.0
vtbi_ml = 240.0
rate_unit = "%s"
[run]
hours = 0.5
seed = 3
"""


def _over_the_wire(args: dict[str, Any], counter: int) -> tuple[list[int], list[Any]]:
    """PROPOSE (authenticated with `counter`) and CONFIRM (the echo) as frames through the
    protocol of a fresh pump (a basic program: the service role, in service mode): (its
    journalled PROGRAM payload, the echo)."""
    hal = FakeHal(tmpdir("wire"))
    ctl = Controller(hal)
    ctl.boot()
    uart = MemUart()
    proto = Protocol(ctl, uart, hal.storage)
    assert proto.keys.set("c", KEY_C.hex()) and proto.keys.set("s", KEY_S.hex())
    slot, key = ("s", KEY_S) if "basic" in args else ("c", KEY_C)
    if slot == "s":
        assert ctl.request("service", codes.SERVICE_ROLE) is None      # at the bench
    replies = []
    for seq, (cmd, a) in enumerate((("PROPOSE", args), ("CONFIRM", None)), start=1):
        if a is None:
            a = {"echo": replies[-1]["echo"]}
        text = json.dumps(a)
        tag = auth.tag_hex(key, slot, counter + seq - 1, cmd, text)
        uart.feed(frames.frame_text(seq, cmd, text, f"{slot}:{counter + seq - 1}:{tag}"))
        proto.poll(hal.ticks_ms())
        got = [frames.parse(ln) for ln in uart.take().split(b"\n") if ln]
        mine = [g for g in got if not isinstance(g, str) and g[0] == str(seq)]
        assert len(mine) == 1 and mine[0][1] == "OK", got
        replies.append(json.loads(mine[0][2]))
    return ctl.journal.program[3], replies[0]["echo"]


@pytest.mark.parametrize("text", [LABELLED, BASIC % "mL/h", BASIC % "ml/h"])
def test_sr3_simulator_and_protocol_program_through_the_same_door(text: str) -> None:
    sc = scenario.loads(text)
    sim = runner.Sim(sc, storage="memory")
    try:
        sim.run()
        assert sim.accepted and sim.reject_code is None
        assert [(r["trigger"], r["result"]) for r in sim.requests] == \
            [("program", None), ("start", None)]
        assert sim.controller.snapshot()["program_id"] == 1          # bag index + 1
        simulated = sim.controller.journal.program[3]
    finally:
        sim.close()
    wire, echo = _over_the_wire(proposal_args(sc, 0), 1)
    assert wire == simulated
    assert echo[1:3] == [10000, 240000]


def test_sr3_simulated_operator_keying_another_unit_is_refused_by_the_pump() -> None:
    sc = scenario.loads(BASIC % "mL/24h")
    res = runner.run_scenario(sc, storage="memory")
    assert not res["accepted"] and res["reject_code"] == codes.UNIT_REJECTED
    # the bench program was refused in service mode, where the simulated bench put the pump
    assert res["requests"] == [] and res["final_state"] == codes.SERVICE
