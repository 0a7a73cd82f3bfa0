"""Client for a bench-rig controller (docs/rig.md): what injects physical conditions into a
pump board and measures what it does. The virtual board answers the same protocol on its
second pty, so tests drive a bench rig and a virtual one alike."""

from __future__ import annotations

from typing import Any

import serial


class RigError(Exception):
    """The rig refused a command, did not answer, or could not be opened."""


class Rig:
    def __init__(self, url: str, timeout: float = 3.0, port: Any = None) -> None:
        if port is None:
            try:
                port = serial.serial_for_url(url, baudrate=115200, timeout=timeout)
            except (serial.SerialException, ValueError, OSError) as e:
                raise RigError(f"cannot open rig {url!r}: {e} (expected a device path, a pty "
                               "or socket://host:port)") from e
        self.url = url
        self.port = port
        self.name = ""

    def close(self) -> None:
        self.port.close()

    def cmd(self, line: str) -> str:
        """Send one command line; the text after OK, or RigError with the rig's reason."""
        self.port.reset_input_buffer()
        self.port.write(line.encode("ascii") + b"\n")
        self.port.flush()
        reply = self.port.readline().decode("ascii", "replace").strip()
        if not reply:
            raise RigError(f"rig {self.url}: no reply to {line!r}")
        if reply == "OK" or reply.startswith("OK "):
            return reply[3:]
        raise RigError(f"rig {self.url}: {line!r} -> {reply}")

    def query(self, what: str) -> int:
        return int(self.cmd(what + "?"))

    # injections -------------------------------------------------------------------------------
    def ping(self) -> str:
        self.name = self.cmd("PING")
        return self.name

    def reset(self) -> None:
        self.cmd("RESET")

    def pressure(self, mmhg: int | None) -> None:
        self.cmd("PRESSURE OFF" if mmhg is None else f"PRESSURE {int(mmhg)}")

    def occlude(self, on: bool) -> None:
        self.cmd(f"OCCLUDE {'ON' if on else 'OFF'}")

    def air(self, on: bool) -> None:
        self.cmd(f"AIR {'ON' if on else 'OFF'}")

    def door(self, closed: bool) -> None:
        self.cmd(f"DOOR {'CLOSED' if closed else 'OPEN'}")

    def pulses(self, n: int) -> None:
        self.cmd(f"PULSES {int(n)}")

    def runaway(self, factor: float) -> None:
        self.cmd(f"RUNAWAY {factor:g}")

    def power(self, on: bool) -> None:
        self.cmd(f"POWER {'ON' if on else 'OFF'}")

    def hang(self) -> None:
        """The firmware stops (an endless loop with interrupts masked): the watchdog must
        reset the board. RigError when the rig cannot do that."""
        self.cmd("HANG")

    # measurements -----------------------------------------------------------------------------
    def steps(self) -> int:
        return self.query("STEPS")

    def pulse_count(self) -> int:
        return self.query("PULSES")

    def volume_ul(self) -> int:
        return self.query("VOLUME")

    def time_ms(self) -> int:
        return self.query("TIME")

    def resets(self) -> int:
        """MCU restarts the rig has seen (power cycles, watchdog, reset)."""
        return self.query("RESETS")
