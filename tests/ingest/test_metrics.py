"""The ingest Prometheus endpoint: two real workers on the real broker and database, the supervisor's HTTP
server scraped over HTTP and parsed with prometheus_client's parser; and the dead-letter reason classes, checked
on the reasons the real decoder and guard produce."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import readings_topic
from amr.db.server import DatabaseServer
from amr.errors import PayloadError
from amr.messages import MAX_PAYLOAD_BYTES
from ingest.decode import parse_message, validate_message
from ingest.metrics import DEAD_LETTER_REASONS, reason_class
from ingest.supervisor import serve_metrics
from tests.ingest.helpers import (
    add_test_meters,
    count_readings,
    publish_paho,
    reading_batch,
    running_worker,
    serial,
    wait_for,
    worker_config,
)
from tests.services import endpoint

SOURCE = "metrics-test-src"
MESSAGES = 6
READINGS_PER_MESSAGE = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, Any]:
    """{family name: family} from the endpoint's Prometheus text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def total(family: Any, **labels: str) -> float:
    return sum(s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items()))


def test_endpoint_reports_stored_readings_and_dead_letters_by_reason(
    make_database: Callable[[str], DatabaseServer], broker: LocalMosquitto, tmp_path: Path
) -> None:
    server = make_database(f"amr_ingest_metrics_{uuid.uuid4().hex[:8]}")
    add_test_meters(server)
    status_dir = tmp_path / "status"
    group = f"ingest-metrics-{uuid.uuid4().hex[:8]}"
    configs = [worker_config(broker, server, status_dir, share_group=group) for _ in range(2)]
    topic = readings_topic(SOURCE)
    good = [
        (topic, reading_batch(SOURCE, seq, start=seq * READINGS_PER_MESSAGE, count=READINGS_PER_MESSAGE))
        for seq in range(MESSAGES)
    ]
    bad = (topic, reading_batch(SOURCE, MESSAGES, count=1).replace(serial(1).encode(), b"NO-SUCH-METER"))
    port = _free_port()
    http = serve_metrics(port, status_dir)
    try:
        with ExitStack() as stack:
            for cfg in configs:
                stack.enter_context(running_worker(cfg, broker))
            publish_paho(endpoint(broker, "ingest"), [*good, bad])
            expected = MESSAGES * READINGS_PER_MESSAGE
            wait_for(lambda: count_readings(server) == expected, what=f"{expected} readings stored")

            def settled() -> bool:  # both workers' status files caught up with the commits
                fams = scrape(port)
                return total(fams["amr_ingest_messages"]) == MESSAGES + 1

            wait_for(settled, timeout_s=20, what="the endpoint to count every message")
            fams = scrape(port)
    finally:
        http.shutdown()

    stored = fams["amr_ingest_readings_stored"]
    assert stored.type == "counter"
    assert {s.name for s in stored.samples} >= {"amr_ingest_readings_stored_total"}
    assert total(stored) == expected
    assert {s.labels["worker"] for s in stored.samples if s.name.endswith("_total")} == {c.client_id for c in configs}
    dead = fams["amr_ingest_dead_letters"]
    assert dead.type == "counter"
    assert {s.labels["reason"] for s in dead.samples if s.name.endswith("_total")} == set(DEAD_LETTER_REASONS)
    assert total(dead, reason="unknown_meter") == 1
    assert total(dead) == 1  # no other class counted anything
    lag = fams["amr_ingest_lag_seconds"]
    assert lag.type == "gauge" and all(0 <= s.value < 60 for s in lag.samples)
    assert fams["amr_ingest_workers"].samples[0].value == 2
    assert total(fams["amr_ingest_readings_duplicate"]) == 0


def test_a_stale_status_file_drops_out(tmp_path: Path) -> None:
    """A worker that is gone (its file older than STALE_AFTER_S) is no longer reported."""
    (tmp_path / "status-gone.json").write_text('{"worker": "gone", "updated_at": 0, "rows": 5}')
    port = _free_port()
    http = serve_metrics(port, tmp_path)
    try:
        fams = scrape(port)
    finally:
        http.shutdown()
    assert fams["amr_ingest_workers"].samples[0].value == 0
    assert fams["amr_ingest_readings_stored"].samples == []


METER_IDS = {serial(1): 1}
TOPIC = readings_topic(SOURCE)
_ONE = reading_batch(SOURCE, 0, count=1, meters=1, version=1)


def _reason(payload: bytes, topic: str = TOPIC) -> str:
    """The dead-letter reason the real decoder gives a payload ('' when it is accepted)."""
    try:
        _kind, message = parse_message(topic, payload)
    except PayloadError as exc:
        return exc.reason
    part = validate_message(message, meter_ids=METER_IDS, now_s=2_000_000_000.0)
    return f"{part.rejected} item(s) rejected: " + "; ".join(part.reasons) if part.reasons else ""


@pytest.mark.parametrize(
    ("payload", "topic", "expected"),
    [
        (b"x" * (MAX_PAYLOAD_BYTES + 1), TOPIC, "oversize"),
        (b"[" * 200 + b"]" * 200, TOPIC, "nesting"),
        (_ONE.replace(b'"kWh"', b'"k\\u0001Wh"'), TOPIC, "control_character"),
        (b"{not json", TOPIC, "malformed_json"),
        (b"", TOPIC, "malformed_json"),
        (b"[1, 2]", TOPIC, "malformed_json"),
        (b'{"v": 1, "source": "metrics-test-src"}', TOPIC, "schema"),
        (b'{"v": 9}', TOPIC, "schema"),
        (_ONE.replace(b"1.0.1.8.0.255", b"9.9.9.9.9.255"), TOPIC, "schema"),
        (_ONE.replace(serial(1).encode(), b"NO-SUCH-METER"), TOPIC, "unknown_meter"),
        (_ONE.replace(b"2026-01-01", b"1999-01-01"), TOPIC, "time_window"),
        (_ONE, readings_topic("someone-else"), "identity"),
        (_ONE, "not/a/topic", "topic"),
    ],
)
def test_decoder_reasons_fall_in_their_class(payload: bytes, topic: str, expected: str) -> None:
    reason = _reason(payload, topic)
    assert reason, "the payload was accepted"
    assert reason_class(reason) == expected, reason


def test_worker_reasons_fall_in_their_class() -> None:
    assert reason_class("poison message: delivered 4 times, and the 3 workers ...") == "poison"
    assert reason_class("internal error while processing the message: KeyError: 'x'") == "internal"
    assert reason_class("database refused the message: DataError: out of range") == "database"
    assert reason_class("could not write the message: ValueError: bad") == "internal"
    assert reason_class("a wording nobody classified") == "other"
