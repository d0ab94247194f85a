"""The MQTT side: paho 2.x client, persistent session, shared subscription, manual QoS 1 acks, bounded queue.

Back-pressure, in two layers:
1. We announce MQTT 5 Receive Maximum = RECEIVE_MAXIMUM and acknowledge a message only after its batch has
   committed. When the database stalls, acks stop; once RECEIVE_MAXIMUM messages are unacknowledged the broker
   stops sending to us and keeps the rest queued in our persistent session (Mosquitto: max_queued_messages).
   Worker memory is therefore bounded by RECEIVE_MAXIMUM x MAX_PAYLOAD_BYTES.
2. The queue between paho's network thread and the writer holds QUEUE_MAX_MESSAGES >= RECEIVE_MAXIMUM, so a put
   does not block with a conforming broker. With one that ignores Receive Maximum, the put blocks the network
   thread: it stops reading the socket and TCP flow control pushes back on the broker.

Redelivery: a message the broker sends again after a reconnect carries the DUP flag (``Incoming.dup``); the worker
counts such deliveries in its poison ledger (ingest.worker).

Commit confirmations (docs/delivery.md): a message's MQTT 5 ResponseTopic and CorrelationData ride along in
``Incoming``; ``confirm`` publishes the worker's confirmations, QoS 1, with a bounded number outstanding (the
window of amr.broker.client, which also maps each PUBACK to its message).

Acks and reconnects: after a reconnect the broker resends unacknowledged messages with their packet ids, and may
reuse an id once it is acknowledged. So each message carries the connection generation it arrived on, and only
messages of the current generation are acknowledged; an older copy is still written (deduplicated by the unique
key) while its redelivered twin carries the ack.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from amr.broker import topics
from amr.broker.client import Connack, MqttClient, PublishRefused
from amr.broker.confirm import message_id_of
from amr.broker.mosquitto import BrokerEndpoint
from ingest.limits import (
    CONFIRM_MAX_OUTSTANDING,
    KEEPALIVE_S,
    QUEUE_MAX_MESSAGES,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_S,
)

log = logging.getLogger(__name__)

TOPIC_FILTERS = (
    f"{topics.READINGS}/#",
    f"{topics.EVENTS}/#",
    f"{topics.DCU}/+/uplink",
    f"{topics.STATUS}/#",
)
RECONNECT_DELAY_S = (1, 10)  # paho's back-off (whole seconds) while the broker is away


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_s: float  # [s since the Unix epoch] when paho handed it over
    dup: bool = False  # the broker sent it before (a worker took it and died, or the connection dropped)
    response_topic: str | None = None  # where the source wants its commit confirmation (MQTT 5 ResponseTopic)
    correlation: int | None = None  # the source's id of the message (MQTT 5 CorrelationData, ASCII digits)


class Consumer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        share_group: str = topics.INGEST_SHARE_GROUP,
        receive_maximum: int = RECEIVE_MAXIMUM,
        queue_max: int = QUEUE_MAX_MESSAGES,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id
        self.filters = [topics.shared(f, share_group) for f in TOPIC_FILTERS]
        self.queue: queue.Queue[Incoming] = queue.Queue(maxsize=max(queue_max, receive_maximum))
        self.receive_maximum = receive_maximum
        self.connected = threading.Event()
        self.generation = 0
        self.connects = 0
        self.confirms_skipped = 0
        self._lock = threading.Lock()
        # Confirmations are the only messages a worker publishes: the window bounds them.
        self.mqtt: MqttClient[None] = MqttClient(
            BrokerEndpoint(host=host, port=port, username=username, password=password),
            client_id=client_id,
            window=CONFIRM_MAX_OUTSTANDING,
            keepalive_s=KEEPALIVE_S,
            session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=receive_maximum,
            manual_ack=True,
            reconnect_delay_s=RECONNECT_DELAY_S,
            subscriptions=self.filters,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_message=self._on_message,
        )
        self.subscribed = self.mqtt.subscribed  # set on the first SUBACK (tests and tools wait on it)

    @property
    def confirms_outstanding(self) -> int:
        """Confirmations waiting for the broker's PUBACK."""
        return self.mqtt.outstanding

    def start(self) -> None:
        # In the background: a broker that is not up yet is retried by paho's own reconnect loop.
        self.mqtt.start()

    def stop(self) -> None:
        self.mqtt.close()

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """Acknowledge one message; False when it arrived on an earlier connection (its redelivery acks)."""
        if qos == 0:
            return True
        with self._lock:
            if generation != self.generation or not self.connected.is_set():
                return False
        self.mqtt.ack(mid, qos)
        return True

    def ack_many(self, items: list[Incoming]) -> int:
        """Acknowledge a committed batch's messages under one lock check; returns how many were acknowledged
        (those from an earlier connection are left to their redelivered twins)."""
        with self._lock:
            if not self.connected.is_set():
                return 0
            generation = self.generation
        acked = 0
        ack = self.mqtt.ack
        for item in items:
            if item.qos and item.generation == generation:
                ack(item.mid, item.qos)
                acked += 1
        return acked

    def confirm(self, topic: str, payload: bytes) -> bool:
        """Publish one commit confirmation (QoS 1); False when too many are still waiting for the broker."""
        try:
            sent = self.mqtt.publish(topic, payload, qos=1) is not None
        except PublishRefused as exc:
            log.warning("%s: %s", self.client_id, exc)
            sent = False
        if not sent:
            self.confirms_skipped += 1
        return sent

    # -- callbacks (paho's network thread) -----------------------------------------------------------------
    def _on_connect(self, connack: Connack) -> None:
        if not connack.ok:
            log.warning("broker refused %s: %s", self.client_id, connack.reason)
            return
        with self._lock:
            self.generation += 1
            self.connects += 1
        self.connected.set()
        log.info("%s connected (session present: %s)", self.client_id, connack.session_present)

    def _on_disconnect(self, reason: mqtt.ReasonCode) -> None:
        with self._lock:
            self.connected.clear()
        log.warning("%s disconnected: %s", self.client_id, reason)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        response = getattr(props, "ResponseTopic", None)
        item = Incoming(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.generation, time.time(), dup=bool(msg.dup),
            response_topic=response if isinstance(response, str) else None,
            correlation=message_id_of(props),
        )  # fmt: skip
        self.queue.put(item)  # blocks only with a broker that ignores Receive Maximum: see the module docstring
