"""The command door (pump.commands) and the role table (pump.roles): every caller, the
serial protocol and the simulator alike, reaches the same commands, and who may give them is
the table's alone (SR-11). Programming through the door (SR-3). Runs on CPython and
MicroPython."""
from fakehal import FakeHal, tmpdir

from boards.memuart import MemUart
from pump import auth, codes, program, roles
from pump.codes import CLINICIAN, PATIENT, SERVICE_ROLE
from pump.commands import COMMANDS, Commands
from pump.controller import Controller
from pump.crc import crc32
from pump.frames import frame_text, parse
from pump.protocol import Protocol
from pump.states import TRIGGERS

KEY_C = "c1" * 32
KEY_S = "5e" * 32
BASIC = {"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}


def _pump(tag):
    hal = FakeHal(tmpdir(tag))
    ctl = Controller(hal)
    ctl.boot()
    return hal, ctl


def _door(tag):
    hal, ctl = _pump(tag)
    keys = auth.Keys(hal.storage)
    assert keys.set("c", KEY_C) and keys.set("s", KEY_S)
    return hal, ctl, Commands(ctl, keys)


def _label_args(unit="mL/h", **plan):
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": 28000, "bag_hours": 24, "regimen": "r/r", "cycle": 2,
          "day_from": 1}
    rx.update(plan)
    label = program.make_label(rx, 270000)
    assert isinstance(label, dict), label
    return {"label": label, "entry": {"rate": "10", "unit": unit, "vtbi_ml": "240"}}


def _role(door, args):
    """Who programs `args`: the clinician a patient's label; the service role a basic
    program, in service mode (entered here)."""
    if "basic" not in args:
        return CLINICIAN
    if not door.ctl.service:
        assert door.execute("SERVICE", {}, SERVICE_ROLE, 0) == {"state": codes.SERVICE}
    return SERVICE_ROLE


def _program(door, args, pid):
    """PROPOSE then CONFIRM with the echo (a basic program as the service role in service
    mode, a label as the clinician): the CONFIRM reply or a code."""
    role = _role(door, args)
    got = door.execute("PROPOSE", args, role, pid)
    if isinstance(got, str):
        return got
    return door.execute("CONFIRM", {"echo": got["echo"]}, role, pid)


# --- one role table (SR-11) -------------------------------------------------------------------

def test_sr11_every_command_role_and_state_answered_as_the_role_table_says():
    """Each command, as each role, in each state: NOT_AUTHORISED exactly when the table
    says no. (What an allowed command then does is not this test's concern.)"""
    hal, ctl, door = _door("roletable")
    names = sorted(COMMANDS)
    for svc in (False, True):               # clinical and service mode
        for st in codes.STATES:
            for role in roles.ANYONE:
                for name in names:
                    ctl.machine.state = st
                    ctl.service = svc
                    got = door.execute(name, {}, role, 1)
                    allowed = roles.allows(COMMANDS[name][0], st, role, svc)
                    assert (got == codes.NOT_AUTHORISED) == (not allowed), \
                        (name, role, st, svc, got)


def test_sr11_controller_requests_answered_as_the_role_table_says():
    hal, ctl = _pump("rolectl")
    for trigger in TRIGGERS:
        if trigger not in roles.TABLE:
            for role in roles.ANYONE:
                assert ctl.request(trigger, role) == codes.BAD_INPUT, trigger  # internal
            continue
        arg = None
        if trigger == "program":
            arg = program.basic(1, 10000, 240000)
        elif trigger == "prime":
            arg = True
        for svc in (False, True):           # clinical and service mode
            for st in codes.STATES:
                for role in roles.ANYONE:
                    ctl.machine.state = st
                    ctl.service = svc
                    got = ctl.request(trigger, role, arg)
                    allowed = roles.allows(trigger, st, role, svc)
                    assert (got == codes.NOT_AUTHORISED) == (not allowed), \
                        (trigger, role, st, svc, got)


def test_sr11_resume_after_an_alarm_is_the_clinicians_from_paused_the_patients():
    assert roles.allows("resume", codes.PAUSED, PATIENT)
    assert not roles.allows("resume", codes.ALARM, PATIENT)
    assert roles.allows("resume", codes.ALARM, CLINICIAN)
    assert not roles.allows("resume", codes.PAUSED, SERVICE_ROLE)
    assert roles.roles_for("launch", codes.IDLE) == ()


def test_key_is_open_only_while_no_key_is_set():
    hal, ctl = _pump("keyopen")
    door = Commands(ctl, auth.Keys(hal.storage))
    assert door.execute("KEY", {"slot": "s", "key": KEY_S}, PATIENT, 0) == {"keys": ["s"]}
    assert door.execute("KEY", {"slot": "c", "key": KEY_C}, PATIENT, 0) == \
        codes.NOT_AUTHORISED
    assert door.execute("KEY", {"slot": "c", "key": KEY_C}, SERVICE_ROLE, 0) == \
        {"keys": ["c", "s"]}


# --- one door ---------------------------------------------------------------------------------

def test_unknown_command_and_bad_args_change_nothing():
    hal, ctl, door = _door("unknown")
    j = ctl.journal.seq
    assert door.execute("LAUNCH", {}, CLINICIAN, 1) == "UNKNOWN_COMMAND"
    assert door.execute("START", [1], CLINICIAN, 1) == codes.BAD_INPUT
    assert door.execute("PAUSE", {"now": True}, PATIENT, 1) == codes.BAD_INPUT
    assert ctl.state == codes.IDLE and ctl.journal.seq == j


def test_sr3_door_programs_in_two_steps_then_starts():
    hal, ctl, door = _door("doorprog")
    assert door.execute("SERVICE", {}, SERVICE_ROLE, 0) == {"state": codes.SERVICE}
    got = door.execute("PROPOSE", BASIC, SERVICE_ROLE, 7)
    assert got == {"echo": ["-", 10000, 240000, 0, 0, 0], "expires_s": 120}
    assert ctl.state == codes.SERVICE and ctl.program is None
    assert door.execute("STATUS", {}, PATIENT, 0)["proposal"] == got["echo"]
    assert door.execute("START", {}, SERVICE_ROLE, 7) == codes.INVALID_STATE
    assert door.execute("CONFIRM", {"echo": got["echo"]}, SERVICE_ROLE, 7) == \
        {"state": codes.PROGRAMMED, "program_id": 7}
    assert door.execute("START", {}, SERVICE_ROLE, 7) == {"state": codes.RUNNING}
    s = door.execute("STATUS", {}, PATIENT, 0)
    assert s["program_id"] == 7 and s["rate_ul_per_h"] == 10000 and s["proposal"] is None
    assert s["mode"] == codes.SERVICE and s["plan"] is None


def test_sr3_a_proposal_in_a_state_no_program_may_come_is_refused_and_nothing_waits():
    """PROPOSE asks the state table first: while running, paused or in an alarm a new
    program cannot be taken, so the proposal is refused at once (INVALID_STATE: stop
    first) and nothing waits for a CONFIRM; where the table takes a program it waits."""
    hal, ctl, door = _door("proposestate")
    assert door.execute("SERVICE", {}, SERVICE_ROLE, 0) == {"state": codes.SERVICE}
    for st in codes.STATES:
        ctl.machine.state = st
        door.pending = None
        got = door.execute("PROPOSE", BASIC, SERVICE_ROLE, 7)
        if ctl.machine.allowed("program"):
            assert st in (codes.IDLE, codes.PROGRAMMED, codes.COMPLETE, codes.LOCKOUT,
                          codes.SERVICE), st
            assert isinstance(got, dict) and door.pending is not None, (st, got)
        else:
            assert got == codes.INVALID_STATE and door.pending is None, (st, got)
    for st in (codes.RUNNING, codes.PAUSED, codes.ALARM, codes.PRIMING):
        ctl.machine.state = st
        assert not ctl.machine.allowed("program"), st


# --- bench programs only in service mode (issue 11 item 1) ------------------------------------

def test_sr2_a_clinicians_basic_100_ml_h_is_refused_outside_service_mode():
    hal, ctl, door = _door("nobasic")
    key_bounce = {"basic": {"rate": "100 mL/h", "vtbi": "240 mL"}}
    assert door.execute("PROPOSE", key_bounce, CLINICIAN, 3) == codes.SERVICE_MODE_REQUIRED
    # the service role may not program a patient's pump outside service mode either
    assert door.execute("PROPOSE", key_bounce, SERVICE_ROLE, 3) == codes.NOT_AUTHORISED
    # nor may anyone hand the controller a bench program outside it
    assert ctl.request("program", CLINICIAN, program.basic(3, 100000, 240000)) == \
        codes.SERVICE_MODE_REQUIRED
    assert ctl.state == codes.IDLE and ctl.program is None
    assert door.execute("STATUS", {}, PATIENT, 0)["mode"] == "CLINICAL"


def test_service_mode_takes_bench_programs_only_and_clears_the_patient():
    hal, ctl, door = _door("svc")
    assert _program(door, _label_args(cycle=2, day_from=1, day_to=1), 4)["program_id"] == 4
    assert ctl.plan != 0 and ctl.weight_g == 70000
    # a patient's program is loaded: the pump is not taken into service mode under it
    assert door.execute("SERVICE", {}, SERVICE_ROLE, 0) == codes.INVALID_STATE
    assert door.execute("CLEAR", {}, CLINICIAN, 5) == {"state": codes.IDLE}
    assert door.execute("SERVICE", {}, SERVICE_ROLE, 0) == {"state": codes.SERVICE}
    assert ctl.plan == 0 and ctl.weight_g == 0                   # patient and plan cleared
    # in service mode: no patient's program, by anyone; the clinician may not program
    assert door.execute("PROPOSE", _label_args(), CLINICIAN, 6) == codes.NOT_AUTHORISED
    assert door.execute("PROPOSE", _label_args(), SERVICE_ROLE, 6) == \
        codes.SERVICE_MODE_ACTIVE
    assert door.execute("OVERDOSE", {"reason": "wrong_bag"}, CLINICIAN, 6) == \
        codes.NOT_AUTHORISED
    assert _program(door, BASIC, 7)["program_id"] == 7
    assert door.execute("STATUS", {}, PATIENT, 0)["mode"] == codes.SERVICE
    # service mode survives a reboot, and clearing a bench program goes back to it
    ctl2 = Controller(hal)
    assert ctl2.boot() == codes.PROGRAMMED and ctl2.service
    door2 = Commands(ctl2, auth.Keys(hal.storage))
    assert door2.execute("CLEAR", {}, SERVICE_ROLE, 8) == {"state": codes.SERVICE}
    ctl3 = Controller(hal)
    assert ctl3.boot() == codes.SERVICE and ctl3.service
    door3 = Commands(ctl3, auth.Keys(hal.storage))
    # leaving service mode: no bench program carries over into a patient's pump
    assert door3.execute("EXIT_SERVICE", {}, SERVICE_ROLE, 9) == {"state": codes.IDLE}
    assert not ctl3.service and ctl3.program is None
    assert door3.execute("PROPOSE", BASIC, CLINICIAN, 10) == codes.SERVICE_MODE_REQUIRED


def test_door_and_frames_give_the_same_program_record():
    """A program proposed and confirmed through serial frames and one given to the door
    directly (as the simulator does) journal the very same PROGRAM record."""
    for args in (BASIC, _label_args()):
        hal, ctl, door = _door("direct")
        assert _program(door, args, 5)["program_id"] == 5
        direct = ctl.journal.program[3]

        hal2, ctl2 = _pump("framed")
        uart = MemUart()
        proto = Protocol(ctl2, uart, hal2.storage)
        assert proto.keys.set("c", KEY_C) and proto.keys.set("s", KEY_S)
        slot = "c"
        if "basic" in args:
            slot = "s"
            assert _framed(proto, hal2, uart, 0, "SERVICE", {}, 4, slot)["state"] == "SERVICE"
        echo = _framed(proto, hal2, uart, 1, "PROPOSE", args, 5, slot)["echo"]
        assert _framed(proto, hal2, uart, 2, "CONFIRM", {"echo": echo}, 6, slot)[
            "program_id"] == 5
        assert ctl2.journal.program[3] == direct


def _framed(proto, hal, uart, seq, command, args, counter, slot="c"):
    """One clinician (or service: slot "s") frame through the protocol (the firmware's
    codec): its OK payload."""
    import json
    from binascii import unhexlify
    text = json.dumps(args)
    key = KEY_C if slot == "c" else KEY_S
    tag = auth.tag_hex(unhexlify(key), slot, counter, command, text)
    uart.feed(frame_text(seq, command, text, "%s:%d:%s" % (slot, counter, tag)))
    proto.poll(hal.ticks_ms())
    for line in uart.take().split(b"\n"):
        got = parse(line) if line else None
        if got is not None and not isinstance(got, str) and got[0] == str(seq):
            assert got[1] == "OK", line
            return json.loads(got[2])
    raise AssertionError("no reply to %s" % command)


def test_sr3_ml_per_h_in_either_case_on_both_paths():
    for args in (BASIC, _label_args()):
        hal, ctl, door = _door("mlh")
        role = _role(door, args)
        want = door.execute("PROPOSE", args, role, 3)["echo"]
        if "basic" in args:
            lower = {"basic": {"rate": "10 ml/h", "vtbi": "240 mL"}}
        else:
            lower = _label_args("ml/h")
        got = door.execute("PROPOSE", lower, role, 3)
        assert got["echo"] == want, (args, got)
        for unit in program.RATE_UNITS:
            assert program.keyed_rate("10", unit) == 10000
        assert program.keyed_rate("10", "mL/min") == codes.UNIT_REJECTED
        assert program.keyed_rate("1e1", "mL/h") == codes.BAD_INPUT


def test_frames_codec_round_trip():
    raw = frame_text(12, "START", "{}", "c:3:" + "ab" * 32)
    assert raw.endswith(b"\n")
    line = raw[:-1]
    assert parse(line) == ("12", "START", "{} c:3:" + "ab" * 32,
                           crc32(line[:line.rfind(b" ")]))
    assert parse(b"12 START {} 00000000") == "crc"
    assert parse(b"12 START {}") == "crc missing"
    assert parse(b"\x0012 START {} 00000000") == "charset"
    body = b"12START{}"
    assert parse(body + (" %08x" % crc32(body)).encode()) == "syntax"


def test_log_reads_journal_records_through_the_journal():
    hal, ctl, door = _door("log")
    assert _program(door, BASIC, 2)["program_id"] == 2
    n = ctl.journal.seq
    recs = ctl.journal.read_records(0, 8)
    assert len(recs) == min(n, 8)
    for r in recs:
        assert ctl.journal.parse(r) is not None
    got = door.execute("LOG", {"slot": 0, "n": 4}, SERVICE_ROLE, 0)
    assert got["recs"][0] == _hex(recs[0]) and len(got["recs"]) == min(n, 4)
    assert ctl.journal.read_records(ctl.journal.capacity - 1, 4) == []


def _hex(b):
    from binascii import hexlify
    return hexlify(b).decode()
