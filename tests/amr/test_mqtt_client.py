"""amr.broker.client.MqttClient against a real Mosquitto: the bounded window of unacknowledged QoS 1 messages
(paho's 16-bit message ids) and the mapping of each PUBACK to its message, including a PUBACK that arrives
before paho's publish() has returned the message id."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from amr.broker.client import MAX_WINDOW, BrokerRefused, MqttClient
from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto
from amr.broker.topics import readings_topic, status_topic
from tests.collectors.fleet import Recorder, wait_until
from tests.services import endpoint


@pytest.fixture()
def name() -> str:
    return f"test-mqtt-{uuid.uuid4().hex[:8]}"  # the client id: the ACL lets a collector write only under its own


@pytest.fixture()
def recorder(broker: LocalMosquitto, name: str) -> Iterator[Recorder]:
    started = Recorder(endpoint(broker, "ingest"), [readings_topic(name)]).start()
    try:
        yield started
    finally:
        started.stop()


class Acks:
    """What on_ack reported, and the largest window use seen at any acknowledgement."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: list[int] = []
        self.reasons: list[str] = []
        self.threads: list[str] = []
        self.client: MqttClient[int] | None = None
        self.most_outstanding = 0

    def __call__(self, token: int, reason: mqtt.ReasonCode) -> None:
        with self.lock:
            self.tokens.append(token)
            self.reasons.append(str(reason))
            self.threads.append(threading.current_thread().name)
            if self.client is not None:
                self.most_outstanding = max(self.most_outstanding, self.client.outstanding)


def make_client(ep: BrokerEndpoint, name: str, window: int, acks: Acks) -> MqttClient[int]:
    client: MqttClient[int] = MqttClient(ep, client_id=name, window=window, keepalive_s=30, on_ack=acks)
    acks.client = client
    return client


def test_a_window_beyond_paho_message_ids_is_refused(broker: LocalMosquitto, name: str) -> None:
    with pytest.raises(ValueError, match="65535"):
        MqttClient(endpoint(broker, "collector"), client_id=name, window=MAX_WINDOW + 1)


def test_the_window_holds_at_most_window_unacknowledged(broker: LocalMosquitto, name: str, recorder: Recorder) -> None:
    """Before the connection no PUBACK can come: exactly `window` messages are taken, the next one is not; a
    control message still goes; once connected every taken message is acknowledged once and arrives."""
    window = 7
    acks = Acks()
    client = make_client(endpoint(broker, "collector"), name, window, acks)
    topic = readings_topic(name)
    taken = [i for i in range(window + 3) if client.publish(topic, b"%d" % i, token=i) is not None]
    assert taken == list(range(window))
    assert client.outstanding == window and client.room == 0
    assert not client.wait_for_room(0.2)
    assert client.publish(status_topic(name), b"online", retain=True, control=True) is not None
    assert client.outstanding == window  # a control message does not count
    client.connect()
    try:
        assert client.wait_all_acked(10)
        assert sorted(acks.tokens) == taken  # each PUBACK mapped to its message, once
        assert set(acks.reasons) <= {"Success"}
        assert client.room == window and client.pending_tokens() == []
        assert wait_until(lambda: sorted(recorder.raw(topic)) == sorted(b"%d" % i for i in taken), 10)
    finally:
        client.close()


def test_a_fast_producer_never_exceeds_the_window(broker: LocalMosquitto, name: str, recorder: Recorder) -> None:
    window, count = 10, 1_000
    acks = Acks()
    client = make_client(endpoint(broker, "collector"), name, window, acks)
    topic = readings_topic(name)
    client.connect()
    most_after_publish = 0
    try:
        for i in range(count):
            assert client.publish(topic, b"%d" % i, token=i, wait_s=10) is not None
            most_after_publish = max(most_after_publish, client.outstanding)
        assert client.wait_all_acked(10)
    finally:
        client.close()
    assert most_after_publish == window  # the producer was faster than the broker: it filled the window ...
    assert acks.most_outstanding <= window  # ... and never went beyond it
    assert Counter(acks.tokens) == Counter(range(count))  # every message acknowledged exactly once
    assert wait_until(lambda: len(recorder.raw(topic)) == count, 20)


def test_a_puback_before_publish_returns_is_handed_to_its_message(broker: LocalMosquitto, name: str) -> None:
    """paho's publish() releases its lock before it returns the message id; the network thread may handle the
    PUBACK in between. Here paho's publish returns only after the PUBACK was handled, every time."""
    acks = Acks()
    client = make_client(endpoint(broker, "collector"), name, 3, acks)
    paho_publish = client.client.publish
    early: list[bool] = []

    def publish_returning_late(*args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:
        info = paho_publish(*args, **kwargs)
        info.wait_for_publish(5)  # set only after paho ran on_publish for this message id
        early.append(info.is_published())
        return info

    client.client.publish = publish_returning_late  # type: ignore[method-assign]
    client.connect()
    try:
        for i in range(10):  # more than the window: each early PUBACK must open its slot again
            assert client.publish(readings_topic(name), b"%d" % i, token=i) is not None
        assert client.publish(status_topic(name), b"online", qos=0) is not None  # no PUBACK, nothing to hand on
        assert early == [True] * 11
        assert acks.tokens == list(range(10))
        assert set(acks.reasons) <= {"Success", "No matching subscribers"}
        assert set(acks.threads) == {threading.current_thread().name}  # settled by the publishing thread
        assert client.outstanding == 0 and client.pending_tokens() == []
        assert client._early == {}  # nothing left over for a later message with the same id
    finally:
        client.close()


def test_a_refused_connection_says_why(broker: LocalMosquitto, name: str) -> None:
    ep = endpoint(broker, "collector")
    wrong = BrokerEndpoint(host=ep.host, port=ep.port, username=ep.username, password="wrong")
    client: MqttClient[int] = MqttClient(wrong, client_id=name)
    with pytest.raises(BrokerRefused) as refused:
        client.connect()
    assert refused.value.reason in ("Not authorized", "Bad user name or password")
    assert f"{ep.host}:{ep.port}" in str(refused.value)
