"""SR-8: no bolus and no flush command exists for a drug whose library entry forbids it
(blinatumomab: no bolus, no flush, no KVO), and priming is allowed only while the line is
declared disconnected. Through the command door (pump.commands), as every role, in every
state. Runs on CPython and MicroPython."""
from fakehal import FakeHal, tmpdir

from pump import auth, codes, druglib, program
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.commands import COMMANDS, UNKNOWN_COMMAND, Commands
from pump.controller import Controller
from pump.roles import TABLE

KEY_C = "c1" * 32
KEY_S = "5e" * 32
ROLES = (PATIENT, CLINICIAN, SERVICE_ROLE)
EXTRA_VOLUME = ("BOLUS", "FLUSH", "KVO", "PURGE", "LOADING_DOSE", "PRIME_LINE", "FAST_FORWARD")


def _door(tag):
    hal = FakeHal(tmpdir(tag))
    ctl = Controller(hal)
    ctl.boot()
    keys = auth.Keys(hal.storage)
    assert keys.set("c", KEY_C) and keys.set("s", KEY_S)
    return hal, ctl, Commands(ctl, keys)


def _programmed(tag):
    hal, ctl, door = _door(tag)
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": 28000, "bag_hours": 24, "regimen": "r/r", "cycle": 2,
          "day_from": 1}
    label = program.make_label(rx, 270000)
    args = {"label": label, "entry": {"rate": "10", "unit": "mL/h", "vtbi_ml": "240"}}
    got = door.execute("PROPOSE", args, CLINICIAN, 1)
    assert isinstance(got, dict), got
    got = door.execute("CONFIRM", {"echo": got["echo"]}, CLINICIAN, 2)
    assert isinstance(got, dict) and got["state"] == codes.PROGRAMMED, got
    return hal, ctl, door


def test_sr8_the_drug_library_forbids_bolus_flush_and_kvo_for_blinatumomab():
    drug = druglib.default().drug("blinatumomab")
    for flag in (druglib.FLAG_NO_BOLUS, druglib.FLAG_NO_FLUSH, druglib.FLAG_NO_KVO):
        assert drug.flags & flag, flag


def test_sr8_no_command_gives_extra_volume_for_any_role_in_any_state():
    """No bolus, flush or KVO command exists: not in the door, not in the role table, and
    the door answers UNKNOWN_COMMAND to each, whoever asks, changing nothing."""
    for name in EXTRA_VOLUME:
        assert name not in COMMANDS, name
        assert name.lower() not in TABLE, name
    hal, ctl, door = _programmed("sr8-none")
    for st in codes.STATES:
        for role in ROLES:
            for name in EXTRA_VOLUME:
                ctl.machine.state = st
                before = ctl.delivery.commanded_nl
                got = door.execute(name, {"volume_ml": 1}, role, 9)
                assert got == UNKNOWN_COMMAND, (name, role, st, got)
                assert ctl.delivery.commanded_nl == before and ctl.machine.state == st


def test_sr8_priming_only_with_the_line_declared_disconnected():
    """PRIME without `line_disconnected: true` (missing, false, a string, extra arguments) is
    refused BAD_INPUT and the pump stays PROGRAMMED with the motor still; declared
    disconnected, it primes (PRIMING). Only the clinician may prime."""
    for args in ({}, {"line_disconnected": False}, {"line_disconnected": "true"},
                 {"line_disconnected": 1}, {"line_disconnected": True, "volume_ml": 5}):
        hal, ctl, door = _programmed("sr8-prime-no")
        got = door.execute("PRIME", args, CLINICIAN, 3)
        assert got == codes.BAD_INPUT, (args, got)
        assert ctl.machine.state == codes.PROGRAMMED and hal.motor.steps == 0, args
    hal, ctl, door = _programmed("sr8-prime-patient")
    assert door.execute("PRIME", {"line_disconnected": True}, PATIENT, 3) == \
        codes.NOT_AUTHORISED
    assert ctl.machine.state == codes.PROGRAMMED
    hal, ctl, door = _programmed("sr8-prime-yes")
    got = door.execute("PRIME", {"line_disconnected": True}, CLINICIAN, 3)
    assert isinstance(got, dict) and got["state"] == codes.PRIMING, got
    assert ctl.machine.state == codes.PRIMING
