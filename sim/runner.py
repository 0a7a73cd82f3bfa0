"""Runner: one scenario through the real firmware on the plant; returns the result dict.

The firmware (`firmware/pump`) runs in-process on SimHal; the engine jumps from event to
event (the controller's next wake, a plant crossing, a fault, a bag change, a trace sample).

Result (docs/results.md): scenario, accepted, reject_code, final_state,
alarms [{t_s, code}], delivered_ml (plant truth), counted_ml (firmware's commanded count,
summed over bags), allowed_ml (the programmed line at the end), excess_ml (max over the run
of delivered − programmed line; the line is each program's rate integrated over the time
spent RUNNING, capped at its VTBI, summed over bags), dose_ug (plant truth × the bag's real
concentration), prescribed_dose_ug, sim_hours, wall_s, expectations [{name, expected,
actual, passed}]; seed, ticks_wraps, bolus_ml, boluses, fault_excess_ml (the largest rise of
delivered − line after the first fault: noise and cassette factor before the fault taken
out), max_pressure_mmhg, faults, reboots, requests, bags_programmed, bags_completed,
cassette_factor, controller_steps, xfail; detection_alarm and detection_latency_s (the
alarm that answered the first fault and how long after it), excess_at_fault_ml (delivered −
line when the first fault struck: the mechanism's own deviation until then),
fault_window_excess_ml (fault_excess_ml within the fault window below only: what the fault
caused before the pump answered it, without the drift of a run that went on),
stroke_error_pct (the cassette's true stroke against the one the firmware was given: the
drift a long run accumulates without any fault); trace_file and journal_file with an
out_dir, and fault_file when there was a fault.

Trace CSV `<out_dir>/<name>/trace.csv`: t_s,state,delivered_ml,counted_ml,allowed_ml,
pressure_mmhg,alarm — a row every sample_s and a row at every state change and alarm (the
`alarm` column holds the code raised at that row, empty otherwise; state OFF = no power).

Fault window CSV `<out_dir>/<name>/fault.csv`: t_s,delivered_ml,allowed_ml,fault_excess_ml —
from the first fault, at every controller wake (the breakpoints of the delivered curve), until
its detection alarm plus half the detection time (at least a minute), else for
FAULT_WINDOW_MS (or 1.5 × the scenario's alarm_within_min); at most FAULT_WINDOW_ROWS rows.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import shutil
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from pump import codes
from pump.codes import CLINICIAN, COMPLETE, PATIENT, PAUSED, RUNNING, SERVICE_ROLE
from pump.commands import COMMANDS
from pump.controller import Controller
from pump.runtime import Runtime
from sim.engine import PRIO_FAULT, PRIO_SAMPLE, Engine
from sim.faults import FAULTS
from sim.hal import DirStorage, MemStorage, SimHal
from sim.plant import Plant
from sim.programming import is_basic, prescribed_dose_ug, proposal_args
from sim.scenario import Scenario

TRACE_HEADER = "t_s,state,delivered_ml,counted_ml,allowed_ml,pressure_mmhg,alarm"
FAULT_HEADER = "t_s,delivered_ml,allowed_ml,fault_excess_ml"
OFF = "OFF"
FAULT_WINDOW_MS = 30 * 60000         # the fault window without a detection alarm
FAULT_WINDOW_ROWS = 50000
NOT_DETECTION = ("INFUSION_COMPLETE",)   # alarms that do not answer a fault


def detection_codes(sc: Scenario) -> tuple[str, ...] | None:
    """The alarms that count as detecting the scenario's fault: its [expect] alarm codes but
    INFUSION_COMPLETE (which answers no fault), or None (any alarm but INFUSION_COMPLETE)
    when that leaves none."""
    want = sc.expect.get("alarm")
    codes_ = tuple(want) if isinstance(want, list) else (want,) if want else ()
    codes_ = tuple(c for c in codes_ if c not in NOT_DETECTION)
    return codes_ or None


class Sim:
    """One run: engine, plant, SimHal, the controller of the moment, and the books."""

    def __init__(self, scenario: Scenario, trace: bool = False,
                 storage_dir: str | None = None, storage: str | None = None) -> None:
        self.sc = scenario
        self.engine = Engine()
        cfg = scenario.plant
        first = scenario.bags[0]
        cfg.bag_fill_ml = first.fill_ml
        cfg.concentration_ug_per_ml = first.prepared_concentration_ug_per_ml
        self.plant = Plant(self.engine, cfg, scenario.seed)
        if storage is None:             # files when a folder is given, else memory
            storage = "files" if storage_dir is not None else "memory"
        if storage not in ("files", "memory"):
            raise ValueError("storage: expected 'files' or 'memory', got %r" % (storage,))
        self.storage: Any = MemStorage() if storage == "memory" else DirStorage(storage_dir)
        if storage_dir is not None:
            self.storage.remove("journal.bin")
        self.hal = SimHal(self.engine, self.plant, self.storage, scenario.start_ticks)
        self.hal.pre_step = self._check
        self.controller: Any = None
        self.door: Any = None           # the controller's command door (pump.commands)
        self.tracing = trace
        self.rows: list[str] = []
        self.alarms: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.faults_applied: list[dict[str, Any]] = []
        self.reboots: list[dict[str, Any]] = []
        self.state = codes.BOOT
        self.rate_error: Fraction | None = None
        # books for the programmed line and the firmware's count, across bags
        self.bag_index = -1
        self.bags_completed = 0
        self.accepted = True
        self.reject_code: str | None = None
        self.prog_rate_ul_per_h = 0
        self.prog_vtbi_ul = 0.0
        self.allowed_base_ul = 0.0
        self.counted_base_nl = 0
        self.last_commanded_nl = 0
        self.run_ms = 0
        self.run_since: int | None = None
        self.excess_ul = 0.0
        self.fault_t: int | None = None
        self.fault_ref_ul = 0.0
        self.fault_excess_ul = 0.0
        self.fault_window_end: int | None = None      # set while the fault window is open
        self.fault_window_excess_ul = 0.0
        self.fault_rows: list[str] = []
        self.detected: tuple[int, str] | None = None
        self._detect_codes = detection_codes(scenario)
        self.max_pressure = 0.0
        self._bag_waiting = False
        self._sample_ms = 60000

    # --- time -----------------------------------------------------------------------------
    @property
    def now(self) -> int:
        return self.engine.now

    def later(self, delay_ms: int, fn: Any) -> None:
        self.engine.schedule(self.engine.now + delay_ms, PRIO_FAULT, fn)

    # --- the controller's lifecycle ----------------------------------------------------------
    def _boot(self) -> str:
        ctl = Controller(self.hal, stroke_nl=self.plant.calibrated_stroke_nl,
                         steps_per_stroke=self.plant.cfg.steps_per_stroke)
        if self.rate_error is not None:
            ctl.delivery.fault_num = self.rate_error.numerator
            ctl.delivery.fault_den = self.rate_error.denominator
        ctl.listeners.append(self._listener)         # leaves ctl.listener to others
        self.controller = ctl
        rt = Runtime(self.hal, ctl)
        self.door = rt.proto              # the command door the serial frames go through
        state = rt.boot()
        self.state = state
        self.hal.attach(rt)
        return state

    def power_loss(self, duration_ms: int, ticks_reset: bool = True) -> None:
        ctl = self.controller
        if ctl is None:
            return
        now = self.now
        self._check(now)
        self.last_commanded_nl = ctl.snapshot()["commanded_nl"]
        before = self.counted_nl()
        self._leave_running(now)
        self.hal.power_off()
        ctl.journal.close()
        self.controller = None
        self.door = None
        self.state = OFF
        self._row(now, "")
        rec: dict[str, Any] = {"t_s": now / 1000.0, "duration_s": duration_ms / 1000.0,
                               "counted_before_ml": round(before / 1e6, 6)}
        self.reboots.append(rec)
        self.later(duration_ms, lambda: self._power_on(rec, ticks_reset))

    def _power_on(self, rec: dict[str, Any], ticks_reset: bool) -> None:
        self.hal.power_on(ticks_reset)
        state = self._boot()
        rec["state_after_boot"] = state
        rec["counted_after_ml"] = round(self.counted_nl() / 1e6, 6)
        if self.sc.resume_after_power_loss and state == PAUSED:
            self._command("RESUME", {})
        if self._bag_waiting:
            self._bag_waiting = False
            self._next_bag()

    def set_rate_error(self, factor: float) -> None:
        self.rate_error = Fraction(factor).limit_denominator(1000)
        ctl = self.controller
        if ctl is not None:
            ctl.delivery.fault_num = self.rate_error.numerator
            ctl.delivery.fault_den = self.rate_error.denominator

    def _role(self) -> int:
        """Who programs the current bag: the clinician a patient's, the service role a basic
        (rate/VTBI) one, which the pump takes only in service mode (issue 11)."""
        i = self.bag_index if self.bag_index >= 0 else 0
        return SERVICE_ROLE if is_basic(self.sc.bags[i]) else CLINICIAN

    def _command(self, name: str, args: dict[str, Any]) -> Any:
        """One command through the pump's door, as the clinician (the service role for a
        basic program), with the current bag's program id as the counter; the main loop
        steps right after. Logged in `requests` under its action (the controller trigger):
        None or the rejection code."""
        r = self.door.execute(name, args, self._role(), self.bag_index + 1)
        self.hal.wake()
        code = r if isinstance(r, str) else None
        self.requests.append({"t_s": self.now / 1000.0, "trigger": COMMANDS[name][0],
                              "result": code})
        return r

    # --- the plan -----------------------------------------------------------------------------
    def _schedule_bag(self) -> None:
        nxt = self.bag_index + 1
        if nxt >= len(self.sc.bags) or not self.accepted:
            return
        self.later(self.sc.bags[nxt].gap_ms, self._next_bag)

    def _next_bag(self) -> None:
        ctl = self.controller
        if ctl is None:
            self._bag_waiting = True
            return
        now = self.now
        self._check(now)
        self.bag_index += 1
        i = self.bag_index
        bag = self.sc.bags[i]
        if i > 0:
            self.plant.change_bag(now, bag.fill_ml, bag.prepared_concentration_ug_per_ml)
        args = proposal_args(self.sc, i)
        if isinstance(args, str):
            self._reject(args)
            return
        role = self._role()
        if role == SERVICE_ROLE and not ctl.service:
            # the bench: into service mode first (no patient attached)
            r = self.door.execute("SERVICE", {}, SERVICE_ROLE, i + 1)
            if isinstance(r, str):
                self._reject(r)
                return
        proposal = self.door.execute("PROPOSE", args, role, i + 1)
        if isinstance(proposal, str):
            self._reject(proposal)
            return
        # close the books of the previous program
        self._leave_running(now)
        self.allowed_base_ul += self._bag_allowed_ul()
        commanded_nl = ctl.snapshot()["commanded_nl"]
        self.counted_base_nl += commanded_nl
        self.run_ms = 0
        r = self._command("CONFIRM", {"echo": proposal["echo"]})
        if isinstance(r, str):
            self.counted_base_nl -= commanded_nl
            self._reject(r)
            return
        snap = ctl.snapshot()
        self.prog_rate_ul_per_h = snap["rate_ul_per_h"]
        self.prog_vtbi_ul = snap["vtbi_nl"] / 1000.0
        if bag.premedicated:
            self._command("PREMEDICATED", {})
        r = self._command("START", {})
        if isinstance(r, str):
            self._reject(r)          # e.g. PREMEDICATION_REQUIRED after a long interruption

    # --- operator actions (sim/faults.py: overdose_reported, restart, pause) ---------------------
    def operator(self, name: str, args: dict[str, Any]) -> Any:
        """A command a person gives at the pump (the clinician; PAUSE/RESUME the patient's)
        through the door; a refused RESUME is the run's reject_code."""
        if self.door is None:
            return None
        role = PATIENT if name in ("PAUSE", "RESUME") else CLINICIAN
        r = self.door.execute(name, args, role, self.bag_index + 1)
        self.hal.wake()
        self.requests.append({"t_s": self.now / 1000.0, "trigger": COMMANDS[name][0],
                              "result": r if isinstance(r, str) else None})
        if name == "RESUME" and isinstance(r, str):
            self._reject(r)
        return r

    def restart(self, premedicated: bool = False) -> None:
        """A clinician programs the current bag again and starts it (after a lockout or an
        interruption), confirming premedication first when `premedicated`: the first refusal
        is the run's reject_code."""
        ctl = self.controller
        if ctl is None or self.bag_index < 0:
            return
        now = self.now
        self._check(now)
        i = self.bag_index
        args = proposal_args(self.sc, i)
        if isinstance(args, str):
            self._reject(args)
            return
        proposal = self.door.execute("PROPOSE", args, CLINICIAN, i + 1)
        if isinstance(proposal, str):
            self._reject(proposal)
            return
        self._leave_running(now)
        allowed = self._bag_allowed_ul()
        commanded_nl = ctl.snapshot()["commanded_nl"]
        r = self._command("CONFIRM", {"echo": proposal["echo"]})
        if isinstance(r, str):
            self._reject(r)
            return
        self.allowed_base_ul += allowed
        self.counted_base_nl += commanded_nl
        self.run_ms = 0
        snap = ctl.snapshot()
        self.prog_rate_ul_per_h = snap["rate_ul_per_h"]
        self.prog_vtbi_ul = snap["vtbi_nl"] / 1000.0
        if premedicated:
            self._command("PREMEDICATED", {})
        r = self._command("START", {})
        if isinstance(r, str):
            self._reject(r)

    def _reject(self, code: Any) -> None:
        if self.accepted:
            self.accepted = False
            self.reject_code = str(code)

    # --- the books ----------------------------------------------------------------------------
    def _bag_allowed_ul(self, now: int | None = None) -> float:
        ms = self.run_ms
        if now is not None and self.run_since is not None:
            ms += now - self.run_since
        v = self.prog_rate_ul_per_h * ms / 3600000.0
        return v if v < self.prog_vtbi_ul else self.prog_vtbi_ul

    def allowed_ul(self, now: int) -> float:
        return self.allowed_base_ul + self._bag_allowed_ul(now)

    def counted_nl(self) -> int:
        ctl = self.controller
        c = ctl.delivery.commanded_nl if ctl is not None else self.last_commanded_nl
        return self.counted_base_nl + c

    def _leave_running(self, now: int) -> None:
        if self.run_since is not None:
            self.run_ms += now - self.run_since
            self.run_since = None

    def _check(self, now: int) -> None:
        """Update the excess books at a breakpoint of the delivered curve (every wake)."""
        p = self.plant
        if now > p.ts:
            p.settle(now)
        ms = self.run_ms if self.run_since is None else self.run_ms + now - self.run_since
        line = self.prog_rate_ul_per_h * ms / 3600000.0
        if line > self.prog_vtbi_ul:
            line = self.prog_vtbi_ul
        d = p.patient_ul - self.allowed_base_ul - line
        if d > self.excess_ul:
            self.excess_ul = d
        if self.fault_t is not None:
            e = d - self.fault_ref_ul
            if e > self.fault_excess_ul:
                self.fault_excess_ul = e
            if self.fault_window_end is not None:
                self._fault_row(now, p.patient_ul, p.patient_ul - d, e)
        if p.stored_ul > 0.0:
            pr = p.pressure()
            if pr > self.max_pressure:
                self.max_pressure = pr

    def _listener(self, kind: str, code: Any, value: int) -> None:
        now = self.now
        if kind == "state":
            self._check(now)
            if self.state == RUNNING and code != RUNNING:
                self._leave_running(now)
            elif code == RUNNING and self.run_since is None:
                self.run_since = now
            self.state = code
            self._row(now, "")
            if code == COMPLETE:
                self.bags_completed += 1
                self._schedule_bag()
        elif kind == "alarm" and code is not None:
            self.alarms.append({"t_s": now / 1000.0, "code": code})
            self._row(now, code)
            if self.fault_t is not None and self.detected is None and (
                    code not in NOT_DETECTION if self._detect_codes is None
                    else code in self._detect_codes):
                self.detected = (now, code)
                if self.fault_window_end is not None:
                    self.fault_window_end = now + max(60000, (now - self.fault_t) // 2)

    def _fault_row(self, now: int, delivered_ul: float, line_ul: float, e_ul: float) -> None:
        """The fault window (while it is open): its largest excess, and a row when tracing."""
        end = self.fault_window_end
        assert end is not None
        if now > end:
            self.fault_window_end = None
            return
        if e_ul > self.fault_window_excess_ul:
            self.fault_window_excess_ul = e_ul
        if self.tracing and len(self.fault_rows) < FAULT_WINDOW_ROWS:
            self.fault_rows.append("%.3f,%.6f,%.6f,%.6f" % (
                now / 1000.0, delivered_ul / 1000.0, line_ul / 1000.0, e_ul / 1000.0))

    # --- faults and samples -----------------------------------------------------------------
    def _apply_fault(self, i: int) -> None:
        f = self.sc.faults[i]
        now = self.now
        self._check(now)
        if self.fault_t is None:
            self.fault_t = now
            self.fault_ref_ul = self.plant.patient_ul - self.allowed_ul(now)
            limit = self.sc.expect.get("alarm_within_min")
            self.fault_window_end = now + max(FAULT_WINDOW_MS,
                                              int(1.5 * 60000 * limit) if limit else 0)
        self.faults_applied.append({"t_s": now / 1000.0, "kind": f.kind, "params": f.params})
        FAULTS[f.kind].fn(self, f.params)
        self._check(now)

    def _sample(self) -> None:
        now = self.now
        self._check(now)
        self._row(now, "")
        self.engine.schedule(now + self._sample_ms, PRIO_SAMPLE, self._sample)

    def _row(self, now: int, alarm: str) -> None:
        if not self.tracing:
            return
        p = self.plant
        p.settle(now)
        self.rows.append("%.3f,%s,%.6f,%.6f,%.6f,%d,%s" % (
            now / 1000.0, self.state, p.patient_ul / 1000.0, self.counted_nl() / 1e6,
            self.allowed_ul(now) / 1000.0, int(round(p.pressure())), alarm))

    # --- the run ------------------------------------------------------------------------------
    def start(self) -> None:
        """Boot the pump and schedule the plan, the faults and the samples (at t = 0)."""
        self._sample_ms = max(1, int(round(self.sc.sample_s * 1000.0)))
        self._boot()
        for i, f in enumerate(self.sc.faults):
            self.engine.schedule(int(round(f.at_h * 3600000.0)), PRIO_FAULT,
                                 functools.partial(self._apply_fault, i))
        self.engine.schedule(self.sc.bags[0].gap_ms, PRIO_FAULT, self._next_bag)
        if self.tracing:
            self.engine.schedule(0, PRIO_SAMPLE, self._sample)

    def advance(self, t_ms: int) -> None:
        """Run the world up to t_ms (ms since the start)."""
        self.engine.run_until(t_ms)
        self._check(t_ms)

    def run(self) -> None:
        end_ms = int(round(self.sc.hours * 3600000.0))
        self.start()
        self.advance(end_ms)
        if self.tracing and (not self.rows or not self.rows[-1].startswith(
                "%.3f," % (end_ms / 1000.0))):
            self._row(end_ms, "")

    def close(self) -> None:
        if self.controller is not None:
            self.controller.journal.close()
        self.storage.cleanup()


def run_scenario(scenario: Scenario, out_dir: str | None = None,
                 storage: str = "memory") -> dict[str, Any]:
    """Run one scenario; write trace.csv, result.json and journal.bin under out_dir/name.

    `storage`: the pump's flash in memory ("memory", the default: the journal's bytes are
    the same, written out at the end, without a system call per journal flush) or real
    files in a temp dir ("files", the board's boards.fs.DirStorage)."""
    wall0 = time.perf_counter()
    sim = Sim(scenario, trace=out_dir is not None, storage=storage)
    try:
        sim.run()
        res = _result(sim)
        if out_dir is not None:
            d = os.path.join(out_dir, scenario.name)
            os.makedirs(d, exist_ok=True)
            trace = os.path.join(d, "trace.csv")
            with open(trace, "w") as f:
                f.write(TRACE_HEADER + "\n")
                f.write("\n".join(sim.rows))
                f.write("\n")
            jfile = os.path.join(d, "journal.bin")
            if sim.controller is not None:
                sim.controller.journal.close()
            if isinstance(sim.storage, MemStorage):
                data = sim.storage.data("journal.bin")
                if data is not None:
                    with open(jfile, "wb") as jf:
                        jf.write(data)
            else:
                src = sim.storage.path("journal.bin")
                if os.path.exists(src):
                    shutil.copyfile(src, jfile)
            res["trace_file"] = trace
            res["journal_file"] = jfile
            rows = sim.fault_rows
            if rows:
                ffile = os.path.join(d, "fault.csv")
                with open(ffile, "w") as f:
                    f.write(FAULT_HEADER + "\n" + "\n".join(rows) + "\n")
                res["fault_file"] = ffile
    finally:
        sim.close()
    res["wall_s"] = round(time.perf_counter() - wall0, 4)
    if out_dir is not None:
        with open(os.path.join(out_dir, scenario.name, "result.json"), "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return res


def _r(x: float) -> float:
    return round(x, 6) + 0.0


def _result(sim: Sim) -> dict[str, Any]:
    sc = sim.sc
    p = sim.plant
    end = sim.now
    hours = end / 3600000.0
    ctl = sim.controller
    res: dict[str, Any] = {
        "scenario": sc.name,
        "accepted": sim.accepted,
        "reject_code": sim.reject_code,
        "final_state": ctl.snapshot()["state"] if ctl is not None else OFF,
        "alarms": sim.alarms,
        "delivered_ml": _r(p.patient_ul / 1000.0),
        "counted_ml": _r(sim.counted_nl() / 1e6),
        "allowed_ml": _r(sim.allowed_ul(end) / 1000.0),
        "excess_ml": _r(max(0.0, sim.excess_ul) / 1000.0),
        "dose_ug": _r(p.dose_ug),
        "prescribed_dose_ug": _r(prescribed_dose_ug(sc, hours)),
        "sim_hours": _r(hours),
        "wall_s": 0.0,
        "expectations": [],
        "seed": sc.seed,
        "ticks_wraps": sim.hal.ticks_wraps(),
        "bolus_ml": _r(p.bolus_ul / 1000.0),
        "boluses": [{"t_s": t / 1000.0, "ml": _r(v / 1000.0)} for t, v in p.boluses],
        "fault_excess_ml": _r(max(0.0, sim.fault_excess_ul) / 1000.0),
        "max_pressure_mmhg": _r(max(sim.max_pressure, p.cfg.venous_mmhg)),
        "faults": sim.faults_applied,
        "reboots": sim.reboots,
        "requests": sim.requests,
        "bags_planned": len(sc.bags),
        "bags_programmed": sim.bag_index + 1,
        "bags_completed": sim.bags_completed,
        "cassette_factor": _r(p.cassette_factor),
        "calibrated_stroke_nl": p.calibrated_stroke_nl,
        "controller_steps": sim.hal.steps,
        "xfail": sc.expect.get("xfail"),
        "detection_alarm": None if sim.detected is None else sim.detected[1],
        "detection_latency_s": None if sim.detected is None or sim.fault_t is None
        else _r((sim.detected[0] - sim.fault_t) / 1000.0),
        "excess_at_fault_ml": None if sim.fault_t is None else _r(sim.fault_ref_ul / 1000.0),
        "fault_window_excess_ml": None if sim.fault_t is None
        else _r(max(0.0, sim.fault_window_excess_ul) / 1000.0),
        "stroke_error_pct": _r(100.0 * (p.cfg.stroke_ul * 1000.0 * p.cassette_factor
                                        / p.calibrated_stroke_nl - 1.0)),
    }
    res["expectations"] = evaluate(sc, res)
    return res


# [expect] keys that compare one result field with the expected value: key -> (field, test)
_COMPARED: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "final_state": ("final_state", operator.eq),
    "max_excess_ml": ("excess_ml", operator.le),
    "max_fault_excess_ml": ("fault_excess_ml", operator.le),
    "delivered_ml_min": ("delivered_ml", operator.ge),
    "delivered_ml_max": ("delivered_ml", operator.le),
    "max_bolus_ml": ("bolus_ml", operator.le),
    "dose_ug_min": ("dose_ug", operator.ge),
    "dose_ug_max": ("dose_ug", operator.le),
    "accepted": ("accepted", operator.eq),
    "reject_code": ("reject_code", operator.eq),
}


def evaluate(sc: Scenario, res: dict[str, Any]) -> list[dict[str, Any]]:
    """Check each [expect] entry against the result."""
    out: list[dict[str, Any]] = []
    codes_seen = [a["code"] for a in res["alarms"]]

    def add(name: str, expected: Any, actual: Any, passed: bool) -> None:
        out.append({"name": name, "expected": expected, "actual": actual,
                    "passed": bool(passed)})

    ex = sc.expect
    for key, want in ex.items():
        if key == "alarm":
            wants = want if isinstance(want, list) else [want]
            add(key, want, codes_seen, all(w in codes_seen for w in wants))
        elif key == "alarm_within_min":
            first = _first_alarm_after_fault(res, ex.get("alarm"))
            add(key, want, None if first is None else round(first / 60.0, 3),
                first is not None and first <= want * 60.0)
        elif key == "no_alarms_except":
            extra = sorted({c for c in codes_seen if c not in want})
            add(key, want, extra, not extra)
        elif key in _COMPARED:
            field, ok = _COMPARED[key]
            add(key, want, res[field], ok(res[field], want))
    return out


def _first_alarm_after_fault(res: dict[str, Any], code: Any) -> float | None:
    """Seconds from the first fault (or the start) to the first matching alarm."""
    t0 = res["faults"][0]["t_s"] if res["faults"] else 0.0
    wants = None if code is None else (code if isinstance(code, list) else [code])
    for a in res["alarms"]:
        if a["t_s"] >= t0 and (wants is None or a["code"] in wants):
            return a["t_s"] - t0
    return None


def passed(res: dict[str, Any]) -> bool:
    return all(e["passed"] for e in res["expectations"])


