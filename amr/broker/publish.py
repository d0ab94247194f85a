"""A QoS 1 publisher that keeps a bounded window of unacknowledged messages.

paho-mqtt numbers QoS 1 messages with 16-bit ids: with more than 65,535 unacknowledged messages queued it silently
overwrites earlier ones. Tools that publish many messages (tests, benchmarks, replays) go through this class.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

import paho.mqtt.client as mqtt

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from amr.errors import ServiceError

DEFAULT_WINDOW = 1_000  # outstanding QoS 1 messages: far below paho's 65,535 ids, enough to keep the broker busy


class WindowedPublisher:
    """``with WindowedPublisher(ep, client_id=...) as pub: pub.publish_all([(topic, payload), ...])``."""

    def __init__(self, endpoint: BrokerEndpoint, *, client_id: str, window: int = DEFAULT_WINDOW,
                 keepalive_s: int = 60) -> None:
        self.endpoint = endpoint
        self.keepalive_s = keepalive_s
        self.client = new_client(client_id)
        self.client.username_pw_set(endpoint.username, endpoint.password)
        self.client.on_publish = self._on_publish
        self._free = threading.Semaphore(window)
        self._lock = threading.Lock()
        self._outstanding = 0
        self._all_acked = threading.Event()

    def _on_publish(self, _c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        self._free.release()
        with self._lock:
            self._outstanding -= 1
            if self._outstanding == 0:
                self._all_acked.set()

    def __enter__(self) -> WindowedPublisher:
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_all(self, messages: Iterable[tuple[str, bytes]], *, timeout_s: float = 120.0) -> int:
        """Publish with QoS 1; return the count once the broker acknowledged every message."""
        sent = 0
        self._all_acked.set()
        for topic, payload in messages:
            if not self._free.acquire(timeout=timeout_s):
                raise ServiceError(f"broker {self.endpoint.host}:{self.endpoint.port} stopped acknowledging")
            with self._lock:
                self._outstanding += 1
                self._all_acked.clear()
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ServiceError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
            sent += 1
        if not self._all_acked.wait(timeout_s):
            raise ServiceError(f"{self._outstanding} messages not acknowledged within {timeout_s} s")
        return sent
