"""The serial protocol at its edges (docs/protocol.md, SR-11, SR-13): the 512-byte line bound
to the byte, CRLF, frames joined in one read, the idle drop of a partial line and periodic
telemetry to the ms, the per-wake read bound under a flood, the event queue's bound, the
reply cache's size and what it keeps, the REPLAYED refusal's window in words, the auth
field's syntax. Runs on CPython and MicroPython."""
from fakehal import run_for
from test_protocol import Bench, mk, parse

from pump import codes, protocol
from pump.frames import MAX_FRAME


def _sized(seq, total):
    """A PING frame exactly `total` bytes long, newline included."""
    pad = total - len(mk(seq, "PING", '{"x": ""}'))
    assert pad >= 0
    f = mk(seq, "PING", '{"x": "%s"}' % ("a" * pad))
    assert len(f) == total
    return f


def _ticks(b):
    return b.hal.ticks_ms()


def _poll_at(b, t):
    b.hal.t = t
    b.proto.poll(_ticks(b))
    return parse(b.uart.take())


# --- the line ------------------------------------------------------------------------------

def test_sr13_a_line_of_512_bytes_is_answered_one_byte_more_is_too_long():
    b = Bench("edge512")
    got = b.send(_sized(5, MAX_FRAME))
    assert len(got) == 1 and got[0][0] == "5", got          # answered for itself
    got = b.send(_sized(6, MAX_FRAME + 1))
    assert got == [("?", "ERR", {"code": protocol.TOO_LONG, "why": "max 512 bytes"})]
    assert b.send(_sized(7, MAX_FRAME - 1))[0][0] == "7"
    assert len(b.proto.buf) == MAX_FRAME                     # the fixed receive buffer


def test_sr13_a_crlf_line_end_is_taken():
    b = Bench("crlf")
    f = mk(5, "PING")
    got = b.send(f[:-1] + b"\r\n")
    assert [r[:2] for r in got] == [("5", "OK")]


def test_frames_joined_in_one_read_are_each_answered_once():
    b = Bench("joined")
    got = b.send(mk(1, "PING") + mk(2, "STATUS") + mk(3, "PING"))
    assert [r[:2] for r in got] == [("1", "OK"), ("2", "OK"), ("3", "OK")]


def test_sr13_a_partial_line_is_dropped_after_exactly_2_s_without_a_byte():
    b = Bench("idle")
    t0 = b.hal.t
    b.uart.feed(mk(3, "PING")[:10])
    b.proto.poll(_ticks(b))
    now = _ticks(b)
    assert b.proto.wake(now, now + 60000) == now + 2000      # the board wakes to drop it
    assert b.proto.wake(now, now + 2001) == now + 2000
    assert _poll_at(b, t0 + 1999) == []
    assert _poll_at(b, t0 + 2000) == [("?", "ERR", {"code": protocol.BAD_FRAME,
                                                    "why": "truncated"})]
    now = _ticks(b)
    assert b.proto.wake(now, now + 60000) == now + 60000     # nothing partial any more
    assert b.send(mk(4, "PING"))[0][:2] == ("4", "OK")


def test_watch_telemetry_comes_on_the_period_to_the_ms():
    b = Bench("tlmms")
    t0 = b.hal.t
    b.uart.feed(mk(9, "WATCH", '{"period_s": 10}'))
    b.proto.poll(_ticks(b))
    got = parse(b.uart.take())
    assert [r[:2] for r in got] == [("9", "OK"), ("*", "TLM")]   # the first frame at once
    now = _ticks(b)
    assert b.proto.wake(now, now + 60000) == now + 10000
    assert b.proto.wake(now, now + 10001) == now + 10000
    assert _poll_at(b, t0 + 9999) == []
    assert [r[1] for r in _poll_at(b, t0 + 10000)] == ["TLM"]
    assert _poll_at(b, t0 + 10001) == []


# --- bounded work and memory -----------------------------------------------------------------

def test_pr5_a_flood_is_read_4_x_512_bytes_a_wake_and_every_frame_answered_once():
    b = Bench("flood")
    frames = b"".join(mk(1000 + i, "PING") for i in range(150))
    assert len(frames) > 4 * MAX_FRAME + MAX_FRAME
    b.uart.feed(frames)
    assert b.proto.poll(_ticks(b)) is True
    assert len(b.uart.rx) == len(frames) - 4 * MAX_FRAME     # the controller steps now
    seen = [r[0] for r in parse(b.uart.take())]
    polls = 1
    while b.uart.rx:
        assert b.proto.poll(_ticks(b)) is True
        seen += [r[0] for r in parse(b.uart.take())]
        polls += 1
    assert seen == [str(1000 + i) for i in range(150)]
    assert polls == (len(frames) + 4 * MAX_FRAME - 1) // (4 * MAX_FRAME)
    assert b.proto.poll(_ticks(b)) is False                  # nothing read: no extra step
    assert len(b.proto.buf) == MAX_FRAME


def test_events_queue_keeps_the_8_newest_and_says_how_many_were_dropped():
    b = Bench("events")
    b.program_basic()
    b.ok("START", slot="c")
    b.uart.take()
    every = []
    b.ctl.listeners.append(lambda kind, code, value: every.append([kind, code, value]))
    # 12 state changes with no poll between (the controller alone, e.g. a busy wake), each
    # at its own delivered volume
    for i in range(6):
        run_for(b.ctl, b.hal, 40000)
        assert b.proto.execute("PAUSE", {}, codes.PATIENT, 0)["state"] == codes.PAUSED
        assert b.proto.execute("RESUME", {}, codes.PATIENT, 0)["state"] == codes.RUNNING
    assert len(every) == 12 and len(set(e[2] for e in every)) == 6
    got = [r for r in _poll_at(b, b.hal.t) if r[1] == "EVT"]
    assert [[r[2]["kind"], r[2]["code"], r[2]["value"]] for r in got] == every[4:]
    assert [r[2]["dropped"] for r in got] == [4] * 8


# --- retries ---------------------------------------------------------------------------------

def test_retry_cache_holds_the_last_4_state_changing_replies():
    b = Bench("cache4")
    b.program_basic()
    b.ok("START", slot="c")
    f = [mk(200 + i, "PAUSE" if i % 2 == 0 else "RESUME") for i in range(5)]
    first = [b.send(x) for x in f]
    assert b.ctl.state == codes.PAUSED
    jseq = b.ctl.journal.seq
    for i in (4, 3, 2, 1):                       # the newest four: answered, not run again
        assert b.send(f[i]) == [r for r in first[i] if r[0] == str(200 + i)]
        assert b.ctl.state == codes.PAUSED and b.ctl.journal.seq == jseq
    b.proto.execute("RESUME", {}, codes.PATIENT, 0)
    assert b.ctl.state == codes.RUNNING
    b.uart.take()
    got = [r for r in b.send(f[0]) if r[0] == "200"]   # the fifth back: a new request
    assert got[0][:2] == ("200", "OK") and b.ctl.state == codes.PAUSED


def test_read_only_commands_are_run_again_and_an_authenticated_read_is_answered_again():
    b = Bench("rocache")
    s = mk(300, "STATUS")
    assert b.send(s)[0][2]["state"] == codes.IDLE
    b.ok("SERVICE", slot="s")
    assert b.send(s)[0][2]["state"] == codes.SERVICE         # a fresh answer
    b.ctr += 1
    log = mk(301, "LOG", '{"slot": 0, "n": 1}', "s", b.ctr)
    once = b.send(log)
    assert once[0][1] == "OK"
    assert b.send(log) == once                  # the same bytes: the same answer, no REPLAYED


# --- authentication ---------------------------------------------------------------------------

def test_sr11_replayed_says_the_counter_window_for_each_key():
    b = Bench("window")
    b.ctr = 20
    b.ok("SERVICE", slot="s")                    # service counter 21
    assert b.send(mk(400, "PING", "{}", "c", 10))[0][1] == "OK"   # clinician counter 10
    assert (b.ctl.auth_counter, b.ctl.auth_service) == (10, 21)
    for slot, ctr, low in (("c", 5, 10), ("s", 15, 21), ("c", 2000, 10), ("s", 1022, 21)):
        got = b.send(mk(401, "PING", "{}", slot, ctr))
        assert got == [("401", "ERR", {
            "code": protocol.REPLAYED,
            "why": "counter must be above %d and at most %d" % (low, 21 + 1000)})], got
    assert b.send(mk(402, "PING", "{}", "s", 1021))[0][1] == "OK"  # the window's edge


def test_sr11_auth_field_syntax_is_checked_before_the_tag():
    b = Bench("authsyntax")
    before = (b.ctl.auth_counter, b.ctl.auth_service)
    good = mk(500, "PING", "{}", "c", 1)
    body = good[:good.rfind(b" ")].decode()
    head, _, field = body.rpartition(" ")
    tag = field.split(":")[2]
    assert tag.upper() != tag

    def send(auth_field):
        from pump.crc import crc32
        t = (head + " " + auth_field).encode()
        return b.send(t + (" %08x\n" % crc32(t)).encode())

    bad = ("c:1:" + tag[:-1],                    # 63 hex digits
           "c:1:" + tag.upper(),                  # 64 digits, not lowercase hex
           "c:1:" + tag[:-1] + "g",               # 64 characters, one not hex
           "c:12345678901:" + tag,                # a counter of 11 digits
           "c::" + tag, "c:1", "x:1:" + tag)
    for f in bad:
        assert send(f) == [("500", "ERR", {"code": protocol.BAD_FRAME, "why": "auth"})], f
    # ten digits is a counter: past 2**30, so refused as replayed, not as syntax
    got = b.send(mk(501, "PING", "{}", "c", 1234567890))
    assert got[0][2]["code"] == protocol.REPLAYED
    got = send("c:1:" + "0" * 64)                # well formed, wrong tag
    assert got == [("500", "ERR", {"code": codes.NOT_AUTHORISED, "why": "auth"})]
    assert (b.ctl.auth_counter, b.ctl.auth_service) == before
    assert send(field)[0][:2] == ("500", "OK")


def test_sr11_a_refusal_carries_its_why_and_a_plain_one_none():
    b = Bench("why")
    got = b.send(mk(600, "PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}'))
    assert got == [("600", "ERR", {"code": codes.NOT_AUTHORISED})]
    got = b.cmd("PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}', "c")
    assert got == ("ERR", {"code": codes.SERVICE_MODE_REQUIRED, "why": "a rate/VTBI program "
                                   "without the drug library is for the bench"})


def test_unknown_command_is_named_in_its_first_16_characters():
    b = Bench("unknown")
    assert b.send(mk(7, "ABCDEFGHIJKLMNOPQRST")) == [
        ("7", "ERR", {"code": protocol.UNKNOWN_COMMAND, "why": "ABCDEFGHIJKLMNOP"})]


def test_sr13_a_failure_inside_is_answered_internal_and_the_next_frame_works():
    b = Bench("internal")

    def broken(name, args, role, counter):
        raise ValueError("boom")

    b.proto.execute = broken
    assert b.send(mk(8, "PING")) == [("?", "ERR", {"code": protocol.INTERNAL, "why": ""})]
    del b.proto.execute
    assert b.send(mk(9, "PING"))[0][:2] == ("9", "OK")
