"""Readings (and meter events) into messages of about `batch_readings` each, sealed into the spool.

A batch gets its ``seq`` when it is sealed, in the same spool transaction as its row, so a message published
twice (QoS 1 after a reconnect or a restart) is the same bytes with the same seq. Readings wait in memory
until their batch is full or `linger_s` old; `flush` seals what waits and commits. Only committed rows are
published (`committed_id`), so a crash never lets a seq reach the broker that a restart would reuse.

Readings go out in the columnar v2 format (amr.messages.ColumnarReadingBatch: ~4x smaller than v1 and several
times cheaper for ingest to decode); a batch holding a reading with a naive timestamp, which v2 cannot express,
goes out as v1 so that ingest dead-letters it with its reason as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from amr.messages import EventBatch, MeterEvent, Reading, ReadingBatch, columnar_from_readings, encode
from collectors.spool import Spool

DEFAULT_LINGER_S = 0.5  # longest a reading waits in memory for its batch to fill
MAX_UNCOMMITTED_MESSAGES = 200  # commit at least this often under load, so publishing never waits for a tick


class Batcher:
    def __init__(
        self,
        spool: Spool,
        *,
        source: str,
        readings_topic: str,
        events_topic: str,
        batch_readings: int,
        linger_s: float = DEFAULT_LINGER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self.source = source
        self.readings_topic = readings_topic
        self.events_topic = events_topic
        self.batch_readings = batch_readings
        self.linger_s = linger_s
        self._clock = clock
        self._readings: list[Reading] = []
        self._events: list[MeterEvent] = []
        self._oldest_s: float | None = None
        self._uncommitted = 0
        self._last_id = 0
        self.committed_id = 0  # highest spool id that is durable
        self._durable_callbacks: list[Callable[[], None]] = []
        self._pending_callbacks: list[Callable[[], None]] = []
        self.on_commit: Callable[[], None] | None = None
        self.readings_in = 0

    @property
    def waiting(self) -> int:
        return len(self._readings) + len(self._events)

    def add(self, readings: list[Reading], *, on_durable: Callable[[], None] | None = None) -> None:
        """Queue readings; `on_durable` runs once they are committed to the spool."""
        if self._oldest_s is None and readings:
            self._oldest_s = self._clock()
        self._readings.extend(readings)
        self.readings_in += len(readings)
        while len(self._readings) >= self.batch_readings:
            chunk = self._readings[: self.batch_readings]
            del self._readings[: self.batch_readings]
            self._seal_readings(chunk)
        if not self._readings and not self._events:
            self._oldest_s = None
        if on_durable is not None:
            self._pending_callbacks.append(on_durable)
        if self._uncommitted >= MAX_UNCOMMITTED_MESSAGES:
            self.flush(force=True)

    def add_events(self, events: list[MeterEvent], *, on_durable: Callable[[], None] | None = None) -> None:
        if self._oldest_s is None and events:
            self._oldest_s = self._clock()
        self._events.extend(events)
        if on_durable is not None:
            self._pending_callbacks.append(on_durable)

    def _seal_readings(self, readings: list[Reading]) -> None:
        seq = self.spool.take_seq()
        columnar = columnar_from_readings(self.source, seq, readings)
        batch = columnar if columnar is not None else ReadingBatch(source=self.source, seq=seq, readings=readings)
        self._last_id = self.spool.append(self.readings_topic, encode(batch))
        self._uncommitted += 1

    def _seal_events(self, events: list[MeterEvent]) -> None:
        seq = self.spool.take_seq()
        self._last_id = self.spool.append(
            self.events_topic, encode(EventBatch(source=self.source, seq=seq, events=events))
        )
        self._uncommitted += 1

    def flush(self, *, force: bool = False) -> None:
        """Seal waiting readings if they lingered (or `force`), commit, and run the durable callbacks.

        Callbacks registered for readings still waiting in memory are kept until those are sealed."""
        old = self._oldest_s is not None and self._clock() - self._oldest_s >= self.linger_s
        if force or old or self._pending_callbacks:
            if self._readings:
                chunk, self._readings = self._readings, []
                self._seal_readings(chunk)
            if self._events:
                events, self._events = self._events, []
                self._seal_events(events)
            self._oldest_s = None
        self.spool.commit()
        if self._uncommitted:
            self._uncommitted = 0
            self.committed_id = self._last_id
            if self.on_commit is not None:
                self.on_commit()
        callbacks, self._pending_callbacks = self._pending_callbacks, []
        for callback in callbacks:
            callback()
