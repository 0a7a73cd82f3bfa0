"""The physics of the pump, cassette, bag and patient line, and the stepper driver: the truth
the firmware is judged against. Runs unchanged on CPython and on MicroPython; both have IEEE
double floats, so the same calls give the same numbers, bit for bit.

Time is passed in: whatever depends on it takes `t`, integer ms on one unwrapped clock that
never goes backwards (the Driver and the Counter read a `clock()` callable giving that ms).
There is no engine and no randomness here: the stroke-noise table, the cassette factor and
the rotation-slot offsets are constructor inputs (left out: the nominal plant).

Motion is continuous and integrated lazily: a move sets the camshaft turning at a constant
speed from a start time to an end time, and any query computes the position at that instant
from the move's start. Volume is a function of camshaft position through a per-stroke table
(cassette factor x stroke noise, cumulated, so a query is O(1)), scaled by a back-pressure
factor that is constant between settles. `settle(t)` moves the books (bag, line, patient) to
t; it runs whenever a condition changes, and on queries.

Crossings the firmware must hear about (the rotation compare value, the pressure
comparator, the bag running empty, a motor stall, low battery) are computed analytically from
the current motion. Two hooks, set by the owner:

    plant.signal(flag)          an interrupt line rises (flag: pump.hal EV_*)
    plant.on_schedule(at_ms)    the earliest crossing is now due at at_ms (int ms), or None;
                                the owner calls plant.crossing(at_ms) then (`plant.due` is
                                the same value)
"""
import math

from pump.hal import EV_AIR, EV_BATTERY, EV_DOOR, EV_MOTOR_FAULT, EV_PRESSURE, EV_ROTATION

_MS_PER_H = 3600000.0
_NEVER_MS = 1e15             # a crossing further off than this (~31,000 years) never comes


def due_ms(t, best):
    """The whole ms (after t) of a crossing expected at `best` ms; None for none: no
    crossing, or one infinite or absurdly far off (a drain of 1e-300 mV/h)."""
    if best is None or not best < _NEVER_MS:
        return None
    at_ms = math.ceil(best)
    return at_ms if at_ms > t else t + 1


class Config:
    """Physical parameters of the reference pump. An instance may override any of them."""

    stroke_ul = 50.0                 # nominal volume of one camshaft revolution
    steps_per_stroke = 200
    pulses_per_rev = 4               # rotation sensor slots
    backpressure_per_mmhg = 0.0001   # fraction of stroke volume lost per mmHg
    compliance_ul_per_mmhg = 0.5     # downstream line compliance
    venous_mmhg = 8.0                # pressure with the line open
    stall_mmhg = 1500.0              # the motor stalls above this; pressure caps here
    stall_reports_fault = True       # the driver reports a stall (EV_MOTOR_FAULT)
    pressure_threshold_mmhg = 300.0  # hardware comparator: EV_PRESSURE on crossing
    free_flow_ml_per_min = 2.0       # gravity flow, cassette out with its clamp open
    battery_mv = 4100.0
    battery_low_mv = 3500.0          # comparator: EV_BATTERY on crossing down
    battery_drain_mv_per_h = 0.0
    bag_fill_ml = 270.0              # the first bag
    concentration_ug_per_ml = 0.0


class Plant:
    """Pump, cassette, rotation sensor, bag, line and patient, on explicit time.

    noise: per-stroke volume factors (the table repeats after its length); cassette_factor:
    this cassette's stroke volume over nominal; offsets: per-slot position error of the
    rotation sensor's edges (steps, pulses_per_rev values)."""

    # Slots: attribute reads are the plant's hot path on CPython (a plain attribute
    # elsewhere); every attribute set in __init__ is listed here.
    __slots__ = (
        "_bag_speed", "_bag_ul_per_ms", "_battery_low", "_bpf", "_cam_s", "_cum", "_cum_all",
        "_edges_m", "_edges_x", "_f", "_inv_sps", "_n", "_off", "_pitch", "_ppr",
        "_pressure_high", "_rot_cnt_off", "_rot_dir", "_rot_p0", "_rot_plain", "_rot_true0",
        "_rot_true_off", "_simple", "_ul_per_stroke", "_v_s", "air", "armed", "bag_ul",
        "battery_mv0", "battery_rate", "battery_t0", "bolus_ul", "boluses", "cam0",
        "cassette_clamp_open", "cassette_factor", "cfg", "clamp_closed", "cmd_speed",
        "conc_ug_per_ml", "door", "door_switch", "dose_ug", "drift", "due", "enabled", "engaged",
        "occluded", "on_schedule", "patient_ul", "powered", "pumped_ul", "rot_keep", "rot_stuck",
        "runaway", "signal", "source_mmhg", "speed", "stalled", "stored_ul", "t0", "t1", "ts",
        "watches"
    )

    def __init__(self, cfg=None, noise=None, cassette_factor=1.0, offsets=None):
        self.cfg = cfg = cfg if cfg is not None else Config()
        self.signal = _ignore            # hooks: set by the owner (module doc)
        self.on_schedule = _ignore
        self.due = None                  # ms of the crossing handed to on_schedule
        self.watches = 0                 # look-aheads made (watch)
        self._bag_speed = 0.0            # watch's memo: a speed and its flow bound (µL/ms)
        self._bag_ul_per_ms = 0.0
        self.cassette_factor = cassette_factor
        f = noise if noise is not None else [1.0]
        n = len(f)
        cum = [0.0] * (n + 1)
        acc = 0.0
        for i, v in enumerate(f):
            cum[i] = acc
            acc += v
        cum[n] = acc
        self._n = n
        self._f = f
        self._cum = cum
        self._cum_all = acc
        self._ul_per_stroke = cfg.stroke_ul * cassette_factor
        self._inv_sps = 1.0 / cfg.steps_per_stroke
        # rotation sensor: edge m sits at pitch*m + off[m % ppr]
        ppr = cfg.pulses_per_rev
        self._ppr = ppr
        self._pitch = cfg.steps_per_stroke / ppr
        self._edges_x = None          # _edges memo: the last x asked, and its answer
        self._edges_m = 0
        self._off = list(offsets) if offsets is not None else [0.0] * ppr
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
        self.rot_stuck = None         # the count a stuck sensor reads, or None
        self._rot_plain = True        # neither stuck nor dropping pulses: count = true
        self.armed = -1
        # --- bag, line, patient ----------------------------------------------------------------
        self.bag_ul = cfg.bag_fill_ml * 1000.0
        self.conc_ug_per_ml = cfg.concentration_ug_per_ml
        self.engaged = True           # cassette in place
        self.door = True              # door shut
        self.door_switch = True       # the door switch: cassette in place and door shut
        self.cassette_clamp_open = False
        self.clamp_closed = False     # the pump's downstream pinch clamp
        self.occluded = False
        self.source_mmhg = 0          # an external pressure source on the line (rig), 0: none
        self.stored_ul = 0.0          # volume held in the line's compliance
        self.air = False
        self.patient_ul = 0.0         # TRUE volume that entered the patient
        self.dose_ug = 0.0
        self.bolus_ul = 0.0
        self.boluses = []             # (t_ms, µL)
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
        self._simple = True           # engaged, line open, no drain: fast paths
        self._update_simple()

    # --- geometry -----------------------------------------------------------------------------
    def cam(self, t):
        """True camshaft position (steps) at t."""
        if t > self.t1:
            t = self.t1
        if t < self.t0:
            t = self.t0
        return self.cam0 + self.speed * (t - self.t0)

    def _vol(self, cam):
        """Volume (µL) the cassette moves from camshaft position 0 to cam."""
        x = cam * self._inv_sps
        k = math.floor(x)
        q, r = divmod(k, self._n)
        return self._ul_per_stroke * (q * self._cum_all + self._cum[r] + (x - k) * self._f[r])

    def _edges(self, x):
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
    def line_blocked(self):
        return self.occluded or self.clamp_closed

    def free_flowing(self):
        return (not self.engaged and self.cassette_clamp_open and not self.line_blocked()
                and self.bag_ul > 0.0)

    def settle(self, t):
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
            n = self._n
            q = k // n                  # divmod(k, n) without its tuple (ints: the same)
            r = k - q * n
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

    def _route(self, dv, t, a, b):
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

    def _to_patient(self, v):
        self.patient_ul += v
        self.dose_ug += v * self.conc_ug_per_ml * 0.001

    def _room(self):
        c = self.cfg
        return max(0.0, (c.stall_mmhg - c.venous_mmhg) * c.compliance_ul_per_mmhg
                   - self.stored_ul)

    def _stall(self, t, cam):
        self._cam_s = cam
        self._v_s = self._vol(cam)
        self.cam0 = cam
        self.t0 = t
        self.speed = 0.0
        if not self.stalled:
            self.stalled = True
            if self.cfg.stall_reports_fault:
                self.signal(EV_MOTOR_FAULT)

    def _update_bpf(self):
        k = self.cfg.backpressure_per_mmhg
        self._bpf = 1.0 - k * (self.pressure() - self.cfg.venous_mmhg) if k else 1.0

    def pressure(self):
        """Downstream pressure (mmHg) at the last settle: the line's, or the external
        source's when that is higher."""
        c = self.cfg
        if self.stored_ul <= 0.0:
            p = c.venous_mmhg
        else:
            p = min(c.stall_mmhg, c.venous_mmhg + self.stored_ul / c.compliance_ul_per_mmhg)
        return p if p >= self.source_mmhg else self.source_mmhg

    def pressure_at(self, t):
        self.settle(t)
        return self.pressure()

    def delivered_ul(self, t):
        self.settle(t)
        return self.patient_ul

    # --- motion -----------------------------------------------------------------------------
    def set_motion(self, t, steps, ms):
        """The driver starts `steps` over `ms` from t (0 steps: stop)."""
        self.settle(t)
        self.cam0 = self._cam_s       # == cam(t) after the settle
        self.t0 = t
        self.cmd_speed = steps / ms if (steps and ms > 0) else 0.0
        self.t1 = t + ms if steps else t
        self.stalled = False
        self._apply_speed()
        if self._simple and self.due is None and self.armed < 0:
            # the only crossing possible: the bag running empty during this move
            if self.speed > 0.0 and self.speed * ms * self._inv_sps * self._ul_per_stroke \
                    * 1.1 < self.bag_ul:
                return
        self.watch(t)

    def _update_simple(self):
        self._simple = (self.engaged and not self.occluded and not self.clamp_closed
                        and self.battery_rate == 0.0)

    def set_enabled(self, t, on):
        self.settle(t)
        self._rebase(t)
        self.enabled = on
        self._apply_speed()
        self.watch(t)

    def set_speed_factor(self, t, runaway=None, drift=None):
        self.settle(t)
        self._rebase(t)
        if runaway is not None:
            self.runaway = runaway
        if drift is not None:
            self.drift = drift
        self._apply_speed()
        self.watch(t)

    def _rebase(self, t):
        self.cam0 = self.cam(t)
        self.t0 = t

    def _apply_speed(self):
        if self.enabled and self.powered and not self.stalled and self.t1 > self.t0:
            v = self.cmd_speed * self.runaway * self.drift
            d = 1 if v > 0.0 else -1
            if v != 0.0 and d != self._rot_dir:
                self._reverse(d, self.cam0)
            self.speed = v
        else:
            self.speed = 0.0

    def _reverse(self, d, cam):
        """The camshaft turns the other way (d) from cam on: re-anchor the sensor (a
        single-channel sensor counts edges either way)."""
        p = self._edges(cam)
        self._rot_true0 += abs(p - self._rot_p0)
        self._rot_p0 = p
        self._rot_dir = d

    def turn(self, t, steps):
        """The camshaft turns `steps` at once, on its own (no driver command): it pumps,
        and its sensor sees the edges it passes."""
        self.settle(t)
        self._rebase(t)
        if steps:
            a = self._cam_s
            d = 1 if steps > 0 else -1
            if d != self._rot_dir:
                self._reverse(d, a)
            b = a + steps
            vb = self._vol(b)
            dv = (vb - self._v_s) * self._bpf
            self._cam_s = b
            self._v_s = vb
            self.cam0 = b
            if dv != 0.0 and self.engaged:
                self._route(dv, t, a, b)
            d = 1 if self.speed > 0.0 else -1
            if self.speed != 0.0 and d != self._rot_dir:
                self._reverse(d, self.cam0)       # the motion goes on its own way
        self.check(t)
        self.watch(t)

    # --- rotation sensor ----------------------------------------------------------------------
    def true_pulses(self, t):
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

    def rotation_count(self, t):
        """What the sensor's counter has counted by t (since the plant was made)."""
        if self._rot_plain:
            # self.true_pulses(t), inlined: every compare wake asks, two or three times
            t0 = self.t0
            if t > self.t1:
                t = self.t1
            if t < t0:
                t = t0
            x = self.cam0 + self.speed * (t - t0)
            if x == self._edges_x:
                return self._rot_true0 + abs(self._edges_m - self._rot_p0)
            return self._rot_true0 + abs(self._edges(x) - self._rot_p0)
        if self.rot_stuck is not None:
            return self.rot_stuck
        true = self.true_pulses(t)
        if self.rot_keep == 1.0 and self._rot_cnt_off == 0:
            return true
        return self._rot_cnt_off + int((true - self._rot_true_off) * self.rot_keep)

    def _update_plain(self):
        self._rot_plain = (self.rot_stuck is None and self.rot_keep == 1.0
                           and self._rot_cnt_off == 0)

    def set_dropout(self, t, fraction):
        self._rot_cnt_off = self.rotation_count(t)
        self._rot_true_off = self.true_pulses(t)
        self.rot_keep = 1.0 - fraction
        self._update_plain()
        self.watch(t)

    def set_stuck(self, t, on):
        self.rot_stuck = self.rotation_count(t) if on else None
        self._update_plain()
        self.watch(t)

    def set_slot_offsets(self, t, offsets):
        """Another slotted disc from t on (per-slot edge offsets, steps); the count goes on
        from where it is."""
        x = self.cam(t)
        self._rot_true0 += abs(self._edges(x) - self._rot_p0)
        self._off = list(offsets)
        self._edges_x = None
        self._rot_p0 = self._edges(x)
        self.watch(t)

    def arm_compare(self, t, count):
        """The counter's compare: EV_ROTATION as soon as rotation_count() >= count (-1: off)."""
        self.armed = count
        if count >= 0 and self.rot_stuck is None and self.rotation_count(t) >= count:
            self.armed = -1             # already there: the compare fires at once
            self.signal(EV_ROTATION)
        self.watch(t)

    def _rotation_due(self, t):
        """When the sensor count reaches self.armed (ms, float), or None."""
        speed = self.speed
        if speed == 0.0 or t >= self.t1:
            return None
        if self._rot_plain:
            k = self._rot_true_off + self.armed - self._rot_true0
        else:
            if self.rot_stuck is not None or self.rot_keep <= 0.0:
                return None
            need_true = self._rot_true_off + math.ceil((self.armed - self._rot_cnt_off)
                                                       / self.rot_keep)
            k = need_true - self._rot_true0        # edges to cross from the motion start
        # self._edge(m), inlined: every compare arms one
        if speed > 0.0:
            m = self._rot_p0 + k - 1
            pos = self._pitch * m + self._off[m % self._ppr]
        else:
            m = self._rot_p0 - k
            pos = self._pitch * m + self._off[m % self._ppr] - 1e-6
        at = self.t0 + (pos - self.cam0) / speed
        return at if at <= self.t1 else None

    # --- crossings ------------------------------------------------------------------------------
    def watch(self, t):
        """(Re)compute the earliest crossing of the current motion from t; hand it on."""
        self.watches += 1
        best = None
        if self.armed >= 0:
            best = self._rotation_due(t)
        if self._simple:
            # engaged, line open, no drain: only the bag running empty can add a crossing
            speed = self.speed
            if speed > 0.0 and t < self.t1:
                if speed != self._bag_speed:      # the flow bound of this speed, once
                    self._bag_speed = speed
                    self._bag_ul_per_ms = speed * self._inv_sps * self._ul_per_stroke * 1.1
                ul_per_ms = self._bag_ul_per_ms
                if ul_per_ms * (self.t1 - t) > self.bag_ul > 0.0:
                    at = t + self.bag_ul / ul_per_ms
                    if best is None or at < best:
                        best = at
            self._schedule(t, best)
            return
        moving = self.speed != 0.0 and t < self.t1
        if moving and self.engaged and self.speed > 0.0:
            ul_per_ms = self.speed * self._inv_sps * self._ul_per_stroke * 1.1
            if self.line_blocked():
                # a conservative early estimate; the crossing settles and re-watches
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
        self._schedule(t, best)

    def _schedule(self, t, best):
        at_ms = due_ms(t, best)
        if at_ms != self.due:
            self.due = at_ms
            self.on_schedule(at_ms)

    def crossing(self, t):
        """The crossing due at t (or one overtaken by t): settle, signal, look ahead."""
        self.cross(t)
        self.watch(t)

    def cross(self, t):
        """crossing() without its look-ahead: the owner calls watch(t) next, or lets a
        mutator that watches do it (`watches` counts the look-aheads made)."""
        self.due = None
        self.settle(t)
        self.check(t)

    def check(self, t):
        """Raise the signals whose conditions now hold (each once per crossing)."""
        if self.armed >= 0 and self.rot_stuck is None and self.rotation_count(t) >= self.armed:
            self.armed = -1
            self.signal(EV_ROTATION)
        c = self.cfg
        if self.stored_ul <= 0.0:
            p = c.venous_mmhg               # self.pressure() with nothing stored
            if p < self.source_mmhg:
                p = self.source_mmhg
        else:
            p = self.pressure()
        high = p >= c.pressure_threshold_mmhg
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
    def set_air(self, on):
        if on != self.air:
            self.air = on
            if on:
                self.signal(EV_AIR)

    def set_occluded(self, t, on):
        self.settle(t)
        self._rebase(t)
        was = self.line_blocked()
        self.occluded = on
        self._update_simple()
        self._after_line_change(t, was)

    def set_clamp(self, t, closed):
        self.settle(t)
        self._rebase(t)
        was = self.line_blocked()
        self.clamp_closed = closed
        self._update_simple()
        self._after_line_change(t, was)

    def _after_line_change(self, t, was_blocked):
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
        self.watch(t)

    def set_source(self, t, mmhg):
        """An external pressure source on the line (a rig), mmHg; 0: none."""
        self.settle(t)
        self.source_mmhg = mmhg
        self._update_bpf()
        self.check(t)

    def set_cassette(self, t, engaged, clamp_open=False):
        """Cassette in (engaged) or pulled out, with its own roller clamp open or closed."""
        self.settle(t)
        self._rebase(t)
        changed = engaged != self.engaged
        self.engaged = engaged
        self.door_switch = self.door and engaged
        self.cassette_clamp_open = clamp_open
        self._update_simple()
        self.watch(t)
        if changed:
            self.signal(EV_DOOR)

    def set_door(self, t, closed):
        self.settle(t)
        if closed != self.door:
            self.door = closed
            self.door_switch = closed and self.engaged
            self.signal(EV_DOOR)

    def set_power(self, t, on):
        self.settle(t)
        self._rebase(t)
        self.powered = on
        if not on:
            self.t1 = t                 # the driver stops with the power
            self.armed = -1
            self._update_simple()
        self._apply_speed()
        self.watch(t)

    def battery(self, t):
        return self.battery_mv0 - self.battery_rate * (t - self.battery_t0) / _MS_PER_H

    def battery_mv(self, t):
        return int(self.battery(t))

    def set_battery(self, t, mv):
        """The battery reads mv at t (and drains on from there at the same rate)."""
        self.battery_mv0 = mv
        self.battery_t0 = t
        self.watch(t)

    def set_battery_drain(self, t, mv_per_h):
        self.battery_mv0 = self.battery(t)
        self.battery_t0 = t
        self.battery_rate = mv_per_h
        self._update_simple()
        self.watch(t)

    def change_bag(self, t, fill_ml, conc_ug_per_ml):
        self.settle(t)
        self.bag_ul = fill_ml * 1000.0
        self.conc_ug_per_ml = conc_ug_per_ml
        self.air = False
        self.watch(t)

    # --- sensors as the board reads them --------------------------------------------------------
    def pressure_mmhg(self, t):
        if t > self.ts:
            self.settle(t)
        if self.stored_ul <= 0.0:
            # self.pressure() with nothing stored (the monitor reads it at every wake)
            v = self.cfg.venous_mmhg
            if v < self.source_mmhg:
                v = self.source_mmhg
            return int(round(v))
        return int(round(self.pressure()))


class Driver:
    """The stepper driver of the board that ships (firmware/boards/rp2_ref.py `Motor`): the
    HAL's motor on a clock (`clock()` -> ms). position() counts the steps issued, evenly
    over each move (a reverse move rounds toward zero); enable(False) stops the move; a move
    while disabled issues nothing. It tells the plant what it commands and knows nothing of
    runaway or stalls."""

    def __init__(self, plant, clock):
        self.plant = plant
        self.clock = clock
        self.on = False
        self.base = 0                 # steps issued before the current move
        self.steps = 0                # the current move (signed; 0: none)
        self.ms = 1
        self.t0 = 0

    def enable(self, on):
        on = bool(on)
        if not on:
            self.stop()
        if on != self.on:
            self.on = on
            self.plant.set_enabled(self.clock(), on)

    def enabled(self):
        return self.on

    def move(self, steps, ms):
        t = self.clock()
        self.base = self.position()
        self.steps = steps if self.on else 0
        self.ms = ms if ms > 0 else 1
        self.t0 = t
        self.plant.set_motion(t, self.steps, self.ms)

    def stop(self):
        self.base = self.position()
        if self.steps:
            self.steps = 0
            self.plant.set_motion(self.clock(), 0, 0)

    def position(self):
        el = self.clock() - self.t0
        if el >= self.ms:
            return self.base + self.steps
        if self.steps < 0:
            return self.base - (-self.steps * el) // self.ms
        return self.base + self.steps * el // self.ms

    def busy(self):
        return self.steps != 0 and self.clock() - self.t0 < self.ms

    def power_cut(self):
        """The MCU loses power: no more steps, the enable line falls."""
        self.base = self.position()
        self.steps = 0
        self.on = False

    def reset(self):
        """MCU reboot: the step counter restarts at 0."""
        self.base = 0
        self.steps = 0
        self.t0 = self.clock()


class Counter:
    """The MCU's counter on the rotation sensor (the HAL's rotation): pulses since the MCU
    booted, and the compare interrupt. `offset` is the sensor's count at that boot."""

    def __init__(self, plant, clock):
        self.plant = plant
        self.clock = clock
        self.offset = 0

    def count(self):
        return self.plant.rotation_count(self.clock()) - self.offset

    def arm(self, count):
        self.plant.arm_compare(self.clock(), count + self.offset if count >= 0 else -1)

    def reset(self):
        """MCU reboot: the counter restarts at 0."""
        self.offset = self.plant.rotation_count(self.clock())


def power_off(t, plant, driver):
    """Power lost: the driver stops with the MCU, the pinch clamp closes (unpowered)."""
    driver.power_cut()
    plant.set_power(t, False)
    plant.set_clamp(t, True)


def power_on(t, plant, driver, counter):
    """Power back: the MCU reboots (step and pulse counters from 0, compare off), the enable
    line is low until the firmware raises it, the board opens the clamp at init."""
    plant.set_power(t, True)
    if plant.enabled:
        plant.set_enabled(t, False)
    plant.set_clamp(t, False)
    driver.reset()
    counter.reset()
    plant.arm_compare(t, -1)


def _ignore(arg):
    pass
