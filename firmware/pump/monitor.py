"""The independent safety monitor (SR-5, SR-10): watches the camshaft with its own sensor
and its own copy of the program, and stops the pump on its own.

It does not trust delivery.py. Its inputs are the rotation sensor (4 pulses a stroke, one
every `pulse_nl` = stroke_nl / 4 of nominal volume), the clock, the pressure sensor, the
door/cassette switch, and what the controller tells it: a program was accepted (`load`),
delivery started (`on_start`), stopped (`on_stop`), the motor was asked to move outside
delivery (`on_move`: priming). Its outputs are the motor enable line, the downstream clamp,
the rotation compare value, and an alarm handed to the controller (`sink.raise_alarm`,
which latches it, journals it and, for OVER_INFUSION, starts the lockout).

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
- dead/stuck sensor: the envelope grew by 4 pulses with no pulse at all -> SENSOR_FAULT.
- uncommanded motion: more than one pulse beyond what was allowed while delivery is not
  running (paused, stopped, alarm, after a prime) -> OVER_INFUSION.
- occlusion: pressure >= 300 mmHg, or a rise of >= 100 mmHg over the running baseline that
  is still rising -> OCCLUSION, then the camshaft is backed off by the volume the line's
  compliance holds, so little is left to bolus on release (PR-3).
- free flow: the door/cassette switch open while the clamp is open -> clamp closed and
  motor enable dropped at once, FREE_FLOW journalled and annunciated.

Steady path (a step, a compare wake): small-int arithmetic on attributes only; nothing is
allocated on MicroPython (tests/fw/test_monitor_alloc.py). Every value stays below 2**30.
"""
from pump.codes import FREE_FLOW, OCCLUSION, OVER_INFUSION, SENSOR_FAULT, UNDER_INFUSION
from pump.compat import const
from pump.hal import EV_ROTATION
from pump.program import Program

PULSES_PER_STROKE = const(4)
# Thresholds in half pulses (6250 nL at the nominal 50 µL stroke): see docs/monitor.md.
_TOL_H = const(7)             # fast envelope: 3.5 pulses = 43.75 µL
_CREDIT_H = const(3)          # envelope ahead of the pulses at most 1.5 pulses = 18.75 µL
_CUSUM_H = const(2)           # drift CUSUM threshold: 1 pulse = 12.5 µL
_CUSUM_K_DIV = const(20)      # drift CUSUM allowance k = 1/20 = 5 % of the envelope
_UNDER_H = const(12)          # under-infusion CUSUM threshold: 6 pulses = 75 µL
_UNDER_K_DIV = const(4)       # under-infusion allowance k = 1/4 = 25 %
_SENSOR_H = const(8)          # envelope growth with no pulse at all: 4 pulses = 50 µL
STOP_SLACK = const(1)         # pulses tolerated while the motor is not commanded
_CHECKPOINT_MS = const(300000)  # a drift check at an edge at least every 5 min or so
_MAX_UNITS = const(10000)     # 3.6 s units in one envelope update (10 h) before capping
P_OCCLUSION_MMHG = const(300)  # absolute downstream limit (the board's comparator too)
P_RISE_MMHG = const(100)      # rise over the running baseline, while still rising
_P_RELIEVED_MMHG = const(20)  # back off again if more than this is left after one pass
_BACKOFF_MS_PER_STEP = const(4)
_BACKOFF_MAX_STROKES = const(5)
_BACKOFF_PASSES = const(2)
_NO_BASE = const(1 << 29)     # pressure baseline not yet known


class Monitor:
    """One per controller. `sink` is the controller: raise_alarm(code) -> None or a code,
    annunciate(code)."""

    def __init__(self, hal, sink, stroke_nl=50000, steps_per_stroke=200,
                 compliance_nl_per_mmhg=500):
        if stroke_nl % (2 * PULSES_PER_STROKE) or steps_per_stroke % PULSES_PER_STROKE:
            raise ValueError("monitor calibration: %d nL, %d steps" % (stroke_nl,
                                                                       steps_per_stroke))
        self.hal = hal
        self.sink = sink
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
        self.compliance = compliance_nl_per_mmhg
        self.prog = None              # the monitor's own copy (pump.program.Program)
        self.rate = 0                 # µL/h, from the copy
        self.cap_nl = 0               # envelope cap: the VTBI still to go at load
        self.n_check = 1              # pulses between drift checkpoints
        self.running = False
        self.clamp_open = False
        self.latched = None           # the monitor's latest trip (None after a start)
        self.pending = None           # a trip found where it cannot be raised (in a fire)
        self.free_flow = False        # the clamp had to close with the door open
        self.backoff = False          # an occlusion back-off is moving the camshaft
        self.backoff_end = 0
        self.backoff_passes = 0
        self.trips = 0
        self.t_now = 0
        self.t_last = 0
        self.armed = -1
        self.c_stop = 0               # count when the motor was last released/stopped
        self.allow = 0                # pulses allowed beyond c_stop (prime, back-off)
        self._reset_books()
        hal.clamp(True)               # closed until delivery starts (SR-5)
        c = hal.rotation.count()
        self.c_last = c
        self.c_stop = c
        self._arm(c + STOP_SLACK + 1)

    # --- what the controller tells it ---------------------------------------------------
    def load(self, prog, delivered_nl=0):
        """A program was accepted (or restored at boot): keep a CRC-checked copy of it."""
        self.prog = None
        self.rate = 0
        self.cap_nl = 0
        if prog is not None:
            copy = Program(prog.pid, prog.rate_ul_per_h, prog.vtbi_nl, prog.drug,
                           prog.conc_pg_per_ml, prog.dose_ng_per_day, prog.bag_hours,
                           prog.flags)
            if copy.check == prog.check and copy.rate_ul_per_h > 0:
                self.prog = copy
                self.rate = copy.rate_ul_per_h
                left = copy.vtbi_nl - delivered_nl
                self.cap_nl = left if left > 0 else 0
                period_ms = self.pulse_nl * 3600 // self.rate
                n = _CHECKPOINT_MS // period_ms if period_ms > 0 else 1
                self.n_check = n if n > 0 else 1
        self._reset_books()

    def on_start(self, now):
        """Delivery starts or resumes at now. Called inside a state transition: a fault
        found here is kept pending and raised at the next check (the controller steps at
        once: the compare is armed at the current count)."""
        hal = self.hal
        c = hal.rotation.count()
        self.latched = None
        self.backoff = False
        self.c_last = c
        self.t_last = now
        self.edge_ok = False
        self.since_pulse_nl = 0
        p = hal.pressure_mmhg()
        if p < self.p_base:
            self.p_base = p
        self.p_prev = p
        prog = self.prog
        if self.pending is None and (prog is None or not prog.intact()):
            # the monitor's own copy is missing or corrupt: it cannot watch, so no delivery
            self.pending = SENSOR_FAULT
        if self.pending is not None:
            hal.motor.enable(False)
            self._arm(c)
            return
        self.running = True
        if hal.door_closed():
            hal.clamp(False)
            self.clamp_open = True
        self._arm_running(c)

    def on_move(self, steps):
        """The motor is asked to move `steps` outside delivery (priming, line disconnected)."""
        hal = self.hal
        c = hal.rotation.count()
        self.c_stop = c
        self.allow = (steps if steps >= 0 else -steps) // self.steps_per_pulse + 1
        if hal.door_closed():
            hal.clamp(False)
            self.clamp_open = True
        self._arm(c + self.allow + STOP_SLACK + 1)

    def on_stop(self, now):
        """Delivery (or a prime) stopped at now: settle the books, close the clamp, and from
        now on every pulse beyond STOP_SLACK is uncommanded motion."""
        hal = self.hal
        c = hal.rotation.count()
        if self.running:
            self.running = False
            code = self._account(now, c, False)
            if code is not None and self.pending is None:
                self._safe_stop()
                self.pending = code
        elif self.latched is None and c - self.c_stop > self.allow + STOP_SLACK:
            self._safe_stop()
            self.pending = OVER_INFUSION
        if self.backoff:                  # a back-off cut short: the motor was stopped
            self.backoff = False
            hal.motor.enable(False)
        self.edge_ok = False
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
        the compare fired). May raise an alarm through the sink."""
        hal = self.hal
        self.t_now = now
        c = hal.rotation.count()
        if self.pending is not None:
            code = self.pending
            self.pending = None
            self._trip(code, now, c)
            return
        if self.clamp_open and not hal.door_closed():
            # free flow: the cassette/door opened with the line open (SR-5)
            self._safe_stop()
        if self.free_flow:
            self.free_flow = False
            self.sink.annunciate(FREE_FLOW)
        if self.backoff and hal.ticks_diff(now, self.backoff_end) >= 0:
            self._end_backoff(now, c)
            c = hal.rotation.count()
        edge = False
        if flags & EV_ROTATION:
            edge = c == self.armed        # woken by the compare, on the very pulse
            self.armed = -1               # the counter disarms when it fires
        if self.running:
            code = self._account(now, c, edge)
            if code is None:
                code = self._pressure()
            if code is not None:
                self._trip(code, now, c)
                return
            self._arm_running(c)
            return
        if c - self.c_stop > self.allow + STOP_SLACK:
            if self.latched is None:
                self._trip(OVER_INFUSION, now, c)
                return
            # already stopped for a fault: keep it stopped, follow the count
            self._safe_stop()
            self.c_stop = c
        self._arm(self.c_stop + self.allow + STOP_SLACK + 1)

    def compare(self, now):
        """The rotation compare fired while delivery runs: the edge check alone (the board's
        soft-IRQ path, through Controller.on_rotation). Exactly check(now, EV_ROTATION) when
        nothing else is going on (running, nothing pending, no back-off, no free flow to
        report, door closed or clamp closed); otherwise it does nothing and returns False,
        and the caller runs the full step. Returns True when done."""
        if not self.running or self.pending is not None or self.backoff or self.free_flow:
            return False
        hal = self.hal
        if self.clamp_open and not hal.door_closed():
            return False
        self.t_now = now
        c = hal.rotation.count()
        edge = c == self.armed            # woken by the compare, on the very pulse
        self.armed = -1                   # the counter disarms when it fires
        code = self._account(now, c, edge)
        if code is None:
            code = self._pressure()
        if code is not None:
            self._trip(code, now, c)
            return True
        self._arm_running(c)
        return True

    def wake(self, wake):
        """The controller's next wake, brought forward when the monitor needs a step."""
        if self.pending is not None:
            return self.t_now
        if self.backoff and self.hal.ticks_diff(self.backoff_end, wake) < 0:
            return self.backoff_end
        return wake

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
        if f > self.tol_nl:
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
        if u > self.under_h_nl:
            return UNDER_INFUSION
        return None

    def _advance_env(self, now):
        """Envelope growth (nL) from t_last to now at the programmed rate, capped."""
        dt = self.hal.ticks_diff(now, self.t_last)
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
        p = self.hal.pressure_mmhg()
        if p < self.p_base:
            self.p_base = p
        rising = p > self.p_prev
        self.p_prev = p
        if p >= P_OCCLUSION_MMHG or (rising and p - self.p_base >= P_RISE_MMHG):
            return OCCLUSION
        return None

    # --- acting -------------------------------------------------------------------------------
    def _safe_stop(self):
        """Stop without asking anyone: motor power stage off, clamp closed (SR-5)."""
        self.hal.motor.enable(False)
        self._close_clamp()

    def _close_clamp(self):
        hal = self.hal
        if self.clamp_open and not hal.door_closed():
            self.free_flow = True
            hal.motor.enable(False)
        hal.clamp(True)
        self.clamp_open = False

    def _trip(self, code, now, c):
        self.running = False
        self.latched = code
        self.trips += 1
        self._safe_stop()
        self.c_stop = c
        self.c_last = c
        self.allow = 0
        self.edge_ok = False
        if self.sink.raise_alarm(code) is not None:
            # the state table has no way into ALARM/LOCKOUT from here: still journal it
            self.sink.annunciate(code)
        if self.free_flow:
            self.free_flow = False
            self.sink.annunciate(FREE_FLOW)
        if code == OCCLUSION:
            self.backoff_passes = 0
            self._start_backoff(now)
        self._arm(self.c_stop + self.allow + STOP_SLACK + 1)

    def _start_backoff(self, now):
        """Run the camshaft backwards by the volume the line's compliance holds above the
        baseline pressure, so that releasing the occlusion gives next to no bolus (PR-3)."""
        hal = self.hal
        base = self.p_base if self.p_base != _NO_BASE else 0
        rise = hal.pressure_mmhg() - base
        if rise <= _P_RELIEVED_MMHG or self.backoff_passes >= _BACKOFF_PASSES:
            return
        self.backoff_passes += 1
        sps = self.steps_per_stroke
        nl = rise * self.compliance
        steps = (nl * sps + self.stroke_nl - 1) // self.stroke_nl
        if steps > _BACKOFF_MAX_STROKES * sps:
            steps = _BACKOFF_MAX_STROKES * sps
        ms = steps * _BACKOFF_MS_PER_STEP
        c = hal.rotation.count()
        self.c_stop = c
        self.allow = steps // self.steps_per_pulse + 1
        hal.motor.enable(True)
        hal.motor.move(-steps, ms)
        self.backoff = True
        self.backoff_end = hal.ticks_add(now, ms + 1)
        self._arm(c + self.allow + STOP_SLACK + 1)

    def _end_backoff(self, now, c):
        hal = self.hal
        hal.motor.stop()
        hal.motor.enable(False)
        self.backoff = False
        if c - self.c_stop > self.allow + STOP_SLACK:
            c = self.c_stop + self.allow      # more than asked: caught as uncommanded next
        self.c_stop = c
        self.allow = 0
        self._start_backoff(now)              # a second pass if pressure is still up

    def _arm_running(self, c):
        """Compare at the count that would take the fast envelope past TOL, or at the next
        drift checkpoint, whichever comes first. A compare still pending at a lower count
        is kept: it will fire on a pulse edge, where the drift CUSUM is exact (re-arming
        it further at every segment wake would push the edges away for ever)."""
        n = (self.tol_nl - self.f_nl) // self.pulse_nl + 1
        if n > self.n_check:
            n = self.n_check
        target = c + n
        if c < self.armed < target:
            target = self.armed
        self._arm(target)

    def _arm(self, count):
        if count != self.armed:           # an armed compare stays armed until it fires
            self.armed = count
            self.hal.rotation.arm(count)

    def _reset_books(self):
        self.env_nl = 0               # envelope: what may have been delivered by now
        self.env_rem = 0              # remainder of the rate x time product (µL/h x ms)
        self.f_nl = 0
        self.cusum_nl = 0
        self.under_nl = 0
        self.since_pulse_nl = 0
        self.edge_ok = False
        self.c_ref = 0
        self.e_ref = 0
        self.p_base = _NO_BASE
        self.p_prev = 0
        self.backoff_passes = 0
