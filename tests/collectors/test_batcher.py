"""The batcher keeps every message below the broker's maximum packet size: a batch that would not fit is halved,
a single item that can never fit is refused (logged, counted, kept in the spool's refused table), and a spooled
message sealed for a larger limit is split again. Plain SQLite spool in a temporary directory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from amr.broker.confirm import max_payload_bytes
from amr.broker.topics import events_topic, readings_topic
from amr.messages import ColumnarReadingBatch, EventBatch, MeterEvent, Reading, iter_readings
from collectors.batcher import Batcher
from collectors.spool import Spool

SOURCE = "test-batcher"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def make_batcher(spool: Spool, batch_readings: int = 1_000) -> Batcher:
    return Batcher(
        spool,
        source=SOURCE,
        readings_topic=readings_topic(SOURCE),
        events_topic=events_topic(SOURCE),
        batch_readings=batch_readings,
    )


def readings(n: int) -> list[Reading]:
    return [
        Reading(meter=f"M{i % 37:05d}", obis="1.0.1.8.0.255", ts=T0 + timedelta(minutes=i), value=i * 0.5, unit="kWh")
        for i in range(n)
    ]


def spooled_readings(spool: Spool) -> list[tuple[int, list[Reading]]]:
    out = []
    for record in spool.read_after(0, 10_000):
        batch = msgspec.json.decode(record.payload, type=ColumnarReadingBatch)
        out.append((batch.seq, list(iter_readings(batch))))
    return out


def test_a_batch_that_would_not_fit_is_halved(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    batcher = make_batcher(spool)
    batcher.max_packet_bytes = 4_000
    sent = readings(1_000)
    batcher.add(sent)
    batcher.flush(force=True)
    limit = max_payload_bytes(4_000, readings_topic(SOURCE), SOURCE)
    assert all(len(r.payload) <= limit for r in spool.read_after(0, 10_000))
    batches = spooled_readings(spool)
    assert len(batches) >= 8  # 1,000 readings are ~30 KB
    assert [seq for seq, _ in batches] == list(range(1, len(batches) + 1))  # no seq skipped
    assert [r for _, rs in batches for r in rs] == sent  # each reading once, in order
    assert batcher.refused_readings == 0 and spool.refused() == []


def test_an_event_that_can_never_fit_is_refused_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path)
    batcher = make_batcher(spool)
    batcher.max_packet_bytes = 4_000
    small = [MeterEvent(meter=f"M{i}", ts=T0, event="power_down") for i in range(3)]
    huge = MeterEvent(meter="MHUGE", ts=T0, event="tamper", detail={"dump": "x" * 10_000})
    batcher.add_events([small[0], huge, *small[1:]])
    with caplog.at_level(logging.ERROR, logger="collectors.batcher"):
        batcher.flush(force=True)
    kept = [msgspec.json.decode(r.payload, type=EventBatch) for r in spool.read_after(0, 100)]
    assert sorted(e.meter for b in kept for e in b.events) == ["M0", "M1", "M2"]
    assert batcher.refused_events == 1
    [(topic, payload, reason)] = spool.refused()
    assert topic == events_topic(SOURCE) and b"MHUGE" in payload
    assert "'tamper' of meter 'MHUGE'" in reason and "maximum packet size of 4,000 bytes" in reason
    assert any("MHUGE" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    spool.close()
    assert Spool(tmp_path).refused_count == 1  # on disk, not silently dropped


def test_a_spooled_message_is_split_again_for_a_smaller_broker(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    batcher = make_batcher(spool)
    sent = readings(1_000)
    batcher.add(sent)
    batcher.flush(force=True)
    [record] = spool.read_after(0, 10)
    batcher.max_packet_bytes = 4_000  # a broker with a smaller limit than the message was sealed for
    batcher.reseal(record)
    assert spool.get([record.id]) == [] and spool.depth == len(spool.read_after(0, 10_000)) > 4
    limit = max_payload_bytes(4_000, readings_topic(SOURCE), SOURCE)
    assert all(len(r.payload) <= limit for r in spool.read_after(0, 10_000))
    assert [r for _, rs in spooled_readings(spool) for r in rs] == sent
    assert batcher.committed_id == spool.max_id  # the parts are durable and may be sent
    spool.close()
    # The last limit is kept: after a restart the batcher seals for it before the broker says it again.
    assert make_batcher(Spool(tmp_path)).max_packet_bytes == 4_000
