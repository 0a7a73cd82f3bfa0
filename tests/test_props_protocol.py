"""Property tests of the serial protocol parser (SR-13, SR-11): whatever bytes arrive, in
whatever pieces, nothing raises past the parser, every byte the pump writes is a valid frame,
and nothing privileged changes without a valid privileged frame."""

from __future__ import annotations

import json
import tempfile
import zlib

from fakehal import FakeHal, clinical, run_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards.memuart import MemUart
from pump import auth, codes, protocol
from pump.codes import CLINICIAN
from pump.controller import Controller

KEY_C = bytes(range(32))
KEY_S = bytes(range(32, 64))
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def running_pump(root: str) -> tuple[FakeHal, Controller, MemUart, protocol.Protocol]:
    hal = FakeHal(root)
    ctl = Controller(hal)
    ctl.boot()
    assert ctl.request("program", CLINICIAN, clinical(1, 10000)) is None   # a patient's
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 60000)
    uart = MemUart()
    proto = protocol.Protocol(ctl, uart, hal.storage)
    assert proto.keys.set("c", KEY_C.hex()) and proto.keys.set("s", KEY_S.hex())
    return hal, ctl, uart, proto


def privileged(ctl: Controller) -> tuple:
    """What only a valid privileged frame may change."""
    p = ctl.program
    return (p.pid, p.rate_ul_per_h, p.vtbi_nl, p.check, ctl.auth_counter, ctl.lockout_until_s,
            ctl.delivery.rate_ul_per_h, ctl.delivery.vtbi_nl)


def check_output(data: bytes) -> list[tuple[str, str, dict]]:
    """Every line the pump wrote is a frame with a valid CRC; never an INTERNAL error."""
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        sp = line.rfind(b" ")
        assert sp > 0 and zlib.crc32(line[:sp]) == int(line[sp + 1:], 16), line
        seq, kind, text = line[:sp].decode("ascii").split(" ", 2)
        obj = json.loads(text)
        assert kind in ("OK", "ERR", "EVT", "TLM"), line
        if kind == "ERR":
            assert obj["code"] != protocol.INTERNAL, line
        out.append((seq, kind, obj))
    assert len(data) <= 64 * protocol.MAX_REPLY
    return out


def feed_all(hal: FakeHal, ctl: Controller, uart: MemUart, proto: protocol.Protocol,
             chunks: list[bytes]) -> list[tuple[str, str, dict]]:
    for c in chunks:
        uart.rx += c
        proto.poll(hal.ticks_ms())
        hal.t += 700
        ctl.step(hal.ticks_ms())
    hal.t += 600000                                  # let any partial frame time out
    proto.poll(hal.ticks_ms())
    return check_output(bytes(uart.tx))


@SETTINGS
@given(st.lists(st.binary(min_size=0, max_size=700), min_size=1, max_size=8))
def test_sr13_arbitrary_bytes_never_raise_nor_change_anything(chunks: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as root:
        hal, ctl, uart, proto = running_pump(root)
        before = privileged(ctl)
        feed_all(hal, ctl, uart, proto, chunks)
        assert privileged(ctl) == before
        assert ctl.state == codes.RUNNING            # random bytes never pass a CRC


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
_args = st.dictionaries(st.sampled_from(["basic", "rate", "vtbi", "echo", "label", "entry",
                                         "slot", "key", "n", "period_s", "line_disconnected",
                                         "x"]), _json, max_size=4)


@st.composite
def crc_valid_frames(draw: st.DrawFn) -> bytes:
    """Frames a careless or hostile host can produce: any command, any JSON, a CRC that
    checks, and either no tag or a tag that is not valid (wrong key, garbled, stale)."""
    seq = draw(st.integers(0, 10**9 - 1))
    cmd = draw(st.sampled_from(sorted(protocol.COMMANDS)) | st.text("ABCDEFXYZ_", max_size=8))
    args = json.dumps(draw(_args))
    body = f"{seq} {cmd} {args}"
    kind = draw(st.sampled_from(["none", "wrong_key", "garbled", "bad_syntax"]))
    if kind != "none":
        slot = draw(st.sampled_from(["c", "s"]))
        ctr = draw(st.integers(0, 2**31))
        if kind == "wrong_key":
            tag = auth.tag_hex(b"not the key, not the key, nope!!", slot, ctr, cmd, args)
        elif kind == "garbled":
            good = auth.tag_hex(KEY_C if slot == "c" else KEY_S, slot, ctr, cmd, args)
            i = draw(st.integers(0, 63))
            tag = good[:i] + ("0" if good[i] != "0" else "1") + good[i + 1:]
        else:
            tag = draw(st.text("0123456789abcdefg:", max_size=70))
        body += f" {slot}:{ctr}:{tag}"
    raw = body.encode("utf-8")
    return raw + b" %08x\n" % zlib.crc32(raw)


@SETTINGS
@given(st.lists(crc_valid_frames(), min_size=1, max_size=12))
def test_sr11_no_privileged_change_without_a_valid_tag(frames: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as root:
        hal, ctl, uart, proto = running_pump(root)
        before = privileged(ctl)
        out = feed_all(hal, ctl, uart, proto, frames)
        assert privileged(ctl) == before             # program, counter, lockout: untouched
        assert proto.pending is None                 # no proposal without a clinician
        # only patient commands may have moved the state: pause, resume, stop
        assert ctl.state in (codes.RUNNING, codes.PAUSED, codes.PROGRAMMED)
        replies = [r for r in out if r[0] not in ("*", "?")]
        assert len(replies) <= len(frames)


@SETTINGS
@given(st.binary(max_size=300), st.integers(1, 40))
def test_valid_frame_after_any_garbage_is_answered(junk: bytes, piece: int) -> None:
    """Resynchronisation: after garbage and a newline, the next good frame gets its reply."""
    with tempfile.TemporaryDirectory() as root:
        hal, ctl, uart, proto = running_pump(root)
        body = b"4242 STATUS {}"
        data = junk + b"\n" + body + b" %08x\n" % zlib.crc32(body)
        chunks = [data[i:i + piece] for i in range(0, len(data), piece)]
        out = feed_all(hal, ctl, uart, proto, chunks)
        mine = [r for r in out if r[0] == "4242"]
        assert len(mine) == 1 and mine[0][1] == "OK" and mine[0][2]["state"] == "RUNNING"


def _colliding(body: bytes, target: int, start: int, n: int) -> bytes:
    """body with some of its bytes [start, start + n) ('a') turned to 'b' so that its CRC-32
    is `target`: CRC-32 is affine over GF(2), so the bytes to change solve a linear system."""
    base = zlib.crc32(body)
    cols = []
    for i in range(start, start + n):
        b = bytearray(body)
        b[i] ^= 0x03                          # 'a' <-> 'b'
        cols.append((zlib.crc32(bytes(b)) ^ base, 1 << (i - start)))
    want = base ^ target
    rows: list[tuple[int, int]] = []          # (crc delta, positions), reduced
    for d, m in cols:
        for rd, rm in rows:
            if d ^ rd < d:
                d, m = d ^ rd, m ^ rm
        if d:
            rows.append((d, m))
            rows.sort(reverse=True)
    pick = 0
    for rd, rm in rows:
        if want ^ rd < want:
            want, pick = want ^ rd, pick ^ rm
    assert want == 0, "no collision in this many bytes"
    out = bytearray(body)
    for i in range(n):
        if pick >> i & 1:
            out[start + i] ^= 0x03
    return bytes(out)


def test_sr13_a_frame_sharing_only_seq_and_crc_with_a_cached_one_gets_its_own_reply() -> None:
    """The reply cache answers a retry (the same bytes) without running it twice; a different
    frame whose seq and CRC-32 collide with a cached one is parsed and answered for itself
    (it once got the cached reply: "RUNNING" for a STATUS of a paused pump)."""
    with tempfile.TemporaryDirectory() as root:
        hal, ctl, uart, proto = running_pump(root)
        resume = b"77 RESUME {}"
        pause = b"78 PAUSE {}"
        feed_all(hal, ctl, uart, proto, [b"76 PAUSE {} %08x\n" % zlib.crc32(b"76 PAUSE {}"),
                                         resume + b" %08x\n" % zlib.crc32(resume),
                                         pause + b" %08x\n" % zlib.crc32(pause)])
        assert ctl.state == codes.PAUSED
        pad = b'77 STATUS {"pad": "' + b"a" * 48 + b'"}'
        forged = _colliding(pad, zlib.crc32(resume), 19, 48)
        assert zlib.crc32(forged) == zlib.crc32(resume) and forged != resume
        uart.tx = bytearray()
        out = feed_all(hal, ctl, uart, proto, [forged + b" %08x\n" % zlib.crc32(forged)])
        mine = [r for r in out if r[0] == "77"]
        assert len(mine) == 1 and mine[0][1] == "OK" and mine[0][2]["state"] == "PAUSED"
        uart.tx = bytearray()
        again = feed_all(hal, ctl, uart, proto, [resume + b" %08x\n" % zlib.crc32(resume)])
        assert [r for r in again if r[0] == "77"] == [("77", "OK", {"state": "RUNNING"})]
        assert ctl.state == codes.PAUSED          # a retry: answered, not run again
