"""Authentication of privileged frames: HMAC-SHA256 and the per-device keys (SR-11).

MicroPython has hashlib.sha256 but not always hmac, so HMAC (RFC 2104) is built here from
sha256 with 64-byte blocks; tests check it against CPython's hmac. The device holds one key
per privileged role ("c" clinician, "s" service) in a small file on its storage
(docs/protocol.md, "Keys"). Replay protection is the controller's: a strictly increasing,
journalled counter per key (Controller.accept_auth_counter).

The key store fails closed. It is one line, `K2 <seq> <clinician hex|-> <service hex|->
<crc32>`, written whole to KEY_FILES[0], then to KEY_FILES[1]. At load the valid copy with
the higher sequence wins and the other is written back from it (a power cut tears at most
one copy; a flipped bit fails the CRC of one copy). Keys are provisioned openly (KEY by
anyone) only on a factory-fresh pump: no key file at all. When key files exist but no copy
is readable the store is `locked`: no key verifies and KEY is refused, so nobody can claim a
role; the pump annunciates STORAGE_FAULT and needs a reset of its key files at the bench.
"""
import hashlib
import json
from binascii import hexlify, unhexlify

from pump.codes import CLINICIAN, SERVICE_ROLE
from pump.crc import crc32

KEY_FILES = ("keys.0", "keys.1")   # the same record in both, written one after the other
LEGACY_FILES = ("keys.json", "keys.new")   # earlier firmware: JSON, no check value
ROLE_OF = {"c": CLINICIAN, "s": SERVICE_ROLE}   # key slot -> role it authenticates
KEY_MIN_BYTES = 16
KEY_MAX_BYTES = 64
_BLOCK = 64


def _pads(key):
    """(inner, outer) padded keys of HMAC-SHA256 for key (bytes)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    inner = bytearray(_BLOCK)
    outer = bytearray(_BLOCK)
    i = 0
    while i < _BLOCK:
        k = key[i] if i < len(key) else 0
        inner[i] = k ^ 0x36
        outer[i] = k ^ 0x5C
        i += 1
    return bytes(inner), bytes(outer)


def hmac_sha256(key, msg, pads=None):
    """HMAC-SHA256 of msg (bytes) under key (bytes); pads from _pads(key) may be given."""
    inner, outer = pads if pads is not None else _pads(key)
    h = hashlib.sha256(inner)
    h.update(msg)
    d = h.digest()
    h = hashlib.sha256(outer)
    h.update(d)
    return h.digest()


def same(a, b):
    """Equal bytes, compared in time independent of where they differ."""
    if len(a) != len(b):
        return False
    acc = 0
    i = 0
    while i < len(a):
        acc |= a[i] ^ b[i]
        i += 1
    return acc == 0


def message(slot, counter, command, args_text):
    """The bytes a privileged frame's tag covers (docs/protocol.md, "Authentication")."""
    return ("%s:%d %s %s" % (slot, counter, command, args_text)).encode()


def tag_hex(key, slot, counter, command, args_text):
    """The tag a host puts in a frame (used by tests and, in CPython, by host tools)."""
    return hexlify(hmac_sha256(key, message(slot, counter, command, args_text))).decode()


class Keys:
    """The device's keys, one per slot, kept on `storage` (the HAL storage)."""

    def __init__(self, storage):
        self.storage = storage
        self.load()

    def load(self):
        """Read the keys: the valid copy with the higher sequence, written back over the
        other when that one is missing, older or corrupt."""
        self.pads = {}                # slot -> HMAC pads of its key
        self.hexes = {}               # slot -> key in hex, as stored
        self.seq = 0                  # sequence of the copy in force
        self.fault = False            # a key file was found corrupt (or a write torn)
        self.locked = False           # key files exist but none can be read: fail closed
        self.empty = True             # no key store at all: factory state
        st = self.storage
        if st is None:
            return
        best = None
        bad = 0
        present = 0
        for name in KEY_FILES:
            r = self._read(name)
            if r is None:
                continue
            present += 1
            if r is False:
                bad += 1
            elif best is None or r[0] > best[0]:
                best = r
        legacy = 0
        for name in LEGACY_FILES:
            if st.size(name) >= 0:
                legacy += 1
        if best is None and bad == 0 and legacy:
            best = self._legacy()
            if best is None:
                self.fault = True
                self.locked = True
                self.empty = False
                return
        if best is None:
            if present + legacy > 1:
                self.fault = True             # copies exist, none readable: fail closed
                self.locked = True
                self.empty = False
            return                            # nothing stored (or the first write torn)
        self.empty = False
        self.fault = bad > 0
        self.seq = best[0]
        for slot in ROLE_OF:
            h = best[1].get(slot)
            if h is not None:
                self.hexes[slot] = h
                self.pads[slot] = _pads(unhexlify(h))
        text = _line(best[0], self.hexes)
        for name in KEY_FILES:
            r = self._read(name)
            if not r or r[0] != best[0]:
                self._write(name, text)       # repair from the intact copy
        for name in LEGACY_FILES:
            st.remove(name)

    def _read(self, name):
        """(seq, {slot: hex}) of a valid copy; None when the file is missing; False when it
        is present but not valid."""
        st = self.storage
        if st.size(name) < 0:
            return None
        try:
            f = st.open(name, "rb")
            try:
                raw = f.read(400)
            finally:
                f.close()
            parts = raw.decode().split(" ")
            if len(parts) != 5 or parts[0] != "K2":
                return False
            d = {}
            for slot, h in (("c", parts[2]), ("s", parts[3])):
                if h != "-":
                    if not valid_hex(h):
                        return False
                    d[slot] = h
            seq = int(parts[1])
            if raw != _line(seq, d).encode():       # byte for byte, CRC included
                return False
            return seq, d
        except Exception:  # noqa: BLE001 - a bad file is a bad copy, never a crash
            return False

    def _legacy(self):
        """Keys of earlier firmware (JSON in both LEGACY_FILES, no check value): trusted
        only when both copies are there and identical, else None (fail closed)."""
        texts = []
        for name in LEGACY_FILES:
            if self.storage.size(name) < 0:
                return None
            try:
                f = self.storage.open(name, "rb")
                try:
                    texts.append(f.read(400))
                finally:
                    f.close()
            except OSError:
                return None
        if texts[0] != texts[1]:
            return None
        try:
            d = json.loads(texts[0])
        except Exception:  # noqa: BLE001 - ValueError on both interpreters; be broad
            return None
        if not isinstance(d, dict):
            return None
        out = {}
        for slot in d:
            if slot not in ROLE_OF or not valid_hex(d[slot]):
                return None
            out[slot] = d[slot]
        return 0, out

    def _write(self, name, text):
        f = self.storage.open(name, "wb")
        try:
            f.write(text.encode())
            f.flush()
        finally:
            f.close()

    def provisioned(self):
        out = []
        for slot in ROLE_OF:
            if slot in self.pads:
                out.append(slot)
        return out

    def factory(self):
        """True on a factory-fresh pump (no key store at all): KEY is open to anyone."""
        return self.empty and self.storage is not None

    def set(self, slot, key_hex):
        """Store a key for slot; False (nothing changed) when slot or key is invalid or the
        store is locked."""
        if slot not in ROLE_OF or not valid_hex(key_hex) or self.storage is None \
                or self.locked:
            return False
        d = {}
        for s in self.hexes:
            d[s] = self.hexes[s]
        d[slot] = key_hex.lower()
        text = _line(self.seq + 1, d)
        # Both copies, one after the other: a power cut tears at most one of them, and
        # load() takes the other (the previous keys, or the new ones).
        for name in KEY_FILES:
            self._write(name, text)
        self.load()
        return self.hexes.get(slot) == key_hex.lower()

    def verify(self, slot, msg, tag):
        """True when tag (bytes) is the HMAC of msg under the slot's key."""
        pads = self.pads.get(slot)
        if pads is None:
            return False
        return same(hmac_sha256(None, msg, pads), tag)


def _line(seq, hexes):
    body = "K2 %d %s %s" % (seq, hexes.get("c", "-"), hexes.get("s", "-"))
    return "%s %d\n" % (body, crc32(body.encode()))


def valid_hex(h):
    """A key in hex: an even number of hex digits, KEY_MIN..KEY_MAX bytes."""
    if not isinstance(h, str) or len(h) % 2:
        return False
    if not (KEY_MIN_BYTES * 2 <= len(h) <= KEY_MAX_BYTES * 2):
        return False
    for c in h:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True
