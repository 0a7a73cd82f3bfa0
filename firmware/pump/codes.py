"""Public codes (docs/codes.md, docs/states.md): states, alarms, program rejections,
roles. One place for each.

Codes are interned strings so they read the same in traces, replies and docs; the journal
stores them as small indices into the tuples below, so the tuples are append-only.
"""

# States (top level)
BOOT = "BOOT"
IDLE = "IDLE"
PROGRAMMED = "PROGRAMMED"
PRIMING = "PRIMING"
RUNNING = "RUNNING"
PAUSED = "PAUSED"
ALARM = "ALARM"
LOCKOUT = "LOCKOUT"
COMPLETE = "COMPLETE"
SERVICE = "SERVICE"
STATES = (BOOT, IDLE, PROGRAMMED, PRIMING, RUNNING, PAUSED, ALARM, LOCKOUT, COMPLETE, SERVICE)

# Alarm codes
OVER_INFUSION = "OVER_INFUSION"
FREE_FLOW = "FREE_FLOW"
UNDER_INFUSION = "UNDER_INFUSION"
OCCLUSION = "OCCLUSION"
AIR_IN_LINE = "AIR_IN_LINE"
DOOR_OPEN = "DOOR_OPEN"
RESERVOIR_LOW = "RESERVOIR_LOW"
INFUSION_COMPLETE = "INFUSION_COMPLETE"
LOW_BATTERY = "LOW_BATTERY"
SENSOR_FAULT = "SENSOR_FAULT"
MOTOR_FAULT = "MOTOR_FAULT"
PAUSE_TIMEOUT = "PAUSE_TIMEOUT"
WATCHDOG_RESET = "WATCHDOG_RESET"
# Extension (codes are added, never renamed): a stored record (journal, calibration, keys) was found
# corrupt at boot, or the journal's newest write was torn; the pump kept the safest reading.
STORAGE_FAULT = "STORAGE_FAULT"
# Index 0 means "no alarm" in the journal.
ALARMS = (None, OVER_INFUSION, FREE_FLOW, UNDER_INFUSION, OCCLUSION, AIR_IN_LINE, DOOR_OPEN,
          RESERVOIR_LOW, INFUSION_COMPLETE, LOW_BATTERY, SENSOR_FAULT, MOTOR_FAULT,
          PAUSE_TIMEOUT, WATCHDOG_RESET, STORAGE_FAULT)
# Alarms that stop delivery and need a clinician to resume (SR-10); the rest only annunciate.
STOPPING_ALARMS = (OVER_INFUSION, FREE_FLOW, UNDER_INFUSION, OCCLUSION, AIR_IN_LINE, DOOR_OPEN,
                   SENSOR_FAULT, MOTOR_FAULT, WATCHDOG_RESET, STORAGE_FAULT)

# Program rejection codes
RATE_VOLUME_MISMATCH = "RATE_VOLUME_MISMATCH"
DOSE_RATE_MISMATCH = "DOSE_RATE_MISMATCH"
DOSE_ABOVE_LIMIT = "DOSE_ABOVE_LIMIT"
CONCENTRATION_OUT_OF_RANGE = "CONCENTRATION_OUT_OF_RANGE"
DURATION_NOT_OFFERED = "DURATION_NOT_OFFERED"
PRESERVATIVE_WEIGHT_LIMIT = "PRESERVATIVE_WEIGHT_LIMIT"
UNIT_REJECTED = "UNIT_REJECTED"
UNKNOWN_DRUG = "UNKNOWN_DRUG"
LOCKOUT_ACTIVE = "LOCKOUT_ACTIVE"
NOT_AUTHORISED = "NOT_AUTHORISED"
BAD_INPUT = "BAD_INPUT"
# Extensions (codes are added, never renamed):
INVALID_STATE = "INVALID_STATE"          # a well-formed request the current state does not take
LABEL_CHECK_MISMATCH = "LABEL_CHECK_MISMATCH"  # the bag label's check code does not match
OVERRIDE_REQUIRED = "OVERRIDE_REQUIRED"  # a soft limit: needs a logged clinician override
SERVICE_MODE_REQUIRED = "SERVICE_MODE_REQUIRED"  # a bench program outside service mode
SERVICE_MODE_ACTIVE = "SERVICE_MODE_ACTIVE"  # a patient's program or command in service mode
HEIGHT_REQUIRED = "HEIGHT_REQUIRED"      # a label without the patient's height
MEASURES_IMPLAUSIBLE = "MEASURES_IMPLAUSIBLE"  # weight and height are not a human body
BSA_MISMATCH = "BSA_MISMATCH"            # the label's BSA is not the one its measures give
PREMEDICATION_REQUIRED = "PREMEDICATION_REQUIRED"  # restart after a long interruption
BAG_EXPIRED = "BAG_EXPIRED"              # the bag has hung longer than it may
DOSE_STEP_MISMATCH = "DOSE_STEP_MISMATCH"  # the bag's dose is not the step due today
PLAN_REQUIRED = "PLAN_REQUIRED"          # a label without its plan position (cycle, days)
REJECTIONS = (RATE_VOLUME_MISMATCH, DOSE_RATE_MISMATCH, DOSE_ABOVE_LIMIT,
              CONCENTRATION_OUT_OF_RANGE, DURATION_NOT_OFFERED, PRESERVATIVE_WEIGHT_LIMIT,
              UNIT_REJECTED, UNKNOWN_DRUG, LOCKOUT_ACTIVE, NOT_AUTHORISED, BAD_INPUT,
              INVALID_STATE, LABEL_CHECK_MISMATCH, OVERRIDE_REQUIRED, SERVICE_MODE_REQUIRED,
              SERVICE_MODE_ACTIVE, HEIGHT_REQUIRED, MEASURES_IMPLAUSIBLE, BSA_MISMATCH,
              PREMEDICATION_REQUIRED, BAG_EXPIRED, DOSE_STEP_MISMATCH, PLAN_REQUIRED)

# Roles (SR-11), ordered by what they may do; SERVICE is separate from clinical roles.
PATIENT = 1
CLINICIAN = 2
SERVICE_ROLE = 3

# Journal event codes: the event field of an EVENT record (docs/firmware.md). Each range names
# one kind of event; inside a range the code is a position in a tuple, so those tuples are
# append-only (triggers: pump.states.TRIGGERS, the state table's triggers in first-use order).
EV_NONE = 0           # no event: a CHECKPOINT record
EV_TRIGGER = 1        # EV_TRIGGER + i: the state table's trigger TRIGGERS[i] fired (up to 63)
EV_ALARM = 64         # EV_ALARM + i: the alarm ALARMS[i] (i >= 1) was annunciated (up to 95)
EV_CALIBRATED = 96    # the service role changed the cassette calibration (arg: stroke nL)
EV_OVERDOSE = 97      # a clinician reported an overdose found outside the pump (arg: reason)
EV_PREMEDICATED = 98  # a clinician confirmed premedication before a restart (SR-7)
# Why a clinician starts the lockout (OVERDOSE command, journalled as EV_OVERDOSE's arg).
OVERDOSE_REASONS = ("", "wrong_bag", "preparation_error", "programming_error", "other")


def index_of(table, code):
    """Position of code in one of the tuples above (0 when absent: 'none')."""
    i = 0
    for c in table:
        if c == code:
            return i
        i += 1
    return 0


def trigger_event(triggers, trigger):
    """The journal event code for a state-table trigger that fired (triggers: TRIGGERS)."""
    return EV_TRIGGER + index_of(triggers, trigger)


def alarm_event(code):
    """The journal event code for an annunciated alarm (a code in ALARMS)."""
    return EV_ALARM + index_of(ALARMS, code)


def event_of(ev, triggers):
    """What a journal event code means: (EV_TRIGGER, trigger), (EV_ALARM, alarm code),
    (EV_CALIBRATED, None), (EV_OVERDOSE, None), (EV_PREMEDICATED, None) or (EV_NONE, None);
    None when no event has that code."""
    if ev == EV_NONE or EV_CALIBRATED <= ev <= EV_PREMEDICATED:
        return (ev, None)
    if EV_TRIGGER <= ev < EV_ALARM and ev - EV_TRIGGER < len(triggers):
        return (EV_TRIGGER, triggers[ev - EV_TRIGGER])
    if EV_ALARM < ev < EV_CALIBRATED and ev - EV_ALARM < len(ALARMS):
        return (EV_ALARM, ALARMS[ev - EV_ALARM])
    return None
