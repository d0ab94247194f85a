"""MQTT uplink of a DCU: sends the outbox with QoS 1 and a bounded window of unacknowledged messages, and
forgets a message only when ingest confirms it (docs/delivery.md).

paho numbers QoS 1 messages with 16-bit ids and silently overwrites earlier ones beyond 65,535 outstanding
messages, so at most ``window`` messages are in flight; the next ones wait in the outbox until PUBACKs arrive.
The MQTT client id is the DCU id (the broker's ACL lets a client write only under its own client id and read
only its own confirmation topic). Each uplink carries ResponseTopic = ``confirm_topic(<dcu id>)`` and
CorrelationData = its ``seq`` in ASCII digits; the client subscribes to that topic and an uplink leaves the
outbox when its seq is confirmed. With ``confirm=False`` (a concentrator whose head end does not speak the
protocol) the properties are not sent and a message leaves on its PUBACK, as before.

Each connection uses a fresh paho client. After every (re)connect everything in the outbox is sent again,
oldest first (the broker may have lost what it acknowledged); a message acknowledged but still unconfirmed
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
from paho.mqtt.properties import Properties

from amr.broker.confirm import (
    CONFIRM_TIMEOUT_S,
    MAX_CONFIRM_TIMEOUT_S,
    PacketTooLarge,
    ResendSchedule,
    max_packet_of,
    parse_confirmation,
    publish_packet_bytes,
    publish_properties,
)
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from amr.broker.topics import confirm_topic, status_topic
from amr.errors import PayloadError
from amr.messages import ClientStatus, encode
from simulators.dcu.outbox import Outbox, OutboxRow

LOG = logging.getLogger(__name__)

# Outstanding QoS 1 messages: far below paho's 65,535 ids, enough to keep a LAN broker busy.
DEFAULT_WINDOW = 100
KEEPALIVE_S = 10
CONNECT_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
POLL_S = 0.05
START = (-1, -1)  # an outbox cursor before every row


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
        if not 1 <= window <= 65_535:
            raise ValueError(f"window must be in 1..65535, got {window}")
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
        self._inflight: dict[int, tuple[int, int]] = {}  # paho mid -> (outbox row id, attempt)
        self._early: dict[int, bool] = {}  # PUBACKs that arrived before publish() returned the mid
        self._ignore: set[int] = set()  # mids of status messages, not outbox items
        self._acked: list[tuple[int, int, bool]] = []  # (row id, attempt, ok) acknowledged, to settle
        self._confirmed: list[int] = []  # seqs confirmed, to forget
        self._cursor = START  # the last row handed to paho in this connection
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
        """Nothing left: every message confirmed (or, without confirmations, acknowledged)."""
        return len(self.outbox) == 0 and self.inflight == 0

    def delivered(self) -> bool:
        """Every stored message was sent and acknowledged by the broker in this connection."""
        with self._lock:
            cursor, waiting = self._cursor, bool(self._inflight or self._acked)
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

    def _session(self) -> bool:
        """One connection: publish until it drops, we go offline or stop. True if it connected."""
        client = new_client(self.dcu_id)
        client.username_pw_set(self.endpoint.username, self.endpoint.password)
        client.will_set(status_topic(self.dcu_id), self._status("offline"), qos=1, retain=True)
        connected = threading.Event()
        lost = threading.Event()
        refused: list[str] = []
        limits: list[int] = []
        my_confirm_topic = confirm_topic(self.dcu_id)

        def on_connect(
            c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, props: Properties | None
        ) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            else:
                limits.append(max_packet_of(props))
                if self.confirm:
                    c.subscribe(my_confirm_topic, qos=1)
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
                elif (sent := self._inflight.pop(mid, None)) is None:
                    self._early[mid] = ok
                else:
                    self._count(ok, mid, reason)
                    self._acked.append((*sent, ok))
                self._wake.notify_all()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            if msg.topic != my_confirm_topic:
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

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
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
            self.max_packet_bytes = limits[0]
            if self.on_max_packet is not None:
                self.on_max_packet(limits[0])
            status = client.publish(status_topic(self.dcu_id), self._status("online"), qos=0, retain=True)
            with self._lock:
                if self._early.pop(status.mid, None) is None:
                    self._ignore.add(status.mid)
                # Everything stored goes out again, oldest first: the broker may have lost what it acknowledged.
                self._cursor = START
                self.schedule.clear()
            self.connected = True
            self._pump(client, lost)
            return True
        finally:
            self.connected = False
            if not lost.is_set():
                client.disconnect()
            client.loop_stop()
            self._settle()
            with self._lock:
                self._inflight.clear()
                self._early.clear()
                self._ignore.clear()

    def _count(self, ok: bool, mid: int, reason: object) -> None:
        if ok:
            self.acked_count += 1
        else:
            self.rejected_count += 1
            LOG.error("DCU %s: broker rejected message mid %d: %s (kept, sent again later)", self.dcu_id, mid, reason)

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

    def _send(self, client: mqtt.Client, row: OutboxRow, attempt: int) -> bool:
        props = publish_properties(self.dcu_id, row.seq) if self.confirm else None
        size = publish_packet_bytes(self.topic, len(row.payload), props)
        if self.max_packet_bytes is not None and size > self.max_packet_bytes:
            error = PacketTooLarge(self.topic, size, self.max_packet_bytes)
            LOG.error("DCU %s: uplink seq %d refused: %s", self.dcu_id, row.seq, error)
            self.outbox.refuse(row.seq, row.payload, str(error), row_id=row.id)
            self.refused_count += 1
            return False
        info = client.publish(self.topic, row.payload, qos=1, properties=props)
        with self._lock:
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                LOG.warning("DCU %s: publish failed rc=%s", self.dcu_id, info.rc)
            early = self._early.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = (row.id, attempt)
            else:
                self._count(early, info.mid, "early")
                self._acked.append((row.id, attempt, early))
            self.sent_count += 1
            self.resent_unconfirmed += attempt > 0
        return True

    def _pump(self, client: mqtt.Client, lost: threading.Event) -> None:
        while not (self._stop.is_set() or lost.is_set() or self.offline.is_set()):
            self._settle()
            with self._lock:
                room = self.window - len(self._inflight)
                in_paho = {row_id for row_id, _ in self._inflight.values()}
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
        while self._stop.is_set() and not lost.is_set() and self.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
