"""Board entry: build the board HAL and the controller, replay the journal, run the loop.

The loop is tickless: it sleeps (machine.idle, woken by any interrupt) until the wake time
the controller (or the serial protocol) asked for, at once when an interrupt has set a flag
or bytes wait on the UART.
"""
from boards import rp2_ref as board
from pump.controller import Controller
from pump.hal import EV_AIR, EV_DOOR, EV_ROTATION
from pump.protocol import Protocol


def main():
    holder = []

    def signal(flag):
        holder[0].signal(flag)

    hal = board.make_hal(signal, EV_ROTATION, EV_DOOR, EV_AIR)
    ctl = Controller(hal)
    holder.append(ctl)
    ctl.boot(watchdog_reset=board.watchdog_reset())
    proto = Protocol(ctl, hal.uart, hal.storage)
    uart = hal.uart
    while True:
        now = hal.ticks_ms()
        wake = ctl.on_rotation(now)       # a compare-only wake: the monitor's edge check
        if wake < 0:
            wake = ctl.step(now)
        wake = proto.poll(hal.ticks_ms(), wake)
        while hal.ticks_diff(wake, hal.ticks_ms()) > 0 and not ctl.pending():
            if uart.any():
                break
            board.idle()


if __name__ == "__main__" or __name__ == "main":
    main()
