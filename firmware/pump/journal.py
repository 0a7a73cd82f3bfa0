"""Power-safe journal: fixed-size records with sequence number and CRC-32, in a ring file.

Record (48 bytes, little-endian):
    0  u16  magic 0x4A50 ("PJ")
    2  u8   kind (CHECKPOINT, PROGRAM, EVENT)
    3  u8   state index (codes.STATES)
    4  u32  sequence number, strictly increasing
    8  9 x u32 payload (meaning by kind, see the P_* and G_* field lists below)
    44 u16  CRC-32 low half, 46 u16 CRC-32 high half, over bytes 0..43

One file of `capacity` slots, written in turn and reused from the start when full: it is
opened once, so appending never opens, closes, truncates or allocates. Replay reads every
slot and keeps, for each kind, the valid record with the highest sequence number; the next
write goes to the slot after the newest record. A torn or corrupt record fails its magic or
CRC and is skipped, never believed (SR-9). A write can only tear the slot it writes, which
holds the oldest record.

Every CHECKPOINT/EVENT record is a full checkpoint of what must survive power loss (state,
program id, volume counted as delivered, alarm latch, lockout deadline, authentication
counter), so replay needs only the newest of those and the newest PROGRAM. The PROGRAM
record is copied forward whenever half the ring has been written since its last copy, so
an intact copy always exists outside the slot being written.
"""
import struct

from pump.compat import const
from pump.crc import crc32_halves

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

CAPACITY = const(2048)        # slots: 96 KiB of flash


class Journal:
    """Append and replay. `storage` is the HAL storage (open/size by name)."""

    def __init__(self, storage, name="journal.bin", capacity=CAPACITY):
        if capacity < 4:
            raise ValueError("journal capacity %d < 4" % capacity)
        self.storage = storage
        self.name = name
        self.capacity = capacity
        self.buf = bytearray(REC_SIZE)
        self.crc = [0, 0]
        self.payload = [0] * 9        # fill, then append(kind, state)
        self.seq = 0
        self.slot = 0                 # where the next record goes
        self.at = -1                  # slot the file position is at (-1: unknown)
        self.file = None
        # Latest valid records (None when there is none): [kind, state, seq, payload list]
        self.last = None              # newest CHECKPOINT/EVENT
        self.program = None           # newest PROGRAM
        self.skipped = 0              # slots that failed magic or CRC on replay
        self.records = 0              # valid records seen on replay

    # --- replay -------------------------------------------------------------------------
    def replay(self):
        """Read every slot; remember the newest valid records. Returns the count found."""
        self.close()
        self.last = None
        self.program = None
        self.skipped = 0
        self.records = 0
        self.seq = 0
        self.slot = 0
        size = self.storage.size(self.name)
        if size <= 0:
            return 0
        best = -1
        f = self.storage.open(self.name, "rb")
        try:
            i = 0
            while i < self.capacity:
                rec = f.read(REC_SIZE)
                if not rec:
                    break
                parsed = self.parse(rec)
                if parsed is None:
                    self.skipped += 1
                else:
                    self.records += 1
                    kind, _, seq, payload = parsed
                    if seq > best:
                        best = seq
                        self.slot = (i + 1) % self.capacity
                    slot = [kind, parsed[1], seq, payload]
                    if kind == PROGRAM:
                        if self.program is None or seq > self.program[2]:
                            self.program = slot
                    elif self.last is None or seq > self.last[2]:
                        self.last = slot
                i += 1
        finally:
            f.close()
        self.seq = best + 1
        return self.records

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

    def read_records(self, slot, n):
        """Up to n raw records (bytes, as stored: valid or not) from `slot` on, stopping at
        the end of the ring or of the file; for a host to parse (the LOG command)."""
        out = []
        if self.storage.size(self.name) <= 0:
            return out
        f = self.storage.open(self.name, "rb")
        try:
            f.seek(slot * REC_SIZE)
            while len(out) < n and slot + len(out) < self.capacity:
                r = f.read(REC_SIZE)
                if not r or len(r) < REC_SIZE:
                    break
                out.append(r)
        finally:
            f.close()
        return out

    # --- append -------------------------------------------------------------------------
    def open(self):
        """Open the ring for writing (creating it); called once, after replay."""
        if self.file is None:
            if self.storage.size(self.name) < 0:
                self.storage.open(self.name, "wb").close()
            self.file = self.storage.open(self.name, "r+b")
            self.at = -1
            if self.last is None:
                self.last = [0, 0, -1, [0] * 9]
            if self.program is None:
                self.program = [0, 0, -1, [0] * 9]

    def append(self, kind, state):
        """Write one record from self.payload into the next slot."""
        if self.file is None:
            self.open()
        prog = self.program
        if kind != PROGRAM and prog[0] == PROGRAM and self.seq - prog[2] >= self.capacity >> 1:
            self._copy_forward(prog)
        self._write(kind, state, self.payload)
        slot = prog if kind == PROGRAM else self.last
        slot[0] = kind
        slot[1] = state
        slot[2] = self.seq - 1
        src = self.payload
        dst = slot[3]
        i = 0
        while i < 9:
            dst[i] = src[i]
            i += 1

    def _copy_forward(self, prog):
        self._write(PROGRAM, prog[1], prog[3])
        prog[2] = self.seq - 1

    def _write(self, kind, state, p):
        buf = self.buf
        struct.pack_into(_FMT, buf, 0, _MAGIC, kind, state, self.seq,
                         p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8])
        crc = self.crc
        crc32_halves(buf, _BODY, crc)
        struct.pack_into(_CRC_FMT, buf, _BODY, crc[0], crc[1])
        f = self.file
        if self.slot != self.at:
            f.seek(self.slot * REC_SIZE)
        f.write(buf)
        f.flush()
        self.seq += 1
        self.slot += 1
        self.at = self.slot
        if self.slot >= self.capacity:
            self.slot = 0

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None
