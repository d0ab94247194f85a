"""MQTT uplink of a DCU: sends the outbox with QoS 1, at most ``window`` messages unacknowledged (the bounded
window of amr.broker.client), and forgets a message only when ingest confirms it (docs/delivery.md).

The MQTT client id is the DCU id (the broker's ACL lets a client write only under its own client id and read
only its own confirmation topic). Each uplink carries ResponseTopic = ``confirm_topic(<dcu id>)`` and
CorrelationData = its ``seq`` in ASCII digits; the client subscribes to that topic and an uplink leaves the
outbox when its seq is confirmed. With ``confirm=False`` (a concentrator whose head end does not speak the
protocol) the properties are not sent and a message leaves on its PUBACK, as before.

Each connection uses a fresh client. After every (re)connect everything in the outbox is sent again, oldest
first (the broker may have lost what it acknowledged); a message acknowledged but still unconfirmed
``confirm_timeout_s`` later is sent again, the timeout doubling up to ``max_confirm_timeout_s``. The broker's
maximum packet size (its CONNACK) is passed to ``on_max_packet`` so that the DCU seals messages that fit; a
stored message that does not fit is refused (amr.broker.confirm.PacketTooLarge), never sent to make the broker
drop the connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from amr.broker.client import MAX_WINDOW, BrokerRefused, MqttClient, PublishRefused, Will
from amr.broker.confirm import (
    CONFIRM_TIMEOUT_S,
    MAX_CONFIRM_TIMEOUT_S,
    PacketTooLarge,
    ResendSchedule,
    parse_confirmation,
    publish_packet_bytes,
    publish_properties,
)
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.topics import confirm_topic, status_topic
from amr.errors import PayloadError
from amr.messages import ClientStatus, encode
from simulators.dcu.outbox import Outbox, OutboxRow

LOG = logging.getLogger(__name__)

DEFAULT_WINDOW = 100  # outstanding QoS 1 messages: enough to keep a LAN broker busy
KEEPALIVE_S = 10
CONNECT_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
POLL_S = 0.05
START = (-1, -1)  # an outbox cursor before every row

Sent = tuple[int, int]  # (outbox row id, attempt: 0 for the first send)


class UplinkPublisher:
    def __init__(
        self,
        *,
        endpoint: BrokerEndpoint,
        dcu_id: str,
        topic: str,
        outbox: Outbox,
        window: int = DEFAULT_WINDOW,
        confirm: bool = True,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        max_confirm_timeout_s: float = MAX_CONFIRM_TIMEOUT_S,
        on_max_packet: Callable[[int], None] | None = None,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be in 1..{MAX_WINDOW}, got {window}")
        self.endpoint = endpoint
        self.dcu_id = dcu_id
        self.topic = topic
        self.outbox = outbox
        self.window = window
        self.confirm = confirm
        self.on_max_packet = on_max_packet
        self.schedule = ResendSchedule(first_s=confirm_timeout_s, max_s=max_confirm_timeout_s)
        self.acked_count = 0  # PUBACKs with success (a re-sent message counts again)
        self.rejected_count = 0  # PUBACKs with an error (e.g. not authorized): kept, sent again later
        self.sent_count = 0  # messages handed to paho
        self.resent_unconfirmed = 0  # of those, sent again because the confirmation timed out
        self.confirmations = 0  # confirmation messages received
        self.confirmed_count = 0  # outbox rows forgotten because ingest confirmed them
        self.refused_count = 0  # stored messages too large for the broker: moved to the refused table
        self.connections = 0
        self.connected = False
        self.max_packet_bytes: int | None = None  # the broker's, once connected
        self.offline = threading.Event()  # set: stay disconnected (a fault, or the DCU powered down)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._mqtt: MqttClient[Sent] | None = None  # the current connection's client
        self._acked: list[tuple[int, int, bool]] = []  # (row id, attempt, ok) acknowledged, to settle
        self._confirmed: list[int] = []  # seqs confirmed, to forget
        self._cursor = START  # the last row handed to paho in this connection
        self._thread = threading.Thread(target=self._run, name=f"dcu-uplink-{dcu_id}", daemon=True)

    @property
    def inflight(self) -> int:
        client = self._mqtt
        return client.outstanding if client is not None else 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._thread.join(timeout_s)

    def drained(self) -> bool:
        """Nothing left: every message confirmed (or, without confirmations, acknowledged)."""
        return len(self.outbox) == 0 and self.inflight == 0

    def delivered(self) -> bool:
        """Every stored message was sent and acknowledged by the broker in this connection."""
        inflight = self.inflight  # first: a message leaves it only after its PUBACK is in self._acked
        with self._lock:
            cursor, waiting = self._cursor, bool(inflight or self._acked)
        return self.connected and not waiting and self.outbox.count_after(cursor) == 0

    def _status(self, state: str) -> bytes:
        return encode(ClientStatus(source=self.dcu_id, kind="dcu", state=state, ts=datetime.now(UTC)))

    def _run(self) -> None:
        pause = RECONNECT_MIN_S
        while not self._stop.is_set():
            if self.offline.is_set():
                self._stop.wait(POLL_S)
                continue
            if self._session():
                pause = RECONNECT_MIN_S
            else:
                self._stop.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX_S)

    def _on_ack(self, sent: Sent, reason: mqtt.ReasonCode) -> None:
        ok = not reason.is_failure
        with self._wake:
            self._count(ok, sent[0], reason)
            self._acked.append((*sent, ok))
            self._wake.notify_all()

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != confirm_topic(self.dcu_id):
            return
        try:
            seqs = parse_confirmation(bytes(msg.payload))
        except PayloadError as exc:
            LOG.warning("DCU %s: ignoring a confirmation: %s", self.dcu_id, exc.reason)
            return
        with self._wake:
            self.confirmations += 1
            self._confirmed += seqs
            self._wake.notify_all()

    def _session(self) -> bool:
        """One connection: publish until it drops, we go offline or stop. True if it connected."""
        lost = threading.Event()

        def on_disconnect(_reason: mqtt.ReasonCode) -> None:
            lost.set()
            with self._wake:
                self._wake.notify_all()

        client: MqttClient[Sent] = MqttClient(
            self.endpoint,
            client_id=self.dcu_id,
            window=self.window,
            max_inflight=self.window,
            keepalive_s=KEEPALIVE_S,
            will=Will(status_topic(self.dcu_id), self._status("offline")),
            subscriptions=[confirm_topic(self.dcu_id)] if self.confirm else [],
            on_disconnect=on_disconnect,
            on_ack=self._on_ack,
            on_message=self._on_message,
        )
        try:
            connack = client.connect(CONNECT_TIMEOUT_S)
        except OSError as exc:
            LOG.debug("DCU %s: broker unreachable: %s", self.dcu_id, exc)
            return False
        except BrokerRefused as exc:
            LOG.warning("DCU %s: broker refused or did not answer: %s", self.dcu_id, exc.reason)
            return False
        try:
            if lost.is_set():
                LOG.warning("DCU %s: the broker dropped the connection at once", self.dcu_id)
                return False
            self.connections += 1
            self.max_packet_bytes = connack.max_packet_bytes
            if self.on_max_packet is not None:
                self.on_max_packet(connack.max_packet_bytes)
            client.publish(status_topic(self.dcu_id), self._status("online"), qos=0, retain=True)
            with self._lock:
                self._mqtt = client
                # Everything stored goes out again, oldest first: the broker may have lost what it acknowledged.
                self._cursor = START
                self.schedule.clear()
            self.connected = True
            self._pump(client, lost)
            return True
        finally:
            self.connected = False
            if lost.is_set():
                client.client.loop_stop()
            else:
                client.close()
            self._settle()
            with self._lock:
                self._mqtt = None

    def _count(self, ok: bool, row_id: int, reason: object) -> None:
        if ok:
            self.acked_count += 1
        else:
            self.rejected_count += 1
            LOG.error("DCU %s: broker rejected outbox row %d: %s (kept, sent again later)", self.dcu_id, row_id, reason)

    def _settle(self) -> None:
        """Forget confirmed messages (or, without confirmations, acknowledged ones); schedule the others."""
        with self._lock:
            confirmed, self._confirmed = self._confirmed, []
            acked, self._acked = self._acked, []
        if confirmed:
            self.confirmed_count += self.outbox.confirm(confirmed)
        if not self.confirm:
            self.outbox.remove([row_id for row_id, _, ok in acked if ok])
            acked = [a for a in acked if not a[2]]  # a rejected message is tried again on the schedule
        by_attempt: dict[int, list[int]] = {}
        for row_id, attempt, _ok in acked:
            by_attempt.setdefault(attempt, []).append(row_id)
        with self._lock:
            for attempt, ids in sorted(by_attempt.items()):
                self.schedule.add(ids, attempt)

    def _send(self, client: MqttClient[Sent], row: OutboxRow, attempt: int) -> bool:
        props = publish_properties(self.dcu_id, row.seq) if self.confirm else None
        size = publish_packet_bytes(self.topic, len(row.payload), props)
        if self.max_packet_bytes is not None and size > self.max_packet_bytes:
            error = PacketTooLarge(self.topic, size, self.max_packet_bytes)
            LOG.error("DCU %s: uplink seq %d refused: %s", self.dcu_id, row.seq, error)
            self.outbox.refuse(row.seq, row.payload, str(error), row_id=row.id)
            self.refused_count += 1
            return False
        try:
            # This thread alone publishes and sends only into the room it measured: the window has room.
            client.publish(self.topic, row.payload, qos=1, properties=props, token=(row.id, attempt))
        except PublishRefused as exc:
            LOG.warning("DCU %s: %s (sent again after the next reconnect)", self.dcu_id, exc)
            return False
        with self._lock:
            self.sent_count += 1
            self.resent_unconfirmed += attempt > 0
        return True

    def _pump(self, client: MqttClient[Sent], lost: threading.Event) -> None:
        while not (self._stop.is_set() or lost.is_set() or self.offline.is_set()):
            self._settle()
            room = client.room
            in_paho = {row_id for row_id, _ in client.pending_tokens()}
            with self._lock:
                due = self.schedule.due(room) if room > 0 else []
            attempts = dict(due)
            for row in self.outbox.get(list(attempts)):
                sent_before = row.id not in in_paho and (row.pos, row.id) <= self._cursor
                if sent_before and self._send(client, row, attempts[row.id]):
                    room -= 1
            while room > 0:
                rows = self.outbox.read_after(self._cursor, room)
                if not rows:
                    break
                for row in rows:
                    with self._lock:
                        self._cursor = (row.pos, row.id)
                    if self._send(client, row, 0):
                        room -= 1
            with self._wake:
                if not (self._acked or self._confirmed):
                    self._wake.wait(POLL_S)
        # Give outstanding PUBACKs and confirmations a moment on a clean stop so they are not replayed needlessly.
        deadline = time.monotonic() + 1.0
        while self._stop.is_set() and not lost.is_set() and client.outstanding and time.monotonic() < deadline:
            time.sleep(0.01)
