"""What MicroPython has and CPython lacks, in one place: `const`.

Import it as `from pump.compat import const`, under that name: MicroPython's compiler folds
`_X = const(1)` by the name `const` wherever it was imported from (mpy-cross leaves no `_X`
in the .mpy and inlines the value), and on CPython `const` is the identity.
"""
try:
    from micropython import const
except ImportError:
    def const(x):  # type: ignore[misc]
        return x
