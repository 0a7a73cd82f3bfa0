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
        # how much slower than the board's own CPU its code runs here: the emulated RP2040
        # executes 20-30 M cycles a wall second at best, a fifth of the chip's 125 MHz
        self.cpu_slowdown = 5.0 if kind == "rp2040js" else 1.0

    @property
    def virtual(self) -> bool:
        return self.vb is not None

    def rate(self) -> float:
        """Board seconds per wall second: the nominal acceleration, or what the board's
        reported time shows (an emulator under load runs slower)."""
        if self.vb is not None and self.vb.board_ms >= 0:
            return self.vb.rate()
        return self.accel

    def wall(self, board_s: float) -> float:
        """Wall seconds that board_s seconds of board time take."""
        return board_s / self.rate()

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
        """A bench program (rate/VTBI, no drug library): the pump takes one only in service
        mode, from the service role, so the board is put in service mode first."""
        if self.client.status().get("mode") != "SERVICE":
            self.client.service()
        echo = self.client.propose_basic(rate, vtbi)["echo"]
        return self.client.confirm(echo, "service")

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
    for _ in range(5):
        st = client.status()
        s = st["state"]
        try:
            if s in ("RUNNING", "PAUSED", "PRIMING"):
                client.stop()
            elif s == "ALARM":
                client.stop(role="clinician")
            elif s in ("PROGRAMMED", "COMPLETE"):
                client.clear()
            elif s == "LOCKOUT":
                # a bench lockout (service mode) the service role ends; a patient's lockout
                # nobody ends early (SR-6): the test then finds the board locked out
                client.override("service" if st.get("mode") == "SERVICE" else "clinician")
            elif s == "SERVICE":
                client.call("EXIT_SERVICE", role="service")
            else:
                return
        except PumpError:
            return
