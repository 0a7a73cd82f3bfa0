"""What a HIL test holds: a `BoardHandle` (the protocol client plus time and raw-frame helpers)
whatever backs it — a virtual board on CPython or MicroPython, or hardware on a serial URL."""

from __future__ import annotations

import time
from typing import Any

from hil.bridge import VirtualBoard
from host.client import Frame, KeyRing, PumpClient, PumpError, PumpTimeout


class BoardHandle:
    def __init__(self, client: PumpClient, kind: str, accel: float = 1.0,
                 vb: VirtualBoard | None = None) -> None:
        self.client = client
        self.kind = kind                # virtual, virtual-mpy, or the URL
        self.accel = accel              # board seconds per wall second
        self.vb = vb

    @property
    def virtual(self) -> bool:
        return self.vb is not None

    def wall(self, board_s: float) -> float:
        """Wall seconds that board_s seconds of board time take (plus slack)."""
        return board_s / self.accel

    def board_ms(self) -> int:
        """The board's own time (ms), when its backing reports it (the emulated RP2040
        does), else -1. Waits then count board time: an emulator slower than the nominal
        acceleration still gives each test the board time it asked for."""
        return self.vb.board_ms if self.vb is not None else -1

    def sleep(self, board_s: float) -> None:
        t0 = self.board_ms()
        if t0 < 0:
            time.sleep(self.wall(board_s))
            return
        cap = time.monotonic() + self.wall(board_s) * 20 + 10.0
        while self.board_ms() - t0 < board_s * 1000 and time.monotonic() < cap:
            time.sleep(0.01)

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def wait_state(self, states: str | tuple[str, ...], board_s: float) -> dict[str, Any]:
        t0 = self.board_ms()
        if t0 < 0:
            return self.client.wait_state(states, timeout=self.wall(board_s) * 1.5 + 3.0)
        # board time: poll gently (every STATUS costs the emulated chip a frame)
        want = (states,) if isinstance(states, str) else states
        cap = time.monotonic() + self.wall(board_s) * 20 + 10.0
        s: dict[str, Any] = {"state": "no answer"}
        while True:
            try:
                s = self.client.status()
            except PumpTimeout:
                s = {"state": "no answer"}      # a board rebooting does not answer for a while
            if s["state"] in want:
                return s
            if self.board_ms() - t0 > board_s * 1500 + 3000 or time.monotonic() > cap:
                raise PumpTimeout(f"state {s['state']} after {board_s:.0f} s of board time, "
                                  f"waiting for {'/'.join(want)} (alarm {s.get('alarm')})")
            time.sleep(0.2)

    def program_basic(self, rate: str, vtbi: str) -> dict[str, Any]:
        echo = self.client.propose_basic(rate, vtbi)["echo"]
        return self.client.confirm(echo)

    def exchange(self, raw: bytes, wait_s: float = 0.3, want: int = 1) -> list[Frame]:
        """Write raw bytes (anything: a test of the parser); the non-telemetry frames that
        come back within wait_s (returns early once `want` have come)."""
        c = self.client
        c._write(raw)
        got: list[Frame] = []
        for f in c.frames(time.monotonic() + wait_s):
            got.append(f)
            if len(got) >= want:
                break
        return got

    def diagnostics(self) -> str:
        if self.vb is None:
            return ""
        return f"virtual board {self.kind} (alive {self.vb.alive()}), stderr:\n" \
            f"{self.vb.stderr_text()}"


def provision(client: PumpClient, ring: KeyRing) -> None:
    """Give a factory-fresh board the ring's keys (service first, then clinician as service)."""
    client.provision_key("s", ring.keys["s"])
    client.keys = ring
    client.provision_key("c", ring.keys["c"], role="service")


def to_idle(client: PumpClient) -> None:
    """Bring a real board to IDLE/PROGRAMMED-free state before a test (best effort)."""
    for _ in range(4):
        s = client.status()["state"]
        try:
            if s in ("RUNNING", "PAUSED", "PRIMING"):
                client.stop()
            elif s == "ALARM":
                client.stop(role="clinician")
            elif s in ("PROGRAMMED", "COMPLETE"):
                client.clear()
            elif s == "LOCKOUT":
                client.override()
            elif s == "SERVICE":
                client.call("EXIT_SERVICE", role="service")
            else:
                return
        except PumpError:
            return
