"""The worker's serial -> meter_id cache: filled lazily from the registry, misses looked up again rate-limited."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import psycopg

from ingest.guard import is_clean_identifier
from ingest.limits import METER_MISS_RETRY_S


def fetch_meter_ids(conn: psycopg.Connection[Any], serials: list[str]) -> dict[str, int]:
    """Registry ids of the given serials (those not registered are absent)."""
    rows = conn.execute("SELECT serial, meter_id FROM meters WHERE serial = ANY(%s)", (serials,)).fetchall()
    return {serial: int(meter_id) for serial, meter_id in rows}


class MeterCache:
    """Lazily filled: a city has millions of meters, a worker sees the ones its collectors read.

    A serial not in the registry is asked for again only after METER_MISS_RETRY_S, so a newly registered meter is
    picked up within that time while a stream of unknown serials costs at most one query per serial per period.
    """

    def __init__(self, *, miss_retry_s: float = METER_MISS_RETRY_S) -> None:
        self.ids: dict[str, int] = {}
        self._missed_at: dict[str, float] = {}
        self._miss_retry_s = miss_retry_s
        self.lookups = 0

    def to_fetch(self, serials: Iterable[str], now_s: float) -> list[str]:
        """Serials neither cached nor recently missed (pure; the caller fetches them). A serial that cannot be one
        (NUL or control characters, too long) is never asked for: PostgreSQL refuses NUL in text outright."""
        ids, missed, retry = self.ids, self._missed_at, self._miss_retry_s
        return [s for s in serials if s not in ids and now_s - missed.get(s, -1e18) >= retry and is_clean_identifier(s)]

    def learn(self, asked: list[str], found: dict[str, int], now_s: float) -> None:
        self.ids.update(found)
        for serial in asked:
            if serial in found:
                self._missed_at.pop(serial, None)
            else:
                self._missed_at[serial] = now_s
        if len(self._missed_at) > 1_000_000:  # a flood of random serials must not grow memory without bound
            self._missed_at.clear()

    def resolve(self, conn: psycopg.Connection[Any], serials: Iterable[str]) -> dict[str, int]:
        now_s = time.monotonic()
        ask = self.to_fetch(serials, now_s)
        if ask:
            self.lookups += 1
            self.learn(ask, fetch_meter_ids(conn, ask), now_s)
        return self.ids
