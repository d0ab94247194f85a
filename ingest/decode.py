"""Payload decoding and validation: bytes from a topic -> rows to store + reasons to dead-letter. Pure functions.

Two steps, so the only I/O (the serial -> meter_id lookup) stays outside: ``parse_message`` decodes the JSON with
msgspec into the wire structs of amr.messages (a payload that is oversize, truncated, not JSON, or of the wrong
shape raises PayloadError: the whole message is dead-lettered); ``validate_message`` then checks every item
against the meter registry, the OBIS catalogue and the time window.

Before any decoder runs, ``ingest.guard.check_payload`` refuses what could break a decoder or the database
(oversize, nesting deeper than a few dozen levels, NUL and control characters). A message must name the client of
its topic (``source``, or ``dcu`` for an uplink): the broker lets each client publish only under its own client
id, so a payload speaking for another client is refused whole.

Partial batches: a message with some bad items stores the good ones and writes ONE dead letter holding the raw
payload and the reasons of the bad items (``readings[17]: unknown meter 'X'; ...``). Replaying that dead letter
after fixing the cause (adding the meter) is safe: the readings already stored are dropped as duplicates.

Reading batches come in two versions on the same topic (amr.messages): v1 (one object per reading) and the
columnar v2, which msgspec decodes straight into lists of primitives. ``_validate_columns`` checks a v2 message
with a handful of dictionary look-ups (its meters and OBIS codes) and C-level min/max over its columns; the lists
become numpy arrays once per batch (``column_rows_to_arrays``) and go to the COPY encoder with no per-reading
Python object on the way. Only a message with a bad reading is checked reading by reading (numpy masks); its bad
readings get the same reasons as in v1 (``readings[i]: ...``, i the position in the columns).

Non-finite values: msgspec's JSON decoder refuses ``NaN``/``Infinity`` literals and numbers that overflow to
infinity (``1e999``: "Number out of range"), so those fail the whole message; the per-reading finiteness check
stays as a guard for any other decoder.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from amr.broker import topics
from amr.errors import PayloadError
from amr.messages import (
    COLUMNS_FORMAT_VERSION,
    ClientStatus,
    ColumnarReadingBatch,
    DcuUplink,
    EventBatch,
    ReadingBatch,
    short_obis_to_full,
)
from amr.obis import CHANNELS
from ingest.guard import check_payload, is_clean_identifier
from ingest.limits import EARLIEST_TS, MAX_FUTURE_S, MAX_TEXT_FIELD_CHARS, STATUS_MAX_FUTURE_S

SMALLINT_MAX = 32_767
EARLIEST_TS_S = EARLIEST_TS.timestamp()
# Kinds a status message may claim: ingest workers write their own collector_status rows, never over MQTT.
COLLECTOR_KINDS = frozenset({"collector", "dcu"})
STATES = frozenset({"online", "offline"})

# OBIS code (full and without the trailing '.255') -> (channel_id, catalogue unit)
CATALOGUE: dict[str, tuple[int, str]] = {c.obis: (c.channel_id, c.unit) for c in CHANNELS} | {
    c.obis.removesuffix(".255"): (c.channel_id, c.unit) for c in CHANNELS
}


class Kind(StrEnum):
    READINGS = "readings"
    EVENTS = "events"
    DCU = "dcu"
    STATUS = "status"


Message = ReadingBatch | ColumnarReadingBatch | EventBatch | DcuUplink | ClientStatus

_DECODERS: dict[Kind, msgspec.json.Decoder[Any]] = {
    Kind.READINGS: msgspec.json.Decoder(ReadingBatch),
    Kind.EVENTS: msgspec.json.Decoder(EventBatch),
    Kind.DCU: msgspec.json.Decoder(DcuUplink),
    Kind.STATUS: msgspec.json.Decoder(ClientStatus),
}
_COLUMNS_DECODER = msgspec.json.Decoder(ColumnarReadingBatch)


def topic_kind(topic: str) -> Kind | None:
    """Which wire format a topic carries, None for a topic ingest does not know."""
    parts = topic.split("/")
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != topics.PREFIX:
        return None
    if topic.startswith(topics.READINGS + "/"):
        return Kind.READINGS
    if topic.startswith(topics.EVENTS + "/"):
        return Kind.EVENTS
    if topic.startswith(topics.STATUS + "/"):
        return Kind.STATUS
    if topic.startswith(topics.DCU + "/") and len(parts) == 5 and parts[4] == "uplink":
        return Kind.DCU
    return None


def topic_source(topic: str) -> str:
    """The client id a topic names (the dead letter's source when the payload cannot say)."""
    parts = topic.split("/")
    if len(parts) >= 4:
        return clean_text(parts[3]) or "unknown"
    return "unknown"


def clean_text(text: str, *, max_chars: int = MAX_TEXT_FIELD_CHARS) -> str:
    """PostgreSQL text cannot hold NUL; long strings from a faulty client are cut."""
    return text.replace("\x00", "\\0")[:max_chars]


def parse_message(topic: str, payload: bytes) -> tuple[Kind, Message]:
    """Decode one payload by its topic; PayloadError(reason) when it cannot be decoded at all.

    The raw bytes pass ``check_payload`` first (size, nesting depth, NUL and control characters), so no decoder
    meets a payload that could make it recurse without bound. When a decoder refuses a payload, the reason is the
    error of the decoder for the version the payload says it is (``_diagnose``), not of whichever was tried last.
    """
    kind = topic_kind(topic)
    if kind is None:
        raise PayloadError(f"unknown topic {clean_text(topic)!r}")
    check_payload(payload)
    try:
        message = _decode(kind, payload)
    except PayloadError:
        raise
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise PayloadError(_diagnose(kind, payload, exc)) from exc
    except (RecursionError, MemoryError, OverflowError, ValueError) as exc:  # past the guard: still one message
        raise PayloadError(f"invalid {kind.value} payload: {type(exc).__name__}: {clean_text(str(exc))}") from exc
    _check_identity(topic, message)
    return kind, message


def sender_of(message: Message) -> str:
    """The client a message says it comes from (a DCU names itself in ``dcu``, everyone else in ``source``)."""
    return message.dcu if isinstance(message, DcuUplink) else message.source


def _check_identity(topic: str, message: Message) -> None:
    """A client publishes only under its own name (the broker's ACL binds the topic to the MQTT client id), so a
    message naming another client than its topic is refused whole: it would otherwise write that client's
    status or claim its readings."""
    parts = topic.split("/")
    client = parts[3] if len(parts) >= 4 else ""
    sender = sender_of(message)
    if sender != client:
        field = "dcu" if isinstance(message, DcuUplink) else "source"
        raise PayloadError(f"{field} {clean_text(sender)!r} is not the topic's client {clean_text(client)!r}")


def _decode(kind: Kind, payload: bytes) -> Message:
    if kind is Kind.READINGS:  # v2 first: it is what collectors send; a v1 payload fails at its first field
        try:
            columnar = _COLUMNS_DECODER.decode(payload)
        except msgspec.DecodeError:
            pass
        else:
            if columnar.v != COLUMNS_FORMAT_VERSION:
                raise PayloadError(f"unsupported format version v={columnar.v}")
            _check_column_lengths(columnar)
            return columnar
    message: Message = _DECODERS[kind].decode(payload)
    if message.v != 1:
        raise PayloadError(f"unsupported format version v={message.v}")
    return message


def _diagnose(kind: Kind, payload: bytes, error: msgspec.DecodeError) -> str:
    """Why a payload that no decoder took is wrong: not JSON at all, not an object, a version ingest does not
    know, or the error of the decoder of its own version (the error path only: the whole payload is decoded
    into plain Python objects here)."""
    try:
        document = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        return f"invalid {kind.value} payload: malformed JSON: {clean_text(str(exc))}"
    if not isinstance(document, dict):
        return f"invalid {kind.value} payload: a JSON {type(document).__name__}, not an object"
    version = document.get("v", 1)
    if type(version) is not int:
        return f"invalid {kind.value} payload: version 'v' is {clean_text(repr(version))}, not an integer"
    if kind is Kind.READINGS and version == COLUMNS_FORMAT_VERSION:
        decoder: msgspec.json.Decoder[Any] = _COLUMNS_DECODER
    elif version == 1:
        decoder = _DECODERS[kind]
    else:
        return f"unsupported format version v={version}"
    try:
        decoder.decode(payload)
    except msgspec.DecodeError as exc:
        error = exc
    return f"invalid {kind.value} payload (v{version}): {clean_text(str(error))}"


def _check_column_lengths(message: ColumnarReadingBatch) -> None:
    n = len(message.t)
    if not (len(message.m) == len(message.o) == len(message.x) == n and len(message.q) in (0, n)):
        raise PayloadError(
            f"invalid readings payload: columns differ in length (m {len(message.m)}, o {len(message.o)},"
            f" t {n}, x {len(message.x)}, q {len(message.q)})"
        )
    if len(message.units) != len(message.obis):
        raise PayloadError(f"invalid readings payload: {len(message.units)} units for {len(message.obis)} OBIS codes")


def serials_of(message: Message) -> set[str]:
    """The meter serials a message names (to resolve before validation)."""
    if isinstance(message, ColumnarReadingBatch):
        return set(message.meters)
    if isinstance(message, ReadingBatch):
        return {r.meter for r in message.readings}
    if isinstance(message, EventBatch):
        return {e.meter for e in message.events}
    if isinstance(message, DcuUplink):
        return {r.serial for r in message.reads} | {e.serial for e in message.events}
    return {m.meter for m in message.meters}


@dataclass(frozen=True, kw_only=True)
class RowArrays:
    """Validated reading rows as numpy columns (v2 messages): equal lengths, every row storable."""

    ts_s: npt.NDArray[np.float64]  # [s since the Unix epoch, UTC]
    meter_id: npt.NDArray[np.int32]
    channel_id: npt.NDArray[np.int16]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return len(self.ts_s)


@dataclass(frozen=True, slots=True)
class ColumnRows:
    """The rows of a v2 message that passed whole: still the decoded lists, turned into arrays once per batch
    (``column_rows_to_arrays``), since a numpy call costs as much as ~100 list items on this path."""

    meter_table: list[int]  # meter_id of meters[j]
    channel_table: list[int]  # channel_id of obis[j]
    m: list[int]
    o: list[int]
    t: list[float]
    x: list[float]
    q: list[int]  # empty: quality 0 throughout

    def __len__(self) -> int:
        return len(self.t)


def column_rows_to_arrays(parts: list[ColumnRows]) -> RowArrays:
    """Many messages' ColumnRows -> one set of arrays: one conversion per column for the whole batch."""
    chain = itertools.chain.from_iterable
    counts = [len(p) for p in parts]
    n = sum(counts)
    meter_offsets = np.repeat(np.cumsum([0] + [len(p.meter_table) for p in parts[:-1]]), counts)
    channel_offsets = np.repeat(np.cumsum([0] + [len(p.channel_table) for p in parts[:-1]]), counts)
    meter_table = np.fromiter(chain(p.meter_table for p in parts), dtype=np.int32)
    channel_table = np.fromiter(chain(p.channel_table for p in parts), dtype=np.int16)
    m = np.fromiter(chain(p.m for p in parts), dtype=np.int64, count=n) + meter_offsets
    o = np.fromiter(chain(p.o for p in parts), dtype=np.int64, count=n) + channel_offsets
    quality = np.fromiter(chain(p.q or itertools.repeat(0, len(p)) for p in parts), dtype=np.int16, count=n)
    return RowArrays(
        ts_s=np.fromiter(chain(p.t for p in parts), dtype=np.float64, count=n),
        meter_id=meter_table[m],
        channel_id=channel_table[o],
        value=np.fromiter(chain(p.x for p in parts), dtype=np.float64, count=n),
        quality=quality,
    )


@dataclass(kw_only=True)
class Validated:
    """What one message contributes to a batch; `reasons` non-empty means a dead letter (raw payload kept)."""

    source: str
    ts_s: list[float] = field(default_factory=list)  # [s since the Unix epoch, UTC]
    meter_id: list[int] = field(default_factory=list)
    channel_id: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)
    events: list[tuple[datetime, int, str, str | None]] = field(default_factory=list)  # ts, meter, event, json
    status: ClientStatus | None = None
    comm_stats: list[tuple[int, Any]] = field(default_factory=list)  # (meter_id, MeterCommStats)
    columns: ColumnRows | None = None  # a v2 message without a bad reading (the lists above stay empty then)
    arrays: RowArrays | None = None  # the good rows of a v2 message with bad ones
    reasons: list[str] = field(default_factory=list)
    rejected: int = 0

    @property
    def rows(self) -> int:
        return (
            len(self.ts_s)
            + (len(self.arrays) if self.arrays is not None else 0)
            + (len(self.columns) if self.columns is not None else 0)
        )


def _ts_problem(ts: datetime, now_s: float) -> str | None:
    if ts.tzinfo is None:
        return "naive timestamp (no UTC offset)"
    t = ts.timestamp()
    if t < EARLIEST_TS_S:
        return f"timestamp {ts.isoformat()} before {EARLIEST_TS.date()}"
    if t > now_s + MAX_FUTURE_S:
        return f"timestamp {ts.isoformat()} more than {MAX_FUTURE_S // 3600} h in the future"
    return None


def _reading_problem(
    meter_ids: dict[str, int], serial: str, obis: str, unit: str | None, value: float, quality: int
) -> str:
    if serial not in meter_ids:
        return _unknown_meter(serial)
    channel = CATALOGUE.get(obis)
    if channel is None:
        return f"unknown OBIS code {clean_text(obis)!r}"
    if unit is not None and unit != channel[1]:
        return f"unit {clean_text(unit)!r} is not {channel[1]!r} for OBIS {obis}"
    if not math.isfinite(value):
        return f"value {value!r} is not finite"
    return f"quality {quality} outside 0..{SMALLINT_MAX}"


def _unknown_meter(serial: str) -> str:
    if not is_clean_identifier(serial):
        return f"meter serial {clean_text(serial)!r} empty, too long or holding control characters"
    return f"unknown meter {clean_text(serial)!r}"


def validate_message(message: Message, *, meter_ids: dict[str, int], now_s: float) -> Validated:
    """Check every item; good items become rows, bad ones reasons. Never raises on content."""
    if isinstance(message, ColumnarReadingBatch):
        return _validate_columns(message, meter_ids, now_s)
    if isinstance(message, ReadingBatch):
        return _validate_readings(message, meter_ids, now_s)
    if isinstance(message, DcuUplink):
        return _validate_dcu(message, meter_ids, now_s)
    if isinstance(message, EventBatch):
        out = Validated(source=clean_text(message.source))
        for i, e in enumerate(message.events):
            _add_event(out, f"events[{i}]", meter_ids, e.meter, e.ts, e.event, e.detail, now_s)
        return out
    return _validate_status(message, meter_ids, now_s)


def _validate_readings(message: ReadingBatch, meter_ids: dict[str, int], now_s: float) -> Validated:
    out = Validated(source=clean_text(message.source))
    ts_out, mid_out, ch_out, val_out, q_out = out.ts_s, out.meter_id, out.channel_id, out.value, out.quality
    catalogue, isfinite, latest_s = CATALOGUE, math.isfinite, now_s + MAX_FUTURE_S
    for i, r in enumerate(message.readings):
        # The hot loop: one chain of cheap checks per reading, details only for the rare bad one.
        mid = meter_ids.get(r.meter)
        ch = catalogue.get(r.obis)
        ts = r.ts
        t = ts.timestamp() if ts.tzinfo is not None else -1.0
        if (
            mid is not None
            and ch is not None
            and ch[1] == r.unit
            and EARLIEST_TS_S <= t <= latest_s
            and isfinite(r.value)
            and 0 <= r.quality <= SMALLINT_MAX
        ):
            ts_out.append(t)
            mid_out.append(mid)
            ch_out.append(ch[0])
            val_out.append(r.value)
            q_out.append(r.quality)
            continue
        why = _ts_problem(ts, now_s) or _reading_problem(meter_ids, r.meter, r.obis, r.unit, r.value, r.quality)
        out.reasons.append(f"readings[{i}]: {why}")
        out.rejected += 1
    return out


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int_column(values: list[int]) -> npt.NDArray[np.int64]:
    """A column of JSON integers; one beyond int64 (a hostile client) becomes -1, which every check refuses
    (the reason quotes the original value)."""
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return np.array([v if _INT64_MIN <= v <= _INT64_MAX else -1 for v in values], dtype=np.int64)


def _validate_columns(message: ColumnarReadingBatch, meter_ids: dict[str, int], now_s: float) -> Validated:
    """v2: per message, the meters and codes through dictionaries, then the columns' ranges (C-level min/max);
    only a message failing those takes numpy per reading to find and name its bad readings.

    Values need no finiteness check: msgspec's decoder refuses NaN, infinity and overflowing numbers."""
    out = Validated(source=clean_text(message.source))
    n = len(message.t)
    if n == 0:
        return out
    meter_ids_list = [meter_ids.get(s, -1) for s in message.meters]
    channels = [
        ch[0] if (ch := CATALOGUE.get(c)) is not None and ch[1] == u else -1
        for c, u in zip(message.obis, message.units, strict=True)
    ]
    m, o, t, q = message.m, message.o, message.t, message.q
    if (
        -1 not in meter_ids_list
        and -1 not in channels
        and min(m) >= 0
        and max(m) < len(meter_ids_list)
        and min(o) >= 0
        and max(o) < len(channels)
        and min(t) >= EARLIEST_TS_S
        and max(t) <= now_s + MAX_FUTURE_S
        and (not q or (min(q) >= 0 and max(q) <= SMALLINT_MAX))
    ):
        out.columns = ColumnRows(meter_table=meter_ids_list, channel_table=channels, m=m, o=o, t=t, x=message.x, q=q)
        return out
    _split_columns(out, message, meter_ids_list, channels, meter_ids, now_s)
    return out


def _split_columns(
    out: Validated,
    message: ColumnarReadingBatch,
    meter_ids_list: list[int],
    channels: list[int],
    meter_ids: dict[str, int],
    now_s: float,
) -> None:
    """A v2 message with some bad reading: numpy masks find them, the good rows go to `out.arrays`."""
    # Look-up tables with a trailing -1: an index outside the list maps there and is refused with the others.
    meter_table = np.array([*meter_ids_list, -1], dtype=np.int64)
    channel_table = np.array([*channels, -1], dtype=np.int64)
    mi = _int_column(message.m)
    oi = _int_column(message.o)
    mi = np.where((mi >= 0) & (mi < len(meter_ids_list)), mi, len(meter_ids_list))
    oi = np.where((oi >= 0) & (oi < len(channels)), oi, len(channels))
    mid, ch = meter_table[mi], channel_table[oi]
    ts_s = np.array(message.t, dtype=np.float64)
    value = np.array(message.x, dtype=np.float64)
    quality = _int_column(message.q) if message.q else np.zeros(len(ts_s), dtype=np.int64)
    ok = (mid >= 0) & (ch >= 0) & (ts_s >= EARLIEST_TS_S) & (ts_s <= now_s + MAX_FUTURE_S) & np.isfinite(value)
    ok &= (quality >= 0) & (quality <= SMALLINT_MAX)
    for i in np.flatnonzero(~ok).tolist():
        out.reasons.append(f"readings[{i}]: {_column_problem(message, i, meter_ids, now_s)}")
    out.rejected = len(out.reasons)
    out.arrays = RowArrays(
        ts_s=ts_s[ok], meter_id=mid[ok].astype(np.int32), channel_id=ch[ok].astype(np.int16), value=value[ok],
        quality=quality[ok].astype(np.int16),
    )  # fmt: skip


def _column_problem(message: ColumnarReadingBatch, i: int, meter_ids: dict[str, int], now_s: float) -> str:
    """Why reading i of a v2 message is refused (the rare path: plain Python, v1's wording)."""
    mi, oi, t = message.m[i], message.o[i], message.t[i]
    if not 0 <= mi < len(message.meters):
        return f"meter index {mi} outside meters[0..{len(message.meters) - 1}]"
    if not 0 <= oi < len(message.obis):
        return f"OBIS index {oi} outside obis[0..{len(message.obis) - 1}]"
    if not (EARLIEST_TS_S <= t <= now_s + MAX_FUTURE_S):
        try:
            shown = datetime.fromtimestamp(t, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            shown = f"{t!r} s"
        if t >= EARLIEST_TS_S:
            return f"timestamp {shown} more than {MAX_FUTURE_S // 3600} h in the future"
        return f"timestamp {shown} before {EARLIEST_TS.date()}"
    quality = message.q[i] if message.q else 0
    return _reading_problem(meter_ids, message.meters[mi], message.obis[oi], message.units[oi], message.x[i], quality)


def _validate_dcu(message: DcuUplink, meter_ids: dict[str, int], now_s: float) -> Validated:
    out = Validated(source=clean_text(message.dcu))
    for i, read in enumerate(message.reads):
        ts_problem = _ts_problem(read.ts, now_s)
        mid = meter_ids.get(read.serial)
        for short, value in read.values.items():
            full = short_obis_to_full(short) if short.count(".") == 2 else short
            ch = CATALOGUE.get(full)
            if (
                ts_problem is None
                and mid is not None
                and ch is not None
                and math.isfinite(value)
                and (0 <= read.status <= SMALLINT_MAX)
            ):
                out.ts_s.append(read.ts.timestamp())
                out.meter_id.append(mid)
                out.channel_id.append(ch[0])
                out.value.append(value)
                out.quality.append(read.status)
                continue
            why = ts_problem or _reading_problem(meter_ids, read.serial, full, None, value, read.status)
            out.reasons.append(f"reads[{i}].values[{clean_text(short)!r}]: {why}")
            out.rejected += 1
    for i, e in enumerate(message.events):
        _add_event(out, f"events[{i}]", meter_ids, e.serial, e.ts, e.event, e.detail, now_s)
    return out


def _add_event(
    out: Validated,
    where: str,
    meter_ids: dict[str, int],
    serial: str,
    ts: datetime,
    event: str,
    detail: dict[str, Any] | None,
    now_s: float,
) -> None:
    why = _ts_problem(ts, now_s)
    if why is None and serial not in meter_ids:
        why = _unknown_meter(serial)
    if why is None and not (0 < len(event) <= 64 and event.isprintable()):
        why = f"event name {clean_text(event)!r} empty, too long or not printable"
    detail_json = None
    if why is None and detail is not None:
        detail_json = _json_or_none(detail)
        if detail_json is None or "\\u0000" in detail_json:
            why = "event detail not storable as jsonb (NaN, infinity or NUL)"
    if why is not None:
        out.reasons.append(f"{where}: {why}")
        out.rejected += 1
        return
    out.events.append((ts, meter_ids[serial], event, detail_json))


def _json_or_none(value: Any) -> str | None:
    try:
        return json.dumps(value, allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return None


def _validate_status(message: ClientStatus, meter_ids: dict[str, int], now_s: float) -> Validated:
    out = Validated(source=clean_text(message.source))
    problems = []
    if not message.source or message.source != out.source:
        problems.append("source empty, too long or holding NUL")
    if message.kind not in COLLECTOR_KINDS:
        problems.append(f"kind {clean_text(message.kind)!r} not one of {sorted(COLLECTOR_KINDS)}")
    if message.state not in STATES:
        problems.append(f"state {clean_text(message.state)!r} not one of {sorted(STATES)}")
    if message.ts.tzinfo is None:
        problems.append("naive timestamp (no UTC offset)")
    elif message.ts.timestamp() > now_s + STATUS_MAX_FUTURE_S:
        problems.append(f"status time {message.ts.isoformat()} more than {STATUS_MAX_FUTURE_S:.0f} s after it arrived")
    elif message.ts.timestamp() < EARLIEST_TS_S:
        problems.append(f"status time {message.ts.isoformat()} before {EARLIEST_TS.date()}")
    if message.reads_per_s is not None and not math.isfinite(message.reads_per_s):
        problems.append("reads_per_s is not finite")
    if message.spool_depth is not None and not 0 <= message.spool_depth <= 2**31 - 1:
        problems.append("spool_depth outside integer range")
    if problems:
        out.reasons += problems
        out.rejected += 1
        return out
    out.status = message
    for i, m in enumerate(message.meters):
        mid = meter_ids.get(m.meter)
        bad_times = [t for t in (m.last_attempt_at, m.last_success_at, m.last_error_at) if t and t.tzinfo is None]
        if mid is None:
            out.reasons.append(f"meters[{i}]: {_unknown_meter(m.meter)}")
        elif bad_times or m.attempts < 0 or m.successes < 0:
            out.reasons.append(f"meters[{i}]: negative counter or naive timestamp")
        else:
            out.comm_stats.append((mid, m))
            continue
        out.rejected += 1
    return out
