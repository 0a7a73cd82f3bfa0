"""The serial protocol: frames in, replies and telemetry out (docs/protocol.md).

A frame is one line of printable ASCII, at most MAX_FRAME bytes with its newline:

    <seq> <COMMAND> <json-object> [<slot>:<counter>:<tag>] <crc32>

crc32 is 8 lowercase hex digits over everything before its space. A reply carries the
request's seq: `<seq> OK <json> <crc32>` or `<seq> ERR {"code": ...} <crc32>`; a frame whose
seq cannot be trusted is answered with seq `?`. Pushed telemetry uses seq `*`. Privileged
commands carry an HMAC-SHA256 tag (pump.auth) and a strictly increasing counter per key that
the controller journals, so a captured frame is refused (REPLAYED). A retry resends the same
frame; a byte-for-byte repeat of a recent privileged frame is answered from a small reply
cache, never executed twice (a frame that only shares the seq and CRC-32 is not a repeat).
The frame codec is pump.frames (hosts use it too); what a command does, and which role may
give it, is pump.commands' and pump.roles': the protocol parses and authenticates a frame,
then executes it through the same door as every other caller.

Nothing raises past `feed`/`poll`: every bad input gets a coded reply and changes nothing
(SR-13). Buffers are bounded: an over-long line is dropped whole (TOO_LONG).
"""
import json
from binascii import unhexlify

from pump import auth
from pump.codes import BAD_INPUT, NOT_AUTHORISED, PATIENT
from pump.commands import COMMANDS, UNKNOWN_COMMAND, Commands
from pump.compat import const
from pump.controller import AUTH_WINDOW
from pump.frames import MAX_FRAME, MAX_REPLY, frame, is_hex, parse

_MAX_EVENTS = const(8)        # queued telemetry events (the oldest are dropped beyond)
_CACHE = const(4)             # replies kept for retried frames
_READS = const(4)             # UART reads (of up to MAX_FRAME bytes) per poll

# Protocol error codes (docs/codes.md; the controller's codes are used where they fit).
BAD_FRAME = "BAD_FRAME"
TOO_LONG = "TOO_LONG"
REPLAYED = "REPLAYED"
INTERNAL = "INTERNAL"


def _digits(s, most):
    if not s or len(s) > most:
        return False
    for c in s:
        if c < "0" or c > "9":
            return False
    return True


class Protocol(Commands):
    """The commands (pump.commands) over a UART: frames in, replies and telemetry out."""

    def __init__(self, ctl, uart, storage=None, idle_ms=2000):
        super().__init__(ctl, auth.Keys(storage))
        self.uart = uart
        self.idle_ms = idle_ms            # a partial line older than this is dropped
        self.buf = bytearray(MAX_FRAME)
        self.n = 0
        self.over = False                 # the current line overflowed: drop it whole
        self.last_rx = 0
        self.cache = [None] * _CACHE      # [frame line bytes, reply bytes]
        self.ci = 0
        self.events = []
        self.dropped = 0
        ctl.listeners.append(self._on_event)

    # --- input ----------------------------------------------------------------------------
    def poll(self, now):
        """Push the events queued since the last poll, read the UART and answer complete
        frames, push the events they caused and due telemetry: an event always goes out
        before the reply to a frame that arrived after it. Returns True when bytes were read
        (frames answered: the controller steps again at once, pump.runtime)."""
        hal = self.hal
        got = False
        reads = 0
        if self.events:
            self._flush_events()
        data = self.uart.read(MAX_FRAME)
        while data:
            got = True
            self.last_rx = now
            self.feed(data)
            reads += 1
            if reads >= _READS:               # a flood: let the controller step between
                break
            data = self.uart.read(MAX_FRAME)
        if (self.n or self.over) and hal.ticks_diff(now, self.last_rx) >= self.idle_ms:
            self._reset()
            self._err("?", BAD_FRAME, "truncated")
        if self.events:
            self._flush_events()
        if self.period_ms and hal.ticks_diff(now, self.next_tlm) >= 0:
            self.next_tlm = hal.ticks_add(now, self.period_ms)
            self._send("*", "TLM", self.ctl.snapshot())
        return got

    def wake(self, now, wake):
        """The tick to wake at next: `wake`, or earlier for the next periodic telemetry frame
        or to drop a partial line that stopped arriving."""
        hal = self.hal
        if self.period_ms and hal.ticks_diff(self.next_tlm, wake) < 0:
            wake = self.next_tlm
        if self.n or self.over:
            drop = hal.ticks_add(self.last_rx, self.idle_ms)
            if hal.ticks_diff(drop, wake) < 0:
                wake = drop
        return wake

    def feed(self, data):
        """Bytes from the UART: split into lines and answer each complete one."""
        start = 0
        size = len(data)
        while start < size:
            nl = data.find(b"\n", start)
            end = size if nl < 0 else nl
            k = end - start
            if not self.over:
                if self.n + k > MAX_FRAME - 1:
                    self.over = True
                elif k:
                    self.buf[self.n:self.n + k] = data[start:end]
                    self.n += k
            if nl < 0:
                return
            if self.over:
                self._reset()
                self._err("?", TOO_LONG, "max %d bytes" % MAX_FRAME)
            else:
                line = bytes(self.buf[:self.n])
                self._reset()
                self.line(line)
            start = nl + 1

    def _reset(self):
        self.n = 0
        self.over = False

    def line(self, line):
        """Answer one line (without its newline). Never raises."""
        try:
            self._line(line)
        except Exception:  # noqa: BLE001 - the boundary: report, never propagate
            self._err("?", INTERNAL, "")

    def _line(self, line):
        if line and line[-1] == 13:
            line = line[:-1]
        if not line:
            return
        got = parse(line)
        if isinstance(got, str):
            return self._err("?", BAD_FRAME, got)
        seq, name, rest, crc = got
        if not _digits(seq, 9):
            return self._err("?", BAD_FRAME, "syntax")
        for c in self.cache:
            if c is not None and c[0] == line:
                self.uart.write(c[1])       # a retry: the same answer, not a second run
                return
        spec = COMMANDS.get(name)
        if spec is None:
            return self._err(seq, UNKNOWN_COMMAND, name[:16])
        tok = None
        if not rest.endswith("}"):
            i = rest.rfind(" ")
            if i < 0:
                return self._err(seq, BAD_FRAME, "syntax")
            tok = rest[i + 1:]
            rest = rest[:i]
        try:
            args = json.loads(rest)
        except Exception:  # noqa: BLE001 - ValueError on both interpreters; be broad
            args = None
        if not isinstance(args, dict):
            return self._err(seq, BAD_INPUT, "args must be a JSON object")
        role = PATIENT
        ctr = 0
        if tok is not None:
            got = self._authenticate(name, rest, tok)
            if isinstance(got, str):        # why "auth": the tag, not the role table
                return self._err(seq, got, self.why or "auth")
            role, ctr = got
        out = self.execute(name, args, role, ctr)
        if isinstance(out, str):
            reply = frame(seq, "ERR", {"code": out, "why": self.why} if self.why
                          else {"code": out})
        else:
            reply = frame(seq, "OK", out)
            if len(reply) > MAX_REPLY:
                reply = frame(seq, "ERR", {"code": INTERNAL, "why": "reply too long"})
        if spec[2] or tok is not None:      # authenticated: a retry must not look replayed
            self.cache[self.ci] = [line, reply]
            self.ci = (self.ci + 1) % _CACHE
        self.uart.write(reply)

    def _authenticate(self, command, args_text, tok):
        """(role, counter) for a valid tag and a fresh counter, else a code."""
        self.why = ""
        p = tok.split(":")
        if len(p) != 3 or p[0] not in auth.ROLE_OF or not _digits(p[1], 10) \
                or len(p[2]) != 64 or not is_hex(p[2]):
            return BAD_FRAME
        ctr = int(p[1])
        msg = auth.message(p[0], ctr, command, args_text)
        if not self.keys.verify(p[0], msg, unhexlify(p[2])):
            return NOT_AUTHORISED
        if not self.ctl.accept_auth_counter(ctr, p[0]):
            c = self.ctl
            top = c.auth_counter if c.auth_counter > c.auth_service else c.auth_service
            self.why = "counter must be above %d and at most %d" % (
                c.auth_service if p[0] == "s" else c.auth_counter, top + AUTH_WINDOW)
            return REPLAYED
        return auth.ROLE_OF[p[0]], ctr

    # --- output ---------------------------------------------------------------------------
    def _send(self, seq, kind, obj):
        self.uart.write(frame(seq, kind, obj))

    def _err(self, seq, code, why):
        self.uart.write(frame(seq, "ERR", {"code": code, "why": why}))

    def _on_event(self, kind, code, value):
        """Controller listener: queue (sent from poll, after any reply)."""
        if len(self.events) >= _MAX_EVENTS:
            self.events.pop(0)
            self.dropped += 1
        self.events.append((kind, code, value))

    def _flush_events(self):
        ev = self.events
        self.events = []
        for kind, code, value in ev:
            self._send("*", "EVT", {"kind": kind, "code": code, "value": value,
                                    "dropped": self.dropped})
