"""The pump's commands, by name: the one door through which anything commands the pump.

`Commands(ctl).execute(name, args, role, counter)` runs one command (docs/protocol.md,
"Commands") as `role` and returns its reply (a dict) or a rejection code; it never raises
on user input. Who may do what is the role table's (pump/roles.py). The serial protocol
(pump/protocol.py, a Commands with a UART) calls it once it has parsed and authenticated a
frame, `counter` being the frame's authentication counter; the simulator calls it directly.
So both program the pump the same way: PROPOSE (a bag label and the operator's entry, or a
basic rate and VTBI) holds a proposal and shows its echo, CONFIRM repeats the echo and hands
the program to the controller (SR-3), START starts it. The program id is the counter of
the PROPOSE.
"""
from binascii import hexlify

from pump import auth, calibration, program, roles
from pump.codes import (
    BAD_INPUT,
    INVALID_STATE,
    NOT_AUTHORISED,
    SERVICE_MODE_ACTIVE,
    SERVICE_MODE_REQUIRED,
)
from pump.compat import const
from pump.frames import MAX_FRAME

VERSION = "1"
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
NO_PROPOSAL = "NO_PROPOSAL"              # CONFIRM with no proposal waiting
PROPOSAL_EXPIRED = "PROPOSAL_EXPIRED"    # CONFIRM after the proposal's window
_PROPOSAL_MS = const(120000)  # a proposal waits this long (wall clock) for its confirm
_WINDOW_MAX_MS = const(0x10000000)  # the window in ticks stays well inside ticks_diff's range
_LOG_MAX = const(4)           # journal records per LOG reply

# command -> (action in the role table, handler, reply kept for a retried frame). For the
# handler `_request`, the action is the controller trigger it fires.
COMMANDS = {
    "PING": ("read", "_ping", False),
    "STATUS": ("read", "_status", False),
    "WATCH": ("read", "_watch", False),
    "PAUSE": ("pause", "_request", True),
    "STOP": ("stop", "_request", True),
    "RESUME": ("resume", "_request", True),
    "SILENCE": ("silence", "_silence", True),
    "ACK": ("silence", "_silence", True),
    "START": ("start", "_request", True),
    "CLEAR": ("clear", "_request", True),
    "OVERRIDE": ("override", "_request", True),
    "PRIME": ("prime", "_prime", True),
    "PROPOSE": ("program", "_propose", True),
    "CONFIRM": ("program", "_confirm", True),
    "SERVICE": ("service", "_request", True),
    "EXIT_SERVICE": ("exit_service", "_request", True),
    "LOG": ("log", "_log", False),
    "CAL": ("calibrate", "_cal", True),
    "KEY": ("key", "_key", True),
    "OVERDOSE": ("overdose", "_overdose", True),
    "PREMEDICATED": ("premedicated", "_premedicated", True),
}


class Commands:
    """The commands of one controller. `keys` (pump.auth.Keys) are the device's keys: STATUS
    lists them and KEY sets them; without storage there are none."""

    def __init__(self, ctl, keys=None):
        self.ctl = ctl
        self.hal = ctl.hal
        self.keys = keys if keys is not None else auth.Keys(None)
        self.pending = None               # [Proposal, deadline tick] until CONFIRM
        # The confirm window is a person's: wall-clock time on every backing. A virtual
        # board whose clock runs N times the wall clock says so (hal.time_scale, pump/hal.py).
        w = _PROPOSAL_MS * self.hal.time_scale
        if w > _WINDOW_MAX_MS:
            w = _WINDOW_MAX_MS
        self.window_ms = w if w > 0 else _PROPOSAL_MS
        self.period_ms = 0                # periodic telemetry (WATCH), 0 = off
        self.next_tlm = 0
        self.why = ""                     # what the last refusal means, when it says more

    def execute(self, name, args, role, counter):
        """Run command `name` with `args` (a dict) as `role`: its reply dict, or a code."""
        self.why = ""
        spec = COMMANDS.get(name)
        if spec is None:
            return UNKNOWN_COMMAND
        if not isinstance(args, dict):
            return BAD_INPUT
        action = spec[0]
        if not roles.allows(action, self.ctl.state, role, self.ctl.service) and \
                not (action == "key" and self.keys.factory()):
            return NOT_AUTHORISED
        return getattr(self, spec[1])(args, role, action, counter)

    # --- handlers: (args, role, action, counter) -> dict (OK) or a code (ERR) -------------
    def _ping(self, args, role, action, ctr):
        return {"pong": True, "fw": VERSION, "max_frame": MAX_FRAME}

    def _status(self, args, role, action, ctr):
        s = self.ctl.snapshot()
        s["keys"] = self.keys.provisioned()
        k = self.keys
        s["key_store"] = "locked" if k.locked else ("factory" if k.factory() else "ok")
        s["proposal"] = self._proposal_echo()
        s["fw"] = VERSION
        return s

    def _watch(self, args, role, action, ctr):
        p = args.get("period_s", 0)
        if not program.is_int(p) or p < 0 or p > 3600:
            return BAD_INPUT
        self.period_ms = p * 1000
        self.next_tlm = self.hal.ticks_ms()
        return {"period_s": p}

    def _request(self, args, role, action, ctr):
        if args:
            return BAD_INPUT
        return self._after(self.ctl.request(action, role, None))

    def _after(self, code):
        if code is not None:
            return code
        return {"state": self.ctl.state}

    def _silence(self, args, role, action, ctr):
        if args:
            return BAD_INPUT
        return self._after(self.ctl.silence(role))

    def _prime(self, args, role, action, ctr):
        # SR-8: priming only with the line declared disconnected
        if args.get("line_disconnected") is not True or len(args) != 1:
            return BAD_INPUT
        return self._after(self.ctl.request(action, role, True))

    def _propose(self, args, role, action, ctr):
        """SR-3 step one: validate, hold, echo. Nothing is applied until CONFIRM."""
        self.pending = None
        if not self.ctl.machine.allowed(action):
            return INVALID_STATE            # e.g. while running: stop first
        basic = args.get("basic")
        if basic is not None:
            # a bench program: service mode only (no patient attached), SR-2
            if not self.ctl.service:
                self.why = "a rate/VTBI program without the drug library is for the bench"
                return SERVICE_MODE_REQUIRED
            got = program.propose_basic(basic, ctr)
        else:
            if self.ctl.service:
                return SERVICE_MODE_ACTIVE
            label = args.get("label")
            entry = args.get("entry")
            if not isinstance(label, dict) or not isinstance(entry, dict):
                return BAD_INPUT
            got = program.propose(label, entry, ctr, None, self.ctl.patient())
        if isinstance(got, str):
            return got
        self.pending = [got, self.hal.ticks_add(self.hal.ticks_ms(), self.window_ms)]
        return {"echo": list(got.echo), "expires_s": _PROPOSAL_MS // 1000}

    def _expired(self, p):
        return self.hal.ticks_diff(self.hal.ticks_ms(), p[1]) >= 0

    def _proposal_echo(self):
        """The echo of the proposal waiting for its confirm, None when none is (or it expired)."""
        p = self.pending
        if p is None or self._expired(p):
            return None
        return list(p[0].echo)

    def _confirm(self, args, role, action, ctr):
        """SR-3 step two: the operator's echo of the very same values, in its own command.
        Refused NO_PROPOSAL when none waits, PROPOSAL_EXPIRED after its window."""
        p = self.pending
        if p is None:
            return NO_PROPOSAL
        if self._expired(p):
            self.pending = None
            return PROPOSAL_EXPIRED
        prog = program.confirm(p[0], args.get("echo"))
        if isinstance(prog, str):
            return prog
        code = self.ctl.request(action, role, prog)
        if code is not None:
            return code
        self.pending = None
        return {"state": self.ctl.state, "program_id": prog.pid}

    def _overdose(self, args, role, action, ctr):
        """An overdose found outside the pump: the lockout starts (SR-6), with its reason."""
        if len(args) != 1:
            return BAD_INPUT
        return self._after(self.ctl.overdose(role, args.get("reason")))

    def _premedicated(self, args, role, action, ctr):
        """Premedication given: a restart after a long interruption may go on (SR-7)."""
        if args:
            return BAD_INPUT
        return self._after(self.ctl.premedicated(role))

    def _log(self, args, role, action, ctr):
        """Raw journal records (hex), n at a time: the host decodes them (pump.journal)."""
        j = self.ctl.journal
        slot = args.get("slot", 0)
        n = args.get("n", _LOG_MAX)
        if not program.is_int(slot) or not program.is_int(n) or slot < 0 \
                or slot >= j.capacity or n < 1 or n > _LOG_MAX:
            return BAD_INPUT
        recs = []
        for r in j.read_records(slot, n):
            recs.append(hexlify(r).decode())
        return {"slot": slot, "cap": j.capacity, "recs": recs, "seq": j.seq}

    def _cal(self, args, role, action, ctr):
        code = self.ctl.calibrate(args, role)
        if code == BAD_INPUT and isinstance(args, dict):
            d = self.ctl.delivery
            self.why = calibration.why(args.get("stroke_nl", d.stroke_nl),
                                       args.get("steps_per_stroke", d.steps_per_stroke)) \
                or "only stroke_nl and steps_per_stroke"
        return self._after(code)

    def _key(self, args, role, action, ctr):
        """Provision a key: open while the device has none (factory), else service only."""
        slot = args.get("slot")
        if self.keys.locked:
            self.why = "key store unreadable: reset it at the bench"
            return NOT_AUTHORISED
        if len(args) != 2 or not self.keys.set(slot, args.get("key")):
            return BAD_INPUT
        return {"keys": self.keys.provisioned()}
