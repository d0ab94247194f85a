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
from amr.messages import ColumnarReadingBatch, Reading, ReadingBatch, columnar_from_readings, encode, iter_readings
from amr.pgcopy import HEADER, PG_EPOCH, PG_EPOCH_UNIX_S, TRAILER, unix_s_to_pg_us
from ingest.decode import Kind, parse_message, serials_of, topic_kind, validate_message
from ingest.limits import MAX_PAYLOAD_BYTES
from ingest.meters import MeterCache
from ingest.writer import ReadingColumns, encode_readings

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
    out = bytearray(HEADER)
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
    exact_us = (ts - PG_EPOCH) // timedelta(microseconds=1)  # integer arithmetic
    assert got == exact_us


def test_meter_cache_rate_limits_misses() -> None:
    cache = MeterCache(miss_retry_s=10.0)
    assert cache.to_fetch(["A", "B"], now_s=0.0) == ["A", "B"]
    cache.learn(["A", "B"], {"A": 7}, now_s=0.0)
    assert cache.to_fetch(["A", "B"], now_s=5.0) == []  # A known, B missed recently
    assert cache.to_fetch(["A", "B"], now_s=10.0) == ["B"]  # B asked again after the retry period


# -- columnar v2 ---------------------------------------------------------------------------------------------------
V2_METERS = ["M1", "M2", "M3", "\x00"]
V2_CODES = [("1.0.1.8.0.255", "kWh"), ("1.0.32.7.0.255", "V"), ("1.0.32.7.0.255", "kV"), ("9.9.9.9.9.9", "kWh")]
big_ints = st.integers(-(2**70), 2**70)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 12),
    meters=st.lists(st.sampled_from(V2_METERS) | st.text(max_size=6), max_size=4),
    codes=st.lists(st.sampled_from(V2_CODES), max_size=4),
    m=st.lists(st.integers(-2, 5) | big_ints, max_size=14),
    o=st.lists(st.integers(-2, 5) | big_ints, max_size=14),
    t=st.lists(st.floats(allow_nan=False, allow_infinity=False) | big_ints, max_size=14),
    x=st.lists(st.floats(allow_nan=False, allow_infinity=False) | big_ints | json_values, max_size=14),
    q=st.lists(st.integers(-5, 70_000) | big_ints, max_size=14),
)
def test_fuzz_columnar_batches(
    n: int, meters: list[str], codes: list[tuple[str, str]], m: list[int], o: list[int], t: list[float],
    x: list[object], q: list[int],
) -> None:  # fmt: skip
    """Columns of any length and content: a PayloadError, or every reading stored or given a reason."""
    body = {"v": 2, "source": "c1", "seq": 1, "meters": meters, "obis": [c for c, _ in codes],
            "units": [u for _, u in codes], "m": m[:n], "o": o[:n], "t": t[:n], "x": x[:n], "q": q[:n]}  # fmt: skip
    payload = json.dumps(body).encode()
    if _decode_or_reason("amr/v1/readings/c1", payload) is not None:
        return
    _kind, message = parse_message("amr/v1/readings/c1", payload)
    part = validate_message(message, meter_ids=METER_IDS, now_s=NOW_S)
    assert part.rows + part.rejected == len(body["t"])  # type: ignore[arg-type]
    assert len(part.reasons) == part.rejected
    cols = ReadingColumns.from_validated([part])
    assert len(cols) == part.rows and set(cols.meter_id.tolist()) <= {1, 2}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["M1", "M2", "M3"]), st.sampled_from(V2_CODES),
            st.integers(900_000_000_000_000, 1_800_000_000_000_000),  # [µs since the Unix epoch]
            st.floats(allow_nan=False, allow_infinity=False), st.integers(-2, 40_000) | big_ints,
        ),
        max_size=30,
    ),
    chunks=st.integers(1, 4),
)  # fmt: skip
def test_columnar_validates_exactly_like_v1(
    rows: list[tuple[str, tuple[str, str], int, float, int]], chunks: int
) -> None:
    """The same readings as v1 and as v2 messages: the same rows reach COPY, the same readings are refused."""
    readings = [
        Reading(meter=mtr, obis=code, ts=datetime.fromtimestamp(us / 1e6, UTC), value=val, unit=unit, quality=qual)
        for mtr, (code, unit), us, val, qual in rows
    ]
    size = max(1, len(readings) // chunks)
    groups = [readings[i : i + size] for i in range(0, len(readings), size)] or [[]]
    v1_parts, v2_parts = [], []
    for seq, group in enumerate(groups):
        columnar = columnar_from_readings("c1", seq, group)
        assert columnar is not None
        _k, one = parse_message("amr/v1/readings/c1", encode(ReadingBatch(source="c1", seq=seq, readings=group)))
        _k, two = parse_message("amr/v1/readings/c1", encode(columnar))
        assert isinstance(two, ColumnarReadingBatch) and list(iter_readings(two)) == group
        v1_parts.append(validate_message(one, meter_ids=METER_IDS, now_s=NOW_S))
        v2_parts.append(validate_message(two, meter_ids=METER_IDS, now_s=NOW_S))
        refused = [r.split(":")[0] for r in v1_parts[-1].reasons]
        assert [r.split(":")[0] for r in v2_parts[-1].reasons] == refused
        assert v2_parts[-1].rejected == v1_parts[-1].rejected
    a, b = ReadingColumns.from_validated(v1_parts), ReadingColumns.from_validated(v2_parts)
    assert a.copy_data() == b.copy_data()


def test_columnar_good_and_bad_readings_split() -> None:
    payload = json.dumps(
        {"v": 2, "source": "c1", "seq": 9, "meters": ["M1", "M2", "GHOST"], "obis": ["1.0.1.8.0.255", "1.0.32.7.0.255"],
         "units": ["kWh", "V"], "m": [0, 1, 2, 0, 7], "o": [0, 1, 0, 0, 0],
         "t": [1780185600, 1780185600.25, 1780185600, 1780531200, 1780185600], "x": [5, 230.1, 1, 2, 3]}
    ).encode()  # fmt: skip
    _kind, message = parse_message("amr/v1/readings/c1", payload)
    assert serials_of(message) == {"M1", "M2", "GHOST"}
    part = validate_message(message, meter_ids=METER_IDS, now_s=NOW_S)
    assert part.rows == 2 and part.rejected == 3
    assert part.reasons == [
        "readings[2]: unknown meter 'GHOST'",
        "readings[3]: timestamp 2026-06-04T00:00:00+00:00 more than 24 h in the future",
        "readings[4]: meter index 7 outside meters[0..2]",
    ]
    cols = ReadingColumns.from_validated([part])
    assert cols.meter_id.tolist() == [1, 2] and cols.channel_id.tolist() == [1, 10]
    assert cols.value.tolist() == [5.0, 230.1] and cols.quality.tolist() == [0, 0]
    assert cols.ts_us.tolist() == [int((t - PG_EPOCH_UNIX_S) * 1e6) for t in (1780185600, 1780185600.25)]


def test_columnar_whole_message_problems() -> None:
    base = {"v": 2, "source": "c1", "seq": 1, "meters": ["M1"], "obis": ["1.0.1.8.0.255"], "units": ["kWh"],
            "m": [0], "o": [0], "t": [1780185600], "x": [1.0]}  # fmt: skip
    for over, fragment in (
        ({"x": [1.0, 2.0]}, "columns differ in length"),
        ({"q": [0, 0]}, "columns differ in length"),
        ({"units": []}, "0 units for 1 OBIS codes"),
        ({"v": 7}, "unsupported format version v=7"),
        ({"t": ["2026-06-01T00:00:00Z"]}, "Expected `float`, got `str` - at `$.t[0]`"),
        ({"extra": 1}, "unknown field `extra`"),
    ):
        try:
            parse_message("amr/v1/readings/c1", json.dumps(base | over).encode())
        except PayloadError as exc:
            assert fragment in exc.reason, (over, exc.reason)
        else:
            raise AssertionError(f"{over} accepted")
    for literal in (b"NaN", b"Infinity", b"1e999"):
        try:
            parse_message("amr/v1/readings/c1", json.dumps(base).encode().replace(b"[1.0]", b"[" + literal + b"]"))
        except PayloadError:
            pass
        else:
            raise AssertionError(f"{literal!r} accepted as a value")
