"""The same scripted run gives a byte-identical trace and journal on CPython and on real
MicroPython (integer-only control path: docs/firmware.md)."""
import subprocess
import sys

from test_micropython import FW_TESTS_DIR, REPO, mpy_command

SCRIPT = FW_TESTS_DIR / "scripted_run.py"


def test_scripted_run_identical_on_cpython_and_micropython():
    env_path = f"{REPO / 'firmware'}:{FW_TESTS_DIR}:{REPO}"
    cpy = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, check=True,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, timeout=300)
    mpy = subprocess.run(mpy_command(SCRIPT), capture_output=True, timeout=300, check=False)
    assert mpy.returncode == 0, mpy.stderr.decode()
    lines = cpy.stdout.decode().splitlines()
    # the run did what the script says: paused, resumed, completed at the VTBI
    assert any(line.endswith("state PAUSED 5000000") for line in lines)
    assert lines[-1] == "final COMPLETE 12000000"
    assert sum(1 for line in lines if line.startswith("seg ")) > 100
    assert mpy.stdout == cpy.stdout
