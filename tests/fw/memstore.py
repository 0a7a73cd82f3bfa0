"""HAL storage in memory that can lose power in the middle of a write, and remembers every
write so that a run can be replayed up to any byte of it. Runs on CPython and MicroPython.

    st = MemStore()              # or MemStore(files): {name: bytes}
    st.log = []                  # from now on every write is logged: (name, pos, bytes) and
                                 # (name, -1, b"") for a truncation (open "w")
    st.budget = 1000             # the power fails once 1000 more bytes have been written:
                                 # the write in progress keeps its first bytes, then PowerCut
    image(start, log, i, k)      # the files after log[:i] and the first k bytes of log[i]
"""


class PowerCut(Exception):
    """The power failed (inside a write, or at an instant a test chose)."""


class MemFile:
    def __init__(self, store, name, pos):
        self.store = store
        self.name = name
        self.pos = pos

    def read(self, n=-1):
        data = self.store.files[self.name]
        end = len(data) if n < 0 else self.pos + n
        out = bytes(data[self.pos:end])
        self.pos += len(out)
        return out

    def write(self, b):
        if isinstance(b, str):
            b = b.encode()
        n = self.store.put(self.name, self.pos, b)
        self.pos += n
        return n

    def seek(self, off, whence=0):
        if whence == 2:
            off += len(self.store.files[self.name])
        elif whence == 1:
            off += self.pos
        self.pos = off
        return off

    def tell(self):
        return self.pos

    def flush(self):
        pass

    def close(self):
        pass


class MemStore:
    def __init__(self, files=None):
        self.files = {}
        if files is not None:
            for name in files:
                self.files[name] = bytearray(files[name])
        self.log = None
        self.budget = -1              # bytes that may still be written (-1: no limit)
        self.written = 0              # bytes written so far

    def open(self, name, mode):
        if "w" in mode:
            self._log(name, -1, b"")
            self.files[name] = bytearray()
            return MemFile(self, name, 0)
        if name not in self.files:
            raise OSError(2, "no such file: %s" % name)
        return MemFile(self, name, 0)

    def size(self, name):
        f = self.files.get(name)
        return -1 if f is None else len(f)

    def remove(self, name):
        if name in self.files:
            self._log(name, -2, b"")
            del self.files[name]

    def path(self, name):
        return None

    def snapshot(self):
        out = {}
        for name in self.files:
            out[name] = bytes(self.files[name])
        return out

    def put(self, name, pos, b):
        """Write b at pos (zero-filling a gap); honours the power budget."""
        cut = False
        if self.budget >= 0 and len(b) > self.budget:
            b = b[:self.budget]
            cut = True
        if self.budget >= 0:
            self.budget -= len(b)
        self._log(name, pos, b)
        _apply(self.files, name, pos, b)
        self.written += len(b)
        if cut:
            raise PowerCut()
        return len(b)

    def _log(self, name, pos, b):
        if self.log is not None:
            self.log.append((name, pos, bytes(b)))


def _apply(files, name, pos, b):
    if pos == -1:
        files[name] = bytearray()
        return
    if pos == -2:
        if name in files:
            del files[name]
        return
    data = files.get(name)
    if data is None:
        data = files[name] = bytearray()
    if len(data) < pos:
        data.extend(bytes(pos - len(data)))
    end = pos + len(b)
    if len(data) < end:
        data.extend(bytes(end - len(data)))
    data[pos:end] = b


def image(start, log, i, k):
    """The files (a dict of bytes) after the writes log[:i] and the first k bytes of log[i]
    (a write torn after k bytes; k=0: the cut came before it began)."""
    files = {}
    for name in start:
        files[name] = bytearray(start[name])
    j = 0
    while j < i:
        name, pos, b = log[j]
        _apply(files, name, pos, b)
        j += 1
    if i < len(log) and k > 0:
        name, pos, b = log[i]
        _apply(files, name, pos, b[:k])
    return files
