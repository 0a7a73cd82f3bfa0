"""Pump controller package: runs unchanged on the board, in the simulator and in tests."""
