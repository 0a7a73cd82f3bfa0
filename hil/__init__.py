"""Hardware-in-the-loop harness: pytest plugin, board transport, rig and virtual board.

The firmware package (`pump`) is the one in firmware/pump, installed as a top-level package
by the distribution (pyproject.toml), as for sim/ and host/: the virtual board runs the very
firmware a board runs.
"""
