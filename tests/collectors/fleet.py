"""Test helpers: simulated Modbus gateways, a collector config for them, and an MQTT subscriber that records
what reaches the broker (as the `ingest` account, like ingest does) and may confirm it as ingest does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.confirm import encode_confirmation, message_id_of
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from amr.broker.topics import confirm_topic
from amr.messages import COLUMNS_FORMAT_VERSION, ColumnarReadingBatch, iter_readings
from amr.modbus.registermap import read_register_map
from simulators.clock import SimClock
from simulators.faults import Faults
from simulators.meter import SimulatedMeter
from simulators.modbus import GatewayHandle, ModbusMeter, start_modbus_gateway


@dataclass
class SimGateway:
    handle: GatewayHandle
    kind: str  # tcp | rtu-tcp | rtu-serial
    meters: dict[int, tuple[SimulatedMeter, str]]  # unit id -> (model, map name)
    device: str | None = None  # the collector's end of the serial pty


def start_gateway(
    kind: str,
    serial_prefix: str,
    units: list[int],
    clock: SimClock,
    *,
    map_name: str = "vn_sim_meter",
    faults: dict[int, Faults] | None = None,
    serial_path: str | None = None,
    device: str | None = None,
    baud: int = 9600,
) -> SimGateway:
    regmap = read_register_map(map_name)
    models = {
        u: SimulatedMeter(
            serial=f"{serial_prefix}{u:03d}",
            seed=hash((serial_prefix, u)) & 0xFFFF,
            faults=(faults or {}).get(u, Faults()),
        )
        for u in units
    }
    handle = start_modbus_gateway(
        kind,
        [ModbusMeter(unit_id=u, meter=m, regmap=regmap) for u, m in models.items()],
        clock=clock,
        serial_path=serial_path,
        baud=baud,
    )
    return SimGateway(handle=handle, kind=kind, meters={u: (m, map_name) for u, m in models.items()}, device=device)


def gateway_toml(name: str, gw: SimGateway, *, poll_interval_s: float, timeout_s: float = 1.0, extra: str = "") -> str:
    if gw.kind == "rtu-serial":
        head = f'transport = "serial"\ndevice = "{gw.device}"\nbaudrate = {gw.handle.baud}\n'
    else:
        framer = "rtu" if gw.kind == "rtu-tcp" else "socket"
        head = f'transport = "tcp"\nframer = "{framer}"\nhost = "127.0.0.1"\nport = {gw.handle.port}\n'
    out = f'[[gateways]]\nname = "{name}"\n{head}timeout_s = {timeout_s}\n{extra}\n'
    for unit, (model, map_name) in gw.meters.items():
        out += (
            f'[[gateways.meters]]\nserial = "{model.serial}"\nunit_id = {unit}\nmap = "{map_name}"\n'
            f"poll_interval_s = {poll_interval_s}\n"
        )
    return out


@contextmanager
def serial_pair() -> Iterator[tuple[str, str]]:
    """A socat pty pair: (simulator end, collector end)."""
    tmp = Path(f"/tmp/amr-pty-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    a, b = tmp / "sim", tmp / "col"
    proc = subprocess.Popen(
        [shutil.which("socat") or "socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not (a.exists() and b.exists()):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("socat did not create the pty pair")
        time.sleep(0.02)
    try:
        yield str(a), str(b)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Delivery:
    topic: str
    payload: bytes
    response_topic: str | None  # the MQTT 5 properties of docs/delivery.md, as they arrived
    message_id: int | None
    at_s: float  # time.monotonic() of arrival


@dataclass
class Recorder:
    """Subscribes as `ingest` with a persistent session and keeps every message (duplicates included).

    With `confirm` it also plays ingest's part of docs/delivery.md: each message whose ResponseTopic is the
    confirmation topic of the name in its topic, with ASCII-digit CorrelationData, is confirmed at once (as if its
    transaction had committed). `confirming` may be cleared and set while it runs; `confirm_received` confirms
    what arrived while it was cleared."""

    endpoint: BrokerEndpoint
    topics: list[str]
    client_id: str = field(default_factory=lambda: f"test-rec-{uuid.uuid4().hex[:8]}")
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    confirm: bool = False
    confirming: threading.Event = field(default_factory=threading.Event)
    confirmed_ids: dict[str, set[int]] = field(default_factory=dict)  # response topic -> ids confirmed

    def __post_init__(self) -> None:
        if self.confirm:
            self.confirming.set()

    def _confirm(self, deliveries: list[Delivery]) -> None:
        by_topic: dict[str, list[int]] = {}
        for d in deliveries:
            name = d.topic.split("/")[3]  # amr/v1/readings/<name>, amr/v1/dcu/<name>/uplink
            if d.message_id is not None and d.response_topic == confirm_topic(name):
                by_topic.setdefault(d.response_topic, []).append(d.message_id)
        for topic, ids in by_topic.items():
            self.client.publish(topic, encode_confirmation(ids), qos=1)
            with self.lock:
                self.confirmed_ids.setdefault(topic, set()).update(ids)

    def confirm_received(self) -> None:
        """Confirm everything received so far (a confirmer that was paused catching up)."""
        with self.lock:
            deliveries = list(self.deliveries)
        self._confirm(deliveries)

    def start(self) -> Recorder:
        self.client = new_client(self.client_id)
        self.client.username_pw_set(self.endpoint.username, self.endpoint.password)
        self.client.reconnect_delay_set(1, 2)
        subscribed = threading.Event()

        def on_connect(c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
            for t in self.topics:
                c.subscribe(t, qos=1)

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            props = getattr(msg, "properties", None)
            delivery = Delivery(
                topic=msg.topic,
                payload=bytes(msg.payload),
                response_topic=getattr(props, "ResponseTopic", None),
                message_id=message_id_of(props),
                at_s=time.monotonic(),
            )
            with self.lock:
                self.messages.append((msg.topic, bytes(msg.payload)))
                self.deliveries.append(delivery)
            if self.confirm and self.confirming.is_set():
                self._confirm([delivery])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(self.endpoint.host, self.endpoint.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert subscribed.wait(10), "recorder did not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payloads(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [as_v1_dict(p) for t, p in self.messages if t.startswith(prefix)]

    def raw(self, prefix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t.startswith(prefix)]


def wait_until(predicate: Any, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def check_seqs(raw_batches: list[bytes]) -> tuple[dict[int, dict[str, Any]], int]:
    """Every seq from 1 to the highest arrived, and any repeat carries the same bytes; returns (by seq, repeats)."""
    by_seq: dict[int, bytes] = {}
    repeats = 0
    for payload in raw_batches:
        seq = json.loads(payload)["seq"]
        if seq in by_seq:
            assert by_seq[seq] == payload, f"seq {seq} arrived twice with different content"
            repeats += 1
        by_seq[seq] = payload
    assert by_seq, "nothing arrived"
    missing = sorted(set(range(1, max(by_seq) + 1)) - set(by_seq))
    assert not missing, f"batches lost: seq {missing[:20]} (of {len(missing)})"
    return {s: as_v1_dict(p) for s, p in by_seq.items()}, repeats


def as_v1_dict(payload: bytes) -> dict[str, Any]:
    """A published message as a dict; a columnar (v2) reading batch gets v1's ``readings`` list (``v`` kept)."""
    data: dict[str, Any] = json.loads(payload)
    if data.get("v") == COLUMNS_FORMAT_VERSION and "m" in data:
        batch = msgspec.json.decode(payload, type=ColumnarReadingBatch)
        readings = msgspec.to_builtins(list(iter_readings(batch)))
        data = {"v": batch.v, "source": batch.source, "seq": batch.seq, "readings": readings}
    return data


def env_without_pytest() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
