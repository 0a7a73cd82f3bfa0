"""One scenario on this interpreter, for `pumpsim run --interpreter` (runner.run_on): a JSON
request on stdin, {"data": the scenario's TOML tables, "path": its file, "out": DIR or null},
and the result (runner.run_scenario's dict) as one JSON line on stdout. The tables come
parsed, so the interpreter needs no tomllib: the simulator and the firmware run here on PyPy
3.9 as well as on CPython, with identical results (tests/sim/test_interpreters.py).

    python -m sim.worker < request.json
"""

from __future__ import annotations

import json
import sys

from sim import runner, scenario


def main() -> int:
    req = json.load(sys.stdin)
    sc = scenario.parse(req["data"], req.get("path"))
    res = runner.run_scenario(sc, req.get("out"), req.get("storage", "memory"))
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
