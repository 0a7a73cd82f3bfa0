"""The HAL's storage (pump/hal.py) on a filesystem directory: a board's flash (littlefs or
FAT), MicroPython's in-memory filesystem, or a CPython directory. No hardware, no imports
beyond `os`, so every board port and the virtual boards share it."""
import os


class DirStorage:
    """Journal, key and calibration files in one directory (created if missing)."""

    def __init__(self, root="/data"):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass

    def path(self, name):
        return self.root + "/" + name

    def open(self, name, mode):
        return open(self.path(name), mode)

    def size(self, name):
        try:
            return os.stat(self.path(name))[6]
        except OSError:           # missing: OSError(2) on a board, OSError(44) in the WASM port
            return -1

    def remove(self, name):
        try:
            os.remove(self.path(name))
        except OSError:
            pass
