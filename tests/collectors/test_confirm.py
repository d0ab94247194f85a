"""End-to-end delivery from the collector's side (docs/delivery.md), against real Mosquitto brokers: a spool row
stays after its PUBACK until ingest confirms it, is sent again after a reconnect and after a confirmation
timeout, and a broker killed with acknowledged-but-unconfirmed messages and restarted with its persistence wiped
loses nothing. The confirmer is the test's Recorder playing ingest's part with the broker's `ingest` account."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from amr.broker.confirm import max_payload_bytes
from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import confirm_topic, events_topic, readings_topic
from amr.credentials import read_or_create_credentials
from amr.messages import Reading
from collectors.batcher import Batcher
from collectors.config import parse_collector_config
from collectors.runner import Collector, CollectorSnapshot
from collectors.spool import SPOOL_FILE, Spool
from simulators.clock import SimClock
from simulators.tcpproxy import TcpProxy
from tests.collectors.fleet import (
    Recorder,
    SimGateway,
    as_v1_dict,
    check_seqs,
    gateway_toml,
    start_gateway,
    wait_until,
)
from tests.services import endpoint, free_port, make_state_dir
from tests.services import own_broker as start_own_broker

pytestmark = pytest.mark.fault


@pytest.fixture()
def own_broker() -> Iterator[LocalMosquitto]:
    state = make_state_dir("amr-confirm-cred-")
    with start_own_broker(read_or_create_credentials(state / "cred.toml"), "amr-confirm-broker-") as started:
        yield started
    shutil.rmtree(state, ignore_errors=True)


def spool_ids(spool_dir: Path) -> set[int]:
    with sqlite3.connect(spool_dir / SPOOL_FILE) as db:
        return {int(i) for (i,) in db.execute("SELECT id FROM messages")}


class RunningCollector:
    """A Collector on its own thread (its asyncio loop), so a test can look at its counters while it runs."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.stop_event = threading.Event()
        self.result: list[CollectorSnapshot] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(asyncio.run(collector.run(self.stop_event))), daemon=True
        )
        self.thread.start()

    def stop(self) -> CollectorSnapshot:
        self.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the collector did not stop"
        return self.result[0]


def make_collector(
    cid: str, gw: SimGateway, spool: Path, broker_host: str, broker_port: int, broker: LocalMosquitto, **kw: float
) -> Collector:
    ep = endpoint(broker, "collector")
    text = (
        f'collector_id = "{cid}"\nspool_dir = "{spool}"\n'
        f'[broker]\nhost = "{broker_host}"\nport = {broker_port}\nusername = "{ep.username}"\n'
        f'password = "{ep.password}"\n' + gateway_toml("g", gw, poll_interval_s=0.05)
    )
    return Collector(parse_collector_config(text, source=f"{cid}.toml"), **kw)  # type: ignore[arg-type]


def test_rows_stay_after_puback_until_confirmed(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    cid = "test-confirm-keep"
    gw = start_gateway("tcp", "TCKP", [1, 2, 3], SimClock(datetime(2026, 10, 1, tzinfo=UTC)))
    spool = tmp_path / "spool"
    recorder = Recorder(endpoint(own_broker, "ingest"), [readings_topic(cid)], confirm=True)
    recorder.confirming.clear()  # ingest has not committed anything yet
    recorder.start()
    running = RunningCollector(make_collector(cid, gw, spool, own_broker.host, own_broker.port, own_broker))
    publisher = running.collector.publisher
    try:
        assert wait_until(lambda: len(recorder.deliveries) >= 10, 30)
        with recorder.lock:
            delivered = list(recorder.deliveries)
        # The properties of docs/delivery.md, and the client id is the collector id (the ACL lets a client write
        # only under its own client id: a collector called anything else would see 'Not authorized').
        assert all(d.response_topic == confirm_topic(cid) for d in delivered)
        assert all(d.message_id is not None for d in delivered)
        assert publisher.client_id == cid and publisher.rejected == 0
        ids = {d.message_id for d in delivered if d.message_id is not None}
        # (a) acknowledged by the broker, received by the subscriber, and still in the spool: not confirmed.
        assert wait_until(lambda: publisher.published >= len(ids), 10)
        assert ids <= spool_ids(spool)
        assert running.collector.spool.confirmed == 0
        # (b) once confirmed, they leave; what arrives later is confirmed as it arrives.
        recorder.confirming.set()
        recorder.confirm_received()
        assert wait_until(lambda: not ids & spool_ids(spool), 10), sorted(ids & spool_ids(spool))[:10]
        before = len(recorder.deliveries)
        assert wait_until(lambda: len(recorder.deliveries) >= before + 10, 30)
    finally:
        snap = running.stop()
        gw.handle.stop()
        recorder.stop()
    assert snap.spool_depth == 0 and spool_ids(spool) == set()  # the clean stop waited for the confirmations
    batches, _repeats = check_seqs(recorder.raw(readings_topic(cid)))
    assert snap.confirmed == len(batches)
    assert sum(len(b["readings"]) for b in batches.values()) == snap.readings


def test_unconfirmed_rows_are_sent_again_with_a_doubling_timeout(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    cid = "test-confirm-timeout"
    gw = start_gateway("tcp", "TCTO", [1], SimClock(datetime(2026, 10, 1, tzinfo=UTC)))
    spool = tmp_path / "spool"
    recorder = Recorder(endpoint(own_broker, "ingest"), [readings_topic(cid)], confirm=True)
    recorder.confirming.clear()
    recorder.start()
    collector = make_collector(cid, gw, spool, own_broker.host, own_broker.port, own_broker, confirm_timeout_s=1.0)
    running = RunningCollector(collector)

    def arrivals(message_id: int) -> list[float]:
        with recorder.lock:
            return [d.at_s for d in recorder.deliveries if d.message_id == message_id]

    try:
        assert wait_until(lambda: len(recorder.deliveries) >= 1, 30)
        first = recorder.deliveries[0].message_id
        assert first is not None
        assert wait_until(lambda: len(arrivals(first)) >= 4, 20), arrivals(first)
        times = arrivals(first)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # 1 s after the first PUBACK, then 2 s, then 4 s (the pump looks every 0.2 s; the PUBACK takes a moment).
        assert 0.9 <= gaps[0] <= 2.0 and 1.9 <= gaps[1] <= 3.5 and 3.9 <= gaps[2] <= 6.0, gaps
        assert collector.publisher.resent_unconfirmed >= 3
        recorder.confirming.set()
        recorder.confirm_received()
        assert wait_until(lambda: first not in spool_ids(spool), 10)
    finally:
        snap = running.stop()
        gw.handle.stop()
        recorder.stop()
    assert snap.spool_depth == 0


def _kill_9(broker: LocalMosquitto) -> None:
    pid = broker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not broker.is_running(), 10)


def test_broker_killed_and_wiped_loses_nothing(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    """Ingest is stopped (its persistent session queues at the broker), the collector's messages are acknowledged
    by the broker, then the broker is killed with kill -9 and its persistence deleted: a disk loss. After the
    restart the collector sends every unconfirmed message again and the subscriber receives every batch."""
    cid = "test-confirm-kill9"
    gw = start_gateway("tcp", "TCK9", [1, 2, 3, 4], SimClock(datetime(2026, 10, 1, tzinfo=UTC)))
    spool = tmp_path / "spool"
    proxy = TcpProxy(target_host=own_broker.host, target_port=own_broker.port).start()
    ingest_ep = endpoint(own_broker, "ingest")
    client_id = "test-confirm-kill9-ingest"
    # A timeout far beyond the test: only the re-send after the reconnect can bring the messages back.
    collector = make_collector(cid, gw, spool, "127.0.0.1", proxy.port, own_broker, confirm_timeout_s=3600.0)
    Recorder(ingest_ep, [readings_topic(cid)], client_id=client_id).start().stop()  # the session exists, offline
    running = RunningCollector(collector)
    publisher = collector.publisher
    recorder: Recorder | None = None
    try:
        assert wait_until(lambda: publisher.published >= 20, 30)
        proxy.cut()  # the collector cannot reconnect before the subscriber is back
        acknowledged = publisher.published
        in_spool = spool_ids(spool)
        assert len(in_spool) >= acknowledged, "acknowledged messages must still be in the spool"
        _kill_9(own_broker)
        shutil.rmtree(own_broker.base_dir / "data")  # the broker's disk is lost
        own_broker.start()
        recorder = Recorder(ingest_ep, [readings_topic(cid)], client_id=client_id, confirm=True).start()
        time.sleep(1.0)
        assert recorder.deliveries == [], "the wiped broker still had messages: the test proves nothing"
        proxy.restore()
        assert wait_until(lambda: {d.message_id for d in recorder.deliveries} >= in_spool, 60), sorted(
            in_spool - {d.message_id for d in recorder.deliveries}
        )[:10]
        assert wait_until(lambda: not in_spool & spool_ids(spool), 30)
    finally:
        snap = running.stop()
        gw.handle.stop()
        proxy.stop()
        if recorder is not None:
            recorder.stop()
    assert snap.spool_depth == 0 and spool_ids(spool) == set()
    assert recorder is not None
    batches, _repeats = check_seqs(recorder.raw(readings_topic(cid)))  # seq 1..max, none missing
    assert max(batches) == collector.spool.last_seq
    assert sum(len(b["readings"]) for b in batches.values()) == snap.readings


def test_a_spool_left_by_a_previous_run_is_sent_with_no_new_readings(
    own_broker: LocalMosquitto, tmp_path: Path
) -> None:
    """What a stopped collector left in its spool goes out at the next start even when no meter answers (before,
    the pump sent only up to the newest id committed by the running process)."""
    cid = "test-confirm-leftover"
    spool_dir = tmp_path / "spool"
    left = Spool(spool_dir)
    batcher = Batcher(
        left, source=cid, readings_topic=readings_topic(cid), events_topic=events_topic(cid), batch_readings=10
    )
    batcher.add(
        [
            Reading(meter="TLFT001", obis="1.0.1.8.0.255", ts=datetime(2026, 10, 1, tzinfo=UTC), value=v, unit="kWh")
            for v in range(35)
        ]
    )
    batcher.flush(force=True)
    left.close()
    recorder = Recorder(endpoint(own_broker, "ingest"), [readings_topic(cid)], confirm=True).start()
    ep = endpoint(own_broker, "collector")
    text = (
        f'collector_id = "{cid}"\nspool_dir = "{spool_dir}"\n'
        f'[broker]\nhost = "{own_broker.host}"\nport = {own_broker.port}\nusername = "{ep.username}"\n'
        f'password = "{ep.password}"\n'
    )
    running = RunningCollector(Collector(parse_collector_config(text, source="leftover.toml")))
    try:
        assert wait_until(lambda: spool_ids(spool_dir) == set(), 20), spool_ids(spool_dir)
    finally:
        snap = running.stop()
        recorder.stop()
    batches, _repeats = check_seqs(recorder.raw(readings_topic(cid)))
    assert sorted(r["value"] for b in batches.values() for r in b["readings"]) == list(range(35))
    assert snap.spool_depth == 0


@dataclass(frozen=True, kw_only=True)
class SmallPacketMosquitto(LocalMosquitto):
    """The project's broker config with a smaller max_packet_size (as a third-party broker may have)."""

    max_packet_bytes: int

    def write_config(self) -> None:
        super().write_config()
        text, n = re.subn(
            r"^max_packet_size \d+$",
            f"max_packet_size {self.max_packet_bytes}",
            self.config_file.read_text(),
            flags=re.M,
        )
        assert n == 1, "the broker config has no max_packet_size line to change"
        self.config_file.write_text(text)


def test_batches_fit_the_packet_limit_the_broker_announces(tmp_path: Path) -> None:
    limit = 8_192
    state = make_state_dir("amr-confirm-small-")
    small = SmallPacketMosquitto(
        base_dir=state / "mosquitto",
        port=free_port(),
        credentials=read_or_create_credentials(state / "cred.toml"),
        max_packet_bytes=limit,
    )
    small.start()
    cid = "test-confirm-small"
    gw = start_gateway("tcp", "TCSM", [1, 2, 3, 4, 5, 6], SimClock(datetime(2026, 10, 1, tzinfo=UTC)))
    spool = tmp_path / "spool"
    recorder = Recorder(endpoint(small, "ingest"), [readings_topic(cid)], confirm=True).start()
    ep = endpoint(small, "collector")
    text = (
        f'collector_id = "{cid}"\nspool_dir = "{spool}"\nbatch_readings = 5000\n'
        f'[broker]\nhost = "{small.host}"\nport = {small.port}\nusername = "{ep.username}"\n'
        f'password = "{ep.password}"\n' + gateway_toml("g", gw, poll_interval_s=0.02)
    )
    running = RunningCollector(Collector(parse_collector_config(text, source="small.toml")))
    try:
        assert wait_until(lambda: len(recorder.deliveries) >= 20, 60)
        assert running.collector.publisher.max_packet_bytes == limit  # from the CONNACK
    finally:
        snap = running.stop()
        gw.handle.stop()
        recorder.stop()
        small.stop()
    log = small.log_file.read_text(errors="replace")
    shutil.rmtree(state, ignore_errors=True)
    assert "oversize" not in log  # no packet was too large: the connection was never dropped for one
    payloads = recorder.raw(readings_topic(cid))
    assert max(len(p) for p in payloads) <= max_payload_bytes(limit, readings_topic(cid), cid)
    assert max(len(p) for p in payloads) > limit // 2  # the batches were split to fit, not made small
    readings = {(r["meter"], r["obis"], r["ts"]) for b in map(as_v1_dict, payloads) for r in b["readings"]}
    assert len(readings) == snap.readings  # every reading arrived (a re-sent batch repeats, not adds)
    assert snap.spool_depth == 0 and snap.refused == 0


def test_messages_nobody_subscribed_to_are_sent_again_soon(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    """A PUBACK 'No matching subscribers' means the broker dropped the message (after a Mosquitto restart, until
    ingest subscribes again: the broker forgets shared subscriptions). With an hour's confirm timeout, only the
    short re-send of such messages can deliver them once a reader subscribes."""
    cid = "test-confirm-unrouted"
    gw = start_gateway("tcp", "TCUR", [1, 2], SimClock(datetime(2026, 10, 1, tzinfo=UTC)))
    spool = tmp_path / "spool"
    running = RunningCollector(
        make_collector(cid, gw, spool, own_broker.host, own_broker.port, own_broker, confirm_timeout_s=3600.0)
    )
    publisher = running.collector.publisher
    recorder = Recorder(endpoint(own_broker, "ingest"), [readings_topic(cid)], confirm=True)
    try:
        assert wait_until(lambda: publisher.no_subscribers >= 5, 30), publisher.no_subscribers
        unrouted = set(spool_ids(spool))
        assert unrouted
        recorder.start()  # ingest subscribes: what was dropped must arrive and be confirmed within seconds
        assert wait_until(lambda: not unrouted & spool_ids(spool), 30), sorted(unrouted & spool_ids(spool))[:10]
        assert publisher.resent_unconfirmed >= len(unrouted)
    finally:
        running.stop()
        gw.handle.stop()
        recorder.stop()
