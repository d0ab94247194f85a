from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from amr.messages import (
    ColumnarReadingBatch,
    DcuUplink,
    Reading,
    ReadingBatch,
    columnar_from_readings,
    encode,
    iter_readings,
    short_obis_to_full,
)


def test_reading_batch_round_trips() -> None:
    raw = (
        b'{"v":1,"source":"c1","seq":3,"readings":[{"meter":"M1","obis":"1.0.1.8.0.255",'
        b'"ts":"2026-10-01T00:30:00Z","value":12.5,"unit":"kWh"}]}'
    )
    batch = msgspec.json.decode(raw, type=ReadingBatch)
    assert batch.readings[0].ts.utcoffset() is not None and batch.readings[0].quality == 0
    assert msgspec.json.decode(encode(batch), type=ReadingBatch) == batch


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"dcu":"d","seq":1,"sent":"2026-10-01T00:00:00Z","reads":[],"x":1}', type=DcuUplink)


def test_short_obis() -> None:
    assert short_obis_to_full("1.8.0") == "1.0.1.8.0.255"


def test_columnar_batch_round_trips_to_readings() -> None:
    at = datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
    readings = [
        Reading(meter="M1", obis="1.0.1.8.0.255", ts=at, value=12.5, unit="kWh"),
        Reading(meter="M2", obis="1.0.1.8.0.255", ts=at + timedelta(microseconds=250), value=3.0, unit="kWh"),
        Reading(meter="M1", obis="1.0.32.7.0.255", ts=at, value=230.1, unit="V", quality=128),
        Reading(meter="M1", obis="1.0.32.7.0.255", ts=at, value=0.23, unit="kV"),  # a wrong unit stays visible
    ]
    batch = columnar_from_readings("c1", 4, readings)
    assert batch is not None
    assert batch.meters == ["M1", "M2"] and batch.obis == ["1.0.1.8.0.255", "1.0.32.7.0.255", "1.0.32.7.0.255"]
    assert batch.units == ["kWh", "V", "kV"] and batch.m == [0, 1, 0, 0] and batch.o == [0, 0, 1, 2]
    raw = encode(batch)
    assert b'"t":[1790814600,1790814600.00025,1790814600,1790814600]' in raw  # whole seconds as integers
    decoded = msgspec.json.decode(raw, type=ColumnarReadingBatch)
    assert decoded.v == 2 and list(iter_readings(decoded)) == readings
    v1 = ReadingBatch(source="c1", seq=4, readings=readings)
    assert list(iter_readings(v1)) == readings


def test_columnar_batch_quality_column_is_optional() -> None:
    at = datetime(2026, 10, 1, tzinfo=UTC)
    batch = columnar_from_readings("c1", 1, [Reading(meter="M1", obis="1.0.1.8.0.255", ts=at, value=1, unit="kWh")])
    assert batch is not None and batch.q == []
    assert [r.quality for r in iter_readings(batch)] == [0]


def test_naive_timestamps_have_no_columnar_form() -> None:
    naive = Reading(meter="M1", obis="1.0.1.8.0.255", ts=datetime(2026, 10, 1), value=1, unit="kWh")
    assert columnar_from_readings("c1", 1, [naive]) is None
