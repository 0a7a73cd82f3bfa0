"""host.client: framing, the error family, retries that never run a command twice, keys,
journal download — against the firmware's protocol in-process (a loopback "port")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import serial
from fakehal import FakeHal, run_for

from host.client import (
    Frame,
    KeyRing,
    NotAuthorised,
    PumpClient,
    PumpConnectionError,
    PumpError,
    PumpProtocolError,
    PumpRefused,
    PumpTimeout,
    decode,
    encode,
    event_name,
)
from pump import auth, codes, frames, protocol
from pump.controller import Controller


class LoopbackPort:
    """A pyserial-like port wired to a Protocol on a FakeHal. `drop_replies` loses that
    many replies (the command ran, the answer never arrived); `drop_requests` loses
    requests before the pump sees them."""

    def __init__(self, root: str, drop_replies: int = 0, drop_requests: int = 0) -> None:
        self.hal = FakeHal(root)
        self.ctl = Controller(self.hal)
        self.ctl.boot()
        self.uart = self
        self.rx = bytearray()
        self.tx = bytearray()
        self.proto = protocol.Protocol(self.ctl, self, self.hal.storage)
        self.drop_replies = drop_replies
        self.drop_requests = drop_requests
        self.requests: list[bytes] = []
        self.name = "loop://pump"

    # the firmware's side (hal.uart)
    def read(self, n: int = 1) -> bytes | None:
        if self.rx:
            out = bytes(self.rx[:n])
            del self.rx[:n]
            return out
        return None if n is None else b""

    def write(self, b: bytes) -> int:
        if self.proto is not None and self._pump_writing:
            self.tx += b
            return len(b)
        # the host's side
        self.requests.append(bytes(b))
        if self.drop_requests:
            self.drop_requests -= 1
            return len(b)
        self.rx += b
        self._pump_writing = True
        try:
            n = len(self.tx)
            self.proto.poll(self.hal.ticks_ms())
            if self.drop_replies and len(self.tx) > n:
                self.drop_replies -= 1
                del self.tx[n:]
        finally:
            self._pump_writing = False
        return len(b)

    _pump_writing = False

    # the host's side (pyserial API)
    @property
    def in_waiting(self) -> int:
        return len(self.tx)

    def host_read(self, n: int) -> bytes:
        out = bytes(self.tx[:n])
        del self.tx[:n]
        return out

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class HostPort:
    """What the client holds: host_read as read()."""

    def __init__(self, lp: LoopbackPort) -> None:
        self.lp = lp
        self.name = lp.name

    def write(self, b: bytes) -> int:
        return self.lp.write(b)

    def read(self, n: int) -> bytes:
        return self.lp.host_read(n)

    @property
    def in_waiting(self) -> int:
        return self.lp.in_waiting

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate("test")


def pump(ring: KeyRing, root: Path, **kw: int) -> tuple[LoopbackPort, PumpClient]:
    lp = LoopbackPort(str(root), **kw)
    lp.proto.keys.set("c", ring.keys["c"])
    lp.proto.keys.set("s", ring.keys["s"])
    return lp, PumpClient(port=HostPort(lp), keys=ring, timeout=0.05, retries=2)


def test_encode_decode_round_trip_with_the_firmware_parser(ring: KeyRing, tmp_path: Path) -> None:
    raw = encode(7, "PROPOSE", {"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}, "c", 5,
                 ring.key("c"))
    assert raw.endswith(b"\n") and len(raw) <= protocol.MAX_FRAME
    f = decode(protocol.frame("7", "OK", {"x": [1, None]}))
    assert f == Frame("7", "OK", {"x": [1, None]}, f.raw)
    for bad in (b"7 OK {} 00000000\n", b"garbage\n", b"7 OK [1] " + b"%08x" % 0):
        with pytest.raises(PumpProtocolError):
            decode(bad)
    with pytest.raises(PumpError):
        encode(1, "PING", {"x": "y" * 600})


def test_host_frames_and_signs_with_the_firmware_codec(ring: KeyRing,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One codec: host.client builds and splits frames with pump.frames and signs with
    pump.auth.message, the very functions the pump runs; a round trip through them."""
    calls: list[str] = []
    for mod, name in ((frames, "frame_text"), (frames, "parse"), (auth, "message")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    args = {"basic": {"vtbi": "240 mL", "rate": "10 mL/h"}}
    raw = encode(7, "PROPOSE", args, "c", 5, ring.key("c"))
    assert calls == ["message", "frame_text"]
    seq, kind, rest, crc = frames.parse(raw.rstrip(b"\n"))
    text, tok = rest.rsplit(" ", 1)
    assert (seq, kind, json.loads(text)) == ("7", "PROPOSE", args)
    assert tok == "c:5:" + auth.tag_hex(ring.key("c"), "c", 5, "PROPOSE", text)
    reply = protocol.frame("7", "OK", {"echo": ["-", 10000, 240000, 0, 0, 0]})
    calls.clear()
    assert decode(reply).obj == {"echo": ["-", 10000, 240000, 0, 0, 0]}
    assert calls == ["parse"]


def test_errors_are_one_family() -> None:
    for cls in (PumpTimeout, PumpConnectionError, PumpProtocolError, PumpRefused,
                NotAuthorised):
        assert issubclass(cls, PumpError)
    with pytest.raises(PumpConnectionError) as e:
        PumpClient("/dev/does-not-exist-pump")
    assert "socket://host:port" in str(e.value)


def test_program_start_pause_as_the_roles_allow(ring: KeyRing, tmp_path: Path) -> None:
    lp, c = pump(ring, tmp_path)
    with pytest.raises(PumpRefused) as e:                  # a bench program: service mode
        c.call("PROPOSE", {"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}}, role="clinician")
    assert e.value.code == codes.SERVICE_MODE_REQUIRED
    assert c.service()["state"] == codes.SERVICE
    echo = c.propose_basic("10 mL/h", "240 mL")["echo"]
    assert echo == ["-", 10000, 240000, 0, 0, 0]
    assert c.confirm(echo, "service")["state"] == codes.PROGRAMMED
    assert c.start()["state"] == codes.RUNNING
    assert c.pause()["state"] == codes.PAUSED
    with pytest.raises(NotAuthorised):
        c.call("PROPOSE", {"basic": {"rate": "10 mL/h", "vtbi": "240 mL"}})  # as patient
    with pytest.raises(PumpRefused) as e:
        c.call("PROPOSE", {"basic": {"rate": "10 mL/min", "vtbi": "240 mL"}}, role="service")
    assert e.value.code == codes.INVALID_STATE           # not while a program is under way
    assert c.stop()["state"] == codes.PROGRAMMED
    with pytest.raises(PumpRefused) as e:
        c.call("PROPOSE", {"basic": {"rate": "10 mL/min", "vtbi": "240 mL"}}, role="service")
    assert e.value.code == codes.UNIT_REJECTED
    assert [f.obj["code"] for f in c.events if f.kind == "EVT"][:4] == \
        [codes.SERVICE, codes.PROGRAMMED, codes.RUNNING, codes.PAUSED]


def test_lost_reply_is_retried_with_the_same_frame_and_not_run_twice(ring: KeyRing,
                                                                   tmp_path: Path) -> None:
    lp, c = pump(ring, tmp_path)
    c.service()
    c.confirm(c.propose_basic("10 mL/h", "240 mL")["echo"], "service")
    c.start()
    run_for(lp.ctl, lp.hal, 60000)
    lp.drop_replies = 1
    jseq = lp.ctl.journal.seq
    assert c.pause()["state"] == codes.PAUSED
    assert c.retransmits == 1
    assert lp.requests[-1] == lp.requests[-2]          # the very same bytes, same seq
    assert lp.ctl.journal.seq - jseq == 1              # one pause journalled, not two
    # an authenticated command whose reply is lost: the retry is not seen as a replay
    lp.drop_replies = 1
    assert c.resume(role="clinician")["state"] == codes.RUNNING
    assert c.retransmits == 2


def test_lost_request_is_resent(ring: KeyRing, tmp_path: Path) -> None:
    lp, c = pump(ring, tmp_path, drop_requests=2)
    assert c.ping()["pong"] is True
    assert c.retransmits == 2
    lp.drop_requests = 5
    with pytest.raises(PumpTimeout) as e:
        c.ping()
    assert "after 3 attempts" in str(e.value)


def test_counter_moved_on_by_another_host_is_recovered(ring: KeyRing, tmp_path: Path) -> None:
    lp, c = pump(ring, tmp_path)
    c.status()
    c.service()
    c._counter = 0
    assert lp.ctl.accept_auth_counter(50)               # someone else used 1..50
    echo = c.propose_basic("10 mL/h", "240 mL")["echo"]  # REPLAYED once, then a fresh counter
    assert echo[1] == 10000 and lp.ctl.auth_service == 51


def test_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    lp, c = pump(KeyRing.generate(), tmp_path)
    c.keys = KeyRing({})
    with pytest.raises(PumpError, match="clinician key"):
        c.start()


def test_log_download_decodes_the_journal(ring: KeyRing, tmp_path: Path) -> None:
    lp, c = pump(ring, tmp_path)
    c.service()
    c.confirm(c.propose_basic("10 mL/h", "240 mL")["echo"], "service")
    c.start()
    run_for(lp.ctl, lp.hal, 600000)
    c.pause()
    recs = c.log_records()
    assert len(recs) == lp.ctl.journal.seq
    assert [r["seq"] for r in recs] == sorted(r["seq"] for r in recs)
    kinds = {r["kind"] for r in recs}
    assert {"PROGRAM", "EVENT", "CHECKPOINT"} <= kinds
    prog = [r for r in recs if r["kind"] == "PROGRAM"][-1]
    assert prog["rate_ul_per_h"] == 10000 and prog["vtbi_nl"] == 240000000
    names = [r.get("event_name") for r in recs if r["kind"] == "EVENT"]
    assert "start" in names and "pause" in names
    assert recs[-1]["state"] == codes.PAUSED
    with pytest.raises(NotAuthorised):
        c.call("LOG", {"slot": 0, "n": 4}, role="clinician")


def test_sr9_log_of_a_run_with_a_calibration_names_every_event(ring: KeyRing,
                                                                 tmp_path: Path) -> None:
    lp, c = pump(ring, tmp_path)
    c.call("SERVICE", role="service")
    c.call("CAL", {"stroke_nl": 50400}, role="service")
    c.call("EXIT_SERVICE", role="service")
    c.service()
    c.confirm(c.propose_basic("10 mL/h", "240 mL")["echo"], "service")
    c.start()
    run_for(lp.ctl, lp.hal, 60000)
    c.pause()
    run_for(lp.ctl, lp.hal, 1000000)                      # past the pause reminder (SR-14)
    events = [r for r in c.log_records() if r["kind"] == "EVENT"]
    names = [r["event_name"] for r in events]
    assert not [n for n in names if not n or n.startswith("unknown")], names
    assert names == ["restore_idle", "service", "calibrated", "exit_service", "service",
                     "program", "start", "pause", "PAUSE_TIMEOUT"]
    assert events[2]["arg"] == 50400
    assert event_name(0) == "" and event_name(63) == "unknown:63"


def test_keyring_file_round_trip(tmp_path: Path) -> None:
    ring = KeyRing.generate("pump-7")
    p = tmp_path / "k" / "keys.json"
    ring.save(p)
    assert (p.stat().st_mode & 0o777) == 0o600
    again = KeyRing.load(p)
    assert again.keys == ring.keys and again.device == "pump-7"
    p.write_text(json.dumps({"c": "zz"}))
    with pytest.raises(PumpError, match="hex key"):
        KeyRing.load(p)


def test_serial_for_url_loop_is_accepted() -> None:
    # loop:// only echoes: the client sees its own request, which is not a reply
    c = PumpClient("loop://", timeout=0.05, retries=0)
    with pytest.raises(PumpTimeout):
        c.ping()
    c.close()
    assert isinstance(serial.serial_for_url("loop://"), serial.SerialBase)
