"""A QoS 1 publisher that keeps a bounded window of unacknowledged messages.

paho-mqtt numbers QoS 1 messages with 16-bit ids: with more than 65,535 unacknowledged messages queued it silently
overwrites earlier ones. Tools that publish many messages (tests, benchmarks, replays) go through this class.

Maximum packet size: a broker that announces one in its CONNACK (Mosquitto with ``max_packet_size``) drops the
connection of a client that sends a larger packet, and paho sends the message again after each reconnect, so
the message never arrives and nothing says why. `publish_all` measures each packet against the broker's limit
and raises PacketTooLarge (amr.broker.confirm) before sending one that would not fit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from amr.broker.confirm import PacketTooLarge, max_packet_of, publish_packet_bytes
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import CONNECT_TIMEOUT_S, new_client
from amr.errors import ServiceError

DEFAULT_WINDOW = 1_000  # outstanding QoS 1 messages: far below paho's 65,535 ids, enough to keep the broker busy
PACKET_TOO_LARGE = 0x95  # MQTT 5 DISCONNECT reason: a broker whose limit we did not know refused a packet


class WindowedPublisher:
    """``with WindowedPublisher(ep, client_id=...) as pub: pub.publish_all([(topic, payload), ...])``."""

    def __init__(
        self, endpoint: BrokerEndpoint, *, client_id: str, window: int = DEFAULT_WINDOW, keepalive_s: int = 60
    ) -> None:
        self.endpoint = endpoint
        self.keepalive_s = keepalive_s
        self.client = new_client(client_id)
        self.client.username_pw_set(endpoint.username, endpoint.password)
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._free = threading.Semaphore(window)
        self._lock = threading.Lock()
        self._outstanding = 0
        self._all_acked = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._dropped_oversize = False
        self.max_packet_bytes: int | None = None  # the broker's (its CONNACK), once connected
        # PUBACK reason -> count of messages the broker refused (e.g. 'Not authorized': the ACL lets a client
        # write only under its own client id); publish_all counts them as acknowledged, the caller decides.
        self.rejected: dict[str, int] = {}

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        else:
            self.max_packet_bytes = max_packet_of(props)
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.value == PACKET_TOO_LARGE:
            self._dropped_oversize = True
            self._all_acked.set()  # wake publish_all: it raises

    def _on_publish(self, _c: mqtt.Client, _u: object, _mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
        self._free.release()
        with self._lock:
            if reason.is_failure:
                self.rejected[str(reason)] = self.rejected.get(str(reason), 0) + 1
            self._outstanding -= 1
            if self._outstanding == 0:
                self._all_acked.set()

    def __enter__(self) -> WindowedPublisher:
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused is not None:
            self.client.loop_stop()
            raise ServiceError(
                f"broker {self.endpoint.host}:{self.endpoint.port} refused {self.endpoint.username!r} or did not "
                f"answer: {self._refused or 'no CONNACK'}"
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _check_dropped(self) -> None:
        if self._dropped_oversize:
            raise ServiceError(
                f"broker {self.endpoint.host}:{self.endpoint.port} dropped the connection: a packet exceeded its "
                "maximum packet size"
            )

    def publish_all(self, messages: Iterable[tuple[str, bytes]], *, timeout_s: float = 120.0) -> int:
        """Publish with QoS 1; return the count once the broker acknowledged every message.

        Raises PacketTooLarge, before sending it, for a message larger than the broker's maximum packet size
        (the messages before it are sent)."""
        assert self.max_packet_bytes is not None, "use WindowedPublisher as a context manager"
        sent = 0
        self._all_acked.set()
        for topic, payload in messages:
            size = publish_packet_bytes(topic, len(payload))
            if size > self.max_packet_bytes:
                raise PacketTooLarge(topic, size, self.max_packet_bytes)
            if not self._free.acquire(timeout=timeout_s):
                raise ServiceError(f"broker {self.endpoint.host}:{self.endpoint.port} stopped acknowledging")
            self._check_dropped()
            with self._lock:
                self._outstanding += 1
                self._all_acked.clear()
            info = self.client.publish(topic, payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: queued for the reconnect
                raise ServiceError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
            sent += 1
        if not self._all_acked.wait(timeout_s):
            raise ServiceError(f"{self._outstanding} messages not acknowledged within {timeout_s} s")
        self._check_dropped()
        return sent
