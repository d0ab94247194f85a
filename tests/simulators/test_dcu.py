"""The DCU simulator against a real Mosquitto: format, values, faults, and no loss across a broker outage."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.probe import new_client
from amr.broker.topics import dcu_uplink_topic
from amr.messages import DcuUplink, short_obis_to_full
from simulators.clock import SimClock
from simulators.dcu import DcuFaults, Outbox, OutboxItem, start_dcu
from simulators.meter import SimulatedMeter
from tests.services import endpoint, free_port, make_state_dir

SPEED = 3600.0  # one 30-min interval every 0.5 s of real time
INTERVAL = timedelta(minutes=30)
T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


@dataclass
class Subscriber:
    received: list[DcuUplink] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reads(self) -> set[tuple[str, datetime]]:
        with self.lock:
            return {(r.serial, r.ts) for m in self.received for r in m.reads}


@pytest.fixture()
def subscribe() -> Iterator:
    clients: list[mqtt.Client] = []

    def start(broker: LocalMosquitto, dcu_id: str, client_id: str) -> Subscriber:
        ep = endpoint(broker, "ingest")
        sub = Subscriber()
        client = new_client(client_id)
        client.username_pw_set(ep.username, ep.password)
        subscribed = threading.Event()

        def on_connect(c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
            c.subscribe(dcu_uplink_topic(dcu_id), qos=1)

        def on_subscribe(*_args: object) -> None:
            subscribed.set()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            uplink = msgspec.json.decode(msg.payload, type=DcuUplink)
            with sub.lock:
                sub.received.append(uplink)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        # A persistent session: the broker keeps the subscription and queues for us across its own restart.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        client.connect(ep.host, ep.port, keepalive=5, clean_start=False, properties=props)
        client.loop_start()
        assert subscribed.wait(10)
        clients.append(client)
        return sub

    yield start
    for client in clients:
        client.disconnect()
        client.loop_stop()


def wait_for(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_uplink_format_values_and_faults(broker: LocalMosquitto, subscribe) -> None:
    meters = [SimulatedMeter(serial=f"VN26DCU{i:05d}", seed=100 + i, tariff_class="household") for i in range(5)]
    clock = SimClock(T0 - timedelta(minutes=1), SPEED)
    sub = subscribe(broker, "DCU-TEST-0001", "test-dcu-sub-1")
    down, up = T0 + 3 * INTERVAL + timedelta(minutes=5), T0 + 5 * INTERVAL + timedelta(minutes=5)
    faults = DcuFaults(duplicate_every=3, reorder_every=4, power_down=((down, up),))
    dcu = start_dcu("DCU-TEST-0001", meters, endpoint(broker, "dcu"), clock, 1800, faults=faults, start=T0)
    try:
        assert wait_for(lambda: len(dcu.dcu.read_times) >= 10)
    finally:
        dcu.stop()
    expected = {(m.serial, ts) for m in meters for ts in dcu.dcu.read_times}
    assert dcu.dcu.read_times[:10] == [T0 + k * INTERVAL for k in range(10)]  # none missed, power-down included
    assert wait_for(lambda: sub.reads() >= expected, 10), (
        sorted(expected - sub.reads())[:5],
        dcu.published_count,
        dcu.queued_count,
        dcu.publisher.rejected_count,
    )
    with sub.lock:
        received = list(sub.received)
    seqs = [m.seq for m in received]
    assert len(seqs) > len(set(seqs))  # duplicates: same seq twice
    assert seqs != sorted(seqs)  # out of order
    assert all(m.dcu == "DCU-TEST-0001" and m.v == 1 for m in received)
    by_meter = {m.serial: m for m in meters}
    for message in received:
        for read in message.reads:
            truth = by_meter[read.serial].read_registers(read.ts)
            assert set(read.values) >= {"1.8.0", "1.8.1", "1.8.2", "1.8.3", "2.8.0"}
            for short, value in read.values.items():
                assert value == pytest.approx(truth[short_obis_to_full(short)], abs=0.0006)
            assert read.status == int(truth["0.0.96.10.1.255"])
    events = [e for m in received for e in m.events]
    assert {(e.serial, e.event, e.ts) for e in events} == {
        (m.serial, kind, ts) for m in meters for kind, ts in (("power_down", down), ("power_up", up))
    }


def test_nothing_lost_across_a_broker_outage(broker: LocalMosquitto, subscribe) -> None:
    # Our own broker: stopping the session broker would disturb other tests.
    state = make_state_dir("amr-dcu-test-")
    own = LocalMosquitto(base_dir=state / "mosquitto", port=free_port(), credentials=broker.credentials)
    own.start()
    try:
        meters = [SimulatedMeter(serial=f"VN26DCUO{i:04d}", seed=200 + i) for i in range(3)]
        sub = subscribe(own, "DCU-TEST-0002", "test-dcu-sub-2")
        clock = SimClock(T0 - timedelta(minutes=1), SPEED)
        dcu = start_dcu("DCU-TEST-0002", meters, endpoint(own, "dcu"), clock, 1800, start=T0)
        try:
            assert wait_for(lambda: dcu.published_count >= 3)
            own.stop()
            time.sleep(2.5)  # ~5 intervals while the broker is away
            buffered = dcu.queued_count
            own.start()
            assert wait_for(lambda: len(dcu.dcu.read_times) >= 14)
        finally:
            dcu.stop()
        assert buffered >= 3
        assert dcu.dropped_count == 0
        expected = {(m.serial, ts) for m in meters for ts in dcu.dcu.read_times}
        assert wait_for(lambda: sub.reads() >= expected, 15), sorted(expected - sub.reads())[:5]
        assert dcu.dcu.read_times == [T0 + k * INTERVAL for k in range(len(dcu.dcu.read_times))]
    finally:
        own.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_outbox_is_bounded_and_replays_oldest_first() -> None:
    box = Outbox(limit=3)
    for seq in range(1, 6):
        box.put(OutboxItem(seq=seq, payload=b"%d" % seq))
    assert box.dropped == 2 and len(box) == 3
    taken = box.take(2)
    assert [i.seq for i in taken] == [3, 4]
    box.requeue(reversed(taken))
    assert [i.seq for i in box.take(10)] == [3, 4, 5]
