"""The reference board as a device engineer meets it, on the emulated Pico (the official
MicroPython v1.27 UF2 on rp2040js, hil/rp2board.mjs): `pumpctl flash` through mpremote's
raw REPL onto a board fresh from its UF2, main.py booting the pump from littlefs after the
reset, the journal and keys surviving power cuts and resets, and a re-flash of a board that
runs the pump (reached through its boot window while the rig cycles its power).

Runs with `pytest tests/hil --board rp2040js` (.ci/run); skipped otherwise, and skipped
with the reason when the UF2, the boot ROM or rp2040js is absent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import serial

from hil import rp2
from hil.bridge import VirtualBoard
from hil.harness import provision
from hil.rig import Rig
from host import cli
from host import flash as fl
from host.client import KeyRing, PumpClient

pytestmark = pytest.mark.rp2040js


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def test_pumpctl_flash_onto_a_fresh_pico_then_main_py_boots_the_pump(
        rp2_fixtures: rp2.Fixtures, rp2_flashed: rp2.Image) -> None:
    # the session's image: a Pico fresh from its UF2, `pumpctl flash --dry-run`, then
    # `pumpctl flash --no-reset` (hil/rp2.py make_image)
    dry = rp2_flashed.dry_run
    assert "compiled for MicroPython 1.27.0 (.mpy v6.3, armv6m)" in dry
    assert "left out: /boards/memuart.py, /pump/plan.py, /pump/ticks.py" in dry
    assert "new     :/pump/controller.mpy" in dry and "24 to copy" in dry
    assert rp2_flashed.after_dry_run == 0                      # a dry run copies nothing
    assert "verified 24 files (sha256)" in rp2_flashed.flash
    # power on: main.py boots the pump from littlefs
    with VirtualBoard("rp2040js", accel=20, rp2_fixtures=rp2_fixtures,
                      flash_image=rp2_flashed.path) as vb, \
            PumpClient(vb.uart_path, timeout=2.0, retries=4) as c:
        assert c.ping()["pong"] is True
        s = c.status()
        assert s["state"] == "IDLE" and s["keys"] == []        # factory state


def test_journal_and_keys_survive_power_cuts_resets_and_a_reflash(
        rp2_fixtures: rp2.Fixtures, rp2_image: Path, capsys: pytest.CaptureFixture[str]
        ) -> None:
    ring = KeyRing.generate("rp2-survive")
    with VirtualBoard("rp2040js", accel=20, rp2_fixtures=rp2_fixtures,
                      flash_image=rp2_image) as vb, \
            PumpClient(vb.uart_path, timeout=2.0, retries=4) as c:
        rig = Rig(vb.rig_path, timeout=10.0)
        provision(c, ring)
        pid = c.bench_program("60 mL/h", "5 mL")["program_id"]     # service mode
        assert c.start()["state"] == "RUNNING"
        time.sleep(1.0)
        assert c.pause()["state"] == "PAUSED"
        before = c.status()
        rig.power(False)
        rig.power(True)                                    # a power cut: littlefs kept
        s = c.wait_state("PAUSED", 10)
        assert s["program_id"] == pid and s["keys"] == ["c", "s"]
        # SR-9: what was counted stays counted (the segment in flight counts as given)
        assert before["commanded_nl"] <= s["commanded_nl"] <= before["commanded_nl"] + 600_000
        counted = s["commanded_nl"]

        # a re-flash of the running pump: Ctrl-C in its boot window, the rig cycling power
        def cycle() -> None:
            time.sleep(1.5)
            rig.power(False)
            rig.power(True)

        t = threading.Thread(target=cycle)
        t.start()
        rc, out = run(capsys, "--port", vb.uart_path, "flash", "--wait", "30")
        t.join()
        assert rc == 0, out
        assert "power-cycle the board now" in out                 # it said what to do
        assert "0 to copy, 0 to remove, 24 unchanged" in out      # the same firmware
        assert "extra   :/data/journal.bin  (on the board only; left alone)" in out
        assert "board reset" in out                               # machine.reset(): not a hang
        c.keys = ring
        s = c.wait_state("PAUSED", 10)
        assert s["program_id"] == pid and s["alarm"] is None and s["commanded_nl"] == counted
        assert c.resume()["state"] == "RUNNING"                   # the keys still work
        assert c.stop()["state"] == "PROGRAMMED"


def test_watchdog_reset_tells_a_watchdog_timeout_from_machine_reset(
        rp2_fixtures: rp2.Fixtures, rp2_image: Path) -> None:
    """boards/rp2_ref.watchdog_reset() on the real port: reset_cause() is WDT_RESET after
    machine.reset() too (pumpctl flash resets the board so); only a timeout of the armed
    watchdog may wake a running pump in WATCHDOG_RESET."""
    with VirtualBoard("rp2040js", accel=20, rp2_fixtures=rp2_fixtures,
                      flash_image=rp2_image) as vb:
        mp = fl.Mpremote(vb.uart_path)
        rig = Rig(vb.rig_path, timeout=10.0)
        with PumpClient(vb.uart_path, timeout=2.0, retries=4) as c:
            c.ping()                                 # the pump runs: its boot window is over

        def cycle() -> None:
            time.sleep(1.0)
            rig.power(False)
            rig.power(True)

        t = threading.Thread(target=cycle)
        t.start()
        fl.break_in(vb.uart_path, 30, say=lambda _m: None)
        t.join()
        mp.run([*mp.base, "fs", "rm", ":/main.py"], timeout=120)   # stay at the REPL
        ask = [*mp.base, "exec", "import machine; from boards import rp2_ref; "
               "print('CAUSE', machine.reset_cause() == machine.WDT_RESET, "
               "rp2_ref.watchdog_reset())"]
        assert "CAUSE False False" in mp.run(ask, timeout=120)    # after a power cycle
        mp.run(mp.reset_command(), timeout=120)                   # machine.reset()
        fl.break_in(vb.uart_path, 120, say=lambda _m: None)       # booted, at the REPL again
        assert "CAUSE True False" in mp.run(ask, timeout=120)
        with serial.serial_for_url(vb.uart_path, timeout=1) as port:  # at the REPL, then let go
            port.write(b"\r\x03import machine; w = machine.WDT(timeout=1000)\r\n")
            port.flush()
            time.sleep(0.2)
        t0 = vb.board_ms
        while vb.board_ms - t0 < 5000:                        # not fed: it bites
            time.sleep(0.05)
        fl.break_in(vb.uart_path, 120, say=lambda _m: None)
        assert "CAUSE True True" in mp.run(ask, timeout=120)
