"""Publish many messages with QoS 1 and wait until the broker acknowledged each (tests, benchmarks, replays).

The bounded window of unacknowledged messages (paho's 16-bit message ids) is amr.broker.client's.

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

from amr.broker.client import DEFAULT_WINDOW, MqttClient
from amr.broker.confirm import PacketTooLarge, publish_packet_bytes
from amr.broker.mosquitto import BrokerEndpoint
from amr.errors import ServiceError

PACKET_TOO_LARGE = 0x95  # MQTT 5 DISCONNECT reason: a broker whose limit we did not know refused a packet


class WindowedPublisher:
    """``with WindowedPublisher(ep, client_id=...) as pub: pub.publish_all([(topic, payload), ...])``."""

    def __init__(
        self, endpoint: BrokerEndpoint, *, client_id: str, window: int = DEFAULT_WINDOW, keepalive_s: int = 60
    ) -> None:
        self.endpoint = endpoint
        self.mqtt: MqttClient[bool] = MqttClient(
            endpoint,
            client_id=client_id,
            window=window,
            keepalive_s=keepalive_s,
            on_ack=self._on_ack,
            on_disconnect=self._on_disconnect,
        )
        self._lock = threading.Lock()
        self._dropped_oversize = False
        self.max_packet_bytes: int | None = None  # the broker's (its CONNACK), once connected
        # PUBACK reason -> count of messages the broker refused (e.g. 'Not authorized': the ACL lets a client
        # write only under its own client id); publish_all counts them as acknowledged, the caller decides.
        self.rejected: dict[str, int] = {}

    def _on_disconnect(self, reason: mqtt.ReasonCode) -> None:
        if reason.value == PACKET_TOO_LARGE:
            self._dropped_oversize = True  # wakes publish_all: it raises

    def _on_ack(self, _token: bool, reason: mqtt.ReasonCode) -> None:
        if reason.is_failure:
            with self._lock:
                self.rejected[str(reason)] = self.rejected.get(str(reason), 0) + 1

    def __enter__(self) -> WindowedPublisher:
        self.max_packet_bytes = self.mqtt.connect().max_packet_bytes
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.mqtt.close()

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
        for topic, payload in messages:
            size = publish_packet_bytes(topic, len(payload))
            if size > self.max_packet_bytes:
                raise PacketTooLarge(topic, size, self.max_packet_bytes)
            if not self.mqtt.wait_for_room(timeout_s):
                raise ServiceError(f"broker {self.endpoint.host}:{self.endpoint.port} stopped acknowledging")
            self._check_dropped()
            self.mqtt.publish(topic, payload, qos=1, token=True)  # this thread alone publishes: the room is ours
            sent += 1
        if not self.mqtt.wait_all_acked(timeout_s, abort=lambda: self._dropped_oversize):
            self._check_dropped()
            raise ServiceError(f"{self.mqtt.outstanding} messages not acknowledged within {timeout_s} s")
        self._check_dropped()
        return sent
