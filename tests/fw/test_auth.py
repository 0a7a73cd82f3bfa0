"""Authentication of privileged frames (SR-11): a tag authenticates only when it is the full
HMAC under a key the device holds for that slot; keys are 16 to 64 bytes of hex; a keys file
with a bad entry provisions nothing for it. Runs on CPython and MicroPython.
"""
from binascii import hexlify, unhexlify

from fakehal import FakeHal, Storage, tmpdir

from boards.memuart import MemUart
from pump import auth, codes, protocol
from pump.controller import Controller
from pump.crc import crc32

KEY_C = "c1" * 32


def _keys(tag):
    return auth.Keys(Storage(tmpdir("auth-" + tag)))


def _tag(key_hex, msg):
    return auth.hmac_sha256(unhexlify(key_hex), msg)


def test_sr11_only_the_full_tag_of_the_held_key_authenticates():
    k = _keys("tag")
    assert k.set("c", KEY_C)
    msg = auth.message("c", 7, "START", "{}")
    good = _tag(KEY_C, msg)
    assert k.verify("c", msg, good)
    # any single byte changed, wherever it is, refuses it
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        assert not k.verify("c", msg, bytes(bad)), i
    # a truncated or extended tag refuses it, even when its bytes match
    for bad in (good[:16], good[:31], good + b"\x00", b""):
        assert not k.verify("c", msg, bad), len(bad)
    # another message, another slot, another key
    assert not k.verify("c", auth.message("c", 8, "START", "{}"), good)
    assert not k.verify("s", msg, good)
    assert not k.verify("c", msg, _tag("c2" * 32, msg))


def test_sr11_a_slot_without_a_key_authenticates_nothing():
    k = _keys("noslot")
    assert k.set("c", KEY_C)
    msg = auth.message("s", 1, "CAL", "{}")
    for tag in (b"", b"\x00" * 32, _tag(KEY_C, msg)):
        assert not k.verify("s", msg, tag)
    assert k.provisioned() == ["c"]
    none = auth.Keys(None)                           # no storage: no keys at all
    assert none.provisioned() == [] and not none.verify("c", msg, _tag(KEY_C, msg))
    assert not none.set("c", KEY_C)


def test_sr11_service_frame_refused_when_only_the_clinician_key_is_held():
    hal = FakeHal(tmpdir("auth-frame"))
    ctl = Controller(hal)
    ctl.boot()
    uart = MemUart()
    proto = protocol.Protocol(ctl, uart, hal.storage)
    assert proto.keys.set("c", KEY_C)
    body = "5 SERVICE {}"
    tag = hexlify(_tag("5e" * 32, auth.message("s", 1, "SERVICE", "{}"))).decode()
    line = ("%s s:1:%s" % (body, tag)).encode()
    uart.feed(line + (" %08x\n" % crc32(line)).encode())
    proto.poll(hal.ticks_ms())
    reply = uart.take()
    assert b" ERR " in reply and codes.NOT_AUTHORISED.encode() in reply, reply
    assert ctl.state == codes.IDLE


def test_sr11_key_length_16_to_64_bytes_of_hex():
    for n, ok in ((16, True), (15, False), (64, True), (65, False), (32, True)):
        assert auth.valid_hex("ab" * n) == ok, n
    assert not auth.valid_hex("a" * 33)              # an odd number of digits
    assert not auth.valid_hex("g" * 32) and not auth.valid_hex(None)
    assert auth.valid_hex("0123456789abcdefABCDEF0123456789")
    k = _keys("len")
    assert not k.set("c", "ab" * 15) and not k.set("c", "ab" * 65)
    assert not k.set("x", KEY_C)
    assert k.provisioned() == []
    assert k.set("c", "ab" * 16) and k.set("s", "cd" * 64)
    assert k.provisioned() == ["c", "s"]


def _store_line(seq, c_hex, s_hex):
    body = "K2 %d %s %s" % (seq, c_hex, s_hex)
    return ("%s %d\n" % (body, crc32(body.encode()))).encode()


def _put(st, name, data):
    f = st.open(name, "wb")
    f.write(data)
    f.close()


def test_sr11_a_bad_entry_in_the_keys_file_provisions_nothing_for_it():
    """A copy of the key store with a key of the wrong length is not believed, even with a
    matching check value: the other copy's keys are used, and with no good copy the store
    fails closed (no role can be claimed, no key can be provisioned)."""
    st = Storage(tmpdir("auth-file"))
    short = _store_line(2, KEY_C, "abcd")            # the service key is too short
    good = _store_line(1, KEY_C, "-")
    _put(st, auth.KEY_FILES[0], short)
    _put(st, auth.KEY_FILES[1], good)
    k = auth.Keys(st)
    assert k.provisioned() == ["c"] and k.fault and not k.locked
    msg = auth.message("s", 1, "CAL", "{}")
    assert not k.verify("s", msg, _tag("abcd", msg))
    assert k.verify("c", msg.replace(b"s:", b"c:"), _tag(KEY_C, msg.replace(b"s:", b"c:")))
    # the bad copy was written back from the good one: the next boot finds no fault
    again = auth.Keys(st)
    assert again.provisioned() == ["c"] and not again.fault
    # both copies bad: closed, and a key cannot be set
    st2 = Storage(tmpdir("auth-file-2"))
    for name in auth.KEY_FILES:
        _put(st2, name, short)
    closed = auth.Keys(st2)
    assert closed.locked and closed.provisioned() == [] and not closed.factory()
    assert not closed.set("s", "5e" * 32)
    # the higher sequence of two good copies wins (the later of two writes)
    st3 = Storage(tmpdir("auth-file-3"))
    _put(st3, auth.KEY_FILES[0], _store_line(4, KEY_C, "-"))
    _put(st3, auth.KEY_FILES[1], _store_line(5, KEY_C, "5e" * 32))
    assert auth.Keys(st3).provisioned() == ["c", "s"]
