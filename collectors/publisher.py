"""Publishing the spool to the broker with QoS 1 until ingest confirms each message, a bounded window of
unacknowledged messages, and a status topic with a last will.

The MQTT client is amr.broker.client's: its network thread runs the callbacks, each handed to the collector's
event loop (`call_soon_threadsafe`), which owns the spool. The pump hands committed spool rows to paho in id
order while fewer than `window` are unacknowledged (the client's bounded window).

Delivery (docs/delivery.md): each message carries the MQTT 5 properties ResponseTopic = ``confirm_topic(<client
id>)`` and CorrelationData = its spool id in ASCII digits (amr.broker.confirm.publish_properties). The client
subscribes (QoS 1) to its confirmation topic; a row leaves the spool only when ingest confirms its id, not on
PUBACK. Every unconfirmed row is sent again, oldest first, after each (re)connect (paho itself re-sends what was
in flight, so those are not sent twice), and a row still unconfirmed `confirm_timeout_s` after its PUBACK is
sent again with the timeout doubled, up to `max_confirm_timeout_s` (amr.broker.confirm.ResendSchedule). A PUBACK
with an error reason (e.g. 'Not authorized') is counted in `rejected` and the row is re-sent on the same
schedule: never dropped.

Maximum packet size: the broker's CONNACK gives it (MaximumPacketSize); the batcher seals messages that fit it,
and a spooled message that does not fit (sealed for a larger limit) is split again before it is sent
(Batcher.reseal), never sent to make the broker drop the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from amr.broker.client import Connack, MqttClient, PublishRefused, Will
from amr.broker.confirm import (
    CONFIRM_TIMEOUT_S,
    MAX_CONFIRM_TIMEOUT_S,
    NO_MATCHING_SUBSCRIBERS,
    NO_SUBSCRIBERS_RETRY_S,
    ResendSchedule,
    parse_confirmation,
    publish_packet_bytes,
    publish_properties,
)
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.topics import confirm_topic
from amr.errors import PayloadError
from collectors.batcher import Batcher
from collectors.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

KEEPALIVE_S = 15
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps DCU uplinks for a collector that is away up to a week
RECONNECT_MIN_S = 1  # paho takes whole seconds
RECONNECT_MAX_S = 5
READ_CHUNK = 500  # spool rows read per query

Sent = tuple[int, int]  # (spool id, attempt: 0 for the first send)


@dataclass(frozen=True, kw_only=True)
class IncomingMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttPublisher:
    """One MQTT connection for a collector: spool pump, confirmations, status messages, DCU uplink
    subscriptions."""

    def __init__(
        self,
        *,
        endpoint: BrokerEndpoint,
        client_id: str,
        spool: Spool,
        batcher: Batcher,
        window: int,
        status_topic: str,
        will_payload: bytes,
        subscriptions: list[str] | None = None,
        on_message: Callable[[IncomingMessage], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        max_confirm_timeout_s: float = MAX_CONFIRM_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.confirm_topic = confirm_topic(client_id)
        self.spool = spool
        self.batcher = batcher
        self.window = window
        self.status_topic = status_topic
        self.subscriptions = subscriptions or []
        self.on_message = on_message
        self.on_connected = on_connected
        self.schedule = ResendSchedule(first_s=confirm_timeout_s, max_s=max_confirm_timeout_s)
        # Messages the broker acknowledged with "No matching subscribers" (dropped: nobody reads them yet).
        self.unrouted = ResendSchedule(
            first_s=min(NO_SUBSCRIBERS_RETRY_S, confirm_timeout_s), max_s=max_confirm_timeout_s
        )
        self._unrouted_acks: list[Sent] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acked: list[Sent] = []  # (spool id, attempt) acknowledged, to schedule
        self._confirmed: list[int] = []  # spool ids confirmed, to delete
        self._cursor = 0  # highest spool id handed to paho since the last (re)connect
        self._wake = asyncio.Event()
        self.connected = False
        self.max_packet_bytes = batcher.max_packet_bytes
        self.published = 0  # PUBACKs with success (a re-sent message counts again)
        self.rejected = 0  # PUBACKs with an error reason
        self.no_subscribers = 0  # PUBACKs saying nobody subscribed (re-sent soon; see NO_SUBSCRIBERS_RETRY_S)
        self.sent = 0  # messages handed to paho (each send counts: after a reconnect every unconfirmed row again)
        self.resent_unconfirmed = 0  # of those, sent again because the confirmation timed out
        self.confirmations = 0  # confirmation messages received
        self.bad_confirmations = 0  # confirmation messages that could not be read
        self.connects = 0
        # With DCU uplinks to take, the session persists (the broker queues them while the collector is away)
        # and each uplink is acknowledged only once it is in the spool.
        self._persistent = bool(self.subscriptions)
        self.mqtt: MqttClient[Sent] = MqttClient(
            endpoint,
            client_id=client_id,
            window=window,
            max_inflight=window,
            keepalive_s=KEEPALIVE_S,
            will=Will(status_topic, will_payload),
            session_expiry_s=SESSION_EXPIRY_S if self._persistent else None,
            manual_ack=self._persistent,
            reconnect_delay_s=(RECONNECT_MIN_S, RECONNECT_MAX_S),
            subscriptions=[self.confirm_topic, *self.subscriptions],
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_ack=self._on_publish,
            on_message=self._on_message,
        )
        self.client = self.mqtt.client  # paho's own: tools may watch its raw callbacks (benchmarks/bench_soak.py)

    @property
    def inflight(self) -> int:
        return self.mqtt.outstanding

    @property
    def confirmed(self) -> int:
        """Spooled messages that ingest confirmed (and that left the spool)."""
        return self.spool.confirmed

    # ---- paho thread -> event loop ----------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, connack: Connack) -> None:
        if not connack.ok:
            log.warning("broker refused the connection: %s", connack.reason)
            return
        self._call(self._connected, True, connack.max_packet_bytes)

    def _on_disconnect(self, _reason: mqtt.ReasonCode) -> None:
        self._call(self._connected, False, 0)

    def _on_publish(self, sent: Sent, reason: mqtt.ReasonCode) -> None:
        # Also from the event loop itself when the PUBACK came before publish() returned: then it waits its turn.
        if reason.value == NO_MATCHING_SUBSCRIBERS:
            self._call(self._on_unrouted, sent)
            return
        self._call(self._on_ack, sent, reason.is_failure, str(reason))

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        message = IncomingMessage(topic=msg.topic, payload=bytes(msg.payload), mid=msg.mid, qos=msg.qos)
        self._call(self._on_confirmation if msg.topic == self.confirm_topic else self._deliver, message)

    # ---- event loop side --------------------------------------------------------------------------------------

    def _connected(self, up: bool, max_packet_bytes: int) -> None:
        self.connected = up
        if up:
            self.connects += 1
            self.max_packet_bytes = max_packet_bytes
            self.batcher.max_packet_bytes = max_packet_bytes
            # Send every unconfirmed row again, oldest first: the broker may have lost what it acknowledged.
            self._cursor = 0
            self.schedule.clear()
            self.unrouted.clear()
            if self.on_connected is not None:
                self.on_connected()
        self._wake.set()

    def _on_ack(self, sent: Sent, failed: bool, reason: str) -> None:
        if failed:
            self.rejected += 1
            log.error("broker rejected spooled message %d: %s (kept, sent again later)", sent[0], reason)
        else:
            self.published += 1
        self._acked.append(sent)
        self._wake.set()

    def _on_unrouted(self, sent: Sent) -> None:
        self.no_subscribers += 1
        self._unrouted_acks.append(sent)
        self._wake.set()

    def _on_confirmation(self, message: IncomingMessage) -> None:
        try:
            ids = parse_confirmation(message.payload)
        except PayloadError as exc:
            self.bad_confirmations += 1
            log.warning("ignoring a confirmation on %s: %s", message.topic, exc.reason)
        else:
            self.confirmations += 1
            # Only ids of committed rows: a confirmation can never make the spool forget what it did not send.
            self._confirmed += [i for i in ids if i <= self.batcher.committed_id]
            self._wake.set()
        self.ack_incoming(message)

    def _deliver(self, message: IncomingMessage) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def ack_incoming(self, message: IncomingMessage) -> None:
        """Acknowledge a received QoS 1 message (after what it carried is durable in the spool)."""
        if self._persistent and message.qos > 0:
            with contextlib.suppress(Exception):
                self.mqtt.ack(message.mid, message.qos)

    def wake(self) -> None:
        self._wake.set()

    def settle(self) -> None:
        """Forget confirmed rows; start the confirmation timeout of acknowledged ones."""
        if self._confirmed:
            confirmed, self._confirmed = self._confirmed, []
            self.spool.delete(confirmed)
        if self._acked:
            acked, self._acked = self._acked, []
            _schedule(self.schedule, acked)
        if self._unrouted_acks:
            unrouted, self._unrouted_acks = self._unrouted_acks, []
            _schedule(self.unrouted, unrouted)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.mqtt.start()

    def _send(self, record: SpoolRecord, attempt: int) -> bool:
        """Hand one row to paho; False when it had to be split first (its parts follow as new rows)."""
        props = publish_properties(self.client_id, record.id)
        if publish_packet_bytes(record.topic, len(record.payload), props) > self.max_packet_bytes:
            log.warning(
                "spooled message %d (%d bytes) exceeds the broker's maximum packet size of %d: splitting it",
                record.id,
                len(record.payload),
                self.max_packet_bytes,
            )
            self.batcher.reseal(record)
            return False
        try:
            info = self.mqtt.publish(record.topic, record.payload, qos=1, properties=props, token=(record.id, attempt))
        except PublishRefused as exc:
            log.error("spooled message %d: %s (sent again after the next reconnect)", record.id, exc)
            return False
        if info is None:  # the pump alone sends windowed messages, only into the room it measured
            raise RuntimeError("the MQTT window was full although the pump measured room in it")
        self.sent += 1
        self.resent_unconfirmed += attempt > 0
        return True

    def _send_due(self, room: int) -> int:
        """Re-send rows whose confirmation timed out; returns the room left."""
        in_paho = {spool_id for spool_id, _ in self.mqtt.pending_tokens()}
        while room > 0:
            due = self.unrouted.due(room) or self.schedule.due(room)
            if not due:
                break
            attempts = dict(due)
            for record in self.spool.get([i for i, _ in due]):
                if record.id not in in_paho and record.id <= self._cursor and self._send(record, attempts[record.id]):
                    room -= 1
        return room

    def _send_new(self, room: int) -> None:
        """Send rows after the cursor, oldest first (all of them after a reconnect)."""
        in_paho = {spool_id for spool_id, _ in self.mqtt.pending_tokens()}
        limit = self.batcher.committed_id
        while room > 0 and self._cursor < limit:
            records = [r for r in self.spool.read_after(self._cursor, min(room, READ_CHUNK)) if r.id <= limit]
            if not records:
                break
            for record in records:
                self._cursor = record.id
                if record.id not in in_paho and self._send(record, 0):
                    room -= 1

    async def pump(self, stop: asyncio.Event) -> None:
        """Hand rows to paho, oldest first, keeping at most `window` unacknowledged."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
            self._wake.clear()
            self.settle()
            if not self.connected:
                continue
            room = self._send_due(self.mqtt.room)
            self._send_new(room)

    def publish_status(self, payload: bytes) -> None:
        """A retained status message (not spooled: only the latest one matters)."""
        if self.connected:
            self.mqtt.publish(self.status_topic, payload, qos=1, retain=True, control=True)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until ingest confirmed everything in the spool (a clean shutdown); True when it did. What is not
        confirmed stays in the spool and is sent again at the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            self.settle()
            if self.connected and self.spool.depth == 0:
                return True
            if not self.connected:
                return False
            await asyncio.sleep(0.05)
        return False

    def stop(self, offline_payload: bytes | None) -> None:
        if offline_payload is not None and self.connected:
            info = self.mqtt.publish(self.status_topic, offline_payload, qos=1, retain=True, control=True)
            with contextlib.suppress(Exception):
                assert info is not None  # a control message does not wait for the window
                info.wait_for_publish(timeout=2.0)
        self.mqtt.close()
        self.settle()


def _schedule(schedule: ResendSchedule, sent: list[Sent]) -> None:
    """Start the re-send timeouts of acknowledged messages, grouped by the attempt each was sent on."""
    by_attempt: dict[int, list[int]] = {}
    for spool_id, attempt in sent:
        by_attempt.setdefault(attempt, []).append(spool_id)
    for attempt, ids in sorted(by_attempt.items()):
        schedule.add(ids, attempt)
