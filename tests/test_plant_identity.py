"""One plant: plant/physics.py gives the same numbers, bit for bit, on CPython and on real
MicroPython (the firmware tests and the MicroPython virtual board run it there), and the
simulator's plant is that physics (tests/plant_run.py drives all three)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import plant_run
from test_micropython import REPO, mpy_command

from plant import physics
from plant.vhal import VirtualHal
from pump.hal import EV_AIR, EV_BATTERY, EV_DOOR, EV_MOTOR_FAULT, EV_PRESSURE, EV_ROTATION
from sim.engine import Engine
from sim.hal import MemStorage, SimHal
from sim.plant import Plant, PlantConfig

SCRIPT = REPO / "tests" / "plant_run.py"


def _signals(lines: list[str]) -> list[int]:
    return [int(line.split()[2]) for line in lines if line.startswith("signal ")]


def test_physics_identical_on_cpython_and_micropython() -> None:
    env = {"PYTHONPATH": f"{REPO / 'firmware'}:{REPO}", "PATH": os.environ.get("PATH", "")}
    cpy = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, check=True,
                         env=env, timeout=120)
    mpy = subprocess.run(mpy_command(SCRIPT), capture_output=True, timeout=120, check=False)
    assert mpy.returncode == 0, mpy.stderr.decode()
    lines = cpy.stdout.decode().splitlines()
    # the sequence did what it says: every interrupt line rose, on the crossing's ms
    assert set(_signals(lines)) == {EV_ROTATION, EV_PRESSURE, EV_MOTOR_FAULT, EV_DOOR,
                                    EV_AIR, EV_BATTERY}
    assert "signal 62000 %d" % EV_AIR in lines              # 0.5 mL at 2 mL/min from 47 s
    assert "signal 81000 %d" % EV_BATTERY in lines          # 600 mV at 100 mV/s from 75 s
    assert len(lines) > 50
    assert mpy.stdout == cpy.stdout


def _run(hal: Any, goto: Callable[[int], None], now: Callable[[], int]) -> list[str]:
    out: list[str] = []
    plant_run.run(hal, goto, now, out.append)
    return out


def test_sim_plant_is_the_physics_on_a_noise_free_config() -> None:
    cfg = PlantConfig(cassette_sd=0.0, calibration_sd=0.0, stroke_noise=0.0,
                      rotation_jitter_steps=0.0)
    e = Engine()
    sim = SimHal(e, Plant(e, cfg, seed=3), MemStorage())
    sim_lines = _run(sim, e.run_until, lambda: e.now)
    vhal = VirtualHal(None, plant=physics.Plant())
    lines = _run(vhal, vhal.advance_to, vhal.clock)
    assert sim_lines == lines
    assert len(set(_signals(lines))) == 6


def test_physics_crossings_fire_on_the_ms_the_condition_first_holds() -> None:
    """Each crossing handed on (plant.due) is the first ms its interrupt's condition holds:
    the rotation compare on the noisy plant, pulse by pulse, both directions."""
    p = plant_run.noisy_plant()
    hal = VirtualHal(None, plant=p)
    fired: list[int] = []
    hal.signal = lambda flag: fired.append(hal.t)
    hal.motor.enable(True)
    for steps in (1500, -900, 700):
        hal.motor.move(steps, abs(steps) * 7)
        end = hal.t + abs(steps) * 7
        while hal.t < end:
            target = hal.rotation.count() + 1
            hal.rotation.arm(target)
            at = hal.next_at()
            if at is None or at > end:
                hal.rotation.arm(-1)
                hal.advance_to(end)
                break
            assert p.rotation_count(at - 1) < target + hal.rotation.offset
            hal.advance_to(at)
            assert fired[-1] == at and hal.rotation.count() >= target
    assert len(fired) > 50


def test_driver_counts_issued_steps_like_the_shipped_board() -> None:
    """boards/rp2_ref.py Motor: steps evenly over a move, a reverse move rounds toward zero,
    disabling stops the move, a move while disabled issues nothing."""
    hal = VirtualHal(None)
    m = hal.motor
    m.enable(True)
    m.move(7, 10)
    hal.advance_to(5)
    assert m.position() == 3 and m.busy()
    m.move(-7, 10)
    hal.advance_to(10)
    assert m.position() == 3 - 3 and m.busy()          # -3.5 issued: -3, toward zero
    m.enable(False)
    hal.advance_to(30)
    assert m.position() == 0 and not m.busy() and not m.enabled()
    m.move(100, 10)
    hal.advance_to(50)
    assert m.position() == 0 and not m.busy()
    assert hal.plant.cam(50) == hal.plant.cam(10)      # and the camshaft stood still
