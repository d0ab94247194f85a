"""Payload decoding and validation (pure), the binary COPY encoding, and hypothesis fuzzing: no input raises
anything but PayloadError, and every decodable message is split exactly into stored rows and reasons."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amr.errors import PayloadError
from ingest.copy_binary import PG_EPOCH_S, SIGNATURE, TRAILER, encode_readings, unix_s_to_pg_us
from ingest.decode import Kind, parse_message, serials_of, topic_kind, validate_message
from ingest.limits import MAX_PAYLOAD_BYTES
from ingest.meters import MeterCache

METER_IDS = {"M1": 1, "M2": 2}
NOW_S = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
TOPICS = ["amr/v1/readings/c1", "amr/v1/events/c1", "amr/v1/dcu/d1/uplink", "amr/v1/status/c1", "amr/v1/x/y", "a"]


def _decode_or_reason(topic: str, payload: bytes) -> str | None:
    try:
        _kind, message = parse_message(topic, payload)
    except PayloadError as exc:
        assert exc.reason
        return exc.reason
    part = validate_message(message, meter_ids=METER_IDS, now_s=NOW_S)
    assert part.rows == len(part.meter_id) == len(part.channel_id) == len(part.value) == len(part.quality)
    assert part.rejected == 0 or part.reasons
    return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=2_000))
def test_fuzz_arbitrary_bytes_never_crash(topic: str, payload: bytes) -> None:
    _decode_or_reason(topic, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
reading_like = st.fixed_dictionaries(
    {
        "meter": st.sampled_from(["M1", "M2", "M3", "", "\x00"]) | st.text(max_size=10),
        "obis": st.sampled_from(["1.0.1.8.0.255", "1.0.32.7.0.255", "9.9.9.9.9.9", "1.8.0"]),
        "ts": st.sampled_from(["2026-05-31T23:00:00Z", "1999-01-01T00:00:00Z", "2030-01-01T00:00:00+07:00",
                               "2026-05-31T23:00:00", "garbage"]),
        "value": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70) | json_values,
        "unit": st.sampled_from(["kWh", "V", "Wh", ""]),
        "quality": st.integers(-5, 70_000),
    }
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=st.lists(reading_like, max_size=20), extra=json_values)
def test_fuzz_structured_reading_batches(readings: list[dict[str, object]], extra: object) -> None:
    payload = json.dumps({"v": 1, "source": "c1", "seq": 1, "readings": readings}).encode()
    _decode_or_reason("amr/v1/readings/c1", payload)
    _decode_or_reason("amr/v1/dcu/d1/uplink", json.dumps({"v": 1, "dcu": "d", "seq": 1, "sent": extra}).encode())
    try:
        kind, message = parse_message("amr/v1/readings/c1", payload)
    except PayloadError:
        return
    part = validate_message(message, meter_ids=METER_IDS, now_s=NOW_S)
    assert kind is Kind.READINGS
    assert part.rows + part.rejected == len(readings)  # every reading is either stored or dead-lettered


def test_good_and_bad_readings_split() -> None:
    payload = json.dumps(
        {"v": 1, "source": "c1", "seq": 3, "readings": [
            {"meter": "M1", "obis": "1.0.1.8.0.255", "ts": "2026-05-31T00:00:00Z", "value": 5.0, "unit": "kWh"},
            {"meter": "M2", "obis": "1.0.32.7.0.255", "ts": "2026-05-31T00:00:00+07:00", "value": 230.1, "unit": "V"},
            {"meter": "M1", "obis": "1.0.32.7.0.255", "ts": "2026-05-31T00:00:00Z", "value": 230.1, "unit": "kV"},
            {"meter": "M1", "obis": "1.0.1.8.0.255", "ts": "2026-06-03T00:00:00Z", "value": 5.0, "unit": "kWh"},
        ]}
    ).encode()  # fmt: skip
    _kind, message = parse_message("amr/v1/readings/c1", payload)
    assert serials_of(message) == {"M1", "M2"}
    part = validate_message(message, meter_ids=METER_IDS, now_s=NOW_S)
    assert part.meter_id == [1, 2] and part.channel_id == [1, 10] and part.value == [5.0, 230.1]
    assert part.ts_s[1] == datetime(2026, 5, 30, 17, tzinfo=UTC).timestamp()  # offsets become UTC
    assert part.rejected == 2
    assert part.reasons[0].startswith("readings[2]: unit 'kV'") and "in the future" in part.reasons[1]


def test_limits_and_topics() -> None:
    assert topic_kind("amr/v1/dcu/d1/uplink") is Kind.DCU and topic_kind("amr/v1/dcu/d1/other") is None
    try:
        parse_message("amr/v1/readings/c1", b" " * (MAX_PAYLOAD_BYTES + 1))
    except PayloadError as exc:
        assert "oversize" in exc.reason
    else:
        raise AssertionError("oversize payload accepted")


def _twin_encode(rows: list[tuple[int, int, int, float, int]]) -> bytes:
    """Plain-Python twin of encode_readings, straight from the PostgreSQL binary COPY format description."""
    out = bytearray(SIGNATURE)
    for ts_us, meter, channel, value, quality in rows:
        out += struct.pack(">hiqiiihidih", 5, 8, ts_us, 4, meter, 2, channel, 8, value, 2, quality)
    return bytes(out + TRAILER)


@given(
    st.lists(
        st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2**31 - 1), st.integers(0, 32_767),
                  st.floats(allow_nan=False), st.integers(0, 32_767)),
        max_size=50,
    )
)  # fmt: skip
def test_copy_encoding_matches_python_twin(rows: list[tuple[int, int, int, float, int]]) -> None:
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    data = encode_readings(
        np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=np.int32), np.array(cols[2], dtype=np.int16),
        np.array(cols[3], dtype=np.float64), np.array(cols[4], dtype=np.int16),
    )  # fmt: skip
    assert data == _twin_encode(rows)


def test_timestamp_conversion_is_exact_to_the_microsecond() -> None:
    ts = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    got = unix_s_to_pg_us(np.array([ts.timestamp()]))[0]
    exact_us = (ts - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)  # integer arithmetic
    assert got == exact_us
    assert PG_EPOCH_S == 946_684_800.0


def test_meter_cache_rate_limits_misses() -> None:
    cache = MeterCache(miss_retry_s=10.0)
    assert cache.to_fetch(["A", "B"], now_s=0.0) == ["A", "B"]
    cache.learn(["A", "B"], {"A": 7}, now_s=0.0)
    assert cache.to_fetch(["A", "B"], now_s=5.0) == []  # A known, B missed recently
    assert cache.to_fetch(["A", "B"], now_s=10.0) == ["B"]  # B asked again after the retry period
