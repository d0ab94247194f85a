"""Probe a broker: does it accept these credentials, may this account publish to that topic."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONNECT_TIMEOUT_S = 5.0


def new_client(client_id: str | None = None, *, clean_start: bool = True) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id or f"amr-{uuid.uuid4().hex[:12]}", protocol=mqtt.MQTTv5
    )


def fetch_connect_result(host: str, port: int, username: str | None = None, password: str | None = None) -> str:
    """Connect once and return the broker's CONNACK reason ('Success', 'Not authorized', ...)."""
    client = new_client()
    if username is not None:
        client.username_pw_set(username, password)
    result: list[str] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        result.append(str(reason))
        done.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if not result:
            result.append(str(reason))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        return f"unreachable: {exc}"
    client.loop_start()
    done.wait(CONNECT_TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
    return result[0] if result else "no answer"


def fetch_publish_result(
    host: str, port: int, username: str, password: str, topic: str, *, client_id: str | None = None
) -> str:
    """Publish one QoS 1 message and return the PUBACK reason (MQTT 5 brokers say 'Not authorized' on an ACL deny).
    `client_id` matters to the ACL: collectors and DCUs may publish only under their own client id."""
    client = new_client(client_id)
    client.username_pw_set(username, password)
    result: list[str] = []
    done = threading.Event()

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, reason: mqtt.ReasonCode, _p: Properties) -> None:
        result.append(str(reason))
        done.set()

    client.on_publish = on_publish
    client.connect(host, port, keepalive=10)
    client.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    client.publish(topic, b"probe", qos=1, properties=props)
    done.wait(CONNECT_TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
    return result[0] if result else "no answer"
