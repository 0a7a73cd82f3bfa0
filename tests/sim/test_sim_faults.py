"""Every fault kind has a PHYSICAL effect on the plant — not the firmware's reaction.

A 24 h bag at 10 mL/h runs with the firmware for its first hour; then, for most faults, the
controller is detached (the board's main loop stops: the safety monitor cannot react) and the
driver keeps turning at 10 mL/h open loop while the fault acts at 1 h. Faults that live in the
firmware (controller_rate_error) or rebuild it (power_loss) keep the firmware in the loop."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pump.hal import EV_AIR, EV_BATTERY, EV_DOOR, EV_MOTOR_FAULT, EV_PRESSURE, EV_ROTATION
from sim import runner, scenario
from sim.faults import FAULTS
from sim.runner import Sim

H = 3600000
BASE = """
name = "fault"
[prescription]
dose_ug_per_day = 28.0
bag_hours = 24
[run]
hours = 24.0
seed = 4
"""


def _sim(fault: str = "", extra: str = "", open_loop: bool = True) -> tuple[Sim, list[int]]:
    sim = Sim(scenario.loads(BASE + extra + ("\n[[faults]]\nat_h = 1.0\n" + fault
                                             if fault else "")))
    signals: list[int] = []
    orig = sim.plant.signal

    def record(flag: int) -> None:
        signals.append(flag)
        orig(flag)

    sim.plant.signal = record
    sim.start()
    if open_loop:
        sim.advance(H - 1)
        sim.hal.detach()                      # the firmware stops running
        sim.hal.motor.enable(True)
        sim.hal.motor.move(10 * 4000 * 23, 23 * H)   # 10 mL/h (4000 steps/mL) from here on
    sim.advance(H)              # the fault is applied at 1 h, at this very instant
    return sim, signals


def _covers(kind: str) -> None:
    """Marks the test of a fault kind (test_every_fault_kind_has_a_physical_test)."""


def test_motor_runaway_camshaft_outruns_the_driver() -> None:
    _covers("motor_runaway")
    sim, _ = _sim('kind = "motor_runaway"\nfactor = 5.0')
    p, hal = sim.plant, sim.hal
    pulses0, steps0, vol0 = p.true_pulses(sim.now), hal.motor.position(), p.patient_ul
    sim.advance(H + 600000)     # ten minutes
    pulses = p.true_pulses(sim.now) - pulses0
    steps = hal.motor.position() - steps0
    assert steps == pytest.approx(6667, abs=2)       # 1.67 mL of steps at 250 nL/step
    assert pulses > 4.5 * steps / 50            # the driver's count does not know
    assert p.patient_ul - vol0 == pytest.approx(5 * 10000 / 6, rel=0.05)   # 5x 1.67 mL


def test_rate_drift_camshaft_runs_fast_by_the_factor() -> None:
    _covers("rate_drift")
    sim, _ = _sim('kind = "rate_drift"\nfactor = 1.1')
    p, hal = sim.plant, sim.hal
    pulses0, steps0, vol0 = p.true_pulses(sim.now), hal.motor.position(), p.patient_ul
    sim.advance(2 * H)
    pulses = p.true_pulses(sim.now) - pulses0
    steps = hal.motor.position() - steps0
    assert pulses / (steps / 50) == pytest.approx(1.1, rel=0.01)
    assert (p.patient_ul - vol0) / 10000 == pytest.approx(1.1, rel=0.04)


def test_controller_rate_error_doubles_what_the_driver_is_told() -> None:
    _covers("controller_rate_error")
    sim, _ = _sim('kind = "controller_rate_error"\nfactor = 2.0', open_loop=False)
    hal = sim.hal
    d = sim.controller.delivery
    assert d.fault_num == 2 * d.fault_den
    # the segment begun at 1 h (a segment boundary) carries twice the volume in 36 s
    assert d.seg_nl == 200000
    # steps for 200 µL at this cassette's calibrated stroke volume (400 at a nominal 50 µL),
    # handed to the motor in parts of at most a stroke (write-ahead, SR-9): 4 of 9 s
    assert abs(d.seg_steps - 200000 * d.steps_per_stroke / d.stroke_nl) <= 1
    assert d.seg_parts == 4 and d.seg_part == 1
    assert hal.motor.steps == d.seg_steps // 4
    assert hal.motor.ms == 36000 // 4 and hal.motor.t0 == H


def test_rotation_sensor_dropout_loses_pulses() -> None:
    _covers("rotation_sensor_dropout")
    sim, _ = _sim('kind = "rotation_sensor_dropout"\nfraction = 0.5')
    p, rot = sim.plant, sim.hal.rotation
    c0, t0 = rot.count(), p.true_pulses(sim.now)
    sim.advance(2 * H)
    true = p.true_pulses(sim.now) - t0
    assert true == pytest.approx(800, abs=4)
    assert rot.count() - c0 == pytest.approx(true / 2, abs=1)
    sim2, _ = _sim('kind = "rotation_sensor_dropout"')
    c0 = sim2.hal.rotation.count()
    sim2.advance(2 * H)
    assert sim2.hal.rotation.count() == c0 and sim2.plant.true_pulses(sim2.now) > c0 + 700


def test_rotation_sensor_stuck_freezes_the_count_then_shows_the_truth() -> None:
    _covers("rotation_sensor_stuck")
    sim, _ = _sim('kind = "rotation_sensor_stuck"\nduration_s = 1800')
    rot = sim.hal.rotation
    c0 = rot.count()
    sim.advance(H + 1700000)
    assert rot.count() == c0
    rot.arm(c0 + 1)                       # a stuck sensor never reaches a compare value
    sim.advance(H + 1790000)
    assert rot.count() == c0
    sim.advance(2 * H)
    assert rot.count() == sim.plant.true_pulses(sim.now) == pytest.approx(c0 + 800, abs=2)


def test_occlusion_builds_pressure_and_the_patient_gets_nothing() -> None:
    _covers("occlusion")
    sim, signals = _sim('kind = "occlusion"')
    p, hal = sim.plant, sim.hal
    vol0 = p.patient_ul
    sim.advance(H + 60000)
    assert 8 + 150 < hal.pressure_mmhg() < 8 + 400 / 0.5 * 1.1    # ~167 uL in 0.5 uL/mmHg
    sim.advance(2 * H)
    assert p.patient_ul == vol0                                   # nothing reached the patient
    assert hal.pressure_mmhg() == 1500                            # capped where the motor
    assert EV_MOTOR_FAULT in signals                              # stalls (driver reports it)
    assert p.stored_ul == pytest.approx((1500 - 8) * 0.5)
    assert EV_PRESSURE in signals


def test_occlusion_release_gives_the_stored_volume_as_a_bolus() -> None:
    _covers("occlusion_release")
    sim, _ = _sim('kind = "occlusion"\n[[faults]]\nat_h = 1.02\nkind = "occlusion_release"')
    sim.advance(int(1.02 * H) - 1)
    p = sim.plant
    stored, vol = p.stored_ul, p.patient_ul
    assert stored > 100.0
    sim.advance(int(1.02 * H))
    assert p.bolus_ul == pytest.approx(stored, rel=0.01)
    assert p.boluses and p.boluses[0][0] == int(1.02 * H)
    assert p.patient_ul >= vol + stored * 0.99
    assert sim.hal.pressure_mmhg() == 8


def test_air_in_line_trips_the_detector() -> None:
    _covers("air_in_line")
    sim, signals = _sim('kind = "air_in_line"\nduration_s = 60')
    assert sim.hal.air_detected() and EV_AIR in signals
    sim.advance(H + 61000)
    assert not sim.hal.air_detected()


def test_free_flow_flows_with_the_motor_stopped_until_the_clamp_closes() -> None:
    _covers("free_flow")
    sim, signals = _sim('kind = "free_flow"')
    p, hal = sim.plant, sim.hal
    assert not hal.door_closed() and EV_DOOR in signals
    sim.advance(H + 1000)
    hal.motor.stop()
    steps, vol = hal.motor.position(), p.patient_ul
    sim.advance(H + 61000)
    assert hal.motor.position() == steps
    assert p.patient_ul - vol == pytest.approx(2000.0, rel=1e-6)   # 2 mL/min by gravity
    hal.clamp(True)
    vol = p.patient_ul
    sim.advance(H + 121000)
    assert p.patient_ul == vol


def test_reservoir_running_empty_stops_delivery_and_trips_air() -> None:
    sim, signals = _sim()
    p = sim.plant
    p.change_bag(sim.now, 0.5, p.conc_ug_per_ml)      # 500 uL left at 10 mL/h: 3 min
    vol = p.patient_ul
    sim.advance(H + 600000)
    assert p.patient_ul - vol == pytest.approx(500.0, rel=1e-6)
    assert p.bag_ul == 0.0 and sim.hal.air_detected() and EV_AIR in signals


def test_door_open_opens_the_switch_and_closes_after_the_duration() -> None:
    _covers("door_open")
    sim, signals = _sim('kind = "door_open"\nduration_s = 120')
    assert not sim.hal.door_closed() and sim.plant.engaged and EV_DOOR in signals
    sim.advance(H + 121000)
    assert sim.hal.door_closed() and signals.count(EV_DOOR) == 2


def test_power_loss_rebuilds_the_controller_from_the_journal() -> None:
    _covers("power_loss")
    sim, _ = _sim(open_loop=False)
    sim.advance(H - 1)
    old, counted, p = sim.controller, sim.counted_nl(), sim.plant
    sc = sim.sc
    sc.faults.append(scenario.FaultSpec(at_h=1.0, kind="power_loss",
                                        params={"duration_s": 600.0, "ticks_reset": True}))
    sim._apply_fault(0)
    assert sim.controller is None and p.speed == 0.0
    vol = p.patient_ul
    sim.advance(H + 599000)
    assert p.patient_ul == vol                     # no power, no delivery
    sim.advance(H + 600000)
    new = sim.controller
    assert new is not None and new is not old
    rec = sim.reboots[0]
    assert rec["state_after_boot"] == "PAUSED"
    assert rec["counted_after_ml"] * 1e6 >= counted    # never counts less (SR-9)
    assert new.state == "RUNNING"                      # resumed by the clinician
    assert sim.hal.ticks_ms() == 0                     # the MCU rebooted
    sim.advance(2 * H)
    assert p.patient_ul > vol + 5000


def test_battery_drain_lowers_the_voltage_and_crosses_the_threshold() -> None:
    _covers("battery_drain")
    sim, signals = _sim('kind = "battery_drain"\nmv_per_h = 1200')
    hal = sim.hal
    assert hal.battery_mv() == 4100
    sim.advance(H + 1800000)
    assert hal.battery_mv() == 3500
    assert EV_BATTERY in signals


def test_rotation_arm_signals_the_controller_in_the_loop() -> None:
    sim, signals = _sim(open_loop=False)
    rot = sim.hal.rotation
    target = rot.count() + 3
    rot.arm(target)
    sim.advance(H + 60000)
    assert EV_ROTATION in signals and rot.count() >= target


PATIENT = """
name = "operator"
[patient]
weight_kg = 70.0
height_cm = 175.0
[prescription]
dose_ug_per_day = 28.0
bag_hours = 24
cycle = 2
[run]
hours = 30.0
seed = 4
"""


def _operator(faults: str) -> dict[str, Any]:
    return runner.run_scenario(scenario.loads(PATIENT + faults), storage="memory")


def test_overdose_reported_stops_and_locks_out_for_12_h() -> None:
    _covers("overdose_reported")
    res = _operator('[[faults]]\nat_h = 1.0\nkind = "overdose_reported"\nreason = "wrong_bag"\n')
    assert res["final_state"] == "LOCKOUT"
    assert 9.9 <= res["delivered_ml"] <= 10.1             # stopped at 1 h of 10 mL/h


def test_restart_programs_the_bag_again_and_is_refused_in_the_lockout() -> None:
    _covers("restart")
    res = _operator('[[faults]]\nat_h = 1.0\nkind = "overdose_reported"\n'
                    '[[faults]]\nat_h = 13.0\nkind = "restart"\npremedicated = true\n')
    assert res["reject_code"] is None and res["final_state"] == "RUNNING"   # 12 h are over
    res = _operator('[[faults]]\nat_h = 1.0\nkind = "overdose_reported"\n'
                    '[[faults]]\nat_h = 13.0\nkind = "restart"\n')
    assert res["reject_code"] == "PREMEDICATION_REQUIRED"   # 12 h off the drug: premedicate
    res = _operator('[[faults]]\nat_h = 1.0\nkind = "overdose_reported"\n'
                    '[[faults]]\nat_h = 12.9\nkind = "restart"\n')
    assert res["reject_code"] == "LOCKOUT_ACTIVE" and res["final_state"] == "LOCKOUT"


def test_pause_resumes_after_its_duration_unless_refused() -> None:
    _covers("pause")
    res = _operator('[[faults]]\nat_h = 1.0\nkind = "pause"\nduration_s = 3600.0\n')
    assert res["reject_code"] is None and res["final_state"] == "COMPLETE"
    res = _operator('[[faults]]\nat_h = 1.0\nkind = "pause"\nduration_s = 14400.0\n')
    assert res["reject_code"] == "PREMEDICATION_REQUIRED" and res["final_state"] == "PAUSED"


def test_every_fault_kind_has_a_physical_test() -> None:
    tested = set(re.findall(r'_covers\("(\w+)"\)', open(__file__).read()))
    assert tested == set(FAULTS), sorted(set(FAULTS) ^ tested)
