"""The refusal table (host/refusals.py, docs/codes.md): every code the pump can answer or raise
has its meaning in words and what to do next, and nothing else is in it."""

from __future__ import annotations

import re
from pathlib import Path

from host import refusals
from pump import codes

REPO = Path(__file__).resolve().parents[1]
# The firmware modules that define the codes a reply or an alarm can carry.
CODE_MODULES = ("codes.py", "commands.py", "protocol.py")


def firmware_codes() -> set[str]:
    """Every module-level `NAME = "NAME"` string constant of those modules, less the states
    (a state is not a refusal)."""
    found: set[str] = set()
    for name in CODE_MODULES:
        text = (REPO / "firmware" / "pump" / name).read_text(encoding="utf-8")
        for m in re.finditer(r'^([A-Z][A-Z_]+) = "([A-Z][A-Z_]+)"', text, re.M):
            if m.group(1) == m.group(2):
                found.add(m.group(2))
    return found - set(codes.STATES)


def test_sr13_every_code_the_firmware_defines_has_a_row() -> None:
    fw = firmware_codes()
    assert set(codes.REJECTIONS) <= fw and set(a for a in codes.ALARMS if a) <= fw
    missing = sorted(fw - set(refusals.REFUSALS))
    assert not missing, f"codes with no meaning in host/refusals.py: {missing}"
    stale = sorted(set(refusals.REFUSALS) - fw)
    assert not stale, f"rows for codes the firmware does not define: {stale}"


def test_every_row_says_what_it_means_and_what_to_do() -> None:
    grouped = [c for cs in refusals.KINDS.values() for c in cs]
    assert sorted(grouped) == sorted(refusals.REFUSALS) and len(set(grouped)) == len(grouped)
    for code, (meaning, step) in refusals.REFUSALS.items():
        assert len(meaning) > 20 and len(step) > 20, code
        assert "|" not in meaning + step, code         # one Markdown table cell each
        text = refusals.explain(code)
        assert text.startswith(f"{code}: {meaning}.") and f"What to do: {step}." in text


def test_unknown_code_is_explained_as_unknown() -> None:
    assert "does not know" in refusals.explain("WHAT_IS_THIS")
    assert refusals.next_step("WHAT_IS_THIS") == ""


def test_docs_codes_page_is_the_table() -> None:
    page = (REPO / refusals.DOC).read_text(encoding="utf-8")
    assert page == refusals.markdown(), \
        "docs/codes.md is stale: python -m host.refusals > docs/codes.md"
