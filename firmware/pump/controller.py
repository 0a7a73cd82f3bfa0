"""The controller: runs the state table, drives delivery, journals, raises alarms.

Tickless: `step(now_ms)` does what is due and returns the tick at which it next wants to
run. Interrupts only set flags (`signal`); requests from keys or the serial protocol come
through `request(trigger, role, arg)`, which validates, applies the state table and
returns None or a rejection code; bad input changes nothing (SR-13).

The steady-state path (a RUNNING step that ends one motor segment and begins the next,
journalling its write-ahead reservation) allocates nothing on MicroPython (PR-5).
"""
from pump import calibration, codes, druglib, program, roles
from pump import journal as jn
from pump.codes import (
    ALARM,
    BAD_INPUT,
    BAG_EXPIRED,
    DOOR_OPEN,
    FREE_FLOW,
    INFUSION_COMPLETE,
    INVALID_STATE,
    LOCKOUT,
    LOCKOUT_ACTIVE,
    NOT_AUTHORISED,
    OCCLUSION,
    OVER_INFUSION,
    PAUSE_TIMEOUT,
    PAUSED,
    PREMEDICATION_REQUIRED,
    PRIMING,
    RUNNING,
    SERVICE,
    SERVICE_MODE_ACTIVE,
    SERVICE_MODE_REQUIRED,
    STORAGE_FAULT,
    WATCHDOG_RESET,
)
from pump.compat import const
from pump.delivery import Delivery
from pump.hal import EV_AIR, EV_ALL, EV_BATTERY, EV_DOOR, EV_MOTOR_FAULT, EV_ROTATION
from pump.monitor import Monitor
from pump.program import Program, from_record, to_record
from pump.states import TRIGGERS, Machine

_HOUSEKEEPING_MS = const(60000)   # longest sleep when nothing else is due
LOW_BATTERY_MV = const(3500)      # LOW_BATTERY below this (the board's comparator level)
_PRIME_STEPS = const(4000)        # 20 strokes, about 1 mL at nominal calibration
_PRIME_MS = const(60000)
FLAG_INTERRUPTED = const(1)       # journal flag: an interruption is open
FLAG_PREMED = const(2)            # journal flag: restarted after the premedication threshold
FLAG_SERVICE = const(4)           # journal flag: service mode (no patient, bench programs)
FLAG_NO_PATIENT = const(8)        # journal flag: patient and plan cleared (service mode)
FLAG_PREMED_GIVEN = const(16)     # journal flag: a clinician confirmed premedication (SR-7)
# The flags' bits 8..28 hold when it was confirmed: whole minutes after the interruption
# began (rounded down, capped: read back never later than it was, so never fresher).
_PREMED_SHIFT = const(8)
_PREMED_MAX_MIN = const(0x1FFFFF)
_FLAG_BITS = const(0xFF)
# How long a premedication confirmation covers a restart (SR-7): the label gives
# dexamethasone 20 mg IV 1 h before restarting after an interruption of 4 h or more
# (BLINCYTO prescribing information 2.1, premedication); the pump allows twice that lead
# (device policy) and asks again for an older confirmation (docs/states.md).
PREMED_VALID_S = const(7200)
# Checkpoint fields this module adds to the journal's spare ones (pump/journal.py: 10..12)
# and PROGRAM record fields after the program's own (0..8).
P_INTERRUPTED_S = const(10)       # rtc when the open interruption began (0: none)
P_BAG_START_S = const(11)         # rtc when the program's bag first ran (0: not yet)
P_CYCLE_RUN_S = const(12)         # running time in the plan's current cycle, s
G_WEIGHT_G = const(9)             # the patient's weight on the program's label
G_PLAN = const(10)                # the plan position (program.plan_word)
G_LABEL = const(11)               # the bag's label (Program.label), 0: none
# An authentication counter may move at most this far above the highest one accepted for
# either role, so that one frame cannot exhaust the 2**30 counter space (SR-11).
AUTH_WINDOW = const(1000)
_AUTH_LIMIT = const(1 << 30)

# Where the pump wakes after power loss or reset, by the state last journalled (SR-9).
_RESTORE = {
    "IDLE": "restore_idle", "BOOT": "restore_idle", "SERVICE": "restore_service",
    "PROGRAMMED": "restore_programmed", "PRIMING": "restore_programmed",
    "RUNNING": "restore_paused", "PAUSED": "restore_paused", "ALARM": "restore_alarm",
    "LOCKOUT": "restore_lockout", "COMPLETE": "restore_complete",
}


class Controller:
    def __init__(self, hal, journal=None, stroke_nl=None, steps_per_stroke=None,
                 pause_reminder_s=900, lockout_s=12 * 3600):
        """stroke_nl/steps_per_stroke: the cassette's calibration; None reads the one the
        service role stored (pump/calibration.py), or the nominal 50 µL / 200 steps.
        pause_reminder_s/lockout_s: used until a program from the drug library brings its
        own values."""
        self.hal = hal
        self.journal = journal if journal is not None else jn.Journal(hal.storage)
        self.cal_seq = -1
        self.cal_fault = False        # a stored calibration was unreadable or out of bounds
        if stroke_nl is None or steps_per_stroke is None:
            cal_s, cal_n, self.cal_seq, self.cal_fault = calibration.load(hal.storage)
            stroke_nl = cal_s if stroke_nl is None else stroke_nl
            steps_per_stroke = cal_n if steps_per_stroke is None else steps_per_stroke
        if not calibration.valid(stroke_nl, steps_per_stroke):
            raise ValueError("calibration out of bounds: %s (%r nL, %r steps)" % (
                calibration.why(stroke_nl, steps_per_stroke), stroke_nl, steps_per_stroke))
        self.delivery = Delivery(hal.motor, hal.ticks_add, hal.ticks_diff, stroke_nl,
                                 steps_per_stroke)
        self.machine = Machine(self)
        self.pause_reminder_ms = pause_reminder_s * 1000
        self.lockout_s = lockout_s
        self.default_pause_reminder_ms = self.pause_reminder_ms
        self.default_lockout_s = lockout_s
        self.battery_warned = False
        self.listener = None          # callable(kind, code, value): traces
        self.listeners = []           # more of the same: telemetry, simulator, monitor
        self.program = None
        self.alarm = None             # latched stopping alarm
        self.notice = None            # latest annunciating alarm (no state change)
        self.silenced = False
        self.lockout_until_s = 0
        self.auth_counter = 0         # highest counter accepted for the clinician key
        self.auth_service = 0         # highest counter accepted for the service key
        self.reserved_nl = 0          # volume journalled as delivered (write-ahead)
        self.interrupted_at_s = 0     # rtc when delivery last stopped (0: none open)
        self.flags = 0                # journal flags (FLAG_*)
        self.service = False          # service mode: bench programs only, no patient
        self.weight_g = 0             # the patient's weight on the last clinical program
        self.plan = 0                 # the patient's plan position (program.plan_word), 0: none
        self.cycle_run_s = 0          # running time in the plan's current cycle (s)
        self.run_since_s = 0          # rtc when a clinical program last started running
        self.bag_start_s = 0          # rtc when the program's bag first ran (0: not yet)
        self.bag_label = 0            # that bag's label (Program.label), 0: none
        self.pause_deadline = 0
        self.pause_reminded = False
        self.now = hal.ticks_ms()
        self._flags = 0
        self._arg = None
        self._pending_alarm = None
        # Safety monitor (SR-5): its own sensor, program copy and envelope; it can only stop
        # (motor enable dropped, clamp closed), on its own; step() latches what it found.
        self.monitor = Monitor(hal, stroke_nl, steps_per_stroke)

    # --- inputs -------------------------------------------------------------------------
    def signal(self, flag):
        """Called from interrupt handlers: records, nothing more. A value that is not a
        set of known EV_* bits is refused with BAD_INPUT and recorded nowhere."""
        if not isinstance(flag, int) or flag <= 0 or flag & ~EV_ALL:
            return BAD_INPUT
        self._flags |= flag
        return None

    def pending(self):
        """True when an interrupt has flagged work for the next step."""
        return self._flags != 0

    def request(self, trigger, role, arg=None):
        """A command from keys or the command door (pump.commands). Returns None when done,
        else a code. The triggers that may be requested, and by whom in which state, are the
        role table's (pump.roles, SR-11); the others are internal."""
        if not isinstance(trigger, str) or trigger not in roles.TABLE \
                or trigger not in TRIGGERS:
            return BAD_INPUT
        if role not in roles.ANYONE:
            return BAD_INPUT
        if not roles.allows(trigger, self.machine.state, role, self.service):
            return NOT_AUTHORISED
        if trigger == "program":
            if not isinstance(arg, Program) or not arg.intact():
                return BAD_INPUT
        elif trigger == "prime":
            if arg is not True:
                return BAD_INPUT
        elif arg is not None:
            return BAD_INPUT
        self.now = self.hal.ticks_ms()
        self._arg = arg
        try:
            return self.machine.fire(trigger)
        finally:
            self._arg = None

    def accept_auth_counter(self, counter, slot="c"):
        """Persist a newly accepted authentication counter of the key in `slot` ("c"
        clinician, "s" service: pump.auth.ROLE_OF) (replay protection, SR-11). Each key has
        its own counter.

        Returns False, changing nothing, unless counter is above every one accepted before
        for that key and at most AUTH_WINDOW above the highest accepted for either key (so
        one frame, even a valid one, cannot exhaust the counter space), below 2**30. The
        journal holds both, so a captured frame stays refused after power loss."""
        if not isinstance(counter, int) or isinstance(counter, bool) or counter >= _AUTH_LIMIT:
            return False
        top = self.auth_counter if self.auth_counter > self.auth_service else self.auth_service
        if counter > top + AUTH_WINDOW:
            return False
        if slot == "s":
            if counter <= self.auth_service:
                return False
            self.auth_service = counter
        elif slot == "c":
            if counter <= self.auth_counter:
                return False
            self.auth_counter = counter
        else:
            return False
        self._journal(jn.CHECKPOINT, 0, 0)
        return True

    def silence(self, role):
        if role not in roles.ANYONE:
            return BAD_INPUT
        if not roles.allows("silence", self.machine.state, role, self.service):
            return NOT_AUTHORISED
        self.silenced = True
        self.hal.buzzer(False)
        return None

    @property
    def state(self):
        return self.machine.state

    # --- the tickless step ----------------------------------------------------------------
    def step(self, now):
        hal = self.hal
        self.now = now
        f = self._flags
        if f:
            self._flags = 0
            if f & ~EV_ROTATION:                  # EV_ROTATION is the monitor's alone
                self._on_flags(f)
        d = self.delivery
        if d.backing_off and hal.ticks_diff(now, d.backoff_end) >= 0:
            self._end_back_off(now)
        m = self.monitor
        code = m.check(now, f)                    # safety monitor (SR-5): may stop things
        if code is not None or m.free_flow:
            self._monitor_stopped(code, now)      # the monitor has returned: latch it now
        st = self.machine.state
        wake = m.wake(hal.ticks_add(now, _HOUSEKEEPING_MS))
        if d.backing_off and hal.ticks_diff(d.backoff_end, wake) < 0:
            wake = d.backoff_end
        if st == RUNNING:
            if not hal.door_closed():
                self.raise_alarm(DOOR_OPEN)
                return wake
            if d.due(now):
                if not d.service(now, self):
                    self.machine.fire("complete")
                    return wake
            if d.running and hal.ticks_diff(d.seg_end, wake) < 0:
                wake = d.seg_end
        elif st == PAUSED:
            if not self.pause_reminded:
                if hal.ticks_diff(now, self.pause_deadline) >= 0:
                    self.pause_reminded = True
                    self.annunciate(PAUSE_TIMEOUT)
                elif hal.ticks_diff(self.pause_deadline, wake) < 0:
                    wake = self.pause_deadline
        elif st == PRIMING:
            if not hal.motor.busy():
                self.machine.fire("prime_done")
        return wake

    def on_rotation(self, now):
        """A wake for the rotation compare alone (the board's soft IRQ, or a main loop with
        only EV_ROTATION pending): while RUNNING with nothing else due, only the monitor's
        edge check runs (Monitor.compare). The same as step(now) in that case, and returns
        the next wake as step() does; returns -1 when step(now) must run instead (other
        flags, another state, the door open, a segment due, the monitor busy with something
        else, or a trip it found: it has stopped the pump, and step() latches the alarm)."""
        if self._flags != EV_ROTATION or self.machine.state != RUNNING:
            return -1
        hal = self.hal
        if not hal.door_closed():
            return -1
        d = self.delivery
        running = d.running
        ahead = hal.ticks_diff(now, d.seg_end) if running else -1
        if ahead >= 0:
            return -1                             # a segment is due (d.due(now))
        self.now = now
        self._flags = 0
        if not self.monitor.compare(now):
            self._flags = EV_ROTATION
            return -1
        # compare() returned True: nothing pending, so the monitor's wake is the housekeeping
        # one (its wake()), and the state is still RUNNING (the monitor only stops through
        # step). The segment's end, -ahead ms away, comes first when it is nearer.
        if running and -ahead < _HOUSEKEEPING_MS:
            return d.seg_end
        return hal.ticks_add(now, _HOUSEKEEPING_MS)

    def reserve(self, upto_nl):
        """Write-ahead: journal volume as delivered before the motor can move it (SR-9)."""
        if upto_nl > self.delivery.vtbi_nl:
            upto_nl = self.delivery.vtbi_nl
        if upto_nl > self.reserved_nl:
            self.reserved_nl = upto_nl
            self._journal(jn.CHECKPOINT, 0, 0)

    # --- alarms ---------------------------------------------------------------------------
    def raise_alarm(self, code):
        """Stop delivery and latch a stopping alarm; OVER_INFUSION also locks out (SR-6)."""
        self._pending_alarm = code
        if code == OVER_INFUSION:
            self.lockout_until_s = self.hal.rtc_s() + self.lockout_s
            r = self.machine.fire("lockout")
        else:
            r = self.machine.fire("alarm")
        self._pending_alarm = None
        return r

    def _monitor_stopped(self, code, now):
        """The monitor has stopped the pump on its own (enable low, clamp closed) and
        returned `code` (or None, having only closed the clamp on an open door): latch the
        alarm, annunciate FREE_FLOW, and after an occlusion back the camshaft off."""
        if code is not None and self.raise_alarm(code) is not None:
            self.annunciate(code)     # the state table has no way into ALARM/LOCKOUT from here
        if self.monitor.take_free_flow():
            self.annunciate(FREE_FLOW)
        if code == OCCLUSION:
            self._back_off(now)

    def _back_off(self, now):
        """Occlusion back-off (PR-3), with the alarm latched: run the camshaft backwards by
        what the line's compliance holds above the monitor's pressure baseline, the clamp
        closed, so that clearing the occlusion releases next to no bolus. The monitor is
        told the pulses first and watches them."""
        d = self.delivery
        steps = d.backoff_steps(self.monitor.pressure_rise())
        if steps > 0:
            self.monitor.on_backoff(steps)        # monitor: these reverse pulses are allowed
            self.hal.motor.enable(True)
            d.back_off(now, steps)

    def _end_back_off(self, now):
        self.delivery.end_back_off()
        self.hal.motor.enable(False)
        self.monitor.on_move_end()                # monitor: no more pulses allowed
        self._back_off(now)                       # a second pass if the line is still pressed

    def annunciate(self, code):
        """An alarm that informs without stopping (PAUSE_TIMEOUT, LOW_BATTERY, ...)."""
        self.notice = code
        self.silenced = False
        self.hal.buzzer(True)
        self._journal(jn.EVENT, codes.alarm_event(code), 0)
        self._emit("alarm", code, 0)

    def _on_flags(self, f):
        hal = self.hal
        if f & EV_BATTERY and not self.battery_warned and hal.battery_mv() <= LOW_BATTERY_MV:
            self.battery_warned = True            # SR-10: warn once; the board dies anyway
            self.annunciate(codes.LOW_BATTERY)
        if self.machine.state not in (RUNNING, PRIMING, PAUSED):
            return
        if f & EV_DOOR and not hal.door_closed():
            self.raise_alarm(DOOR_OPEN)
        elif f & EV_AIR and hal.air_detected():
            self.raise_alarm(codes.AIR_IN_LINE)
        elif f & EV_MOTOR_FAULT:
            self.raise_alarm(codes.MOTOR_FAULT)

    # --- boot -----------------------------------------------------------------------------
    def boot(self, watchdog_reset=False):
        """Replay the journal and wake in the state it says (SR-9).

        What the journal could not vouch for is never read in the patient's favour
        (docs/reliability.md): when the newest entry was torn by a power cut (it may have
        latched a stop) or a copy of any entry was found corrupt, a pump that would wake
        PAUSED (where the patient may resume) wakes in ALARM with STORAGE_FAULT instead, for a
        clinician to resume; corruption is annunciated (STORAGE_FAULT) in any state; and a
        journal with nothing readable left wakes in LOCKOUT (STORAGE_FAULT), as it cannot tell
        whether a lockout was in force: only an authenticated clinician override goes on. A
        stored calibration found unreadable or out of bounds is annunciated too."""
        j = self.journal
        j.replay()
        if j.program is not None:
            self.program = from_record(j.program[3])
        last = j.last
        trigger = "restore_idle"
        if last is None and j.corrupt:
            self.alarm = STORAGE_FAULT
            self.lockout_until_s = self.hal.rtc_s() + self.lockout_s
            trigger = "restore_lockout"
        elif last is not None:
            p = last[3]
            state = codes.STATES[last[1]] if last[1] < len(codes.STATES) else "IDLE"
            self.lockout_until_s = p[jn.P_LOCKOUT_UNTIL_S]
            self.auth_counter = p[jn.P_AUTH_COUNTER]
            self.auth_service = p[jn.P_AUTH_SERVICE]
            self.flags = p[jn.P_FLAGS] & ~FLAG_INTERRUPTED
            self.service = (self.flags & FLAG_SERVICE) != 0
            self.interrupted_at_s = p[P_INTERRUPTED_S]
            self.bag_start_s = p[P_BAG_START_S]
            self.cycle_run_s = p[P_CYCLE_RUN_S]
            g = j.program[3] if j.program is not None else None
            if g is not None and not self.flags & FLAG_NO_PATIENT and g[jn.G_DRUG]:
                self.weight_g = g[G_WEIGHT_G]
                self.plan = g[G_PLAN]
                self.bag_label = g[G_LABEL]
            a = p[jn.P_ALARM]
            self.alarm = codes.ALARMS[a] if a < len(codes.ALARMS) else codes.SENSOR_FAULT
            prog = self.program
            if prog is not None and (prog.pid != p[jn.P_PROGRAM_ID]
                                     or (self.service and prog.drug)):
                # only the program the checkpoint names is held; in service mode never a
                # patient's (docs/states.md)
                prog = self.program = None
            if prog is not None:
                self.reserved_nl = p[jn.P_DELIVERED_NL]
                self.delivery.load(prog.rate_ul_per_h, prog.vtbi_nl, self.reserved_nl)
                self.monitor.load(prog, self.reserved_nl)     # monitor's own copy (SR-5)
                self._library_values(prog)
                trigger = _RESTORE.get(state, "restore_idle")
            elif state == LOCKOUT:
                trigger = "restore_lockout"
            elif self.service:
                trigger = "restore_service"
            if state in (RUNNING, PAUSED) and not self.interrupted_at_s:
                self.interrupted_at_s = p[jn.P_RTC_S]
            if watchdog_reset and state == RUNNING and trigger == "restore_paused":
                self.alarm = WATCHDOG_RESET
                trigger = "restore_alarm"
            if self.service and trigger == "restore_idle":
                trigger = "restore_service"           # the mode and its state go together
            elif not self.service and trigger == "restore_service":
                trigger = "restore_idle"
            if self._lockout_active() and trigger != "restore_lockout":
                # A lockout end still ahead holds whatever state the record names: a cut
                # between the record that set it and the lockout transition's (an OVERDOSE
                # report) wakes the pump in LOCKOUT, not where delivery may go on (SR-9).
                if self.alarm is None:
                    self.alarm = OVER_INFUSION
                trigger = "restore_lockout"
        done = trigger == "restore_paused" and self.delivery.remaining_nl() <= 0
        if done:
            trigger = "restore_complete"      # the whole VTBI was counted before the cut
        if trigger == "restore_paused" and (j.torn or j.corrupt):
            self.alarm = STORAGE_FAULT        # the lost or bad entry may have latched a stop
            trigger = "restore_alarm"
        self.machine.fire(trigger)
        if done:
            self.annunciate(INFUSION_COMPLETE)
        if (j.corrupt or self.cal_fault) and self.alarm != STORAGE_FAULT:
            self.annunciate(STORAGE_FAULT)
        return self.machine.state

    # --- state-table callbacks (names are in states.TABLE) --------------------------------
    def guard_program(self):
        if self._lockout_active():            # whatever state the pump woke in (SR-6, SR-9)
            return LOCKOUT_ACTIVE
        # A bench program (no drug) only in service mode, a patient's never (docs/states.md).
        if self.service:
            if self._arg.drug:
                return SERVICE_MODE_ACTIVE
        elif not self._arg.drug:
            return SERVICE_MODE_REQUIRED
        return None

    def guard_start(self):
        prog = self.program
        if prog is None or not prog.intact():
            return BAD_INPUT
        if self._lockout_active():
            return LOCKOUT_ACTIVE
        if self.delivery.remaining_nl() <= 0:
            return INVALID_STATE
        if not self.hal.door_closed():
            return DOOR_OPEN
        return self._restart_rule(prog)

    def _restart_rule(self, prog):
        """The interruption rules of the drug library (SR-7): a bag is not run past its hang
        time (BAG_EXPIRED); after an interruption at or beyond the premedication threshold a
        clinician confirms premedication first (PREMEDICATION_REQUIRED)."""
        drug = self._drug(prog)
        if drug is None:
            return None
        now = self.hal.rtc_s()
        if self.bag_start_s and now - self.bag_start_s > \
                prog.bag_hours * 3600 + drug.bag_hang_tolerance_s:
            return BAG_EXPIRED
        if self.interrupted_at_s and now - self.interrupted_at_s >= drug.interruption_premed_s \
                and not self._premedicated(now):
            return PREMEDICATION_REQUIRED
        return None

    def guard_service(self):
        return None if self.service else INVALID_STATE

    def guard_override(self):
        return LOCKOUT_ACTIVE if self._lockout_active() else None

    def guard_enter_service(self):
        return LOCKOUT_ACTIVE if self._lockout_active() else None

    def guard_prime(self):
        return None if self._arg is True else BAD_INPUT

    def before_stop_motor(self):
        if self.run_since_s:                      # the cycle's running time (plan days)
            self.cycle_run_s = self.cycle_s()
            self.run_since_s = 0
        d = self.delivery
        d.stop(self.now)
        self.hal.motor.stop()
        self.monitor.on_stop(self.now)            # monitor: not running; clamp closed
        if self.reserved_nl > d.commanded_nl and self._pending_alarm != OVER_INFUSION:
            # The motor stopped part-way through what was reserved: the steps it issued are
            # known, so the journal (written by the transition) counts those, not the
            # reservation. After an over-infusion the camshaft may have outrun the steps:
            # the reservation stays counted (SR-9).
            self.reserved_nl = d.commanded_nl

    def after_program(self):
        prog = self._arg
        self.program = prog
        self.alarm = None
        self.notice = None
        self.reserved_nl = 0
        self.lockout_until_s = 0
        self.delivery.load(prog.rate_ul_per_h, prog.vtbi_nl, 0)
        self.monitor.load(prog, 0)                # monitor's own CRC-checked copy (SR-5)
        self._library_values(prog)
        if not prog.label or prog.label != self.bag_label:
            self.bag_start_s = 0                  # a new bag; the same label is the same bag
        self.bag_label = prog.label
        pt = prog.patient
        if pt is not None:                        # a clinical program: the patient's plan
            self.weight_g = pt[0]
            self.plan = pt[1]
            self.cycle_run_s = pt[2]
            self.flags &= ~FLAG_NO_PATIENT
        j = self.journal
        p = j.payload
        p[G_WEIGHT_G] = self.weight_g if pt is not None else 0
        p[G_PLAN] = self.plan if pt is not None else 0
        p[G_LABEL] = prog.label
        p[12] = 0
        to_record(prog, p)
        j.append(jn.PROGRAM, codes.index_of(codes.STATES, self.machine.state))

    def after_clear(self):
        self.program = None
        self.delivery.load(0, 0, 0)
        self.reserved_nl = 0

    def after_service(self):
        """Entering or leaving service mode: no patient is attached in it (the service role
        says so by entering), so the patient, the plan and any open interruption are cleared
        both ways: nothing of a patient reaches a bench program, nor of a bench a patient."""
        self.service = self.machine.state == SERVICE
        self.program = None
        self.delivery.load(0, 0, 0)
        self.reserved_nl = 0
        self.weight_g = 0
        self.plan = 0
        self.cycle_run_s = 0
        self.bag_start_s = 0
        self.bag_label = 0
        self.interrupted_at_s = 0
        self.flags = FLAG_NO_PATIENT | (FLAG_SERVICE if self.service else 0)

    def after_prime(self):
        hal = self.hal
        hal.motor.enable(True)
        if self.monitor.on_move(_PRIME_STEPS):    # monitor: these pulses are allowed
            hal.clamp(False)                      # the line primes through the open clamp
        hal.motor.move(_PRIME_STEPS, _PRIME_MS)

    def after_run(self):
        self.alarm = None
        self.hal.buzzer(False)
        now = self.hal.rtc_s()
        if self.interrupted_at_s:
            drug = self._drug(self.program)
            if drug is not None and now - self.interrupted_at_s >= drug.interruption_premed_s:
                self.flags |= FLAG_PREMED
            self.interrupted_at_s = 0
        self.flags &= _FLAG_BITS & ~FLAG_PREMED_GIVEN      # a confirmation covers one restart
        if not self.bag_start_s:
            self.bag_start_s = now
        self.run_since_s = now if self.program.drug else 0
        self.hal.motor.enable(True)
        if self.monitor.on_start(self.now):       # monitor: running from now (SR-5)
            self.hal.clamp(False)                 # delivery opens the line
        d = self.delivery
        d.start(self.now, self)

    def after_pause(self):
        self.pause_deadline = self.hal.ticks_add(self.now, self.pause_reminder_ms)
        self.pause_reminded = False
        self._mark_interrupted()

    def after_stop(self):
        """A stop is an interruption like a pause (SR-7): its clock starts now, once the
        bag has run (priming a bag that never ran interrupts nothing)."""
        if self.bag_start_s:
            self._mark_interrupted()

    def after_complete(self):
        self.hal.motor.enable(False)
        self._mark_interrupted()                  # until the next bag runs (SR-7)
        self.annunciate(INFUSION_COMPLETE)

    def after_alarm(self):
        if self._pending_alarm is not None:
            self.alarm = self._pending_alarm
        self.silenced = False
        self.hal.buzzer(True)
        self._mark_interrupted()

    def after_lockout(self):
        self.alarm = OVER_INFUSION
        self.hal.motor.enable(False)
        self.silenced = False
        self.hal.buzzer(True)
        self._mark_interrupted()

    def after_override(self):
        self.lockout_until_s = 0
        self.alarm = None

    def after_alarm_cleared(self):
        self.alarm = None
        self.hal.buzzer(False)

    def on_transition(self, trigger, source, dest):
        self._journal(jn.EVENT, codes.trigger_event(TRIGGERS, trigger), 0)
        self._emit("state", dest, self.delivery.commanded_nl)
        if dest == ALARM or dest == LOCKOUT:
            self._emit("alarm", self.alarm, 0)

    # --- service --------------------------------------------------------------------------
    def calibrate(self, args, role):
        """Set the cassette calibration ({"stroke_nl": int, "steps_per_stroke": int}):
        service role, SERVICE state. Stored power-safe, applied to delivery and to the
        monitor together. Returns None or a code; bad input changes nothing."""
        if not roles.allows("calibrate", self.machine.state, role, self.service):
            return NOT_AUTHORISED
        if not isinstance(args, dict) or not args:
            return BAD_INPUT
        for k in args:
            if k not in ("stroke_nl", "steps_per_stroke"):
                return BAD_INPUT
        d = self.delivery
        s = args.get("stroke_nl", d.stroke_nl)
        n = args.get("steps_per_stroke", d.steps_per_stroke)
        if not calibration.valid(s, n):
            return BAD_INPUT
        if self.machine.state != codes.SERVICE:
            return INVALID_STATE
        self.cal_seq += 1
        calibration.save(self.hal.storage, s, n, self.cal_seq)
        d.stroke_nl = s
        d.steps_per_stroke = n
        d.step_rem = 0
        self.monitor = Monitor(self.hal, s, n)
        self._journal(jn.EVENT, codes.EV_CALIBRATED, s)
        return None

    # --- helpers --------------------------------------------------------------------------
    def _library_values(self, prog):
        """The drug library's lockout and pause-reminder times for the program's drug
        (SR-6, SR-14); the defaults for a program without a library drug."""
        drug = druglib.default().by_index.get(prog.drug) if prog.drug else None
        if drug is None:
            self.lockout_s = self.default_lockout_s
            self.pause_reminder_ms = self.default_pause_reminder_ms
        else:
            self.lockout_s = drug.lockout_s
            self.pause_reminder_ms = drug.pause_reminder_s * 1000

    def _drug(self, prog):
        """The library entry of a clinical program's drug (None: a bench program)."""
        if prog is None or not prog.drug or self.service:
            return None
        return druglib.default().by_index.get(prog.drug)

    def cycle_s(self):
        """Running time in the plan's current cycle (s), counted from the journal's running
        time: pauses, interruptions, bag changes and power cuts do not count (plan days)."""
        if self.run_since_s:
            return self.cycle_run_s + self.hal.rtc_s() - self.run_since_s
        return self.cycle_run_s

    def patient(self):
        """What a new clinical program is checked against (program.propose): the weight on
        the last one, the plan position (program.plan_word), the cycle's running time (s),
        and the open interruption (s, 0: none); weight and plan 0 when the pump holds no
        patient's plan (a new patient: the label's plan position starts one)."""
        gap = self.hal.rtc_s() - self.interrupted_at_s if self.interrupted_at_s else 0
        return (self.weight_g, self.plan, self.cycle_s(), gap)

    def overdose(self, role, reason):
        """A clinician reports an overdose found outside the pump (wrong bag, preparation
        error): the 12 h lockout starts now (or is extended to now + 12 h), journalled with
        the reason (codes.OVERDOSE_REASONS). Returns None or a code."""
        if not roles.allows("overdose", self.machine.state, role, self.service):
            return NOT_AUTHORISED
        r = codes.index_of(codes.OVERDOSE_REASONS, reason) if isinstance(reason, str) else 0
        if r == 0:
            return BAD_INPUT
        st = self.machine.state
        if st != LOCKOUT and not self.machine.allowed("lockout"):
            return INVALID_STATE
        self.now = self.hal.ticks_ms()
        until = self.hal.rtc_s() + self.lockout_s
        if until > self.lockout_until_s:
            self.lockout_until_s = until
        self._journal(jn.EVENT, codes.EV_OVERDOSE, r)
        if st == LOCKOUT:
            return None
        self._pending_alarm = OVER_INFUSION
        r = self.machine.fire("lockout")
        self._pending_alarm = None
        return r

    def premedicated(self, role):
        """A clinician confirms premedication was given for the restart after a long
        interruption (SR-7): journalled with its time; delivery may then resume, within
        PREMED_VALID_S of it (an older confirmation is asked again), once."""
        if not roles.allows("premedicated", self.machine.state, role, self.service):
            return NOT_AUTHORISED
        if not self.interrupted_at_s:
            return INVALID_STATE
        m = (self.hal.rtc_s() - self.interrupted_at_s) // 60
        if m < 0:
            m = 0
        elif m > _PREMED_MAX_MIN:
            m = _PREMED_MAX_MIN
        self.flags = (self.flags & _FLAG_BITS) | FLAG_PREMED_GIVEN | m << _PREMED_SHIFT
        self._journal(jn.EVENT, codes.EV_PREMEDICATED, 0)
        return None

    def _premedicated(self, now):
        """True when a clinician confirmed premedication for the open interruption less than
        PREMED_VALID_S ago (SR-7)."""
        if not self.flags & FLAG_PREMED_GIVEN or not self.interrupted_at_s:
            return False
        age = now - self.interrupted_at_s - (self.flags >> _PREMED_SHIFT) * 60
        return 0 <= age < PREMED_VALID_S

    def _lockout_active(self):
        return self.lockout_until_s != 0 and self.hal.rtc_s() < self.lockout_until_s

    def _lockout_left(self):
        return self.lockout_until_s - self.hal.rtc_s() if self._lockout_active() else 0

    def _mark_interrupted(self):
        if not self.interrupted_at_s:
            self.interrupted_at_s = self.hal.rtc_s()

    def _journal(self, kind, event, arg):
        j = self.journal
        p = j.payload
        prog = self.program
        p[jn.P_PROGRAM_ID] = prog.pid if prog is not None else 0
        p[jn.P_DELIVERED_NL] = self.reserved_nl
        p[jn.P_LOCKOUT_UNTIL_S] = self.lockout_until_s
        p[jn.P_RTC_S] = self.hal.rtc_s()
        p[jn.P_ALARM] = codes.index_of(codes.ALARMS, self.alarm)
        p[jn.P_EVENT] = event
        p[jn.P_ARG] = arg
        p[jn.P_AUTH_COUNTER] = self.auth_counter
        p[jn.P_FLAGS] = self.flags | (FLAG_INTERRUPTED if self.interrupted_at_s else 0)
        p[jn.P_AUTH_SERVICE] = self.auth_service
        p[P_INTERRUPTED_S] = self.interrupted_at_s
        p[P_BAG_START_S] = self.bag_start_s
        p[P_CYCLE_RUN_S] = self.cycle_s()
        j.append(kind, codes.index_of(codes.STATES, self.machine.state))

    def _emit(self, kind, code, value):
        if self.listener is not None:
            self.listener(kind, code, value)
        for fn in self.listeners:
            fn(kind, code, value)

    def snapshot(self):
        """What the pump reports of itself, for STATUS, the TLM telemetry frame and the
        simulator's reports (allocates; not for the hot path)."""
        d = self.delivery
        hal = self.hal
        return {
            "state": self.machine.state, "alarm": self.alarm, "notice": self.notice,
            "program_id": self.program.pid if self.program is not None else None,
            "rate_ul_per_h": d.rate_ul_per_h, "vtbi_nl": d.vtbi_nl,
            "commanded_nl": d.commanded_nl, "reserved_nl": self.reserved_nl,
            "lockout_until_s": self.lockout_until_s, "silenced": self.silenced,
            "lockout_remaining_s": self._lockout_left(),
            "mode": SERVICE if self.service else "CLINICAL",
            "interrupted_s": hal.rtc_s() - self.interrupted_at_s if self.interrupted_at_s
            else 0,
            "premedicated": self._premedicated(hal.rtc_s()),
            "plan": program.plan_status(self.plan, self.cycle_s(), self.weight_g),
            "auth_counter": self.auth_counter if self.auth_counter > self.auth_service
            else self.auth_service,
            "auth_counters": {"c": self.auth_counter, "s": self.auth_service},
            "t_ms": hal.ticks_ms(), "rtc_s": hal.rtc_s(),
        }
