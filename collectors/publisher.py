"""Publishing the spool to the broker with QoS 1, a bounded window of unacknowledged messages, and a status
topic with a last will.

paho-mqtt runs its network loop in its own thread; every callback is handed to the collector's event loop
(`call_soon_threadsafe`), which owns the spool. The pump hands committed spool rows to paho in id order while
fewer than `window` are unacknowledged (paho numbers QoS 1 messages with 16-bit ids and silently overwrites
beyond 65,535 outstanding, so the window stays far below). A row is deleted only on its PUBACK. After a
reconnect paho re-sends what it had in flight (DUP set); after a restart the pump starts again from the oldest
row in the spool. A PUBACK with an error reason (e.g. 'Not authorized') leaves the row in the spool and is
counted in `rejected`: it is sent again after the next restart, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from collectors.batcher import Batcher
from collectors.spool import Spool

log = logging.getLogger(__name__)

KEEPALIVE_S = 15
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps DCU uplinks for a collector that is away up to a week
RECONNECT_MIN_S = 1  # paho takes whole seconds
RECONNECT_MAX_S = 5


@dataclass(frozen=True, kw_only=True)
class IncomingMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttPublisher:
    """One MQTT connection for a collector: spool pump, status messages, and DCU uplink subscriptions."""

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
    ) -> None:
        self.endpoint = endpoint
        self.spool = spool
        self.batcher = batcher
        self.window = window
        self.status_topic = status_topic
        self.subscriptions = subscriptions or []
        self.on_message = on_message
        self.on_connected = on_connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[int, int] = {}  # paho mid -> spool id
        self._acked: list[int] = []
        self._cursor = 0  # highest spool id handed to paho
        self._wake = asyncio.Event()
        self.connected = False
        self.published = 0
        self.rejected = 0
        self.connects = 0
        persistent = bool(self.subscriptions)
        self.client = new_client(client_id)
        self.client.username_pw_set(endpoint.username, endpoint.password)
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.will_set(status_topic, will_payload, qos=1, retain=True)
        if persistent:
            self.client.manual_ack_set(True)
        self._persistent = persistent
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # ---- paho thread -> event loop ----------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._call(self._connected, True)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        self._call(self._connected, False)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
        self._call(self._on_ack, mid, reason.is_failure, str(reason))

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._call(
            self._deliver, IncomingMessage(topic=msg.topic, payload=bytes(msg.payload), mid=msg.mid, qos=msg.qos)
        )

    # ---- event loop side --------------------------------------------------------------------------------------

    def _connected(self, up: bool) -> None:
        self.connected = up
        if up:
            self.connects += 1
            if self.on_connected is not None:
                self.on_connected()
        self._wake.set()

    def _on_ack(self, mid: int, failed: bool, reason: str) -> None:
        spool_id = self._inflight.pop(mid, None)
        if spool_id is None:
            return  # a status message: not spooled
        if failed:
            self.rejected += 1
            log.error("broker rejected spooled message %d: %s (kept in the spool)", spool_id, reason)
        else:
            self._acked.append(spool_id)
            self.published += 1
        self._wake.set()

    def _deliver(self, message: IncomingMessage) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def ack_incoming(self, message: IncomingMessage) -> None:
        """Acknowledge a received QoS 1 message (after what it carried is durable in the spool)."""
        if self._persistent and message.qos > 0:
            with contextlib.suppress(Exception):
                self.client.ack(message.mid, message.qos)

    def wake(self) -> None:
        self._wake.set()

    def delete_acked(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self.spool.delete(acked)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)
        if self._persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=KEEPALIVE_S,
            clean_start=not self._persistent,
            properties=props,
        )
        self.client.loop_start()

    async def pump(self, stop: asyncio.Event) -> None:
        """Hand committed spool rows to paho, oldest first, keeping at most `window` unacknowledged."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
            self._wake.clear()
            self.delete_acked()
            if not self.connected:
                continue
            room = self.window - len(self._inflight)
            limit = self.batcher.committed_id
            while room > 0 and self._cursor < limit:
                records = self.spool.read_after(self._cursor, min(room, 500))
                records = [r for r in records if r.id <= limit]
                if not records:
                    break
                for rec in records:
                    info = self.client.publish(rec.topic, rec.payload, qos=1)
                    self._inflight[info.mid] = rec.id
                    self._cursor = rec.id
                room = self.window - len(self._inflight)

    def publish_status(self, payload: bytes) -> None:
        """A retained status message (not spooled: only the latest one matters)."""
        if self.connected:
            self.client.publish(self.status_topic, payload, qos=1, retain=True)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything committed is acknowledged (a clean shutdown); True when drained."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            self.delete_acked()
            if self.connected and self.spool.depth == 0:
                return True
            if not self.connected:
                return False
            await asyncio.sleep(0.05)
        return False

    def stop(self, offline_payload: bytes | None) -> None:
        if offline_payload is not None and self.connected:
            info = self.client.publish(self.status_topic, offline_payload, qos=1, retain=True)
            with contextlib.suppress(Exception):
                info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self.delete_acked()
