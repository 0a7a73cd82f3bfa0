"""firmware/main.py when the firmware fails: whatever raises out of the main loop, main()
first drops the motor enable and closes the clamp (at the MicroPython REPL the motor's timer
would go on stepping until the watchdog reset the board), then lets the exception out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import main
from boards.fs import DirStorage
from plant.vhal import VirtualHal


class CrashingBoard:
    """A board whose sleep finds the pump delivering, then fails (a bug, a MemoryError)."""

    def __init__(self, root: str, error: BaseException) -> None:
        self.storage = DirStorage(root)
        self.error = error
        self.hal: Any = None

    def make_hal(self, signal: Callable[[int], None], *_flags: int) -> VirtualHal:
        self.hal = VirtualHal(self.storage)
        self.hal.signal = signal
        return self.hal

    def watchdog_reset(self) -> bool:
        return False

    def idle(self, wake: int) -> None:
        hal = self.hal
        hal.motor.enable(True)                 # as mid-delivery
        hal.clamp(False)
        hal.motor.move(2400, 36000)
        hal.advance_to(hal.t + 1000)
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("a bug"), MemoryError()],
                         ids=["RuntimeError", "MemoryError"])
def test_sr5_a_failing_firmware_stops_the_motor_and_closes_the_clamp(
        tmp_path: Any, error: BaseException) -> None:
    board = CrashingBoard(str(tmp_path), error)
    with pytest.raises(type(error)):
        main.main(board)
    hal = board.hal
    assert not hal.motor.enabled() and not hal.motor.busy()
    assert hal.clamped
    moved = hal.motor.position()
    hal.advance_to(hal.t + 60000)
    assert hal.motor.position() == moved           # nothing moves after the failure
