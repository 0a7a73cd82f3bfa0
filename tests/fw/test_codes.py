"""Journal event codes (pump.codes EV_*): one definition the controller encodes with and the
host decodes with, stable across firmware versions so an old journal reads the same (SR-9)."""
from pump import codes
from pump.states import TRIGGERS

# What the journals written so far mean: the tuples the codes index may only grow at the end.
TRIGGERS_V1 = ("restore_idle", "restore_programmed", "restore_paused", "restore_alarm",
               "restore_lockout", "restore_complete", "program", "clear", "prime", "prime_done",
               "start", "pause", "resume", "stop", "complete", "alarm", "lockout", "override",
               "service", "exit_service")
ALARMS_V1 = (None, "OVER_INFUSION", "FREE_FLOW", "UNDER_INFUSION", "OCCLUSION", "AIR_IN_LINE",
             "DOOR_OPEN", "RESERVOIR_LOW", "INFUSION_COMPLETE", "LOW_BATTERY", "SENSOR_FAULT",
             "MOTOR_FAULT", "PAUSE_TIMEOUT", "WATCHDOG_RESET")


def _defined():
    """(code, meaning) of every event the firmware can journal."""
    out = [(codes.EV_NONE, (codes.EV_NONE, None)),
           (codes.EV_CALIBRATED, (codes.EV_CALIBRATED, None)),
           (codes.EV_OVERDOSE, (codes.EV_OVERDOSE, None)),
           (codes.EV_PREMEDICATED, (codes.EV_PREMEDICATED, None))]
    for t in TRIGGERS:
        out.append((codes.trigger_event(TRIGGERS, t), (codes.EV_TRIGGER, t)))
    for a in codes.ALARMS[1:]:
        out.append((codes.alarm_event(a), (codes.EV_ALARM, a)))
    return out


def test_sr9_every_journal_event_code_decodes_to_what_was_encoded():
    seen = {}
    for ev, meaning in _defined():
        assert ev not in seen, (ev, meaning, seen.get(ev))
        seen[ev] = meaning
        assert codes.event_of(ev, TRIGGERS) == meaning, (ev, meaning)
    # the ranges do not run into each other
    for t in TRIGGERS:
        assert codes.EV_TRIGGER <= codes.trigger_event(TRIGGERS, t) < codes.EV_ALARM
    for a in codes.ALARMS[1:]:
        assert codes.EV_ALARM < codes.alarm_event(a) < codes.EV_CALIBRATED
    # and a code no event has means nothing
    for ev in range(256):
        if ev not in seen:
            assert codes.event_of(ev, TRIGGERS) is None, ev


def test_sr9_journal_event_codes_keep_their_meaning():
    assert TRIGGERS[:len(TRIGGERS_V1)] == TRIGGERS_V1
    assert codes.ALARMS[:len(ALARMS_V1)] == ALARMS_V1
    assert (codes.EV_NONE, codes.EV_TRIGGER, codes.EV_ALARM, codes.EV_CALIBRATED) == (0, 1, 64, 96)
    assert codes.trigger_event(TRIGGERS, "start") == 11
    assert codes.alarm_event(codes.PAUSE_TIMEOUT) == 76
