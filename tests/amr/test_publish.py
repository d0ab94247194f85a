"""WindowedPublisher against a real Mosquitto: the broker's maximum packet size (4 MiB, announced in its
CONNACK) is respected: a payload that fits arrives whole, one that does not raises PacketTooLarge at once instead
of being sent, dropped with the connection, re-sent after each reconnect and never arriving."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from amr.broker.confirm import PacketTooLarge, publish_packet_bytes
from amr.broker.mosquitto import MAX_PACKET_SIZE_BYTES, LocalMosquitto
from amr.broker.publish import WindowedPublisher
from amr.broker.topics import readings_topic
from amr.credentials import read_or_create_credentials
from tests.collectors.fleet import Recorder, wait_until
from tests.services import endpoint, make_state_dir
from tests.services import own_broker as start_own_broker

NAME = "test-publish-limit"  # the client id: the ACL lets a collector write only under its own
TOPIC = readings_topic(NAME)
BROKER_LIMIT = MAX_PACKET_SIZE_BYTES  # what amr/broker/mosquitto.py configures


@pytest.fixture()
def own_broker() -> Iterator[LocalMosquitto]:
    state = make_state_dir("amr-publish-cred-")
    with start_own_broker(read_or_create_credentials(state / "cred.toml"), "amr-publish-broker-") as started:
        yield started


def test_a_payload_over_the_broker_limit_raises_before_it_is_sent(own_broker: LocalMosquitto) -> None:
    recorder = Recorder(endpoint(own_broker, "ingest"), [TOPIC]).start()
    started = time.monotonic()
    try:
        with (
            WindowedPublisher(endpoint(own_broker, "collector"), client_id=NAME) as pub,
            pytest.raises(PacketTooLarge) as raised,
        ):
            pub.publish_all([(TOPIC, b"before"), (TOPIC, b"x" * 10_000_000), (TOPIC, b"after")], timeout_s=30)
        assert time.monotonic() - started < 5  # not a timeout waiting for an acknowledgement that never comes
        assert raised.value.limit_bytes == BROKER_LIMIT and raised.value.packet_bytes > 10_000_000
        assert f"maximum packet size is {BROKER_LIMIT:,} bytes" in str(raised.value)
        assert wait_until(lambda: recorder.raw(TOPIC) == [b"before"], 10), recorder.raw(TOPIC)[:3]
    finally:
        recorder.stop()
    log = own_broker.log_file.read_text(errors="replace")
    assert "oversize" not in log  # the broker never saw the packet: no connection was dropped for it


def test_the_largest_payload_that_fits_arrives_whole(own_broker: LocalMosquitto) -> None:
    recorder = Recorder(endpoint(own_broker, "ingest"), [TOPIC]).start()
    try:
        with WindowedPublisher(endpoint(own_broker, "collector"), client_id=NAME) as pub:
            assert pub.max_packet_bytes == BROKER_LIMIT  # read from the CONNACK
            largest = BROKER_LIMIT - publish_packet_bytes(TOPIC, 0)
            while publish_packet_bytes(TOPIC, largest) > BROKER_LIMIT:  # the length field may grow a byte
                largest -= 1
            payload = bytes(range(256)) * (largest // 256) + b"z" * (largest % 256)
            assert publish_packet_bytes(TOPIC, len(payload)) == BROKER_LIMIT
            assert pub.publish_all([(TOPIC, payload)], timeout_s=30) == 1
            assert pub.rejected == {}
            with pytest.raises(PacketTooLarge):
                pub.publish_all([(TOPIC, payload + b"!")], timeout_s=30)
        assert wait_until(lambda: len(recorder.raw(TOPIC)) == 1, 20)
        assert recorder.raw(TOPIC)[0] == payload
    finally:
        recorder.stop()


def test_messages_the_broker_refuses_are_counted(own_broker: LocalMosquitto) -> None:
    with WindowedPublisher(endpoint(own_broker, "collector"), client_id=NAME) as pub:
        # Another collector's topic: the ACL lets a client write only under its own client id.
        assert pub.publish_all([(readings_topic("someone-else"), b"{}"), (TOPIC, b"{}")], timeout_s=30) == 2
    assert pub.rejected == {"Not authorized": 1}
