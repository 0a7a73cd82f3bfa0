"""The plant and SimHal on their own: stroke geometry, rotation sensor, compare interrupt,
back-pressure, line compliance, driver vs camshaft, MicroPython tick wrap."""

from __future__ import annotations

import pytest

from pump import ticks
from pump.hal import EV_ROTATION
from sim.engine import Engine
from sim.hal import SimHal
from sim.plant import Plant, PlantConfig


def _plant(ideal: bool = True, **kw: float) -> tuple[Engine, Plant, list[tuple[int, int]]]:
    e = Engine()
    cfg = PlantConfig()
    if ideal:
        cfg.ideal()
    for k, v in kw.items():
        setattr(cfg, k, v)
    p = Plant(e, cfg, seed=1)
    sig: list[tuple[int, int]] = []
    p.signal = lambda f: sig.append((e.now, f))
    p.set_enabled(0, True)
    return e, p, sig


def test_nominal_stroke_is_50_ul_in_200_steps_with_4_pulses() -> None:
    e, p, _ = _plant()
    p.set_motion(0, 2000, 10000)              # 10 strokes in 10 s
    e.run_until(5000)
    assert p.delivered_ul(5000) == pytest.approx(250.0)
    assert p.true_pulses(5000) == 20
    e.run_until(20000)
    assert p.delivered_ul(20000) == pytest.approx(500.0)
    assert p.true_pulses(20000) == 40


def test_stroke_noise_averages_out_and_the_cassette_factor_scales() -> None:
    e, p, _ = _plant(ideal=False, cassette_sd=0.01, stroke_noise=0.03)
    p.set_motion(0, 200 * 1000, 1000000)      # 1000 strokes
    e.run_until(1000000)
    v = p.delivered_ul(1000000)
    assert v == pytest.approx(50000.0 * p.cassette_factor, rel=0.005)
    e2, p2, _ = _plant(ideal=False)
    p2.set_motion(0, 200, 1000)
    assert p2.delivered_ul(1000) != pytest.approx(50.0, abs=1e-9)


def test_rotation_compare_fires_at_the_crossing_ms() -> None:
    e, p, sig = _plant(ideal=False)
    p.set_motion(0, 4000, 40000)              # 0.1 step/ms
    p.arm(7)
    e.run_until(40000)
    hits = [t for t, f in sig if f == EV_ROTATION]
    assert len(hits) == 1
    t = hits[0]
    assert p.rotation_count(t) >= 7


def test_arm_already_reached_fires_at_once_and_disarm_stops_it() -> None:
    e, p, sig = _plant()
    p.set_motion(0, 400, 4000)
    e.run_until(4000)
    p.arm(3)
    assert sig and sig[-1][1] == EV_ROTATION
    sig.clear()
    p.set_motion(4000, 400, 4000)
    p.arm(100)
    p.arm(-1)
    e.run_until(9000)
    assert not sig


def test_back_pressure_reduces_volume_per_step() -> None:
    e, p, _ = _plant(backpressure_per_mmhg=0.001, compliance_ul_per_mmhg=1.0)
    p.set_occluded(0, True)
    p.set_motion(0, 200 * 8, 80000)            # 8 strokes into a closed line
    e.run_until(80000)
    p.settle(80000)
    assert 300.0 < p.stored_ul < 400.0       # less than 8 x 50 uL: higher pressure, less


def test_reverse_move_relieves_the_line_and_counts_pulses() -> None:
    e, p, _ = _plant()
    p.set_occluded(0, True)
    p.set_motion(0, 400, 4000)
    e.run_until(4000)
    assert p.pressure_at(4000) == pytest.approx(8 + 100 / 0.5)
    p.set_motion(4000, -200, 2000)
    e.run_until(6000)
    assert p.pressure_at(6000) == pytest.approx(8 + 50 / 0.5)
    assert p.true_pulses(6000) == 12         # a single-channel sensor counts both ways


def test_runaway_camshaft_versus_driver_position() -> None:
    e = Engine()
    cfg = PlantConfig()
    cfg.ideal()
    hal = SimHal(e, Plant(e, cfg))
    hal.motor.enable(True)
    hal.plant.set_speed_factor(0, runaway=3.0)
    hal.motor.move(400, 4000)
    e.run_until(2000)
    assert hal.motor.position() == 200 and hal.motor.busy()
    assert hal.rotation.count() == 12         # 600 true steps
    e.run_until(5000)
    assert hal.motor.position() == 400 and not hal.motor.busy()
    assert hal.plant.delivered_ul(5000) == pytest.approx(300.0)
    hal.storage.cleanup()


def test_disabled_power_stage_does_not_turn_the_camshaft() -> None:
    e = Engine()
    hal = SimHal(e, Plant(e, PlantConfig()))
    hal.motor.move(400, 4000)
    e.run_until(4000)
    # the shipped driver issues no step while disabled (boards/rp2_ref.py Motor)
    assert hal.motor.position() == 0 and not hal.motor.busy()
    assert hal.rotation.count() == 0 and hal.plant.delivered_ul(4000) == 0.0
    # and disabling stops a move: enabling again does not resume it
    hal.motor.enable(True)
    hal.motor.move(400, 4000)
    e.run_until(6000)
    hal.motor.enable(False)
    hal.motor.enable(True)
    e.run_until(10000)
    assert hal.motor.position() == 200 and not hal.motor.busy()
    assert hal.plant.delivered_ul(10000) == pytest.approx(50.0, rel=0.01)
    hal.storage.cleanup()


def test_sr12_sim_ticks_wrap_like_micropython() -> None:
    e = Engine()
    hal = SimHal(e, Plant(e), start_ticks=(1 << 30) - 10)
    t0 = hal.ticks_ms()
    e.run_until(25)
    assert hal.ticks_ms() == 15
    assert hal.ticks_diff(hal.ticks_ms(), t0) == 25
    assert hal.ticks_add(t0, 25) == 15
    assert hal.ticks_wraps() == 1
    assert hal.ticks_diff is ticks.ticks_diff
    hal.storage.cleanup()


def test_uart_queues() -> None:
    e = Engine()
    hal = SimHal(e, Plant(e))
    assert hal.uart.read(10) is None
    hal.uart.feed(b"hello\n")
    assert hal.uart.read(3) == b"hel" and hal.uart.read(10) == b"lo\n"
    hal.uart.write(b"ok")
    assert hal.uart.take() == b"ok"
    hal.storage.cleanup()
