"""Board entry: build the board HAL and the controller, replay the journal, run the loop.

The loop is pump.runtime.run: one wake at a time through Runtime.service (the order every
backing shares), sleeping in between (`board.idle`, woken by any interrupt) until the wake
time the firmware asked for, at once when an interrupt has set a flag or bytes wait on the
UART. `main(board)` takes the board module; a test passes a fake board with the same three
functions (make_hal, watchdog_reset, idle). Should the firmware raise, main() first drops
the motor enable and closes the clamp, then lets the exception out (the watchdog resets the
board).
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
    try:
        ctl = Controller(hal)
        holder.append(ctl)
        rt = Runtime(hal, ctl)
        rt.boot(board.watchdog_reset())
        run(rt, board.idle, stop)
    except BaseException:
        # The firmware failed: stop what moves fluid before the exception leaves (at the
        # REPL the motor's timer would go on stepping); the watchdog, no longer fed,
        # resets the board, which wakes from its journal (WATCHDOG_RESET if it was running).
        hal.motor.enable(False)
        hal.clamp(True)
        raise
    return rt


if __name__ == "__main__":          # the board runs main.py as __main__ after boot.py
    main()
