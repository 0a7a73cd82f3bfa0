"""`python -m hil board` (also `pumpsim board`): start a virtual board and print its ports.

    python -m hil board [--mpy] [--accel 100] [--keys FILE]
    python -m hil board --backing rp2040js [--uf2 F --bootrom F] [--flash-image F]
                        [--save-flash F]

prints the pseudo-terminal of the board's UART (for pumpctl, or any serial tool) and of its
rig (docs/rig.md), then runs until Ctrl-C. With --keys, the board is given the key file's
keys (generated first if the file does not exist), so `pumpctl --keys FILE` can program it.

`--backing rp2040js` is an emulated Pico running the official MicroPython UF2: fresh from
the UF2 it sits at the MicroPython REPL on its USB serial, like a Pico out of the box, for
`pumpctl flash` and mpremote; `--save-flash F` keeps its flash when it stops and
`--flash-image F` starts from such a flash (the pump then boots from littlefs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
                        "on MicroPython (WebAssembly under Node); rp2040js: an emulated Pico "
                        "with the official MicroPython (flash it with pumpctl flash)")
    p.add_argument("--mpy", action="store_true", help="same as --backing virtual-mpy")
    p.add_argument("--accel", type=int, default=100, help="board seconds per wall second")
    p.add_argument("--keys", help="provision this key file's keys (generated if missing)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    p.add_argument("--json", action="store_true", help="print one JSON line with the ports")
    p.add_argument("--uf2", help="rp2040js: the MicroPython UF2 for the Pico (default $RP2_UF2, "
                   "else ../shared/rp2/)")
    p.add_argument("--bootrom", help="rp2040js: the RP2040 boot ROM (default $RP2_BOOTROM, else "
                   "../shared/rp2/)")
    p.add_argument("--flash-image", help="rp2040js: start from this flash image (a "
                   "--save-flash of an earlier run) instead of a fresh UF2")
    p.add_argument("--save-flash", help="rp2040js: write the board's flash here when it stops")
    p.set_defaults(func=cmd_board)


def cmd_board(args: argparse.Namespace) -> int:
    from hil import rp2
    from hil.harness import provision
    from host.client import KeyRing, PumpClient, PumpError

    backing = "virtual-mpy" if args.mpy else args.backing
    fresh = backing == "rp2040js" and not args.flash_image
    try:
        if backing == "rp2040js":
            try:
                fx = rp2.find(args.uf2, args.bootrom)
            except rp2.FixtureMissing as e:
                raise BoardError(f"rp2040js: {e}") from e
            vb = VirtualBoard(backing, accel=args.accel, rp2_fixtures=fx,
                              flash_image=Path(args.flash_image) if args.flash_image else None,
                              save_flash=Path(args.save_flash) if args.save_flash else None)
        else:
            vb = VirtualBoard(backing, accel=args.accel)
        vb.start()
    except BoardError as e:
        print(f"board: {e}", file=sys.stderr)
        return 2
    if fresh and args.keys:
        print("board: --keys needs the pump running: a Pico fresh from its UF2 has only the "
              "MicroPython REPL (flash it with pumpctl flash, then use --flash-image)",
              file=sys.stderr)
        vb.close()
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
            ctl = pumpctl_command()
            try_ = (f"{ctl} --port {vb.uart_path} flash   (MicroPython REPL: no pump yet)"
                    if fresh else f"{ctl} --port {vb.uart_path}{keys} status")
            print(f"virtual board ({backing}, x{args.accel} time)\n"
                  f"  uart: {vb.uart_path}\n  rig:  {vb.rig_path}\n"
                  f"  try:  {try_}\n"
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


def pumpctl_command() -> str:
    """How to call the pumpctl beside this tool: `pumpctl` when that is the one on PATH, else
    its path as this tool was called (`.venv/bin/pumpctl` beside `.venv/bin/pumpsim`)."""
    here = os.path.dirname(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    mine = os.path.join(here, "pumpctl") if here else ""
    if not mine or not os.path.exists(mine):
        mine = os.path.join(os.path.dirname(sys.executable), "pumpctl")
    if not os.path.exists(mine):
        return "pumpctl"
    found = shutil.which("pumpctl")
    if found and os.path.realpath(found) == os.path.realpath(mine):
        return "pumpctl"
    rel = os.path.relpath(mine)
    if rel.startswith(".."):
        return mine
    return rel if os.sep in rel else os.path.join(".", rel)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil", description="HIL harness tools.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    args = p.parse_args(argv)
    return int(args.func(args))
