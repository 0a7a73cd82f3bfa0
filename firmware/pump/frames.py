"""The frame codec of the serial protocol (docs/protocol.md), for the pump and for hosts.

    <seq> <KIND> <json> [<auth>] <crc32>

crc32 is 8 lowercase hex digits over everything before its space; a line is at most
MAX_FRAME bytes with its newline. The pump frames its replies and telemetry with `frame`,
hosts their requests with `frame_text` (the JSON text as signed, and the auth field); both
sides split a received line with `parse`.
"""
import json

from pump.compat import const
from pump.crc import crc32

MAX_FRAME = const(512)        # bytes, newline included
MAX_REPLY = const(1024)


def frame(seq, kind, obj):
    """One frame as bytes: `<seq> <kind> <json> <crc32>\\n` (replies, telemetry)."""
    return frame_text(seq, kind, json.dumps(obj))


def frame_text(seq, kind, text, auth=None):
    """One frame as bytes around JSON text as it is sent (what an auth tag covers), with the
    `<slot>:<counter>:<tag>` auth field when given."""
    if auth is None:
        body = ("%s %s %s" % (seq, kind, text)).encode()
    else:
        body = ("%s %s %s %s" % (seq, kind, text, auth)).encode()
    return body + (" %08x\n" % crc32(body)).encode()


def is_hex(s):
    """True when s is lowercase hex digits only."""
    for c in s:
        if c not in "0123456789abcdef":
            return False
    return True


def parse(line):
    """Split one line (bytes, without its newline) into (seq, kind, rest, crc): rest is the
    JSON text, followed by the auth field in a request that has one. A line that is not a
    frame gives a str saying why: "charset", "crc missing", "crc" or "syntax". Never raises."""
    for b in line:
        if b < 32 or b > 126:
            return "charset"
    sp = line.rfind(b" ")
    crc_text = line[sp + 1:].decode()
    if sp < 0 or len(crc_text) != 8 or not is_hex(crc_text):
        return "crc missing"
    body = line[:sp]
    crc = int(crc_text, 16)
    if crc32(body) != crc:
        return "crc"
    parts = body.decode().split(" ", 2)
    if len(parts) != 3:
        return "syntax"
    return parts[0], parts[1], parts[2], crc
