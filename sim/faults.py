"""Fault injection: a registry of named faults, each applied to the plant (physical faults)
or, for controller faults, to the firmware through its narrow test hook.

A fault is `fn(sim, params)`: `sim` is the runner's Sim (it has .plant, .hal, .engine, .now,
.controller, power_loss(), set_rate_error(), later()). `FAULTS[name].params` lists the
parameters with their type and default, which the scenario loader validates against; an
unknown name is an invalid scenario. `duration_s` = 0 means "for the rest of the run".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Params = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    fn: Callable[[Any, Params], None]
    params: dict[str, tuple[type, Any]] = field(default_factory=dict)
    doc: str = ""
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)   # of a str parameter


def _until(sim: Any, p: Params, undo: Callable[[], None]) -> None:
    d = p.get("duration_s", 0)
    if d and d > 0:
        sim.later(int(round(d * 1000)), undo)


def motor_runaway(sim: Any, p: Params) -> None:
    sim.plant.set_speed_factor(sim.now, runaway=p["factor"])


def rate_drift(sim: Any, p: Params) -> None:
    sim.plant.set_speed_factor(sim.now, drift=p["factor"])


def controller_rate_error(sim: Any, p: Params) -> None:
    sim.set_rate_error(p["factor"])


def rotation_sensor_dropout(sim: Any, p: Params) -> None:
    sim.plant.set_dropout(sim.now, p["fraction"])
    _until(sim, p, lambda: sim.plant.set_dropout(sim.now, 0.0))


def rotation_sensor_stuck(sim: Any, p: Params) -> None:
    sim.plant.set_stuck(sim.now, True)
    _until(sim, p, lambda: sim.plant.set_stuck(sim.now, False))


def occlusion(sim: Any, p: Params) -> None:
    sim.plant.set_occluded(sim.now, True)
    _until(sim, p, lambda: sim.plant.set_occluded(sim.now, False))


def occlusion_release(sim: Any, p: Params) -> None:
    sim.plant.set_occluded(sim.now, False)


def air_in_line(sim: Any, p: Params) -> None:
    sim.plant.set_air(True)
    _until(sim, p, lambda: sim.plant.set_air(False))


def free_flow(sim: Any, p: Params) -> None:
    sim.plant.set_cassette(sim.now, False, clamp_open=p["clamp_open"])
    _until(sim, p, lambda: sim.plant.set_cassette(sim.now, True))


def door_open(sim: Any, p: Params) -> None:
    sim.plant.set_door(sim.now, False)
    _until(sim, p, lambda: sim.plant.set_door(sim.now, True))


def power_loss(sim: Any, p: Params) -> None:
    sim.power_loss(int(round(p["duration_s"] * 1000)), p["ticks_reset"])


def overdose_reported(sim: Any, p: Params) -> None:
    sim.operator("OVERDOSE", {"reason": p["reason"]})


def restart(sim: Any, p: Params) -> None:
    sim.restart(p["premedicated"])


def pause(sim: Any, p: Params) -> None:
    sim.operator("PAUSE", {})
    sim.later(int(round(p["duration_s"] * 1000)), lambda: sim.operator("RESUME", {}))


def battery_drain(sim: Any, p: Params) -> None:
    sim.plant.set_battery_drain(sim.now, p["mv_per_h"])


_DUR = {"duration_s": (float, 0.0)}

FAULTS: dict[str, Fault] = {
    "motor_runaway": Fault(motor_runaway, {"factor": (float, 10.0)},
                           "the camshaft turns factor x the commanded speed; the driver's "
                           "step count does not know"),
    "rate_drift": Fault(rate_drift, {"factor": (float, 1.1)},
                        "camshaft speed drifts by factor (gearing, clock)"),
    "controller_rate_error": Fault(controller_rate_error, {"factor": (float, 2.0)},
                                   "the firmware's scheduler computes factor x its rate "
                                   "(Delivery.fault_num/fault_den; survives reboots)"),
    "rotation_sensor_dropout": Fault(rotation_sensor_dropout,
                                     {"fraction": (float, 1.0), **_DUR},
                                     "that fraction of rotation pulses is lost"),
    "rotation_sensor_stuck": Fault(rotation_sensor_stuck, dict(_DUR),
                                   "the rotation count reads frozen (true count after)"),
    "occlusion": Fault(occlusion, dict(_DUR),
                       "downstream closed: volume goes into the line's compliance; "
                       "released (bolus) after duration_s when given"),
    "occlusion_release": Fault(occlusion_release, {},
                               "downstream opens: the stored volume reaches the patient"),
    "air_in_line": Fault(air_in_line, dict(_DUR), "the air detector trips"),
    "free_flow": Fault(free_flow, {"clamp_open": (bool, True), **_DUR},
                       "cassette pulled out (door switch opens) with its own clamp open: "
                       "gravity flow unless the pump's pinch clamp is closed"),
    "door_open": Fault(door_open, dict(_DUR), "door opened, cassette still in place"),
    "power_loss": Fault(power_loss, {"duration_s": (float, 60.0), "ticks_reset": (bool, True)},
                        "power cut: the controller is discarded; a new one boots from the "
                        "journal after duration_s"),
    # operator actions (issue 11): what a clinician or the patient does, through the door
    "overdose_reported": Fault(overdose_reported, {"reason": (str, "preparation_error")},
                               "a clinician reports an overdose found outside the pump "
                               "(OVERDOSE): the 12 h lockout starts",
                               {"reason": ("wrong_bag", "preparation_error",
                                           "programming_error", "other")}),
    "restart": Fault(restart, {"premedicated": (bool, False)},
                     "a clinician programs the current bag again and starts it (after a "
                     "lockout, an interruption), confirming premedication first when "
                     "premedicated; a refusal is the run's reject_code"),
    "pause": Fault(pause, {"duration_s": (float, 600.0)},
                   "the patient pauses, and resumes after duration_s; a refused resume is the "
                   "run's reject_code"),
    "battery_drain": Fault(battery_drain, {"mv_per_h": (float, 100.0)},
                           "the battery drains at mv_per_h from now"),
}
