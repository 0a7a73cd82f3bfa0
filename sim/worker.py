"""The simulator on another Python (PyPy): `pumpsim run --interpreter` and `pumpsim study
--interpreter` hand their runs to a child process running this module on that interpreter,
with this checkout's simulator and firmware on its path.

The child needs nothing but the simulator, the firmware and the standard library of Python
3.9: no tomllib (a scenario comes as its parsed TOML tables), no numpy (a study's runs come
sampled). Two modes:

    python -m sim.worker < request.json       # one scenario: {"data", "path", "out"}
    python -m sim.worker --serve              # study runs: a JSON line of specs in, a
                                              # JSON line of rows (and CPU s) out, until EOF

An interpreter is a runtime for the simulator only because it gives the same results,
traces and journals as CPython, the reference: tests/sim/test_interpreters.py checks it on
every bundled scenario and on a study's table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

from sim.engine import SimError

FALSE_ALARMS = ("OVER_INFUSION", "UNDER_INFUSION", "OCCLUSION", "SENSOR_FAULT", "FREE_FLOW")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ROW_KEYS = ("part", "cell", "rate", "g", "i", "seed", "onset_h")


# --- in the child (any interpreter) ----------------------------------------------------------

def run_spec(sp: dict[str, Any]) -> dict[str, Any]:
    """Run one sampled study scenario (sim.study.spec); return the figures the study needs
    (a row)."""
    from sim import runner, scenario

    sc = scenario.parse(sp["scenario"])
    sim = runner.Sim(sc, storage="memory")
    try:
        sim.run()
        p = sim.plant
        alarms = [(a["t_s"], a["code"]) for a in sim.alarms]
        row: dict[str, Any] = {k: sp[k] for k in _ROW_KEYS}
        row["sim_ms"] = sim.now
        row["run_ms"] = sim.run_ms if sim.run_since is None \
            else sim.run_ms + sim.now - sim.run_since
        row["final_state"] = sim.controller.state if sim.controller is not None else "OFF"
        row["alarms"] = sorted({c for _, c in alarms})
        row["excess_ml"] = max(0.0, sim.excess_ul) / 1000.0
        row["fault_excess_ml"] = max(0.0, sim.fault_excess_ul) / 1000.0
        # bolus: what was released, or is still held in the line and would be on reopening
        row["bolus_ml"] = max(p.bolus_ul, p.stored_ul) / 1000.0
        code = sp.get("code")
        if code is not None:
            applied = sim.faults_applied
            onset_s = applied[0]["t_s"] if applied else sp["onset_h"] * 3600.0
            hits = [t for t, c in alarms if c == code and t >= onset_s]
            row["detected"] = bool(hits)
            row["latency_s"] = hits[0] - onset_s if hits else None
            row["early"] = sorted({c for t, c in alarms if t < onset_s and c in FALSE_ALARMS})
        else:
            row["partial"] = sp["partial"]
            row["false"] = sorted({c for _, c in alarms if c in FALSE_ALARMS})
    finally:
        sim.close()
    return row


def run_spec_kept(sp: dict[str, Any]) -> dict[str, Any]:
    """run_spec, where a run that crashes is a failed run, kept as a row with its error."""
    try:
        return run_spec(sp)
    except Exception as e:  # noqa: BLE001 - the study counts it as a failure
        row = {k: sp[k] for k in _ROW_KEYS}
        row["error"] = "%s: %s" % (type(e).__name__, e)
        return row


def _one() -> int:
    from sim import runner, scenario

    req = json.load(sys.stdin)
    sc = scenario.parse(req["data"], req.get("path"))
    res = runner.run_scenario(sc, req.get("out"), req.get("storage", "memory"))
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


def _serve() -> int:
    for line in sys.stdin:
        c0 = time.process_time()
        rows = [run_spec_kept(sp) for sp in json.loads(line)["specs"]]
        sys.stdout.write(json.dumps({"rows": rows, "cpu_s": time.process_time() - c0}) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    return _serve() if argv[1:] == ["--serve"] else _one()


# --- in the parent (CPython) -------------------------------------------------------------------

def executable(interpreter: str) -> str:
    """The interpreter's path, or a SimError that says how to get PyPy."""
    exe = shutil.which(interpreter)
    if exe is None:
        raise SimError("%s: no such interpreter on PATH (PyPy on Debian: apt-get install "
                       "pypy3)" % interpreter)
    return exe


def _env() -> dict[str, str]:
    paths = [REPO, os.path.join(REPO, "firmware")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def run_on(interpreter: str, data: dict[str, Any], path: str | None = None,
           out_dir: str | None = None, storage: str = "memory") -> dict[str, Any]:
    """runner.run_scenario on `interpreter` (a command, e.g. pypy3) in a child process;
    `data`: the TOML tables of a scenario the caller has validated (scenario.from_tables:
    a bad one is refused with its message before any interpreter starts)."""
    exe = executable(interpreter)
    try:
        req = json.dumps({"data": data, "path": path, "out": out_dir, "storage": storage})
    except (TypeError, ValueError) as e:
        raise SimError("%s: cannot hand the scenario to %s: %s"
                       % (path or "<string>", interpreter, e)) from None
    p = subprocess.run([exe, "-m", "sim.worker"], input=req, capture_output=True, text=True,
                       env=_env(), check=False)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["exit status %d" % p.returncode])[-1]
        raise SimError("%s could not run %s: %s" % (interpreter, path or "the scenario",
                                                    last))
    res: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return res


_SERVERS: dict[str, subprocess.Popen[str]] = {}
_LOCK = threading.Lock()


def run_specs_on(interpreter: str, specs: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], float]:
    """Study runs on `interpreter`: (rows, CPU seconds the child spent). The child (`--serve`)
    is kept for this process's next batches, so its JIT stays warm; one that died is
    started again once, then its error is raised."""
    with _LOCK:
        for attempt in (1, 2):
            p = _SERVERS.get(interpreter)
            if p is None or p.poll() is not None:
                p = subprocess.Popen([executable(interpreter), "-m", "sim.worker", "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=_env())
                _SERVERS[interpreter] = p
            assert p.stdin is not None and p.stdout is not None
            try:
                p.stdin.write(json.dumps({"specs": specs}) + "\n")
                p.stdin.flush()
                line = p.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line:
                got = json.loads(line)
                return got["rows"], float(got["cpu_s"])
            p.kill()
            p.wait()
            del _SERVERS[interpreter]
            if attempt == 2:
                raise SimError("%s stopped while running a batch (exit status %s; its error "
                               "is on this process's stderr)" % (interpreter, p.returncode))
    raise AssertionError("unreachable")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
