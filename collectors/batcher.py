"""Readings (and meter events) into messages of about `batch_readings` each, sealed into the spool.

A batch gets its ``seq`` when it is sealed, in the same spool transaction as its row, so a message published
twice (QoS 1 after a reconnect or a restart) is the same bytes with the same seq. Readings wait in memory
until their batch is full or `linger_s` old; `flush` seals what waits and commits. Only committed rows are
published (`committed_id`), so a crash never lets a seq reach the broker that a restart would reuse.

Readings go out in the columnar v2 format (amr.messages.ColumnarReadingBatch: ~4x smaller than v1 and several
times cheaper for ingest to decode); a batch holding a reading with a naive timestamp, which v2 cannot express,
goes out as v1 so that ingest dead-letters it with its reason as before.

Maximum packet size: a sealed message must fit the broker's maximum packet size (`max_packet_bytes`, from the
broker's CONNACK; the broker drops the connection of a client that sends more) with its topic and delivery
properties. A batch that would not fit is halved until each part fits; a single reading or event that can never
fit is refused: logged as an error, counted (`refused_readings`, `refused_events`) and kept in the spool's
``refused`` table (collectors.spool), never published and never silently dropped. `reseal` does the same for a
message already in the spool when the broker turns out to accept less than it was sealed for (its seq is then
never published: its parts get new ones).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec

from amr.broker.confirm import DEFAULT_MAX_PACKET_BYTES, max_payload_bytes
from amr.messages import (
    COLUMNS_FORMAT_VERSION,
    ColumnarReadingBatch,
    EventBatch,
    MeterEvent,
    Reading,
    ReadingBatch,
    columnar_from_readings,
    encode,
    iter_readings,
)
from collectors.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

DEFAULT_LINGER_S = 0.5  # longest a reading waits in memory for its batch to fill
MAX_UNCOMMITTED_MESSAGES = 200  # commit at least this often under load, so publishing never waits for a tick
MAX_PACKET_STATE_KEY = "broker.max_packet_bytes"  # the last broker limit seen, kept for the next start


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
        self.source = source  # also the MQTT client id, whose confirmation topic every message names
        self.readings_topic = readings_topic
        self.events_topic = events_topic
        self.batch_readings = batch_readings
        self.linger_s = linger_s
        self._clock = clock
        self._readings: list[Reading] = []
        self._events: list[MeterEvent] = []
        self._oldest_s: float | None = None
        self._uncommitted = 0
        self._last_id = spool.max_id
        self.committed_id = spool.max_id  # highest spool id that is durable (what a previous run left is)
        self._pending_callbacks: list[Callable[[], None]] = []
        self.on_commit: Callable[[], None] | None = None
        self.readings_in = 0
        self.refused_readings = 0
        self.refused_events = 0
        known = spool.get_state(MAX_PACKET_STATE_KEY)
        self._max_packet_bytes = int(known) if known else DEFAULT_MAX_PACKET_BYTES
        self._max_payload: dict[str, int] = {}

    @property
    def waiting(self) -> int:
        return len(self._readings) + len(self._events)

    @property
    def max_packet_bytes(self) -> int:
        return self._max_packet_bytes

    @max_packet_bytes.setter
    def max_packet_bytes(self, value: int) -> None:
        """The broker's limit (from its CONNACK); remembered in the spool for the batches sealed before the next
        connection."""
        if value != self._max_packet_bytes:
            self._max_packet_bytes = value
            self._max_payload.clear()
            self.spool.set_state(MAX_PACKET_STATE_KEY, str(value))

    def max_payload(self, topic: str) -> int:
        """The largest payload a message to `topic` may carry."""
        if topic not in self._max_payload:
            self._max_payload[topic] = max_payload_bytes(self._max_packet_bytes, topic, self.source)
        return self._max_payload[topic]

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

    def _encode_readings(self, seq: int, readings: list[Reading]) -> bytes:
        columnar = columnar_from_readings(self.source, seq, readings)
        batch = columnar if columnar is not None else ReadingBatch(source=self.source, seq=seq, readings=readings)
        return encode(batch)

    def _seal_readings(self, readings: list[Reading]) -> None:
        # Encoded with the seq it will get (take_seq gives last_seq + 1), so what is measured is what is stored.
        payload = self._encode_readings(self.spool.last_seq + 1, readings)
        if len(payload) > self.max_payload(self.readings_topic):
            if len(readings) > 1:
                half = len(readings) // 2
                self._seal_readings(readings[:half])
                self._seal_readings(readings[half:])
                return
            r = readings[0]
            self.refused_readings += 1
            self._refuse(self.readings_topic, payload, f"reading of meter {r.meter!r} {r.obis} at {r.ts}")
            return
        self.spool.take_seq()
        self._last_id = self.spool.append(self.readings_topic, payload)
        self._uncommitted += 1

    def _seal_events(self, events: list[MeterEvent]) -> None:
        payload = encode(EventBatch(source=self.source, seq=self.spool.last_seq + 1, events=events))
        if len(payload) > self.max_payload(self.events_topic):
            if len(events) > 1:
                half = len(events) // 2
                self._seal_events(events[:half])
                self._seal_events(events[half:])
                return
            e = events[0]
            self.refused_events += 1
            self._refuse(self.events_topic, payload, f"event {e.event!r} of meter {e.meter!r} at {e.ts}")
            return
        self.spool.take_seq()
        self._last_id = self.spool.append(self.events_topic, payload)
        self._uncommitted += 1

    def _refuse(self, topic: str, payload: bytes, what: str, message_id: int | None = None) -> None:
        reason = (
            f"{what}: a {len(payload):,}-byte message alone exceeds the broker's maximum packet size of "
            f"{self._max_packet_bytes:,} bytes"
        )
        log.error("refused at the source, kept in the spool's refused table: %s", reason)
        self.spool.refuse(topic, payload, reason, message_id=message_id)  # committed with the next commit

    def reseal(self, record: SpoolRecord) -> None:
        """A spooled message too large for the broker's limit: replace it by parts that fit (committed at once).
        A message that cannot be decoded or split (one item) is moved to the refused table."""
        items: list[Reading] | list[MeterEvent] | None = None
        try:
            if record.topic == self.events_topic:
                items = list(msgspec.json.decode(record.payload, type=EventBatch).events)
            else:
                version = msgspec.json.decode(record.payload, type=dict).get("v")
                batch: ReadingBatch | ColumnarReadingBatch
                if version == COLUMNS_FORMAT_VERSION:
                    batch = msgspec.json.decode(record.payload, type=ColumnarReadingBatch)
                else:
                    batch = msgspec.json.decode(record.payload, type=ReadingBatch)
                items = list(iter_readings(batch))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("spooled message %d on %s cannot be split: %s", record.id, record.topic, exc)
        if items is None or len(items) < 2:
            if record.topic == self.events_topic:
                self.refused_events += len(items) if items else 1
            else:
                self.refused_readings += len(items) if items else 1
            self._refuse(record.topic, record.payload, f"spooled message {record.id}", message_id=record.id)
            return
        self.spool.drop(record.id)  # in the same transaction as its parts
        if record.topic == self.events_topic:
            self._seal_events(items)  # type: ignore[arg-type]
        else:
            self._seal_readings(items)  # type: ignore[arg-type]
        self._commit()

    def _commit(self) -> None:
        self.spool.commit()
        if self._uncommitted:
            self._uncommitted = 0
            self.committed_id = self._last_id
            if self.on_commit is not None:
                self.on_commit()

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
        self._commit()
        callbacks, self._pending_callbacks = self._pending_callbacks, []
        for callback in callbacks:
            callback()
