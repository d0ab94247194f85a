"""The one paho-mqtt wrapper: every MQTT client of the project (collector, DCU, ingest, tools) is built here.

What it does, so that its owners keep only their own outbox policy:
- creates an MQTT 5 client with the owner's client id and the credentials of a `BrokerEndpoint`;
- connects with a last will and session options (persistent session, Receive Maximum, manual acks), either
  blocking (`connect`, which raises when the broker refuses) or in the background (`start`, paho retries);
- reads the broker's maximum packet size from its CONNACK (`max_packet_bytes`);
- subscribes the owner's topics again after every (re)connect;
- maps paho's message ids back to the owner's token of each message and tells the owner of each PUBACK
  (`on_ack`), including a PUBACK that arrives before `publish()` returned the message id;
- bounds the messages sent and not yet acknowledged (the window, below).

The window. paho numbers QoS 1/2 messages with 16-bit ids (1..65,535) that it hands out in turn. With more than
65,535 messages unacknowledged a new message gets an id still in use: paho 2.x refuses it (MQTT_ERR_QUEUE_SIZE),
paho 1.x overwrote the earlier message; either way a caller that does not check loses a message without a word.
So at most `window` (far below 65,535) windowed messages are unacknowledged: `publish` waits for room (or says
there is none) instead. A control message (a retained status) may go beyond the window: there are only a few.

Threads: paho's network thread runs the callbacks. `on_ack` may also run in the thread that calls `publish()`
(when the PUBACK came first), so do not hold a lock that `on_ack` takes while calling `publish()`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.confirm import max_packet_of
from amr.broker.mosquitto import BrokerEndpoint
from amr.errors import ServiceError

CONNECT_TIMEOUT_S = 5.0
MAX_WINDOW = 65_535  # paho's message ids: see the module docstring
DEFAULT_WINDOW = 1_000  # enough to keep a broker busy, far below MAX_WINDOW
DEFAULT_KEEPALIVE_S = 60

Token = TypeVar("Token")

log = logging.getLogger(__name__)


def new_client(client_id: str | None = None) -> mqtt.Client:
    """A bare MQTT 5 paho client (callback API 2); `client_id` None: a random one."""
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id or f"amr-{uuid.uuid4().hex[:12]}", protocol=mqtt.MQTTv5
    )


class BrokerRefused(ServiceError):
    """The broker refused the connection, dropped it before its CONNACK, or did not answer."""

    def __init__(self, endpoint: BrokerEndpoint, reason: str | None) -> None:
        self.reason = reason  # the CONNACK's (or DISCONNECT's) reason; None: no answer
        super().__init__(
            f"broker {endpoint.host}:{endpoint.port} refused {endpoint.username!r} or did not answer: "
            f"{reason or 'no CONNACK'}"
        )


class PublishRefused(ServiceError):
    """paho did not take the message (it will never be acknowledged)."""


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us when the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Connack:
    ok: bool
    reason: str  # 'Success', 'Not authorized', ...
    max_packet_bytes: int  # the broker's MaximumPacketSize, or MQTT's own limit when it announces none
    session_present: bool


@dataclass(frozen=True, slots=True)
class _Sent(Generic[Token]):
    token: Token | None
    windowed: bool  # counts in the window (QoS > 0 and not a control message)
    acked: bool  # QoS > 0: a PUBACK will come (QoS 0: paho reports the write, nothing to tell the owner)


class MqttClient(Generic[Token]):
    """One MQTT 5 connection. Owners pass callbacks; each message they publish may carry a token that `on_ack`
    hands back with the PUBACK's reason code (e.g. 'Not authorized' on an ACL deny)."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        *,
        client_id: str | None = None,
        window: int = DEFAULT_WINDOW,
        max_inflight: int | None = None,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        will: Will | None = None,
        session_expiry_s: int | None = None,
        receive_maximum: int | None = None,
        manual_ack: bool = False,
        reconnect_delay_s: tuple[int, int] | None = None,
        subscriptions: Sequence[str] = (),
        on_connect: Callable[[Connack], None] | None = None,
        on_disconnect: Callable[[mqtt.ReasonCode], None] | None = None,
        on_ack: Callable[[Token, mqtt.ReasonCode], None] | None = None,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
    ) -> None:
        """`window`: windowed messages unacknowledged at most. `max_inflight`: how many of them paho puts on the
        wire before their PUBACK (it queues the rest); None keeps paho's default (20). `session_expiry_s`: a
        persistent session the broker keeps that long after a disconnect (None: a clean session each time).
        `manual_ack`: received QoS 1 messages are acknowledged only by `ack`. `reconnect_delay_s`: paho's
        (min, max) back-off in whole seconds; None keeps paho's (1, 120). An endpoint with an empty user name
        connects anonymously (the probe checks that the broker refuses it)."""
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be in 1..{MAX_WINDOW} (paho's 16-bit message ids), got {window}")
        self.endpoint = endpoint
        self.window = window
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.subscriptions = list(subscriptions)
        self.owner_on_connect = on_connect
        self.owner_on_disconnect = on_disconnect
        self.owner_on_ack = on_ack
        self.max_packet_bytes: int | None = None  # the broker's, from the last CONNACK
        self.connected = False
        self.subscribed = threading.Event()  # set on the first SUBACK
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # an acknowledgement, a connect or a disconnect
        self._pending: dict[int, _Sent[Token]] = {}  # paho mid -> what was sent, until its PUBACK is handled
        self._early: dict[int, mqtt.ReasonCode] = {}  # PUBACKs (or QoS 0 writes) before publish() returned the mid
        self._windowed = 0  # windowed messages handed to paho (or about to be) and not yet acknowledged
        self._connack: Connack | None = None
        self._lost_reason: str | None = None  # why the connection ended before a CONNACK (connect())

        self.client_id = client_id or f"amr-{uuid.uuid4().hex[:12]}"
        self.client = new_client(self.client_id)
        if endpoint.username:
            self.client.username_pw_set(endpoint.username, endpoint.password)
        if max_inflight is not None:
            self.client.max_inflight_messages_set(max_inflight)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if manual_ack:
            self.client.manual_ack_set(True)
        if reconnect_delay_s is not None:
            self.client.reconnect_delay_set(*reconnect_delay_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        if on_message is not None:
            self.client.on_message = lambda _c, _u, msg: on_message(msg)

    # ---- connection ------------------------------------------------------------------------------------------

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        if self.session_expiry_s is not None:
            props.SessionExpiryInterval = self.session_expiry_s
        if self.receive_maximum is not None:
            props.ReceiveMaximum = self.receive_maximum
        return props

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> Connack:
        """Connect, start the network thread and wait for the CONNACK. Raises OSError when the broker cannot be
        reached and BrokerRefused when it refuses, drops the connection first or does not answer (the network
        thread is stopped then)."""
        self.client.connect(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=self.keepalive_s,
            clean_start=self.session_expiry_s is None,
            properties=self._connect_properties(),
        )
        self.client.loop_start()
        with self._changed:
            self._changed.wait_for(lambda: self._connack is not None or self._lost_reason is not None, timeout_s)
            connack, lost = self._connack, self._lost_reason
        if connack is None or not connack.ok:
            if lost is None:
                self.client.disconnect()
            self.client.loop_stop()
            raise BrokerRefused(self.endpoint, connack.reason if connack is not None else lost)
        return connack

    def start(self) -> None:
        """Connect in the background: paho retries until the broker answers, and reconnects after a drop."""
        self.client.connect_async(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=self.keepalive_s,
            clean_start=self.session_expiry_s is None,
            properties=self._connect_properties(),
        )
        self.client.loop_start()

    def close(self) -> None:
        """Disconnect (the broker does not publish the will) and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topics: Sequence[str], qos: int = 1) -> None:
        self.client.subscribe([(t, qos) for t in topics])

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (with `manual_ack`)."""
        self.client.ack(mid, qos)

    # ---- publishing ------------------------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Windowed messages sent and not yet acknowledged (their `on_ack` not yet returned)."""
        return self._windowed

    @property
    def room(self) -> int:
        return self.window - self._windowed

    def pending_tokens(self) -> list[Token]:
        """The tokens of the messages sent and not yet acknowledged."""
        with self._lock:
            return [s.token for s in self._pending.values() if s.token is not None]

    def wait_for_room(self, timeout_s: float, abort: Callable[[], bool] | None = None) -> bool:
        """True once the window has room; False after `timeout_s` or once `abort()` is true (checked whenever
        the connection or an acknowledgement changes something)."""
        with self._changed:
            self._changed.wait_for(lambda: self._windowed < self.window or (abort is not None and abort()), timeout_s)
            return self._windowed < self.window

    def wait_all_acked(self, timeout_s: float, abort: Callable[[], bool] | None = None) -> bool:
        """True once every windowed message is acknowledged; False after `timeout_s` or once `abort()` is true."""
        with self._changed:
            self._changed.wait_for(lambda: self._windowed == 0 or (abort is not None and abort()), timeout_s)
            return self._windowed == 0

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        token: Token | None = None,
        control: bool = False,
        wait_s: float = 0.0,
    ) -> mqtt.MQTTMessageInfo | None:
        """Hand one message to paho (queued there while disconnected: paho sends it after the reconnect). Returns
        paho's message info, or None (nothing sent) when the window stayed full for `wait_s`. A QoS > 0 message
        counts in the window until its PUBACK, unless it is a `control` message. Raises PublishRefused when paho
        does not take it."""
        windowed = qos > 0 and not control
        if windowed:
            with self._changed:
                if not self._changed.wait_for(lambda: self._windowed < self.window, wait_s):
                    return None
                self._windowed += 1  # reserved before paho numbers it: the bound holds between threads
        # Not under self._lock: paho calls on_publish holding its message mutex, which publish() takes too.
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except BaseException:
            self._release(windowed)
            raise
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: queued for the reconnect
            self._release(windowed)
            raise PublishRefused(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = _Sent(token, windowed, qos > 0)
        if early is not None:  # the PUBACK came before publish() returned: settle it here
            self._acknowledged(_Sent(token, windowed, qos > 0), early)
        return info

    def _release(self, windowed: bool) -> None:
        if windowed:
            with self._changed:
                self._windowed -= 1
                self._changed.notify_all()

    def _acknowledged(self, sent: _Sent[Token], reason: mqtt.ReasonCode) -> None:
        # The owner hears of it before the window opens, so `outstanding` == 0 means every on_ack returned.
        if sent.acked and sent.token is not None and self.owner_on_ack is not None:
            self.owner_on_ack(sent.token, reason)
        self._release(sent.windowed)

    # ---- paho callbacks (network thread) ---------------------------------------------------------------------

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
        with self._lock:
            sent = self._pending.get(mid)
            if sent is None:
                self._early[mid] = reason
                return
        # paho keeps the mid in use until this returns, so it cannot be handed to a new message meanwhile.
        try:
            self._acknowledged(sent, reason)
        finally:
            with self._lock:
                self._pending.pop(mid, None)

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: mqtt.ReasonCode, props: object
    ) -> None:
        connack = Connack(
            ok=not reason.is_failure,
            reason=str(reason),
            max_packet_bytes=max_packet_of(props if isinstance(props, Properties) else None),
            session_present=bool(flags.session_present),
        )
        if connack.ok:
            self.max_packet_bytes = connack.max_packet_bytes
            if self.subscriptions:
                # Again after every reconnect: harmless with a session present, needed when it expired.
                self.subscribe(self.subscriptions)
        with self._changed:
            self.connected = connack.ok
            self._connack = connack
            self._changed.notify_all()
        if self.owner_on_connect is not None:
            self.owner_on_connect(connack)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        with self._changed:
            self.connected = False
            if self._connack is None:
                self._lost_reason = str(reason)
        if self.owner_on_disconnect is not None:
            self.owner_on_disconnect(reason)
        with self._changed:
            self._changed.notify_all()  # after the owner's callback: an `abort` it sets is seen by the waiters

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[mqtt.ReasonCode], _p: object) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error(
                    "%s: the broker refused a subscription (%s): its messages cannot arrive", self.client_id, reason
                )
        self.subscribed.set()
