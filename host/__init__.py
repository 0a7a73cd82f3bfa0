"""Host-side tools: serial client library and the pumpctl command.

The firmware package (`pump`) is imported from `firmware/` beside this package (repository
and installed distribution agree), so host tools frame, authenticate and decode with the
firmware's own code: one implementation of the protocol and the journal format.
"""

import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
if FIRMWARE_DIR.is_dir() and str(FIRMWARE_DIR) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_DIR))
