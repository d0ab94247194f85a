"""The DCU's bounded store-and-forward buffer, on disk as a real concentrator keeps it on flash.

SQLite in WAL mode (``synchronous=NORMAL``: a killed simulator loses nothing it stored; the collector's spool
does the same), in the directory the DCU is given, so a restart of the simulator loses no uplink. One row per
encoded uplink (``seq``, payload); an uplink leaves the outbox when ingest confirms its seq (docs/delivery.md)
or, for a DCU configured without the confirmation protocol, on its PUBACK. The DCU's last ``seq`` and small
pieces of state (the next interval to read) are kept in the same database.

Order: rows go out by ``pos`` (2 x seq), then insertion; the reorder fault stores a message as held, behind its
successor (pos 2 x seq + 3), and releases it when the successor is stored (or at a restart).

Limit: ``limit`` messages; on overflow the *oldest* message (lowest seq) is dropped and counted (``dropped``),
because the newest reads carry the current register values and the meters' own load profiles still hold the
older intervals for a back-read. A message that can never be sent (larger than the broker's maximum packet
size even alone) moves to the ``refused`` table with its reason: kept, not sent, not silently lost.

Thread-safe: the DCU's reading thread stores, its uplink thread sends and forgets.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOG = logging.getLogger(__name__)

# A year of 30-min uplinks: a DCU that cannot reach the head end for longer is a field visit anyway.
DEFAULT_OUTBOX_LIMIT = 17_520
OUTBOX_FILE = "outbox.sqlite3"
SQL_CHUNK = 500  # values per `IN (...)` list: far below SQLite's host-parameter limit
HELD_OFFSET = 3  # a held message's pos: behind its successor's (2 x (seq + 1))


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    payload: bytes


@dataclass(frozen=True)
class OutboxRow:
    id: int  # the row: a duplicated message has two rows with one seq
    seq: int
    pos: int
    payload: bytes


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), SQL_CHUNK):
        yield values[start : start + SQL_CHUNK]


class Outbox:
    """``Outbox(directory, limit)``; `directory` None keeps it in memory (unit tests only: a restart loses it)."""

    def __init__(self, directory: Path | None, limit: int = DEFAULT_OUTBOX_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"outbox limit must be >= 1, got {limit}")
        self.limit = limit
        self.dropped = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / OUTBOX_FILE if directory is not None else None
        self._db = sqlite3.connect(
            self.path if self.path is not None else ":memory:", isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        self._depth_txn = 0
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, "
            "pos INTEGER NOT NULL, ready INTEGER NOT NULL, payload BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS items_order ON items (pos, id)")
        self._db.execute("CREATE INDEX IF NOT EXISTS items_seq ON items (seq)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS refused (id INTEGER PRIMARY KEY AUTOINCREMENT, refused_at TEXT NOT NULL, "
            "seq INTEGER NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL)"
        )
        self.release_held()  # a message held by the reorder fault when the simulator stopped goes out now
        self._count = int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])
        stored = self._get("seq")
        self._last_seq = int(stored) if stored is not None else 0

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def last_seq(self) -> int:
        """The highest seq ever stored (kept across restarts, so seqs are never reused)."""
        with self._lock:
            return self._last_seq

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group stores and state into one commit (nested uses join the outer one)."""
        with self._lock:
            if self._depth_txn == 0:
                self._db.execute("BEGIN")
            self._depth_txn += 1
            try:
                yield
            except BaseException:
                self._depth_txn -= 1
                if self._depth_txn == 0:
                    self._db.execute("ROLLBACK")
                    self._count = int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])
                raise
            self._depth_txn -= 1
            if self._depth_txn == 0:
                self._db.execute("COMMIT")

    def put(self, item: OutboxItem, *, held: bool = False) -> None:
        """Store a message; `held`: behind its successor, and not sent before `release_held`."""
        with self.transaction():
            if self._count >= self.limit:
                oldest = self._db.execute("SELECT id, seq FROM items ORDER BY seq, id LIMIT 1").fetchone()
                self._db.execute("DELETE FROM items WHERE id = ?", (oldest[0],))
                self._count -= 1
                self.dropped += 1
                LOG.warning("DCU outbox full (%d): dropped the oldest message seq %d", self.limit, oldest[1])
            pos = 2 * item.seq + (HELD_OFFSET if held else 0)
            self._db.execute(
                "INSERT INTO items (seq, pos, ready, payload) VALUES (?, ?, ?, ?)",
                (item.seq, pos, 0 if held else 1, item.payload),
            )
            self._count += 1
            if item.seq > self._last_seq:
                self._last_seq = item.seq
                self._set("seq", str(item.seq))

    def release_held(self) -> None:
        with self.transaction():
            self._db.execute("UPDATE items SET ready = 1 WHERE ready = 0")

    def read_after(self, cursor: tuple[int, int], limit: int) -> list[OutboxRow]:
        """Sendable rows after `cursor` = (pos, id), in sending order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, seq, pos, payload FROM items WHERE ready = 1 AND (pos, id) > (?, ?) ORDER BY pos, id "
                "LIMIT ?",
                (*cursor, limit),
            ).fetchall()
        return [OutboxRow(int(i), int(s), int(p), bytes(b)) for i, s, p, b in rows]

    def count_after(self, cursor: tuple[int, int]) -> int:
        """Rows after `cursor`, held ones included: what a sender has not handed out yet."""
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM items WHERE (pos, id) > (?, ?)", cursor).fetchone()
        return int(row[0])

    def get(self, ids: Sequence[int]) -> list[OutboxRow]:
        """Those rows of `ids` still stored, in sending order."""
        out: list[OutboxRow] = []
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT id, seq, pos, payload FROM items WHERE id IN ({marks})", chunk)
                out += [OutboxRow(int(i), int(s), int(p), bytes(b)) for i, s, p, b in rows]
        return sorted(out, key=lambda r: (r.pos, r.id))

    def _delete(self, column: str, values: Sequence[int]) -> int:
        removed = 0
        with self.transaction():
            for chunk in _chunks(values):
                marks = ",".join("?" * len(chunk))
                removed += self._db.execute(f"DELETE FROM items WHERE {column} IN ({marks})", chunk).rowcount
            self._count -= removed
        return removed

    def confirm(self, seqs: Sequence[int]) -> int:
        """Forget the messages with these seqs (ingest confirmed them); returns the rows removed."""
        return self._delete("seq", seqs)

    def remove(self, ids: Sequence[int]) -> int:
        """Forget these rows (acknowledged by the broker, for a DCU without confirmations)."""
        return self._delete("id", ids)

    def refuse(self, seq: int, payload: bytes, reason: str, *, row_id: int | None = None) -> None:
        """Keep a message that can never be sent in the ``refused`` table, out of the queue."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO refused (refused_at, seq, payload, reason) VALUES (?, ?, ?, ?)",
                (datetime.now(UTC).isoformat(), seq, payload, reason),
            )
            if row_id is not None:
                self._delete("id", [row_id])

    def refused(self) -> list[tuple[int, str]]:
        """(seq, reason) of every refused message."""
        with self._lock:
            rows = self._db.execute("SELECT seq, reason FROM refused ORDER BY id").fetchall()
        return [(int(s), str(r)) for s, r in rows]

    def seqs(self) -> list[int]:
        """The seqs stored, in sending order (a duplicated message twice)."""
        with self._lock:
            return [int(s) for (s,) in self._db.execute("SELECT seq FROM items ORDER BY pos, id")]

    def get_state(self, key: str) -> str | None:
        """A small piece of DCU state kept with the outbox (e.g. the next interval to read)."""
        return self._get(f"state.{key}")

    def _get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_state(self, key: str, value: str) -> None:
        self._set(f"state.{key}", value)

    def _set(self, key: str, value: str) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
