"""The serial protocol: frames in, replies and telemetry out (docs/protocol.md).

A frame is one line of printable ASCII, at most MAX_FRAME bytes with its newline:

    <seq> <COMMAND> <json-object> [<slot>:<counter>:<tag>] <crc32>

crc32 is 8 lowercase hex digits over everything before its space. A reply carries the
request's seq: `<seq> OK <json> <crc32>` or `<seq> ERR {"code": ...} <crc32>`; a frame whose
seq cannot be trusted is answered with seq `?`. Pushed telemetry uses seq `*`. Privileged
commands carry an HMAC-SHA256 tag (pump.auth) and a strictly increasing counter that the
controller journals, so a captured frame is refused (REPLAYED). A retry resends the same
frame; a repeated (seq, crc) is answered from a small reply cache, never executed twice.

Nothing raises past `feed`/`poll`: every bad input gets a coded reply and changes nothing
(SR-13). Buffers are bounded: an over-long line is dropped whole (TOO_LONG).
"""
import json
from binascii import hexlify, unhexlify

from pump import auth, program
from pump.codes import (
    BAD_INPUT,
    CLINICIAN,
    INVALID_STATE,
    NOT_AUTHORISED,
    PATIENT,
    SERVICE_ROLE,
    UNIT_REJECTED,
)
from pump.compat import const
from pump.crc import crc32
from pump.journal import REC_SIZE

VERSION = "1"
MAX_FRAME = const(512)        # bytes, newline included
MAX_REPLY = const(1024)
_MAX_EVENTS = const(8)        # queued telemetry events (the oldest are dropped beyond)
_CACHE = const(4)             # replies kept for retried frames
_PROPOSAL_MS = const(120000)  # a proposal waits this long for its confirm
_LOG_MAX = const(4)           # journal records per LOG reply
_READS = const(4)             # UART reads (of up to MAX_FRAME bytes) per poll

# Protocol error codes (extend SPEC §6; the controller's codes are used where they fit).
BAD_FRAME = "BAD_FRAME"
TOO_LONG = "TOO_LONG"
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
REPLAYED = "REPLAYED"
UNSUPPORTED = "UNSUPPORTED"
INTERNAL = "INTERNAL"

_ANY = const(0)
# command -> (role needed, handler, trigger for controller.request or None, cacheable)
# Roles (SR-11): unauthenticated frames are PATIENT; a tag makes them CLINICIAN or SERVICE.
COMMANDS = {
    "PING": (_ANY, "_ping", None, False),
    "STATUS": (_ANY, "_status", None, False),
    "WATCH": (_ANY, "_watch", None, False),
    "PAUSE": (PATIENT, "_request", "pause", True),
    "STOP": (PATIENT, "_request", "stop", True),
    "RESUME": (PATIENT, "_request", "resume", True),
    "SILENCE": (PATIENT, "_silence", None, True),
    "ACK": (PATIENT, "_silence", None, True),
    "START": (CLINICIAN, "_request", "start", True),
    "CLEAR": (CLINICIAN, "_request", "clear", True),
    "OVERRIDE": (CLINICIAN, "_request", "override", True),
    "PRIME": (CLINICIAN, "_prime", None, True),
    "PROPOSE": (CLINICIAN, "_propose", None, True),
    "CONFIRM": (CLINICIAN, "_confirm", None, True),
    "SERVICE": (SERVICE_ROLE, "_request", "service", True),
    "EXIT_SERVICE": (SERVICE_ROLE, "_request", "exit_service", True),
    "LOG": (SERVICE_ROLE, "_log", None, False),
    "CAL": (SERVICE_ROLE, "_cal", None, True),
    "KEY": (_ANY, "_key", None, True),
}
_ROLE_NAMES = {PATIENT: "patient", CLINICIAN: "clinician", SERVICE_ROLE: "service"}


def frame(seq, kind, obj):
    """One frame as bytes: `<seq> <kind> <json> <crc32>\\n` (replies, telemetry, hosts)."""
    body = ("%s %s %s" % (seq, kind, json.dumps(obj))).encode()
    return body + (" %08x\n" % crc32(body)).encode()


def _digits(s, most):
    if not s or len(s) > most:
        return False
    for c in s:
        if c < "0" or c > "9":
            return False
    return True


def _is_hex(s):
    for c in s:
        if c not in "0123456789abcdef":
            return False
    return True


class Protocol:
    def __init__(self, ctl, uart, storage=None, idle_ms=2000):
        self.ctl = ctl
        self.hal = ctl.hal
        self.uart = uart
        self.keys = auth.Keys(storage)
        self.idle_ms = idle_ms            # a partial line older than this is dropped
        self.buf = bytearray(MAX_FRAME)
        self.n = 0
        self.over = False                 # the current line overflowed: drop it whole
        self.last_rx = 0
        self.cache = [None] * _CACHE      # [seq, crc, reply bytes]
        self.ci = 0
        self.events = []
        self.dropped = 0
        self.period_ms = 0                # periodic telemetry (WATCH), 0 = off
        self.next_tlm = 0
        self.pending = None               # [kind, proposal or Program, echo, deadline]
        self.frames = 0
        self.errors = 0
        ctl.listeners.append(self._on_event)

    # --- input ----------------------------------------------------------------------------
    def poll(self, now):
        """Read the UART, answer complete frames, push queued events and due telemetry.
        Returns True when bytes were read (frames answered: the controller steps again at
        once, pump.runtime)."""
        hal = self.hal
        got = False
        reads = 0
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
            self._send("*", "TLM", self._snapshot())
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
        self.frames += 1
        for b in line:
            if b < 32 or b > 126:
                return self._err("?", BAD_FRAME, "charset")
        sp = line.rfind(b" ")
        crc_text = line[sp + 1:].decode()
        if sp < 0 or len(crc_text) != 8 or not _is_hex(crc_text):
            return self._err("?", BAD_FRAME, "crc missing")
        body = line[:sp]
        crc = int(crc_text, 16)
        if crc32(body) != crc:
            return self._err("?", BAD_FRAME, "crc")
        parts = body.decode().split(" ", 2)
        if len(parts) != 3 or not _digits(parts[0], 9):
            return self._err("?", BAD_FRAME, "syntax")
        seq = parts[0]
        for c in self.cache:
            if c is not None and c[0] == seq and c[1] == crc:
                self.uart.write(c[2])       # a retry: the same answer, not a second run
                return
        spec = COMMANDS.get(parts[1])
        if spec is None:
            return self._err(seq, UNKNOWN_COMMAND, parts[1][:16])
        rest = parts[2]
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
            got = self._authenticate(parts[1], rest, tok)
            if isinstance(got, str):
                return self._err(seq, got, "")
            role, ctr = got
        need = spec[0]
        if (need == CLINICIAN or need == SERVICE_ROLE) and role != need:
            return self._err(seq, NOT_AUTHORISED, "needs %s" % _ROLE_NAMES[need])
        out = getattr(self, spec[1])(args, role, spec[2], ctr)
        if isinstance(out, str):
            reply = frame(seq, "ERR", {"code": out})
            self.errors += 1
        else:
            reply = frame(seq, "OK", out)
            if len(reply) > MAX_REPLY:
                reply = frame(seq, "ERR", {"code": INTERNAL, "why": "reply too long"})
        if spec[3] or tok is not None:      # authenticated: a retry must not look replayed
            self.cache[self.ci] = [seq, crc, reply]
            self.ci = (self.ci + 1) % _CACHE
        self.uart.write(reply)

    def _authenticate(self, command, args_text, tok):
        """(role, counter) for a valid tag and a fresh counter, else a code."""
        p = tok.split(":")
        if len(p) != 3 or p[0] not in auth.ROLE_OF or not _digits(p[1], 10) \
                or len(p[2]) != 64 or not _is_hex(p[2]):
            return BAD_FRAME
        ctr = int(p[1])
        msg = auth.message(p[0], ctr, command, args_text)
        if not self.keys.verify(p[0], msg, unhexlify(p[2])):
            return NOT_AUTHORISED
        if not self.ctl.accept_auth_counter(ctr):
            return REPLAYED
        return auth.ROLE_OF[p[0]], ctr

    # --- output ---------------------------------------------------------------------------
    def _send(self, seq, kind, obj):
        self.uart.write(frame(seq, kind, obj))

    def _err(self, seq, code, why):
        self.errors += 1
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

    def _snapshot(self):
        ctl = self.ctl
        d = ctl.delivery
        return {"state": ctl.state, "alarm": ctl.alarm, "notice": ctl.notice,
                "commanded_nl": d.commanded_nl, "rate_ul_per_h": d.rate_ul_per_h,
                "vtbi_nl": d.vtbi_nl, "t_ms": self.hal.ticks_ms()}

    # --- handlers: (args, role, trigger, counter) -> dict (OK) or a code (ERR) -------------
    def _ping(self, args, role, trig, ctr):
        return {"pong": True, "fw": VERSION, "max_frame": MAX_FRAME}

    def _status(self, args, role, trig, ctr):
        ctl = self.ctl
        s = ctl.status()
        s["auth_counter"] = ctl.auth_counter
        s["keys"] = self.keys.provisioned()
        s["t_ms"] = self.hal.ticks_ms()
        s["rtc_s"] = self.hal.rtc_s()
        s["proposal"] = self._proposal_echo()
        s["fw"] = VERSION
        return s

    def _watch(self, args, role, trig, ctr):
        p = args.get("period_s", 0)
        if not program.is_int(p) or p < 0 or p > 3600:
            return BAD_INPUT
        self.period_ms = p * 1000
        self.next_tlm = self.hal.ticks_ms()
        return {"period_s": p}

    def _request(self, args, role, trig, ctr):
        if args:
            return BAD_INPUT
        return self._after(self.ctl.request(trig, role, None))

    def _after(self, code):
        if code is not None:
            return code
        return {"state": self.ctl.state}

    def _silence(self, args, role, trig, ctr):
        if args:
            return BAD_INPUT
        return self._after(self.ctl.silence(role))

    def _prime(self, args, role, trig, ctr):
        # SR-8: priming only with the line declared disconnected
        if args.get("line_disconnected") is not True or len(args) != 1:
            return BAD_INPUT
        return self._after(self.ctl.request("prime", role, True))

    def _propose(self, args, role, trig, ctr):
        """SR-3 step one: validate, hold, echo. Nothing is applied until CONFIRM."""
        self.pending = None
        if not self.ctl.machine.allowed("program"):
            return INVALID_STATE            # e.g. while running: stop first
        basic = args.get("basic")
        if basic is not None:
            got = _basic(basic, ctr)
            if isinstance(got, str):
                return got
            kind = "basic"
            prop = got
            echo = ["-", got.rate_ul_per_h, got.vtbi_nl // 1000, 0, 0, 0]
        else:
            propose = getattr(program, "propose", None)
            if propose is None:
                return UNSUPPORTED
            label = args.get("label")
            entry = args.get("entry")
            if not isinstance(label, dict) or not isinstance(entry, dict):
                return BAD_INPUT
            got = propose(label, entry, ctr)
            if isinstance(got, str):
                return got
            kind = "label"
            prop = got
            echo = list(got.echo)
        deadline = self.hal.ticks_add(self.hal.ticks_ms(), _PROPOSAL_MS)
        self.pending = [kind, prop, echo, deadline]
        return {"echo": echo, "expires_s": _PROPOSAL_MS // 1000}

    def _proposal_echo(self):
        p = self.pending
        if p is None:
            return None
        if self.hal.ticks_diff(self.hal.ticks_ms(), p[3]) >= 0:
            self.pending = None
            return None
        return p[2]

    def _confirm(self, args, role, trig, ctr):
        """SR-3 step two: the operator's echo of the very same values, in its own frame."""
        echo = args.get("echo")
        mine = self._proposal_echo()
        if mine is None:
            return BAD_INPUT
        kind, prop = self.pending[0], self.pending[1]
        if kind == "basic":
            if not isinstance(echo, list) or not program.same_echo(echo, mine):
                return BAD_INPUT
            prog = prop
        else:
            prog = program.confirm(prop, echo)
            if isinstance(prog, str):
                return prog
        code = self.ctl.request("program", role, prog)
        if code is not None:
            return code
        self.pending = None
        return {"state": self.ctl.state, "program_id": prog.pid}

    def _log(self, args, role, trig, ctr):
        """Raw journal records (hex), n at a time: the host decodes them (pump.journal)."""
        j = self.ctl.journal
        slot = args.get("slot", 0)
        n = args.get("n", _LOG_MAX)
        if not program.is_int(slot) or not program.is_int(n) or slot < 0 \
                or slot >= j.capacity or n < 1 or n > _LOG_MAX:
            return BAD_INPUT
        recs = []
        size = j.storage.size(j.name)
        if size > 0:
            f = j.storage.open(j.name, "rb")
            try:
                f.seek(slot * REC_SIZE)
                while len(recs) < n and slot + len(recs) < j.capacity:
                    r = f.read(REC_SIZE)
                    if not r or len(r) < REC_SIZE:
                        break
                    recs.append(hexlify(r).decode())
            finally:
                f.close()
        return {"slot": slot, "cap": j.capacity, "recs": recs, "seq": j.seq}

    def _cal(self, args, role, trig, ctr):
        cal = getattr(self.ctl, "calibrate", None)
        if cal is None:
            return UNSUPPORTED
        return self._after(cal(args, role))

    def _key(self, args, role, trig, ctr):
        """Provision a key: open while the device has none (factory), else service only."""
        if self.keys.provisioned() and role != SERVICE_ROLE:
            return NOT_AUTHORISED
        slot = args.get("slot")
        if len(args) != 2 or not self.keys.set(slot, args.get("key")):
            return BAD_INPUT
        return {"keys": self.keys.provisioned()}


def _qty(text, unit):
    """A keyed '<decimal> <unit>' string in thousandths, a code when the unit is wrong."""
    if not isinstance(text, str) or len(text) > 32:
        return BAD_INPUT
    p = text.split()
    if len(p) != 2:
        return UNIT_REJECTED if len(p) == 1 else BAD_INPUT
    if p[1] != unit:
        return UNIT_REJECTED
    v = program.milli(p[0])
    return BAD_INPUT if v is None else v


def _basic(d, pid):
    """A basic program (no drug library: bench and service use) from {"rate": "10 mL/h",
    "vtbi": "240 mL"} (SR-3: mL/h only, anything else UNIT_REJECTED). Program or code."""
    if not isinstance(d, dict) or len(d) != 2:
        return BAD_INPUT
    rate = _qty(d.get("rate"), "mL/h")
    if isinstance(rate, str):
        return rate
    vtbi = _qty(d.get("vtbi"), "mL")
    if isinstance(vtbi, str):
        return vtbi
    return program.basic(pid, rate, vtbi)
