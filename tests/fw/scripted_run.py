"""A scripted run whose printed trace must be byte-identical on CPython and MicroPython.

program 10 mL/h x 12 mL, start, pause 10 min (reminder not reached), resume, run to
COMPLETE; prints every state change and alarm with virtual time and commanded volume, a
line per motor segment, then the journal's length and SHA-256.
"""
import binascii
import hashlib

from fakehal import FakeHal, advance, tmpdir

from pump import codes, program
from pump.controller import Controller

TICKS_START = (1 << 30) - 600000     # ten minutes before the tick wrap


def run(out):
    hal = FakeHal(tmpdir("trace"), TICKS_START)
    t0 = hal.t
    ctl = Controller(hal)
    ctl.listener = lambda kind, code, v: out("%d %s %s %d" % (hal.t - t0, kind, code, v))
    out("boot %s" % ctl.boot())
    out("service %s" % ctl.request("service", codes.SERVICE_ROLE))
    out("program %s" % ctl.request("program", codes.SERVICE_ROLE, program.basic(42, 10000, 12000)))
    out("start %s" % ctl.request("start", codes.CLINICIAN))
    end = t0 + 2 * 3600000
    paused = False
    while ctl.state != codes.COMPLETE and hal.t < end:
        if not paused and hal.t - t0 >= 1800000:
            paused = True
            out("pause %s" % ctl.request("pause", codes.PATIENT))
            hal.t += 600000
            out("resume %s" % ctl.request("resume", codes.PATIENT))
        advance(ctl, hal, end)
        out("seg %d %d %d %d" % (hal.t - t0, ctl.delivery.commanded_nl, hal.motor.position(),
                                 hal.ticks_ms()))
    ctl.journal.close()
    with open(hal.storage.path("journal.bin"), "rb") as f:
        data = f.read()
    out("journal %d %s" % (len(data), binascii.hexlify(hashlib.sha256(data).digest())
                           .decode()))
    out("final %s %d" % (ctl.state, ctl.delivery.commanded_nl))


if __name__ == "__main__":
    run(print)
