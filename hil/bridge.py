"""A virtual board behind two pseudo-terminals: its UART and its rig, opened by pyserial
exactly like hardware (`serial.serial_for_url(board.uart_path)`).

The board runs in a child process speaking the board pipe protocol (hil/vboard.mjs): on
CPython (hil/simboard.py), on MicroPython's WebAssembly port under Node (hil/vboard.mjs), or
as the official MicroPython for the Pico on an emulated RP2040 (hil/rp2board.mjs: its USB
serial is the UART here). A relay thread moves bytes between the ptys and the child: UART
bytes both ways (hex on the pipe), rig command lines in and reply lines out; a child that
reports its board time ("T <ms>" lines) keeps `board_ms` up to date. It never blocks on a
write: what the child has not yet taken waits in a bounded buffer (while it is full the relay
stops reading the ptys, so a writer that floods them waits, as on a line with flow control),
what a client has not yet read waits in another (beyond 1 MiB it is dropped, as a UART drops
what nobody reads), and it always drains the child's output, so neither side can wait for
the other for ever. Closing asks the child to quit, then terminates it.

    with VirtualBoard("virtual-mpy") as vb:
        print(vb.uart_path, vb.rig_path)
"""

from __future__ import annotations

import errno
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

from hil import rp2
from hil.simboard import WRAP_SOON

REPO = Path(__file__).resolve().parents[1]
BACKINGS = ("virtual", "virtual-mpy", "rp2040js")
_TO_CHILD_MAX = 1 << 20             # bytes waiting for the child's stdin at most
_TO_CLIENT_MAX = 1 << 20            # bytes waiting for a pty's client at most


class BoardError(Exception):
    """The virtual board could not start, or died."""


class VirtualBoard:
    def __init__(self, backing: str = "virtual", accel: int = 100,
                 start_ticks: int = WRAP_SOON, boot_timeout: float = 30.0,
                 rp2_fixtures: rp2.Fixtures | None = None, flash_image: Path | None = None,
                 save_flash: Path | None = None) -> None:
        if backing not in BACKINGS:
            raise BoardError(f"unknown virtual board {backing!r}: one of {', '.join(BACKINGS)}")
        self.backing = backing
        self.rp2_fixtures = rp2_fixtures
        self.flash_image = flash_image
        self.save_flash = save_flash
        self.board_ms = -1              # the board's time, when the child reports it
        self.accel = accel
        self.start_ticks = start_ticks
        self.boot_timeout = boot_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.uart_path = ""
        self.rig_path = ""
        self.root = ""
        self.dropped = 0                # bytes for a pty no client read (beyond the bound)
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._err = tempfile.TemporaryFile()
        self.started_s = 0.0

    def command(self) -> list[str]:
        if self.backing == "rp2040js":
            try:
                fx = self.rp2_fixtures or rp2.find()
            except rp2.FixtureMissing as e:
                raise BoardError(f"rp2040js: {e}") from e
            self.rp2_fixtures = fx
            return rp2.command(fx, self.accel, self.start_ticks, self.flash_image,
                               self.save_flash)
        if self.backing == "virtual-mpy":
            node = shutil.which("node")
            if node is None:
                raise BoardError("node is not on PATH: install Node.js, then `make setup`")
            pkg = REPO / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
            if not pkg.is_dir():
                raise BoardError(f"{pkg} is missing: run `make setup` (npm ci)")
            return [node, str(REPO / "hil" / "vboard.mjs"), "--firmware", str(REPO / "firmware"),
                    "--accel", str(self.accel), "--start-ticks", str(self.start_ticks)]
        return [sys.executable, "-m", "hil.simboard", "--accel", str(self.accel),
                "--start-ticks", str(self.start_ticks), "--root", self.root]

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> VirtualBoard:
        t0 = time.monotonic()
        self.root = tempfile.mkdtemp(prefix="vboard-")
        cmd = self.command()
        env = self.rp2_fixtures.env() if self.rp2_fixtures is not None else None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, cwd=REPO, env=env)
        assert self.proc.stdout is not None
        out_fd = self.proc.stdout.fileno()
        line = b""
        deadline = time.monotonic() + self.boot_timeout
        while not line.endswith(b"\n"):
            r, _, _ = select.select([out_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                self.close()
                raise BoardError(f"{self.backing}: no READY within {self.boot_timeout:.0f} s\n"
                                 f"{self.stderr_text()}")
            b = os.read(out_fd, 1)
            if not b:
                self.close()
                raise BoardError(f"{self.backing}: the board process exited during boot\n"
                                 f"{self.stderr_text()}")
            line += b
        if line.strip() != b"READY":
            self.close()
            raise BoardError(f"{self.backing}: expected READY, got {line!r}")
        um, us = pty.openpty()
        rm, rs = pty.openpty()
        for fd in (us, rs):
            tty.setraw(fd)
        for fd in (um, rm):
            os.set_blocking(fd, False)
        self._fds = [um, us, rm, rs]     # the slaves stay open here: no EIO between clients
        self.uart_path = os.ttyname(us)
        self.rig_path = os.ttyname(rs)
        self._thread = threading.Thread(target=self._relay, name=f"relay-{self.backing}",
                                        daemon=True)
        self._thread.start()
        self.started_s = time.monotonic() - t0
        return self

    def close(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None and self.save_flash is not None:
            self._quit_and_wait(p)          # the child writes its flash on Q
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        if p is not None and p.poll() is None:
            try:
                assert p.stdin is not None
                os.set_blocking(p.stdin.fileno(), False)
                os.write(p.stdin.fileno(), b"\nQ\n")   # never blocks: a full pipe is skipped
            except OSError:
                pass
            for stop in (None, p.terminate, p.kill):
                if stop is not None:
                    stop()
                try:
                    p.wait(timeout=3)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _quit_and_wait(self, p: subprocess.Popen[bytes]) -> None:
        try:
            assert p.stdin is not None
            p.stdin.write(b"Q\n")
            p.stdin.flush()
            p.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self, limit: int = 4000) -> str:
        try:
            self._err.seek(0)
            return self._err.read().decode("utf-8", "replace")[-limit:]
        except (OSError, ValueError):
            return ""

    # --- the relay ----------------------------------------------------------------------------
    def _queue(self, out: bytearray, data: bytes) -> None:
        """Bytes for a pty: queued while the client has not read them, up to a bound (then
        lost, as a UART's output is when nobody reads it)."""
        room = _TO_CLIENT_MAX - len(out)
        if len(data) > room:
            self.dropped += len(data) - max(room, 0)
            data = data[:max(room, 0)]
        out += data

    def _flush(self, fd: int, out: bytearray) -> None:
        try:
            del out[:os.write(fd, out[:65536])]
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno not in (errno.EIO, errno.EAGAIN):
                raise
            self.dropped += len(out)          # no client on the pty: lost
            del out[:]

    def _relay(self) -> None:
        p = self.proc
        assert p is not None and p.stdin is not None and p.stdout is not None
        um, _, rm, _ = self._fds
        child_out = p.stdout.fileno()
        child_in = p.stdin.fileno()
        os.set_blocking(child_in, False)
        to_child = bytearray()
        to_uart = bytearray()
        to_rig = bytearray()
        from_child = b""
        rig_in = b""
        while not self._stop.is_set():
            readers = [child_out]
            if len(to_child) < _TO_CHILD_MAX:
                readers += [um, rm]
            writers = [fd for fd, buf in ((child_in, to_child), (um, to_uart), (rm, to_rig))
                       if buf]
            try:
                r, w, _ = select.select(readers, writers, [], 0.1)
            except (OSError, ValueError):
                return
            try:
                if child_in in w:
                    try:
                        del to_child[:os.write(child_in, to_child[:65536])]
                    except BlockingIOError:
                        pass
                if um in w:
                    self._flush(um, to_uart)
                if rm in w:
                    self._flush(rm, to_rig)
                if um in r:
                    data = _read(um)
                    if data:
                        to_child += b"U " + data.hex().encode() + b"\n"
                if rm in r:
                    rig_in += _read(rm)
                    while b"\n" in rig_in:
                        line, rig_in = rig_in.split(b"\n", 1)
                        line = line.strip(b"\r")
                        if line:
                            to_child += b"R " + line + b"\n"
                    if len(rig_in) > 4096:
                        rig_in = b""              # a rig line that never ends: dropped
                if child_out in r:
                    data = os.read(child_out, 65536)
                    if not data:
                        return                    # the board process ended
                    lines = (from_child + data).split(b"\n")
                    from_child = lines.pop()
                    for line in lines:
                        if line.startswith(b"U "):
                            try:
                                self._queue(to_uart, bytes.fromhex(line[2:].decode()))
                            except (ValueError, UnicodeError):
                                pass              # not hex: nothing the UART could carry
                        elif line.startswith(b"R "):
                            self._queue(to_rig, line[2:] + b"\n")
                        elif line.startswith(b"T "):
                            self.board_ms = int(line[2:])
            except (BrokenPipeError, ConnectionResetError, ValueError):
                return


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise
