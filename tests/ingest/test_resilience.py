"""Nothing a client sends stops a live worker: unexpected errors become dead letters, a loop error restarts the loop
in place, a message that kills worker after worker is dead-lettered by the poison ledger, dead letters are stored
once, status times and client names are checked, and committed messages are confirmed to their sources."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.probe import new_client
from amr.broker.topics import confirm_topic, readings_topic, status_topic
from amr.db.server import DatabaseServer, Role
from ingest.consumer import Incoming
from ingest.worker import Worker
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
from tests.services import endpoint


@pytest.fixture()
def fresh_db(make_database: Callable[[str], DatabaseServer], request: pytest.FixtureRequest) -> DatabaseServer:
    server = make_database(f"ingest_resilience_{request.node.name[5:40].lower()}")
    add_test_meters(server)
    return server


def _dead_letters(server: DatabaseServer, like: str = "%") -> int:
    return int(fetch_one(server, "SELECT count(*) FROM dead_letters WHERE reason LIKE %s", (like,)))


def _reasons(server: DatabaseServer) -> list[str]:
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT reason FROM dead_letters ORDER BY 1").fetchall()]


def test_an_unexpected_error_on_one_message_is_its_dead_letter(
    fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path
) -> None:
    def fault(item: Incoming) -> None:
        if b'"seq":2,' in item.payload:
            raise RuntimeError("decoder blew up")

    config = worker_config(broker, fresh_db, tmp_path, fault=fault)
    with running_worker(config, broker) as worker:
        publish_paho(
            endpoint(broker, "collector"),
            [(readings_topic("c1"), reading_batch("c1", s, start=100 * s)) for s in (1, 2, 3)],
        )
        wait_for(lambda: count_readings(fresh_db) == 200, what=f"the two good messages {_reasons(fresh_db)}")
        wait_for(lambda: _dead_letters(fresh_db, "internal error%RuntimeError: decoder blew up%") == 1, what="letter")
        assert worker.counters.internal_errors == 1


def test_a_failing_loop_restarts_in_place_and_keeps_its_messages(
    fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path
) -> None:
    config = worker_config(broker, fresh_db, tmp_path)
    with running_worker(config, broker) as worker:
        real_flush = worker._flush
        failures = [2]

        def flaky_flush(stop: threading.Event) -> None:
            if failures[0]:  # fails before writing: the batch under way must survive the restart
                failures[0] -= 1
                raise MemoryError("simulated")
            real_flush(stop)

        worker._flush = flaky_flush  # type: ignore[method-assign]
        publish_paho(
            endpoint(broker, "collector"),
            [(readings_topic("c1"), reading_batch("c1", s, start=100 * s)) for s in (1, 2)],
        )
        wait_for(lambda: count_readings(fresh_db) == 200, what="both messages after two loop restarts")
        assert worker.counters.restarts == 2


def test_a_message_that_kills_every_worker_is_dead_lettered(
    fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """SystemExit is not an Exception: the worker thread dies, unacknowledged, as on a crash. Each new worker gets
    the message again with the DUP flag; after MAX_DELIVERY_ATTEMPTS deaths the ledger dead-letters it."""
    deaths = []

    def fault(item: Incoming) -> None:
        if b'"seq":66,' in item.payload:
            deaths.append(item.dup)
            raise SystemExit("the worker dies on this message")

    config = worker_config(broker, fresh_db, tmp_path, fault=fault, max_delivery_attempts=3)
    good = [(readings_topic("c1"), reading_batch("c1", s, start=100 * s)) for s in (1, 2, 3)]
    poison = (readings_topic("c1"), reading_batch("c1", 66, start=6600))
    try:
        for attempt in range(8):
            worker = Worker(config)
            stop = threading.Event()
            thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
            thread.start()
            assert worker.consumer.subscribed.wait(20)
            if attempt == 0:
                publish_paho(endpoint(broker, "collector"), [good[0], poison, *good[1:]])
            deadline = time.monotonic() + 20
            while thread.is_alive() and time.monotonic() < deadline:
                if _dead_letters(fresh_db, "poison message%") == 1:
                    break
                time.sleep(0.2)
            if thread.is_alive():
                stop.set()
                thread.join(30)
                break
        assert _dead_letters(fresh_db, "poison message%") == 1
        assert deaths == [False, True, True, True]  # the first delivery and three counted redeliveries
        wait_for(lambda: count_readings(fresh_db) == 300, what="every good reading")
        assert int(fetch_one(fresh_db, "SELECT count(*) FROM ingest_poison")) == 0  # settled with its dead letter
    finally:
        drop_session(broker, config.client_id)


def test_a_redelivered_bad_message_is_one_dead_letter(
    fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path
) -> None:
    bad = (readings_topic("c1"), b'{"v": 2, "source": "c1", "seq": 1, "meters": [')
    with running_worker(worker_config(broker, fresh_db, tmp_path), broker):
        publish_paho(endpoint(broker, "collector"), [bad, bad, (readings_topic("c1"), reading_batch("c1", 5))])
        wait_for(lambda: count_readings(fresh_db) == 100, what="the canary")
        wait_for(lambda: _dead_letters(fresh_db) >= 1, what="the dead letter")
    assert _dead_letters(fresh_db) == 1


def test_client_names_and_status_times_are_checked(
    fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path
) -> None:
    def status(source: str, ts: str) -> bytes:
        return msgspec.json.encode({"v": 1, "source": source, "kind": "collector", "state": "online", "ts": ts})

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with running_worker(worker_config(broker, fresh_db, tmp_path), broker):
        publish_paho(
            endpoint(broker, "collector"),
            [
                (status_topic("c9"), status("c9", "2100-01-01T00:00:00Z")),  # would freeze the row until 2100
                (readings_topic("c8"), reading_batch("c7", 1)),  # another client's name
                (status_topic("c9"), status("c9", now)),
            ],
        )
        wait_for(lambda: _dead_letters(fresh_db) == 2, what="two dead letters")
        wait_for(
            lambda: fetch_one(fresh_db, "SELECT count(*) FROM collector_status WHERE source = 'c9'") == 1,
            what="the honest status",
        )
    assert _dead_letters(fresh_db, "%more than 300 s after it arrived%") == 1
    assert _dead_letters(fresh_db, "%source 'c7' is not the topic's client 'c8'%") == 1
    assert count_readings(fresh_db) == 0
    assert fetch_one(
        fresh_db, "SELECT updated_at < now() + interval '1 minute' FROM collector_status WHERE source='c9'"
    )


class _Source:
    """A collector-like client: publishes under its own client id and reads its own confirmation topic."""

    def __init__(self, broker: LocalMosquitto, client_id: str) -> None:
        ep = endpoint(broker, "collector")
        self.client = new_client(client_id)
        self.client.username_pw_set(ep.username, ep.password)
        self.confirmed: list[int] = []
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect(ep.host, ep.port, keepalive=30)
        self.client.subscribe(confirm_topic(client_id), qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = msgspec.json.decode(msg.payload)
        assert body["v"] == 1
        self.confirmed += body["ids"]

    def publish(self, topic: str, payload: bytes, *, response_topic: str, correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_committed_messages_are_confirmed_to_their_source_only(
    fresh_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path
) -> None:
    with running_worker(worker_config(broker, fresh_db, tmp_path), broker) as worker:
        source = _Source(broker, "c-conf")
        try:
            mine = confirm_topic("c-conf")
            source.publish(readings_topic("c-conf"), reading_batch("c-conf", 1), response_topic=mine, correlation=b"41")
            bad = b'{"v": 2, "source": "c-conf", "seq": 2'  # dead-lettered: handled, so confirmed too
            source.publish(readings_topic("c-conf"), bad, response_topic=mine, correlation=b"42")
            source.publish(
                readings_topic("c-conf"), reading_batch("c-conf", 3, start=100), response_topic=confirm_topic("else"),
                correlation=b"43",
            )  # fmt: skip
            source.publish(readings_topic("c-conf"), reading_batch("c-conf", 4, start=200), response_topic=mine,
                           correlation=b"not digits")  # fmt: skip
            wait_for(lambda: count_readings(fresh_db) == 300, what="three batches")
            wait_for(lambda: sorted(source.confirmed) == [41, 42], what="confirmations of 41 and 42")
            time.sleep(0.5)
            assert sorted(source.confirmed) == [41, 42]
            assert worker.counters.confirms_refused == 1
        finally:
            source.close()
