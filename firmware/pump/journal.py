"""Power-safe journal: fixed-size records with sequence number and CRC-32, in two mirrored
ring files, so that no latch, program or count depends on one record alone.

Record (64 bytes, little-endian):
    0  u32  sequence number, strictly increasing
    4  u16  magic 0x4A50 ("PJ")
    6  u8   kind (CHECKPOINT, PROGRAM, EVENT)
    7  u8   state index (codes.STATES)
    8  13 x u32 payload (meaning by kind, see the P_* and G_* field lists below)
    60 u16 CRC-32 low half, 62 u16 CRC-32 high half, over bytes 0..59

Entry `seq` goes to slot `seq % capacity`, over the entry `seq - capacity`. The capacity is
chosen so that the first byte written always differs from the byte it replaces in two bits
at least (`_lap_bits_ok`): a write torn after any number of bytes leaves a slot that fails
its CRC (never the old record intact, as if the write had not begun), and differs from its
twin in the other file by more than the one bit a flip changes, so a torn write and a
flipped bit are told apart.

Each entry is written twice: to slot `seq % capacity` of the primary file, flushed, then to
the same slot of the mirror file (`name` + ".2"), flushed. The files are opened once, so
appending never opens, closes, truncates or allocates. A power cut can tear only the write
in progress: the primary's copy (the entry is lost, as if the cut came just before it: the
motor never moves on a reservation that is not on flash, and the controller treats the lost
entry as a possible latch, `torn`) or the mirror's (the primary's copy is complete: nothing
is lost). Any other bad or missing copy is corruption (`corrupt`): the other copy is used and
written back over it at boot (`repair`), and the controller raises STORAGE_FAULT. Replay
keeps, for each kind, the valid record with the highest sequence number from either file.

Every CHECKPOINT/EVENT record is a full checkpoint of what must survive power loss (state,
program id, volume counted as delivered, alarm latch, lockout deadline, the authentication
counters), so replay needs only the newest of those and the newest PROGRAM. The PROGRAM
record is copied forward whenever half the ring has been written since its last copy, so
two intact copies always exist outside the slot being written; the journal keeps the newest
PROGRAM in memory for that (`program`, from replay, then from each PROGRAM appended), and
`last` is the newest CHECKPOINT/EVENT that replay found (what a boot restores).

The 48-byte single-file journal of earlier firmware is not read (docs/reliability.md): its
slots fail the CRC at this size, so such a file reads as corruption with nothing valid, and
the pump fails closed (Controller.boot: LOCKOUT with STORAGE_FAULT, a clinician's override).
"""
import struct
from array import array

from pump.compat import const
from pump.crc import crc32_halves, crc32_of

REC_SIZE = const(64)
_BODY = const(60)
_MAGIC = const(0x4A50)
_FMT = "<IHBB13I"
_CRC_FMT = "<HH"
FIELDS = const(13)

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
P_AUTH_COUNTER = const(7)     # highest authentication counter accepted for the clinician key
P_FLAGS = const(8)            # bit flags (controller-defined)
P_AUTH_SERVICE = const(9)     # highest authentication counter accepted for the service key
# 10..12: the controller's (pump/controller.py P_INTERRUPTED_S, P_BAG_START_S, P_CYCLE_RUN_S)
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

CAPACITY = const(2000)        # slots a file: 2 x 125 KiB of flash (not a multiple of 256)

# Slot status bits while replaying (one byte a slot).
_A_BAD = const(1)             # the primary's copy is present but invalid
_B_BAD = const(2)             # the mirror's copy is present but invalid
_A_NONE = const(4)            # no primary copy (beyond the end of the file)
_B_NONE = const(8)            # no mirror copy
_TWINS = const(16)            # both copies valid, with different sequences


def _lap_bits_ok(capacity):
    """The entry written to a slot has its sequence `capacity` above the one it replaces, so
    their first bytes (the sequence's low byte) differ by d = capacity mod 256: never 0 and
    never a single bit's worth (+-2**j), so that a write torn after its first byte is never
    taken for one flipped bit of the old entry, nor for the old entry intact. (Adding d to a
    byte changes one bit of it for some byte exactly when d or 256 - d is a power of two,
    i.e. has one bit set: x & (x - 1) == 0; d = 0 changes none.)"""
    d = capacity % 256
    return (d & (d - 1)) != 0 and ((256 - d) & (255 - d)) != 0


class Journal:
    """Append and replay. `storage` is the HAL storage (open/size by name)."""

    def __init__(self, storage, name="journal.bin", capacity=CAPACITY):
        if capacity < 5 or not _lap_bits_ok(capacity):
            raise ValueError("journal capacity %d: at least 5, and adding it to a byte must "
                             "change two bits of it at least" % capacity)
        self.storage = storage
        self.name = name
        self.mirror = name + ".2"
        self.capacity = capacity
        self.buf = bytearray(REC_SIZE)
        self.crc = array("H", bytes(4))   # the record's CRC-32 halves (crc32_halves)
        self.payload = [0] * FIELDS   # fill, then append(kind, state)
        self.file = None              # both rings, open for appending (open()), and
        self.file2 = None             # `at`: the slot both file positions are at
        self._forget()

    def _forget(self):
        """What replay finds in a journal with no entry (replay starts from it)."""
        self.seq = 0
        self.slot = 0                 # where the next record goes
        # Latest valid records (None when there is none): [kind, state, seq, payload list]
        self.last = None              # newest CHECKPOINT/EVENT (replay's)
        self.program = None           # newest PROGRAM
        self.skipped = 0              # copies that failed magic or CRC on replay
        self.records = 0              # entries with at least one valid copy on replay
        self.torn = False             # the newest entry's primary copy was torn (lost)
        self.corrupt = 0              # copies bad or missing other than by a torn write
        self.repaired = 0             # copies written back from the other file at boot

    # --- replay -------------------------------------------------------------------------
    def replay(self):
        """Read every slot of both files; remember the newest valid records; find torn and
        corrupt copies and write each corrupt copy back from its intact twin. Returns the
        number of entries found."""
        self.close()
        self._forget()
        cap = self.capacity
        flags = bytearray(cap)        # each slot's status bits (_A_BAD ... _TWINS)
        fa = self._open_read(self.name)
        fb = self._open_read(self.mirror)
        best = -1                     # the newest entry's sequence
        bslot = -1                    # and its slot (-1: no entry)
        try:
            i = 0
            while i < cap:
                ra = fa.read(REC_SIZE) if fa is not None else b""
                rb = fb.read(REC_SIZE) if fb is not None else b""
                pa = self._take(ra, i, flags, _A_BAD, _A_NONE)
                pb = self._take(rb, i, flags, _B_BAD, _B_NONE)
                p = pa
                if pa is None or (pb is not None and pb[2] > pa[2]):
                    p = pb
                if pa is not None and pb is not None and pa[2] != pb[2]:
                    flags[i] |= _TWINS
                if p is not None:
                    self.records += 1
                    if p[2] > best:
                        best = p[2]
                        bslot = i
                    self._keep(p)
                i += 1
        finally:
            for f in (fa, fb):
                if f is not None:
                    f.close()
        self._classify(flags, bslot)
        if self.records:
            self.seq = best + 1
            self.slot = (bslot + 1) % cap
        return self.records

    def _open_read(self, name):
        if self.storage.size(name) <= 0:
            return None
        return self.storage.open(name, "rb")

    def _take(self, rec, i, flags, bad, none):
        if not rec:
            flags[i] |= none
            return None
        p = self.parse(rec)
        if p is None:
            flags[i] |= bad
            self.skipped += 1
        return p

    def _keep(self, p):
        slot = [p[0], p[1], p[2], p[3]]
        if p[0] == PROGRAM:
            if self.program is None or p[2] > self.program[2]:
                self.program = slot
        elif self.last is None or p[2] > self.last[2]:
            self.last = slot

    def _classify(self, flags, bslot):
        """Sort every slot whose two copies disagree into the torn write (a power cut inside
        the newest entry's write, in the slot after the newest entry's: the first slot when
        there is none) or corruption, and repair what can be repaired."""
        cap = self.capacity
        nxt = (bslot + 1) % cap
        fix = []
        i = 0
        while i < cap:
            f = flags[i]
            a_ok = not f & (_A_BAD | _A_NONE)
            b_ok = not f & (_B_BAD | _B_NONE)
            if f & _A_NONE and f & _B_NONE:
                pass                                   # beyond both files: never written
            elif i == nxt and f & _A_BAD and not self._one_bit(i):
                self.torn = True                       # the primary tore: the entry is lost
                if f & _B_BAD:
                    self.corrupt += 1                  # and the mirror's older copy is bad
            elif i == bslot and a_ok and (f & _TWINS or not b_ok) and not self._one_bit(i):
                fix.append(i)                          # the mirror tore or was not yet
                                                       # written: nothing was lost
            elif f & _TWINS:
                self.corrupt += 1                      # an older copy next to a newer one
                fix.append(i)
            elif not (a_ok and b_ok):
                self.corrupt += 1
                if a_ok or b_ok:
                    fix.append(i)
            i += 1
        if fix:
            self._repair(fix)

    def _one_bit(self, i):
        """True when slot i's two copies differ in exactly one bit: a flipped bit, not a
        torn write (a write torn after k >= 1 bytes changes the first byte, which differs
        from the byte it replaces in at least two bits: see `_lap_bits_ok`)."""
        a = self._slot_bytes(self.name, i)
        b = self._slot_bytes(self.mirror, i)
        if len(a) != REC_SIZE or len(b) != REC_SIZE:
            return False
        n = 0
        for j in range(REC_SIZE):
            x = a[j] ^ b[j]
            while x:
                n += x & 1
                x >>= 1
        return n == 1

    def _slot_bytes(self, name, i):
        f = self._open_read(name)
        if f is None:
            return b""
        try:
            f.seek(i * REC_SIZE)
            return f.read(REC_SIZE)
        finally:
            f.close()

    def _repair(self, slots):
        """Write each listed slot's newest valid copy over the other file's copy."""
        fa, fb = self._open_both()
        try:
            for i in slots:
                fa.seek(i * REC_SIZE)
                ra = fa.read(REC_SIZE)
                fb.seek(i * REC_SIZE)
                rb = fb.read(REC_SIZE)
                pa = self.parse(ra) if ra else None
                pb = self.parse(rb) if rb else None
                if pb is None or (pa is not None and pa[2] >= pb[2]):
                    good, dst = ra, fb
                else:
                    good, dst = rb, fa
                self._pad(dst, i)
                dst.seek(i * REC_SIZE)
                dst.write(good)
                dst.flush()
                self.repaired += 1
        finally:
            fa.close()
            fb.close()

    def _pad(self, f, i):
        """Make file f long enough to hold slot i's start (i < capacity): zero slots, which
        read as corrupt until written."""
        f.seek(0, 2)
        end = f.tell()
        want = i * REC_SIZE
        if end < want:
            f.write(bytes(want - end))

    def parse(self, rec):
        """(kind, state, seq, payload) of a 64-byte record, or None when it is not valid."""
        if len(rec) != REC_SIZE:
            return None
        c = crc32_of(rec, _BODY)
        lo, hi = struct.unpack_from(_CRC_FMT, rec, _BODY)
        if lo != c & 0xFFFF or hi != c >> 16:
            return None
        v = struct.unpack_from(_FMT, rec, 0)
        if v[1] != _MAGIC or v[2] not in (CHECKPOINT, PROGRAM, EVENT):
            return None
        return (v[2], v[3], v[0], list(v[4:]))

    def read_records(self, slot, n):
        """Up to n raw records (bytes, as stored) from `slot` on, stopping at the end of the
        ring or of the file; the mirror's copy where the primary's is not valid. For a host
        to parse (the LOG command)."""
        out = []
        f = self._open_read(self.name)
        if f is None:
            return out
        g = self._open_read(self.mirror)
        try:
            f.seek(slot * REC_SIZE)
            if g is not None:
                g.seek(slot * REC_SIZE)
            while len(out) < n and slot + len(out) < self.capacity:
                r = f.read(REC_SIZE)
                r2 = g.read(REC_SIZE) if g is not None else b""
                if not r or len(r) < REC_SIZE:
                    break
                if self.parse(r) is None and self.parse(r2) is not None:
                    r = r2
                out.append(r)
        finally:
            f.close()
            if g is not None:
                g.close()
        return out

    # --- append -------------------------------------------------------------------------
    def open(self):
        """Open both rings for writing (creating them); called once, after replay."""
        if self.file is None:
            self.file, self.file2 = self._open_both()
            self.at = 0               # a file opened is at its start

    def _open_both(self):
        """Both rings, opened for update at their start (each created when missing)."""
        st = self.storage
        for name in (self.name, self.mirror):
            if st.size(name) < 0:
                st.open(name, "wb").close()
        return st.open(self.name, "r+b"), st.open(self.mirror, "r+b")

    def append(self, kind, state):
        """Write one entry from self.payload into the next slot of both files. A PROGRAM
        entry is also kept in memory (a new list: programming is not the control step's
        path); a CHECKPOINT/EVENT allocates nothing."""
        if self.file is None:
            self.open()
        if kind == PROGRAM:
            self._write(PROGRAM, state, self.payload)
            self.program = [PROGRAM, state, self.seq - 1, list(self.payload)]
            return
        prog = self.program
        if prog is not None and self.seq - prog[2] >= self.capacity >> 1:
            self._copy_forward(prog)
        self._write(kind, state, self.payload)

    def _copy_forward(self, prog):
        self._write(PROGRAM, prog[1], prog[3])
        prog[2] = self.seq - 1

    def _write(self, kind, state, p):
        buf = self.buf
        struct.pack_into(_FMT, buf, 0, self.seq, _MAGIC, kind, state,
                         p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10],
                         p[11], p[12])
        crc = self.crc
        crc32_halves(buf, _BODY, crc)
        struct.pack_into(_CRC_FMT, buf, _BODY, crc[0], crc[1])
        f = self.file
        g = self.file2
        if self.slot != self.at:
            self._pad(f, self.slot)
            self._pad(g, self.slot)
            f.seek(self.slot * REC_SIZE)
            g.seek(self.slot * REC_SIZE)
        f.write(buf)
        f.flush()
        g.write(buf)
        g.flush()
        self.seq += 1
        self.slot += 1
        self.at = self.slot
        if self.slot >= self.capacity:
            self.slot = 0

    def close(self):
        for f in (self.file, self.file2):
            if f is not None:
                f.close()
        self.file = None
        self.file2 = None
