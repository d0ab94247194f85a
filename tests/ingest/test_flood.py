"""Valid and malformed messages flooded through the real broker (paho and the mosquitto_pub command line) into a
real database: every valid reading stored once, every malformed message one dead letter with its reason."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import dcu_uplink_topic, events_topic, readings_topic, status_topic
from amr.db.server import DatabaseServer, Role
from amr.messages import MAX_PAYLOAD_BYTES
from tests.ingest.helpers import (
    METERS,
    SERIAL_PREFIX,
    add_test_meters,
    count_readings,
    fetch_one,
    publish_paho,
    reading_batch,
    running_worker,
    serial,
    wait_for,
    worker_config,
)
from tests.services import endpoint


@pytest.fixture(scope="module")
def ingest_db(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    server = make_database("amr_ingest_flood")
    add_test_meters(server)
    return server


def _reading(**over: object) -> dict[str, object]:
    good: dict[str, object] = {
        "meter": serial(1), "obis": "1.0.1.8.0.255", "ts": "2026-02-01T00:00:00Z", "value": 1.5, "unit": "kWh",
    }  # fmt: skip
    return good | over


def _batch_of(*readings: dict[str, object], source: str) -> bytes:
    return json.dumps({"v": 1, "source": source, "seq": 1, "readings": list(readings)}).encode()


def malformed_messages(source: str) -> list[tuple[bytes, str]]:
    """(payload, expected reason fragment): each message has exactly one problem."""
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    good = _reading()

    def _batch(*readings: dict[str, object]) -> bytes:
        return _batch_of(*readings, source=source)

    return [
        (_batch(_reading(meter="NOT-A-METER")), "unknown meter"),
        (_batch(_reading(ts=future)), "in the future"),
        (_batch(_reading(ts="1999-12-31T23:00:00Z")), "before 2000"),
        (_batch(good).replace(b'"value": 1.5', b'"value": 1e999'), "out of range"),  # msgspec refuses infinity
        (_batch(good).replace(b'"value": 1.5', b'"value": NaN'), "invalid readings payload"),
        (_batch(_reading(unit="Wh")), "unit 'Wh'"),
        (_batch(_reading(obis="1.0.99.8.0.255")), "unknown OBIS"),
        (_batch(_reading(ts="2026-02-01T00:00:00")), "naive"),
        # Just over ingest's limit, within the broker's packet limit (a larger one is refused at the source).
        (_batch(good).ljust(MAX_PAYLOAD_BYTES + 100), "oversize"),
        (_batch(good)[:-7], "invalid readings payload"),
        (b"\x00\xff not json at all", "NUL or control character"),
        (json.dumps({"v": 1, "source": source, "readings": []}).encode(), "missing required field"),
        (json.dumps({"v": 3, "source": source, "seq": 1, "readings": []}).encode(), "version"),
        (_columns(source, m=[0, 1]), "unknown meter 'NOT-A-METER'"),
        (_columns(source, m=[0, 5]), "readings[1]: meter index 5 outside meters[0..1]"),
        (_columns(source, o=[0, -1]), "readings[1]: OBIS index -1 outside obis[0..0]"),
        (_columns(source, units=["Wh"]), "unit 'Wh'"),
        (_columns(source, t=[1_769_904_000, 1e11]), "in the future"),
        (_columns(source, q=[0, 10**30]), "readings[1]: quality 1000000000000000000000000000000 outside"),
        (_columns(source, x=[1.0]), "columns differ in length"),
        (_columns(source, units=[]), "0 units for 1 OBIS codes"),
        (_columns(source, t=[1_769_904_000, "2026-02-01T00:00:00Z"]), "Expected `float`, got `str` - at `$.t[1]`"),
    ]


def _columns(source: str, **over: object) -> bytes:
    """A columnar (v2) batch of two readings of meter 1 (2026-02-01 00:00 and 00:15:00.5), fields replaced by
    `over`. Where only reading 1 is bad, reading 0 is stored: the same row each time (duplicates dropped)."""
    good: dict[str, object] = {
        "v": 2, "source": source, "seq": 1, "meters": [serial(1), "NOT-A-METER"], "obis": ["1.0.1.8.0.255"],
        "units": ["kWh"], "m": [0, 0], "o": [0, 0], "t": [1_769_904_000, 1_769_904_900.5], "x": [1.5, 2.5],
    }  # fmt: skip
    return json.dumps(good | over).encode()


def test_flood_valid_and_malformed(ingest_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path) -> None:
    source = f"flood-{uuid.uuid4().hex[:6]}"
    topic = readings_topic(source)
    valid_paho = [(topic, reading_batch(source, seq, start=seq * 100)) for seq in range(60)]  # 6,000 readings
    valid_cli = [  # 2,000 readings in v1, which stays accepted beside the columnar v2 above
        reading_batch(source, 1000 + seq, start=(60 + seq) * 100, version=1) for seq in range(20)
    ]
    bad = malformed_messages(source)
    # One message mixing 3 good readings (stored) with one bad (dead-lettered): users keep the good ones.
    mixed = _batch_of(
        _reading(meter=serial(2), ts="2026-03-01T00:00:00Z"),
        _reading(meter=serial(3), ts="2026-03-01T00:00:00Z"),
        _reading(meter="GHOST-1", ts="2026-03-01T00:00:00Z"),
        _reading(meter=serial(4), ts="2026-03-01T00:00:00Z"),
        source=source,
    )
    with running_worker(worker_config(broker, ingest_db, tmp_path), broker) as worker:
        publish_paho(endpoint(broker, "collector"), valid_paho + [(topic, p) for p, _ in bad[:7]] + [(topic, mixed)])
        ep = endpoint(broker, "collector")
        lines = b"\n".join(valid_cli) + b"\n"
        subprocess.run(
            ["mosquitto_pub", "-h", ep.host, "-p", str(ep.port), "-u", ep.username, "-P", ep.password,
             "-q", "1", "-i", source, "-t", topic, "-l"],
            input=lines, check=True, timeout=60,
        )  # fmt: skip
        for payload, _ in bad[7:]:
            subprocess.run(
                ["mosquitto_pub", "-h", ep.host, "-p", str(ep.port), "-u", ep.username, "-P", ep.password,
                 "-q", "1", "-i", source, "-t", topic, "-s"],
                input=payload, check=True, timeout=30,
            )  # fmt: skip
        expected_rows = 6_000 + 2_000 + 3 + 1  # + reading 0 of the v2 messages whose reading 1 is bad
        wait_for(lambda: count_readings(ingest_db) >= expected_rows, what="valid readings stored")
        seen = "SELECT count(*) FROM meter_last_seen JOIN meters USING (meter_id) WHERE serial LIKE %s"
        # Written every LAST_SEEN_INTERVAL_S while the worker runs, not only when it stops.
        wait_for(lambda: fetch_one(ingest_db, seen, (SERIAL_PREFIX + "%",)) == METERS, what="meter_last_seen")
        wait_for(lambda: worker.counters.dead_letters >= len(bad) + 1, what="dead letters written")
        wait_for(lambda: worker.consumer.queue.empty() and not worker._batch.entries, what="worker idle")

    assert count_readings(ingest_db) == expected_rows
    with psycopg.connect(ingest_db.conninfo(Role.OWNER)) as conn:
        letters = conn.execute(
            "SELECT source, topic, payload, reason FROM dead_letters WHERE topic = %s ORDER BY dead_letter_id",
            (topic,),
        ).fetchall()
    assert len(letters) == len(bad) + 1
    reasons = [r[3] for r in letters]
    for payload, fragment in bad:
        matching = [r for r in letters if bytes(r[2]) == payload]
        assert len(matching) == 1, f"no single dead letter for the message expected to fail with {fragment!r}"
        assert fragment in matching[0][3], (fragment, matching[0][3])
    mixed_letter = [r for r in letters if bytes(r[2]) == mixed]
    assert len(mixed_letter) == 1 and "1 item(s) rejected: readings[2]: unknown meter 'GHOST-1'" in mixed_letter[0][3]
    assert all(r for r in reasons)
    assert {r[0] for r in letters} == {source}


def test_events_dcu_uplink_and_status(ingest_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path) -> None:
    dcu = f"DCU-T-{uuid.uuid4().hex[:6]}"
    uplink = {
        "v": 1, "dcu": dcu, "seq": 7, "sent": "2026-04-01T00:31:05Z",
        "reads": [{"serial": serial(10), "ts": "2026-04-01T00:30:00Z", "status": 0,
                   "values": {"1.8.0": 1234.5, "1.8.1": 700.1, "1.8.2": 300.2, "1.8.3": 234.2}}],
        "events": [{"serial": serial(10), "ts": "2026-04-01T00:12:00Z", "event": "power_down"}],
    }  # fmt: skip
    events = {
        "v": 1, "source": "c-ev", "seq": 1,
        "events": [{"meter": serial(11), "ts": "2026-04-01T01:00:00Z", "event": "cover_open", "detail": {"n": 1}}],
    }  # fmt: skip
    status = {
        "v": 1, "source": f"collector-{dcu}", "kind": "collector", "state": "online",
        "ts": "2026-04-01T01:00:00Z", "spool_depth": 3, "reads_per_s": 12.5,
        "meters": [{"meter": serial(12), "attempts": 10, "successes": 9, "last_error": "timeout",
                    "last_error_at": "2026-04-01T00:59:00Z"}],
    }  # fmt: skip
    msgs = [
        (dcu_uplink_topic(dcu), json.dumps(uplink).encode()),
        (dcu_uplink_topic(dcu), json.dumps(uplink).encode()),  # a DCU repeating itself after a reconnect
        (events_topic("c-ev"), json.dumps(events).encode()),
        (status_topic(status["source"]), json.dumps(status).encode()),  # type: ignore[arg-type]
    ]
    with running_worker(worker_config(broker, ingest_db, tmp_path), broker) as worker:
        publish_paho(endpoint(broker, "collector"), msgs[2:])
        publish_paho(endpoint(broker, "dcu"), msgs[:2])
        wait_for(lambda: worker.counters.messages >= 4, what="four messages handled")
        wait_for(
            lambda: fetch_one(ingest_db, "SELECT count(*) FROM collector_status WHERE source = %s",
                              (worker.config.client_id,)) == 1,
            what="the worker's own status row",
        )  # fmt: skip
    q = "SELECT count(*) FROM {} t JOIN meters m USING (meter_id) WHERE m.serial = %s"
    in_april = q.format("readings") + " AND t.ts >= '2026-04-01'"
    assert fetch_one(ingest_db, in_april, (serial(10),)) == 4  # the repeat was dropped
    assert fetch_one(ingest_db, q.format("meter_events"), (serial(10),)) == 1
    assert fetch_one(ingest_db, q.format("meter_events"), (serial(11),)) == 1
    assert fetch_one(ingest_db, q.format("meter_comm_stats"), (serial(12),)) == 1
    assert fetch_one(ingest_db, "SELECT spool_depth FROM collector_status WHERE source = %s", (status["source"],)) == 3
    assert fetch_one(ingest_db, "SELECT kind FROM collector_status WHERE source = %s", (worker.config.client_id,)) == (
        "ingest"
    )
    assert fetch_one(ingest_db, q.format("meter_last_seen"), (serial(10),)) == 1
    assert worker.counters.duplicates == 4 and worker.counters.staging_flushes >= 1
    status_file = json.loads(worker.status_file.read_text())
    # >= 4: on the shared session broker, other tests' clients may still publish heartbeats on status topics
    # that this worker's shared subscription also receives; none of them may become a dead letter.
    assert status_file["messages"] >= 4 and status_file["dead_letters"] == 0
