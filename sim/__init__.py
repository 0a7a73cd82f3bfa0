"""Simulator: virtual clock, plant model, faults, scenarios and reports around the firmware.

The firmware package (`pump`) is the one in firmware/pump, installed as a top-level package
by the distribution (pyproject.toml), so the simulator runs the very code a board runs.
"""
