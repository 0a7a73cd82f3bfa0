"""The simulator's plant: the physics of plant/physics.py (the one plant model, shared with
the virtual boards and the firmware tests) with the simulator's randomness and its engine.

`PlantConfig` is the [plant] table of a scenario: the physical parameters (defaults: the
reference pump, plant.physics.Config) and the spreads the seed draws from. `Plant` draws the
cassette, its stroke noise, its calibration and the rotation slots from the seed (same seed,
same numbers, in the same order), and schedules the physics' next crossing as one engine
event (PRIO_PLANT), recomputed whenever the motion changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from heapq import heappush

from plant import physics
from sim.engine import PRIO_PLANT, Engine, Entry

_NOISE_TABLE = 8192          # strokes in the stroke-noise table (it repeats after that)
_NOMINAL = physics.Config


@dataclass
class PlantConfig:
    """Physical parameters ([plant] in a scenario). Defaults: the reference pump."""

    stroke_ul: float = _NOMINAL.stroke_ul
    steps_per_stroke: int = _NOMINAL.steps_per_stroke
    pulses_per_rev: int = _NOMINAL.pulses_per_rev
    cassette_sd: float = 0.01               # cassette-to-cassette factor ~ N(1, sd)
    calibration_sd: float = 0.002           # error of the per-cassette stroke calibration
    calibrated: bool = True                 # the firmware gets the cassette's measured stroke
    stroke_noise: float = 0.03              # stroke-to-stroke, uniform ±
    backpressure_per_mmhg: float = _NOMINAL.backpressure_per_mmhg
    compliance_ul_per_mmhg: float = _NOMINAL.compliance_ul_per_mmhg
    venous_mmhg: float = _NOMINAL.venous_mmhg
    stall_mmhg: float = _NOMINAL.stall_mmhg
    stall_reports_fault: bool = _NOMINAL.stall_reports_fault
    pressure_threshold_mmhg: float = _NOMINAL.pressure_threshold_mmhg
    free_flow_ml_per_min: float = _NOMINAL.free_flow_ml_per_min
    rotation_jitter_steps: float = 2.0      # per-slot position error, uniform ±
    battery_mv: float = _NOMINAL.battery_mv
    battery_low_mv: float = _NOMINAL.battery_low_mv
    battery_drain_mv_per_h: float = _NOMINAL.battery_drain_mv_per_h
    bag_fill_ml: float = _NOMINAL.bag_fill_ml     # first bag (the runner sets each bag)
    concentration_ug_per_ml: float = _NOMINAL.concentration_ug_per_ml

    @classmethod
    def names(cls) -> dict[str, type]:
        return {f.name: type(f.default) for f in fields(cls)}

    def ideal(self) -> None:
        """No variation at all: the nominal plant."""
        self.cassette_sd = 0.0
        self.calibration_sd = 0.0
        self.stroke_noise = 0.0
        self.rotation_jitter_steps = 0.0
        self.backpressure_per_mmhg = 0.0


class Plant(physics.Plant):
    def __init__(self, engine: Engine, cfg: PlantConfig | None = None, seed: int = 0) -> None:
        self.engine = engine
        cfg = cfg if cfg is not None else PlantConfig()
        rng = random.Random(seed)
        factor = 1.0 + (rng.gauss(0.0, cfg.cassette_sd) if cfg.cassette_sd else 0.0)
        n = cfg.stroke_noise
        noise = [1.0 + rng.uniform(-n, n) for _ in range(_NOISE_TABLE)] if n \
            else [1.0] * _NOISE_TABLE
        # Per-cassette calibration (docs/reliability.md): the stroke volume measured when the
        # cassette is fitted, with the measurement's own error; drawn after the noise table so
        # seeds keep their cassettes and noise.
        err = rng.gauss(0.0, cfg.calibration_sd) if cfg.calibration_sd else 0.0
        measured_ul = cfg.stroke_ul * (factor if cfg.calibrated else 1.0)
        measured_ul *= 1.0 + (err if cfg.calibrated else 0.0)
        # the firmware takes whole nL in multiples of 8 (2 x pulses a stroke)
        self.calibrated_stroke_nl = 8 * int(round(measured_ul * 1000.0 / 8.0))
        j = min(cfg.rotation_jitter_steps, cfg.steps_per_stroke / cfg.pulses_per_rev * 0.45)
        offsets = [rng.uniform(-j, j) if j else 0.0 for _ in range(cfg.pulses_per_rev)]
        self._entry: Entry | None = None
        self.shortcuts = True           # _on_due/_schedule's fast paths (off: the plain ones)
        self.in_crossing = False        # inside crossing() (its signals' wakes wait for it)
        self.after_crossing: Callable[[], None] | None = None   # the HAL's hook, then
        super().__init__(cfg, noise, factor, offsets)
        self.cfg: PlantConfig = cfg
        self.on_schedule = self._schedule_at

    def arm(self, count: int) -> None:
        """The rotation compare, now (plant.physics.Plant.arm_compare)."""
        self.arm_compare(self.engine.now, count)

    def _schedule(self, t: int, best: float | None) -> None:
        """physics.Plant._schedule with the hand-over (on_schedule, Engine.schedule) inlined:
        every rotation compare the firmware arms comes through here."""
        if not self.shortcuts:
            physics.Plant._schedule(self, t, best)
            return
        at_ms = physics.due_ms(t, best)
        if at_ms is None:
            if self.due is not None:
                self.due = None
                self._schedule_at(None)
            return
        if at_ms != self.due:
            self.due = at_ms
            e = self._entry
            if e is not None:
                e[3] = None
            eng = self.engine
            entry = [at_ms if at_ms > eng.now else eng.now, PRIO_PLANT, next(eng._seq),
                     self._on_due]
            heappush(eng._heap, entry)
            self._entry = entry

    def _schedule_at(self, at_ms: int | None) -> None:
        e = self._entry
        if e is not None:
            e[3] = None                 # Engine.cancel, inlined (a crossing a wake)
        if at_ms is None:
            self._entry = None
            return
        self._entry = self.engine.schedule(at_ms, PRIO_PLANT, self._on_due)

    def _on_due(self) -> None:
        """The crossing (physics.Plant.crossing), with its look-ahead after the wake its
        signal raised when the HAL serves that wake at once: the firmware re-arms the
        rotation compare there (which looks ahead from the same ms), so one look-ahead
        serves both. Every mutator that can move a crossing looks ahead itself, so the
        schedule is the one crossing() would leave."""
        self._entry = None
        t = self.engine.now
        if not self.shortcuts:
            self.crossing(t)
            return
        self.in_crossing = True
        try:
            self.cross(t)
        finally:
            self.in_crossing = False
        n = self.watches
        if self.after_crossing is not None:
            self.after_crossing()
        if self.watches == n:
            self.watch(t)
