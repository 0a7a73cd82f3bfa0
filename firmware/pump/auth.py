"""Authentication of privileged frames: HMAC-SHA256 and the per-device keys (SR-11).

MicroPython has hashlib.sha256 but not always hmac, so HMAC (RFC 2104) is built here from
sha256 with 64-byte blocks; tests check it against CPython's hmac. The device holds one key
per privileged role ("c" clinician, "s" service) in a small JSON file on its storage
(docs/protocol.md, "Keys"). Replay protection is the controller's: a strictly increasing,
journalled counter (Controller.accept_auth_counter).
"""
import hashlib
import json
from binascii import hexlify, unhexlify

from pump.codes import CLINICIAN, SERVICE_ROLE

KEYS_FILE = "keys.json"
KEYS_NEW = "keys.new"         # written first: a complete copy survives a torn KEYS_FILE
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
        self.pads = {}
        self.hexes = {}
        self.load()

    def load(self):
        """Read the keys: KEYS_FILE, or its copy KEYS_NEW when a power cut tore it."""
        self.pads = {}
        self.hexes = {}
        d = self._read(KEYS_FILE)
        if d is None:
            d = self._read(KEYS_NEW)
        if d is None:
            return
        for slot in ROLE_OF:
            h = d.get(slot)
            if h is not None and valid_hex(h):
                self.hexes[slot] = h
                self.pads[slot] = _pads(unhexlify(h))

    def _read(self, name):
        st = self.storage
        if st is None or st.size(name) <= 0:
            return None
        try:
            f = st.open(name, "r")
            try:
                d = json.loads(f.read())
            finally:
                f.close()
            return d if isinstance(d, dict) else None
        except Exception:  # noqa: BLE001 - a bad file is no file, never a crash
            return None

    def _write(self, name, text):
        f = self.storage.open(name, "w")
        try:
            f.write(text)
        finally:
            f.close()

    def provisioned(self):
        out = []
        for slot in ROLE_OF:
            if slot in self.pads:
                out.append(slot)
        return out

    def set(self, slot, key_hex):
        """Store a key for slot; False (nothing changed) when slot or key is invalid."""
        if slot not in ROLE_OF or not valid_hex(key_hex) or self.storage is None:
            return False
        d = {}
        for s in self.hexes:
            d[s] = self.hexes[s]
        d[slot] = key_hex
        text = json.dumps(d)
        # The copy first, then the file: a power cut tears at most one of them, and load()
        # falls back to the copy. A torn file must never read as "no keys" (factory state).
        self._write(KEYS_NEW, text)
        self._write(KEYS_FILE, text)
        self.load()
        return slot in self.pads

    def verify(self, slot, msg, tag):
        """True when tag (bytes) is the HMAC of msg under the slot's key."""
        pads = self.pads.get(slot)
        if pads is None:
            return False
        return same(hmac_sha256(None, msg, pads), tag)


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
