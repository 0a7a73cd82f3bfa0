"""Serial protocol (firmware side): framing, roles (SR-11), two-step programming (SR-3),
replay protection, retries, bad input (SR-13). Runs on CPython and MicroPython."""
from binascii import hexlify, unhexlify

from fakehal import FakeHal, run_for, tmpdir

from boards.memuart import MemUart
from pump import auth, codes, commands, program, protocol
from pump.controller import Controller
from pump.crc import crc32

KEY_C = "c1" * 32
KEY_S = "5e" * 32


def mk(seq, cmd, args="{}", slot=None, ctr=0, key=None):
    """A frame as a host builds it (docs/protocol.md)."""
    body = "%s %s %s" % (seq, cmd, args)
    if slot is not None:
        if key is None:
            key = KEY_C if slot == "c" else KEY_S
        body += " %s:%d:%s" % (slot, ctr, auth.tag_hex(unhexlify(key), slot, ctr, cmd, args))
    b = body.encode()
    return b + (" %08x\n" % crc32(b)).encode()


def parse(data):
    """[(seq, kind, obj)] from the bytes a board wrote; every frame's CRC must check."""
    import json
    out = []
    for ln in data.split(b"\n"):
        if not ln:
            continue
        sp = ln.rfind(b" ")
        assert crc32(ln[:sp]) == int(ln[sp + 1:].decode(), 16), ln
        seq, kind, obj = ln[:sp].decode().split(" ", 2)
        out.append((seq, kind, json.loads(obj)))
    return out


class Bench:
    def __init__(self, tag, keys=True):
        self.hal = FakeHal(tmpdir(tag))
        self.ctl = Controller(self.hal)
        self.ctl.boot()
        self.uart = MemUart()
        self.proto = protocol.Protocol(self.ctl, self.uart, self.hal.storage)
        if keys:
            assert self.proto.keys.set("c", KEY_C)
            assert self.proto.keys.set("s", KEY_S)
        self.seq = 100
        self.ctr = 0

    def send(self, data):
        self.uart.feed(data)
        self.proto.poll(self.hal.ticks_ms())
        return parse(self.uart.take())

    def cmd(self, cmd, args="{}", slot=None):
        """Send one command; returns (kind, obj) of its reply (events are skipped)."""
        self.seq += 1
        if slot is not None:
            self.ctr += 1
        got = self.send(mk(self.seq, cmd, args, slot, self.ctr))
        mine = [r for r in got if r[0] == str(self.seq)]
        assert len(mine) == 1, got
        return mine[0][1], mine[0][2]

    def ok(self, cmd, args="{}", slot=None):
        kind, obj = self.cmd(cmd, args, slot)
        assert kind == "OK", (cmd, obj)
        return obj

    def err(self, cmd, args="{}", slot=None):
        kind, obj = self.cmd(cmd, args, slot)
        assert kind == "ERR", (cmd, obj)
        return obj["code"]

    def service(self):
        """Into service mode (the service role), where basic programs are taken."""
        if not self.ctl.service:
            assert self.ok("SERVICE", "{}", "s")["state"] == "SERVICE"

    def program_basic(self, rate="10 mL/h", vtbi="240 mL"):
        """A bench program, the way a bench gives one: service mode, the service role."""
        self.service()
        args = '{"basic": {"rate": "%s", "vtbi": "%s"}}' % (rate, vtbi)
        echo = self.ok("PROPOSE", args, "s")["echo"]
        return self.ok("CONFIRM", '{"echo": %s}' % _dumps(echo), "s")


def _dumps(v):
    import json
    return json.dumps(v)


def _state(b):
    c = b.ctl
    return (c.state, c.program, c.auth_counter, c.delivery.commanded_nl, c.alarm,
            c.lockout_until_s)


# --- HMAC (hand-built on hashlib.sha256) ------------------------------------------------------

def test_hmac_sha256_rfc4231_vectors():
    # RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first)
    cases = (
        (b"\x0b" * 20, b"Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe", b"what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    )
    for key, msg, want in cases:
        assert hexlify(auth.hmac_sha256(key, msg)).decode() == want


def test_hmac_sha256_matches_library_hmac():
    try:
        import hashlib
        import hmac
    except ImportError:
        return  # no hmac module on this MicroPython build: the RFC vectors above stand
    for n in (0, 1, 16, 32, 63, 64, 65, 200):
        key = bytes((i * 7 + n) & 0xFF for i in range(n))
        msg = bytes((i * 13) & 0xFF for i in range(3 * n + 1))
        want = hmac.new(key, msg, hashlib.sha256).digest()
        assert auth.hmac_sha256(key, msg) == want, n


def test_keys_persist_and_reject_bad_hex():
    b = Bench("keys")
    assert b.proto.keys.provisioned() == ["c", "s"]
    again = auth.Keys(b.hal.storage)
    assert again.provisioned() == ["c", "s"]
    for bad in ("", "zz" * 32, "ab" * 4, "ab" * 65, "abc", None, 5):
        assert not again.set("c", bad)
    assert not again.set("x", "ab" * 32)
    assert again.hexes["c"] == KEY_C


# --- framing --------------------------------------------------------------------------------

def test_ping_reply_carries_the_seq():
    b = Bench("ping")
    assert b.send(mk(7, "PING")) == [("7", "OK", {"pong": True, "fw": commands.VERSION,
                                                 "max_frame": protocol.MAX_FRAME})]


def test_sr13_bad_crc_charset_syntax_get_error_replies():
    b = Bench("bad")
    good = mk(5, "PING")
    cases = (
        good[:-3] + b"00\n",                 # CRC wrong
        b"5 PING {}\n",                       # CRC missing
        b"\xff\xfe 5 PING {} 00000000\n",     # not ASCII
        mk("x5", "PING"),                     # seq not a number
        mk(5, "PING", "").replace(b"PING ", b"PING"),
        mk("1234567890", "PING"),             # seq too long
    )
    for c in cases:
        got = b.send(c)
        assert len(got) == 1 and got[0][1] == "ERR", (c, got)
        assert got[0][0] == "?" and got[0][2]["code"] == protocol.BAD_FRAME, (c, got)
    assert b.send(mk(6, "LAUNCH")) == [("6", "ERR", {"code": protocol.UNKNOWN_COMMAND,
                                                     "why": "LAUNCH"})]
    for args in ("[]", "{", "5", '"x"', "{'a': 1}"):
        got = b.send(mk(8, "PING", args))
        assert got and got[0][2]["code"] in (codes.BAD_INPUT, protocol.BAD_FRAME), (args, got)
    assert b.send(b"\n\r\n") == []           # blank lines are ignored
    assert b.send(mk(9, "PING"))[0][1] == "OK"


def test_sr13_oversized_frame_dropped_whole_then_next_frame_works():
    b = Bench("long")
    before = _state(b)
    big = mk(3, "PING", '{"x": "%s"}' % ("a" * 600))
    got = b.send(big)
    assert got == [("?", "ERR", {"code": protocol.TOO_LONG, "why": "max 512 bytes"})]
    # the same, arriving in small pieces
    for i in range(0, len(big), 17):
        b.uart.feed(big[i:i + 17])
        b.proto.poll(b.hal.ticks_ms())
    assert parse(b.uart.take())[0][2]["code"] == protocol.TOO_LONG
    assert b.send(mk(4, "PING"))[0][:2] == ("4", "OK")
    assert _state(b) == before


def test_sr13_truncated_frame_times_out_with_an_error():
    b = Bench("trunc")
    b.uart.feed(mk(3, "PING")[:10])
    b.proto.poll(b.hal.ticks_ms())
    assert b.uart.take() == b""
    b.hal.t += 2500
    b.proto.poll(b.hal.ticks_ms())
    got = parse(b.uart.take())
    assert got == [("?", "ERR", {"code": protocol.BAD_FRAME, "why": "truncated"})]
    assert b.send(mk(4, "PING"))[0][:2] == ("4", "OK")


def test_frames_split_and_joined_arbitrarily():
    b = Bench("split")
    data = mk(1, "PING") + mk(2, "STATUS") + mk(3, "PING")
    for i in range(len(data)):
        b.uart.feed(data[i:i + 1])
        b.proto.poll(b.hal.ticks_ms())
    assert [r[0] for r in parse(b.uart.take())] == ["1", "2", "3"]


# --- roles and authentication (SR-11) --------------------------------------------------------

def test_sr11_patient_may_pause_stop_silence_status_but_not_program():
    b = Bench("roles")
    assert b.err("PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}') == \
        codes.NOT_AUTHORISED
    assert b.err("START") == codes.NOT_AUTHORISED
    assert b.err("LOG") == codes.NOT_AUTHORISED
    assert b.ctl.state == codes.IDLE and b.ctl.program is None
    b.program_basic()
    b.ok("START", slot="c")
    b.ok("SILENCE")
    b.ok("PAUSE")
    assert b.ctl.state == codes.PAUSED
    b.ok("RESUME")
    b.ok("STOP")
    assert b.ctl.state == codes.PROGRAMMED
    assert b.ok("STATUS")["state"] == codes.PROGRAMMED


def test_sr11_service_role_reads_log_but_cannot_program():
    b = Bench("svc")
    assert b.err("PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}', "s") == \
        codes.NOT_AUTHORISED
    assert b.err("LOG", slot="c") == codes.NOT_AUTHORISED
    got = b.ok("LOG", '{"slot": 0, "n": 4}', "s")
    assert got["cap"] == b.ctl.journal.capacity and len(got["recs"]) >= 1
    parsed = b.ctl.journal.parse(unhexlify(got["recs"][0]))
    assert parsed is not None


def test_sr11_bad_tag_or_wrong_key_is_not_authorised_and_changes_nothing():
    b = Bench("tag")
    before = _state(b)
    args = '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}'
    got = b.send(mk(1, "PROPOSE", args, "c", 1, key=KEY_S))        # service key, slot c
    assert got[0][2]["code"] == codes.NOT_AUTHORISED
    f = mk(2, "PROPOSE", args, "c", 2)
    tampered = f.replace(b"10 mL/h", b"90 mL/h")                    # CRC recomputed below
    body = tampered[:tampered.rfind(b" ")]
    tampered = body + (" %08x\n" % crc32(body)).encode()
    assert b.send(tampered)[0][2]["code"] == codes.NOT_AUTHORISED
    assert b.send(mk(3, "PROPOSE", args, "x", 3))[0][2]["code"] == protocol.BAD_FRAME
    assert _state(b) == before
    assert b.ctl.auth_counter == 0                # a bad tag never consumes a counter


def test_sr11_replayed_privileged_frame_refused_even_after_power_loss():
    b = Bench("replay")
    b.program_basic()
    start = mk(50, "START", "{}", "c", 10)
    assert b.send(start)[0][1] == "OK"
    b.ok("PAUSE")
    # the same authenticated command with a fresh seq (and CRC): the counter is stale
    again = mk(51, "START", "{}", "c", 10)
    assert b.send(again)[0][2]["code"] == protocol.REPLAYED
    assert b.ctl.state == codes.PAUSED
    # power loss: a new controller replays the journal; the counter survives (SR-9)
    b.ctl.journal.close()
    ctl = Controller(b.hal)
    ctl.boot()
    assert ctl.auth_counter == 10
    uart = MemUart()
    proto = protocol.Protocol(ctl, uart, b.hal.storage)
    uart.feed(again)
    proto.poll(b.hal.ticks_ms())
    assert parse(uart.take())[0][2]["code"] == protocol.REPLAYED
    assert ctl.state == codes.PAUSED


def test_retry_with_same_seq_is_answered_from_cache_not_run_twice():
    b = Bench("retry")
    b.program_basic()
    f = mk(70, "START", "{}", "c", 20)
    first = b.send(f)
    jseq = b.ctl.journal.seq
    assert b.send(f) == [r for r in first if r[0] == "70"]
    assert b.ctl.journal.seq == jseq
    p = mk(71, "PAUSE")
    r1 = b.send(p)
    b.ok("RESUME")
    assert b.send(p) == [r for r in r1 if r[0] == "71"]   # not a second pause
    assert b.ctl.state == codes.RUNNING


def test_key_provisioning_open_only_in_factory_state():
    b = Bench("prov", keys=False)
    assert b.ok("STATUS")["keys"] == []
    assert b.ok("KEY", '{"slot": "c", "key": "%s"}' % KEY_C)["keys"] == ["c"]
    assert b.err("KEY", '{"slot": "s", "key": "%s"}' % KEY_S) == codes.NOT_AUTHORISED
    assert b.err("KEY", '{"slot": "s", "key": "%s"}' % KEY_S, "c") == codes.NOT_AUTHORISED
    b.proto.keys.set("s", KEY_S)       # as a factory tool would, then rotate with service
    assert b.ok("KEY", '{"slot": "c", "key": "%s"}' % ("77" * 32), "s")["keys"] == ["c", "s"]
    assert b.err("KEY", '{"slot": "c", "key": "12"}', "s") == codes.BAD_INPUT


# --- programming (SR-3) ----------------------------------------------------------------------

def test_sr3_propose_then_confirm_in_separate_frames_and_no_start():
    b = Bench("sr3")
    b.service()
    got = b.ok("PROPOSE", '{"basic": {"rate": "4.17 mL/h", "vtbi": "100 mL"}}', "s")
    assert got["echo"] == ["-", 4170, 100000, 0, 0, 0]
    assert b.ctl.state == codes.SERVICE and b.ctl.program is None
    assert b.ok("STATUS")["proposal"] == got["echo"]
    # a confirm that does not echo the same values is refused
    assert b.err("CONFIRM", '{"echo": ["-", 41700, 100000, 0, 0, 0]}', "s") == codes.BAD_INPUT
    assert b.err("CONFIRM", '{"echo": ["-", 4170.0, 100000, 0, 0, 0]}', "s") == codes.BAD_INPUT
    assert b.err("CONFIRM", '{"echo": ["-", 4170, 100000, 0, 0, 0]}') == codes.NOT_AUTHORISED
    assert b.ctl.program is None
    b.ok("CONFIRM", '{"echo": ["-", 4170, 100000, 0, 0, 0]}', "s")
    assert b.ctl.state == codes.PROGRAMMED            # programmed, not started
    assert b.ctl.program.rate_ul_per_h == 4170
    # confirmed once: a second confirm has no proposal to confirm
    assert b.err("CONFIRM", '{"echo": ["-", 4170, 100000, 0, 0, 0]}', "s") == \
        commands.NO_PROPOSAL


def test_sr3_rate_only_in_ml_per_h():
    b = Bench("units")
    b.service()
    for rate in ("10 mL/min", "10", "240 mL/24h", "10 ml/hr", "10 mL/h/kg", "0.01 L/h"):
        args = '{"basic": {"rate": "%s", "vtbi": "240 mL"}}' % rate
        assert b.err("PROPOSE", args, "s") == codes.UNIT_REJECTED, rate
    assert b.err("PROPOSE", '{"basic": {"rate": 10, "vtbi": "240 mL"}}', "s") == codes.BAD_INPUT
    assert b.err("PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 L"}}', "s") == \
        codes.UNIT_REJECTED
    assert b.err("PROPOSE", '{"basic": {"rate": "1e3 mL/h", "vtbi": "240 mL"}}', "s") == \
        codes.BAD_INPUT
    assert b.err("PROPOSE", '{"basic": {"rate": "1000 mL/h", "vtbi": "240 mL"}}', "s") == \
        codes.RATE_VOLUME_MISMATCH
    assert b.ctl.program is None and b.proto.pending is None


def test_sr3_label_proposal_confirmed_with_its_echo():
    if not hasattr(program, "make_label"):
        return
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": 28000, "bag_hours": 24, "regimen": "r/r", "cycle": 2,
          "day_from": 1}
    label = program.make_label(rx, 270000)
    assert isinstance(label, dict), label
    b = Bench("label")
    args = _dumps({"label": label, "entry": {"rate": "10", "unit": "mL/h", "vtbi_ml": "240"}})
    echo = b.ok("PROPOSE", args, "c")["echo"]
    assert echo[0] == "blinatumomab" and echo[1] == 10000 and echo[2] == 240000
    b.ok("CONFIRM", _dumps({"echo": echo}), "c")
    assert b.ctl.state == codes.PROGRAMMED and b.ctl.program.vtbi_nl == 240000000
    bad = _dumps({"label": label, "entry": {"rate": "100", "unit": "mL/h", "vtbi_ml": "240"}})
    assert b.err("PROPOSE", bad, "c") == codes.RATE_VOLUME_MISMATCH
    per_day = _dumps({"label": label, "entry": {"rate": "240", "unit": "mL/24h",
                                                "vtbi_ml": "240"}})
    assert b.err("PROPOSE", per_day, "c") == codes.UNIT_REJECTED


def test_sr3_expired_proposal_says_so_and_programs_nothing():
    b = Bench("expire")
    b.service()
    echo = b.ok("PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}', "s")["echo"]
    b.hal.t += 121000
    assert b.ok("STATUS")["proposal"] is None
    assert b.err("CONFIRM", _dumps({"echo": echo}), "s") == commands.PROPOSAL_EXPIRED
    assert b.ctl.program is None
    # the expired proposal is gone: confirming again finds none
    assert b.err("CONFIRM", _dumps({"echo": echo}), "s") == commands.NO_PROPOSAL


def test_sr3_confirm_window_is_wall_clock_on_an_accelerated_board():
    """A board whose clock runs 100x the wall clock (the virtual board) gives a person the same
    120 s of wall-clock time to confirm: 12,000 s of its own clock."""
    b = Bench("window")
    b.hal.time_scale = 100
    b.proto = protocol.Protocol(b.ctl, b.uart, b.hal.storage)
    assert b.proto.keys.set("c", KEY_C) and b.proto.keys.set("s", KEY_S)
    b.service()
    got = b.ok("PROPOSE", '{"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}', "s")
    assert got["expires_s"] == 120                  # what the person is told: wall seconds
    b.hal.t += 2000 * 100                           # 2 s of wall time at human speed
    b.ok("CONFIRM", _dumps({"echo": got["echo"]}), "s")
    assert b.ctl.state == codes.PROGRAMMED
    got = b.ok("PROPOSE", '{"basic": {"rate": "5 mL/h", "vtbi": "240 mL"}}', "s")
    b.hal.t += 121000 * 100
    assert b.err("CONFIRM", _dumps({"echo": got["echo"]}), "s") == commands.PROPOSAL_EXPIRED


# --- telemetry and delivery going on ---------------------------------------------------------

def test_telemetry_events_and_periodic_frames():
    b = Bench("tlm")
    b.program_basic()
    b.seq += 1
    b.ctr += 1
    got = b.send(mk(b.seq, "START", "{}", "c", b.ctr))
    evts = [r for r in got if r[0] == "*"]
    assert ("*", "EVT") == evts[0][:2] and evts[0][2]["code"] == codes.RUNNING
    assert [r[0] for r in got] == [str(b.seq), "*"]     # the reply first, then the event
    assert b.ok("WATCH", '{"period_s": 10}') == {"period_s": 10}
    seen = 0
    for _ in range(5):
        b.hal.t += 10000
        b.ctl.step(b.hal.ticks_ms())
        b.proto.poll(b.hal.ticks_ms())
        for r in parse(b.uart.take()):
            if r[1] == "TLM":
                seen += 1
                assert r[2]["state"] == codes.RUNNING
    assert seen == 5


def test_sr13_garbage_while_running_changes_nothing_and_delivery_goes_on():
    ref = Bench("ref")
    ref.program_basic()
    ref.ok("START", slot="c")
    b = Bench("garb")
    b.program_basic()
    b.ok("START", slot="c")
    junk = (b"\x00\x01\x02garbage\xff\n", b"5 START {} c:99:" + b"0" * 64 + b" 0badc0de\n",
            b"1 PROPOSE {\"basic\": 1", b"x" * 2000 + b"\n", mk(1, "START")[:-5] + b"\n",
            b"\n\n\n", mk(2, "LAUNCH"), mk(3, "PROPOSE", '{"basic": {}}'))
    for i in range(12):
        run_for(ref.ctl, ref.hal, 30000)
        run_for(b.ctl, b.hal, 30000)
        b.send(junk[i % len(junk)])
        assert b.ctl.state == codes.RUNNING
    assert b.ctl.delivery.commanded_nl == ref.ctl.delivery.commanded_nl
    assert b.ctl.auth_counter == ref.ctl.auth_counter


def test_pr5_idle_poll_allocates_nothing():
    """The main loop polls the protocol on every wake: with no bytes waiting, that costs
    no allocation on MicroPython (PR-5 holds with the protocol in the loop)."""
    from fakehal import advance, heap_growth, skip_unless_micropython
    skip_unless_micropython()
    b = Bench("palloc")
    b.program_basic()
    b.ok("START", slot="c")
    end = b.hal.t + 24 * 3600000
    for _ in range(50):
        advance(b.ctl, b.hal, end)
        b.proto.poll(b.hal.ticks_ms())
    b.uart.take()

    def serve():
        now = b.hal.ticks_ms()
        b.proto.poll(now)
        b.proto.wake(now, now)

    used = heap_growth(serve, 2000)
    assert used == 0, used


def test_keys_survive_a_torn_key_file():
    """A power cut while writing either copy of the key store must not leave the pump
    keyless (that is the factory state, where anyone may provision keys): the other copy is
    read, and written back over the torn one."""
    b = Bench("torn")
    st = b.hal.storage
    for name in auth.KEY_FILES:
        f = st.open(name, "w")
        f.write("K2 3 c1c1")                          # torn mid-write
        f.close()
        again = auth.Keys(st)
        assert again.provisioned() == ["c", "s"] and again.hexes["c"] == KEY_C
        assert not again.factory() and not again.locked
        assert auth.Keys(st).provisioned() == ["c", "s"] and not auth.Keys(st).fault


def test_service_calibration_over_the_protocol():
    b = Bench("cal")
    args = '{"stroke_nl": 50400}'
    assert b.err("CAL", args, "c") == codes.NOT_AUTHORISED          # clinician key: no
    assert b.err("CAL", args, "s") == codes.INVALID_STATE           # not in SERVICE
    b.ok("SERVICE", slot="s")
    assert b.err("CAL", '{"stroke_nl": "x"}', "s") == codes.BAD_INPUT
    assert b.ctl.delivery.stroke_nl == 50000
    b.ok("CAL", args, "s")
    assert b.ctl.delivery.stroke_nl == 50400 and b.ctl.monitor.stroke_nl == 50400
    b.ok("EXIT_SERVICE", slot="s")
    assert b.ctl.state == codes.IDLE
