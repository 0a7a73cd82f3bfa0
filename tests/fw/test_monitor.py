"""Safety monitor through the controller and the fake HAL (SR-5, SR-6, SR-9, SR-10, PR-1..3).

The fake camshaft follows the motor (a pulse every 50 steps); `hal.compare = True` makes the
rotation compare interrupt fire on the ms the armed count is reached, as on the board. The
`Books` helper keeps the plant-side truth of these tests: camshaft volume (nominal 250 nL a
step) against the programmed line (rate x time spent RUNNING). Runs on CPython and
MicroPython.
"""
from fakehal import advance, clinical, pump, run_for

from pump import codes
from pump import journal as jn
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.controller import Controller
from pump.hal import EV_DOOR, EV_PRESSURE
from pump.states import TRIGGERS

_NL_PER_STEP = 250
_H = 3600000


def _pump(tag, rate, vtbi_ul=240000, start=True, start_ticks=0, patient=False):
    return pump("mon-" + tag, rate, vtbi_ul, start, start_ticks, compare=True, patient=patient)


class Books:
    """Truth for a test: camshaft volume against the programmed line, excess tracked at
    every breakpoint (both are linear between wakes, so the maximum is at one)."""

    def __init__(self, ctl, hal, rate):
        self.ctl = ctl
        self.hal = hal
        self.rate = rate
        self.run_ms = 0
        self.max_excess_nl = 0
        self.ref_nl = 0            # excess when the fault began
        self.max_fault_nl = 0
        self.alarms = []
        ctl.listener = self._listen

    def _listen(self, kind, code, value):
        if kind == "alarm":
            self.alarms.append((self.hal.t, code))

    def delivered_nl(self):
        return self.hal.cam_steps() * _NL_PER_STEP

    def excess_nl(self):
        return self.delivered_nl() - self.rate * self.run_ms // 3600

    def fault_now(self):
        self.ref_nl = self.excess_nl()

    def run(self, ms, until_state=None):
        """Advance up to ms, stopping early when the state becomes until_state."""
        ctl = self.ctl
        hal = self.hal
        end = hal.t + ms
        while hal.t < end:
            t0 = hal.t
            advance(ctl, hal, end)
            if ctl.state == codes.RUNNING:
                self.run_ms += hal.t - t0
            e = self.excess_nl()
            if e > self.max_excess_nl:
                self.max_excess_nl = e
            if e - self.ref_nl > self.max_fault_nl:
                self.max_fault_nl = e - self.ref_nl
            if until_state is not None and ctl.state == until_state:
                return True
        return until_state is None

    def codes(self):
        return [c for _, c in self.alarms]


# --- nominal: no false alarm (PR-2 at unit level) ----------------------------------------------

def test_pr2_nominal_with_slot_jitter_pauses_and_tick_wrap_no_alarm():
    for rate in (10000, 600):
        hal, ctl = _pump("nom%d" % rate, rate, start_ticks=(1 << 30) - 1800000)
        hal.rotation.jitter = (2, -2, 1, -1)
        b = Books(ctl, hal, rate)
        b.run(3 * _H)
        assert ctl.request("pause", PATIENT) is None
        b.run(600000)
        assert ctl.request("resume", PATIENT) is None
        b.run(3 * _H)
        assert ctl.state == codes.RUNNING and b.alarms == [], b.alarms
        m = ctl.monitor
        # the books stay well inside every threshold (docs/monitor.md)
        assert m.f_nl <= m.tol_nl // 2 and m.cusum_nl <= m.cusum_h_nl // 2
        assert m.under_nl <= m.under_h_nl // 2
        assert b.max_excess_nl <= 2 * _NL_PER_STEP


def test_pr2_nominal_to_complete_no_alarm():
    hal, ctl = _pump("done", 10000, vtbi_ul=20000)
    b = Books(ctl, hal, 10000)
    assert b.run(3 * _H, codes.COMPLETE)
    assert b.codes() == [codes.INFUSION_COMPLETE]
    b.run(_H)
    assert b.codes() == [codes.INFUSION_COMPLETE]


# --- over-infusion (SR-5, PR-1) --------------------------------------------------------------

def _runaway(rate, num, den, onset_ms=1800000, limit_ms=4 * _H, patient=False):
    hal, ctl = _pump("run%d-%d" % (rate, num), rate, patient=patient)
    b = Books(ctl, hal, rate)
    b.run(onset_ms)
    assert b.alarms == []
    hal.cam_speed(num, den)
    b.fault_now()
    t0 = hal.t
    assert b.run(limit_ms, codes.LOCKOUT), (rate, num)
    return hal, ctl, b, b.alarms[0][0] - t0


def test_pr1_motor_runaway_stopped_within_0_1_ml():
    for rate in (10000, 5000, 600):
        for factor in (100, 10, 2):
            hal, ctl, b, latency = _runaway(rate, factor, 1)
            assert ctl.alarm == codes.OVER_INFUSION
            assert b.max_excess_nl <= 100000, (rate, factor, b.max_excess_nl)
            assert b.max_fault_nl <= 100000, (rate, factor, b.max_fault_nl)
            # the monitor stopped it on its own: enable dropped, clamp closed, cam still
            assert not hal.motor.enabled() and hal.clamped
            cam = hal.cam_steps()
            run_for(ctl, hal, 600000)
            assert hal.cam_steps() == cam


def test_pr1_runaway_x100_trips_on_the_crossing_pulse():
    hal, ctl, b, latency = _runaway(10000, 100, 1)
    # x100 at 10 mL/h: a pulse every 45 ms; stopped within a handful of them, by the compare
    # wake on a pulse edge (the fast envelope or the drift CUSUM, whichever passes first)
    assert latency < 1000, latency
    m = ctl.monitor
    assert m.f_nl > m.tol_nl or m.cusum_nl > m.cusum_h_nl
    assert b.max_fault_nl <= 100000


def test_pr1_drift_10_percent_detected_within_60_min():
    for rate in (10000, 5000, 600):
        hal, ctl, b, latency = _runaway(rate, 11, 10, onset_ms=2 * _H, limit_ms=2 * _H)
        assert ctl.alarm == codes.OVER_INFUSION
        assert latency <= 60 * 60000, (rate, latency)


def test_pr1_controller_rate_error_x2_within_0_25_ml():
    for rate in (10000, 5000, 600):
        hal, ctl = _pump("ctl%d" % rate, rate)
        b = Books(ctl, hal, rate)
        b.run(1800000)
        ctl.delivery.fault_num = 2         # the scheduler computes twice its rate
        b.fault_now()
        assert b.run(2 * _H, codes.LOCKOUT), rate
        assert ctl.alarm == codes.OVER_INFUSION
        assert b.max_fault_nl <= 250000 and b.max_excess_nl <= 250000, b.max_fault_nl


def test_sr5_monitor_uses_its_own_program_copy():
    hal, ctl = _pump("copy", 5000, start=False)
    # the controller's program (even with a recomputed check) and delivery's rate altered
    # after acceptance: the monitor's copy is not
    ctl.program.rate_ul_per_h = 50000
    ctl.program.check = ctl.program.compute_check()
    ctl.delivery.rate_ul_per_h = 50000
    b = Books(ctl, hal, 5000)
    assert ctl.request("start", CLINICIAN) is None
    assert b.run(_H, codes.LOCKOUT)
    assert ctl.alarm == codes.OVER_INFUSION
    assert b.max_excess_nl <= 100000, b.max_excess_nl


def test_sr5_corrupt_monitor_copy_refuses_to_deliver():
    hal, ctl = _pump("corrupt", 5000, start=False)
    ctl.monitor.prog.rate_ul_per_h = 6000          # RAM corruption of the copy
    assert ctl.request("start", CLINICIAN) is None
    pos = hal.motor.position()
    run_for(ctl, hal, 60000)
    assert ctl.state == codes.ALARM and ctl.alarm == codes.SENSOR_FAULT
    assert hal.motor.position() == pos and not hal.motor.enabled()


def test_sr5_pulses_while_not_commanded_over_infusion():
    for how in ("pause", "stop", "complete"):
        vtbi = 2000 if how == "complete" else 240000
        hal, ctl = _pump("unc-" + how, 10000, vtbi_ul=vtbi)
        run_for(ctl, hal, 600000 if how != "complete" else 2 * _H)
        if how == "pause":
            assert ctl.request("pause", PATIENT) is None
        elif how == "stop":
            assert ctl.request("stop", PATIENT) is None
        else:
            assert ctl.state == codes.COMPLETE
        run_for(ctl, hal, 600000)
        assert ctl.monitor.latched is None
        hal.spin(50)                                # one pulse: tolerated (slot edge)
        run_for(ctl, hal, 60000)
        assert ctl.monitor.latched is None
        hal.spin(50)                                # a second one: the camshaft is turning
        run_for(ctl, hal, 1)
        assert ctl.monitor.latched == codes.OVER_INFUSION, how
        assert not hal.motor.enabled() and hal.clamped
        assert ctl.state == codes.LOCKOUT and ctl.alarm == codes.OVER_INFUSION, how


def test_priming_pulses_allowed_then_uncommanded_caught():
    hal, ctl = _pump("prime", 10000, start=False)
    assert ctl.request("prime", CLINICIAN, True) is None
    run_for(ctl, hal, 120000)
    assert ctl.state == codes.PROGRAMMED and ctl.monitor.latched is None
    assert hal.cam_steps() >= 4000
    hal.spin(100)
    run_for(ctl, hal, 1)
    assert ctl.state == codes.LOCKOUT


# --- lockout and override (SR-6, SR-9) ----------------------------------------------------------

def _events(hal):
    """(event, alarm index, lockout) of every EVENT record in the journal, oldest first."""
    j = jn.Journal(hal.storage)
    out = []
    f = hal.storage.open("journal.bin", "rb")
    try:
        while True:
            rec = f.read(jn.REC_SIZE)
            if not rec:
                break
            parsed = j.parse(rec)
            if parsed is not None and parsed[0] == jn.EVENT:
                out.append((parsed[2], parsed[3][jn.P_EVENT], parsed[3][jn.P_ALARM],
                            parsed[3][jn.P_LOCKOUT_UNTIL_S]))
    finally:
        f.close()
    out.sort()
    return [e[1:] for e in out]


def test_sr6_lockout_refuses_restart_survives_power_loss_and_no_role_lifts_it_early():
    hal, ctl, b, _ = _runaway(5000, 10, 1, patient=True)
    assert ctl.state == codes.LOCKOUT
    until = ctl.lockout_until_s
    assert until == hal.rtc0 + b.alarms[0][0] // 1000 + 12 * 3600
    assert ctl.snapshot()["lockout_remaining_s"] == until - hal.rtc_s()   # shown, to its end
    p = clinical(2, 5000)
    assert ctl.request("program", CLINICIAN, p) == codes.LOCKOUT_ACTIVE
    assert ctl.request("start", CLINICIAN) == codes.INVALID_STATE
    assert ctl.request("resume", CLINICIAN) == codes.INVALID_STATE
    # the alarm is journalled with the lockout deadline
    ev = _events(hal)
    over = codes.index_of(codes.ALARMS, codes.OVER_INFUSION)
    lock = codes.trigger_event(TRIGGERS, "lockout")
    assert (lock, over, until) in ev
    # power loss: a new controller on the same board
    hal.t += 3600000
    hal.cam_speed(1, 1)                           # the pump was repaired meanwhile
    ctl2 = Controller(hal)
    assert ctl2.boot() == codes.LOCKOUT
    assert ctl2.lockout_until_s == until
    assert ctl2.request("program", CLINICIAN, p) == codes.LOCKOUT_ACTIVE
    assert ctl2.request("override", PATIENT) == codes.NOT_AUTHORISED
    assert ctl2.state == codes.LOCKOUT
    # no single role lifts it early (issue 11): the clinician's override is refused, the
    # service role may not give it, nor enter service mode to get round it
    assert ctl2.request("override", CLINICIAN) == codes.LOCKOUT_ACTIVE
    assert ctl2.request("override", SERVICE_ROLE) == codes.NOT_AUTHORISED
    assert ctl2.request("service", SERVICE_ROLE) == codes.INVALID_STATE
    assert ctl2.state == codes.LOCKOUT
    # at its end the clinician's override acknowledges it, journalled
    hal.t = b.alarms[0][0] + 12 * _H
    assert ctl2.request("override", CLINICIAN) is None
    assert ctl2.state == codes.IDLE and ctl2.lockout_until_s == 0
    ov = codes.trigger_event(TRIGGERS, "override")
    assert _events(hal)[-1] == (ov, 0, 0)
    assert ctl2.request("program", CLINICIAN, p) is None
    # 12 h off the drug: premedication first (SR-7)
    assert ctl2.request("start", CLINICIAN) == codes.PREMEDICATION_REQUIRED
    assert ctl2.premedicated(CLINICIAN) is None
    assert ctl2.request("start", CLINICIAN) is None
    # and after another power loss the lockout stays gone
    ctl3 = Controller(hal)
    assert ctl3.boot() == codes.PAUSED
    assert ctl3.request("resume", PATIENT) is None
    run_for(ctl3, hal, _H)
    assert ctl3.state == codes.RUNNING and ctl3.monitor.latched is None


def test_sr6_lockout_expires_after_12_h():
    hal, ctl, b, _ = _runaway(10000, 2, 1, patient=True)
    p = clinical(3, 10000)
    hal.t = b.alarms[0][0] + 12 * _H - 2000
    assert ctl.request("program", CLINICIAN, p) == codes.LOCKOUT_ACTIVE
    hal.t += 2000
    hal.cam_speed(1, 1)
    assert ctl.request("program", CLINICIAN, p) is None
    assert ctl.premedicated(CLINICIAN) is None
    assert ctl.request("start", CLINICIAN) is None
    b2 = Books(ctl, hal, 10000)
    b2.run(_H)
    assert ctl.state == codes.RUNNING and b2.alarms == []


def test_sr9_monitor_restarts_its_envelope_after_power_loss():
    hal, ctl = _pump("power", 10000)
    run_for(ctl, hal, _H + 5000)
    ctl2 = Controller(hal)
    assert ctl2.boot() == codes.PAUSED
    assert ctl2.monitor.prog is not None and ctl2.monitor.prog.pid == ctl2.program.pid
    assert ctl2.request("resume", PATIENT) is None
    b = Books(ctl2, hal, 10000)
    assert b.run(30 * _H, codes.COMPLETE)
    assert b.codes() == [codes.INFUSION_COMPLETE]
    # the envelope was capped at what the journal said was left: no room past the VTBI
    assert ctl2.monitor.env_nl == 240000000 - ctl2.monitor.prog.vtbi_nl + ctl2.monitor.cap_nl


# --- free flow (SR-5) ---------------------------------------------------------------------------

def test_sr5_free_flow_door_open_closes_clamp_at_once():
    for flagged in (True, False):
        hal, ctl = _pump("ff%d" % flagged, 10000)
        b = Books(ctl, hal, 10000)
        b.run(600000)
        assert not hal.clamped                   # open while delivering
        hal.door = False
        if flagged:
            ctl.signal(EV_DOOR)
        ctl.step(hal.ticks_ms())
        assert hal.clamped and not hal.motor.enabled()
        assert ctl.state == codes.ALARM and ctl.alarm == codes.DOOR_OPEN
        assert codes.FREE_FLOW in b.codes() and ctl.notice == codes.FREE_FLOW
        run_for(ctl, hal, 600000)
        assert hal.clamped
        hal.door = True
        assert ctl.request("resume", CLINICIAN) is None
        assert not hal.clamped and hal.motor.enabled()


def test_clamp_closed_whenever_not_delivering():
    hal, ctl = _pump("clamp", 10000, start=False)
    assert hal.clamped
    assert ctl.request("start", CLINICIAN) is None
    assert not hal.clamped
    assert ctl.request("pause", PATIENT) is None
    assert hal.clamped
    # door opened while paused: clamp already closed, nothing could flow
    hal.door = False
    ctl.signal(EV_DOOR)
    ctl.step(hal.ticks_ms())
    assert codes.FREE_FLOW != ctl.notice


# --- sensor faults and under-infusion (SR-10) --------------------------------------------------

def test_sr10_stuck_rotation_sensor_sensor_fault():
    # the window: 4 pulses (50 µL) of envelope with none seen; at 0.1 mL/h that is 30 min
    for rate, limit_ms in ((10000, 60000), (600, 6 * 60000), (100, 36 * 60000)):
        hal, ctl = _pump("stuck%d" % rate, rate, vtbi_ul=5000)
        run_for(ctl, hal, 2 * _H if rate < 1000 else 600000)
        assert ctl.state == codes.RUNNING
        hal.rotation.stuck()
        t0 = hal.t
        b = Books(ctl, hal, rate)
        assert b.run(2 * limit_ms, codes.ALARM), rate
        assert ctl.alarm == codes.SENSOR_FAULT, rate
        assert b.alarms[0][0] - t0 <= limit_ms, (rate, b.alarms[0][0] - t0)
        pos = hal.motor.position()
        run_for(ctl, hal, 600000)
        assert hal.motor.position() == pos and not hal.motor.enabled()


def test_sr10_partial_dropout_under_infusion():
    hal, ctl = _pump("drop", 5000)
    run_for(ctl, hal, 600000)
    hal.rotation.dropout(1, 2)                    # half the pulses lost
    b = Books(ctl, hal, 5000)
    assert b.run(_H, codes.ALARM)
    assert ctl.alarm == codes.UNDER_INFUSION


def test_sr10_delivery_too_slow_under_infusion():
    hal, ctl = _pump("slow", 10000)
    run_for(ctl, hal, 600000)
    ctl.delivery.fault_den = 2                    # the scheduler at half its rate
    b = Books(ctl, hal, 10000)
    assert b.run(_H, codes.ALARM)
    assert ctl.alarm == codes.UNDER_INFUSION


# --- occlusion (SR-10, PR-3) ----------------------------------------------------------------

def test_pr3_occlusion_alarmed_within_30_min_and_backed_off():
    for rate in (600, 5000, 10000):
        hal, ctl = _pump("occ%d" % rate, rate)
        hal.pressure = 8                          # venous
        run_for(ctl, hal, _H)
        hal.occlude()
        t0 = hal.t
        b = Books(ctl, hal, rate)
        assert b.run(_H, codes.ALARM), rate
        assert ctl.alarm == codes.OCCLUSION
        assert b.alarms[0][0] - t0 <= 30 * 60000, (rate, b.alarms[0][0] - t0)
        peak = hal.stored_nl()
        run_for(ctl, hal, 60000)                  # the back-off runs
        assert not hal.motor.enabled()
        # what is left in the line's compliance is what its release would bolus
        assert hal.stored_nl() <= 50000, (rate, peak, hal.stored_nl())
        assert hal.release() <= 50000
        run_for(ctl, hal, 600000)
        assert ctl.state == codes.ALARM and ctl.alarm == codes.OCCLUSION


def test_sr10_absolute_pressure_limit():
    hal, ctl = _pump("abs", 10000)
    run_for(ctl, hal, 600000)
    hal.pressure = 310
    ctl.signal(EV_PRESSURE)
    ctl.step(hal.ticks_ms())
    assert ctl.state == codes.ALARM and ctl.alarm == codes.OCCLUSION


def test_steady_venous_pressure_offset_is_not_an_occlusion():
    hal, ctl = _pump("venous", 10000, start=False)
    hal.pressure = 90                             # pump well below the patient
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 2 * _H)
    assert ctl.state == codes.RUNNING


# --- arithmetic ------------------------------------------------------------------------------

def test_envelope_integer_arithmetic_exact_and_small():
    hal, ctl = _pump("env", 100000, vtbi_ul=1000000, start=False)
    m = ctl.monitor
    m.t_last = 0
    # 36 s at 100 mL/h = 1 mL, exactly, in any split
    total = 0
    for dt in (1, 3599, 3600, 7, 28793):
        total += m._advance_env(m.t_last + dt)
    assert total == 1000000 and m.env_rem == 0
    # a gap far past the VTBI caps at it, without large ints
    add = m._advance_env(m.t_last + (1 << 29) - 1)
    assert m.env_nl == 1000000000 and add == 999000000
    assert m._advance_env(m.t_last + 1000) == 0


def test_occlusion_backoff_then_started_again_while_still_occluded():
    hal, ctl = _pump("occ-again", 10000)
    hal.pressure = 8
    run_for(ctl, hal, 600000)
    hal.occlude()
    b = Books(ctl, hal, 10000)
    assert b.run(_H, codes.ALARM) and ctl.alarm == codes.OCCLUSION
    assert ctl.delivery.backing_off and hal.motor.enabled()      # backing off now
    # cleared to PROGRAMMED meanwhile: the back-off is not delivery, it runs to its end
    assert ctl.request("stop", CLINICIAN) is None
    run_for(ctl, hal, 60000)
    assert not ctl.delivery.backing_off and not hal.motor.enabled()
    assert ctl.state == codes.PROGRAMMED and hal.stored_nl() <= 50000
    # started again with the line still closed: caught again within 100 mmHg
    stored = hal.stored_nl()
    assert ctl.request("start", CLINICIAN) is None
    b.run(_H, codes.ALARM)
    assert ctl.alarm == codes.OCCLUSION
    assert hal.stored_nl() <= stored + 60000


def test_occlusion_backoff_cut_short_by_a_resume():
    hal, ctl = _pump("occ-cut", 10000)
    hal.pressure = 8
    run_for(ctl, hal, 600000)
    hal.occlude()
    b = Books(ctl, hal, 10000)
    assert b.run(_H, codes.ALARM) and ctl.delivery.backing_off
    hal.release()                                 # cleared at once; resumed at once
    assert ctl.request("resume", CLINICIAN) is None
    assert not ctl.delivery.backing_off and ctl.state == codes.RUNNING
    b2 = Books(ctl, hal, 10000)
    b2.run(_H)
    assert ctl.state == codes.RUNNING and b2.alarms == []
