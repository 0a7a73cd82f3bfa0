"""Controller: requests, roles, alarms, bad input (SR-13), power loss (SR-9)."""
from fakehal import clinical, pump, run_for, run_until_state

from pump import codes, program
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.controller import Controller
from pump.hal import EV_AIR, EV_BATTERY, EV_DOOR


def _pump(tag="c", rate=10000, vtbi_ul=240000, start=True, patient=False):
    return pump(tag, rate, vtbi_ul, start, patient=patient)


def _snapshot(hal, ctl):
    d = ctl.delivery
    return (ctl.state, ctl.alarm, d.commanded_nl, d.seg_end, d.running, ctl.journal.seq,
            hal.motor.position(), hal.motor.steps, ctl.reserved_nl, ctl.lockout_until_s)


def test_sr13_malformed_requests_rejected_and_change_nothing():
    hal, ctl = _pump("bad", patient=True)
    run_for(ctl, hal, 100000)
    before = _snapshot(hal, ctl)
    bad = (
        ("", CLINICIAN, None), ("launch", CLINICIAN, None), (None, CLINICIAN, None),
        (123, CLINICIAN, None), ("program", CLINICIAN, None),
        ("program", CLINICIAN, {"rate": 10}), ("program", CLINICIAN, "10 mL/h"),
        ("pause", 99, None), ("pause", None, None), ("pause", "patient", None),
        ("pause", PATIENT, 5), ("prime", CLINICIAN, None), ("complete", CLINICIAN, None),
        ("alarm", CLINICIAN, None), ("restore_idle", CLINICIAN, None),
        ("lockout", CLINICIAN, None),
    )
    for trigger, role, arg in bad:
        assert ctl.request(trigger, role, arg) == codes.BAD_INPUT, trigger
        assert _snapshot(hal, ctl) == before, trigger
    # a program whose fields were altered after validation fails its check
    p = program.basic(2, 10000, 240000)
    p.rate_ul_per_h = 100000
    assert ctl.request("program", CLINICIAN, p) == codes.BAD_INPUT
    assert _snapshot(hal, ctl) == before
    # delivery goes on undisturbed
    run_for(ctl, hal, 3600000)
    assert ctl.state == codes.RUNNING


def test_sr13_malformed_events_change_nothing():
    hal, ctl = _pump("ev")
    run_for(ctl, hal, 100000)
    before = _snapshot(hal, ctl)
    for bad in (1 << 20, 0, -1, "door", None, EV_DOOR | 1 << 12):
        assert ctl.signal(bad) == codes.BAD_INPUT, bad
        assert not ctl.pending()
    assert ctl.signal(EV_DOOR) is None    # door flag, but the door is closed: spurious
    assert ctl.signal(EV_AIR) is None     # air flag, but no air: spurious
    ctl.step(hal.ticks_ms())
    assert _snapshot(hal, ctl)[:5] == before[:5]


def test_sr11_roles():
    hal, ctl = _pump("roles", start=False, patient=True)
    assert ctl.request("start", PATIENT) == codes.NOT_AUTHORISED
    assert ctl.request("program", PATIENT, program.basic(3, 100, 1000)) == codes.NOT_AUTHORISED
    assert ctl.request("service", CLINICIAN) == codes.NOT_AUTHORISED
    assert ctl.request("start", SERVICE_ROLE) == codes.NOT_AUTHORISED
    assert ctl.state == codes.PROGRAMMED
    assert ctl.request("start", CLINICIAN) is None
    assert ctl.request("pause", PATIENT) is None
    assert ctl.request("resume", PATIENT) is None
    assert ctl.state == codes.RUNNING


def test_invalid_state_changes_nothing():
    hal, ctl = _pump("inv", start=False)
    assert ctl.request("pause", PATIENT) == codes.INVALID_STATE
    assert ctl.request("resume", PATIENT) == codes.INVALID_STATE
    assert ctl.state == codes.PROGRAMMED


def test_sr10_door_open_stops_and_needs_clinician():
    hal, ctl = _pump("door", patient=True)
    run_for(ctl, hal, 60000)
    hal.door = False
    ctl.signal(EV_DOOR)
    ctl.step(hal.ticks_ms())
    assert ctl.state == codes.ALARM and ctl.alarm == codes.DOOR_OPEN
    assert hal.motor.steps == 0 and hal.buzzing
    pos = hal.motor.position()
    run_for(ctl, hal, 600000)
    assert hal.motor.position() == pos
    assert ctl.request("resume", PATIENT) == codes.NOT_AUTHORISED
    assert ctl.request("resume", CLINICIAN) == codes.DOOR_OPEN
    hal.door = True
    assert ctl.request("resume", CLINICIAN) is None
    assert ctl.state == codes.RUNNING and ctl.alarm is None


def test_sr14_pause_reminder():
    hal, ctl = _pump("pause")
    alarms = []
    ctl.listener = lambda kind, code, v: alarms.append(code) if kind == "alarm" else None
    ctl.request("pause", PATIENT)
    run_for(ctl, hal, 899000)
    assert codes.PAUSE_TIMEOUT not in alarms
    run_for(ctl, hal, 2000)
    assert alarms == [codes.PAUSE_TIMEOUT] and ctl.state == codes.PAUSED


def test_sr9_power_loss_restores_paused_with_volume_counted():
    hal, ctl = _pump("power")
    run_for(ctl, hal, 3600000 + 5000)
    moved_nl = hal.motor.position() * 250
    pid = ctl.program.pid
    # power lost: the controller object is gone, the files stay
    ctl2 = Controller(hal)
    assert ctl2.boot() == codes.PAUSED
    assert ctl2.program is not None and ctl2.program.pid == pid
    # in doubt, counted as delivered: never less than what the motor moved
    assert ctl2.delivery.commanded_nl >= moved_nl
    assert ctl2.delivery.commanded_nl - moved_nl <= 100000     # at most one segment
    assert ctl2.request("resume", PATIENT) is None
    assert run_until_state(ctl2, hal, codes.COMPLETE, 30 * 3600000)
    assert ctl2.delivery.commanded_nl == 240000000


def test_watchdog_reset_while_running_raises_alarm():
    hal, ctl = _pump("wdt")
    run_for(ctl, hal, 100000)
    ctl2 = Controller(hal)
    assert ctl2.boot(watchdog_reset=True) == codes.ALARM
    assert ctl2.alarm == codes.WATCHDOG_RESET


def test_sr4_complete_stops_with_infusion_complete():
    hal, ctl = _pump("done", rate=100000, vtbi_ul=1000)
    alarms = []
    ctl.listener = lambda kind, code, v: alarms.append(code) if kind == "alarm" else None
    assert run_until_state(ctl, hal, codes.COMPLETE, 3600000)
    assert alarms == [codes.INFUSION_COMPLETE]
    assert ctl.delivery.commanded_nl == 1000000
    assert not hal.motor.enabled()
    assert ctl.request("start", CLINICIAN) == codes.INVALID_STATE


def test_sr6_lockout_survives_power_loss():
    hal, ctl = _pump("lock", patient=True)
    run_for(ctl, hal, 60000)
    ctl.raise_alarm(codes.OVER_INFUSION)
    assert ctl.state == codes.LOCKOUT and not hal.motor.enabled()
    ctl2 = Controller(hal)
    assert ctl2.boot() == codes.LOCKOUT
    p = clinical(9, 10000)
    assert ctl2.request("program", CLINICIAN, p) == codes.LOCKOUT_ACTIVE
    hal.t += 12 * 3600 * 1000
    assert ctl2.request("program", CLINICIAN, p) is None


def test_priming_only_when_declared_disconnected():
    hal, ctl = _pump("prime", start=False)
    assert ctl.request("prime", CLINICIAN) == codes.BAD_INPUT
    assert ctl.request("prime", CLINICIAN, True) is None
    assert ctl.state == codes.PRIMING
    assert run_until_state(ctl, hal, codes.PROGRAMMED, 120000)
    assert ctl.delivery.commanded_nl == 0


def test_sr11_auth_counter_strictly_increases_and_survives_power_loss():
    hal, ctl = _pump("auth", start=False)
    assert ctl.accept_auth_counter(5)
    assert not ctl.accept_auth_counter(5)
    assert not ctl.accept_auth_counter(3)
    assert not ctl.accept_auth_counter("9")
    assert ctl.accept_auth_counter(6)
    ctl2 = Controller(hal)
    ctl2.boot()
    assert ctl2.auth_counter == 6
    assert not ctl2.accept_auth_counter(6)


def test_service_calibration_is_stored_and_applied():
    hal, ctl = _pump("cal", start=False, patient=True)
    good = {"stroke_nl": 50400, "steps_per_stroke": 200}
    assert ctl.calibrate(good, CLINICIAN) == codes.NOT_AUTHORISED
    assert ctl.calibrate(good, SERVICE_ROLE) == codes.INVALID_STATE   # not in SERVICE
    assert ctl.request("clear", CLINICIAN) is None
    assert ctl.request("service", SERVICE_ROLE) is None
    for bad in (None, {}, {"stroke_nl": 50401}, {"stroke_nl": "50400"}, {"x": 1},
                {"stroke_nl": 10 ** 9}, {"steps_per_stroke": 202}, {"stroke_nl": True}):
        assert ctl.calibrate(bad, SERVICE_ROLE) == codes.BAD_INPUT, bad
        assert ctl.delivery.stroke_nl == 50000
    assert ctl.calibrate(good, SERVICE_ROLE) is None
    assert ctl.delivery.stroke_nl == 50400 and ctl.monitor.stroke_nl == 50400
    assert ctl.calibrate({"stroke_nl": 49600}, SERVICE_ROLE) is None
    # power loss: the newest stored calibration is read back
    ctl2 = Controller(hal)
    assert ctl2.delivery.stroke_nl == 49600 and ctl2.monitor.stroke_nl == 49600
    # a flipped bit in either copy: the other holds the same calibration (and it is reported)
    from pump import calibration
    for name in calibration.NAMES:
        with open(hal.storage.path(name), "rb") as f:
            good = f.read()
        with open(hal.storage.path(name), "wb") as f:
            f.write(bytes([good[0] ^ 1]) + good[1:])
        ctl3 = Controller(hal)
        assert ctl3.delivery.stroke_nl == 49600 and ctl3.cal_fault
        with open(hal.storage.path(name), "wb") as f:
            f.write(good)
    # a write torn in its first copy leaves the previous calibration in force in the second
    calibration.save(hal.storage, 50400, 200, 0)
    with open(hal.storage.path(calibration.NAMES[0]), "wb") as f:
        f.write(b"1 49600 2")
    assert Controller(hal).delivery.stroke_nl == 50400


def test_sr10_low_battery_warns_once():
    hal, ctl = _pump("batt")
    alarms = []
    ctl.listener = lambda kind, code, v: alarms.append(code) if kind == "alarm" else None
    ctl.signal(EV_BATTERY)
    ctl.step(hal.ticks_ms())
    assert alarms == []                       # comparator flag but the voltage is fine
    hal.battery = 3400
    ctl.signal(EV_BATTERY)
    ctl.step(hal.ticks_ms())
    ctl.signal(EV_BATTERY)
    ctl.step(hal.ticks_ms())
    assert alarms == [codes.LOW_BATTERY] and ctl.state == codes.RUNNING


def test_sr6_library_lockout_and_pause_values_follow_the_drug():
    from pump import druglib
    hal, ctl = _pump("lib", start=False)
    assert ctl.lockout_s == 12 * 3600            # basic program: the defaults
    assert ctl.request("clear", SERVICE_ROLE) is None and ctl.state == codes.SERVICE
    assert ctl.request("exit_service", SERVICE_ROLE) is None and ctl.state == codes.IDLE
    drug = druglib.default().drug("blinatumomab")
    p = program.Program(5, 10000, 240000000, drug.index, 116667, 28000, 24, drug.flags)
    assert ctl.request("program", CLINICIAN, p) is None
    assert ctl.lockout_s == drug.lockout_s
    assert ctl.pause_reminder_ms == drug.pause_reminder_s * 1000
