"""Reliability campaign, power cuts: the firmware on the test HAL (tests/fw/fakehal.py) with
its files on an in-memory flash that can fail inside any write (tests/fw/memstore.py).

    PYTHONPATH=firmware:tests/fw python bench/rel_power.py RATE_UL_PER_H CUTS SEED

At the given rate the pump delivers program after program while the power is cut at random
instants: half of the cuts fall inside a journal or key write (after a random number of its
bytes), the others between writes. Doors are opened (DOOR_OPEN: a stopping alarm) and the
camshaft runs away (OVER_INFUSION: lockout) now and then, so cuts also fall in alarms and
lockouts. The programs are a bench's (a rate and a VTBI, in service mode: fakehal.bench).
After each cut the pump boots from its files like a board and the bench goes on (resume, or
a new program; a lockout the service role ends, as it may in service mode). Checked at every boot:

- volume lost to the cut (counted as delivered, never moved by the driver): at most one
  stroke plus one pulse (62.5 µL), never negative beyond a step's 250 nL (no re-delivery);
- a stop whose entry was on flash (ALARM, LOCKOUT) is still latched: never RUNNING or PAUSED,
  a lockout still LOCKOUT with its deadline; a cut inside a running pump's journal write
  never wakes it where the patient could resume;
- at INFUSION_COMPLETE the driver moved the VTBI, less only what the cuts cost (a pump that
  knew what it had not moved never counts it).

Prints one JSON line of counts and the worst figures.
"""
import json
import sys

from fakehal import FakeHal, bench, run_for, tmpdir
from memstore import MemStore, PowerCut

from pump import codes, program
from pump import journal as jn
from pump.codes import ALARM, CLINICIAN, COMPLETE, LOCKOUT, PAUSED, RUNNING, SERVICE_ROLE
from pump.controller import Controller
from pump.hal import EV_DOOR

STEP_NL = 250
_ROOT = []
LOSS_MAX_NL = 50000 + 12500


class Rng:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF

    def below(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x % n if n > 0 else 0


class Flash(MemStore):
    """The in-memory flash, and what its journal's primary file says at every moment: the
    state of the newest complete record, and whether a write of it is torn now."""

    def __init__(self):
        MemStore.__init__(self)
        self.durable = None           # state of the newest complete primary record
        self.torn = False             # the last primary write was cut after >= 1 byte

    def put(self, name, pos, b):
        try:
            n = MemStore.put(self, name, pos, b)
        except PowerCut:
            if name == "journal.bin" and self.budget == 0 and len(b) > 0:
                self.torn = self.written_last > 0
            raise
        if name == "journal.bin" and n == jn.REC_SIZE:
            self.durable = codes.STATES[b[7]] if b[7] < len(codes.STATES) else None
            self.torn = False
        return n

    def _log(self, name, pos, b):
        self.written_last = len(b)


class Campaign:
    def __init__(self, rate, seed):
        self.rate = rate
        self.rng = Rng(seed)
        self.st = Flash()
        self.vtbi_ul = {600: 1000, 10000: 5000}.get(rate, 20000)
        self.pid = 0
        self.cuts = 0
        self.in_write = 0
        self.torn_entries = 0
        self.by_state = {}
        self.losses = []              # nL per cut, on programs without a runaway
        self.prog_losses = 0
        self.prog_moved = 0
        self.runaway = False          # this program saw a runaway: its volume is the monitor's
        self.completes = 0
        self.short_at_complete = 0    # worst (VTBI - moved - what cuts cost), nL
        self.violations = []
        self.moved_total = 0
        self.lost_total = 0
        self.hal = None
        self.ctl = None
        self._boot(0)
        self._program()

    # --- the pump ------------------------------------------------------------------------------
    def _boot(self, t):
        if not _ROOT:
            _ROOT.append(tmpdir("rel"))
        hal = FakeHal(_ROOT[0])
        hal.compare = True
        hal.storage = self.st
        hal.t = t
        ctl = Controller(hal, jn.Journal(self.st, "journal.bin"))
        ctl.boot()
        self.hal = hal
        self.ctl = ctl
        self.pos0 = 0

    def _moved(self):
        """Volume the driver moved on this program since this boot, nL."""
        return (self.hal.motor.position() - self.pos0) * STEP_NL

    def _program(self):
        self.pid += 1
        ctl = self.ctl
        p = program.basic(self.pid, self.rate, self.vtbi_ul)
        if ctl.state == LOCKOUT:                  # a bench run's: the service role ends it
            assert ctl.request("override", SERVICE_ROLE) is None, ctl.state
        assert bench(ctl, p) is None, ctl.state
        self.prog_moved = 0
        self.prog_losses = 0
        self.runaway = False
        self.pos0 = self.hal.motor.position()
        assert ctl.request("start", CLINICIAN) is None, ctl.state

    def _go_on(self):
        """What the clinician does after a boot or an alarm: resume, or start over."""
        ctl = self.ctl
        hal = self.hal
        hal.cam_speed(1, 1)
        if not hal.door:
            hal.door = True
            ctl.signal(EV_DOOR)
        st = ctl.state
        if st in (ALARM, PAUSED):
            if ctl.request("resume", CLINICIAN) is None:
                return
            st = ctl.state
        if st in (codes.PROGRAMMED,):
            if ctl.request("start", CLINICIAN) is None:
                return
        if st in (LOCKOUT, COMPLETE, codes.IDLE, codes.PROGRAMMED, ALARM):
            if st == ALARM:
                ctl.request("stop", CLINICIAN)
            self._complete_check()
            self._program()

    def _complete_check(self):
        ctl = self.ctl
        if ctl.state != COMPLETE or self.runaway:
            return
        short = self.vtbi_ul * 1000 - (self.prog_moved + self._moved()) - self.prog_losses
        if short > self.short_at_complete:
            self.short_at_complete = short
        if short >= STEP_NL:
            self.violations.append(("complete short", self.pid, short))
        self.completes += 1

    # --- one cut -------------------------------------------------------------------------------
    def once(self):
        rng = self.rng
        ctl = self.ctl
        hal = self.hal
        ev = rng.below(16)
        if ev == 0 and ctl.state == RUNNING:
            hal.door = False                       # a stopping alarm, then cut in it
            ctl.signal(EV_DOOR)
        elif ev == 1 and ctl.state == RUNNING:
            hal.cam_speed(10, 1)                   # a runaway: OVER_INFUSION, lockout
            self.runaway = True
        period = self.vtbi_ul * 1000 * 3600 // self.rate // 6     # ms: ~6 cuts a program
        in_write = rng.below(2) == 0
        try:
            if in_write:
                self.st.budget = rng.below(3 * jn.REC_SIZE)
            run_for(ctl, hal, 1 + rng.below(period))
            if ctl.state == COMPLETE:
                self._complete_check()
                self._program()
                return
        except PowerCut:
            self.in_write += 1
        self.st.budget = -1
        self._cut()

    def _cut(self):
        ctl = self.ctl
        durable = self.st.durable
        torn = self.st.torn
        self.st.torn = False
        moved = self._moved()
        if not self.runaway:
            self.prog_moved += moved
        self.moved_total += moved
        before = ctl.state
        lockout_until = ctl.lockout_until_s
        self.cuts += 1
        self.by_state[before] = self.by_state.get(before, 0) + 1
        self._boot(self.hal.t)
        ctl = self.ctl
        if ctl.journal.torn:
            self.torn_entries += 1
        if not self.runaway and durable not in (LOCKOUT,):
            loss = ctl.reserved_nl - self.prog_moved - self.prog_losses
            self.losses.append(loss)
            self.prog_losses += loss
            if loss <= -STEP_NL or loss > LOSS_MAX_NL:
                self.violations.append(("loss", self.rate, loss))
        if durable in (ALARM, LOCKOUT) and ctl.state in (RUNNING, PAUSED):
            self.violations.append(("unlatched", durable, ctl.state))
        if durable == LOCKOUT and before == LOCKOUT and (
                ctl.state != LOCKOUT or ctl.lockout_until_s != lockout_until):
            self.violations.append(("lockout lost", ctl.state, ctl.lockout_until_s))
        if torn and durable in (RUNNING, PAUSED) and ctl.state in (RUNNING, PAUSED):
            self.violations.append(("torn entry, patient may resume", durable, ctl.state))
        self._go_on()


def main(argv):
    rate = int(argv[1])
    cuts = int(argv[2])
    seed = int(argv[3]) if len(argv) > 3 else 1
    c = Campaign(rate, seed)
    while c.cuts < cuts:
        c.once()
    losses = c.losses
    out = {"rate_ul_per_h": rate, "cuts": c.cuts, "in_write": c.in_write,
           "torn_entries": c.torn_entries, "by_state": c.by_state, "programs": c.pid,
           "completes": c.completes, "max_loss_nl": max(losses) if losses else 0,
           "min_loss_nl": min(losses) if losses else 0,
           "mean_loss_nl": sum(losses) // len(losses) if losses else 0,
           "worst_short_at_complete_nl": c.short_at_complete,
           "violations": len(c.violations), "first_violations": c.violations[:5]}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
