"""Shared pieces of the ingest tests: test meters, payload builders, a windowed paho publisher, a worker thread."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto
from amr.broker.probe import new_client
from amr.broker.publish import WindowedPublisher
from amr.db.server import DatabaseServer, Role
from amr.messages import Reading, ReadingBatch, columnar_from_readings, encode
from ingest.worker import Worker, WorkerConfig
from tests.services import endpoint

SERIAL_PREFIX = "ING-TEST-"
METERS = 50
PUBLISH_WINDOW = 1_000  # unacknowledged QoS 1 messages a publisher allows (paho ids are 16-bit)
BASE_TS = datetime(2026, 1, 1, tzinfo=UTC)


def serial(i: int) -> str:
    return f"{SERIAL_PREFIX}{i:06d}"


def add_test_meters(server: DatabaseServer, count: int = METERS) -> None:
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        company = conn.execute("SELECT code FROM power_companies ORDER BY code LIMIT 1").fetchone()
        assert company is not None
        conn.execute(
            "INSERT INTO meters (serial, city, power_company, tariff_class, meter_kind, remote_read, protocol)"
            " SELECT %s || lpad(g::text, 6, '0'), 'HN', %s, 'household', 'smart', true, 'dcu-mqtt'"
            " FROM generate_series(1, %s) g ON CONFLICT (serial) DO NOTHING",
            (SERIAL_PREFIX, company[0], count),
        )


def reading_batch(
    source: str, seq: int, *, start: int = 0, count: int = 100, meters: int = METERS, version: int = 2
) -> bytes:
    """`count` valid readings: meter i cycles, 15-minute steps from BASE_TS, channel 1 (kWh); columnar v2 (what
    collectors publish) or v1."""
    readings = []
    for k in range(start, start + count):
        readings.append(
            Reading(
                meter=serial(1 + k % meters),
                obis="1.0.1.8.0.255",
                ts=BASE_TS + timedelta(minutes=15 * (k // meters)),
                value=float(k) * 0.5,
                unit="kWh",
            )
        )
    columnar = columnar_from_readings(source, seq, readings) if version == 2 else None
    return encode(columnar or ReadingBatch(source=source, seq=seq, readings=readings))


def fetch_one(server: DatabaseServer, query: str, params: Sequence[Any] = ()) -> Any:
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def count_readings(server: DatabaseServer) -> int:
    return int(
        fetch_one(
            server,
            "SELECT count(*) FROM readings r JOIN meters m USING (meter_id) WHERE m.serial LIKE %s",
            (SERIAL_PREFIX + "%",),
        )
    )


def wait_for(predicate: Callable[[], bool], *, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def publish_paho(ep: BrokerEndpoint, messages: Sequence[tuple[str, bytes]], *, window: int = PUBLISH_WINDOW) -> None:
    """QoS 1 with at most `window` messages unacknowledged; returns when the broker acknowledged all.

    The broker lets a client publish only under its own client id (amr/v1/<kind>/<client id>...), so messages
    go out grouped by the client their topic names, each group under that client id, in order."""
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for topic, payload in messages:
        groups.setdefault(topic_client(topic), []).append((topic, payload))
    for client, group in groups.items():
        with WindowedPublisher(ep, client_id=client, window=window, keepalive_s=30) as pub:
            pub.publish_all(group)


def topic_client(topic: str) -> str:
    """The client id a topic belongs to (its fourth level), or a random one for a topic outside the layout."""
    parts = topic.split("/")
    return parts[3] if len(parts) >= 4 and parts[3] else f"test-pub-{uuid.uuid4().hex[:8]}"


def drop_session(broker: LocalMosquitto, client_id: str) -> None:
    """Forget a worker's persistent session (and anything the broker still queues for it)."""
    ep = endpoint(broker, "ingest")
    client = new_client(client_id)
    client.username_pw_set(ep.username, ep.password)
    client.connect(ep.host, ep.port, keepalive=10, clean_start=True)
    client.loop_start()
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def worker_config(broker: LocalMosquitto, server: DatabaseServer, status_dir: Path, **kw: Any) -> WorkerConfig:
    tag = uuid.uuid4().hex[:8]
    defaults: dict[str, Any] = {"client_id": f"ingest-test-{tag}", "share_group": f"ingest-test-{tag}"}
    return WorkerConfig(
        broker=endpoint(broker, "ingest"),
        conninfo=server.conninfo(Role.INGEST),
        status_dir=status_dir,
        **(defaults | kw),
    )


@contextmanager
def running_worker(config: WorkerConfig, broker: LocalMosquitto) -> Iterator[Worker]:
    worker = Worker(config)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert worker.consumer.subscribed.wait(20), "worker did not subscribe at the broker"
        yield worker
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
        drop_session(broker, config.client_id)
