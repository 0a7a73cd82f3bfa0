"""The pump's state machine as a data table, and the small interpreter that runs it.

Each row: (trigger, sources, dest, guard, before, after). Callbacks are named by string
and looked up on the model (the controller), so the host can load the very same table
into `transitions` to draw it and to check this interpreter against it.

Callback order for a trigger, fixed and the same as `transitions`
(conditions -> before -> state change -> after):

1. The rows for the trigger are tried in table order; a row applies when the current
   state is one of its sources.
2. Its guard, if any, is called: it returns None to allow, or a rejection code. A refused
   row leaves the state untouched and the next applicable row is tried.
3. `before` runs, still in the source state.
4. The state changes to dest.
5. `after` runs, in the destination state.
6. The model's `on_transition(trigger, source, dest)` hook runs (journal, telemetry).

`fire` returns None on success, the last guard's code when every applicable row refused,
INVALID_STATE when no row has the current state as a source, BAD_INPUT for an unknown
trigger. A refused or invalid trigger changes nothing.
"""
from pump.codes import (
    ALARM,
    BAD_INPUT,
    BOOT,
    COMPLETE,
    IDLE,
    INVALID_STATE,
    LOCKOUT,
    PAUSED,
    PRIMING,
    PROGRAMMED,
    RUNNING,
    SERVICE,
)

_ACTIVE = (PRIMING, RUNNING, PAUSED, PROGRAMMED)

TABLE = (
    # Boot: the journal's replay decides where the pump wakes (SR-9).
    ("restore_idle", (BOOT,), IDLE, None, None, None),
    ("restore_programmed", (BOOT,), PROGRAMMED, None, None, None),
    ("restore_paused", (BOOT,), PAUSED, None, None, "after_pause"),
    ("restore_alarm", (BOOT,), ALARM, None, None, "after_alarm"),
    ("restore_lockout", (BOOT,), LOCKOUT, None, None, None),
    ("restore_complete", (BOOT,), COMPLETE, None, None, None),
    # Programming (SR-1..3): the program was validated and confirmed before it gets here.
    # In service mode (bench programs, no patient) a program starts from SERVICE and
    # clearing it, or lifting a bench lockout, goes back there (guard_service).
    ("program", (IDLE, PROGRAMMED, COMPLETE, LOCKOUT, SERVICE), PROGRAMMED, "guard_program",
     None, "after_program"),
    ("clear", (PROGRAMMED, COMPLETE), SERVICE, "guard_service", None, "after_clear"),
    ("clear", (PROGRAMMED, COMPLETE), IDLE, None, None, "after_clear"),
    # Priming only with the line declared disconnected (SR-8).
    ("prime", (PROGRAMMED,), PRIMING, "guard_prime", None, "after_prime"),
    ("prime_done", (PRIMING,), PROGRAMMED, None, "before_stop_motor", None),
    # Delivery.
    ("start", (PROGRAMMED,), RUNNING, "guard_start", None, "after_run"),
    ("pause", (RUNNING,), PAUSED, None, "before_stop_motor", "after_pause"),
    ("resume", (PAUSED, ALARM), RUNNING, "guard_start", None, "after_run"),
    ("stop", (RUNNING, PAUSED, PRIMING), PROGRAMMED, None, "before_stop_motor", "after_stop"),
    ("complete", (RUNNING,), COMPLETE, None, "before_stop_motor", "after_complete"),
    # Alarms that stop delivery (SR-10), and the over-infusion lockout (SR-5, SR-6).
    ("alarm", _ACTIVE, ALARM, None, "before_stop_motor", "after_alarm"),
    ("lockout", _ACTIVE + (ALARM, COMPLETE, IDLE), LOCKOUT, None, "before_stop_motor",
     "after_lockout"),
    # The lockout ends at its time, never earlier (SR-6, docs/states.md): override only
    # acknowledges its end; a bench lockout in service mode (no patient) the service role ends.
    ("override", (LOCKOUT,), SERVICE, "guard_service", None, "after_override"),
    ("override", (LOCKOUT,), IDLE, "guard_override", None, "after_override"),
    ("stop", (ALARM,), PROGRAMMED, None, None, "after_alarm_cleared"),
    # Service (who may ask for which trigger, in which state, is pump/roles.py's, SR-11).
    # Entering and leaving service mode clear the patient and the plan (docs/states.md).
    ("service", (IDLE,), SERVICE, "guard_enter_service", None, "after_service"),
    ("exit_service", (SERVICE,), IDLE, None, None, "after_service"),
    ("restore_service", (BOOT,), SERVICE, None, None, None),
)

def _triggers(table):
    names = []
    for row in table:
        if row[0] not in names:
            names.append(row[0])
    return tuple(names)


TRIGGERS = _triggers(TABLE)


class Machine:
    """Runs TABLE against a model whose methods are named in the table."""

    def __init__(self, model, table=TABLE, initial=BOOT):
        self.model = model
        self.table = table
        self.state = initial

    def fire(self, trigger):
        if trigger not in TRIGGERS:
            return BAD_INPUT
        model = self.model
        refused = INVALID_STATE
        for row in self.table:
            if row[0] != trigger or self.state not in row[1]:
                continue
            if row[3] is not None:
                code = getattr(model, row[3])()
                if code is not None:
                    refused = code
                    continue
            if row[4] is not None:
                getattr(model, row[4])()
            source = self.state
            self.state = row[2]
            if row[5] is not None:
                getattr(model, row[5])()
            model.on_transition(trigger, source, row[2])
            return None
        return refused

    def allowed(self, trigger):
        """True when some row for trigger has the current state as a source (guards aside)."""
        for row in self.table:
            if row[0] == trigger and self.state in row[1]:
                return True
        return False
