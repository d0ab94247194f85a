"""The collector's disk spool: every message ingest has not confirmed, in order, across restarts.

SQLite in WAL mode, one row per MQTT message (topic, payload), ``id`` giving the publish order and serving as
the message's id in the delivery protocol (docs/delivery.md: it travels as CorrelationData). A row is deleted
only when ingest confirms that the transaction holding it committed; a broker's PUBACK is not enough (the broker
keeps what it acknowledged in memory between autosaves). The next batch ``seq`` is kept in the same database
and advanced in the same transaction as the row that uses it, so after a crash neither a sequence number nor a
message is lost or reused.

A message that can never be sent (its packet exceeds the broker's maximum packet size even alone) is not
dropped: it goes to the ``refused`` table with its reason, out of the publishing queue, for an operator to see.

Durability (``sync``):

- ``normal`` (default): ``synchronous=NORMAL``. A commit reaches the WAL file before ``append`` returns; a
  killed process (kill -9) loses nothing committed, a power failure may lose the last commits.
- ``full``: ``synchronous=FULL``, an fsync per commit: committed rows survive power loss too.

The spool is used from one thread (the collector's event loop).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

SPOOL_FILE = "spool.sqlite3"
SQL_CHUNK = 500  # ids per `IN (...)` list: far below SQLite's 32,766 host parameters


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    id: int
    topic: str
    payload: bytes


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), SQL_CHUNK):
        yield ids[start : start + SQL_CHUNK]


class Spool:
    """Append, read in order, delete on confirmation. Not thread-safe: one owner thread."""

    def __init__(self, directory: Path, *, sync: Literal["normal", "full"] = "normal") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / SPOOL_FILE
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS refused (id INTEGER PRIMARY KEY AUTOINCREMENT, refused_at TEXT NOT NULL, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        self._seq = int(row[0]) if row else 0
        self._depth = int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])
        self._max_id = int(self._db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0])
        self._in_txn = False
        self.appended = 0
        self.confirmed = 0

    @property
    def depth(self) -> int:
        """Messages in the spool: written and not yet confirmed by ingest (sent or not)."""
        return self._depth

    @property
    def max_id(self) -> int:
        """The highest message id written (0 when none was)."""
        return self._max_id

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def refused_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM refused").fetchone()[0])

    def _begin(self) -> None:
        if not self._in_txn:
            self._db.execute("BEGIN")
            self._in_txn = True

    def take_seq(self) -> int:
        """The next batch sequence number; persisted with the next commit."""
        self._begin()
        self._seq += 1
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('seq', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (self._seq,),
        )
        return self._seq

    def append(self, topic: str, payload: bytes) -> int:
        """Add a message (part of the open transaction until `commit`); returns its id."""
        self._begin()
        cur = self._db.execute("INSERT INTO messages (topic, payload) VALUES (?, ?)", (topic, payload))
        self._depth += 1
        self.appended += 1
        assert cur.lastrowid is not None
        self._max_id = int(cur.lastrowid)
        return self._max_id

    def commit(self) -> None:
        if self._in_txn:
            self._db.execute("COMMIT")
            self._in_txn = False

    def read_after(self, after_id: int, limit: int) -> list[SpoolRecord]:
        """Messages with id > after_id, oldest first."""
        rows = self._db.execute(
            "SELECT id, topic, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [SpoolRecord(int(i), str(t), bytes(p)) for i, t, p in rows]

    def get(self, ids: Sequence[int]) -> list[SpoolRecord]:
        """Those of `ids` still in the spool, oldest first."""
        out: list[SpoolRecord] = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT id, topic, payload FROM messages WHERE id IN ({marks})", chunk)
            out += [SpoolRecord(int(i), str(t), bytes(p)) for i, t, p in rows]
        return sorted(out, key=lambda r: r.id)

    def delete(self, ids: Sequence[int]) -> int:
        """Forget confirmed messages (one transaction); returns how many were still here (a confirmation may
        repeat, or name a message a restart already forgot)."""
        if not ids:
            return 0
        self._begin()
        removed = 0
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            removed += self._db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk).rowcount
        self.commit()
        self._depth -= removed
        self.confirmed += removed
        return removed

    def refuse(self, topic: str, payload: bytes, reason: str, *, message_id: int | None = None) -> None:
        """Keep a message that can never be sent in the ``refused`` table (and out of the queue), with its reason.
        `message_id`: a spooled message moves there. Committed with the next commit."""
        self._begin()
        self._db.execute(
            "INSERT INTO refused (refused_at, topic, payload, reason) VALUES (?, ?, ?, ?)",
            (datetime.now(UTC).isoformat(), topic, payload, reason),
        )
        if message_id is not None:
            self.drop(message_id)

    def drop(self, message_id: int) -> None:
        """Remove a message that is replaced or refused, not confirmed (committed with the next commit)."""
        self._begin()
        self._depth -= self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount

    def refused(self) -> list[tuple[str, bytes, str]]:
        """(topic, payload, reason) of every refused message, oldest first."""
        rows = self._db.execute("SELECT topic, payload, reason FROM refused ORDER BY id").fetchall()
        return [(str(t), bytes(p), str(r)) for t, p, r in rows]

    def get_state(self, key: str) -> str | None:
        """A small piece of collector state kept with the spool (e.g. a DLMS meter's last profile time)."""
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_state(self, key: str, value: str) -> None:
        """Store state; committed with the next commit."""
        self._begin()
        self._db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        self.commit()
        self._db.close()
