"""The HAL contract: everything the controller needs from a board, in one place.

Boards (`firmware/boards/`), the simulator (`sim/`) and the tests implement it; the
controller receives one object and touches hardware only through it. Nothing here, or in
any implementation, may touch hardware at import time. Duck-typed: no base classes.

    hal.ticks_ms() -> int            monotonic ms, wraps every 2**30 (time.ticks_ms)
    hal.ticks_add(t, delta) -> int   time.ticks_add semantics
    hal.ticks_diff(a, b) -> int      time.ticks_diff semantics (a - b, signed)
    hal.rtc_s() -> int               battery-backed wall clock, seconds since 2000-01-01;
                                     used for spans longer than 6 days (lockout, cycle)
    hal.motor.enable(on)             power stage enable line; the safety monitor may drop
                                     it on its own (SR-5)
    hal.motor.enabled() -> bool
    hal.motor.move(steps, ms)        start moving `steps` steps evenly over `ms` ms,
                                     replacing any movement still in progress; returns at
                                     once (PIO/PWM or timer stepping); negative steps run
                                     the camshaft backwards (pressure relief after an
                                     occlusion)
    hal.motor.stop()                 stop at once
    hal.motor.position() -> int      cumulative steps the driver has issued
    hal.motor.busy() -> bool         a move is still in progress
    hal.rotation.count() -> int      cumulative camshaft rotation pulses (independent
                                     sensor, read by the safety monitor only; 4 pulses a
                                     revolution, one revolution = one stroke)
    hal.rotation.arm(count)          signal EV_ROTATION as soon as count() >= count (a
                                     counter compare interrupt: the monitor reacts on the
                                     very pulse that crosses its envelope); arm(-1) disarms
    hal.clamp(closed)                downstream pinch clamp, closed when unpowered; closed
                                     on free flow (cassette out with its own clamp open)
    hal.pressure_mmhg() -> int       downstream pressure
    hal.air_detected() -> bool       air-in-line detector
    hal.door_closed() -> bool        cassette in place and door shut
    hal.battery_mv() -> int
    hal.storage                      files for the journal: open(name, mode) -> file
                                     (read/write/flush/close), size(name) -> int (-1 if
                                     missing), remove(name)
    hal.uart                         read(n) -> bytes or None (non-blocking), write(b);
                                     any() -> int, bytes waiting (lets the main loop
                                     leave its sleep for serial input; pump.protocol)
    hal.buzzer(on), hal.led(on)
    hal.wdt_feed()
    hal.time_scale                   int: how many ms of this clock pass
                                     per wall-clock ms. 1 on a board; a virtual board run
                                     N times faster than the wall clock says N, so windows
                                     meant for a person (the confirm window of a program,
                                     pump.commands) stay wall-clock time on every backing

Interrupts reach the controller as flags: an ISR calls `controller.signal(EV_...)`, which
only ORs a bit into an int; the controller acts on it at its next step(). A board's main
loop calls step() at once when a flag is set, otherwise sleeps until the wake time
step() returned.
"""
from pump.compat import const

EV_DOOR = const(1)          # door/cassette switch changed
EV_AIR = const(2)           # air-in-line detector tripped
EV_PRESSURE = const(4)      # pressure crossed a hardware threshold
EV_ROTATION = const(8)      # rotation pulse count reached the monitor's compare value
EV_MOTOR_FAULT = const(16)  # driver reported a fault (stall, over-current)
EV_BATTERY = const(32)      # battery below threshold
EV_UART = const(64)         # bytes waiting on the UART
EV_ALL = const(127)
