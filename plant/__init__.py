"""The plant: the physical pump (stepper driver, camshaft, cassette, rotation sensor), the bag
and the patient line — defined once, in modules that run unchanged on CPython and on
MicroPython (`physics`), with a virtual-clock HAL over them (`vhal`)."""
