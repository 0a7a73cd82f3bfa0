"""Hardware-in-the-loop harness: pytest plugin, board transport, rig and virtual board."""
