"""Every code the pump can answer or raise, in words: what it means and what to do next.

One table for every reader: `pumpctl` prints a refusal with it, `pumpctl explain` lists it,
the simulator's report explains reject codes and alarms with it, and docs/codes.md is
generated from it (tests/test_refusals.py checks that every code the firmware defines has a
row, and that the page matches).

    REFUSALS[code] = (meaning, what to do next)
    explain("UNIT_REJECTED") -> "UNIT_REJECTED: a value in a unit the pump does not take ...
                                  What to do: ..."

Codes come from `pump/codes.py` (program rejections and alarms), `pump/commands.py` and
`pump/protocol.py` (the command door and the frame layer).
"""

from __future__ import annotations

# code -> (meaning, what to do next). Grouped as in KINDS below; keep each text one sentence
# or two, in the words a nurse, a pharmacist or a bench engineer would use.
REFUSALS: dict[str, tuple[str, str]] = {
    # --- program rejections (pump/codes.py REJECTIONS) -----------------------------------
    "RATE_VOLUME_MISMATCH": (
        "the keyed rate times the bag's duration is not the bag's infusible volume (within "
        "1 %), the VTBI is not the label's infusible volume, or a rate or VTBI is outside "
        "the pump's range (0.1-100 mL/h, 1-1000 mL) (SR-1)",
        "check the rate and the VTBI against the bag label: the rate in mL/h as printed, "
        "the VTBI the label's 'infuse' volume (not the bag volume), then program again",
    ),
    "DOSE_RATE_MISMATCH": (
        "the rate times 24 h times the label's concentration does not give the prescribed "
        "daily dose within 1 % (SR-1): the concentration or the rate is wrong",
        "do not infuse this bag: compare the label with the prescription (pumpctl rx "
        "prints the correct values) and return the bag to pharmacy if they differ",
    ),
    "DOSE_ABOVE_LIMIT": (
        "the prescribed dose is above the drug library's hard cap for this patient class "
        "(blinatumomab: 28 ug/day, 15 ug/m2/day) (SR-2); no override lifts it",
        "check the prescription with the prescriber: a dose above the cap cannot be "
        "programmed",
    ),
    "CONCENTRATION_OUT_OF_RANGE": (
        "the label's concentration is outside what this bag option can hold for this drug "
        "(SR-2), e.g. a tenfold preparation error",
        "do not infuse this bag: return it to pharmacy to be prepared again",
    ),
    "DURATION_NOT_OFFERED": (
        "the drug library has no bag of this duration for this drug and label version (SR-2)",
        "use a bag duration the library offers (blinatumomab: 24, 48, 72, 96 or 168 h; "
        "docs/drug-library.md)",
    ),
    "PRESERVATIVE_WEIGHT_LIMIT": (
        "a preservative (benzyl alcohol) bag for a patient below its weight limit (SR-2)",
        "use a preservative-free bag (24 or 48 h) for this patient",
    ),
    "UNIT_REJECTED": (
        "a value in a unit the pump does not take: rates are keyed in mL/h only (SR-3); a "
        "fixed dose in ug/day is for patients of 45 kg or more, a dose in ug/m2/day for "
        "smaller patients",
        "key the rate in mL/h (--rate \"10 mL/h\"): convert first, e.g. 240 mL per 24 h "
        "is 10 mL/h; give the dose in the unit of the patient's class",
    ),
    "UNKNOWN_DRUG": (
        "the drug is not in the pump's drug library (or is misspelt)",
        "check the drug name against the library (docs/drug-library.md)",
    ),
    "LOCKOUT_ACTIVE": (
        "the pump is in its over-infusion lockout: no restart for 12 h after an "
        "OVER_INFUSION alarm or a reported overdose (SR-6, the label: restart no earlier "
        "than 12 h after the interruption); no role ends it early",
        "wait until the lockout ends (pumpctl status shows when); then a clinician "
        "acknowledges it (pumpctl override) or programs the correct dose",
    ),
    "NOT_AUTHORISED": (
        "this role may not give this command in the pump's state, or the frame's "
        "authentication did not verify (the key is not this pump's) (SR-11)",
        "after an alarm, resume and stop need the clinician: add --as clinician (the "
        "clinician key must be in --keys); if a signed command is refused, --keys / "
        "PUMP_KEYS is not the key file this pump was provisioned with (pumpctl keys show)",
    ),
    "BAD_INPUT": (
        "the request was malformed: a missing or extra argument, a value of the wrong type "
        "or out of its plausible range, or a confirm whose echo does not repeat the proposal "
        "exactly; nothing was changed",
        "check the values given (pumpctl COMMAND --help, docs/protocol.md) and send again",
    ),
    "INVALID_STATE": (
        "a well-formed command that the pump's current state does not take (e.g. program "
        "while running, start with no program)",
        "pumpctl status shows the state: e.g. stop before programming, program before start",
    ),
    "LABEL_CHECK_MISMATCH": (
        "the bag label's check code does not match its fields: a field or the code was "
        "mistyped, or the label was altered",
        "key the label again exactly as printed; if it still fails, return the label and "
        "the bag to pharmacy",
    ),
    "OVERRIDE_REQUIRED": (
        "the dose is under the hard cap but is not one of the label's dose steps (9 or 28 "
        "ug/day; 5 or 15 ug/m2/day): a soft limit (SR-2)",
        "check the prescription; if the dose is intended, a clinician accepts it with an "
        "override id (pumpctl rx --override ID), which is logged; a weight more than 10 % "
        "from the patient's previous bag: confirm the weighing, then a clinician keys the "
        "program with the weight confirmed (logged)",
    ),
    "SERVICE_MODE_REQUIRED": (
        "a basic rate/VTBI program (no drug library) outside service mode: the pump takes "
        "one only at the bench, with no patient attached",
        "program a patient from the bag label (pumpctl rx, pumpctl program FILE); at the "
        "bench, the service role first enters service mode (pumpctl service)",
    ),
    "SERVICE_MODE_ACTIVE": (
        "the pump is in service mode (no patient attached): a patient's program or command "
        "is refused there",
        "finish at the bench and leave service mode (pumpctl exit-service), then program the "
        "patient from the bag label",
    ),
    "HEIGHT_REQUIRED": (
        "the label gives no height: the pump checks every weight against a height, and BSA "
        "dosing needs both",
        "measure the patient's height and have the label printed with it (pumpctl rx "
        "--height-cm)",
    ),
    "MEASURES_IMPLAUSIBLE": (
        "the weight and height give a body mass index outside 5-80 kg/m2 (drug library, "
        "device policy): a slip in one of them, e.g. 4.5 kg keyed as 45 kg",
        "weigh and measure the patient again and have the label printed with the right "
        "values; do not infuse this bag",
    ),
    "BSA_MISMATCH": (
        "the BSA on the label differs by more than 5 % from the one the pump computes from "
        "the label's weight and height (Mosteller)",
        "do not infuse this bag: the dose was calculated for another body size; return it "
        "to pharmacy with the patient's weight and height",
    ),
    "PREMEDICATION_REQUIRED": (
        "the infusion was interrupted for at least the library's premedication threshold "
        "(4 h): a restart needs premedication and supervision first (SR-7)",
        "give the premedication, then a clinician confirms it (pumpctl premedicated) and "
        "resumes or starts",
    ),
    "BAG_EXPIRED": (
        "the bag has hung longer than its duration plus the library's tolerance since it "
        "first ran: it is not resumed",
        "stop and replace the bag with a fresh one from pharmacy (it is not flushed)",
    ),
    "DOSE_STEP_MISMATCH": (
        "the bag's dose is not the dose step the treatment plan has due today (e.g. a 28 "
        "ug/day bag on day 3 of cycle 1), or its plan position is not the pump's",
        "check the plan (pumpctl status shows cycle, day and step) and hang the bag made "
        "for today's step",
    ),
    "PLAN_REQUIRED": (
        "the bag label does not say which plan position it was made for (regimen, cycle, "
        "infusion days): the pump checks every bag against the treatment plan",
        "have the label printed with its plan position (pumpctl rx --regimen --cycle --day)",
    ),
    # --- the command door (pump/commands.py) ---------------------------------------------
    "UNKNOWN_COMMAND": (
        "the pump has no command of that name (in this firmware version)",
        "check the command (docs/protocol.md) and the firmware version (pumpctl ping)",
    ),
    "NO_PROPOSAL": (
        "a confirm with no proposal waiting: none was made, it was refused, or it was "
        "already confirmed; nothing was programmed",
        "program again: pumpctl program FILE proposes, shows the pump's echo, then confirms",
    ),
    "PROPOSAL_EXPIRED": (
        "the confirm came after the proposal's confirm window (120 s of wall-clock time); "
        "nothing was programmed (SR-3)",
        "program again (pumpctl program FILE) and confirm within the window",
    ),
    # --- the frame layer (pump/protocol.py) ----------------------------------------------
    "BAD_FRAME": (
        "a garbled frame: CRC wrong or missing, a byte outside printable ASCII, a bad "
        "sequence number, a line that stopped arriving, or a malformed authentication field",
        "pumpctl resends by itself; if it persists check the cable, the baud rate (115200) "
        "and that no other program writes to the port",
    ),
    "TOO_LONG": (
        "a line longer than the pump's largest frame (512 bytes), dropped whole",
        "send a shorter request (pumpctl refuses to send one: FrameTooLarge); check the line "
        "for noise",
    ),
    "REPLAYED": (
        "an authenticated frame whose counter is not above the last one the pump accepted: "
        "a replayed frame, or another host used the key since",
        "pumpctl re-signs with a fresh counter once by itself; if it persists, check that "
        "no other host is sending with the same key",
    ),
    "INTERNAL": (
        "a defect in the pump's firmware: it caught an unexpected exception (or a reply "
        "too long to send); nothing was executed",
        "report it with the journal (pumpctl log) and the command given; delivery goes on",
    ),
    # --- alarms (pump/codes.py ALARMS) ---------------------------------------------------
    "OVER_INFUSION": (
        "the safety monitor counted more volume delivered than the program allows (SR-5): "
        "motor stopped, clamp closed, restart locked out for 12 h (SR-6)",
        "stop the infusion and tell the prescriber: the patient may have had an overdose; "
        "a clinician may restart after the lockout or end it early (pumpctl override)",
    ),
    "FREE_FLOW": (
        "the cassette came out (or the door opened) with the line's clamp open: flow the "
        "pump does not control; the pump closed its clamp and stopped",
        "close the line's clamp, check the patient, reseat the cassette; a clinician "
        "resumes (pumpctl resume --as clinician)",
    ),
    "UNDER_INFUSION": (
        "the safety monitor counted less volume delivered than the program (a slipping "
        "cassette or lost rotation pulses); delivery stopped",
        "check the cassette and the line; a clinician resumes (pumpctl resume --as "
        "clinician); if it recurs, replace the pump",
    ),
    "OCCLUSION": (
        "downstream pressure too high: the line is blocked (kinked, clamped, clotted); "
        "delivery stopped and the pressure relieved",
        "find and clear the blockage without flushing the line; a clinician resumes "
        "(pumpctl resume --as clinician)",
    ),
    "AIR_IN_LINE": (
        "air detected in the line; delivery stopped",
        "remove the air as your protocol says (never into the patient); a clinician "
        "resumes (pumpctl resume --as clinician)",
    ),
    "DOOR_OPEN": (
        "the cassette door is open or the cassette is out: delivery stopped (or, as a "
        "refusal: the pump will not start with the door open)",
        "close the door with the cassette in place; after an alarm a clinician resumes "
        "(pumpctl resume --as clinician)",
    ),
    "RESERVOIR_LOW": (
        "the bag is nearly empty (a reminder; delivery goes on)",
        "prepare the next bag as the treatment plan says",
    ),
    "INFUSION_COMPLETE": (
        "the volume to be infused has been delivered and the pump stopped (SR-4; no KVO "
        "for this drug)",
        "change the bag as the treatment plan says; do not flush the line",
    ),
    "LOW_BATTERY": (
        "the battery is low (a reminder; delivery goes on)",
        "replace or charge the battery soon",
    ),
    "SENSOR_FAULT": (
        "a sensor the safety monitor relies on failed (no rotation pulse while the motor "
        "runs) or the monitor's own copy of the program failed its check; delivery stopped",
        "replace the pump; service reads the journal (pumpctl log)",
    ),
    "MOTOR_FAULT": (
        "the motor driver reported a fault (stall, over-current); delivery stopped",
        "check that the cassette is seated; a clinician resumes; if it recurs, replace the "
        "pump",
    ),
    "PAUSE_TIMEOUT": (
        "the pump has been paused longer than the drug library's reminder time (SR-14)",
        "resume (pumpctl resume) or stop the infusion",
    ),
    "WATCHDOG_RESET": (
        "the firmware restarted after a watchdog reset while delivering; delivery stopped "
        "with the volume kept (SR-9)",
        "check the status; a clinician resumes (pumpctl resume --as clinician); report it "
        "with the journal (pumpctl log)",
    ),
    "STORAGE_FAULT": (
        "at boot a stored record (a journal entry, the key store or the calibration) was "
        "found corrupt, or the power failed while one was written; the pump kept the safest "
        "reading (the intact copy, never an unlatched stop) and wrote the copy back "
        "(docs/reliability.md)",
        "a clinician checks the status and program and resumes (pumpctl resume --as "
        "clinician), or overrides a lockout; service saves the journal (pumpctl log) and, if "
        "it recurs, replaces the pump; key store locked (STATUS key_store): reset the key "
        "files at the bench and provision again",
    ),
}

# Which group each code belongs to (the order docs/codes.md shows them in).
KINDS: dict[str, tuple[str, ...]] = {
    "program rejection": (
        "RATE_VOLUME_MISMATCH", "DOSE_RATE_MISMATCH", "DOSE_ABOVE_LIMIT",
        "CONCENTRATION_OUT_OF_RANGE", "DURATION_NOT_OFFERED", "PRESERVATIVE_WEIGHT_LIMIT",
        "UNIT_REJECTED", "UNKNOWN_DRUG", "LOCKOUT_ACTIVE", "NOT_AUTHORISED", "BAD_INPUT",
        "INVALID_STATE", "LABEL_CHECK_MISMATCH", "OVERRIDE_REQUIRED", "SERVICE_MODE_REQUIRED",
        "SERVICE_MODE_ACTIVE", "HEIGHT_REQUIRED", "MEASURES_IMPLAUSIBLE", "BSA_MISMATCH",
        "PREMEDICATION_REQUIRED", "BAG_EXPIRED", "DOSE_STEP_MISMATCH", "PLAN_REQUIRED"),
    "command": ("UNKNOWN_COMMAND", "NO_PROPOSAL", "PROPOSAL_EXPIRED"),
    "frame": ("BAD_FRAME", "TOO_LONG", "REPLAYED", "INTERNAL"),
    "alarm": (
        "OVER_INFUSION", "FREE_FLOW", "UNDER_INFUSION", "OCCLUSION", "AIR_IN_LINE",
        "DOOR_OPEN", "RESERVOIR_LOW", "INFUSION_COMPLETE", "LOW_BATTERY", "SENSOR_FAULT",
        "MOTOR_FAULT", "PAUSE_TIMEOUT", "WATCHDOG_RESET", "STORAGE_FAULT"),
}

DOC = "docs/codes.md"


def meaning(code: str) -> str:
    """What `code` means, or a sentence saying this version does not know it."""
    row = REFUSALS.get(code)
    if row is None:
        return f"a code this version of the host tools does not know (see {DOC})"
    return row[0]


def next_step(code: str) -> str:
    """What to do next after `code` ('' for an unknown code)."""
    row = REFUSALS.get(code)
    return "" if row is None else row[1]


def explain(code: str) -> str:
    """'CODE: meaning. What to do: next step.' for any code (unknown ones say so)."""
    step = next_step(code)
    text = f"{code}: {meaning(code)}."
    return text + (f" What to do: {step}." if step else "")


def markdown() -> str:
    """docs/codes.md: the whole table, grouped by kind."""
    out = [
        "# Codes: what each refusal and alarm means, and what to do next",
        "",
        "Generated from `host/refusals.py`, the one table: `pumpctl` prints a refusal with it,",
        "`pumpctl explain CODE` shows a row, the simulator's report explains rejections and",
        "alarms with it. Regenerate with `python -m host.refusals > docs/codes.md`;",
        "`tests/test_refusals.py` fails when this page and the table differ.",
    ]
    titles = {"program rejection": "Program rejections (`pump/codes.py`)",
              "command": "Command refusals (`pump/commands.py`)",
              "frame": "Frame errors (`pump/protocol.py`)",
              "alarm": "Alarms (`pump/codes.py`)"}
    for kind, codes in KINDS.items():
        out += ["", f"## {titles[kind]}", "", "| code | what it means | what to do next |",
                "|---|---|---|"]
        for c in codes:
            m, n = REFUSALS[c]
            out.append(f"| `{c}` | {m} | {n} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
