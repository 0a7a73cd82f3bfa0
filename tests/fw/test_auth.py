"""Authentication of privileged frames (SR-11): a tag authenticates only when it is the full
HMAC under a key the device holds for that slot; keys are 16 to 64 bytes of hex; a keys file
with a bad entry provisions nothing for it. Runs on CPython and MicroPython.
"""
from binascii import hexlify, unhexlify

from fakehal import FakeHal, Storage, tmpdir
from memstore import MemStore, image

from boards.memuart import MemUart
from pump import auth, codes, protocol
from pump.controller import Controller
from pump.crc import crc32
from pump.runtime import Runtime

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


# --- the key store at boot: fail closed, a torn change, a lost or unreadable copy --------------

KEY_S = "5e" * 32


def _boot(tag, st):
    """The pump booted (Runtime.boot) on a board whose flash is `st`: (controller, door)."""
    hal = FakeHal(tmpdir("ks-" + tag))
    hal.storage = st
    ctl = Controller(hal)
    rt = Runtime(hal, ctl)
    rt.boot()
    return ctl, rt.proto


def _key_refused_for_everyone(door):
    for role in (codes.PATIENT, codes.CLINICIAN, codes.SERVICE_ROLE):
        assert door.execute("KEY", {"slot": "c", "key": KEY_C}, role, 0) == \
            codes.NOT_AUTHORISED, role


def test_sr11_key_files_present_but_none_readable_fail_closed_at_boot():
    """Key files on flash, none of them a readable store (both copies emptied, a bad copy
    beside a file of earlier firmware, earlier firmware's files empty, not JSON, not an
    object, naming an unknown slot or a short key): STORAGE_FAULT at boot, no key in force,
    and nobody can provision one (not even on the factory path)."""
    legacy = '{"c": "%s"}' % KEY_C
    cases = (
        {"keys.0": b"", "keys.1": b""},
        {"keys.0": b"garbage", "keys.json": legacy.encode()},
        {"keys.json": b"", "keys.new": b""},
        {"keys.json": b"not json", "keys.new": b"not json"},
        {"keys.json": b"[1]", "keys.new": b"[1]"},
        {"keys.json": b'{"x": "' + KEY_C.encode() + b'"}',
         "keys.new": b'{"x": "' + KEY_C.encode() + b'"}'},
        {"keys.json": b'{"c": "abcd"}', "keys.new": b'{"c": "abcd"}'},
    )
    for i, files in enumerate(cases):
        ctl, door = _boot("closed-%d" % i, MemStore(files))
        assert ctl.notice == codes.STORAGE_FAULT, (i, ctl.notice)
        st = door.execute("STATUS", {}, codes.PATIENT, 0)
        assert st["key_store"] == "locked" and st["keys"] == [], (i, st)
        _key_refused_for_everyone(door)


def test_sr11_a_factory_fresh_pump_boots_without_a_fault_and_takes_its_first_key():
    ctl, door = _boot("fresh", MemStore())
    assert ctl.notice is None
    assert door.execute("STATUS", {}, codes.PATIENT, 0)["key_store"] == "factory"
    assert door.execute("KEY", {"slot": "c", "key": KEY_C}, codes.PATIENT, 0) == \
        {"keys": ["c"]}
    # from now on only the service role may set keys
    assert door.execute("KEY", {"slot": "s", "key": KEY_S}, codes.PATIENT, 0) == \
        codes.NOT_AUTHORISED


def _provisioned():
    st = MemStore()
    k = auth.Keys(st)
    assert k.set("c", KEY_C)
    return st


def test_sr11_a_key_change_cut_at_any_byte_leaves_the_old_keys_or_the_new_whole():
    """The service key added, the power cut at every write and every byte of it: the pump
    boots with the old keys or the new ones, never a mix or none; once a whole copy of the
    new keys is on flash they are in force; and the copies are made equal at that boot, so
    that a later flipped bit in either cannot bring back the keys they replaced."""
    st = _provisioned()
    start = st.snapshot()
    st.log = []
    assert auth.Keys(st).set("s", KEY_S)
    log = st.log
    old = {"c": KEY_C}
    new = {"c": KEY_C, "s": KEY_S}
    whole_new = False
    for i in range(len(log)):
        name, pos, b = log[i]
        for k in sorted(set((0, 1, len(b) // 2, len(b) - 1, len(b)))):
            img = MemStore(image(start, log, i, k))
            keys = auth.Keys(img)
            assert keys.hexes in (old, new), (i, k, keys.hexes)
            if whole_new:
                assert keys.hexes == new, (i, k)
            a = img.files[auth.KEY_FILES[0]]
            assert img.files.get(auth.KEY_FILES[1]) == a, (i, k)      # repaired
            for j in (0, 20, len(a) - 3):
                flipped = MemStore(img.snapshot())
                flipped.files[auth.KEY_FILES[0]][j] ^= 0x04
                assert auth.Keys(flipped).hexes == keys.hexes, (i, k, j)
        if name == auth.KEY_FILES[0] and pos >= 0:
            whole_new = True          # the first copy's write is complete from here on


def test_sr11_a_lost_key_file_is_restored_from_its_copy_and_is_no_factory_reset():
    for name in auth.KEY_FILES:
        st = _provisioned()
        del st.files[name]
        ctl, door = _boot("lost-" + name, st)
        assert door.execute("STATUS", {}, codes.PATIENT, 0)["keys"] == ["c"]
        # nobody may provision a key as on a factory-fresh pump
        assert door.execute("KEY", {"slot": "c", "key": KEY_S}, codes.PATIENT, 0) == \
            codes.NOT_AUTHORISED
        assert st.files[auth.KEY_FILES[0]] == st.files[auth.KEY_FILES[1]]


class _BadBlock(MemStore):
    """Flash whose `bad` file cannot be read (the read raises OSError)."""

    def __init__(self, files, bad):
        MemStore.__init__(self, files)
        self.bad = bad

    def open(self, name, mode):
        if name == self.bad and "r" in mode:
            raise OSError(5, "read error")
        return MemStore.open(self, name, mode)


def test_sr11_a_key_file_that_cannot_be_read_is_a_bad_copy_never_a_crash():
    for name in auth.KEY_FILES:
        st = _provisioned()
        keys = auth.Keys(_BadBlock(st.snapshot(), name))
        assert keys.hexes == {"c": KEY_C} and keys.fault and not keys.locked, name
    both = _BadBlock(_provisioned().snapshot(), auth.KEY_FILES[0])
    both.files[auth.KEY_FILES[1]] = bytearray(b"garbage")
    assert auth.Keys(both).locked
    text = ('{"c": "%s"}' % KEY_C).encode()
    for name in auth.LEGACY_FILES:
        keys = auth.Keys(_BadBlock({"keys.json": text, "keys.new": text}, name))
        assert keys.locked and keys.fault and keys.provisioned() == [], name


def test_sr11_an_intact_key_store_boots_without_writing():
    """No write at a boot with both copies intact: no wear, and no write a power cut could
    tear."""
    st = _provisioned()
    st.budget = 0                     # the first byte written cuts the power
    keys = auth.Keys(st)
    assert keys.hexes == {"c": KEY_C} and not keys.fault
