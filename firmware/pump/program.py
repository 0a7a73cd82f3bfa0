"""Programs: what the controller accepts to deliver, and the basic range checks.

A Program is only built by the functions here, after validation; the controller takes
nothing else. Units: rate in µL/h, volumes in nL (VTBI) or µL (entry), integers only.
"""
from pump.codes import BAD_INPUT, RATE_VOLUME_MISMATCH
from pump.crc import crc32

RATE_MIN_UL_PER_H = 100        # 0.1 mL/h
RATE_MAX_UL_PER_H = 100000     # 100 mL/h
VTBI_MIN_UL = 1000             # 1 mL
VTBI_MAX_UL = 1000000          # 1000 mL


class Program:
    """An accepted program. `check` is a CRC over the delivery fields, so a copy kept
    elsewhere (the safety monitor's) can prove it still matches."""

    def __init__(self, pid, rate_ul_per_h, vtbi_nl, drug=0, conc_pg_per_ml=0,
                 dose_ng_per_day=0, bag_hours=0, flags=0):
        self.pid = pid
        self.rate_ul_per_h = rate_ul_per_h
        self.vtbi_nl = vtbi_nl
        self.drug = drug
        self.conc_pg_per_ml = conc_pg_per_ml
        self.dose_ng_per_day = dose_ng_per_day
        self.bag_hours = bag_hours
        self.flags = flags
        self.check = self.compute_check()

    def fields(self):
        return (self.pid, self.rate_ul_per_h, self.vtbi_nl, self.drug, self.conc_pg_per_ml,
                self.dose_ng_per_day, self.bag_hours, self.flags)

    def compute_check(self):
        b = bytearray(32)
        i = 0
        for v in self.fields():
            b[i] = v & 0xFF
            b[i + 1] = (v >> 8) & 0xFF
            b[i + 2] = (v >> 16) & 0xFF
            b[i + 3] = (v >> 24) & 0xFF
            i += 4
        return crc32(b) & 0x3FFFFFFF

    def intact(self):
        return self.check == self.compute_check()


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def basic(pid, rate_ul_per_h, vtbi_ul):
    """A Program from a rate (µL/h) and VTBI (µL), or a rejection code. Never raises."""
    if not (_is_int(pid) and _is_int(rate_ul_per_h) and _is_int(vtbi_ul)):
        return BAD_INPUT
    if pid < 0 or pid >= (1 << 30):
        return BAD_INPUT
    if not (RATE_MIN_UL_PER_H <= rate_ul_per_h <= RATE_MAX_UL_PER_H):
        return RATE_VOLUME_MISMATCH
    if not (VTBI_MIN_UL <= vtbi_ul <= VTBI_MAX_UL):
        return RATE_VOLUME_MISMATCH
    return Program(pid, rate_ul_per_h, vtbi_ul * 1000)


def from_record(payload):
    """Rebuild a Program from a journal PROGRAM payload; None when it fails its check."""
    p = Program(payload[0], payload[1], payload[2], payload[3], payload[4], payload[5],
                payload[6], payload[7])
    if p.check != payload[8]:
        return None
    return p


def to_record(p, payload):
    """Fill a journal PROGRAM payload from a Program."""
    f = p.fields()
    i = 0
    for v in f:
        payload[i] = v
        i += 1
    payload[8] = p.check
