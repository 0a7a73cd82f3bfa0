"""Each detector of the safety monitor at its documented threshold (docs/monitor.md §3):
one unit inside it nothing happens, one unit past it the pump is stopped with its code.

The detectors back each other up (a runaway trips the fast envelope and the drift CUSUM
together), so a threshold loosened in one of them goes unnoticed by a whole-pump test;
here the monitor runs alone on the fake board, its sensor's pulses and the clock set by
hand, at 3.6 mL/h, where the envelope grows by exactly 1 nL a millisecond. A pulse is
12.5 µL (12 500 nL). Runs on CPython and MicroPython.
"""
from fakehal import FakeHal, tmpdir

from pump import codes, program
from pump.hal import EV_ROTATION
from pump.monitor import Monitor

_RATE = 3600                      # µL/h: 1 nL of envelope per ms


class Rig:
    """The monitor alone on the fake board, its program loaded and delivery started."""

    def __init__(self, tag, rate=_RATE, vtbi_ul=240000, delivered_nl=0, start=True,
                 stroke_nl=None):
        hal = FakeHal(tmpdir("det-" + tag))
        self.hal = hal
        # the nominal calibration (50 µL) unless a stroke is given
        self.m = Monitor(hal) if stroke_nl is None else Monitor(hal, stroke_nl)
        self.m.load(program.basic(1, rate, vtbi_ul), delivered_nl)
        self.t0 = hal.t
        if start:
            assert self.m.on_start(hal.ticks_ms()) is True

    def check(self, at_ms, pulses, edge=False):
        """The monitor's check at `at_ms` after the start with `pulses` counted since; with
        `edge`, woken by the rotation compare."""
        hal = self.hal
        hal.t = self.t0 + at_ms
        hal.rotation.pulses = pulses
        code = self.m.check(hal.ticks_ms(), EV_ROTATION if edge else 0)
        if code is not None:
            # it stopped the pump itself: enable low, clamp closed
            assert hal.clamped and not hal.motor.enabled()
            assert self.m.latched == code
        return code

    def armed(self):
        return self.hal.rotation.armed


def _at_and_past(tag, before, at, past, code):
    """A detector's limit to the nL: the same checks `before` on two fresh rigs, then `at`
    (envelope ms, pulses) on one, exactly at the limit: tolerated; and `past` on the other,
    1 nL beyond it: `code`."""
    for last, want in ((at, None), (past, code)):
        r = Rig("%s-%s" % (tag, "at" if want is None else "past"))
        for ms, pulses in before:
            assert r.check(ms, pulses) is None
        assert r.check(*last) == want


# --- fast envelope: F = max(-1.5 v, F + dO - dE) > 3.5 v -------------------------------------

def test_sr5_fast_envelope_trips_past_3_5_pulses_beyond_the_envelope():
    # 13 pulses (162.5 µL) against 118.75 µL of envelope: F = 43.75 µL exactly, tolerated
    # 1 nL less envelope: F = 43.751 µL, over
    _at_and_past("fe", [], (118750, 13), (118749, 13), codes.OVER_INFUSION)
    # the same over several checks (the books add up)
    r = Rig("fe-steps")
    assert r.check(40000, 5) is None and r.check(80000, 9) is None
    assert r.check(118749, 13) == codes.OVER_INFUSION


def test_sr5_under_delivery_is_not_banked_beyond_1_5_pulses():
    # 37.5 µL of envelope with no pulse: F floors at -18.75 µL, not -37.5 µL; then 14 pulses
    # (175 µL) in 112.5 µL more: F = -18.75 + 175 - 112.5 = 43.75 µL exactly, tolerated (the
    # geometry check stays at 48.4 µL, under its 50)
    _at_and_past("credit", [(37500, 0)], (150000, 14), (149999, 14),   # F = 43.751 µL
                 codes.OVER_INFUSION)


# --- drift CUSUM at pulse edges: S = max(0, S + dO - 1.05 dE) > 1 v ---------------------------

def _edge_rig(tag):
    r = Rig(tag)
    assert r.armed() == 2             # armed while stopped (1 pulse tolerated): kept
    assert r.check(25000, 2, edge=True) is None               # the first edge: the reference
    assert r.armed() == 6             # F = 0: the count at which F would pass 3.5 v
    return r


def test_sr5_drift_cusum_trips_past_one_pulse_at_an_edge():
    # 4 pulses (50 µL) in 35.714 µL of envelope: S = 50 - 35.714 - 1.785 = 12.501 µL
    assert _edge_rig("cu-past").check(60714, 6, edge=True) == codes.OVER_INFUSION
    # 1 nL more envelope: S = 12.5 µL exactly, tolerated
    assert _edge_rig("cu-at").check(60715, 6, edge=True) is None
    # judged only on a pulse edge: not at an ordinary check, nor a compare off its count
    assert _edge_rig("cu-noedge").check(60714, 6) is None
    assert _edge_rig("cu-offcount").check(60714, 7, edge=True) is None


def test_sr5_drift_cusum_adds_up_over_edges():
    r = _edge_rig("cu-sum")
    assert r.check(65000, 6, edge=True) is None               # S = 50 - 40 - 2 = 8 µL
    assert r.armed() == 9                                     # F = 10 µL: 3 pulses to go
    assert r.check(96429, 9, edge=True) is None               # S = 8 + 37.5 - 33 = 12.5
    r = _edge_rig("cu-sum-past")
    assert r.check(65000, 6, edge=True) is None
    assert r.check(96428, 9, edge=True) == codes.OVER_INFUSION


# --- under-infusion: G- = max(0, G- + (1 - 1/8) dE - dV_geo) > 6 nominal pulses ------------
# (at the nominal calibration the geometry check is the stricter of the two under-infusion
# CUSUMs: U = max(0, U + 0.75 dE - dO) > 6 pulses can only trip with it or after it)

def test_sr10_under_infusion_trips_past_six_pulses_behind():
    # 6 pulses in 171.428 µL of envelope: G- = 150 - 75 = 75 µL exactly, tolerated
    _at_and_past("un", [], (171428, 6), (171429, 6), codes.UNDER_INFUSION)  # G- = 75.001 µL


def test_sr10_under_infusion_starts_from_zero_after_a_lead():
    # ahead early (the CUSUM floors at 0, a lead is not banked), then behind: a pulse every
    # 40 s where 35 are due (22.5 µL behind each), 67.5 µL at 130 s, 75 µL 8.571 s later
    r = Rig("un-floor")
    for at, pulses in ((10000, 4), (50000, 5), (90000, 6), (130000, 7), (138571, 7)):
        assert r.check(at, pulses) is None, at
    assert r.check(138572, 7) == codes.UNDER_INFUSION


# --- dead sensor: envelope growth with no pulse > 4 v -----------------------------------------

def test_sr10_dead_sensor_after_four_pulses_of_envelope_without_one():
    r = Rig("dead")
    assert r.check(20000, 0) is None and r.check(50000, 0) is None
    assert r.check(50001, 0) == codes.SENSOR_FAULT
    # a pulse starts the window again
    r = Rig("dead-again")
    assert r.check(30000, 1) is None and r.check(80000, 1) is None
    assert r.check(80001, 1) == codes.SENSOR_FAULT


def test_sr5_no_program_copy_no_delivery():
    r = Rig("nocopy", start=False)
    r.m.load(None, 0)
    assert r.m.on_start(r.hal.ticks_ms()) is False
    assert r.check(1000, 0) == codes.SENSOR_FAULT


# --- the envelope's cap -------------------------------------------------------------------------

def test_sr4_sr5_envelope_capped_at_the_vtbi_left():
    # 1 mL to infuse: after 1.1 mL of time only 1 mL may have gone
    assert Rig("cap-at", vtbi_ul=1000).check(1100000, 83) is None       # 1.0375 mL
    assert Rig("cap-past", vtbi_ul=1000).check(1100000, 84) == codes.OVER_INFUSION
    # what was delivered before (a reboot's journal) is not allowed again
    assert Rig("cap-left", vtbi_ul=1000, delivered_nl=400000).check(700000, 51) is None
    assert Rig("cap-left2", vtbi_ul=1000, delivered_nl=400000).check(700000, 52) == \
        codes.OVER_INFUSION
    assert Rig("cap-none", vtbi_ul=1000, delivered_nl=1000000).check(10000, 4) == \
        codes.OVER_INFUSION


def test_envelope_saturates_after_a_10_hour_gap():
    # a wake 10 h after the last one: the envelope is at its cap (240 mL), not 36 mL
    assert Rig("gap").check(36000000, 19200) is None
    assert Rig("gap-short").check(35999999, 19200) == codes.OVER_INFUSION


# --- the compare: where the board wakes the monitor ---------------------------------------------

def test_sr5_compare_armed_at_the_trip_count_or_the_drift_checkpoint():
    # after the first edge (count 2, the envelope at 25 µL: F = 0), the next compare is at
    # min(the count at which F passes 3.5 v, the next 5-minute drift checkpoint)
    # (at 0.1 mL/h a pulse every 7.5 min: every pulse is a checkpoint, the first one too)
    for rate, first, at_ms, armed in ((3600, 2, 25000, 6), (10000, 2, 9000, 6),
                                      (600, 2, 150000, 6), (100, 1, 450000, 2)):
        r = Rig("arm-%d" % rate, rate=rate)
        assert r.armed() == first, (rate, r.armed())
        assert r.check(at_ms, first, edge=True) is None
        assert r.armed() == armed, (rate, r.armed())


# --- occlusion ----------------------------------------------------------------------------------

def test_sr10_occlusion_at_300_mmhg_or_100_above_the_running_baseline_still_rising():
    r = Rig("p-abs-at")
    r.hal.pressure = 299
    # 299 is 291 above the venous baseline (8): not an absolute trip, but a rising 100+
    assert r.check(12500, 1) == codes.OCCLUSION
    r = Rig("p-rise-at")
    r.hal.pressure = 107                              # 99 above the baseline
    assert r.check(12500, 1) is None
    r.hal.pressure = 108                              # 100 above it, and rising
    assert r.check(25000, 2) == codes.OCCLUSION
    # the baseline is the lowest pressure seen while running
    r = Rig("p-base")
    r.hal.pressure = 60
    assert r.check(12500, 1) is None
    r.hal.pressure = 0
    assert r.check(13000, 1) is None                  # back to venous (8): the baseline
    r.hal.pressure = 108
    assert r.check(25000, 2) == codes.OCCLUSION


def test_sr10_absolute_occlusion_limit_without_a_rise():
    # a pump started against a high venous offset: the baseline is that offset, no rise
    r = Rig("p-abs", start=False)
    r.hal.pressure = 299
    assert r.m.on_start(r.hal.ticks_ms()) is True
    assert r.check(12500, 1) is None
    r.hal.pressure = 300
    assert r.check(25000, 2) == codes.OCCLUSION


def test_sr10_pressure_still_high_at_a_restart_trips_only_when_it_rises_again():
    r = Rig("p-restart")
    assert r.check(12500, 1) is None                  # baseline 8 mmHg
    r.m.on_stop(r.hal.ticks_ms())
    r.hal.pressure = 150
    assert r.m.on_start(r.hal.ticks_ms()) is True
    assert r.check(25000, 2) is None                  # high, but not rising
    r.hal.pressure = 151
    assert r.check(37500, 3) == codes.OCCLUSION


# --- the geometry check alone: G+ = max(0, G+ + dV_geo - (1 + 1/8) dE) > 4 nominal pulses ------

def test_sr5_geometry_check_trips_past_four_pulses_when_the_fast_envelope_has_credit():
    # 37.5 µL of envelope with no pulse: F floors at -18.75 µL, G+ at 0; then 12 pulses
    # (150 µL) in 88.889 µL: G+ = 150 - 100 = 50 µL exactly, tolerated (F = 42.36 µL)
    _at_and_past("geo", [(37500, 0)], (126389, 12), (126388, 12),      # G+ = 50.001 µL
                 codes.OVER_INFUSION)


# --- while delivery is not running: one pulse of slack, then uncommanded motion -------------

def test_sr5_one_pulse_tolerated_while_stopped_the_second_trips():
    r = Rig("stop-idle", start=False)
    assert r.armed() == 2                     # the compare at the count that would trip
    assert r.check(1000, 1) is None
    assert r.check(2000, 2, edge=True) == codes.OVER_INFUSION
    # after a stop: counted from where delivery stopped
    r = Rig("stop-after")
    assert r.check(25000, 2) is None
    r.m.on_stop(r.hal.ticks_ms())
    assert r.armed() == 4 and not r.m.running
    assert r.check(30000, 3) is None
    assert r.check(31000, 4, edge=True) == codes.OVER_INFUSION


def test_sr5_priming_and_back_off_allow_their_own_pulses_and_not_one_more():
    """A move of `steps` outside delivery allows steps / 50 + 1 pulses (the sensor may sit
    just before a slot), plus the one of slack; the compare is armed at the next."""
    r = Rig("prime", start=False)
    r.m.on_move(400)                          # 8 pulses' worth
    assert r.armed() == 11
    assert r.check(5000, 10) is None
    assert r.check(6000, 11, edge=True) == codes.OVER_INFUSION
    r = Rig("backoff", start=False)
    r.hal.rotation.pulses = 3
    r.m.on_backoff(-120)                      # backwards: 2.4 pulses' worth -> 3
    assert r.armed() == 3 + 3 + 2
    assert r.check(5000, 7) is None
    assert r.check(6000, 8) == codes.OVER_INFUSION


def _stopped_at(tag, count):
    """The monitor stopped (delivery ran, then stopped) with the sensor at `count`."""
    r = Rig(tag)
    r.hal.t = r.t0 + count * 12500
    r.hal.rotation.pulses = count
    r.m.on_stop(r.hal.ticks_ms())
    assert r.m.trips == 0
    return r


def test_sr5_after_a_back_off_ends_every_pulse_beyond_its_allowance_counts():
    # the pass moved less than allowed: from where it stopped, one pulse of slack
    r = _stopped_at("bo-short", 8)
    r.m.on_backoff(-120)                      # 3 allowed
    r.hal.rotation.pulses = 10
    r.m.on_move_end()
    assert r.armed() == 12
    assert r.check(105000, 11) is None
    assert r.check(106000, 12) == codes.OVER_INFUSION
    # it moved more than allowed before anyone looked: the excess is not forgiven
    r = _stopped_at("bo-long", 8)
    r.m.on_backoff(-120)
    r.hal.rotation.pulses = 14                # 3 allowed + 1 slack + 2 more
    r.m.on_move_end()
    assert r.check(105000, 14) == codes.OVER_INFUSION
    # exactly the allowance and its slack: forgiven, one more pulse of slack from there
    r = _stopped_at("bo-exact", 8)
    r.m.on_backoff(-120)
    r.hal.rotation.pulses = 12
    r.m.on_move_end()
    assert r.armed() == 14
    assert r.check(105000, 13) is None
    assert r.check(106000, 14) == codes.OVER_INFUSION


def test_sr5_a_stop_after_a_prime_tolerates_its_allowance_and_one_pulse_more():
    # primed 400 steps (8 pulses, 9 allowed) from count 8: up to 18 in order at the stop
    for moved, trip in ((9, False), (10, False), (11, True)):
        r = _stopped_at("prime-stop-%d" % moved, 8)
        r.m.on_move(400)
        r.hal.rotation.pulses = 8 + moved
        r.m.on_stop(r.hal.ticks_ms())
        got = r.check(200000, 8 + moved)
        assert got == (codes.OVER_INFUSION if trip else None), (moved, got)


def test_sr5_the_compare_path_keeps_the_drift_cusum_on_pulse_edges():
    # as test_sr5_drift_cusum_trips_past_one_pulse_at_an_edge, through Monitor.compare
    for at, trip in ((60714, True), (60715, False)):
        r = Rig("cmp-drift-%d" % at)
        r.hal.t = r.t0 + 25000
        r.hal.rotation.pulses = 2
        assert r.m.compare(r.hal.ticks_ms()) is True and r.armed() == 6
        r.hal.t = r.t0 + at
        r.hal.rotation.pulses = 6
        assert r.m.compare(r.hal.ticks_ms()) is (not trip), at
        if trip:
            assert r.check(at, 6) == codes.OVER_INFUSION


def test_sr5_after_a_trip_the_pump_is_kept_stopped_without_a_second_alarm():
    r = Rig("latched")
    assert r.check(118749, 13) == codes.OVER_INFUSION
    assert r.m.trips == 1 and r.armed() == 15
    r.hal.motor.enable(True)                  # whatever re-enabled the motor
    r.hal.clamp(False)
    assert r.check(120000, 20) is None        # the camshaft still turns: no second trip
    assert r.m.trips == 1 and not r.hal.motor.enabled() and r.hal.clamped
    assert r.armed() == 22                    # following the count


def test_sr5_a_refused_start_keeps_the_motor_off_and_reports_at_once():
    r = Rig("refused", start=False)
    r.m.load(None, 0)
    r.hal.motor.enable(True)
    assert r.m.on_start(r.hal.ticks_ms()) is False
    assert not r.hal.motor.enabled() and not r.m.running
    now = r.hal.ticks_ms()
    assert r.m.wake(now + 5000) == now        # step again at once
    assert r.check(0, 0) == codes.SENSOR_FAULT
    assert r.m.wake(12345) == 12345


def test_sr5_a_stop_settles_the_books_a_runaway_found_there_is_reported():
    r = Rig("stop-trip")
    r.hal.rotation.pulses = 13
    r.hal.t = r.t0 + 100000                   # 162.5 µL against 100: F = 62.5 µL
    r.hal.motor.enable(True)
    r.m.on_stop(r.hal.ticks_ms())
    assert not r.hal.motor.enabled() and r.hal.clamped
    now = r.hal.ticks_ms()
    assert r.hal.ticks_diff(r.m.wake(now + 5000), now) <= 0     # step again at once
    assert r.check(100000, 13) == codes.OVER_INFUSION and r.m.trips == 1
    # a stop in order: nothing reported, the motor enable left to the controller
    r = Rig("stop-ok")
    r.hal.t = r.t0 + 25000
    r.hal.rotation.pulses = 2
    r.m.on_stop(r.hal.ticks_ms())
    assert r.check(26000, 2) is None and r.m.trips == 0


def test_sr5_free_flow_the_clamp_closes_and_it_is_told_once():
    r = Rig("ff")
    assert r.m.clamp_open
    r.hal.clamp(False)
    r.hal.door = False                        # the cassette pulled out with the line open
    assert r.m.compare(r.hal.ticks_ms()) is False    # not the compare path's to handle
    assert r.check(1000, 0) is None           # no detector code: the controller is told
    assert r.hal.clamped and not r.hal.motor.enabled()
    assert r.m.take_free_flow() is True and r.m.take_free_flow() is False
    # the door opened with the clamp already closed: nothing to tell
    r = Rig("ff-closed", start=False)
    r.hal.door = False
    assert r.check(1000, 0) is None and r.m.take_free_flow() is False


def test_sr5_the_compare_path_checks_a_pulse_and_arms_the_next():
    r = Rig("cmp")
    r.hal.t = r.t0 + 25000
    r.hal.rotation.pulses = 2
    assert r.m.compare(r.hal.ticks_ms()) is True
    assert r.armed() == 6 and r.m.wake(777) == 777
    # a runaway pulse: the compare path stops the pump at once, the step reports it
    r.hal.t = r.t0 + 26000
    r.hal.rotation.pulses = 6
    r.hal.motor.enable(True)
    assert r.m.compare(r.hal.ticks_ms()) is False
    assert not r.hal.motor.enabled() and r.hal.clamped
    assert r.m.compare(r.hal.ticks_ms()) is False        # pending: nothing more here
    assert r.check(26000, 6) == codes.OVER_INFUSION and r.m.trips == 1
    # not running: the compare path is not the monitor's to take
    assert Rig("cmp-idle", start=False).m.compare(0) is False


def test_pr3_pressure_rise_over_the_lowest_seen_while_running():
    r = Rig("rise", start=False)
    r.hal.pressure = 40
    assert r.m.pressure_rise() == 40          # no baseline yet: from 0
    assert r.m.on_start(r.hal.ticks_ms()) is True
    r.hal.pressure = 90
    assert r.m.pressure_rise() == 50
    assert r.check(12500, 1) is None
    r.hal.pressure = 30
    assert r.check(13000, 1) is None
    r.hal.pressure = 100
    assert r.m.pressure_rise() == 70


def test_sr5_a_stop_off_a_pulse_edge_does_not_judge_the_drift():
    # the count at a stop is not exact to a slot: the drift CUSUM waits for an edge (the
    # same pulses at the compare would trip it: test_sr5_drift_cusum_trips_past_one_pulse)
    r = _edge_rig("stop-noedge")
    r.hal.t = r.t0 + 60714
    r.hal.rotation.pulses = 6
    r.hal.motor.enable(True)
    r.m.on_stop(r.hal.ticks_ms())
    assert r.hal.motor.enabled()              # an ordinary stop: the enable is the controller's
    assert r.check(60714, 6) is None and r.m.trips == 0


def test_sr5_the_monitor_takes_only_a_calibration_of_whole_half_pulses():
    Monitor(FakeHal(tmpdir("cal-ok")), 46008, 200)
    for stroke, steps in ((46004, 200), (50000, 202), (46004, 202)):
        try:
            Monitor(FakeHal(tmpdir("cal-bad")), stroke, steps)
        except ValueError as exc:
            assert ("%d nL, %d steps" % (stroke, steps)) in str(exc), str(exc)
        else:
            raise AssertionError("took %d nL, %d steps" % (stroke, steps))


def test_sr5_drift_cusum_floors_at_0_then_counts_from_there():
    # behind at the second edge (S floors at 0), then 6 pulses in 59.524 µL of envelope:
    # S = 75 - 59.524 - 2.976 = 12.5 µL exactly, tolerated; 1 nL less envelope trips
    for at, want in ((159524, None), (159523, codes.OVER_INFUSION)):
        r = _edge_rig("cu-floor-%d" % at)
        assert r.check(100000, 6, edge=True) is None
        assert r.armed() == 12
        assert r.check(at, 12, edge=True) == want, at


def test_sr5_a_second_check_at_the_same_instant_changes_no_book():
    # at a threshold exactly (fast envelope, geometry under-infusion): checked again and
    # again at the same millisecond, still tolerated
    r = Rig("same-fe")
    assert r.check(118750, 13) is None
    assert r.check(118750, 13) is None and r.check(118750, 13) is None
    r = Rig("same-un")
    assert r.check(171428, 6) is None
    assert r.check(171428, 6) is None and r.check(171428, 6) is None


def test_sr5_a_program_changed_after_its_check_is_not_taken_as_the_monitors_copy():
    r = Rig("bad-copy", start=False)
    prog = program.basic(1, _RATE, 240000)
    prog.rate_ul_per_h = 36000                # ten times the rate, the check not updated
    r.m.load(prog, 0)
    assert r.m.on_start(r.hal.ticks_ms()) is False
    assert r.check(1000, 0) == codes.SENSOR_FAULT


# --- the books kept to the nL, the detectors under calibrations forced past the bounds ------

def test_sr10_a_sensor_silent_for_a_whole_pulse_of_envelope_is_a_sensor_fault():
    # 6 pulses by 159 s (G- = 64.125 µL); then no pulse. 12.499 µL of envelope later G- is
    # past 75 µL and the last pulse was within a pulse: UNDER_INFUSION
    r = Rig("silent-under")
    assert r.check(159000, 6) is None
    assert r.check(171499, 6) == codes.UNDER_INFUSION
    # 1 nL later the last pulse is a whole pulse back: the sensor, not the delivery, is
    # suspect, and it is named SENSOR_FAULT once 4 pulses of envelope pass without one
    r = Rig("silent-sensor")
    assert r.check(159000, 6) is None
    assert r.check(171500, 6) is None
    assert r.check(209000, 6) is None
    assert r.check(209001, 6) == codes.SENSOR_FAULT


def test_sr10_under_infusion_keeps_the_last_nl_it_is_behind():
    # 1 pulse in 14.286 µL: G- = 14.286 - 1.785 - 12.5 = 1 nL, kept; then 5 pulses in
    # 157.141 µL more: G- = 75 µL exactly, tolerated; 1 nL more envelope trips
    _at_and_past("un-1nl", [(14286, 1)], (171427, 6), (171428, 6), codes.UNDER_INFUSION)


def test_sr5_drift_cusum_floored_from_1_nl_below_0():
    # 4 pulses (50 µL) in 47.62 µL of envelope: S = 50 - 47.62 - 2.381 = -1 nL, floored at
    # 0; then 4 pulses in 35.714 µL: S = 12.501 µL, over (1 nL more envelope: tolerated)
    for at, want in ((108334, codes.OVER_INFUSION), (108335, None)):
        r = _edge_rig("cu-1nl-%d" % at)
        assert r.check(72620, 6, edge=True) is None
        assert r.armed() == 10            # F = 2.38 µL: 4 pulses to go
        assert r.check(at, 10, edge=True) == want, at


def test_sr4_sr5_envelope_ends_at_the_vtbi_left_to_the_nl():
    # 1006.25 µL left: 81 pulses by 1006.249 s (F = 6.251 µL), then the envelope's last nL
    # and 3 pulses more: F = 43.75 µL exactly, tolerated; 1 nL less left: over
    left = 1006250
    for extra, want in ((0, None), (1, codes.OVER_INFUSION)):
        r = Rig("cap-nl-%d" % extra, delivered_nl=240000000 - left + extra)
        assert r.check(1006249, 81) is None
        assert r.check(1010000, 84) == want, extra
    # more delivered than the VTBI (nothing left): the envelope never grows, 3.5 pulses
    # are tolerated and the fourth is over
    r = Rig("cap-past", delivered_nl=240000000 + 12500)
    assert r.check(100000, 3) is None
    assert r.check(100000, 4) == codes.OVER_INFUSION


def test_sr5_the_monitor_takes_a_copy_only_within_the_pumps_rate_range():
    for rate, taken in ((program.RATE_MIN_UL_PER_H, True), (program.RATE_MAX_UL_PER_H, True),
                        (program.RATE_MIN_UL_PER_H - 1, False),
                        (program.RATE_MAX_UL_PER_H + 1, False)):
        r = Rig("range-%d" % rate, start=False)
        r.m.load(program.Program(1, rate, 240000000), 0)
        assert r.m.on_start(r.hal.ticks_ms()) is taken, rate
        if not taken:                     # refused: the motor stays off, the fault named
            assert not r.hal.motor.enabled()
            assert r.check(0, 0) == codes.SENSOR_FAULT, rate


def test_sr10_under_infusion_with_a_calibration_forced_low_trips_on_its_own_pulses():
    # Defence in depth: a monitor told a 40 µL stroke (10 µL pulses, 20 % under the
    # mechanism) judges the delivery against its own pulses too (U, 6 of them = 60 µL),
    # before the geometry check G- would. 3 pulses in 39.998 µL: U = -1 nL, floored at 0;
    # then 6 pulses in 160 µL: U = 160 - 40 - 60 = 60 µL exactly (G- 65 µL), tolerated;
    # 1 nL more envelope trips
    r = Rig("forced-low-at", stroke_nl=40000)
    assert r.check(39998, 3) is None
    assert r.check(199998, 9) is None
    r = Rig("forced-low-past", stroke_nl=40000)
    assert r.check(39998, 3) is None
    assert r.check(199999, 9) == codes.UNDER_INFUSION
    # from the start: 6 pulses in 160 µL, U = 60 µL exactly; 1 nL more trips
    assert Rig("forced-low-0-at", stroke_nl=40000).check(160000, 6) is None
    assert Rig("forced-low-0-past", stroke_nl=40000).check(160001, 6) == codes.UNDER_INFUSION


def test_sr5_geometry_check_with_a_calibration_forced_to_a_quarter():
    # Told a quarter of the true stroke (12.496 µL), the fast envelope counts 3.124 µL a
    # pulse; the geometry check counts the mechanism's 12.5 µL: 6 pulses in 22.222 µL is
    # G+ = 75 - 22.222 - 2.777 = 50.001 µL, over; 1 nL more envelope: 50 µL, tolerated
    assert Rig("quarter-past", stroke_nl=12496).check(22222, 6) == codes.OVER_INFUSION
    assert Rig("quarter-at", stroke_nl=12496).check(22223, 6) is None
    # G+ keeps its last nL: 1 pulse in 11.111 µL leaves it at 1 nL; then 6 pulses in
    # 22.223 µL: 1 + 75 - 22.223 - 2.777 = 50.001 µL, over
    r = Rig("quarter-1nl-past", stroke_nl=12496)
    assert r.check(11111, 1) is None
    assert r.check(33334, 7) == codes.OVER_INFUSION
    r = Rig("quarter-1nl-at", stroke_nl=12496)
    assert r.check(11111, 1) is None
    assert r.check(33335, 7) is None


def test_sr5_a_calibration_forced_to_a_tiny_stroke_still_checks_the_drift():
    # 0.104 µL strokes at 100 mL/h: a pulse every 0.9 ms, under a millisecond: the drift
    # is checked at every pulse (the compare armed at the next one)
    r = Rig("tiny", rate=program.RATE_MAX_UL_PER_H, stroke_nl=104)
    assert r.armed() == 1
    # 0.112 µL: a pulse every 1 ms, 300 000 of them between checkpoints: after the first
    # edge (2 pulses in 2 ms, F = 1 nL) the compare is armed where F would pass its 3.5
    # pulses, 4 pulses on
    r = Rig("tiny-1ms", rate=program.RATE_MAX_UL_PER_H, stroke_nl=112)
    assert r.check(2, 2, edge=True) is None
    assert r.armed() == 6


def test_sr5_the_first_edge_after_a_start_is_the_drift_reference_not_a_judgement():
    # resumed with the camshaft just short of a slot: the first pulse comes at once, the
    # second a pulse of travel later. 2 pulses at the first edge in 11.904 µL of envelope
    # would be S = 25 - 12.5 = 12.501 µL from the start, but the count is exact only from
    # an edge on: no drift is judged until the next edge
    r = Rig("first-edge")
    assert r.check(11904, 2, edge=True) is None
    assert r.armed() == 5                 # F = 13.096 µL: 3 pulses to go
    # from that edge on, S counts: 3 pulses in 24.943 µL is S = 37.5 - 24.943 - 1.247 =
    # 11.31 µL, tolerated; the delivery goes on
    assert r.check(36847, 5, edge=True) is None
