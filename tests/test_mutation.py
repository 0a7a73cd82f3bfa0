"""The mutation-testing driver (bench/bench_mutation.py, docs/mutation.md) on the bugs issue 15
named: each hand-made, plausible, safety-relevant bug (the monitor losing its books across a
pause, the write-ahead reservation after the motor started, a widened rate/volume tolerance, a
library limit's boundary, a plain subtraction in place of ticks_diff at every time comparison
in the firmware) is applied alone to a private copy of the firmware and must fail the tests
that claim to catch it. Also: the equivalent mutants docs/mutation.md lists still name lines
of the firmware, so the list cannot silently go stale."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _driver():
    spec = importlib.util.spec_from_file_location("bench_mutation",
                                                  REPO / "bench" / "bench_mutation.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_mutation"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_issue15_each_named_bug_fails_the_tests_that_claim_it(tmp_path: Path) -> None:
    bm = _driver()
    root = bm.make_copy(tmp_path)
    lines: list[str] = []
    got = bm.run_named(root, lines.append)
    assert len(got) == len(bm.NAMED) >= 20
    missed = [m.operator for m in got if m.outcome == "survived"]
    assert missed == [], "\n".join(lines)
    # the copy is back as it was
    for _, module, old, _, _ in bm.NAMED:
        assert old in (root / "firmware" / "pump" / (module + ".py")).read_text()


def test_mutation_doc_equivalents_name_lines_of_the_firmware() -> None:
    bm = _driver()
    listed = bm.load_equivalents()
    assert listed, "docs/mutation.md lists no equivalent mutant"
    for module, original, mutated in listed:
        src = (REPO / "firmware" / "pump" / (module + ".py")).read_text()
        lines = {ln.strip() for ln in src.splitlines()}
        for part in original.split(" / "):
            assert part in lines, (module, part)
        assert mutated != original
