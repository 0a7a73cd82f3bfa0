"""The virtual board on CPython: hil/vboard.py (the firmware's main loop on the one plant),
served as a process speaking the board pipe protocol of hil/vboard.mjs (U = UART bytes in
hex, R = rig commands, Q = quit).

    python -m hil.simboard [--accel N] [--start-ticks N] [--root DIR]

The MicroPython backing (hil/vboard.mjs) runs the very same module inside the WebAssembly
port; both answer the rig protocol of docs/rig.md, so one HIL suite runs on both.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import sys
import tempfile
import time
from typing import Any

from hil.vboard import Board

WRAP_SOON = (1 << 30) - 30000       # start 30 s of board time before ticks_ms wraps (SR-12)


def serve(board: Any, inp: Any = None, out: Any = None) -> int:
    """The board pipe protocol on stdin/stdout (see hil/vboard.mjs)."""
    inp = inp if inp is not None else sys.stdin.buffer
    out = out if out is not None else sys.stdout.buffer
    fd = inp.fileno()
    out.write(b"READY\n")
    out.flush()
    buf = b""

    def ms() -> float:
        return time.monotonic() * 1000.0

    while True:
        delay = board.service(ms())
        tx = board.take()
        if tx:
            out.write(b"U " + tx.encode() + b"\n")
            out.flush()
        r, _, _ = select.select([fd], [], [], delay / 1000.0)
        if not r:
            continue
        data = os.read(fd, 65536)
        if not data:
            return 0
        lines = (buf + data).split(b"\n")
        buf = lines.pop()
        if len(buf) > 1 << 20:
            buf = b""                             # no line is that long: drop it
        for line in lines:
            text = line.decode("ascii", "replace")
            if text.startswith("U "):
                board.feed(text[2:].strip())
                board.service(ms())
            elif text.startswith("R "):
                reply = board.rig(text[2:])
                out.write(b"R " + reply.encode() + b"\n")
            elif text.strip() == "Q":
                return 0
        tx = board.take()
        if tx:
            out.write(b"U " + tx.encode() + b"\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.simboard", description=__doc__)
    p.add_argument("--accel", type=int, default=100)
    p.add_argument("--start-ticks", type=int, default=WRAP_SOON)
    p.add_argument("--root", help="journal directory (default: a fresh temporary one)")
    a = p.parse_args(argv)
    root = a.root or tempfile.mkdtemp(prefix="vboard-")
    try:
        board = Board(root, a.accel, a.start_ticks)
        board.boot()
        return serve(board)
    finally:
        if a.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
