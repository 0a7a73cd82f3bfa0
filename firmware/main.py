"""Board entry: build the board HAL and the controller, replay the journal, run the loop.

The loop is pump.runtime.run: one wake at a time through Runtime.service (the order every
backing shares), sleeping in between (`board.idle`, woken by any interrupt) until the wake
time the firmware asked for, at once when an interrupt has set a flag or bytes wait on the
UART. `main(board)` takes the board module; a test passes a fake board with the same three
functions (make_hal, watchdog_reset, idle).
"""
from pump.controller import Controller
from pump.hal import EV_AIR, EV_DOOR, EV_ROTATION
from pump.runtime import Runtime, run


def main(board=None, stop=None):
    if board is None:
        from boards import rp2_ref as board
    holder = []

    def signal(flag):
        holder[0].signal(flag)

    hal = board.make_hal(signal, EV_ROTATION, EV_DOOR, EV_AIR)
    ctl = Controller(hal)
    holder.append(ctl)
    rt = Runtime(hal, ctl)
    rt.boot(board.watchdog_reset())
    run(rt, board.idle, stop)
    return rt


if __name__ == "__main__":          # the board runs main.py as __main__ after boot.py
    main()
