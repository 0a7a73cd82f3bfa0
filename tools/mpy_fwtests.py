"""Run firmware unit-test modules under MicroPython and report one JSON line per test.

Usage (normally driven by tests/test_micropython.py through tools/mpy_run.mjs):

    node tools/mpy_run.mjs --mount firmware:/flash --mount tests/fw:/fw \
        --mount plant:/lib/plant --path /flash --path /fw --path /lib \
        tools/mpy_fwtests.py test_states [more modules...]

For each module named on argv: import it, run every top-level callable named ``test_*``
(plain functions with asserts, no fixtures), and print one JSON line per test:

    {"kind": "test", "module": ..., "test": ..., "ok": bool, "skipped": reason-or-null,
     "error": traceback-or-"", "ms": duration}

A module whose import fails gives one line {"kind": "import", "ok": false, ...}. A module-level
``MPY_SKIP = {"test_name": "reason"}`` marks tests as CPython-only: they are reported as
skipped and not run. With `-x` first, the run stops at the first failing test (as pytest's
-x; bench/bench_mutation.py uses it). The last line is {"kind": "summary", ...}. The exit
code is always 0: the pytest side judges. Anything a test prints goes to stdout before its
result line.

Runs on MicroPython and on CPython alike (no typing, dataclasses or inspect).
"""

import gc
import io
import json
import sys

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


def format_exception(exc):
    """The traceback of ``exc`` as text, on MicroPython or CPython."""
    if hasattr(sys, "print_exception"):
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        return buf.getvalue()
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def emit(record):
    print(json.dumps(record))


def import_module(name):
    mod = __import__(name)
    for part in name.split(".")[1:]:
        mod = getattr(mod, part)
    return mod


def test_names(mod):
    names = []
    for name in dir(mod):
        if name.startswith("test_") and callable(getattr(mod, name)):
            names.append(name)
    names.sort()
    return names


def run_module(name, totals):
    try:
        mod = import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported, judged by pytest
        emit({"kind": "import", "module": name, "test": None, "ok": False, "skipped": None,
              "error": format_exception(exc), "ms": 0})
        totals["failed"] += 1
        return
    skips = getattr(mod, "MPY_SKIP", None) or {}
    for test in test_names(mod):
        if test in skips:
            emit({"kind": "test", "module": name, "test": test, "ok": True,
                  "skipped": str(skips[test]) or "MPY_SKIP", "error": "", "ms": 0})
            totals["skipped"] += 1
            continue
        gc.enable()  # a test that disabled the collector must not starve the next one
        gc.collect()
        t0 = ticks_ms()
        ok = True
        error = ""
        try:
            getattr(mod, test)()
        except Exception as exc:  # noqa: BLE001 - reported, judged by pytest
            ok = False
            error = format_exception(exc)
        emit({"kind": "test", "module": name, "test": test, "ok": ok, "skipped": None,
              "error": error, "ms": ticks_diff(ticks_ms(), t0)})
        totals["passed" if ok else "failed"] += 1
        if not ok and totals["first_failure"]:
            return


def main(modules):
    totals = {"passed": 0, "failed": 0, "skipped": 0, "first_failure": False}
    if modules and modules[0] == "-x":
        totals["first_failure"] = True
        modules = modules[1:]
    for name in modules:
        run_module(name, totals)
        if totals["failed"] and totals["first_failure"]:
            break
    impl = sys.implementation
    emit({"kind": "summary", "implementation": impl.name,
          "version": ".".join(str(v) for v in impl.version[:3]), "passed": totals["passed"],
          "failed": totals["failed"], "skipped": totals["skipped"]})


main(sys.argv[1:])
