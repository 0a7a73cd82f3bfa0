"""The rig of the emulated Pico (hil/pinrig.py): the one plant on the reference board's pins
and the bench-rig protocol, on CPython (the harness runs the same module in MicroPython).
What a bench engineer would check with a scope and a balance: STEP edges move fluid only
with ENABLE high, a stroke (200 steps) is 50 µL and 4 sensor pulses, RUNAWAY turns the
camshaft faster than the driver commands, the ADC counts are the transducer's and the
divider's, and every rig command answers OK or a reason. Also where hil/rp2.py looks for
the UF2 and the boot ROM, and what it says when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil import rp2
from hil.pinrig import PinRig


def stroke(r: PinRig, t: int, n: int = 200) -> None:
    for _ in range(n):
        r.step(t)


def test_steps_move_fluid_and_turn_the_sensor() -> None:
    r = PinRig()
    r.set_clamp(0, True)                     # the firmware opens the clamp to deliver
    stroke(r, 1000)
    assert r.rig(1000, "STEPS?") == "OK 200"
    assert r.pulses(1000) == 4                           # 4 slots a revolution
    assert r.rig(1000, "VOLUME?") == "OK 50"             # 50 µL a stroke
    r.count_step()                                       # ENABLE low: counted, no motion
    assert r.rig(1000, "STEPS?") == "OK 201" and r.pulses(1000) == 4


def test_runaway_turns_the_camshaft_faster_than_commanded() -> None:
    r = PinRig()
    r.set_clamp(0, True)
    assert r.rig(0, "RUNAWAY 10") == "OK"
    stroke(r, 1000, 20)                                  # 20 steps commanded
    assert r.pulses(1000) == 4 and r.rig(1000, "VOLUME?") == "OK 50"
    assert r.rig(1000, "RUNAWAY 0.5").startswith("ERR RUNAWAY factor 1..1000")
    assert r.rig(1000, "PULSES 3") == "OK" and r.pulses(1000) == 7
    assert r.rig(1000, "PULSES?") == "OK 7"


def test_adc_counts_of_the_pressure_transducer_and_the_battery_divider() -> None:
    r = PinRig()
    assert r.rig(0, "PRESSURE 300") == "OK"
    raw = r.adc(0, 0)
    assert abs(raw - 300 * 1000 / 12 / 16) <= 0.5       # 0.012 mmHg per 16-bit count
    assert (raw << 4 | raw >> 8) * 12 // 1000 in (299, 300)   # what boards/rp2_ref.py reads
    raw_b = r.adc(1, 0)
    assert (raw_b << 4 | raw_b >> 8) * 101 // 1000 == pytest.approx(4100, abs=15)
    assert r.adc(0, 0) <= 4095 and r.adc(3, 0) == 0


def test_occlusion_raises_the_pressure_the_firmware_reads() -> None:
    r = PinRig()
    r.set_clamp(0, True)
    r.rig(0, "OCCLUDE ON")
    p0 = r.adc(0, 0)
    stroke(r, 1000, 400)                                 # 100 µL into a closed line
    assert r.adc(0, 1000) > p0 + 500
    assert int(r.rig(1000, "PRESSURE?").split()[1]) > 150


def test_door_air_power_hang_and_reset() -> None:
    r = PinRig()
    assert r.door_level() == 0 and r.air_level() == 0    # door closed (low), no air
    assert r.rig(0, "DOOR OPEN") == "OK" and r.door_level() == 1
    assert r.rig(0, "DOOR AJAR") == "ERR DOOR OPEN|CLOSED"
    assert r.rig(0, "AIR ON") == "OK" and r.air_level() == 1
    assert r.rig(0, "HANG") == "OK" and r.hung
    r0 = int(r.rig(0, "RESETS?").split()[1])
    assert r.rig(0, "RESET") == "OK"
    assert not r.hung and r.powered and r.door_level() == 0 and r.air_level() == 0
    assert int(r.rig(0, "RESETS?").split()[1]) == r0 + 1  # a hung board comes back by power
    assert r.rig(0, "POWER OFF") == "OK" and not r.powered
    assert r.rig(0, "HANG").startswith("ERR HANG")
    assert r.rig(0, "POWER ON") == "OK" and r.powered
    assert r.rig(0, "LAUNCH").startswith("ERR unknown rig command")
    assert r.rig(0, "").startswith("ERR")
    assert r.rig(5, "TIME?") == "OK 5" and r.rig(5, "PING") == "OK rig rp2040js"


def test_fixtures_found_or_a_clear_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("RP2_FIXTURES", str(tmp_path))
    monkeypatch.delenv("RP2_UF2", raising=False)
    monkeypatch.delenv("RP2_BOOTROM", raising=False)
    with pytest.raises(rp2.FixtureMissing, match=f"no {rp2.UF2_NAME}: looked in {tmp_path}"):
        rp2.find()
    (tmp_path / rp2.UF2_NAME).write_bytes(b"\0" * 512)
    (tmp_path / rp2.BOOTROM_NAME).write_bytes(b"\0" * 100)
    with pytest.raises(rp2.FixtureMissing, match="an RP2040 boot ROM is 16384"):
        rp2.find()
    with pytest.raises(rp2.FixtureMissing, match="does not exist"):
        rp2.find(uf2=str(tmp_path / "nope.uf2"))
    monkeypatch.setenv("RP2_BOOTROM", str(tmp_path / "gone.bin"))
    with pytest.raises(rp2.FixtureMissing, match=r"from \$RP2_BOOTROM"):
        rp2.find()
