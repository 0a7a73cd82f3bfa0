"""The simulator's fast paths (PR-4) change nothing. The engine glue's shortcuts (a crossing's
wake served at once, its look-ahead shared with that wake, the next crossing pushed on the
heap directly) give the same result, trace and journal as the plain event-by-event path, on
scenarios that cross every kind of crossing: rotation compares, a power loss and reboot, an
occlusion (pressure comparator, stall, back-off), a runaway and a free flow.

The speed itself is measured in bench/bench_sim.py, not asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import runner, scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _run(name: str, hours: float, shortcuts: bool) -> tuple[dict, list[str], bytes]:
    sc = scenario.load(str(SCENARIOS / (name + ".toml")))
    sc.hours = hours
    sim = runner.Sim(sc, trace=True, storage="memory")
    sim.hal.shortcuts = shortcuts
    try:
        sim.run()
        res = runner._result(sim)
        if sim.controller is not None:
            sim.controller.journal.close()
        journal = sim.storage.data("journal.bin") or b""
    finally:
        sim.close()
    return res, sim.rows, journal


@pytest.mark.parametrize("name,hours", [
    ("power-loss-24h-bag", 7.0),
    ("occlusion-24h-bag", 4.0),
    ("runaway-motor-10x-24h-bag", 3.0),
    ("free-flow-cassette-out-24h-bag", 3.0),
    ("rate-drift-10pct-24h-bag", 4.0),
])
def test_shortcuts_give_the_same_result_trace_and_journal(name: str, hours: float) -> None:
    fast = _run(name, hours, True)
    plain = _run(name, hours, False)
    assert fast[0]["controller_steps"] > 500
    assert fast[0] == plain[0]
    assert fast[1] == plain[1]
    assert fast[2] == plain[2] and len(fast[2]) > 0


@pytest.mark.parametrize("shortcuts", [True, False])
def test_a_crossing_absurdly_far_off_is_none_on_either_path(shortcuts: bool) -> None:
    """The inlined hand-over keeps the physics' rule: a vanishing battery drain puts the
    low-battery crossing beyond any schedule, so there is none (and no overflow)."""
    from sim.engine import Engine
    from sim.plant import Plant, PlantConfig

    e = Engine()
    p = Plant(e, PlantConfig(), seed=1)
    p.shortcuts = shortcuts
    p.set_battery_drain(0, 1e-300)
    assert p.due is None
    p.set_battery_drain(0, 3600.0)            # 600 mV above the comparator: 600 s
    assert p.due == 600000
