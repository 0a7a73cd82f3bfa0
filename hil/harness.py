"""What a HIL test holds: a `BoardHandle` (the protocol client plus time and raw-frame helpers)
whatever backs it — a virtual board on CPython or MicroPython, or hardware on a serial URL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hil.bridge import VirtualBoard
from host.client import Frame, KeyRing, PumpClient, PumpError

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


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

    def sleep(self, board_s: float) -> None:
        time.sleep(self.wall(board_s))

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def wait_state(self, states: str | tuple[str, ...], board_s: float) -> dict[str, Any]:
        return self.client.wait_state(states, timeout=self.wall(board_s) * 1.5 + 3.0)

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


def firmware_source(*names: str) -> str:
    out = ""
    for n in names:
        p = FIRMWARE / "pump" / n
        if p.is_file():
            out += p.read_text(encoding="utf-8")
    return out


def has_monitor() -> bool:
    """The safety monitor (SR-5) is in the firmware and imported by the controller."""
    if not (FIRMWARE / "pump" / "monitor.py").is_file():
        return False
    return any(ln.lstrip().startswith(("from ", "import ")) and "monitor" in ln
               for ln in firmware_source("controller.py").splitlines())


def detects_occlusion() -> bool:
    """Some firmware module acts on the downstream pressure (EV_PRESSURE / pressure_mmhg)."""
    src = firmware_source("controller.py", "monitor.py")
    return "EV_PRESSURE" in src or "pressure_mmhg" in src
