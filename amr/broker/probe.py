"""Probe a broker: does it accept these credentials, may this account publish to that topic."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from amr.broker.client import CONNECT_TIMEOUT_S, BrokerRefused, MqttClient, new_client
from amr.broker.mosquitto import BrokerEndpoint

__all__ = ["fetch_connect_result", "fetch_publish_result", "new_client"]  # new_client: for tests and tools

PROBE_KEEPALIVE_S = 10


def fetch_connect_result(host: str, port: int, username: str | None = None, password: str | None = None) -> str:
    """Connect once and return the broker's CONNACK reason ('Success', 'Not authorized', ...)."""
    # No user name: an anonymous client (the check that the broker refuses it).
    client: MqttClient[None] = MqttClient(
        BrokerEndpoint(host=host, port=port, username=username or "", password=password or ""),
        keepalive_s=PROBE_KEEPALIVE_S,
    )
    try:
        connack = client.connect(CONNECT_TIMEOUT_S)
    except OSError as exc:
        return f"unreachable: {exc}"
    except BrokerRefused as exc:
        return exc.reason or "no answer"
    client.close()
    return connack.reason


def fetch_publish_result(
    host: str, port: int, username: str, password: str, topic: str, *, client_id: str | None = None
) -> str:
    """Publish one QoS 1 message and return the PUBACK reason (MQTT 5 brokers say 'Not authorized' on an ACL deny).
    `client_id` matters to the ACL: collectors and DCUs may publish only under their own client id."""
    result: list[str] = []
    done = threading.Event()

    def on_ack(_token: bool, reason: mqtt.ReasonCode) -> None:
        result.append(str(reason))
        done.set()

    client: MqttClient[bool] = MqttClient(
        BrokerEndpoint(host=host, port=port, username=username, password=password),
        client_id=client_id,
        keepalive_s=PROBE_KEEPALIVE_S,
        on_ack=on_ack,
    )
    try:
        client.connect(CONNECT_TIMEOUT_S)
    except BrokerRefused:
        return "no answer"  # a refused connection never acknowledges the message
    client.publish(topic, b"probe", qos=1, token=True)
    done.wait(CONNECT_TIMEOUT_S)
    client.close()
    return result[0] if result else "no answer"
