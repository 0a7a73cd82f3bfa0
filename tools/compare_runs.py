"""Compare two folders of simulator runs (`pumpsim suite --out`, `pumpsim run --out`): per
scenario, result.json less its wall time and file paths, and the bytes of trace.csv,
journal.bin and fault.csv. How a change that must not alter behaviour (a speed-up, another
interpreter, a refactor of the firmware) is shown to alter none.

    python tools/compare_runs.py NEW_DIR BASE_DIR

Prints one line per difference and the count; exit 0 when there is none, 1 otherwise, 2 for
a folder that holds no run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

VOLATILE = {"wall_s", "trace_file", "journal_file", "fault_file", "plot_file",
            "fault_plot_file", "links", "plot"}
FILES = ("trace.csv", "journal.bin", "fault.csv")


def runs(folder: Path) -> dict[str, Path]:
    """Scenario name -> its run folder (one holding a result.json)."""
    return {p.parent.name: p.parent for p in sorted(folder.glob("*/result.json"))}


def differences(new: Path, base: Path) -> list[str]:
    a, b = runs(base), runs(new)
    out = ["missing in %s: %s" % (new, n) for n in sorted(set(a) - set(b))]
    out += ["not in %s: %s" % (base, n) for n in sorted(set(b) - set(a))]
    for name in sorted(set(a) & set(b)):
        ra = json.loads((a[name] / "result.json").read_text())
        rb = json.loads((b[name] / "result.json").read_text())
        for k in sorted((set(ra) | set(rb)) - VOLATILE):
            if ra.get(k) != rb.get(k):
                out.append("%s: result %s: %s -> %s" % (name, k, str(ra.get(k))[:120],
                                                        str(rb.get(k))[:120]))
        for f in FILES:
            fa, fb = a[name] / f, b[name] / f
            if fa.exists() != fb.exists():
                out.append("%s: %s only in %s" % (name, f, base if fa.exists() else new))
            elif fa.exists() and fa.read_bytes() != fb.read_bytes():
                out.append("%s: %s differs" % (name, f))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python tools/compare_runs.py NEW_DIR BASE_DIR", file=sys.stderr)
        return 2
    new, base = Path(argv[1]), Path(argv[2])
    for d in (new, base):
        if not runs(d):
            print("compare_runs: %s: no run folder (DIR/<scenario>/result.json)" % d,
                  file=sys.stderr)
            return 2
    diffs = differences(new, base)
    for d in diffs:
        print(d)
    print("%d scenarios compared, %d differences" % (len(runs(base)), len(diffs)))
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
