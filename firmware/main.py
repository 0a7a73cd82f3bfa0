"""Board entry: build the board HAL and the controller, replay the journal, run the loop.

The loop is tickless: it sleeps (machine.idle, woken by any interrupt) until the wake time
the controller asked for, or at once when an interrupt has set a flag.
"""
from boards import rp2_ref as board
from pump.controller import Controller
from pump.hal import EV_AIR, EV_DOOR, EV_ROTATION


def main():
    holder = []

    def signal(flag):
        holder[0].signal(flag)

    hal = board.make_hal(signal, EV_ROTATION, EV_DOOR, EV_AIR)
    ctl = Controller(hal)
    holder.append(ctl)
    ctl.boot(watchdog_reset=board.watchdog_reset())
    while True:
        wake = ctl.step(hal.ticks_ms())
        while hal.ticks_diff(wake, hal.ticks_ms()) > 0 and not ctl.pending():
            board.idle()


if __name__ == "__main__" or __name__ == "main":
    main()
