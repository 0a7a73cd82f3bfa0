"""Who may do what (SR-11): the one role table, consulted by the command door
(pump/commands.py) and by Controller.request. No other code compares roles.

An action is a controller request (a trigger of pump/states.py) or one of the door's own
actions ("read", "silence", "log", "calibrate", "key"). Each row gives the roles allowed in
any state, then the states where other roles apply: resuming or stopping after an alarm is a
clinician's decision, resuming from PAUSED is open to the patient. The KEY command's action
"key" is also open to anyone while no key is provisioned (factory state): the door says so.

In service mode (the pump shows SERVICE: no patient attached, bench programs only, see
docs/states.md) SERVICE_MODE replaces a row: programming and ending a bench lockout are the
service role's alone, starting is the service role's or a clinician's at the bench, stopping
and pausing anyone's (after an alarm the bench's); a patient's commands (overdose,
premedication) are nobody's.
"""
from pump.codes import ALARM, CLINICIAN, PATIENT, SERVICE_ROLE

ANYONE = (PATIENT, CLINICIAN, SERVICE_ROLE)
CARE = (PATIENT, CLINICIAN)           # the patient and the clinician at the bedside
CLINICIAN_ONLY = (CLINICIAN,)
SERVICE_ONLY = (SERVICE_ROLE,)
BENCH = (CLINICIAN, SERVICE_ROLE)     # at the bench, in service mode
_ALARM_CLINICIAN = ((ALARM, CLINICIAN_ONLY),)

# action -> (roles allowed, ((state, roles allowed in that state), ...))
TABLE = {
    "read": (ANYONE, ()),
    "silence": (ANYONE, ()),
    "pause": (CARE, ()),
    "stop": (CARE, _ALARM_CLINICIAN),
    "resume": (CARE, _ALARM_CLINICIAN),
    "program": (CLINICIAN_ONLY, ()),
    "start": (CLINICIAN_ONLY, ()),
    "clear": (CLINICIAN_ONLY, ()),
    "prime": (CLINICIAN_ONLY, ()),
    "override": (CLINICIAN_ONLY, ()),
    "service": (SERVICE_ONLY, ()),
    "exit_service": (SERVICE_ONLY, ()),
    "log": (SERVICE_ONLY, ()),
    "calibrate": (SERVICE_ONLY, ()),
    "key": (SERVICE_ONLY, ()),
    "overdose": (CLINICIAN_ONLY, ()),
    "premedicated": (CLINICIAN_ONLY, ()),
}

_ALARM_BENCH = ((ALARM, BENCH),)
# The rows service mode replaces, in TABLE's form.
SERVICE_MODE = {
    "pause": (ANYONE, ()),
    "stop": (ANYONE, _ALARM_BENCH),
    "resume": (ANYONE, _ALARM_BENCH),
    "program": (SERVICE_ONLY, ()),
    "start": (BENCH, ()),
    "clear": (BENCH, ()),
    "prime": (BENCH, ()),
    "override": (SERVICE_ONLY, ()),
    "overdose": ((), ()),
    "premedicated": ((), ()),
}


def roles_for(action, state, service=False):
    """The roles allowed to do `action` in `state`, in service mode when `service` (an empty
    tuple for an unknown action)."""
    row = SERVICE_MODE.get(action) if service else None
    if row is None:
        row = TABLE.get(action)
    if row is None:
        return ()
    for st, roles in row[1]:
        if st == state:
            return roles
    return row[0]


def allows(action, state, role, service=False):
    """True when `role` may do `action` in `state` (in service mode when `service`)."""
    return role in roles_for(action, state, service)
