"""Reliability campaign, the serial protocol under attack: fuzzed, replayed and escalating
frames into a running pump, on CPython or on real MicroPython (the same script).

    PYTHONPATH=firmware:tests/fw python bench/rel_fuzz.py FRAMES SEED
    node tools/mpy_run.mjs --mount firmware:/flash --mount tests/fw:/fw \
        --mount plant:/lib/plant --path /flash --path /fw --path /lib bench/rel_fuzz.py FRAMES SEED

The attacker holds valid keys (the red team's position). Frames, in random order:
random bytes; valid frames mutated (bit flips, bytes changed, inserted, deleted, cut);
CRC-valid frames with random commands and hostile JSON (huge and negative numbers, floats,
deep nesting, long strings, escapes); privileged frames with random tags, tags under the
other key, slots swapped; replays of every privileged frame the pump accepted; counters far
ahead (one frame trying to use up the counter); commands of a role the frame's key does not
have (escalation); and, in between, the legitimate clinician's own authenticated frames.

Checked after every frame: nothing raised past the protocol, every byte out is a valid
frame, no INTERNAL error; nothing privileged (program, lockout, keys, calibration, either
counter, the SERVICE state) changed except by a legitimate frame; no replayed frame ran
twice; no escalation got an OK; the highest counter never moved by more than AUTH_WINDOW in
one frame (so using up the 2**30 counter space takes a million accepted frames). Prints one
JSON line of counts.
"""
import json
import sys
from binascii import hexlify, unhexlify

from fakehal import FakeHal, clinical, tmpdir
from memstore import MemStore

from pump import auth, codes
from pump.codes import CLINICIAN, PAUSED, RUNNING
from pump.commands import COMMANDS
from pump.controller import AUTH_WINDOW, Controller
from pump.crc import crc32
from pump.runtime import Runtime

KEY_C = "c1" * 32
KEY_S = "5e" * 32
_KEYS = {"c": unhexlify(KEY_C), "s": unhexlify(KEY_S)}
_NAMES = sorted(COMMANDS)
# commands a frame may only run with a valid tag of these slots
_NEEDS = {"PROPOSE": "c", "CONFIRM": "c", "START": "c", "CLEAR": "c", "OVERRIDE": "c",
          "PRIME": "c", "SERVICE": "s", "EXIT_SERVICE": "s", "LOG": "s", "CAL": "s",
          "KEY": "s", "OVERDOSE": "c", "PREMEDICATED": "c"}
_HOSTILE = ('{}', '{"a": 1e308}', '{"period_s": -1}', '{"period_s": 1e400}',
            '{"slot": "c", "key": "00"}', '{"stroke_nl": 12500}', '{"line_disconnected": true}',
            '[' * 40 + ']' * 40, '{"a": "' + "\\u0000" * 20 + '"}', '{"n": 99999999999999999999}',
            '{"echo": [1, 2, 3]}', '{"basic": {"rate": "100 mL/h", "vtbi": "1 mL"}}',
            '{"slot": -5, "n": 4}', '{"x": NaN}', '{"x": Infinity}', '"str"', 'null',
            '{"period_s": 3.5}', '{"a": {"b": {"c": {"d": {"e": {"f": {}}}}}}}')


class Rng:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 7) & 0xFFFFFFFF

    def below(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x % n if n > 0 else 0

    def bytes(self, n):
        return bytes(self.below(256) for _ in range(n))


def frame(seq, cmd, args, auth_field=None):
    body = "%s %s %s" % (seq, cmd, args)
    if auth_field is not None:
        body += " " + auth_field
    b = body.encode()
    return b + (" %08x\n" % crc32(b)).encode()


def tag(slot, key_slot, ctr, cmd, args):
    t = auth.tag_hex(_KEYS[key_slot], slot, ctr, cmd, args)
    return "%s:%d:%s" % (slot, ctr, t)


class Fuzz:
    def __init__(self, seed):
        self.rng = Rng(seed)
        hal = FakeHal(tmpdir("fuzz"))
        hal.storage = MemStore()
        ctl = Controller(hal)
        self.rt = Runtime(hal, ctl)     # the board's own wake: protocol poll, then the step
        self.rt.boot()
        self.uart = hal.uart
        self.proto = self.rt.proto
        assert self.proto.keys.set("c", KEY_C) and self.proto.keys.set("s", KEY_S)
        assert ctl.request("program", CLINICIAN, clinical(1, 10000)) is None  # a patient's
        assert ctl.request("start", CLINICIAN) is None
        self.hal = hal
        self.ctl = ctl
        self.seq = 1000
        self.ctr = {"c": 0, "s": 0}
        self.accepted = []            # privileged frames the pump ran: replayed later
        self.n = {"frames": 0, "random": 0, "mutated": 0, "hostile": 0, "bad_tag": 0,
                  "replay": 0, "ahead": 0, "escalation": 0, "legit": 0, "escapes": 0,
                  "internal": 0, "bad_output": 0, "raised": 0}
        self.first = []

    # --- what only a legitimate frame may change -----------------------------------------------
    def guarded(self):
        c = self.ctl
        p = c.program
        return (p.pid if p else None, p.rate_ul_per_h if p else None, c.lockout_until_s,
                c.delivery.stroke_nl, c.state == codes.SERVICE,
                tuple(sorted(self.proto.keys.hexes.items())))

    def fail(self, what):
        self.n["escapes"] += 1
        if len(self.first) < 5:
            self.first.append(what)

    # --- frames --------------------------------------------------------------------------------
    def legit(self):
        """The clinician's own frame: a fresh counter, a valid tag."""
        r = self.rng.below(4)
        cmd = ("ACK", "STATUS", "PAUSE", "RESUME")[r]
        self.ctr["c"] += 1
        f = frame(self.next_seq(), cmd, "{}", tag("c", "c", self.ctr["c"], cmd, "{}"))
        return "legit", b"\n" + f, cmd         # on a fresh line: garbage may precede it

    def top(self):
        c = self.ctl
        return c.auth_counter if c.auth_counter > c.auth_service else c.auth_service

    def next_seq(self):
        self.seq += 1
        return self.seq

    def attack(self):
        rng = self.rng
        k = rng.below(9)
        seq = self.next_seq()
        if k == 0:
            b = rng.bytes(rng.below(600))
            return "random", b + (b"\n" if rng.below(2) else b""), None
        if k == 1:
            cmd = _NAMES[rng.below(len(_NAMES))]
            f = bytearray(frame(seq, cmd, _HOSTILE[rng.below(len(_HOSTILE))]))
            for _ in range(1 + rng.below(4)):
                op = rng.below(4)
                i = rng.below(len(f))
                if op == 0:
                    f[i] ^= 1 << rng.below(8)
                elif op == 1:
                    f[i] = rng.below(256)
                elif op == 2:
                    f = f[:i] + bytearray((rng.below(256),)) + f[i:]
                elif len(f) > 1:
                    f = f[:i] + f[i + 1:]
            return "mutated", bytes(f), None
        if k == 2:
            cmd = _NAMES[rng.below(len(_NAMES))] if rng.below(4) else "X%d" % rng.below(99)
            args = _HOSTILE[rng.below(len(_HOSTILE))]
            if cmd in ("PAUSE", "STOP", "RESUME"):
                cmd = "STATUS"            # the patient's own stops are not attacks
            return "hostile", frame(seq, cmd, args), cmd
        if k == 3:
            cmd = _NAMES[rng.below(len(_NAMES))]
            slot = "cs"[rng.below(2)]
            t = "%s:%d:%s" % (slot, self.ctr[slot] + 1, hexlify(rng.bytes(32)).decode())
            return "bad_tag", frame(seq, cmd, "{}", t), cmd
        if k == 4 and self.accepted:
            return "replay", self.accepted[rng.below(len(self.accepted))], None
        if k == 5:
            # one valid frame trying to use up the counter space: beyond the window above
            # the highest counter the pump has accepted (STATUS tells anyone)
            slot = "cs"[rng.below(2)]
            top = self.top()
            ctr = top + AUTH_WINDOW + 1 + rng.below((1 << 30) - AUTH_WINDOW - 1 - top)
            return "ahead", frame(seq, "ACK", "{}", tag(slot, slot, ctr, "ACK", "{}")), "ACK"
        # escalation: a command the frame's key may not give, or no key, or the other key
        cmd = ("PROPOSE", "START", "CLEAR", "OVERRIDE", "PRIME", "SERVICE", "LOG", "CAL",
               "KEY", "EXIT_SERVICE")[rng.below(10)]
        args = '{"slot": "c", "key": "%s"}' % ("ab" * 32) if cmd == "KEY" else "{}"
        need = _NEEDS[cmd]
        way = rng.below(3)
        if way == 0:
            return "escalation", frame(seq, cmd, args), cmd               # no key: patient
        other = "s" if need == "c" else "c"
        if way == 1:                                               # the other role's key
            self.ctr[other] += 1
            return "escalation", frame(seq, cmd, args, tag(other, other, self.ctr[other], cmd,
                                                           args)), cmd
        # the other key, signing as if it were the right slot
        return "escalation", frame(seq, cmd, args, tag(need, other, self.ctr[need] + 1, cmd,
                                                       args)), cmd

    # --- one frame -----------------------------------------------------------------------------
    def one(self):
        rng = self.rng
        if rng.below(20) == 0:
            kind, f, cmd = self.legit()
        else:
            kind, f, cmd = self.attack()
        self.n[kind] += 1
        self.n["frames"] += 1
        before = self.guarded()
        ctrs = (self.ctl.auth_counter, self.ctl.auth_service)
        top = self.top()
        try:
            self.uart.feed(f)
            self.proto.poll(self.hal.ticks_ms())
        except Exception as e:  # noqa: BLE001 - counted: nothing may raise past the protocol
            self.n["raised"] += 1
            self.fail(("raised", kind, repr(e)))
        out = self.check_output()
        after = self.guarded()
        if after != before:
            self.fail(("changed", kind, f[:80], before, after))
        c2 = (self.ctl.auth_counter, self.ctl.auth_service)
        if self.top() - top > AUTH_WINDOW:          # the counter space: 1000 a frame at most
            self.fail(("counter jump", kind, ctrs, c2))
        if kind == "legit":
            if c2[0] != self.ctr["c"] and not self.cached(out):
                self.fail(("legit refused", f[:80], out, ctrs, c2, self.ctr["c"]))
            self.accepted.append(f)
            if len(self.accepted) > 500:
                self.accepted.pop(0)
        elif kind in ("replay", "ahead", "escalation", "bad_tag"):
            # an escalation under the other role's own valid key authenticates (its counter
            # is used) and is then refused: the others must not touch a counter
            if c2 != ctrs and kind != "escalation":
                self.fail(("counter moved", kind, f[:80], ctrs, c2))
            for seq, k, obj in out:
                if k == "OK" and seq != "*" and kind != "replay":
                    self.fail(("ok", kind, f[:80], obj))
        # keep the pump delivering: the patient's stops are legal, so undo them legitimately
        st = self.ctl.state
        if st not in (RUNNING, PAUSED) and st != codes.SERVICE:
            self.ctl.request("stop", CLINICIAN)
            if self.ctl.state == codes.PROGRAMMED:
                self.ctl.request("start", CLINICIAN)
        self.hal.t += 50
        self.rt.service(self.hal.ticks_ms())

    def cached(self, out):
        return any(k == "OK" for seq, k, obj in out if seq != "*")

    def check_output(self):
        data = self.uart.take()
        out = []
        for line in data.split(b"\n"):
            if not line:
                continue
            sp = line.rfind(b" ")
            try:
                ok = sp > 0 and crc32(line[:sp]) == int(line[sp + 1:].decode(), 16)
                seq, kind, text = line[:sp].decode().split(" ", 2)
                obj = json.loads(text)
            except Exception:  # noqa: BLE001 - counted
                ok = False
            if not ok:
                self.n["bad_output"] += 1
                self.fail(("bad output", line[:80]))
                continue
            if kind == "ERR" and obj.get("code") == "INTERNAL":
                self.n["internal"] += 1
                self.fail(("internal", line[:80]))
            out.append((seq, kind, obj))
        return out


def main(argv):
    frames = int(argv[1]) if len(argv) > 1 else 10000
    seed = int(argv[2]) if len(argv) > 2 else 1
    fz = Fuzz(seed)
    while fz.n["frames"] < frames:
        fz.one()
    out = dict(fz.n)
    out["implementation"] = sys.implementation.name
    out["counters"] = [fz.ctl.auth_counter, fz.ctl.auth_service]
    out["state"] = fz.ctl.state
    out["first_escapes"] = [repr(x)[:300] for x in fz.first]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
