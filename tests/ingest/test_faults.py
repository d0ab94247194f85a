"""Faults against real processes: kill -9 of a worker mid-stream, a PostgreSQL outage mid-stream (on a cluster of
this test's own), and two workers sharing one subscription. Nothing lost, nothing stored twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import readings_topic
from amr.db.server import DatabaseServer
from amr.settings import DatabaseSettings, MqttSettings, Settings
from tests.ingest.helpers import (
    add_test_meters,
    count_readings,
    drop_session,
    fetch_one,
    publish_paho,
    reading_batch,
    running_worker,
    wait_for,
    worker_config,
)
from tests.services import endpoint, free_port, make_state_dir

AMR = [sys.executable, "-m", "app"]  # the `amr` command, run by the test's interpreter


@pytest.fixture()
def fresh_db(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    server = make_database(f"amr_ingest_{uuid.uuid4().hex[:8]}")
    add_test_meters(server)
    return server


def _messages(source: str, first: int, count: int) -> list[tuple[str, bytes]]:
    return [
        (readings_topic(source), reading_batch(source, seq, start=seq * 100)) for seq in range(first, first + count)
    ]


def _assert_no_duplicates(server: DatabaseServer) -> None:
    assert fetch_one(server, "SELECT count(*) - count(DISTINCT (meter_id, channel_id, ts)) FROM readings") == 0


def _ingest_cli(server: DatabaseServer, broker: LocalMosquitto, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    s = server.settings
    env = os.environ | {
        "AMR_STATE_DIR": str(s.state_dir), "AMR_DB_PORT": str(s.db.port), "AMR_DB_NAME": s.db.name,
        "AMR_DB_DATA_DIR": str(s.db.data_dir), "AMR_MQTT_PORT": str(broker.port),
    }  # fmt: skip
    return subprocess.Popen(
        [*AMR, "ingest", "--no-live", "--status-dir", str(cwd / "status"), *args],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=open(cwd / "ingest.log", "ab"),
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_subscribed(status_dir: Path, workers: int) -> None:
    def ready() -> bool:
        files = list(status_dir.glob("status-*.json"))
        return len(files) >= workers and all(json.loads(f.read_text())["state"] == "online" for f in files)

    wait_for(ready, timeout_s=60, what=f"{workers} worker(s) online")
    time.sleep(0.5)  # the SUBSCRIBE follows the CONNACK


@pytest.mark.fault
def test_kill_9_mid_stream_loses_nothing(fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path) -> None:
    name = f"ingest-kill-{uuid.uuid4().hex[:6]}"
    source = f"kill-{uuid.uuid4().hex[:6]}"
    proc = _ingest_cli(fresh_db, broker, tmp_path, "--name", name)
    try:
        _wait_subscribed(tmp_path / "status", 1)
        sent = _messages(source, 0, 400)  # 40,000 readings
        publisher = threading.Thread(target=publish_paho, args=(endpoint(broker, "collector"), sent[:300]))
        publisher.start()
        wait_for(lambda: count_readings(fresh_db) > 0, what="first readings stored")
        proc.send_signal(signal.SIGKILL)  # mid-stream: batches in flight, messages queued and unacknowledged
        proc.wait(30)
        publisher.join(120)
        stored_at_kill = count_readings(fresh_db)
        publish_paho(endpoint(broker, "collector"), sent[300:])  # the broker queues them in the worker's session
        proc = _ingest_cli(fresh_db, broker, tmp_path, "--name", name)
        wait_for(lambda: count_readings(fresh_db) >= 40_000, timeout_s=120, what="all readings after the restart")
        time.sleep(1.0)  # redeliveries still arriving would show up as extra rows: there must be none
    finally:
        _stop(proc)
        drop_session(broker, f"{name}-0")
    assert stored_at_kill < 40_000
    assert count_readings(fresh_db) == 40_000
    _assert_no_duplicates(fresh_db)


@pytest.mark.fault
def test_two_workers_share_the_load(fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path) -> None:
    name = f"ingest-pair-{uuid.uuid4().hex[:6]}"
    proc = _ingest_cli(fresh_db, broker, tmp_path, "--name", name, "--workers", "2")
    try:
        _wait_subscribed(tmp_path / "status", 2)
        sent = _messages("pair-a", 0, 100) + _messages("pair-b", 100, 100)  # 20,000 readings
        publish_paho(endpoint(broker, "collector"), sent)
        wait_for(lambda: count_readings(fresh_db) >= 20_000, timeout_s=120, what="all readings")
        wait_for(
            lambda: sum(json.loads(f.read_text())["messages"] for f in (tmp_path / "status").glob("*.json")) >= 200,
            what="both status files counting",
        )
        per_worker = {f.name: json.loads(f.read_text()) for f in (tmp_path / "status").glob("status-*.json")}
    finally:
        _stop(proc)
        for i in range(2):
            drop_session(broker, f"{name}-{i}")
    assert count_readings(fresh_db) == 20_000
    _assert_no_duplicates(fresh_db)
    assert len(per_worker) == 2
    assert all(s["messages"] > 0 for s in per_worker.values()), per_worker  # both took a share
    assert sum(s["rows"] for s in per_worker.values()) == 20_000  # and each reading was stored once
    assert sum(s["duplicates"] for s in per_worker.values()) == 0


@pytest.fixture()
def own_cluster(broker: LocalMosquitto) -> Iterator[DatabaseServer]:
    """A PostgreSQL cluster of this test's own: stopping it disturbs no other test."""
    state = make_state_dir("amr-ingest-outage-")
    settings = Settings(
        state_dir=state,
        db=DatabaseSettings(port=free_port(), data_dir=state / "pg" / "data"),
        mqtt=MqttSettings(port=broker.port),
    )
    server = DatabaseServer.from_settings(settings, durable=False)
    try:
        server.up()
        add_test_meters(server)
        yield server
    finally:
        if server.cluster is not None:
            server.cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


OUTAGE_S = 5.0  # the scenario is 30 s; the mechanism (no acks, broker queues, backoff, resume) is the same


@pytest.mark.fault
def test_database_outage_mid_stream(own_cluster: DatabaseServer, broker: LocalMosquitto, tmp_path: Path) -> None:
    assert own_cluster.cluster is not None
    source = f"outage-{uuid.uuid4().hex[:6]}"
    sent = _messages(source, 0, 300)  # 30,000 readings
    with running_worker(worker_config(broker, own_cluster, tmp_path), broker) as worker:
        publish_paho(endpoint(broker, "collector"), sent[:100])
        wait_for(lambda: count_readings(own_cluster) > 0, what="readings before the outage")
        own_cluster.cluster.stop()
        outage_started = time.monotonic()
        publish_paho(endpoint(broker, "collector"), sent[100:])  # broker takes them; ingest cannot commit
        wait_for(lambda: worker.counters.db_errors > 0, what="the worker noticing the outage")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        # Bounded memory: the broker stopped sending at Receive Maximum unacknowledged messages.
        assert worker.consumer.queue.qsize() + len(worker._batch.entries) <= worker.consumer.receive_maximum
        own_cluster.cluster.start()
        wait_for(lambda: count_readings(own_cluster) >= 30_000, timeout_s=120, what="ingest resuming")
        time.sleep(1.0)
    assert count_readings(own_cluster) == 30_000
    _assert_no_duplicates(own_cluster)
    assert worker.counters.db_errors > 0
