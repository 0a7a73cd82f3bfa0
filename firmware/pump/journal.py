"""Power-safe journal: append-only fixed-size records with sequence number and CRC-32.

Record (48 bytes, little-endian):
    0  u16  magic 0x4A50 ("PJ")
    2  u8   kind (CHECKPOINT, PROGRAM, EVENT)
    3  u8   state index (codes.STATES)
    4  u32  sequence number, strictly increasing across both files
    8  9 x u32 payload (meaning by kind, see the K_* field lists below)
    44 u16  CRC-32 low half, 46 u16 CRC-32 high half, over bytes 0..43

Two files, `<name>.0` and `<name>.1`, are used in turn: when the active one is full, the
next is truncated and opens with a snapshot (the latest PROGRAM and CHECKPOINT records), so
the older file stays whole until the newer holds everything. Replay reads both and keeps,
for each kind, the valid record with the highest sequence number. A torn or corrupt record
fails its magic or CRC and is skipped, never believed (SR-9).

Every record is a full checkpoint of what must survive power loss (state, program id,
volume counted as delivered, alarm latch, lockout deadline, authentication counter), so
replay needs only the newest valid CHECKPOINT/EVENT and the newest PROGRAM.

Appending allocates nothing: one preallocated buffer, struct.pack_into, a CRC in small ints.
"""
import struct

from pump.crc import crc32_halves

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

REC_SIZE = const(48)
_BODY = const(44)
_MAGIC = const(0x4A50)
_FMT = "<HBBI9I"
_CRC_FMT = "<HH"

CHECKPOINT = const(1)
PROGRAM = const(2)
EVENT = const(3)

# Payload fields of CHECKPOINT and EVENT records.
P_PROGRAM_ID = const(0)
P_DELIVERED_NL = const(1)     # volume counted as delivered on this program (write-ahead)
P_LOCKOUT_UNTIL_S = const(2)  # RTC seconds; 0 = none
P_RTC_S = const(3)            # when written
P_ALARM = const(4)            # index into codes.ALARMS
P_EVENT = const(5)            # event code (EVENT records), 0 for a checkpoint
P_ARG = const(6)              # event argument
P_AUTH_COUNTER = const(7)     # highest accepted authentication counter
P_FLAGS = const(8)            # bit flags (controller-defined)
# Payload fields of PROGRAM records.
G_PROGRAM_ID = const(0)
G_RATE_UL_PER_H = const(1)
G_VTBI_NL = const(2)
G_DRUG = const(3)
G_CONC_PG_PER_ML = const(4)
G_DOSE_NG_PER_DAY = const(5)
G_BAG_HOURS = const(6)
G_FLAGS = const(7)
G_CHECK = const(8)            # program's own check value (program.py)

_FULL_BYTES = const(64 * 1024)


class Journal:
    """Append and replay. `storage` is the HAL storage (open/size/remove by name)."""

    def __init__(self, storage, name="journal", max_bytes=_FULL_BYTES):
        self.storage = storage
        self.name = name
        self.max_bytes = max_bytes - max_bytes % REC_SIZE
        self.buf = bytearray(REC_SIZE)
        self.crc = [0, 0]
        self.payload = [0] * 9        # fill, then append(kind, state)
        self.seq = 0
        self.active = 0
        self.size = 0
        self.file = None
        # Latest valid records after replay (None when there was none).
        self.last = None              # (kind, state, seq, payload list) of CHECKPOINT/EVENT
        self.program = None           # same shape, PROGRAM
        self.skipped = 0              # records that failed magic or CRC on replay
        self.records = 0              # valid records seen on replay

    def _path(self, i):
        return "%s.%d" % (self.name, i)

    # --- replay -------------------------------------------------------------------------
    def replay(self):
        """Read both files; remember the newest valid records. Returns the count kept."""
        self.last = None
        self.program = None
        self.skipped = 0
        self.records = 0
        best_seq = -1
        best_file = 0
        for i in (0, 1):
            top = self._scan(i)
            if top > best_seq:
                best_seq = top
                best_file = i
        self.seq = best_seq + 1 if best_seq >= 0 else 0
        self.active = best_file
        size = self.storage.size(self._path(best_file))
        self.size = size - size % REC_SIZE if size > 0 else 0
        return self.records

    def _scan(self, i):
        path = self._path(i)
        if self.storage.size(path) <= 0:
            return -1
        f = self.storage.open(path, "rb")
        top = -1
        try:
            while True:
                rec = f.read(REC_SIZE)
                if not rec or len(rec) < REC_SIZE:
                    if rec:
                        self.skipped += 1
                    break
                parsed = self.parse(rec)
                if parsed is None:
                    self.skipped += 1
                    continue
                self.records += 1
                kind, _, seq, _ = parsed
                if seq > top:
                    top = seq
                if kind == PROGRAM:
                    if self.program is None or seq > self.program[2]:
                        self.program = parsed
                elif self.last is None or seq > self.last[2]:
                    self.last = parsed
        finally:
            f.close()
        return top

    def parse(self, rec):
        """(kind, state, seq, payload) of a 48-byte record, or None when it is not valid."""
        if len(rec) != REC_SIZE:
            return None
        crc = self.crc
        crc32_halves(rec, _BODY, crc)
        lo, hi = struct.unpack_from(_CRC_FMT, rec, _BODY)
        if lo != crc[0] or hi != crc[1]:
            return None
        v = struct.unpack_from(_FMT, rec, 0)
        if v[0] != _MAGIC or v[1] not in (CHECKPOINT, PROGRAM, EVENT):
            return None
        return (v[1], v[2], v[3], list(v[4:]))

    # --- append -------------------------------------------------------------------------
    def open(self):
        """Open the active file for appending (after replay)."""
        if self.file is None:
            self.file = self.storage.open(self._path(self.active), "ab")

    def append(self, kind, state):
        """Append one record from self.payload. Rotates when the file is full."""
        if self.file is None:
            self.open()
        if self.size + REC_SIZE > self.max_bytes:
            self._rotate()
        self._write(kind, state)

    def _write(self, kind, state):
        p = self.payload
        buf = self.buf
        struct.pack_into(_FMT, buf, 0, _MAGIC, kind, state, self.seq,
                         p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8])
        crc = self.crc
        crc32_halves(buf, _BODY, crc)
        struct.pack_into(_CRC_FMT, buf, _BODY, crc[0], crc[1])
        f = self.file
        f.write(buf)
        f.flush()
        self.seq += 1
        self.size += REC_SIZE
        if kind == PROGRAM:
            self._remember(self.program, kind, state)
        else:
            self._remember(self.last, kind, state)

    def _remember(self, slot, kind, state):
        # keep the latest record in memory for the snapshot at rotation (no allocation once
        # both slots exist)
        if slot is None:
            slot = [kind, state, self.seq - 1, [0] * 9]
            if kind == PROGRAM:
                self.program = slot
            else:
                self.last = slot
        elif isinstance(slot, tuple):
            slot = [slot[0], slot[1], slot[2], list(slot[3])]
            if kind == PROGRAM:
                self.program = slot
            else:
                self.last = slot
        slot[0] = kind
        slot[1] = state
        slot[2] = self.seq - 1
        src = self.payload
        dst = slot[3]
        i = 0
        while i < 9:
            dst[i] = src[i]
            i += 1

    def _rotate(self):
        self.file.close()
        self.active ^= 1
        self.file = self.storage.open(self._path(self.active), "wb")
        self.size = 0
        saved = self.payload
        for slot in (self.program, self.last):
            if slot is not None:
                self.payload = slot[3]
                self._write(slot[0], slot[1])
        self.payload = saved

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None
