"""MQTT uplink of a DCU: drains the outbox with QoS 1 and a bounded window of unacknowledged messages.

paho numbers QoS 1 messages with 16-bit ids and silently overwrites earlier ones beyond 65,535 outstanding
messages, so at most ``window`` messages are in flight; the next ones wait in the outbox until PUBACKs arrive.
Each connection uses a fresh paho client; when it drops, everything not acknowledged goes back to the front of
the outbox and is published again after the reconnect (so the broker may see a message twice: same seq).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from amr.broker.topics import status_topic
from amr.messages import ClientStatus, encode
from simulators.dcu.outbox import Outbox, OutboxItem

LOG = logging.getLogger(__name__)

# Outstanding QoS 1 messages: far below paho's 65,535 ids, enough to keep a LAN broker busy.
DEFAULT_WINDOW = 100
KEEPALIVE_S = 10
CONNECT_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
POLL_S = 0.05


class UplinkPublisher:
    def __init__(
        self, *, endpoint: BrokerEndpoint, dcu_id: str, topic: str, outbox: Outbox, window: int = DEFAULT_WINDOW
    ) -> None:
        if not 1 <= window <= 65_535:
            raise ValueError(f"window must be in 1..65535, got {window}")
        self.endpoint = endpoint
        self.dcu_id = dcu_id
        self.topic = topic
        self.outbox = outbox
        self.window = window
        self.acked_count = 0  # PUBACKs with success (a replayed message counts again)
        self.rejected_count = 0  # PUBACKs with an error (e.g. not authorized): dropped, not retried
        self.connections = 0
        self.offline = threading.Event()  # set: stay disconnected (a fault, or the DCU powered down)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inflight: dict[int, OutboxItem] = {}
        self._early: dict[int, bool] = {}  # PUBACKs that arrived before publish() returned the mid
        self._ignore: set[int] = set()  # mids of status messages, not outbox items
        self._thread = threading.Thread(target=self._run, name=f"dcu-uplink-{dcu_id}", daemon=True)

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._thread.join(timeout_s)

    def drained(self) -> bool:
        return len(self.outbox) == 0 and self.inflight == 0

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

    def _session(self) -> bool:
        """One connection: publish until it drops, we go offline or stop. True if it connected."""
        client = new_client(f"dcu-{self.dcu_id}")
        client.username_pw_set(self.endpoint.username, self.endpoint.password)
        client.will_set(status_topic(self.dcu_id), self._status("offline"), qos=1, retain=True)
        connected = threading.Event()
        lost = threading.Event()
        refused: list[str] = []

        def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        def on_disconnect(_c: mqtt.Client, _u: object, _f: object, _reason: object, _p: object) -> None:
            lost.set()
            connected.set()
            with self._wake:
                self._wake.notify_all()

        def on_publish(_c: mqtt.Client, _u: object, mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
            with self._wake:
                ok = not reason.is_failure
                if mid in self._ignore:
                    self._ignore.discard(mid)
                elif self._inflight.pop(mid, None) is None:
                    self._early[mid] = ok
                else:
                    self._count(ok, mid, reason)
                self._wake.notify_all()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.max_inflight_messages_set(self.window)
        try:
            client.connect(self.endpoint.host, self.endpoint.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            LOG.debug("DCU %s: broker unreachable: %s", self.dcu_id, exc)
            return False
        client.loop_start()
        try:
            if not connected.wait(CONNECT_TIMEOUT_S) or refused or lost.is_set():
                LOG.warning("DCU %s: broker refused or did not answer: %s", self.dcu_id, refused)
                return False
            self.connections += 1
            status = client.publish(status_topic(self.dcu_id), self._status("online"), qos=0, retain=True)
            with self._lock:
                if self._early.pop(status.mid, None) is None:
                    self._ignore.add(status.mid)
            self._pump(client, lost)
            return True
        finally:
            if not lost.is_set():
                client.disconnect()
            client.loop_stop()
            with self._lock:
                unacked = list(self._inflight.values())
                self._inflight.clear()
                self._early.clear()
                self._ignore.clear()
            self.outbox.requeue(unacked)

    def _count(self, ok: bool, mid: int, reason: object) -> None:
        if ok:
            self.acked_count += 1
        else:
            self.rejected_count += 1
            LOG.error("DCU %s: broker rejected message mid %d: %s", self.dcu_id, mid, reason)

    def _pump(self, client: mqtt.Client, lost: threading.Event) -> None:
        while not (self._stop.is_set() or lost.is_set() or self.offline.is_set()):
            with self._lock:
                room = self.window - len(self._inflight)
            for item in self.outbox.take(room) if room > 0 else []:
                info = client.publish(self.topic, item.payload, qos=1)
                with self._lock:
                    if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                        LOG.warning("DCU %s: publish failed rc=%s", self.dcu_id, info.rc)
                    early = self._early.pop(info.mid, None)
                    if early is None:
                        self._inflight[info.mid] = item
                    else:
                        self._count(early, info.mid, "early")
            with self._wake:
                self._wake.wait(POLL_S)
        # Give outstanding PUBACKs a moment on a clean stop so they are not replayed needlessly.
        deadline = time.monotonic() + 1.0
        while self._stop.is_set() and not lost.is_set() and self.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
