"""The virtual board under heavy serial traffic (issue 10, class 8), on both backings: a
burst into its pty never deadlocks the relay and the board (each once blocked writing to
the other), the board answers afterwards, traffic leaves no extra wakes behind, and a
flooded `pumpsim board` still ends on SIGTERM with its board process. The full-size burst
(1 MB) and flood (100,000 frames) are rows of the reliability campaign
(bench/bench_reliability.py); these are samples of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import serial

from hil.bridge import BACKINGS, VirtualBoard

REPO = Path(__file__).resolve().parents[2]


def _frame(seq: int, cmd: str) -> bytes:
    body = f"{seq} {cmd} {{}}".encode()
    return body + b" %08x\n" % zlib.crc32(body)


def _rig(rig: serial.Serial, cmd: str) -> int:
    rig.reset_input_buffer()
    rig.write(cmd.encode() + b"\n")
    return int(rig.readline().split()[1])


class _Drain(threading.Thread):
    def __init__(self, port: serial.Serial) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.data = bytearray()
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                self.data += self.port.read(65536)
            except (serial.SerialException, OSError, TypeError):
                return


def _answers(d: _Drain, seq: int, timeout: float = 10.0) -> bool:
    want = f"\n{seq} OK ".encode()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if want in b"\n" + bytes(d.data):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("backing", BACKINGS)
def test_burst_and_flood_leave_the_board_responsive_and_its_wakes_unchanged(
        backing: str) -> None:
    with VirtualBoard(backing, accel=100) as vb:
        port = serial.serial_for_url(vb.uart_path, timeout=0.05)
        rig = serial.serial_for_url(vb.rig_path, timeout=5)
        d = _Drain(port)
        d.start()
        try:
            w0, t0 = _rig(rig, "WAKES?"), _rig(rig, "TIME?")
            time.sleep(1.5)
            w1, t1 = _rig(rig, "WAKES?"), _rig(rig, "TIME?")
            junk = bytearray(os.urandom(100 << 10))
            for i in range(0, len(junk), 501):
                junk[i] = 10
            port.write(bytes(junk))                        # 100 KB: once a deadlock
            port.write(b"".join(_frame(10 + i, "PING") for i in range(2000)))
            port.write(b"\n" + _frame(99999, "PING"))
            assert _answers(d, 99999), "no answer after the burst"
            assert vb.alive()
            time.sleep(1.0)
            w2, t2 = _rig(rig, "WAKES?"), _rig(rig, "TIME?")
            time.sleep(1.5)
            w3, t3 = _rig(rig, "WAKES?"), _rig(rig, "TIME?")
            before = (w1 - w0) / (t1 - t0)
            after = (w3 - w2) / (t3 - t2)
            assert after <= before + 0.02, (before, after)   # wakes a board ms: no growth
        finally:
            d.stop = True
            port.close()
            rig.close()
        t = time.monotonic()
    assert time.monotonic() - t < 10                      # close() did not hang


def test_a_flooded_board_command_ends_on_sigterm() -> None:
    p = subprocess.Popen([sys.executable, "-m", "hil", "board", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        assert p.stdout is not None
        ports = json.loads(p.stdout.readline())
        kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        fd = os.open(ports["uart"], os.O_WRONLY | os.O_NONBLOCK)
        data = os.urandom(300 << 10)
        sent = 0
        t_end = time.monotonic() + 3
        while sent < len(data) and time.monotonic() < t_end:
            try:
                sent += os.write(fd, data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        os.close(fd)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
        time.sleep(0.5)
        for k in kids:
            stat = Path(f"/proc/{k}/stat")
            assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
