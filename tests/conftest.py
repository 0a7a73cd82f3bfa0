"""Test-wide setup: make the firmware and the firmware test helpers importable under CPython.

Firmware unit tests (tests/fw/test_*.py) are plain functions that run on both CPython (collected
here by pytest) and MicroPython (tests/test_micropython.py). On both they import firmware code as
``from pump import ...`` and helpers that live in tests/fw/ as top-level modules
(``import fakehal``): on the board-like side /flash and /fw are on sys.path, here firmware/ and
tests/fw/ are. This runs at import time, before collection.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO / "firmware"
FW_TESTS_DIR = REPO / "tests" / "fw"

for _p in (FW_TESTS_DIR, FIRMWARE_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
