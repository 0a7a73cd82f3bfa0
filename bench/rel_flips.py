"""Reliability campaign, bit flips in every stored file: every single bit of both journal
copies, both key copies and both calibration copies, flipped one at a time in the files a
run left behind, and the pump booted from them (the firmware's own Runtime.boot).

    PYTHONPATH=firmware:tests/fw python bench/rel_flips.py [CAPACITY]

The run: keys provisioned, a service calibration (CAL), a patient's program at 10 mL/h (the
drug library's 24 h bag), a door-open alarm and a clinician resume, then a runaway latched as
OVER_INFUSION lockout; long enough
that the journal ring (CAPACITY slots a copy, default 100) has wrapped. Checked at every
boot: still LOCKOUT with the same deadline, the same program, no volume un-counted, both
keys, the calibration, and STORAGE_FAULT annunciated. Prints one JSON line per file.
"""
import json
import sys

from fakehal import FakeHal, clinical, run_for, run_until_state, tmpdir
from memstore import MemStore

from pump import auth, calibration, codes
from pump import journal as jn
from pump.codes import CLINICIAN, LOCKOUT, PATIENT, SERVICE_ROLE, STORAGE_FAULT
from pump.commands import Commands
from pump.controller import Controller
from pump.hal import EV_DOOR
from pump.runtime import Runtime

KEY_C = "c1" * 32
KEY_S = "5e" * 32


def record(cap):
    hal = FakeHal(tmpdir("flips"))
    hal.compare = True
    st = MemStore()
    hal.storage = st
    ctl = Controller(hal, jn.Journal(st, "journal.bin", cap))
    ctl.boot()
    door = Commands(ctl, auth.Keys(st))
    door.execute("KEY", {"slot": "c", "key": KEY_C}, PATIENT, 0)
    door.execute("KEY", {"slot": "s", "key": KEY_S}, SERVICE_ROLE, 0)
    assert ctl.request("service", SERVICE_ROLE) is None
    assert door.execute("CAL", {"stroke_nl": 50400}, SERVICE_ROLE, 0) == {"state": "SERVICE"}
    assert door.execute("CAL", {"stroke_nl": 49600}, SERVICE_ROLE, 0) == {"state": "SERVICE"}
    assert ctl.request("exit_service", SERVICE_ROLE) is None
    assert ctl.request("program", CLINICIAN, clinical(2, 10000)) is None   # a patient's
    assert ctl.request("start", CLINICIAN) is None
    run_for(ctl, hal, 1800000)
    hal.door = False
    ctl.signal(EV_DOOR)
    run_for(ctl, hal, 1000)
    hal.door = True
    ctl.signal(EV_DOOR)
    assert ctl.request("resume", CLINICIAN) is None
    run_for(ctl, hal, 1800000)
    hal.cam_speed(10, 1)
    assert run_until_state(ctl, hal, LOCKOUT, 600000)
    hal.cam_speed(1, 1)
    run_for(ctl, hal, 60000)
    want = (ctl.state, ctl.lockout_until_s, ctl.program.pid, ctl.program.rate_ul_per_h,
            ctl.reserved_nl, ctl.delivery.stroke_nl)
    return st.snapshot(), hal.t, want


def boot(files, t, cap, root):
    hal = FakeHal(root)
    hal.t = t
    hal.storage = MemStore(files)
    ctl = Controller(hal, jn.Journal(hal.storage, "journal.bin", cap))
    rt = Runtime(hal, ctl)
    rt.boot()
    return ctl, rt.proto.keys


def main(argv):
    cap = int(argv[1]) if len(argv) > 1 else 100
    files, t, want = record(cap)
    root = tmpdir("flipboot")
    names = ("journal.bin", "journal.bin.2") + auth.KEY_FILES + calibration.NAMES
    for name in names:
        data = files[name]
        n = held = faulted = 0
        bad = []
        for byte in range(len(data)):
            for bit in range(8):
                f = dict(files)
                b = bytearray(data)
                b[byte] ^= 1 << bit
                f[name] = bytes(b)
                ctl, keys = boot(f, t, cap, root)
                n += 1
                got = (ctl.state, ctl.lockout_until_s,
                       ctl.program.pid if ctl.program else None,
                       ctl.program.rate_ul_per_h if ctl.program else None,
                       ctl.reserved_nl, ctl.delivery.stroke_nl)
                ok = got == want and keys.hexes == {"c": KEY_C, "s": KEY_S}
                held += ok
                if not ok and len(bad) < 3:
                    bad.append((byte, bit, got))
                if ctl.alarm == STORAGE_FAULT or ctl.notice == STORAGE_FAULT:
                    faulted += 1
        print(json.dumps({"file": name, "bytes": len(data), "flips": n, "held": held,
                          "storage_fault": faulted, "state": want[0],
                          "first_failures": bad}))
        sys.stdout.flush()
    assert codes.LOCKOUT == want[0]


if __name__ == "__main__":
    main(sys.argv)
