"""SimHal: the HAL contract (firmware/pump/hal.py) over the plant and the event engine.

Also the virtual board's main loop: `attach(controller)` makes the engine step the controller
at each wake it asks for, and at once whenever an interrupt (a plant signal, UART bytes, a
request) sets a flag — exactly what a board's main loop does, minus the sleeping.

Clock: engine time is unwrapped ms since the run began; `ticks_ms()` is MicroPython's, masked
to 2**30 and offset by `start_ticks` (so a run can start just before the wrap). A reboot after
power loss restarts ticks at 0, the driver's step counter and the rotation counter at 0 (they
live in the MCU), as a real board would; the RTC runs on.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from boards.fs import DirStorage as FileStorage
from boards.memuart import MemUart
from plant.physics import Counter, Driver, power_off, power_on
from pump import ticks
from pump.hal import EV_UART
from sim.engine import PRIO_WAKE, Engine, Entry
from sim.plant import Plant

_MASK = ticks.TICKS_PERIOD - 1
_HALF = ticks.TICKS_PERIOD >> 1
RTC_START_S = 800000000           # 2025-05-08, seconds since 2000-01-01


class DirStorage(FileStorage):
    """Journal files in a real directory (a fresh temp dir unless one is given): the
    board's file storage (boards/fs.py), plus clean-up of a temp dir it made."""

    def __init__(self, root: str | None = None) -> None:
        self.owned = root is None
        root = root if root is not None else tempfile.mkdtemp(prefix="pumpsim-")
        os.makedirs(root, exist_ok=True)
        super().__init__(root)

    def cleanup(self) -> None:
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)


class _MemFile(io.BytesIO):
    """A file that outlives close() (the storage keeps it, as flash keeps a file)."""

    def close(self) -> None:
        self.seek(0)


class MemStorage:
    """Journal files in memory: the same bytes as DirStorage, without a syscall per flush.
    `path(name)` is None; `data(name)` gives the bytes."""

    def __init__(self) -> None:
        self.files: dict[str, _MemFile] = {}

    def path(self, name: str) -> None:
        return None

    def open(self, name: str, mode: str) -> Any:
        if "w" in mode:
            f = self.files[name] = _MemFile()
            return f
        if name not in self.files:
            raise OSError(2, "no such file: %s" % name)
        if "+" in mode:
            f = self.files[name]
            f.seek(0)
            return f
        return io.BytesIO(self.files[name].getvalue())

    def size(self, name: str) -> int:
        f = self.files.get(name)
        return -1 if f is None else len(f.getbuffer())

    def remove(self, name: str) -> None:
        self.files.pop(name, None)

    def data(self, name: str) -> bytes | None:
        f = self.files.get(name)
        return None if f is None else f.getvalue()

    def cleanup(self) -> None:
        self.files.clear()


class SimUart(MemUart):
    """In-memory byte queues (boards/memuart.py); feeding bytes raises the UART interrupt."""

    def __init__(self, hal: SimHal) -> None:
        super().__init__()
        self.hal = hal

    def feed(self, data: bytes) -> None:
        super().feed(data)
        self.hal.interrupt(EV_UART)


class SimMotor(Driver):
    """The stepper driver (plant.physics.Driver, the shipped board's semantics) on the
    engine's clock."""

    def __init__(self, hal: SimHal) -> None:
        # the clock: engine.now, read without a Python frame (every segment reads it 3 times)
        super().__init__(hal.plant, functools.partial(getattr, hal.engine, "now"))


class SimRotation(Counter):
    """The MCU's rotation counter (plant.physics.Counter) on the engine's clock; count() and
    arm() read the engine's time directly (the monitor asks at every compare wake)."""

    def __init__(self, hal: SimHal) -> None:
        engine = hal.engine
        self.engine = engine
        super().__init__(hal.plant, lambda: engine.now)

    def count(self) -> int:
        return self.plant.rotation_count(self.engine.now) - self.offset

    def arm(self, count: int) -> None:
        self.plant.arm_compare(self.engine.now, count + self.offset if count >= 0 else -1)


class SimHal:
    def __init__(self, engine: Engine, plant: Plant, storage: Any = None,
                 start_ticks: int = 0, rtc0_s: int = RTC_START_S) -> None:
        self.engine = engine
        self.plant = plant
        self.storage = storage if storage is not None else DirStorage()
        self.tick_off = start_ticks & _MASK
        self.rtc0_s = rtc0_s
        self.wraps_before = 0          # tick wraps in earlier boots
        # tick arithmetic: the firmware's own functions, bound directly (hot path)
        self.ticks_add = ticks.ticks_add
        self.ticks_diff = ticks.ticks_diff
        self.motor = SimMotor(self)
        self.rotation = SimRotation(self)
        self.uart = SimUart(self)
        self.buzzing = False
        self.buzzer_on_count = 0
        self.led_on = False
        self.wdt_feeds = 0
        self.time_scale = 1            # the simulator has no person waiting on a window
        self.runtime: Any = None
        self.fixed_tick_ms = 0         # > 0: a polling main loop, a wake every fixed_tick_ms
        self.controller: Any = None
        self.pre_step: Callable[[int], None] | None = None    # runner hook, engine ms
        self.steps = 0
        self._wake_entry: Entry | None = None
        self._soon_entry: Entry | None = None    # a rotation-compare wake (light path)
        self._in_step = False
        self._again = False
        self._same_ms = 0
        self._after = False            # a crossing asked for a wake (_after_crossing)
        plant.signal = self.interrupt
        plant.after_crossing = self._after_crossing

    # --- clock ------------------------------------------------------------------------------
    def ticks_ms(self) -> int:
        return (self.engine.now + self.tick_off) & _MASK

    def rtc_s(self) -> int:
        return self.rtc0_s + self.engine.now // 1000

    def ticks_wraps(self) -> int:
        return self.wraps_before + ((self.engine.now + self.tick_off) >> 30)

    # --- sensors and actuators ----------------------------------------------------------------
    def pressure_mmhg(self) -> int:
        return self.plant.pressure_mmhg(self.engine.now)

    def air_detected(self) -> bool:
        return self.plant.air

    def door_closed(self) -> bool:
        return self.plant.door_switch

    def battery_mv(self) -> int:
        return self.plant.battery_mv(self.engine.now)

    def buzzer(self, on: bool) -> None:
        if on and not self.buzzing:
            self.buzzer_on_count += 1
        self.buzzing = bool(on)

    def led(self, on: bool) -> None:
        self.led_on = bool(on)

    def clamp(self, closed: bool) -> None:
        self.plant.set_clamp(self.engine.now, bool(closed))

    def wdt_feed(self) -> None:
        self.wdt_feeds += 1

    # --- the engine glue: the board's main loop, minus the sleeping -----------------------------
    @property
    def shortcuts(self) -> bool:
        """The engine glue's fast paths (default on): a wake raised by a plant crossing
        served at once when it is the engine's next event anyway, the crossing's look-ahead
        shared with that wake, the plant's next crossing pushed on the heap directly. Off:
        the plain event-by-event path; the results are the same (tests/sim/test_speed.py)."""
        return self.plant.shortcuts

    @shortcuts.setter
    def shortcuts(self, on: bool) -> None:
        self.plant.shortcuts = bool(on)

    def attach(self, runtime: Any) -> None:
        """Run the firmware (a pump.runtime.Runtime) from now on: the engine calls
        Runtime.service at every wake it asks for, and at once whenever an interrupt (a plant
        signal, UART bytes) or a command needs one — what pump.runtime.run does on a board."""
        self.runtime = runtime
        self.controller = runtime.ctl
        self.wake()

    def detach(self) -> None:
        self.runtime = None
        self.controller = None
        Engine.cancel(self._wake_entry)
        self._wake_entry = None
        Engine.cancel(self._soon_entry)
        self._soon_entry = None

    def interrupt(self, flag: int) -> None:
        """An ISR: set the controller's flag and have the main loop serve a wake at once."""
        ctl = self.controller
        if ctl is not None:
            ctl.signal(flag)
            if self.plant.in_crossing and not self._in_step and not self.fixed_tick_ms:
                # (in_crossing is only ever set with the shortcuts on)
                self._after = True      # wake(), decided after the crossing (_after_crossing)
                return
            self.wake()

    def wake(self) -> None:
        """Serve a wake now (the board leaving its sleep). The timed wake the firmware asked
        for stays scheduled; the wake now re-decides it."""
        if self.runtime is None:
            return
        if self._in_step:
            self._again = True
            return
        if self.fixed_tick_ms and self._wake_entry is not None:
            return                      # polling: flags wait for the next tick
        now = self.engine.now
        s = self._soon_entry
        if s is not None and s[3] is not None:
            return                      # a wake is already due now
        e = self._wake_entry
        if e is not None and e[3] is not None and e[0] <= now:
            return
        if self.plant.in_crossing:
            self._after = True          # _after_crossing decides, once the plant is done
            return
        self._soon_entry = self.engine.schedule(now, PRIO_WAKE, self._on_soon)

    def _after_crossing(self) -> None:
        """A plant crossing asked for a wake now: serve it at once when it would be the
        engine's next event anyway (nothing at this ms before the wake's priority), else
        schedule it as wake() does. The same order of events, one heap entry fewer."""
        if not self._after:
            return
        self._after = False
        if self.runtime is None:
            return
        engine = self.engine
        now = engine.now
        s = self._soon_entry
        if s is not None and s[3] is not None:
            return                      # a wake is already due now
        e = self._wake_entry
        if e is not None and e[3] is not None and e[0] <= now:
            return
        heap = engine._heap
        if heap:
            head = heap[0]
            if head[0] < now or (head[0] == now and head[1] <= PRIO_WAKE):
                self.plant.watch(now)   # the crossing's look-ahead, before anything else
                self._soon_entry = engine.schedule(now, PRIO_WAKE, self._on_soon)
                return
        self._service()

    def _on_soon(self) -> None:
        self._soon_entry = None
        self._service()

    def _on_timed(self) -> None:
        self._wake_entry = None
        self._service()

    def _service(self) -> None:
        """One wake: the runner's hook, then Runtime.service at the engine's time (a flag
        raised during the call waits for the next wake), then the next wake scheduled: at
        once when a flag arrived during the call (at most 100 times in one ms, then 1 ms
        on), else at the tick the firmware asked for."""
        rt = self.runtime
        if rt is None:
            return
        engine = self.engine
        now = engine.now
        if self.pre_step is not None:
            self.pre_step(now)
        tk = (now + self.tick_off) & _MASK
        self._in_step = True
        try:
            wake = rt.service(tk)
        finally:
            self._in_step = False
        self.steps += 1
        if self.fixed_tick_ms:
            self._again = False
            at = now + self.fixed_tick_ms
        elif self._again:
            self._again = False
            self._same_ms += 1
            at = now if self._same_ms < 100 else now + 1
        else:
            self._same_ms = 0
            dt = ((wake - tk + _HALF) & _MASK) - _HALF      # ticks_diff(wake, tk)
            at = now + (dt if dt > 0 else 1)
        if self.runtime is rt:
            e = self._wake_entry
            if e is not None and e[3] is not None:
                if e[0] == at:
                    return              # the wake already scheduled is the one asked for
                e[3] = None
            self._wake_entry = engine.schedule(at, PRIO_WAKE, self._on_timed)

    # --- power --------------------------------------------------------------------------------
    def power_off(self) -> None:
        """Power lost: the main loop stops, the driver stops, the clamp closes (unpowered)."""
        self.detach()
        power_off(self.engine.now, self.plant, self.motor)
        self.buzzing = False

    def power_on(self, ticks_reset: bool = True) -> None:
        """Power back: the MCU reboots (ticks, step and pulse counters from 0)."""
        now = self.engine.now
        if ticks_reset:
            self.wraps_before = self.ticks_wraps()
            self.tick_off = -now
        power_on(now, self.plant, self.motor, self.rotation)
