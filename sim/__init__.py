"""Simulator: virtual clock, plant model, faults, scenarios and reports around the firmware."""
