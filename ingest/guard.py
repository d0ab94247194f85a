"""Limits checked on the raw bytes of a payload before any decoder sees them. Pure functions.

A decoder is the wrong place to meet hostile input: msgspec (like every recursive JSON parser) recurses once per
nesting level, so a 20 KB payload nested 5,000 levels deep raises ``RecursionError`` from inside it, and a NUL
escaped in a serial reaches PostgreSQL, which refuses it with ``DataError`` in the middle of a batch. So every
payload passes ``check_payload`` first, at C speed (``bytes.count``, one regular expression, one numpy cumsum):

- size: empty, or over ``MAX_PAYLOAD_BYTES``;
- nesting depth over ``MAX_NESTING_DEPTH`` (brackets inside JSON strings do not count);
- a raw NUL byte, or a ``\\u0000``-``\\u001f`` / ``\\u007f`` escape anywhere: PostgreSQL text and jsonb cannot hold
  NUL, and no field of the wire formats has a use for control characters. Plain ``\\n``, ``\\t`` and ``\\r`` escapes
  stay allowed in free text (an event's ``detail``); identifiers are checked for them after decoding
  (``is_clean_identifier``).
"""

from __future__ import annotations

import re

import numpy as np

from amr.errors import PayloadError
from ingest.limits import MAX_IDENTIFIER_CHARS, MAX_NESTING_DEPTH, MAX_PAYLOAD_BYTES

# A JSON string, escapes included; possessive quantifiers keep the scan linear on hostile input.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_CONTROL_ESCAPE = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u007[fF]|\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(payload: bytes) -> int:
    """The deepest nesting of JSON arrays and objects in `payload` (0 for a scalar), not counting brackets inside
    strings. On malformed JSON it is an estimate, good enough to refuse what no decoder should recurse into."""
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def check_payload(payload: bytes) -> None:
    """Raise PayloadError naming the first limit `payload` breaks."""
    if not payload:
        raise PayloadError("empty payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"oversize payload: {len(payload)} bytes > limit {MAX_PAYLOAD_BYTES}")
    # Fast path: fewer brackets than the limit cannot nest deeper than it (a v2 batch holds about seven).
    if payload.count(b"{") + payload.count(b"[") > MAX_NESTING_DEPTH:
        depth = nesting_depth(payload)
        if depth > MAX_NESTING_DEPTH:
            raise PayloadError(f"JSON nested {depth} levels deep > limit {MAX_NESTING_DEPTH}")
    found = _CONTROL_ESCAPE.search(payload)
    if found is not None:
        what = "a NUL byte" if found.group() == b"\x00" else f"the escape {found.group().decode()!r}"
        raise PayloadError(f"NUL or control character in a string ({what} at byte {found.start()})")


def is_clean_identifier(text: str) -> bool:
    """A serial, client name, OBIS code, unit or event name: non-empty, short, printable (no NUL, no control
    characters, no line breaks)."""
    return 0 < len(text) <= MAX_IDENTIFIER_CHARS and text.isprintable()
