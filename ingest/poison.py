"""The poison ledger: redeliveries of a message that was being processed when its worker died.

A message that kills the worker processing it (a crash in a decoder, the process killed by the kernel for its
memory) is not acknowledged, so the broker delivers it again, with the DUP flag, to the next worker, which would
die the same way, for ever. So a worker counts every DUP delivery in ``ingest_poison`` (its own committed
statement) before processing it, and uncounts it once processing returned; a count left standing means a worker
died on that message. Over ``MAX_DELIVERY_ATTEMPTS`` the message is dead-lettered without being processed. The
rows of messages whose batch committed are deleted in that transaction (``settle``).

Only DUP deliveries pay the two round trips: in steady state no message is redelivered.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg


def message_digest(topic: str, payload: bytes) -> bytes:
    """SHA-256 of topic, NUL, payload: the identity of a message (dead letters and the poison ledger)."""
    return hashlib.sha256(topic.encode("utf-8", "surrogateescape") + b"\x00" + payload).digest()


def count_delivery(conn: psycopg.Connection[Any], *, digest: bytes, topic: str) -> int:
    """Record that processing of this message starts; returns its deliveries that did not finish, this one included."""
    row = conn.execute(
        "INSERT INTO ingest_poison (message_sha256, topic, attempts) VALUES (%s, %s, 1)"
        " ON CONFLICT (message_sha256) DO UPDATE SET attempts = ingest_poison.attempts + 1, last_seen_at = now()"
        " RETURNING attempts",
        (digest, topic.replace("\x00", "")[:200]),
    ).fetchone()
    assert row is not None
    return int(row[0])


def uncount_delivery(conn: psycopg.Connection[Any], *, digest: bytes) -> None:
    """Processing of this message returned (whatever it decided): the worker survived it."""
    conn.execute(
        "UPDATE ingest_poison SET attempts = attempts - 1 WHERE message_sha256 = %s AND attempts > 0", (digest,)
    )


def settle(cur: psycopg.Cursor[Any], digests: list[bytes]) -> None:
    """Forget the ledger rows of messages committed in the caller's transaction."""
    if digests:
        cur.execute("DELETE FROM ingest_poison WHERE message_sha256 = ANY(%s)", (digests,))
