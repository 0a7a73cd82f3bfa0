"""Hardware-in-the-loop harness: pytest plugin, board transport, rig and virtual board.

The firmware package (`pump`) is imported from `firmware/` beside this package, as sim/ and
host/ do: the virtual board runs the very firmware a board runs.
"""

import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
if FIRMWARE_DIR.is_dir() and str(FIRMWARE_DIR) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_DIR))
