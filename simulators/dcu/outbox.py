"""The DCU's bounded store-and-forward buffer (in memory, thread-safe).

Holds encoded uplink messages oldest first while the broker cannot be reached. Limit: ``limit`` messages; on
overflow the *oldest* message is dropped and counted (``dropped``), because the newest reads carry the current
register values and the meters' own load profiles still hold the older intervals for a back-read.
Unacknowledged messages go back to the front (``requeue``) so a replay stays oldest first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

# A year of 30-min uplinks: a DCU that cannot reach the head end for longer is a field visit anyway.
DEFAULT_OUTBOX_LIMIT = 17_520


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    payload: bytes


class Outbox:
    def __init__(self, limit: int = DEFAULT_OUTBOX_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"outbox limit must be >= 1, got {limit}")
        self.limit = limit
        self.dropped = 0
        self._items: deque[OutboxItem] = deque()
        self._lock = threading.Lock()
        self.not_empty = threading.Condition(self._lock)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, item: OutboxItem) -> None:
        with self._lock:
            if len(self._items) >= self.limit:
                lost = self._items.popleft()
                self.dropped += 1
                LOG.warning("DCU outbox full (%d): dropped the oldest message seq %d", self.limit, lost.seq)
            self._items.append(item)
            self.not_empty.notify_all()

    def take(self, count: int) -> list[OutboxItem]:
        """Remove and return up to `count` oldest items."""
        with self._lock:
            return [self._items.popleft() for _ in range(min(count, len(self._items)))]

    def requeue(self, items: Iterable[OutboxItem]) -> None:
        """Put unacknowledged items back in front, in their original order (by seq)."""
        with self._lock:
            for item in sorted(items, key=lambda i: i.seq, reverse=True):
                self._items.appendleft(item)
            while len(self._items) > self.limit:
                self._items.pop()
                self.dropped += 1
            self.not_empty.notify_all()
