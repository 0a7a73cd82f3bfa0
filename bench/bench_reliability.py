"""THE RELIABILITY CAMPAIGN (issue 10): power cuts, fuzzed frames on CPython and on real
MicroPython, replay and role-escalation attacks, bit flips in every stored file, and a burst
and a flood into the virtual board over its pty. Prints the table of docs/reliability.md
(and writes it to bench/out/reliability.md); judges nothing, but every row says what held.

    .venv/bin/python bench/bench_reliability.py                 # the whole campaign
    .venv/bin/python bench/bench_reliability.py --quick         # a small sample of each row
    .venv/bin/python bench/bench_reliability.py --only power,vboard

Sized for two shared cores: at most two worker processes at a time; the whole campaign
takes about half an hour on this machine. Rows: see ROWS below and docs/reliability.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware"
FWT = REPO / "tests" / "fw"
BENCH = REPO / "bench"
OUT = BENCH / "out"
ENV = dict(os.environ, PYTHONPATH=f"{FW}:{FWT}")
PY = sys.executable
RATES = (600, 10000, 100000)


def _py(script: str, *args: object) -> dict[str, Any]:
    out = subprocess.run([PY, str(BENCH / script), *map(str, args)], env=ENV,
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _py_lines(script: str, *args: object) -> list[dict[str, Any]]:
    out = subprocess.run([PY, str(BENCH / script), *map(str, args)], env=ENV,
                         capture_output=True, text=True, check=True, cwd=REPO)
    return [json.loads(x) for x in out.stdout.strip().splitlines() if x.startswith("{")]


def _mpy(script: str, *args: object) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not on PATH: the MicroPython rows need it (make setup)")
    cmd = [node, str(REPO / "tools" / "mpy_run.mjs"), "--mount", f"{FW}:/flash",
           "--mount", f"{FWT}:/fw", "--mount", f"{REPO / 'plant'}:/lib/plant",
           "--path", "/flash", "--path", "/fw", "--path", "/lib",
           str(BENCH / script), *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _two(jobs: list[tuple]) -> list[Any]:
    """Run (fn, args...) jobs two at a time (the machine's two shared cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda j: j[0](*j[1:]), jobs))


# --- rows -------------------------------------------------------------------------------------

def power(quick: bool) -> list[dict[str, Any]]:
    cuts = 60 if quick else 3400
    res = _two([(_py, "rel_power.py", r, cuts, 1 + i) for i, r in enumerate(RATES)])
    rows = []
    total = sum(r["cuts"] for r in res)
    for r in res:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["by_state"].items()))
        rows.append({
            "row": f"power cuts at {r['rate_ul_per_h'] / 1000:g} mL/h",
            "tried": f"{r['cuts']} cuts at random instants ({r['in_write']} inside a write, "
                     f"{r['torn_entries']} tore a journal entry); state at the cut: {states}; "
                     f"{r['programs']} programs, {r['completes']} reached COMPLETE",
            "held": f"{r['violations']} violations; volume lost a cut: max "
                    f"{r['max_loss_nl'] / 1000:.1f} µL, mean {r['mean_loss_nl'] / 1000:.1f} µL "
                    f"(bound 62.5 µL: a stroke and a pulse), min {r['min_loss_nl'] / 1000:.2f} "
                    f"µL (never re-delivered); worst shortfall at COMPLETE beyond what the cuts "
                    f"cost {r['worst_short_at_complete_nl']} nL; no stop unlatched",
            "command": f"PYTHONPATH=firmware:tests/fw python bench/rel_power.py "
                       f"{r['rate_ul_per_h']} {r['cuts']}",
            "raw": r})
    rows.append({"row": "power cuts, all rates", "tried": f"{total} cuts", "held":
                 f"{sum(r['violations'] for r in res)} violations", "command":
                 "bench/bench_reliability.py --only power", "raw": {}})
    return rows


def fuzz(quick: bool) -> list[dict[str, Any]]:
    n = 20000 if quick else 500000
    m = 2000 if quick else 25000
    res = _two([(_py, "rel_fuzz.py", n, 11), (_py, "rel_fuzz.py", n, 12)])
    mres = _two([(_mpy, "rel_fuzz.py", m, 21), (_mpy, "rel_fuzz.py", m, 22)])
    rows = []
    for name, rs, script in (("CPython", res, f"python bench/rel_fuzz.py {n} SEED"),
                             ("MicroPython 1.27 (WebAssembly)", mres,
                              f"node tools/mpy_run.mjs --mount firmware:/flash --mount "
                              f"tests/fw:/fw --mount plant:/lib/plant --path /flash --path /fw "
                              f"--path /lib bench/rel_fuzz.py {m} SEED")):
        tot = {k: sum(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], int)}
        rows.append({
            "row": f"fuzzed frames, {name}",
            "tried": f"{tot['frames']} frames into a running pump: {tot['random']} random "
                     f"byte strings, {tot['mutated']} mutated frames, {tot['hostile']} CRC-valid "
                     f"frames with hostile JSON, {tot['bad_tag']} forged tags, "
                     f"{tot['legit']} legitimate clinician frames in between",
            "held": f"{tot['escapes']} escapes (unauthorised change, replay run twice, OK to "
                    f"an escalation), {tot['raised']} exceptions, {tot['internal']} INTERNAL "
                    f"errors, {tot['bad_output']} malformed output frames",
            "command": script, "raw": tot})
        rows.append({
            "row": f"replay and role escalation, {name}",
            "tried": f"{tot['replay']} replays of accepted privileged frames, {tot['ahead']} "
                     f"valid frames with the counter pushed past the window (one frame "
                     f"exhausting it), {tot['escalation']} commands above the frame's role (no "
                     f"key, the other role's key, a key signing for the other slot)",
            "held": f"{tot['escapes']} succeeded; the highest counter never moved by more than the "
                    f"window in one frame",
            "command": script, "raw": {}})
    return rows


def flips(quick: bool) -> list[dict[str, Any]]:
    cap = 20 if quick else 100
    lines = _py_lines("rel_flips.py", cap)
    rows = []
    for r in lines:
        rows.append({
            "row": f"bit flips in {r['file']}",
            "tried": f"every one of its {r['flips']} bits ({r['bytes']} bytes) flipped, one at "
                     f"a time, after a run latched in {r['state']}; journal ring of {cap} "
                     "slots a copy",
            "held": f"{r['held']} of {r['flips']} boots kept the lockout, program, volume, keys "
                    f"and calibration; STORAGE_FAULT raised in {r['storage_fault']}",
            "command": f"PYTHONPATH=firmware:tests/fw python bench/rel_flips.py {cap}",
            "raw": r})
    return rows


# --- the virtual board over its pty --------------------------------------------------------------

def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its children have used."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(parts[i]) for i in (11, 12, 13, 14)) / tick


def _idle_cpu(pid: int, seconds: float = 10.0) -> float:
    """CPU seconds a wall second over `seconds` of quiet."""
    a = _cpu_s(pid)
    time.sleep(seconds)
    return (_cpu_s(pid) - a) / seconds


def _frame(seq: int, cmd: str, args: str = "{}") -> bytes:
    body = f"{seq} {cmd} {args}".encode()
    return body + b" %08x\n" % zlib.crc32(body)


class _Reader(threading.Thread):
    """Drains the board's UART (a client that reads), counting reply lines."""

    def __init__(self, ser: Any) -> None:
        super().__init__(daemon=True)
        self.ser = ser
        self.lines = 0
        self.stop = False
        self.buf = b""

    def run(self) -> None:
        while not self.stop:
            try:
                data = self.ser.read(65536)
            except Exception:  # noqa: BLE001 - the port closed under us: done
                return
            self.buf = (self.buf + data)[-4096:]
            self.lines += data.count(b"\n")


def _ping(ser: Any, reader: _Reader, seq: int, timeout: float = 300.0) -> float:
    """Seconds until the board answers a PING frame, or -1."""
    want = f"{seq} OK".encode()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ser.write(b"\n" + _frame(seq, "PING"))
        t1 = time.monotonic()
        while time.monotonic() - t1 < 0.5:
            if want in reader.buf:
                return time.monotonic() - t0
            time.sleep(0.01)
    return -1.0


def _answer(ser: Any, reader: _Reader, raw: bytes, prefix: bytes,
            timeout: float = 5.0) -> bytes:
    """Send raw on a fresh line; the reply line starting with prefix (b"" when none)."""
    reader.buf = b""
    ser.write(b"\n" + raw)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        buf = b"\n" + reader.buf
        i = buf.find(b"\n" + prefix)
        if i >= 0:
            j = buf.find(b"\n", i + 1)
            if j > 0:
                return buf[i + 1:j]
        time.sleep(0.01)
    return b""


def _status(ser: Any, reader: _Reader) -> str:
    line = _answer(ser, reader, _frame(777000, "STATUS"), b"777000 OK ")
    return line[len(b"777000 OK "):line.rfind(b" ")].decode()


def _rig(rig: Any, cmd: str, timeout: float = 30.0) -> str:
    """One rig command's reply line (a busy board may take a while to get to it)."""
    rig.reset_input_buffer()
    rig.write(cmd.encode() + b"\n")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = rig.readline().decode(errors="replace").strip()
        if line.startswith(("OK", "ERR")):
            return line
    raise RuntimeError(f"the rig did not answer {cmd} within {timeout:.0f} s")


def vboard(quick: bool, backing: str) -> list[dict[str, Any]]:
    import serial

    from hil.bridge import VirtualBoard
    from hil.harness import provision
    from host.client import KeyRing, PumpClient, encode

    burst = (100 << 10) if quick else (1 << 20)
    flood = 5000 if quick else 100000
    rows: list[dict[str, Any]] = []
    vb = VirtualBoard(backing, accel=100).start()
    try:
        assert vb.proc is not None
        pid = vb.proc.pid
        ring = KeyRing.generate("campaign")
        with PumpClient(vb.uart_path, keys=ring) as c:
            provision(c, ring)
            c.bench_program("10 mL/h", "240 mL")
            c.start()
        ser = serial.serial_for_url(vb.uart_path, timeout=0.05, write_timeout=None)
        rig = serial.serial_for_url(vb.rig_path, timeout=2)
        reader = _Reader(ser)
        reader.start()
        time.sleep(2.0)
        w0 = int(_rig(rig, "WAKES?").split()[1])
        t0 = int(_rig(rig, "TIME?").split()[1])
        base = _idle_cpu(pid)
        w1 = int(_rig(rig, "WAKES?").split()[1])
        t1 = int(_rig(rig, "TIME?").split()[1])
        wakes_base = (w1 - w0) / max(1, (t1 - t0) / 1000)
        v0 = int(_rig(rig, "VOLUME?").split()[1])
        bt0 = int(_rig(rig, "TIME?").split()[1])
        # 1 MB burst of random bytes, newlines here and there
        rnd = bytearray(os.urandom(burst))
        for i in range(0, burst, 997):
            rnd[i] = 10
        wall0 = time.monotonic()
        ser.write(bytes(rnd))
        ser.flush()
        burst_s = time.monotonic() - wall0
        ping1 = _ping(ser, reader, 900001)
        time.sleep(2.0)
        after_burst = _idle_cpu(pid)
        # the flood: valid frames back to back
        frames = b"".join(_frame(100000 + i, "STATUS" if i % 2 else "PING")
                          for i in range(flood))
        lines0 = reader.lines
        over0 = int(_rig(rig, "OVERRUNS?").split()[1])
        wall0 = time.monotonic()
        ser.write(frames)
        ser.flush()
        flood_s = time.monotonic() - wall0
        ping2 = _ping(ser, reader, 900002)
        answered = reader.lines - lines0
        time.sleep(2.0)
        w2 = int(_rig(rig, "WAKES?").split()[1])
        t2 = int(_rig(rig, "TIME?").split()[1])
        after_flood = _idle_cpu(pid)
        w3 = int(_rig(rig, "WAKES?").split()[1])
        t3 = int(_rig(rig, "TIME?").split()[1])
        wakes_after = (w3 - w2) / max(1, (t3 - t2) / 1000)
        v1 = int(_rig(rig, "VOLUME?").split()[1])
        bt1 = int(_rig(rig, "TIME?").split()[1])
        overruns = int(_rig(rig, "OVERRUNS?").split()[1])
        expect_ul = 10000 * (bt1 - bt0) / 3600000
        # replay across a power cycle: a frame the pump accepted, sent again after a reboot
        # (its reply cache is gone with the power; its counters are in the journal)
        ctr = int(json.loads(_status(ser, reader))["auth_counter"]) + 1
        raw = encode(777001, "ACK", {}, "c", ctr, bytes.fromhex(ring.keys["c"]))
        first = _answer(ser, reader, raw, b"777001 ")
        _rig(rig, "POWER OFF")
        _rig(rig, "POWER ON")
        time.sleep(1.0)
        again = _answer(ser, reader, raw, b"777001 ")
        replay_held = b" OK " in first and b"REPLAYED" in again
        reader.stop = True
        ser.close()
        rig.close()
        cmd = f"bench/bench_reliability.py --only vboard{'-mpy' if backing != 'virtual' else ''}"
        rows.append({
            "row": f"1 MB burst into the virtual board ({backing}) over its pty",
            "tried": f"{burst} random bytes written at once ({burst_s:.1f} s to take them), "
                     "the pump delivering 10 mL/h",
            "held": f"answered a PING {ping1:.2f} s after; idle CPU {base * 100:.1f} % before, "
                    f"{after_burst * 100:.1f} % after; {over0} bytes overran the 4 KiB "
                    "receive buffer (lost, as on a UART)",
            "command": cmd, "raw": {"ping_s": ping1, "cpu_before": base,
                                    "cpu_after": after_burst}})
        rows.append({
            "row": f"100,000-frame flood into the virtual board ({backing})",
            "tried": f"{flood} valid STATUS/PING frames back to back ({len(frames)} bytes, "
                     f"{flood_s:.1f} s to take them)",
            "held": f"{answered} replies ({overruns - over0} bytes overran the receive buffer); "
                    f"answered a PING {ping2:.2f} s after; idle CPU "
                    f"{after_flood * 100:.1f} % (baseline {base * 100:.1f} %); firmware wakes a "
                    f"board second {wakes_base:.2f} before, {wakes_after:.2f} after; delivery "
                    f"{v1 - v0} µL in {(bt1 - bt0) / 1000:.0f} board s (program: "
                    f"{expect_ul:.0f} µL)",
            "command": cmd, "raw": {"ping_s": ping2, "cpu_after": after_flood,
                                    "wakes_before": wakes_base, "wakes_after": wakes_after,
                                    "volume_ul": v1 - v0, "expected_ul": expect_ul}})
        rows.append({
            "row": f"replay across a power cycle ({backing})",
            "tried": "a clinician frame the pump accepted, sent again over the pty after the "
                     "rig cut and restored the power",
            "held": "refused (REPLAYED)" if replay_held else
                    f"NOT refused: {first[-80:]!r} then {again[-80:]!r}",
            "command": cmd, "raw": {"held": replay_held}})
    finally:
        vb.close()
    rows.append(sigterm(backing, burst))
    return rows


def sigterm(backing: str, burst: int) -> dict[str, Any]:
    """`python -m hil board` flooded, then SIGTERM: it and its board process must end."""
    args = [PY, "-m", "hil", "board", "--json"] + (["--mpy"] if backing != "virtual" else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    assert p.stdout is not None
    ports = json.loads(p.stdout.readline())
    children = [int(x) for x in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
    fd = os.open(ports["uart"], os.O_WRONLY | os.O_NONBLOCK)
    sent = 0
    data = os.urandom(burst)
    t_end = time.monotonic() + 3
    while sent < len(data) and time.monotonic() < t_end:
        try:
            sent += os.write(fd, data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    os.close(fd)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    took = time.monotonic() - t0
    left = [c for c in children if Path(f"/proc/{c}").exists()
            and "Z" not in Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    for c in left:
        os.kill(c, signal.SIGKILL)
    return {"row": f"SIGTERM to a flooded `pumpsim board` ({backing})",
            "tried": f"{sent} bytes written into its pty, then SIGTERM",
            "held": f"exited {'with ' + str(rc) if rc is not None else 'only when killed'} "
                    f"in {took:.2f} s; board processes left running: {len(left)}",
            "command": "python -m hil board --json; SIGTERM",
            "raw": {"rc": rc, "seconds": took, "left": len(left)}}


SECTIONS = {"power": power, "fuzz": fuzz, "flips": flips,
            "vboard": lambda q: vboard(q, "virtual"),
            "vboard-mpy": lambda q: vboard(q, "virtual-mpy")}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| what was tried | how many | what held | command |", "|---|---|---|---|"]
    for r in rows:
        cells = [r["row"], r["tried"], r["held"], f"`{r['command']}`"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small sample of every row")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated rows to run ({', '.join(SECTIONS)})")
    p.add_argument("--out", default=str(OUT / "reliability.md"))
    a = p.parse_args()
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    names = a.only.split(",")
    for name in names:
        if name not in SECTIONS:
            raise SystemExit(f"unknown row {name!r}: one of {', '.join(SECTIONS)}")
    for name in names:
        t = time.monotonic()
        try:
            got = SECTIONS[name](a.quick)
        except Exception as e:  # noqa: BLE001 - the row says it failed; the others go on
            got = [{"row": name, "tried": "-", "held": f"the row FAILED to run: {e!r}"[:300],
                    "command": f"bench/bench_reliability.py --only {name}", "raw": {}}]
        rows += got
        print(f"{name}: {time.monotonic() - t:.0f} s", file=sys.stderr)
        for r in got:
            print(f"{r['row']}: {r['held']}", flush=True)
        text = table(rows)                    # written after every row: nothing is lost
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))
    print(table(rows))
    print(f"campaign_wall_s: {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
