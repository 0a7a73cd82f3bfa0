"""The firmware's state-table interpreter (firmware/pump/states.py) against `transitions`.

The requirement under test: the table in pump.states is the one specification of the pump's
state machine (SR-1..SR-11 are expressed as its rows) and its callback order is the documented
one, conditions -> before -> state change -> after -> on_transition, the same as `transitions`.
So the small interpreter that runs on the pump must behave exactly like `transitions.Machine`
loaded with the same rows (host/statediagram.py `load_machine`): same state after every trigger,
same guards consulted, same callbacks in the same order, success exactly when transitions says
a transition happened. Also here: docs/states.md is what host.statediagram generates now.

CPython only (transitions and hypothesis do not run on MicroPython).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from host import statediagram
from pump import codes, states

GUARDS = tuple(sorted({row[3] for row in states.TABLE if row[3] is not None}))
ACTIONS = tuple(sorted({name for row in states.TABLE for name in row[4:6] if name is not None}))
REFUSED = "REFUSED"
BOGUS = "bogus"


class Shared:
    """What both models share: the guard outcomes for the current step, and the call log."""

    def __init__(self):
        self.outcomes: dict[str, bool] = {g: True for g in GUARDS}
        self.log: list[tuple] = []


def _firmware_model(shared: Shared):
    """A stub model for pump.states.Machine: guards return None (allow) or REFUSED."""

    class FirmwareModel:
        def on_transition(self, trigger, source, dest):
            shared.log.append(("on_transition", trigger, source, dest))

    def guard(name):
        def method(self):
            shared.log.append(("guard", name))
            return None if shared.outcomes[name] else REFUSED

        return method

    def action(name):
        def method(self):
            shared.log.append(("call", name))

        return method

    for g in GUARDS:
        setattr(FirmwareModel, g, guard(g))
    for a in ACTIONS:
        setattr(FirmwareModel, a, action(a))
    return FirmwareModel()


def _transitions_model(shared: Shared):
    """A stub model for transitions (send_event=True): guards are bool conditions."""

    class TransitionsModel:
        def on_transition(self, event):
            shared.log.append(
                ("on_transition", event.event.name, event.transition.source, event.transition.dest)
            )

    def guard(name):
        def method(self, event):
            shared.log.append(("guard", name))
            return shared.outcomes[name]

        return method

    def action(name):
        def method(self, event):
            shared.log.append(("call", name))

        return method

    for g in GUARDS:
        setattr(TransitionsModel, g, guard(g))
    for a in ACTIONS:
        setattr(TransitionsModel, a, action(a))
    return TransitionsModel()


class InterpreterMatchesTransitions(RuleBasedStateMachine):
    """SR-1..SR-11 via the state table: pump.states.Machine behaves as transitions.Machine.

    Both machines get the same random trigger sequences (every trigger in pump.states.TRIGGERS
    plus an unknown one) with the same guard outcomes, drawn per step. After each trigger:
    equal states, equal logs of guards, before/after callbacks and on_transition, and `fire`
    returns None exactly when transitions' trigger returned True.
    """

    def __init__(self):
        super().__init__()
        self.fw_shared = Shared()
        self.tr_shared = Shared()
        self.fw = states.Machine(_firmware_model(self.fw_shared))
        self.tr_model = _transitions_model(self.tr_shared)
        self.tr = statediagram.load_machine(model=self.tr_model)

    def _fire(self, trigger, outcomes):
        self.fw_shared.outcomes = dict(outcomes)
        self.tr_shared.outcomes = dict(outcomes)
        self.fw_shared.log.clear()
        self.tr_shared.log.clear()
        before = self.fw.state
        code = self.fw.fire(trigger)
        ok = self.tr_model.trigger(trigger)
        assert self.fw.state == self.tr_model.state, (trigger, before, code, ok)
        assert self.fw_shared.log == self.tr_shared.log, (trigger, before)
        assert (code is None) == (ok is True), (trigger, before, code, ok)
        if trigger == BOGUS:
            assert code == codes.BAD_INPUT
        if code is not None:
            assert self.fw.state == before, (trigger, code)
            assert not [e for e in self.fw_shared.log if e[0] != "guard"], self.fw_shared.log
        else:
            assert self.fw_shared.log[-1] == ("on_transition", trigger, before, self.fw.state)

    @rule(
        trigger=st.sampled_from(states.TRIGGERS + (BOGUS,)),
        outcomes=st.fixed_dictionaries({g: st.booleans() for g in GUARDS}),
    )
    def any_trigger(self, trigger, outcomes):
        self._fire(trigger, outcomes)

    @rule(data=st.data(), outcomes=st.fixed_dictionaries({g: st.booleans() for g in GUARDS}))
    def applicable_trigger(self, data, outcomes):
        """Bias towards triggers that have a row from the current state (deeper walks)."""
        applicable = [t for t in states.TRIGGERS if self.fw.allowed(t)]
        trigger = data.draw(st.sampled_from(applicable), label="trigger")
        self._fire(trigger, outcomes)

    @invariant()
    def same_state(self):
        assert self.fw.state == self.tr_model.state
        assert self.fw.state in codes.STATES


InterpreterMatchesTransitions.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestInterpreterMatchesTransitions = InterpreterMatchesTransitions.TestCase


# --- plain tests of the interpreter's return codes ------------------------------------------


def _fw(state=codes.BOOT, refuse=None, table=states.TABLE):
    """A firmware machine in `state` whose guards refuse with refuse[guard] when listed."""
    shared = Shared()
    refuse = refuse or {}
    model = _firmware_model(shared)
    for g, code in refuse.items():
        setattr(model, g, (lambda g=g, code=code: shared.log.append(("guard", g)) or code))
    m = states.Machine(model, table=table, initial=state)
    return m, shared


def test_no_row_from_current_state_is_invalid_state_and_changes_nothing():
    m, shared = _fw(codes.BOOT)
    assert m.fire("start") == codes.INVALID_STATE
    assert m.state == codes.BOOT
    assert shared.log == []
    m, shared = _fw(codes.SERVICE)
    assert m.fire("start") == codes.INVALID_STATE
    assert m.state == codes.SERVICE
    assert shared.log == []


def test_unknown_trigger_is_bad_input_and_changes_nothing():
    m, shared = _fw(codes.IDLE)
    assert m.fire(BOGUS) == codes.BAD_INPUT
    assert m.state == codes.IDLE
    assert shared.log == []


def test_refusing_guard_returns_its_code_and_changes_nothing():
    m, shared = _fw(codes.ALARM, refuse={"guard_start": codes.DOOR_OPEN})
    assert m.fire("resume") == codes.DOOR_OPEN
    assert m.state == codes.ALARM
    assert shared.log == [("guard", "guard_start")]


def test_all_applicable_rows_refuse_returns_last_guards_code():
    table = (
        ("start", (codes.IDLE,), codes.RUNNING, "guard_a", None, "after_run"),
        ("start", (codes.PAUSED,), codes.RUNNING, "guard_x", None, "after_run"),
        ("start", (codes.IDLE,), codes.PROGRAMMED, "guard_b", None, "after_program"),
    )
    m, shared = _fw(codes.IDLE, refuse={"guard_a": "CODE_A", "guard_b": "CODE_B"}, table=table)
    assert m.fire("start") == "CODE_B"
    assert m.state == codes.IDLE
    assert shared.log == [("guard", "guard_a"), ("guard", "guard_b")]
    # The first refusal falls through to the next applicable row.
    m, shared = _fw(codes.IDLE, refuse={"guard_a": "CODE_A"}, table=table)
    m.model.guard_b = lambda: shared.log.append(("guard", "guard_b"))
    assert m.fire("start") is None
    assert m.state == codes.PROGRAMMED
    assert shared.log == [
        ("guard", "guard_a"),
        ("guard", "guard_b"),
        ("call", "after_program"),
        ("on_transition", "start", codes.IDLE, codes.PROGRAMMED),
    ]


def test_loaded_machine_has_every_row():
    spec = statediagram.transitions_spec()
    assert len(spec) == len(states.TABLE)
    m = statediagram.load_machine()
    assert set(m.states) == set(codes.STATES)
    assert sorted(m.events) == sorted(states.TRIGGERS)
    assert m.state == codes.BOOT


def test_state_diagram_is_current():
    path = statediagram.DOC_PATH
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `python -m host.statediagram`")
    if path.read_text(encoding="utf-8") != statediagram.render():
        pytest.fail(f"{path} is out of date: run `python -m host.statediagram`")
