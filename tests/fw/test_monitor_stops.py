"""The safety monitor can only stop (SR-5): every actuator call, and who made it.

The monitor is given a recording view of the fake board as its HAL (`Tagged(hal,
"monitor")`), the controller another (`Tagged(hal, "controller")`), so each motor and clamp
call is logged with its caller, by construction (no frame inspection: runs on CPython and
MicroPython). Driven through runaway, drift, occlusion with its back-off and release, free
flow, sensor faults, pause/resume, prime, a refused start and power loss, the monitor's
calls are only `motor.enable(False)`, `clamp(True)` and its own `rotation.arm`. The
monitor's public methods are also wrapped to catch re-entry: a trip is reported after the
monitor has returned, and nothing the controller does while latching it calls back into a
monitor method still on the stack.
"""
from fakehal import FakeHal, bench, run_for, run_until_state, tmpdir

from pump import codes, program
from pump.codes import CLINICIAN, PATIENT
from pump.controller import Controller
from pump.hal import EV_DOOR, EV_PRESSURE
from pump.monitor import Monitor

_H = 3600000
_METHODS = ("load", "on_start", "on_move", "on_backoff", "on_move_end", "on_stop", "check",
            "compare", "wake", "take_free_flow", "pressure_rise")


class Log:
    """Actuator calls in order: (who, what, arg, controller state at the call)."""

    def __init__(self):
        self.calls = []
        self.ctl = None
        self.reentered = []       # (outer method, inner method) when one ran inside another

    def add(self, who, what, arg):
        st = self.ctl.machine.state if self.ctl is not None else None
        self.calls.append((who, what, arg, st))

    def by(self, who, since=0):
        return [c[1:] for c in self.calls[since:] if c[0] == who]


class TaggedMotor:
    def __init__(self, motor, who, log):
        self.motor = motor
        self.who = who
        self.log = log

    def enable(self, on):
        self.log.add(self.who, "enable", on)
        self.motor.enable(on)

    def move(self, steps, ms):
        self.log.add(self.who, "move", steps)
        self.motor.move(steps, ms)

    def stop(self):
        self.log.add(self.who, "stop", None)
        self.motor.stop()

    def enabled(self):
        return self.motor.enabled()

    def position(self):
        return self.motor.position()

    def busy(self):
        return self.motor.busy()


class TaggedRotation:
    def __init__(self, rotation, who, log):
        self.rotation = rotation
        self.who = who
        self.log = log

    def count(self):
        return self.rotation.count()

    def arm(self, count):
        self.log.add(self.who, "arm", count)
        self.rotation.arm(count)


class Tagged:
    """The HAL contract (pump/hal.py) on the fake board, logging actuator calls as `who`."""

    def __init__(self, hal, who, log):
        self.hal = hal
        self.who = who
        self.log = log
        self.motor = TaggedMotor(hal.motor, who, log)
        self.rotation = TaggedRotation(hal.rotation, who, log)
        self.storage = hal.storage
        self.uart = hal.uart

    def clamp(self, closed):
        self.log.add(self.who, "clamp", closed)
        self.hal.clamp(closed)

    def ticks_ms(self):
        return self.hal.ticks_ms()

    def ticks_add(self, t, d):
        return self.hal.ticks_add(t, d)

    def ticks_diff(self, a, b):
        return self.hal.ticks_diff(a, b)

    def rtc_s(self):
        return self.hal.rtc_s()

    def pressure_mmhg(self):
        return self.hal.pressure_mmhg()

    def air_detected(self):
        return self.hal.air_detected()

    def door_closed(self):
        return self.hal.door_closed()

    def battery_mv(self):
        return self.hal.battery_mv()

    def buzzer(self, on):
        self.hal.buzzer(on)

    def led(self, on):
        self.hal.led(on)

    def wdt_feed(self):
        self.hal.wdt_feed()


def _guarded(fn, name, active, log):
    def call(*args):
        if active:
            log.reentered.append((active[-1], name))
        active.append(name)
        try:
            return fn(*args)
        finally:
            active.pop()
    return call


def _controller(hal, log):
    """A controller on the fake board whose monitor sees the board only as "monitor"."""
    ctl = Controller(Tagged(hal, "controller", log))
    m = Monitor(Tagged(hal, "monitor", log), ctl.delivery.stroke_nl,
                ctl.delivery.steps_per_stroke)
    active = []
    for name in _METHODS:
        setattr(m, name, _guarded(getattr(m, name), name, active, log))
    ctl.monitor = m
    log.ctl = ctl
    return ctl


def _pump(tag, rate=10000, start=True):
    log = Log()
    hal = FakeHal(tmpdir("stops-" + tag))
    hal.compare = True
    ctl = _controller(hal, log)
    ctl.boot()
    assert bench(ctl, program.basic(1, rate, 240000)) is None
    if start:
        assert ctl.request("start", CLINICIAN) is None
    return hal, ctl, log


def _only_stops(log):
    """The monitor's actuator calls: enable(False), clamp(True) and its compare, nothing else;
    and no monitor method ran inside another."""
    for what, arg, _ in log.by("monitor"):
        assert (what, arg) in (("enable", False), ("clamp", True)) or what == "arm", (what, arg)
    assert log.reentered == [], log.reentered


def _first_stop_by_monitor(log, since):
    """The first stopping call after `since` is the monitor's enable(False), made while the
    controller was still in the state it tripped from (before it raised anything)."""
    for who, what, arg, st in log.calls[since:]:
        if what in ("enable", "stop") and not (what == "enable" and arg):
            assert (who, what, arg) == ("monitor", "enable", False), (who, what, arg)
            return st
    raise AssertionError("nothing stopped the motor")


# --- over-infusion ------------------------------------------------------------------------------

def test_sr5_runaway_and_drift_the_monitor_only_stops():
    for tag, num, den, limit in (("run", 10, 1, _H), ("drift", 11, 10, 2 * _H)):
        hal, ctl, log = _pump(tag)
        run_for(ctl, hal, 1800000)
        n = len(log.calls)
        hal.cam_speed(num, den)
        assert run_until_state(ctl, hal, codes.LOCKOUT, limit), tag
        assert ctl.alarm == codes.OVER_INFUSION
        assert _first_stop_by_monitor(log, n) == codes.RUNNING
        assert ("clamp", True, codes.RUNNING) in log.by("monitor", n)
        run_for(ctl, hal, 600000)
        assert not hal.motor.enabled() and hal.clamped
        _only_stops(log)


# --- occlusion: the back-off is the controller's ------------------------------------------------

def test_sr5_pr3_occlusion_backoff_by_the_controller_watched_by_the_monitor():
    hal, ctl, log = _pump("occ")
    hal.pressure = 8
    run_for(ctl, hal, _H)
    hal.occlude()
    n = len(log.calls)
    assert run_until_state(ctl, hal, codes.ALARM, _H)
    assert ctl.alarm == codes.OCCLUSION
    assert _first_stop_by_monitor(log, n) == codes.RUNNING
    # the reverse move: the controller's, after the alarm was latched, enable first
    moves = [c for c in log.calls[n:] if c[1] == "move" and c[2] < 0]
    assert moves and moves[0][0] == "controller" and moves[0][3] == codes.ALARM, moves
    ctl_calls = log.by("controller", n)
    assert ctl_calls.index(("enable", True, codes.ALARM)) < ctl_calls.index(moves[0][1:])
    run_for(ctl, hal, 60000)
    assert not ctl.delivery.backing_off and not hal.motor.enabled() and hal.clamped
    assert ctl.state == codes.ALARM and ctl.alarm == codes.OCCLUSION
    # released, resumed by a clinician: the controller opens the clamp, delivery goes on
    hal.release()
    k = len(log.calls)
    assert ctl.request("resume", CLINICIAN) is None
    assert ("controller", "clamp", False, codes.RUNNING) in log.calls[k:]
    run_for(ctl, hal, 600000)
    assert ctl.state == codes.RUNNING and not hal.clamped
    _only_stops(log)


def test_sr5_monitor_watches_the_backoff():
    hal, ctl, log = _pump("occ-watch")
    hal.pressure = 8
    run_for(ctl, hal, 600000)
    hal.pressure = 310                                # the board's comparator level
    ctl.signal(EV_PRESSURE)
    ctl.step(hal.ticks_ms())
    assert ctl.state == codes.ALARM and ctl.alarm == codes.OCCLUSION
    assert ctl.delivery.backing_off and hal.motor.enabled() and hal.clamped
    # a camshaft turning well past the pulses the back-off was allowed: stopped at once
    hal.spin(50 * (ctl.monitor.allow + 3))
    k = len(log.calls)
    run_for(ctl, hal, 1)
    assert ctl.delivery.backing_off
    assert ("monitor", "enable", False, codes.ALARM) in log.calls[k:]
    assert not hal.motor.enabled()
    run_for(ctl, hal, 60000)
    assert not ctl.delivery.backing_off and not hal.motor.enabled() and hal.clamped
    assert ctl.state == codes.ALARM and ctl.alarm == codes.OCCLUSION
    _only_stops(log)


def test_sr5_occlusion_backoff_passes_and_stop_while_backing_off():
    hal, ctl, log = _pump("occ2", rate=5000)
    hal.pressure = 8
    run_for(ctl, hal, 600000)
    hal.occlude()
    assert run_until_state(ctl, hal, codes.ALARM, _H)
    assert ctl.request("stop", CLINICIAN) is None         # cleared while backing off
    run_for(ctl, hal, 60000)
    assert ctl.state == codes.PROGRAMMED and not ctl.delivery.backing_off
    assert hal.stored_nl() <= 50000 and not hal.motor.enabled()
    reverse = [c for c in log.calls if c[1] == "move" and c[2] < 0]
    assert reverse and all(c[0] == "controller" for c in reverse)
    _only_stops(log)


# --- free flow, sensor faults --------------------------------------------------------------------

def test_sr5_free_flow_the_monitor_closes_the_controller_reopens():
    for flagged in (True, False):
        hal, ctl, log = _pump("ff%d" % flagged)
        run_for(ctl, hal, 600000)
        assert not hal.clamped
        hal.door = False
        if flagged:
            ctl.signal(EV_DOOR)
        n = len(log.calls)
        ctl.step(hal.ticks_ms())
        assert ("monitor", "clamp", True) in [c[:3] for c in log.calls[n:]]
        assert ctl.state == codes.ALARM and ctl.alarm == codes.DOOR_OPEN
        assert ctl.notice == codes.FREE_FLOW and hal.clamped and not hal.motor.enabled()
        run_for(ctl, hal, 600000)
        hal.door = True
        k = len(log.calls)
        assert ctl.request("resume", CLINICIAN) is None
        assert not hal.clamped
        assert ("controller", "clamp", False, codes.RUNNING) in log.calls[k:]
        run_for(ctl, hal, 600000)
        assert ctl.state == codes.RUNNING
        _only_stops(log)


def test_sr10_sensor_faults_the_monitor_only_stops():
    for how, alarm in (("stuck", codes.SENSOR_FAULT), ("dropout", codes.UNDER_INFUSION)):
        hal, ctl, log = _pump(how, rate=5000)
        run_for(ctl, hal, 600000)
        if how == "stuck":
            hal.rotation.stuck()
        else:
            hal.rotation.dropout(1, 2)
        n = len(log.calls)
        assert run_until_state(ctl, hal, codes.ALARM, _H), how
        assert ctl.alarm == alarm
        assert _first_stop_by_monitor(log, n) == codes.RUNNING
        run_for(ctl, hal, 600000)
        _only_stops(log)


def test_sr5_refused_start_keeps_the_clamp_closed():
    hal, ctl, log = _pump("refuse", start=False)
    ctl.monitor.prog.rate_ul_per_h = 6000             # RAM corruption of the monitor's copy
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 60000)
    assert ctl.state == codes.ALARM and ctl.alarm == codes.SENSOR_FAULT
    assert hal.clamped and not hal.motor.enabled()
    assert ("clamp", False) not in [c[1:3] for c in log.calls]
    _only_stops(log)


# --- pause/resume, prime, power loss --------------------------------------------------------------

def test_sr5_pause_resume_prime_and_uncommanded_motion():
    hal, ctl, log = _pump("prime", start=False)
    assert ctl.request("prime", CLINICIAN, True) is None
    assert log.calls[-2][:3] == ("controller", "clamp", False)   # the controller opens it
    run_for(ctl, hal, 120000)
    assert ctl.state == codes.PROGRAMMED and hal.clamped
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 600000)
    assert ctl.request("pause", PATIENT) is None
    run_for(ctl, hal, 600000)
    assert ctl.request("resume", PATIENT) is None
    run_for(ctl, hal, 600000)
    assert ctl.request("pause", PATIENT) is None
    assert ctl.state == codes.PAUSED and ctl.alarm is None
    n = len(log.calls)
    hal.spin(100)                                     # the camshaft turns on its own
    run_for(ctl, hal, 1)
    assert ctl.state == codes.LOCKOUT
    assert _first_stop_by_monitor(log, n) == codes.PAUSED
    _only_stops(log)


def test_sr5_sr9_power_loss_the_new_monitor_only_stops():
    hal, ctl, log = _pump("power")
    run_for(ctl, hal, _H + 5000)
    log2 = Log()
    ctl2 = _controller(hal, log2)                     # power back: a new controller, same board
    assert ctl2.boot() == codes.PAUSED
    assert ctl2.request("resume", PATIENT) is None
    run_for(ctl2, hal, _H)
    assert ctl2.state == codes.RUNNING
    hal.cam_speed(100, 1)
    n = len(log2.calls)
    assert run_until_state(ctl2, hal, codes.LOCKOUT, _H)
    assert _first_stop_by_monitor(log2, n) == codes.RUNNING
    _only_stops(log)
    _only_stops(log2)


# --- the trip does not re-enter -------------------------------------------------------------------

class MainLoop:
    """The board's main loop (firmware/main.py): the light compare path first, the full
    step when it declines."""

    def __init__(self, ctl):
        self.ctl = ctl

    @property
    def state(self):
        return self.ctl.state

    def signal(self, flag):
        return self.ctl.signal(flag)

    def step(self, now):
        wake = self.ctl.on_rotation(now)
        return wake if wake >= 0 else self.ctl.step(now)


def test_sr5_trip_is_latched_after_the_monitor_returned():
    for light in (False, True):
        hal, ctl, log = _pump("reenter%d" % light)
        loop = MainLoop(ctl) if light else ctl
        run_for(loop, hal, 600000)
        m = ctl.monitor
        active = []
        seen = []
        found = []
        on_stop, check, compare = m.on_stop, m.check, m.compare

        def on_stop_tracked(now):
            seen.append(list(active))             # monitor methods on the stack around it
            return on_stop(now)

        def check_tracked(now, flags):
            active.append("check")
            try:
                return check(now, flags)
            finally:
                active.pop()

        def compare_tracked(now):
            active.append("compare")
            try:
                r = compare(now)
            finally:
                active.pop()
            if not r and m.pending is not None:
                found.append(m.pending)           # the light path found it, stopped, declined
                assert not hal.motor.enabled() and hal.clamped
            return r
        m.on_stop = on_stop_tracked
        m.check = check_tracked
        m.compare = compare_tracked
        hal.cam_speed(10, 1)
        assert run_until_state(loop, hal, codes.LOCKOUT, _H)
        # the lockout's stop reached on_stop with no monitor method on the stack
        assert seen == [[]], seen
        assert m.latched == codes.OVER_INFUSION and m.trips == 1 and log.reentered == []
        assert found == ([codes.OVER_INFUSION] if light else []), found
