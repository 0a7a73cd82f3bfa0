"""The plant: the physical pump, cassette, bag and patient line — the truth the firmware is
judged against. CPython only; floats are fine here.

Motion is continuous and integrated lazily: a move sets the camshaft turning at a constant
speed from a start time to an end time, and any query computes the position at that instant
from the move's start (no per-step events). Volume is a function of camshaft position through
a per-stroke table (cassette factor × stroke-to-stroke noise, cumulated, so a query is O(1)),
scaled by a back-pressure factor that is constant between settles. `settle(t)` moves the
books (bag, line, patient) to t; it runs whenever a condition changes, and on queries.

Crossings the firmware must hear about (rotation compare value, pressure threshold, bag
running empty, motor stall, low battery) are computed analytically from the current motion
and scheduled as one engine event (the earliest), recomputed whenever the motion changes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, fields

from pump.hal import EV_AIR, EV_BATTERY, EV_DOOR, EV_MOTOR_FAULT, EV_PRESSURE, EV_ROTATION
from sim.engine import PRIO_PLANT, Engine

_NOISE_TABLE = 8192          # strokes in the stroke-noise table (it repeats after that)
_MS_PER_H = 3600000.0


@dataclass
class PlantConfig:
    """Physical parameters ([plant] in a scenario). Defaults: the reference pump."""

    stroke_ul: float = 50.0                 # nominal volume of one camshaft revolution
    steps_per_stroke: int = 200
    pulses_per_rev: int = 4                 # rotation sensor slots
    cassette_sd: float = 0.01               # cassette-to-cassette factor ~ N(1, sd)
    calibration_sd: float = 0.002           # error of the per-cassette stroke calibration
    calibrated: bool = True                 # the firmware gets the cassette's measured stroke
    stroke_noise: float = 0.03              # stroke-to-stroke, uniform ±
    backpressure_per_mmhg: float = 0.0001   # fraction of stroke volume lost per mmHg
    compliance_ul_per_mmhg: float = 0.5     # downstream line compliance
    venous_mmhg: float = 8.0                # pressure with the line open
    stall_mmhg: float = 1500.0              # the motor stalls above this; pressure caps here
    stall_reports_fault: bool = True        # the driver reports a stall (EV_MOTOR_FAULT)
    pressure_threshold_mmhg: float = 300.0  # hardware comparator: EV_PRESSURE on crossing
    free_flow_ml_per_min: float = 2.0       # gravity flow, cassette out with its clamp open
    rotation_jitter_steps: float = 2.0      # per-slot position error, uniform ±
    battery_mv: float = 4100.0
    battery_low_mv: float = 3500.0          # comparator: EV_BATTERY on crossing down
    battery_drain_mv_per_h: float = 0.0
    bag_fill_ml: float = 270.0              # first bag (the runner sets each bag)
    concentration_ug_per_ml: float = 0.0

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


class Plant:
    def __init__(self, engine: Engine, cfg: PlantConfig | None = None, seed: int = 0) -> None:
        self.engine = engine
        self.cfg = cfg = cfg if cfg is not None else PlantConfig()
        rng = random.Random(seed)
        self.signal: Callable[[int], None] = _ignore      # set by the HAL
        self.cassette_factor = 1.0 + (rng.gauss(0.0, cfg.cassette_sd) if cfg.cassette_sd else 0.0)
        n = cfg.stroke_noise
        f = [1.0 + rng.uniform(-n, n) for _ in range(_NOISE_TABLE)] if n else [1.0] * _NOISE_TABLE
        cum = [0.0] * (_NOISE_TABLE + 1)
        acc = 0.0
        for i, v in enumerate(f):
            cum[i] = acc
            acc += v
        cum[_NOISE_TABLE] = acc
        # Per-cassette calibration (SPEC §3): the stroke volume measured when the cassette is
        # fitted, with the measurement's own error; drawn after the noise table so seeds keep
        # their cassettes and noise.
        err = rng.gauss(0.0, cfg.calibration_sd) if cfg.calibration_sd else 0.0
        measured_ul = cfg.stroke_ul * (self.cassette_factor if cfg.calibrated else 1.0)
        measured_ul *= 1.0 + (err if cfg.calibrated else 0.0)
        # the firmware takes whole nL in multiples of 8 (2 x pulses a stroke)
        self.calibrated_stroke_nl = 8 * int(round(measured_ul * 1000.0 / 8.0))
        self._f = f
        self._cum = cum
        self._cum_all = acc
        self._ul_per_stroke = cfg.stroke_ul * self.cassette_factor
        self._inv_sps = 1.0 / cfg.steps_per_stroke
        # rotation sensor: edge m sits at pitch*m + off[m % ppr]
        ppr = cfg.pulses_per_rev
        self._pitch = cfg.steps_per_stroke / ppr
        self._edges_x = math.nan      # _edges memo (nan equals nothing)
        self._edges_m = 0
        j = min(cfg.rotation_jitter_steps, self._pitch * 0.45)
        self._off = [rng.uniform(-j, j) if j else 0.0 for _ in range(ppr)]
        # --- motion: cam(t) = cam0 + speed * (min(t, t1) - t0) -----------------------------
        self.t0 = 0
        self.t1 = 0
        self.cam0 = 0.0
        self.speed = 0.0              # steps/ms, signed, after the speed factors
        self.cmd_speed = 0.0          # what the driver commands, steps/ms
        self.runaway = 1.0            # fault factors on camshaft speed
        self.drift = 1.0
        self.enabled = False          # power stage
        self.powered = True
        self.stalled = False
        # --- rotation sensor ------------------------------------------------------------------
        # true pulses = _rot_true0 + |edges(cam) - _rot_p0|: the camshaft moved one way
        # (_rot_dir) since the anchor, which moves only when the direction changes
        self._rot_true0 = 0
        self._rot_p0 = self._edges(0.0)
        self._rot_dir = 1
        self.rot_keep = 1.0           # 1 - dropout fraction
        self._rot_cnt_off = 0
        self._rot_true_off = 0
        self.rot_stuck: int | None = None
        self.armed = -1
        # --- bag, line, patient ----------------------------------------------------------------
        self.bag_ul = cfg.bag_fill_ml * 1000.0
        self.conc_ug_per_ml = cfg.concentration_ug_per_ml
        self.engaged = True           # cassette in place
        self.door = True              # door shut (switch)
        self.cassette_clamp_open = False
        self.clamp_closed = False     # the pump's downstream pinch clamp
        self.occluded = False
        self.stored_ul = 0.0          # volume held in the line's compliance
        self.air = False
        self.patient_ul = 0.0         # TRUE volume that entered the patient
        self.dose_ug = 0.0
        self.bolus_ul = 0.0
        self.boluses: list[tuple[int, float]] = []   # (t_ms, µL)
        self.pumped_ul = 0.0          # everything the cassette moved (incl. into the line)
        self.ts = 0                   # time of the last settle
        self._cam_s = 0.0             # camshaft position at ts, and the volume function there
        self._v_s = 0.0
        self._bpf = 1.0
        self.battery_mv0 = cfg.battery_mv
        self.battery_t0 = 0
        self.battery_rate = cfg.battery_drain_mv_per_h
        self._pressure_high = False
        self._battery_low = False
        self._watch_entry: list | None = None
        self._simple = True           # engaged, line open, nothing armed, no drain: fast paths
        self._update_simple()

    # --- geometry -----------------------------------------------------------------------------
    def cam(self, t: int) -> float:
        """True camshaft position (steps) at t."""
        if t > self.t1:
            t = self.t1
        if t < self.t0:
            t = self.t0
        return self.cam0 + self.speed * (t - self.t0)

    def _vol(self, cam: float) -> float:
        """Volume (µL) the cassette moves from camshaft position 0 to cam."""
        x = cam * self._inv_sps
        k = math.floor(x)
        q, r = divmod(k, _NOISE_TABLE)
        return self._ul_per_stroke * (q * self._cum[_NOISE_TABLE] + self._cum[r]
                                      + (x - k) * self._f[r])

    def _edge(self, m: int) -> float:
        return self._pitch * m + self._off[m % self.cfg.pulses_per_rev]

    def _edges(self, x: float) -> int:
        """Number of rotation-sensor edges at or below position x (an index, can be < 0)."""
        if x == self._edges_x:          # a pure function of x: the last answer, again
            return self._edges_m
        pitch = self._pitch
        off = self._off
        n = len(off)
        m = math.floor(x / pitch + 0.5)
        if pitch * m + off[m % n] > x:
            m -= 1
        elif pitch * (m + 1) + off[(m + 1) % n] <= x:
            m += 1
        self._edges_x = x
        self._edges_m = m + 1
        return m + 1

    # --- the books --------------------------------------------------------------------------
    def line_blocked(self) -> bool:
        return self.occluded or self.clamp_closed

    def free_flowing(self) -> bool:
        return (not self.engaged and self.cassette_clamp_open and not self.line_blocked()
                and self.bag_ul > 0.0)

    def settle(self, t: int) -> None:
        """Move the books to t (t never goes backwards)."""
        ts = self.ts
        if t <= ts:
            return
        self.ts = t
        speed = self.speed
        t1 = self.t1
        if speed != 0.0 and ts < t1:
            a = self._cam_s
            b = self.cam0 + speed * ((t if t < t1 else t1) - self.t0)
            # self._vol(b), inlined: the hot path of every wake
            x = b * self._inv_sps
            k = math.floor(x)
            q, r = divmod(k, _NOISE_TABLE)
            vb = self._ul_per_stroke * (q * self._cum_all + self._cum[r] + (x - k) * self._f[r])
            dv = (vb - self._v_s) * self._bpf
            self._cam_s = b
            self._v_s = vb
            if self._simple:
                if 0.0 < dv <= self.bag_ul:
                    self.bag_ul -= dv
                    self.pumped_ul += dv
                    self.patient_ul += dv
                    self.dose_ug += dv * self.conc_ug_per_ml * 0.001
                elif dv != 0.0:
                    self._route(dv, t, a, b)
            elif dv != 0.0 and self.engaged:
                self._route(dv, t, a, b)
        if self._simple:
            return
        if not self.engaged and self.cassette_clamp_open and not self.line_blocked():
            ff = self.cfg.free_flow_ml_per_min * (t - ts) / 60.0
            if ff > self.bag_ul:
                ff = self.bag_ul
            self.bag_ul -= ff
            self._to_patient(ff)

    def _route(self, dv: float, t: int, a: float, b: float) -> None:
        if dv > 0.0:
            if self.bag_ul <= 0.0:
                return                          # pumping air: nothing reaches the line
            if dv > self.bag_ul:
                dv = self.bag_ul
            self.bag_ul -= dv
            self.pumped_ul += dv
            if self.line_blocked():
                room = self._room()
                if dv >= room:
                    # the motor stalls where the line is full: freeze the camshaft there
                    frac = room / dv if dv > 0.0 else 0.0
                    self.stored_ul += room
                    self._stall(t, a + (b - a) * frac)
                else:
                    self.stored_ul += dv
                self._update_bpf()
            else:
                self._to_patient(dv)
        else:
            back = -dv
            self.bag_ul += back
            self.pumped_ul -= back
            if self.stored_ul >= back:
                self.stored_ul -= back
            else:
                self._to_patient(-(back - self.stored_ul))
                self.stored_ul = 0.0
            self._update_bpf()

    def _to_patient(self, v: float) -> None:
        self.patient_ul += v
        self.dose_ug += v * self.conc_ug_per_ml * 0.001

    def _room(self) -> float:
        c = self.cfg
        return max(0.0, (c.stall_mmhg - c.venous_mmhg) * c.compliance_ul_per_mmhg
                   - self.stored_ul)

    def _stall(self, t: int, cam: float) -> None:
        self._cam_s = cam
        self._v_s = self._vol(cam)
        self.cam0 = cam
        self.t0 = t
        self.speed = 0.0
        if not self.stalled:
            self.stalled = True
            if self.cfg.stall_reports_fault:
                self.signal(EV_MOTOR_FAULT)

    def _update_bpf(self) -> None:
        k = self.cfg.backpressure_per_mmhg
        self._bpf = 1.0 - k * (self.pressure() - self.cfg.venous_mmhg) if k else 1.0

    def pressure(self) -> float:
        c = self.cfg
        if self.stored_ul <= 0.0:
            return c.venous_mmhg
        return min(c.stall_mmhg, c.venous_mmhg + self.stored_ul / c.compliance_ul_per_mmhg)

    def pressure_at(self, t: int) -> float:
        self.settle(t)
        return self.pressure()

    def delivered_ul(self, t: int) -> float:
        self.settle(t)
        return self.patient_ul

    # --- motion -----------------------------------------------------------------------------
    def set_motion(self, t: int, steps: int, ms: int) -> None:
        """The driver starts `steps` over `ms` from t (0 steps: stop)."""
        self.settle(t)
        self.cam0 = self._cam_s       # == cam(t) after the settle
        self.t0 = t
        self.cmd_speed = steps / ms if (steps and ms > 0) else 0.0
        self.t1 = t + ms if steps else t
        self.stalled = False
        self._apply_speed()
        if self._simple and self._watch_entry is None and self.armed < 0:
            # the only crossing possible: the bag running empty during this move
            if self.speed > 0.0 and self.speed * ms * self._inv_sps * self._ul_per_stroke \
                    * 1.1 < self.bag_ul:
                return
        self.watch()

    def _update_simple(self) -> None:
        self._simple = (self.engaged and not self.occluded and not self.clamp_closed
                        and self.battery_rate == 0.0)

    def set_enabled(self, t: int, on: bool) -> None:
        self.settle(t)
        self._rebase(t)
        self.enabled = on
        self._apply_speed()
        self.watch()

    def set_speed_factor(self, t: int, runaway: float | None = None,
                         drift: float | None = None) -> None:
        self.settle(t)
        self._rebase(t)
        if runaway is not None:
            self.runaway = runaway
        if drift is not None:
            self.drift = drift
        self._apply_speed()
        self.watch()

    def _rebase(self, t: int) -> None:
        self.cam0 = self.cam(t)
        self.t0 = t

    def _apply_speed(self) -> None:
        if self.enabled and self.powered and not self.stalled and self.t1 > self.t0:
            v = self.cmd_speed * self.runaway * self.drift
            d = 1 if v > 0.0 else -1
            if v != 0.0 and d != self._rot_dir:
                # reversal: a single-channel sensor counts edges either way
                p = self._edges(self.cam0)
                self._rot_true0 += abs(p - self._rot_p0)
                self._rot_p0 = p
                self._rot_dir = d
            self.speed = v
        else:
            self.speed = 0.0

    # --- rotation sensor ----------------------------------------------------------------------
    def true_pulses(self, t: int) -> int:
        # self.cam(t), inlined (hot path: every compare wake)
        t0 = self.t0
        if t > self.t1:
            t = self.t1
        if t < t0:
            t = t0
        x = self.cam0 + self.speed * (t - t0)
        if x == self._edges_x:
            return self._rot_true0 + abs(self._edges_m - self._rot_p0)
        return self._rot_true0 + abs(self._edges(x) - self._rot_p0)

    def rotation_count(self, t: int) -> int:
        if self.rot_stuck is not None:
            return self.rot_stuck
        true = self.true_pulses(t)
        if self.rot_keep == 1.0 and self._rot_cnt_off == 0:
            return true
        return self._rot_cnt_off + int((true - self._rot_true_off) * self.rot_keep)

    def set_dropout(self, t: int, fraction: float) -> None:
        self._rot_cnt_off = self.rotation_count(t)
        self._rot_true_off = self.true_pulses(t)
        self.rot_keep = 1.0 - fraction
        self.watch()

    def set_stuck(self, t: int, on: bool) -> None:
        self.rot_stuck = self.rotation_count(t) if on else None
        self.watch()

    def arm(self, count: int) -> None:
        self.armed = count
        if count >= 0 and self.rot_stuck is None and \
                self.rotation_count(self.engine.now) >= count:
            self.armed = -1             # already there: the compare fires at once
            self.signal(EV_ROTATION)
        self.watch()

    def _rotation_due(self, t: int) -> float | None:
        """When the sensor count reaches self.armed (ms, float), or None."""
        target = self.armed
        if self.rot_stuck is not None or self.rot_keep <= 0.0:
            return None
        if self.speed == 0.0 or t >= self.t1:
            return None
        need_true = self._rot_true_off + math.ceil((target - self._rot_cnt_off) / self.rot_keep)
        k = need_true - self._rot_true0            # edges to cross from the motion start
        if self.speed > 0.0:
            pos = self._edge(self._rot_p0 + k - 1)
        else:
            pos = self._edge(self._rot_p0 - k) - 1e-6
        at = self.t0 + (pos - self.cam0) / self.speed
        return at if at <= self.t1 else None

    # --- crossings ------------------------------------------------------------------------------
    def watch(self) -> None:
        """(Re)schedule the earliest crossing of the current motion as one engine event."""
        t = self.engine.now
        best: float | None = None
        if self.armed >= 0:
            best = self._rotation_due(t)
        if self._simple:
            # engaged, line open, no drain: only the bag running empty can add a crossing
            if self.speed > 0.0 and t < self.t1:
                ul_per_ms = self.speed * self._inv_sps * self._ul_per_stroke * 1.1
                if ul_per_ms * (self.t1 - t) > self.bag_ul > 0.0:
                    at = t + self.bag_ul / ul_per_ms
                    if best is None or at < best:
                        best = at
            self._schedule_watch(t, best)
            return
        moving = self.speed != 0.0 and t < self.t1
        if moving and self.engaged and self.speed > 0.0:
            ul_per_ms = self.speed * self._inv_sps * self._ul_per_stroke * 1.1
            if self.line_blocked():
                # a conservative early estimate; the event settles and re-watches
                room = self._room()
                if room > 0.0:
                    at = t + room / ul_per_ms
                    if at <= self.t1 and (best is None or at < best):
                        best = at
            span = self.t1 - t
            if self.bag_ul > 0.0 and ul_per_ms * span > self.bag_ul:
                at = t + self.bag_ul / ul_per_ms
                if best is None or at < best:
                    best = at
        if moving and self.engaged and self.line_blocked():
            # pressure comparator, either direction (a reverse move relieves the line)
            ul_per_ms = abs(self.speed) * self._inv_sps * self._ul_per_stroke * 1.1
            thr = (self.cfg.pressure_threshold_mmhg - self.cfg.venous_mmhg) \
                * self.cfg.compliance_ul_per_mmhg - self.stored_ul
            if (thr > 0.0) == (self.speed > 0.0) and thr != 0.0:
                at = t + abs(thr) / ul_per_ms
                if at <= self.t1 and (best is None or at < best):
                    best = at
        if self.free_flowing():
            at = t + self.bag_ul / (self.cfg.free_flow_ml_per_min / 60.0)
            if best is None or at < best:
                best = at
        if self.battery_rate > 0.0 and not self._battery_low:
            at = self.battery_t0 + (self.battery_mv0 - self.cfg.battery_low_mv) \
                / self.battery_rate * _MS_PER_H
            if best is None or at < best:
                best = at
        self._schedule_watch(t, best)

    def _schedule_watch(self, t: int, best: float | None) -> None:
        old = self._watch_entry
        if best is None:
            if old is not None:
                old[3] = None
                self._watch_entry = None
            return
        at_ms = max(t + 1, math.ceil(best))
        if old is not None:
            if old[3] is not None and old[0] == at_ms:
                return
            old[3] = None
        self._watch_entry = self.engine.schedule(at_ms, PRIO_PLANT, self._on_watch)

    def _on_watch(self) -> None:
        self._watch_entry = None
        t = self.engine.now
        self.settle(t)
        self.check(t)
        self.watch()

    def check(self, t: int) -> None:
        """Raise the signals whose conditions now hold (each once per crossing)."""
        if self.armed >= 0 and self.rot_stuck is None and self.rotation_count(t) >= self.armed:
            self.armed = -1
            self.signal(EV_ROTATION)
        high = self.pressure() >= self.cfg.pressure_threshold_mmhg
        if high != self._pressure_high:
            self._pressure_high = high
            self.signal(EV_PRESSURE)
        if self.bag_ul <= 0.0 and not self.air:
            self.bag_ul = 0.0
            self.set_air(True)      # the reservoir ran empty: air follows into the line
        if self.battery_rate > 0.0 and not self._battery_low and self.battery(t) <= \
                self.cfg.battery_low_mv:
            self._battery_low = True
            self.signal(EV_BATTERY)

    # --- other physical inputs --------------------------------------------------------------
    def set_air(self, on: bool) -> None:
        if on != self.air:
            self.air = on
            if on:
                self.signal(EV_AIR)

    def set_occluded(self, t: int, on: bool) -> None:
        self.settle(t)
        self._rebase(t)
        was = self.line_blocked()
        self.occluded = on
        self._update_simple()
        self._after_line_change(t, was)

    def set_clamp(self, t: int, closed: bool) -> None:
        self.settle(t)
        self._rebase(t)
        was = self.line_blocked()
        self.clamp_closed = closed
        self._update_simple()
        self._after_line_change(t, was)

    def _after_line_change(self, t: int, was_blocked: bool) -> None:
        if was_blocked and not self.line_blocked():
            if self.stored_ul > 0.0:
                b = self.stored_ul
                self.stored_ul = 0.0
                self._to_patient(b)
                self.bolus_ul += b
                self.boluses.append((t, b))
            if self.stalled:
                self.stalled = False
                self._apply_speed()
            self._update_bpf()
        self.check(t)
        self.watch()

    def set_cassette(self, t: int, engaged: bool, clamp_open: bool = False) -> None:
        """Cassette in (engaged) or pulled out, with its own roller clamp open or closed."""
        self.settle(t)
        self._rebase(t)
        changed = engaged != self.engaged
        self.engaged = engaged
        self.cassette_clamp_open = clamp_open
        self._update_simple()
        self.watch()
        if changed:
            self.signal(EV_DOOR)

    def set_door(self, t: int, closed: bool) -> None:
        self.settle(t)
        if closed != self.door:
            self.door = closed
            self.signal(EV_DOOR)

    def set_power(self, t: int, on: bool) -> None:
        self.settle(t)
        self._rebase(t)
        self.powered = on
        if not on:
            self.t1 = t                 # the driver stops with the power
            self.armed = -1
            self._update_simple()
        self._apply_speed()
        self.watch()

    def battery(self, t: int) -> float:
        return self.battery_mv0 - self.battery_rate * (t - self.battery_t0) / _MS_PER_H

    def set_battery_drain(self, t: int, mv_per_h: float) -> None:
        self.battery_mv0 = self.battery(t)
        self.battery_t0 = t
        self.battery_rate = mv_per_h
        self._update_simple()
        self.watch()

    def change_bag(self, t: int, fill_ml: float, conc_ug_per_ml: float) -> None:
        self.settle(t)
        self.bag_ul = fill_ml * 1000.0
        self.conc_ug_per_ml = conc_ug_per_ml
        self.air = False
        self.watch()


def _ignore(flag: int) -> None:
    pass
