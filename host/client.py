"""Serial client for the pump protocol (docs/protocol.md): frames, retries, roles, keys.

    with PumpClient("/dev/ttyACM0", keys=KeyRing.load("keys.json")) as pump:
        pump.status()
        echo = pump.propose_basic("60 mL/h", "1 mL")["echo"]
        pump.confirm(echo)
        pump.start()

Any `serial_for_url` URL works: a device path, a pty, `socket://host:port`. A retry resends
the very same frame (same seq, same counter); the pump answers a repeated frame from its reply
cache, so a retry never runs a command twice. Every failure is a `PumpError` (host.errors).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial

from host.errors import (
    FrameTooLarge,
    KeyFileError,
    KeyMissing,
    NotAuthorised,
    PumpConnectionError,
    PumpError,
    PumpProtocolError,
    PumpRefused,
    PumpTimeout,
    UsageError,
)
from pump import auth as fw_auth
from pump import codes
from pump import frames as fw_frames
from pump import journal as jn
from pump import protocol as fw_protocol
from pump.states import TRIGGERS

# The client's public names; the error family (host.errors) is importable from here too.
__all__ = [
    "MUTATING", "SLOTS", "Frame", "KeyRing", "PumpClient", "decode", "encode", "event_name",
    "record_dict",
    "FrameTooLarge", "KeyFileError", "KeyMissing", "NotAuthorised", "PumpConnectionError",
    "PumpError", "PumpProtocolError", "PumpRefused", "PumpTimeout", "UsageError",
]

SLOTS = {"clinician": "c", "service": "s"}     # role name -> key slot; patient: no key
MUTATING = {"PAUSE", "STOP", "RESUME", "SILENCE", "ACK", "START", "CLEAR", "OVERRIDE", "PRIME",
            "OVERDOSE", "PREMEDICATED",
            "PROPOSE", "CONFIRM", "SERVICE", "EXIT_SERVICE", "CAL", "KEY"}


# --- frames --------------------------------------------------------------------------------------

@dataclass
class Frame:
    seq: str
    kind: str          # OK, ERR, EVT, TLM
    obj: dict[str, Any]
    raw: bytes


def encode(seq: int, command: str, args: dict[str, Any] | None = None,
           slot: str | None = None, counter: int = 0, key: bytes | None = None) -> bytes:
    """One request frame (the firmware's codec, pump.frames). With `slot`, the HMAC tag
    (pump.auth) over (slot, counter, command, args)."""
    args_text = json.dumps(args or {}, separators=(", ", ": "), sort_keys=True)
    tag = None
    if slot is not None:
        if key is None:
            raise KeyMissing(f"no key for slot {slot!r}")
        tag = f"{slot}:{counter}:{fw_auth.tag_hex(key, slot, counter, command, args_text)}"
    raw: bytes = fw_frames.frame_text(seq, command, args_text, tag)
    if len(raw) > fw_frames.MAX_FRAME:
        raise FrameTooLarge(f"{command}: a frame of {len(raw)} bytes; the pump takes at "
                            f"most {fw_frames.MAX_FRAME}")
    return raw


def decode(line: bytes) -> Frame:
    """A frame from one line the pump sent (without or with its newline), split by the
    firmware's codec (pump.frames)."""
    line = line.rstrip(b"\r\n")
    got = fw_frames.parse(line)
    if isinstance(got, str):
        raise PumpProtocolError(f"not a pump frame ({got}): {line[:120]!r}")
    seq, kind, text, _crc = got
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise PumpProtocolError(f"not a pump frame ({e}): {line[:120]!r}") from e
    if not isinstance(obj, dict):
        raise PumpProtocolError(f"frame payload is not an object: {line[:120]!r}")
    return Frame(seq, kind, obj, line)


# --- keys ----------------------------------------------------------------------------------------

class KeyRing:
    """Per-device keys, one per privileged role, in a JSON file: {"c": hex, "s": hex}.
    Keep it like a password: mode 0600, never in version control."""

    def __init__(self, keys: dict[str, str] | None = None, device: str = "") -> None:
        self.keys = dict(keys or {})
        self.device = device

    @classmethod
    def generate(cls, device: str = "") -> KeyRing:
        return cls({s: secrets.token_hex(32) for s in SLOTS.values()}, device)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyRing:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constant)
        except (OSError, ValueError, RecursionError) as e:
            raise KeyFileError(f"cannot read key file {path}: {e} (expected JSON: "
                               '{"c": "<hex>", "s": "<hex>"})') from e
        if not isinstance(d, dict):
            raise KeyFileError(f"key file {path}: expected a JSON object "
                               '{"c": "<hex>", "s": "<hex>"}')
        keys = {s: d[s] for s in SLOTS.values() if isinstance(d.get(s), str)}
        for s, h in keys.items():
            if not fw_auth.valid_hex(h):
                raise KeyFileError(f"key file {path}: slot {s!r}: expected a 16..64-byte "
                                   "hex key")
        return cls(keys, str(d.get("device", "")))

    def save(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(self.keys, device=self.device), f, indent=2)
            f.write("\n")

    def key(self, slot: str) -> bytes | None:
        h = self.keys.get(slot)
        return bytes.fromhex(h) if h else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# --- the client ----------------------------------------------------------------------------------

class PumpClient:
    """One pump on one serial URL. Not thread-safe: one caller at a time."""

    def __init__(self, url: str | None = None, keys: KeyRing | None = None,
                 timeout: float = 1.0, retries: int = 3, baudrate: int = 115200,
                 port: Any = None, on_event: Callable[[Frame], None] | None = None) -> None:
        if port is None:
            if not url:
                raise PumpConnectionError("no port: give a device path, a pty or "
                                          "socket://host:port")
            try:
                port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.02,
                                             write_timeout=timeout)
            except (serial.SerialException, ValueError, OSError) as e:
                raise PumpConnectionError(
                    f"cannot open {url!r}: {e} (expected a device such as /dev/ttyACM0, a pty "
                    "path, or socket://host:port)") from e
        self.url = url or getattr(port, "name", "?")
        self.port = port
        self.keys = keys or KeyRing()
        self.timeout = timeout
        self.retries = retries
        self.on_event = on_event
        self.events: deque[Frame] = deque(maxlen=10000)
        self._buf = bytearray()
        self._seq = random.randrange(1, 1 << 29)
        self._counter: int | None = None
        self.sent = 0
        self.retransmits = 0

    # context manager ---------------------------------------------------------------------------
    def __enter__(self) -> PumpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - closing a dead port is not an error worth raising
            pass

    # transport ---------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise PumpConnectionError(f"{self.url}: write failed: {e}") from e

    def _readline(self, deadline: float) -> bytes | None:
        """One line, or None at the deadline."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i + 1])
                del self._buf[:i + 1]
                return line
            if len(self._buf) > 4 * fw_frames.MAX_REPLY:
                self._buf.clear()           # line noise without newlines: drop it
            if time.monotonic() >= deadline:
                return None
            try:
                n = self.port.in_waiting
                data = self.port.read(n if n else 1)
            except (serial.SerialException, OSError) as e:
                raise PumpConnectionError(f"{self.url}: read failed: {e}") from e
            if data:
                self._buf += data

    def _event(self, f: Frame) -> None:
        self.events.append(f)
        if self.on_event is not None:
            self.on_event(f)

    def frames(self, deadline: float, bad: list[bytes] | None = None) -> Iterator[Frame]:
        """The reply frames that arrive until `deadline` (time.monotonic). Telemetry goes to
        events on the way; lines that do not decode are skipped (kept in `bad` if given)."""
        while True:
            line = self._readline(deadline)
            if line is None:
                return
            try:
                f = decode(line)
            except PumpProtocolError:
                if bad is not None:
                    bad.append(line)
                continue
            if f.seq == "*":
                self._event(f)
            else:
                yield f

    def transact(self, raw: bytes, seq: int, command: str) -> Frame:
        """Send raw (seq) and wait for its reply, resending the same bytes on a timeout or a
        `?` error (the pump could not read it). Telemetry seen meanwhile goes to events."""
        want = str(seq)
        seen: list[bytes] = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.retransmits += 1
            self._write(raw)
            self.sent += 1
            for f in self.frames(time.monotonic() + self.timeout, seen):
                if f.seq == want and f.kind in ("OK", "ERR"):
                    return f
                if f.seq == "?":
                    seen.append(f.raw)
                    break                  # our frame may have been garbled: resend now
                # else: a late reply to an earlier frame: ignore
        tail = b"".join(seen[-3:])
        raise PumpTimeout(
            f"{command}: no reply from {self.url} after {self.retries + 1} attempts of "
            f"{self.timeout:.2f} s (seq {seq})" + (f"; last seen: {tail!r}" if tail else ""))

    # requests ----------------------------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < 999999999 else 1
        return self._seq

    def call(self, command: str, args: dict[str, Any] | None = None,
             role: str = "patient") -> dict[str, Any]:
        """Send one command as `role` (patient, clinician, service); the OK payload or a
        PumpRefused. A privileged frame refused as REPLAYED (another host moved the counter
        on) is re-issued once with a fresh counter: it was not executed."""
        for again in (False, True):
            slot = SLOTS.get(role)
            if role != "patient" and slot is None:
                raise UsageError(f"unknown role {role!r}: expected patient, clinician or "
                                 "service")
            key = self.keys.key(slot) if slot else None
            if slot and key is None:
                raise KeyMissing(f"{command} needs the {role} key: none in the key ring "
                                 "(pumpctl keys)")
            counter = self._next_counter() if slot else 0
            seq = self.next_seq()
            f = self.transact(encode(seq, command, args, slot, counter, key), seq, command)
            if f.kind == "OK":
                return f.obj
            code = str(f.obj.get("code", "?"))
            why = str(f.obj.get("why", ""))
            if code == fw_protocol.REPLAYED and slot and not again:
                self._counter = None
                continue
            if code in ("NOT_AUTHORISED", fw_protocol.REPLAYED):
                raise NotAuthorised(command, code, why, role)
            raise PumpRefused(command, code, why, role)
        raise AssertionError("unreachable")

    def _next_counter(self) -> int:
        if self._counter is None:
            self._counter = int(self.status()["auth_counter"])
        self._counter += 1
        return self._counter

    # the commands ------------------------------------------------------------------------------
    def ping(self) -> dict[str, Any]:
        return self.call("PING")

    def status(self) -> dict[str, Any]:
        return self.call("STATUS")

    def watch(self, period_s: int) -> dict[str, Any]:
        return self.call("WATCH", {"period_s": period_s})

    def pause(self, role: str = "patient") -> dict[str, Any]:
        return self.call("PAUSE", role=role)

    def stop(self, role: str = "patient") -> dict[str, Any]:
        return self.call("STOP", role=role)

    def resume(self, role: str = "patient") -> dict[str, Any]:
        return self.call("RESUME", role=role)

    def silence(self, role: str = "patient") -> dict[str, Any]:
        return self.call("ACK", role=role)

    def start(self, role: str = "clinician") -> dict[str, Any]:
        return self.call("START", role=role)

    def clear(self, role: str = "clinician") -> dict[str, Any]:
        return self.call("CLEAR", role=role)

    def override(self, role: str = "clinician") -> dict[str, Any]:
        """Acknowledge the end of a lockout (no role ends one early; in service mode the
        service role ends a bench lockout)."""
        return self.call("OVERRIDE", role=role)

    def service(self) -> dict[str, Any]:
        """Enter service mode (service role): bench programs only, patient and plan cleared."""
        return self.call("SERVICE", role="service")

    def exit_service(self) -> dict[str, Any]:
        return self.call("EXIT_SERVICE", role="service")

    def overdose(self, reason: str) -> dict[str, Any]:
        """Report an overdose found outside the pump (clinician): the 12 h lockout starts.
        `reason`: one of pump.codes.OVERDOSE_REASONS."""
        return self.call("OVERDOSE", {"reason": reason}, role="clinician")

    def premedicated(self) -> dict[str, Any]:
        """Confirm premedication was given (clinician) before a restart after a long
        interruption (SR-7)."""
        return self.call("PREMEDICATED", role="clinician")

    def prime(self) -> dict[str, Any]:
        return self.call("PRIME", {"line_disconnected": True}, role="clinician")

    def propose_basic(self, rate: str, vtbi: str) -> dict[str, Any]:
        """Step one of a basic program (no drug library: the bench), as the service role in
        service mode: rate as '<n> mL/h', VTBI as '<n> mL'. Returns {"echo": [...],
        "expires_s": ...}; confirm it with confirm(echo, "service")."""
        return self.call("PROPOSE", {"basic": {"rate": rate, "vtbi": vtbi}}, role="service")

    def bench_program(self, rate: str, vtbi: str) -> dict[str, Any]:
        """A bench program in one go: service mode (entered when the pump is not in it),
        PROPOSE and CONFIRM as the service role; the CONFIRM reply. For benches and tests:
        a person confirms the echo (pumpctl program)."""
        if self.status().get("mode") != "SERVICE":
            self.service()
        return self.confirm(self.propose_basic(rate, vtbi)["echo"], "service")

    def propose_label(self, label: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        """Step one from a bag label and the operator's entry {rate, unit, vtbi_ml}."""
        return self.call("PROPOSE", {"label": label, "entry": entry}, role="clinician")

    def confirm(self, echo: list[Any], role: str = "clinician") -> dict[str, Any]:
        """Step two (SR-3): the echo the pump showed, in a frame of its own (a basic program's
        as the service role)."""
        return self.call("CONFIRM", {"echo": echo}, role=role)

    def provision_key(self, slot: str, key_hex: str, role: str = "patient") -> dict[str, Any]:
        """Store a key on the pump: open on a factory-fresh pump, else as service."""
        return self.call("KEY", {"slot": slot, "key": key_hex}, role=role)

    def log_records(self, progress: Callable[[int, int], None] | None = None
                    ) -> list[dict[str, Any]]:
        """The whole journal, decoded with the firmware's own parser, oldest first."""
        j = jn.Journal(None)
        out = []
        slot = 0
        cap = 1
        while slot < cap:
            r = self.call("LOG", {"slot": slot, "n": 4}, role="service")
            cap = int(r["cap"])
            recs = r["recs"]
            for i, h in enumerate(recs):
                p = j.parse(bytes.fromhex(h))
                if p is not None:
                    out.append(record_dict(slot + i, p))
            if progress is not None:
                progress(slot, cap)
            if len(recs) < 4:
                break
            slot += len(recs)
        out.sort(key=lambda d: d["seq"])
        return out

    def read_events(self, duration: float) -> list[Frame]:
        """Collect telemetry for `duration` seconds (frames also go to self.events)."""
        got: list[Frame] = []
        deadline = time.monotonic() + duration
        while True:
            line = self._readline(deadline)
            if line is None:
                return got
            try:
                f = decode(line)
            except PumpProtocolError:
                continue
            if f.seq == "*":
                self._event(f)
                got.append(f)

    def iter_events(self) -> Iterator[Frame]:
        while True:
            yield from self.read_events(0.5)

    def wait_state(self, states: str | tuple[str, ...], timeout: float,
                   poll: float = 0.02) -> dict[str, Any]:
        """Poll STATUS until the state is one of `states`; the last status, or PumpTimeout."""
        want = (states,) if isinstance(states, str) else states
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if s["state"] in want:
                return s
            if time.monotonic() >= deadline:
                raise PumpTimeout(f"state {s['state']} after {timeout:.1f} s, waiting for "
                                  f"{'/'.join(want)} (alarm {s.get('alarm')})")
            time.sleep(poll)

    def latency(self, n: int = 100) -> dict[str, float]:
        """Round trip of PING: median, p90 and max in ms over n pings."""
        rt = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.ping()
            rt.append((time.perf_counter() - t0) * 1000.0)
        rt.sort()
        return {"n": n, "median_ms": statistics.median(rt),
                "p90_ms": rt[min(n - 1, int(n * 0.9))], "max_ms": rt[-1]}


def record_dict(slot: int, parsed: tuple) -> dict[str, Any]:
    """A journal record (pump.journal.Journal.parse) as a flat dict for CSV/JSON."""
    kind, state, seq, p = parsed
    kinds = {jn.CHECKPOINT: "CHECKPOINT", jn.PROGRAM: "PROGRAM", jn.EVENT: "EVENT"}
    d: dict[str, Any] = {"slot": slot, "seq": seq, "kind": kinds.get(kind, str(kind)),
                         "state": codes.STATES[state] if state < len(codes.STATES) else state}
    if kind == jn.PROGRAM:
        d.update(program_id=p[jn.G_PROGRAM_ID], rate_ul_per_h=p[jn.G_RATE_UL_PER_H],
                 vtbi_nl=p[jn.G_VTBI_NL], drug=p[jn.G_DRUG], conc_pg_per_ml=p[jn.G_CONC_PG_PER_ML],
                 dose_ng_per_day=p[jn.G_DOSE_NG_PER_DAY], bag_hours=p[jn.G_BAG_HOURS],
                 flags=p[jn.G_FLAGS], weight_g=p[9], plan=p[10])
    else:
        alarm = p[jn.P_ALARM]
        d.update(program_id=p[jn.P_PROGRAM_ID], delivered_nl=p[jn.P_DELIVERED_NL],
                 lockout_until_s=p[jn.P_LOCKOUT_UNTIL_S], rtc_s=p[jn.P_RTC_S],
                 alarm=codes.ALARMS[alarm] if alarm < len(codes.ALARMS) else alarm,
                 event=p[jn.P_EVENT], event_name=event_name(p[jn.P_EVENT]),
                 arg=p[jn.P_ARG], auth_counter=p[jn.P_AUTH_COUNTER], flags=p[jn.P_FLAGS],
                 interrupted_s=p[10], bag_start_s=p[11], cycle_run_s=p[12])
    return d


def event_name(ev: int) -> str:
    """A journal event code (pump.codes EV_*) as a name: the trigger that fired ("start"),
    the alarm annunciated ("PAUSE_TIMEOUT"), "calibrated", "overdose_reported",
    "premedicated", "" for none, and "unknown:<n>"
    for a code no firmware event has."""
    meaning = codes.event_of(ev, TRIGGERS)
    if meaning is None:
        return f"unknown:{ev}"
    kind, name = meaning
    if kind == codes.EV_CALIBRATED:
        return "calibrated"
    if kind == codes.EV_OVERDOSE:
        return "overdose_reported"
    if kind == codes.EV_PREMEDICATED:
        return "premedicated"
    return "" if name is None else str(name)
