"""`python -m hil board` (also `pumpsim board`): start a virtual board and print its ports.

    python -m hil board [--mpy] [--accel 100] [--keys FILE]

prints the pseudo-terminal of the board's UART (for pumpctl, or any serial tool) and of its
rig (docs/rig.md), then runs until Ctrl-C. With --keys, the board is given the key file's
keys (generated first if the file does not exist), so `pumpctl --keys FILE` can program it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hil.bridge import BACKINGS, BoardError, VirtualBoard


def add_parser(sub: Any) -> None:
    p = sub.add_parser("board", help="start a virtual board; print its UART and rig ports")
    p.add_argument("--backing", choices=BACKINGS, default="virtual",
                   help="virtual: the virtual board on CPython; virtual-mpy: the same board "
                        "on MicroPython (WebAssembly under Node)")
    p.add_argument("--mpy", action="store_true", help="same as --backing virtual-mpy")
    p.add_argument("--accel", type=int, default=100, help="board seconds per wall second")
    p.add_argument("--keys", help="provision this key file's keys (generated if missing)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    p.add_argument("--json", action="store_true", help="print one JSON line with the ports")
    p.set_defaults(func=cmd_board)


def cmd_board(args: argparse.Namespace) -> int:
    from hil.harness import provision
    from host.client import KeyRing, PumpClient, PumpError

    backing = "virtual-mpy" if args.mpy else args.backing
    try:
        vb = VirtualBoard(backing, accel=args.accel).start()
    except BoardError as e:
        print(f"board: {e}", file=sys.stderr)
        return 2
    try:
        if args.keys:
            kp = Path(args.keys)
            if not kp.exists():
                KeyRing.generate(f"virtual-{backing}").save(kp)
            with PumpClient(vb.uart_path) as c:
                try:
                    provision(c, KeyRing.load(kp))
                except PumpError as e:
                    print(f"board: provisioning keys failed: {e}", file=sys.stderr)
                    return 3
        if args.json:
            print(json.dumps({"uart": vb.uart_path, "rig": vb.rig_path, "backing": backing,
                              "accel": args.accel}), flush=True)
        else:
            keys = f" --keys {args.keys}" if args.keys else ""
            print(f"virtual board ({backing}, x{args.accel} time)\n"
                  f"  uart: {vb.uart_path}\n  rig:  {vb.rig_path}\n"
                  f"  try:  pumpctl --port {vb.uart_path}{keys} status\n"
                  "Ctrl-C to stop.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        t_end = time.monotonic() + args.seconds if args.seconds else None
        while vb.alive() and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.2)
        if not vb.alive():
            print(f"board: the board process ended\n{vb.stderr_text()}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        vb.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil", description="HIL harness tools.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    args = p.parse_args(argv)
    return int(args.func(args))
