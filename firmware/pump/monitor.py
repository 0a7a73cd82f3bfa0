"""The independent safety monitor (SR-5, SR-10): watches the camshaft with its own sensor
and its own copy of the program, and stops the pump on its own. It can only stop.

It does not trust delivery.py. Its inputs are the rotation sensor (4 pulses a stroke, one
every `pulse_nl` = stroke_nl / 4 of nominal volume), the clock, the pressure sensor, the
door/cassette switch, and what the controller tells it: a program was accepted (`load`),
delivery started (`on_start`), stopped (`on_stop`), the motor was asked to move outside
delivery (`on_move`: priming; `on_backoff`/`on_move_end`: the occlusion back-off). It sees
the board through `StopOnly`: its sensors, the rotation compare, and two actuators that can
only stop, the motor enable dropped and the downstream clamp closed. It never starts or
moves the motor and never opens the clamp: that is the controller's (it asks `on_start` /
`on_move` whether the clamp may open). It never calls the controller either: `check`
returns the alarm code after the monitor has stopped the pump, and the controller latches
it (and, for OCCLUSION, backs the camshaft off) once the monitor has returned.

Detectors (all arithmetic in integer nL; docs/monitor.md derives every constant):

- envelope `env_nl`: the programmed rate (the monitor's own copy) integrated over the time
  spent RUNNING, capped at the VTBI still to go.
- fast envelope `f_nl` = pulse volume - envelope, floored at -CREDIT (no banking of earlier
  under-delivery). f > TOL -> OVER_INFUSION. The rotation compare is armed at the very count
  that would make f exceed TOL, so a runaway trips on the pulse that crosses (PR-1).
- drift CUSUM `cusum_nl`, updated only at pulse edges (a compare wake with the count equal
  to the armed value), where the pulse count is exact to the slot jitter:
  S = max(0, S + dV_pulses - (1 + 1/20) dV_env); S > 1 pulse -> OVER_INFUSION.
- under-infusion CUSUM `under_nl`: U = max(0, U + (1 - 1/4) dV_env - dV_pulses);
  U > 6 pulses -> UNDER_INFUSION.
- geometry check (blind to the calibration): the same pulses counted at the mechanism's
  fixed 12.5 µL a pulse (50 µL a revolution, pump/calibration.py), against the envelope,
  in two CUSUMs with a 1/8 allowance: G+ = max(0, G+ + dV_geo - (1 + 1/8) dV_env) > 4
  pulses -> OVER_INFUSION; G- = max(0, G- + (1 - 1/8) dV_env - dV_geo) > 6 pulses ->
  UNDER_INFUSION. Accepted calibrations (±8 %) stay inside the allowance; whatever the
  calibration says, a camshaft turning ≥ 25 % more or less than the program needs at the
  mechanism's geometry is caught by it or by the detectors above.
- dead/stuck sensor: the envelope grew by 4 pulses with no pulse at all -> SENSOR_FAULT.
  The under-infusion detectors name UNDER_INFUSION only while pulses still come (the last
  one within a pulse of envelope): a sensor that goes silent is SENSOR_FAULT.
- uncommanded motion: more than one pulse beyond what was allowed while delivery is not
  running (paused, stopped, alarm, after a prime or a back-off) -> OVER_INFUSION.
- occlusion: pressure >= 300 mmHg, or a rise of >= 100 mmHg over the running baseline that
  is still rising -> OCCLUSION (`pressure_rise` tells the controller's back-off how much).
- free flow: the door/cassette switch open while the clamp is open -> clamp closed and
  motor enable dropped at once; `take_free_flow` tells the controller to annunciate it.

Steady path (a step, a compare wake): small-int arithmetic on attributes only; nothing is
allocated on MicroPython (tests/fw/test_monitor_alloc.py). Every value stays below 2**30.
"""
from pump.codes import OCCLUSION, OVER_INFUSION, SENSOR_FAULT, UNDER_INFUSION
from pump.compat import const
from pump.hal import EV_ROTATION
from pump.program import RATE_MAX_UL_PER_H, RATE_MIN_UL_PER_H, Program

PULSES_PER_STROKE = const(4)
# Thresholds in half pulses (6250 nL at the nominal 50 µL stroke): see docs/monitor.md.
_TOL_H = const(7)             # fast envelope: 3.5 pulses = 43.75 µL
_CREDIT_H = const(3)          # envelope ahead of the pulses at most 1.5 pulses = 18.75 µL
_CUSUM_H = const(2)           # drift CUSUM threshold: 1 pulse = 12.5 µL
_CUSUM_K_DIV = const(20)      # drift CUSUM allowance k = 1/20 = 5 % of the envelope
_UNDER_H = const(12)          # under-infusion CUSUM threshold: 6 pulses = 75 µL
_UNDER_K_DIV = const(4)       # under-infusion allowance k = 1/4 = 25 %
_SENSOR_H = const(8)          # envelope growth with no pulse at all: 4 pulses = 50 µL
GEO_PULSE_NL = const(12500)   # the mechanism: 50 µL a revolution / 4 slots (calibration.py)
_GEO_K_DIV = const(8)         # geometry check allowance 1/8 = 12.5 % of the envelope
_GEO_OVER_NL = const(50000)   # geometry over-infusion threshold: 4 nominal pulses
_GEO_UNDER_NL = const(75000)  # geometry under-infusion threshold: 6 nominal pulses
STOP_SLACK = const(1)         # pulses tolerated while the motor is not commanded
_CHECKPOINT_MS = const(300000)  # a drift check at an edge at least every 5 min or so
_MAX_UNITS = const(10000)     # 3.6 s units in one envelope update (10 h) before capping
P_OCCLUSION_MMHG = const(300)  # absolute downstream limit (the board's comparator too)
P_RISE_MMHG = const(100)      # rise over the running baseline, while still rising
_DISARMED = const(-1)         # the rotation compare is not armed (it disarms when it fires)


class StopOnly:
    """The monitor's view of the board (SR-5): its sensors, the rotation compare, the clock,
    and two actuators that can only stop: the motor power stage's enable, dropped, and the
    downstream clamp, closed. Nothing here can enable or move the motor or open the clamp.
    Built from the HAL once; the sensor reads are the HAL's own bound methods (no extra
    call on the steady path)."""

    def __init__(self, hal):
        self.count = hal.rotation.count
        self.arm = hal.rotation.arm
        self.pressure_mmhg = hal.pressure_mmhg
        self.door_closed = hal.door_closed
        self.ticks_diff = hal.ticks_diff
        self._enable = hal.motor.enable
        self._clamp = hal.clamp

    def motor_off(self):
        """Drop the motor power stage's enable line."""
        self._enable(False)

    def clamp_close(self):
        """Close the downstream pinch clamp."""
        self._clamp(True)


class Monitor:
    """One per controller. It keeps no reference to the HAL: only its `StopOnly` view."""

    def __init__(self, hal, stroke_nl=50000, steps_per_stroke=200):
        if stroke_nl % (2 * PULSES_PER_STROKE) or steps_per_stroke % PULSES_PER_STROKE:
            raise ValueError("monitor calibration: %d nL, %d steps" % (stroke_nl,
                                                                       steps_per_stroke))
        io = StopOnly(hal)
        self.io = io
        self.stroke_nl = stroke_nl
        self.steps_per_stroke = steps_per_stroke
        self.steps_per_pulse = steps_per_stroke // PULSES_PER_STROKE
        self.pulse_nl = stroke_nl // PULSES_PER_STROKE
        half = self.pulse_nl // 2
        self.tol_nl = _TOL_H * half
        self.credit_nl = _CREDIT_H * half
        self.cusum_h_nl = _CUSUM_H * half
        self.under_h_nl = _UNDER_H * half
        self.sensor_nl = _SENSOR_H * half
        self.prog = None              # the monitor's own copy (pump.program.Program)
        # set by `load` with the copy it accepts, read only while running (which needs one):
        # rate (µL/h, from the copy), cap_nl (envelope cap: the VTBI still to go at load),
        # n_check (pulses between drift checkpoints); set by `on_start`, read only while
        # running: t_last, edge_ok, since_pulse_nl, c_ref, e_ref, p_prev
        self.running = False
        self.clamp_open = False       # the controller may have opened it (on_start/on_move)
        self.latched = None           # the monitor's latest trip (None after a start)
        self.pending = None           # a trip found and acted on, reported at the next check
        self.free_flow = False        # the clamp had to close with the door open
        self.trips = 0
        self.t_now = 0
        self.allow = 0                # pulses allowed beyond c_stop (prime, back-off)
        self._reset_books()
        io.clamp_close()              # closed until delivery starts (SR-5)
        c = io.count()
        self.c_last = c
        self.c_stop = c               # count when the motor was last released/stopped
        self.armed = c + STOP_SLACK + 1   # the compare, armed while stopped
        io.arm(self.armed)

    # --- what the controller tells it ---------------------------------------------------
    def load(self, prog, delivered_nl):
        """A program was accepted (or restored at boot, `delivered_nl` of it delivered):
        keep a CRC-checked copy of it. A copy whose check fails, or whose rate is outside
        the pump's range, is not taken: the monitor then refuses to start."""
        self.prog = None
        if prog is not None:
            copy = Program(prog.pid, prog.rate_ul_per_h, prog.vtbi_nl, prog.drug,
                           prog.conc_pg_per_ml, prog.dose_ng_per_day, prog.bag_hours,
                           prog.flags)
            if (copy.check == prog.check
                    and RATE_MIN_UL_PER_H <= copy.rate_ul_per_h <= RATE_MAX_UL_PER_H):
                self.prog = copy
                self.rate = copy.rate_ul_per_h
                # nothing (or less) left: the envelope cannot grow (_advance_env)
                self.cap_nl = copy.vtbi_nl - delivered_nl
                period_ms = self.pulse_nl * 3600 // self.rate
                n = _CHECKPOINT_MS // period_ms if period_ms > 0 else 1
                self.n_check = n if n > 0 else 1
        self._reset_books()

    def on_start(self, now):
        """Delivery starts or resumes at now. Returns True when the monitor watches it and
        the door is closed: the controller may open the clamp. False when it refuses (its
        own copy is missing or corrupt, or a fault is pending): the motor enable is dropped
        and the fault is reported at the next check (the controller steps at once: the
        compare is armed at the current count)."""
        io = self.io
        c = io.count()
        self.latched = None
        self.c_last = c
        self.t_last = now
        self.edge_ok = False              # the drift reference is taken at the first edge
        self.c_ref = c                    # (set here too: the compare path creates nothing)
        self.e_ref = self.env_nl
        self.since_pulse_nl = 0
        p = io.pressure_mmhg()
        if self.p_base is None or p < self.p_base:
            self.p_base = p
        self.p_prev = p
        prog = self.prog
        if self.pending is None and (prog is None or not prog.intact()):
            # the monitor's own copy is missing or corrupt: it cannot watch, so no delivery
            self.pending = SENSOR_FAULT
        if self.pending is not None:
            io.motor_off()
            self._arm(c)
            return False
        self.running = True
        self.clamp_open = io.door_closed()
        self._arm_running(c)
        return self.clamp_open

    def on_move(self, steps):
        """The motor is asked to move `steps` outside delivery (priming, line disconnected):
        these pulses are allowed. Returns True when the door is closed: the controller may
        open the clamp."""
        self._allow(steps)
        self.clamp_open = self.io.door_closed()
        return self.clamp_open

    def on_backoff(self, steps):
        """The controller runs the camshaft `steps` backwards after an occlusion (the clamp
        stays closed): these pulses are allowed, and none beyond them."""
        self._allow(steps)

    def on_move_end(self):
        """The back-off ended: from now on every pulse beyond STOP_SLACK is uncommanded, and
        pulses beyond what it was allowed stay so."""
        c = self.io.count()
        if c - self.c_stop > self.allow + STOP_SLACK:
            c = self.c_stop + self.allow
        self.c_stop = c
        self.allow = 0
        self._arm(c + STOP_SLACK + 1)

    def on_stop(self, now):
        """Delivery (or a prime) stopped at now: settle the books, close the clamp, and from
        now on every pulse beyond STOP_SLACK is uncommanded motion."""
        c = self.io.count()
        if self.running:
            self.running = False
            code = self._account(now, c, False)
            if code is not None and self.pending is None:
                self._safe_stop()
                self.pending = code
        elif self.latched is None and c - self.c_stop > self.allow + STOP_SLACK:
            self._safe_stop()
            self.pending = OVER_INFUSION
        self.c_stop = c
        self.c_last = c
        self.allow = 0
        self._close_clamp()
        if self.pending is not None:
            self._arm(c)
        else:
            self._arm(c + STOP_SLACK + 1)

    # --- the check, at every controller step ----------------------------------------------
    def check(self, now, flags):
        """Run the detectors. `flags` are the interrupt flags of this step (EV_ROTATION:
        the compare fired). Returns None, or the code of a trip: the monitor has already
        stopped the pump (enable low, clamp closed); the controller latches the alarm."""
        io = self.io
        self.t_now = now
        c = io.count()
        if self.pending is not None:
            code = self.pending
            self.pending = None
            return self._trip(code, c)
        if self.clamp_open and not io.door_closed():
            # free flow: the cassette/door opened with the line open (SR-5)
            self._safe_stop()
        edge = False
        if flags & EV_ROTATION:
            edge = c == self.armed        # woken by the compare, on the very pulse
            self.armed = _DISARMED        # the counter disarms when it fires
        if self.running:
            code = self._account(now, c, edge)
            if code is None:
                code = self._pressure()
            if code is not None:
                return self._trip(code, c)
            self._arm_running(c)
            return None
        if c - self.c_stop > self.allow + STOP_SLACK:
            if self.latched is None:
                return self._trip(OVER_INFUSION, c)
            # already stopped for a fault: keep it stopped, follow the count
            self._safe_stop()
            self.c_stop = c
        self._arm(self.c_stop + self.allow + STOP_SLACK + 1)
        return None

    def compare(self, now):
        """The rotation compare fired while delivery runs: the edge check alone (the board's
        soft-IRQ path, through Controller.on_rotation). Exactly check(now, EV_ROTATION) when
        nothing else is going on (running, nothing pending, no free flow to report, door
        closed or clamp closed) and nothing is found: returns True. Otherwise returns False
        and the caller runs the full step: having done nothing, or, when a detector
        tripped, having stopped the pump at once with the trip pending, so that the step's
        check reports it."""
        if not self.running or self.pending is not None or self.free_flow:
            return False
        io = self.io
        if self.clamp_open and not io.door_closed():
            return False
        self.t_now = now
        c = io.count()
        edge = c == self.armed            # woken by the compare, on the very pulse
        self.armed = _DISARMED            # the counter disarms when it fires
        code = self._account(now, c, edge)
        if code is None:
            code = self._pressure()
        if code is not None:
            self._safe_stop()
            self.pending = code
            return False
        self._arm_running(c)
        return True

    def wake(self, wake):
        """The controller's next wake, brought forward when the monitor needs a step."""
        if self.pending is not None:
            return self.t_now
        return wake

    def take_free_flow(self):
        """True once after the monitor closed the clamp with the door open (FREE_FLOW, for
        the controller to journal and annunciate)."""
        ff = self.free_flow
        self.free_flow = False
        return ff

    def pressure_rise(self):
        """Downstream pressure now above the lowest seen while running (mmHg): what an
        occlusion has stored in the line's compliance, for the controller's back-off."""
        base = self.p_base if self.p_base is not None else 0
        return self.io.pressure_mmhg() - base

    # --- detectors --------------------------------------------------------------------------
    def _account(self, now, c, edge):
        """Advance the envelope to now, take the pulses up to c; returns a code or None."""
        d_env = self._advance_env(now)
        dc = c - self.c_last
        d_obs = dc * self.pulse_nl
        self.c_last = c
        if dc != 0:
            self.since_pulse_nl = 0
        else:
            self.since_pulse_nl += d_env
        f = self.f_nl + d_obs - d_env
        if f < -self.credit_nl:
            f = -self.credit_nl
        self.f_nl = f
        u = self.under_nl + d_env - d_env // _UNDER_K_DIV - d_obs
        if u < 0:
            u = 0
        self.under_nl = u
        # geometry check: the pulses at the mechanism's fixed volume, not the calibration's
        g = dc * GEO_PULSE_NL
        k = d_env // _GEO_K_DIV
        go = self.geo_over_nl + g - d_env - k
        self.geo_over_nl = go if go > 0 else 0
        gu = self.geo_under_nl + d_env - k - g
        self.geo_under_nl = gu if gu > 0 else 0
        if f > self.tol_nl or go > _GEO_OVER_NL:
            return OVER_INFUSION
        if edge:
            if self.edge_ok:
                de = self.env_nl - self.e_ref
                s = self.cusum_nl + (c - self.c_ref) * self.pulse_nl - de - de // _CUSUM_K_DIV
                if s < 0:
                    s = 0
                self.cusum_nl = s
                if s > self.cusum_h_nl:
                    return OVER_INFUSION
            self.edge_ok = True
            self.c_ref = c
            self.e_ref = self.env_nl
        if self.since_pulse_nl > self.sensor_nl:
            return SENSOR_FAULT
        # Under-infusion is named while pulses still come; a sensor gone silent is the
        # sensor's fault, named within its own allowance (the under CUSUMs may already stand
        # near their limits from ordinary jitter when the pulses stop).
        if (u > self.under_h_nl or gu > _GEO_UNDER_NL) and self.since_pulse_nl < self.pulse_nl:
            return UNDER_INFUSION
        return None

    def _advance_env(self, now):
        """Envelope growth (nL) from t_last to now at the programmed rate, capped."""
        dt = self.io.ticks_diff(now, self.t_last)
        self.t_last = now
        if dt <= 0:
            return 0
        room = self.cap_nl - self.env_nl
        if room <= 0:
            return 0
        rate = self.rate
        units = dt // 3600
        if units >= _MAX_UNITS:
            add = room
        else:
            acc = rate * (dt - units * 3600) + self.env_rem
            add = rate * units + acc // 3600
            self.env_rem = acc % 3600
            if add > room:
                add = room
        self.env_nl += add
        return add

    def _pressure(self):
        p = self.io.pressure_mmhg()
        if p < self.p_base:
            self.p_base = p
        rising = p > self.p_prev
        self.p_prev = p
        if p >= P_OCCLUSION_MMHG or (rising and p - self.p_base >= P_RISE_MMHG):
            return OCCLUSION
        return None

    # --- acting: stop only ------------------------------------------------------------------
    def _safe_stop(self):
        """Stop without asking anyone: motor power stage off, clamp closed (SR-5)."""
        self.io.motor_off()
        self._close_clamp()

    def _close_clamp(self):
        io = self.io
        if self.clamp_open and not io.door_closed():
            self.free_flow = True
            io.motor_off()
        io.clamp_close()
        self.clamp_open = False

    def _trip(self, code, c):
        """Stop, latch the trip in the monitor's own books, and hand the code back."""
        self.running = False
        self.latched = code
        self.trips += 1
        self._safe_stop()
        self.c_stop = c
        self.c_last = c
        self.allow = 0
        self._arm(c + STOP_SLACK + 1)
        return code

    def _allow(self, steps):
        """`steps` of motor travel outside delivery are allowed from the count now."""
        c = self.io.count()
        self.c_stop = c
        self.allow = abs(steps) // self.steps_per_pulse + 1
        self._arm(c + self.allow + STOP_SLACK + 1)

    def _arm_running(self, c):
        """Compare at the count that would take the fast envelope past TOL, or at the next
        drift checkpoint, whichever comes first. A compare still pending at a lower count
        is kept: it will fire on a pulse edge, where the drift CUSUM is exact (re-arming
        it further at every segment wake would push the edges away for ever)."""
        n = (self.tol_nl - self.f_nl) // self.pulse_nl + 1
        if n > self.n_check:
            n = self.n_check
        target = c + n
        armed = self.armed
        if c < armed < target:
            target = armed
        if target != armed:               # self._arm(target), inlined (every compare wake)
            self.armed = target
            self.io.arm(target)

    def _arm(self, count):
        if count != self.armed:           # an armed compare stays armed until it fires
            self.armed = count
            self.io.arm(count)

    def _reset_books(self):
        self.env_nl = 0               # envelope: what may have been delivered by now
        self.env_rem = 0              # remainder of the rate x time product (µL/h x ms)
        self.f_nl = 0
        self.cusum_nl = 0
        self.under_nl = 0
        self.geo_over_nl = 0          # geometry check CUSUMs (nL at the nominal pulse)
        self.geo_under_nl = 0
        self.p_base = None            # the lowest pressure seen while running (None: none yet)
