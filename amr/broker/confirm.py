"""The publisher side of commit confirmations (docs/delivery.md) and of the broker's maximum packet size.

A spooled message goes out with QoS 1 and two MQTT 5 properties: ``ResponseTopic`` = ``confirm_topic(<client
id>)`` and ``CorrelationData`` = its id at the source as ASCII decimal digits. Ingest publishes
``{"v": 1, "ids": [...]}`` to that topic once the transaction holding the message committed; only then does the
source forget the message. ``ResendSchedule`` decides when a message still unconfirmed is sent again.

The broker may announce a ``MaximumPacketSize`` in its CONNACK (Mosquitto does when ``max_packet_size`` is set)
and drops the connection of a client that sends a larger packet, so every publisher here measures the whole
PUBLISH packet before sending it (``publish_packet_bytes``).
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.topics import confirm_topic
from amr.errors import AmrError, PayloadError
from amr.messages import MAX_PAYLOAD_BYTES

CONFIRMATION_VERSION = 1
# The first re-send of a message whose commit was not confirmed. Ingest confirms within about a second of
# receiving a message; a minute covers a busy ingest catching up without re-sending its whole backlog.
CONFIRM_TIMEOUT_S = 60.0
# The timeout doubles on each re-send up to this: an ingest outage of a day costs each message ~30 re-sends.
MAX_CONFIRM_TIMEOUT_S = 3600.0
# A PUBACK with reason 16 "No matching subscribers" means the broker dropped the message at once: nobody reads it.
# Mosquitto 2.0 forgets shared subscriptions when it restarts (it keeps ingest's session and queue, not its
# $share subscriptions), so every message between its restart and ingest's re-subscribe (paho backs off 1-10 s)
# ends so (measured by benchmarks/bench_soak.py: 111-189 messages per quick run). Such a message is re-sent after
# this first delay, doubled per attempt up to MAX_CONFIRM_TIMEOUT_S, instead of waiting for the confirm timeout.
NO_SUBSCRIBERS_RETRY_S = 2.0
NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code
MAX_MESSAGE_ID = 2**63 - 1  # CorrelationData: a positive int64, at most 19 ASCII digits
MAX_MESSAGE_ID_DIGITS = len(str(MAX_MESSAGE_ID))
# The largest packet MQTT can frame (remaining length 268,435,455 in a 4-byte varint, plus the header byte):
# the limit when the broker announces none.
PROTOCOL_MAX_PACKET_BYTES = 268_435_455 + 5
# Room in a PUBLISH packet beside its payload: fixed header, topic (~100 bytes at most here), packet id and the
# confirmation properties (response topic, 19-digit correlation data).
PACKET_OVERHEAD_BYTES = 1024
# What amr/broker/mosquitto.py configures: a publisher's limit until a CONNACK tells it the real one.
DEFAULT_MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES


class PacketTooLarge(AmrError):
    """A message that the broker would refuse (and answer by dropping the connection): it never fits."""

    def __init__(self, topic: str, packet_bytes: int, limit_bytes: int) -> None:
        self.topic = topic
        self.packet_bytes = packet_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"a message to {topic} would be a {packet_bytes:,}-byte MQTT packet; the broker's maximum packet size "
            f"is {limit_bytes:,} bytes"
        )


class Confirmation(msgspec.Struct, forbid_unknown_fields=False):
    v: int
    ids: list[int]


_confirmation_decoder = msgspec.json.Decoder(Confirmation)


def publish_properties(client_id: str, message_id: int) -> Properties:
    """The PUBLISH properties of a spooled message: where to confirm it, and its id."""
    if not 0 < message_id <= MAX_MESSAGE_ID:
        raise ValueError(f"message id {message_id} is not a positive int64")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = confirm_topic(client_id)
    props.CorrelationData = str(message_id).encode("ascii")
    return props


def message_id_of(properties: Properties | None) -> int | None:
    """The id a PUBLISH carries as CorrelationData (ASCII digits), or None when it carries none or another form."""
    data = getattr(properties, "CorrelationData", None) if properties is not None else None
    if not isinstance(data, bytes | bytearray) or not 0 < len(data) <= MAX_MESSAGE_ID_DIGITS or not data.isdigit():
        return None
    value = int(data)
    return value if 0 < value <= MAX_MESSAGE_ID else None


def encode_confirmation(ids: Iterable[int]) -> bytes:
    return msgspec.json.encode(Confirmation(v=CONFIRMATION_VERSION, ids=list(ids)))


def parse_confirmation(payload: bytes) -> list[int]:
    """The ids a confirmation carries; PayloadError says what is wrong with it."""
    try:
        confirmation = _confirmation_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(f"not a confirmation: {exc}") from exc
    if confirmation.v != CONFIRMATION_VERSION:
        raise PayloadError(f"confirmation version {confirmation.v} is not supported (expected 1)")
    bad = [i for i in confirmation.ids if not 0 < i <= MAX_MESSAGE_ID]
    if bad:
        raise PayloadError(f"confirmation ids out of range: {bad[:5]}")
    return confirmation.ids


def _varint_bytes(value: int) -> int:
    size = 1
    while value >= 128:
        value >>= 7
        size += 1
    return size


def publish_packet_bytes(topic: str, payload_bytes: int, properties: Properties | None = None, qos: int = 1) -> int:
    """The size of the whole MQTT 5 PUBLISH packet (what a broker's maximum packet size limits)."""
    props = len(properties.pack()) if properties is not None else 1  # an empty property list is one zero byte
    remaining = 2 + len(topic.encode()) + (2 if qos > 0 else 0) + props + payload_bytes
    return 1 + _varint_bytes(remaining) + remaining


def max_payload_bytes(max_packet_bytes: int, topic: str, client_id: str | None) -> int:
    """The largest payload that fits a packet to `topic`, with the confirmation properties of `client_id` (the
    longest id: 19 digits) or without properties (None)."""
    props = publish_properties(client_id, MAX_MESSAGE_ID) if client_id is not None else None
    return max_packet_bytes - publish_packet_bytes(topic, 0, props) - 3  # -3: the varint may grow by 3 bytes


def max_packet_of(connack_properties: Properties | None) -> int:
    """The broker's MaximumPacketSize from its CONNACK, or MQTT's own limit when it announces none."""
    value = getattr(connack_properties, "MaximumPacketSize", None) if connack_properties is not None else None
    return int(value) if isinstance(value, int) and value > 0 else PROTOCOL_MAX_PACKET_BYTES


def confirm_timeout_s(attempt: int, first_s: float = CONFIRM_TIMEOUT_S, max_s: float = MAX_CONFIRM_TIMEOUT_S) -> float:
    """How long a message sent for the `attempt`-th time (0: the first) waits for its confirmation."""
    return float(min(first_s * 2.0 ** min(attempt, 62), max_s))


class ResendSchedule:
    """When messages that the broker acknowledged but ingest did not confirm are due to be sent again.

    One FIFO per attempt: messages of one attempt share a timeout, so each FIFO is in due order. Confirmed ids
    are not removed (the caller skips, at due time, what its store no longer holds), so memory is 8 bytes per id
    acknowledged in the last timeout. Not thread-safe.
    """

    def __init__(
        self,
        *,
        first_s: float = CONFIRM_TIMEOUT_S,
        max_s: float = MAX_CONFIRM_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"confirm timeouts must satisfy 0 < first ({first_s}) <= max ({max_s})")
        self.first_s = first_s
        self.max_s = max_s
        self._clock = clock
        self.last_attempt = 0  # the attempt from which on the timeout is capped: those share the last FIFO
        while confirm_timeout_s(self.last_attempt, first_s, max_s) < max_s:
            self.last_attempt += 1
        self._fifos: list[deque[tuple[float, array[int]]]] = [deque() for _ in range(self.last_attempt + 1)]

    def __len__(self) -> int:
        return sum(len(ids) for fifo in self._fifos for _, ids in fifo)

    def add(self, ids: Sequence[int], attempt: int) -> None:
        """`ids` were acknowledged now after their `attempt`-th send (0: the first)."""
        if ids:
            level = min(attempt, self.last_attempt)
            due = self._clock() + confirm_timeout_s(level, self.first_s, self.max_s)
            self._fifos[level].append((due, array("q", ids)))

    def due(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (id, next attempt) whose timeout passed, oldest due first; they leave the schedule."""
        now = self._clock()
        out: list[tuple[int, int]] = []
        while len(out) < limit:
            heads = [(fifo[0][0], level) for level, fifo in enumerate(self._fifos) if fifo and fifo[0][0] <= now]
            if not heads:
                break
            _, level = min(heads)
            fifo = self._fifos[level]
            due, ids = fifo[0]
            take = min(limit - len(out), len(ids))
            out += [(int(i), level + 1) for i in ids[:take]]
            if take == len(ids):
                fifo.popleft()
            else:
                fifo[0] = (due, ids[take:])
        return out

    def clear(self) -> None:
        """Forget everything (after a reconnect every unconfirmed message is sent again anyway)."""
        for fifo in self._fifos:
            fifo.clear()
