"""Simulator: virtual clock, plant model, faults, scenarios and reports around the firmware.

The firmware package (`pump`) is imported from `firmware/` beside this package: the repository
layout and the installed distribution (firmware/ ships as package data) agree on that.
"""

import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
if FIRMWARE_DIR.is_dir() and str(FIRMWARE_DIR) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_DIR))
