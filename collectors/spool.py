"""The collector's disk spool: every message the broker has not acknowledged, in order, across restarts.

SQLite in WAL mode, one row per MQTT message (topic, payload), ``id`` giving the publish order; a row is
deleted only when its PUBACK arrives. The next batch ``seq`` is kept in the same database and advanced in the
same transaction as the row that uses it, so after a crash neither a sequence number nor a message is lost
or reused.

Durability (``sync``):

- ``normal`` (default): ``synchronous=NORMAL``. A commit reaches the WAL file before ``append`` returns; a
  killed process (kill -9) loses nothing committed, a power failure may lose the last commits.
- ``full``: ``synchronous=FULL``, an fsync per commit: committed rows survive power loss too.

The spool is used from one thread (the collector's event loop).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SPOOL_FILE = "spool.sqlite3"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    id: int
    topic: str
    payload: bytes


class Spool:
    """Append, read in order, delete on acknowledgement. Not thread-safe: one owner thread."""

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
        row = self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        self._seq = int(row[0]) if row else 0
        self._depth = int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])
        self._in_txn = False
        self.appended = 0
        self.acked = 0

    @property
    def depth(self) -> int:
        """Messages in the spool (written and not yet acknowledged)."""
        return self._depth

    @property
    def last_seq(self) -> int:
        return self._seq

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
        return int(cur.lastrowid)

    def commit(self) -> None:
        if self._in_txn:
            self._db.execute("COMMIT")
            self._in_txn = False

    def read_after(self, after_id: int, limit: int) -> list[SpoolRecord]:
        """Committed messages with id > after_id, oldest first."""
        rows = self._db.execute(
            "SELECT id, topic, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [SpoolRecord(int(i), str(t), bytes(p)) for i, t, p in rows]

    def delete(self, ids: list[int]) -> None:
        """Forget acknowledged messages (one transaction)."""
        if not ids:
            return
        self._begin()
        self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])
        self.commit()
        self._depth -= len(ids)
        self.acked += len(ids)

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
