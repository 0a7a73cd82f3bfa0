"""Board ports: one module per board, each a HAL (pump/hal.py contract) on `machine`."""
