"""One role table (SR-11): firmware/pump/roles.py is the only place that says who may do what.
docs/protocol.md shows it as the firmware has it, and no other firmware module compares roles.
(That every command, role and state is answered as the table says is tests/fw/test_commands.py,
on both interpreters.)"""

from __future__ import annotations

import re
from pathlib import Path

from pump import codes, roles
from pump.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "protocol.md"
BEGIN = "<!-- role table: generated from firmware/pump/roles.py and firmware/pump/commands.py -->"
END = "<!-- end of role table -->"
BEGIN_SVC = "<!-- service-mode role table: generated from firmware/pump/roles.py -->"
END_SVC = "<!-- end of service-mode role table -->"


def _cell(action: str, role: int, service: bool = False) -> str:
    yes = [st for st in codes.STATES if roles.allows(action, st, role, service)]
    no = [st for st in codes.STATES if st not in yes]
    if not no:
        return "yes"
    if not yes:
        return "no"
    if len(no) <= len(yes):
        return "yes, except in " + ", ".join(no)
    return "only in " + ", ".join(yes)


def render(service: bool = False) -> str:
    """The role table as docs/protocol.md shows it: one row per command, in COMMANDS order
    (`service`: the rows service mode changes)."""
    lines = ["| command | action | patient | clinician | service |", "|---|---|---|---|---|"]
    for name, spec in COMMANDS.items():
        if service and spec[0] not in roles.SERVICE_MODE:
            continue
        cells = " | ".join(_cell(spec[0], role, service) for role in roles.ANYONE)
        lines.append(f"| `{name}` | {spec[0]} | {cells} |")
    return "\n".join(lines)


def test_sr11_protocol_doc_shows_the_firmware_role_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    for begin, end, service in ((BEGIN, END, False), (BEGIN_SVC, END_SVC, True)):
        assert begin in text and end in text, f"{DOC}: the role table markers are missing"
        shown = text[text.index(begin) + len(begin):text.index(end)].strip()
        want = render(service)
        assert shown == want, f"{DOC}: the role table differs from the firmware's; it should " \
                              f"read:\n{begin}\n{want}\n{end}"


def test_sr11_every_command_has_a_row_in_the_role_table() -> None:
    for name, spec in COMMANDS.items():
        assert spec[0] in roles.TABLE, name
        assert roles.roles_for(spec[0], codes.IDLE), name


def test_sr11_no_firmware_module_but_the_role_table_compares_roles() -> None:
    """Roles appear elsewhere only as values handed on: the slot -> role map of
    authentication (auth.py) and the role of an unauthenticated frame (protocol.py)."""
    names = re.compile(r"\b(PATIENT|CLINICIAN|SERVICE_ROLE)\b|\brole\s*(==|!=|<|>|in\b)")
    allowed = {"roles.py", "codes.py"}
    handed_on = {"auth.py": r'ROLE_OF = \{"c": CLINICIAN, "s": SERVICE_ROLE\}',
                 "protocol.py": r"role = PATIENT$"}
    for path in sorted((REPO / "firmware").rglob("*.py")):
        if path.name in allowed:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if not names.search(code) or code.lstrip().startswith(("from ", "import ")):
                continue
            ok = path.name in handed_on and re.search(handed_on[path.name], code.strip())
            assert ok, f"{path.relative_to(REPO)}:{n}: a role comparison outside pump/roles.py: " \
                       f"{line.strip()}"
