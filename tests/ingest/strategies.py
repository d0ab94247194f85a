"""Hypothesis strategies for ingest traffic: valid messages with a known outcome, and hostile-but-plausible ones,
each labelled with the fault it carries and the words its dead letter's reason must contain (issue 11, item 7).

Every message is built as a JSON document, then encoded by ``dump`` (which can also write what no JSON library
writes: duplicate keys, ``NaN`` literals, numbers out of range), then possibly damaged at the byte level (NUL and
control bytes, lone surrogates, invalid UTF-8, truncation, padding). What a message must leave behind is computed
alongside: the reading rows and events it stores, the status it sets, and for a hostile one the fault class.

Readings and events of one generated sequence never collide: every reading, read and event takes its own
timestamp slot (``Slots``), so the readings table must end up holding exactly the union of the expected rows.

Outcome rules the expectations follow (the ones ingest is being hardened to; adjust in one place):
- a message broken as a whole (nesting, NUL/control characters, number out of range, wrong type, truncated,
  oversize, version, source not its topic's client...) stores nothing and writes one dead letter;
- a message with some bad items (unknown meter, unit, time window, quality, index) stores its good items and
  writes one dead letter naming the bad ones;
- one dead letter per distinct (topic, payload), however often it is sent;
- duplicate keys: the last one wins, like every JSON decoder here (``DUPLICATE_KEYS_REFUSED`` flips that).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from hypothesis import strategies as st

from amr.broker.topics import dcu_uplink_topic, events_topic, readings_topic, status_topic
from amr.obis import CHANNELS, Channel
from amr.timebase import LOCAL_TZ
from ingest.limits import MAX_PAYLOAD_BYTES
from tests.ingest.helpers import METERS, serial


class Fault(StrEnum):
    # The whole message is refused.
    NESTING = "deep nesting"
    NUL = "NUL character"
    CONTROL = "control character escape"
    CONTROL_RAW = "raw control byte in a string"
    SURROGATE = "lone UTF-16 surrogate escape"
    INVALID_UTF8 = "invalid UTF-8"
    NUMBER_RANGE = "number out of range"
    NON_FINITE = "NaN/Infinity literal"
    WRONG_TYPE = "wrong type"
    MISSING_FIELD = "missing required field"
    UNKNOWN_FIELD = "unknown field"
    NOT_OBJECT = "JSON but not an object"
    NOT_JSON = "not JSON"
    TRUNCATED = "truncated JSON"
    DUPLICATE_KEYS = "duplicate keys"  # hostile only when DUPLICATE_KEYS_REFUSED
    EMPTY = "empty payload"
    OVERSIZE = "oversize payload"
    VERSION = "unsupported version"
    COLUMN_LENGTHS = "v2 columns of unequal lengths"
    UNITS_COUNT = "v2 units and obis of unequal lengths"
    TOPIC_MISMATCH = "payload names another client than its topic"
    STATUS_TIME = "status time outside the window"
    STATUS_KIND = "status kind"
    STATUS_STATE = "status state"
    STATUS_RANGE = "status spool_depth outside integer range"
    DB_RANGE = "integer beyond its database column"
    # Some items are refused, the rest of the message is stored.
    UNKNOWN_METER = "unknown meter"
    ODD_SERIAL = "serial with unicode or control characters"
    UNKNOWN_OBIS = "unknown OBIS code"
    WRONG_UNIT = "unit not the catalogue's"
    FUTURE_TS = "timestamp in the future"
    PAST_TS = "timestamp before 2000"
    NAIVE_TS = "naive timestamp"
    QUALITY_RANGE = "quality outside smallint"
    INDEX_RANGE = "v2 index out of range"
    EVENT_NAME = "bad event name"


# THE table: words the dead letter's reason must contain, any one of them, case-sensitive. Where the hardened
# ingest's wording was not known when this was written, the words are guesses at how it will phrase the fault
# (and today's wording where today's is already right); widen or narrow them here, nowhere else.
REASON_KEYWORDS: dict[Fault, tuple[str, ...]] = {
    Fault.NESTING: ("nested", "nesting", "depth"),
    Fault.NUL: ("NUL",),
    Fault.CONTROL: ("control",),
    Fault.CONTROL_RAW: ("control", "malformed"),  # a raw control byte is not JSON (msgspec: "malformed")
    Fault.SURROGATE: ("surrogate",),
    Fault.INVALID_UTF8: ("UTF-8",),
    Fault.NUMBER_RANGE: ("out of range",),
    Fault.NON_FINITE: ("malformed", "NaN", "finite"),
    Fault.WRONG_TYPE: ("Expected", "version"),  # msgspec: "Expected `int`, got `str` - at `$.seq`"
    Fault.MISSING_FIELD: ("missing required field",),
    Fault.UNKNOWN_FIELD: ("unknown field",),
    Fault.NOT_OBJECT: ("object",),
    Fault.NOT_JSON: ("malformed", "UTF-8", "NUL"),
    Fault.TRUNCATED: ("truncated", "invalid number"),  # cut inside a number: msgspec says "invalid number"
    Fault.DUPLICATE_KEYS: ("duplicate",),
    Fault.EMPTY: ("empty",),
    Fault.OVERSIZE: ("oversize",),
    Fault.VERSION: ("version",),
    Fault.COLUMN_LENGTHS: ("differ in length",),
    Fault.UNITS_COUNT: ("units for",),
    Fault.TOPIC_MISMATCH: ("topic",),
    Fault.STATUS_TIME: ("status time", "future", "before 2000"),
    Fault.STATUS_KIND: ("kind",),
    Fault.STATUS_STATE: ("state",),
    Fault.STATUS_RANGE: ("spool_depth",),
    Fault.DB_RANGE: ("out of range",),
    Fault.UNKNOWN_METER: ("unknown meter",),
    Fault.ODD_SERIAL: ("unknown meter", "meter serial"),
    Fault.UNKNOWN_OBIS: ("unknown OBIS",),
    Fault.WRONG_UNIT: ("unit",),
    Fault.FUTURE_TS: ("in the future",),
    Fault.PAST_TS: ("before 2000",),
    Fault.NAIVE_TS: ("naive",),
    Fault.QUALITY_RANGE: ("quality",),
    Fault.INDEX_RANGE: ("outside",),
    Fault.EVENT_NAME: ("event name",),
}

# Whether a payload with a key twice is refused (with a reason holding "duplicate"). False: accepted, the last
# occurrence wins, which is what msgspec (and Python's json) do and what the expectations then follow.
DUPLICATE_KEYS_REFUSED = False

# A v2 message's reason must be the v2 decoder's error, never the v1 decoder's ("unknown field `meters`", the
# issue's finding), and a v1 message's never the v2 decoder's.
FORBIDDEN_IN_V2_REASON = ("unknown field `meters`", "unknown field 'meters'")
FORBIDDEN_IN_V1_REASON = ("unknown field `readings`", "unknown field 'readings'")

# Nesting the hostile payloads use (the issue measured 2,000+ levels killing the worker), and the deepest an
# event's free-form detail goes in a VALID message: a real detail is flat; a few levels must still pass.
HOSTILE_DEPTHS = (2_000, 5_000)
VALID_DETAIL_DEPTH_MAX = 6

# Every generated reading, DCU read and event gets its own 15-minute slot from here: no two collide on the
# readings' or events' unique key, so the expected rows are a plain union. Far in the past of any test run.
BASE_TS = datetime(2026, 3, 1, tzinfo=UTC)
SLOT_S = 900
# A valid status is a heartbeat from this window (after 2000, before now).
STATUS_BASE_TS = datetime(2026, 6, 1, tzinfo=UTC)

COLLECTORS = ("fz-col-a", "fz-col-b", "fz-col-c")
DCUS = ("FZ-DCU-1", "FZ-DCU-2")
CANARY_CLIENT = "fz-canary"

# Catalogue codes a v1/v2 reading may carry, and the electricity ones a DCU names by their short C.D.E form.
READING_CHANNELS: tuple[Channel, ...] = CHANNELS
DCU_CHANNELS: tuple[Channel, ...] = tuple(c for c in CHANNELS if c.obis.startswith("1.0.") and c.obis.endswith(".255"))

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TS_TEXT = ("2099-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
PAST_TS_TEXT = ("1999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z")
FUTURE_T_S = (4_102_444_800, 1e11, 2.0**70)  # v2: 2100, year ~5138, far beyond
PAST_T_S = (0, -1, 946_684_799.5, -1e15)
BAD_QUALITIES = (-1, 32_768, 2**31, 2**70, -(2**70))
GHOST_SERIALS = ("FZ-GHOST-1", "VN24HN999999", "ING-TEST-999999", "ing-test-000001", "ING-TEST-1")
ODD_SERIALS = (
    "\u202eING-TEST-000001",  # right-to-left override in front
    "ING-TEST-00\u200b0001",  # zero-width space inside
    "ING-TEST-000001\U0001f680",  # emoji
    "ＩＮＧ-TEST-000001",  # fullwidth letters: equal only after NFKC, which nobody applies
    "ING-TEST-000001\n",  # a short escape the pre-parse check lets through (free text may hold it)
    "ING-TEST-\t000001",
    "ING-TEST-000001\u0301",  # combining accent
)
BAD_EVENT_NAMES = ("", "x" * 65, "power\tdown", "power\u200bdown", "\u202epower_down")
VALID_EVENT_NAMES = ("power_down", "power_up", "cover_open", "⚡ surge", "mất điện", "reverse_energy")


def ts_us(dt: datetime) -> int:
    """[µs since the Unix epoch], exact."""
    return (dt - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Row:
    """One readings row as stored: serial, channel, time [µs since the Unix epoch], value, quality."""

    serial: str
    channel_id: int
    ts_us: int
    value: float
    quality: int


@dataclass(frozen=True, slots=True)
class EventRow:
    serial: str
    event: str
    ts_us: int


@dataclass(frozen=True, slots=True)
class StatusRow:
    source: str
    ts_us: int


class Format(StrEnum):
    V1 = "readings v1"
    V2 = "readings v2"
    EVENTS = "events"
    DCU = "dcu uplink"
    STATUS = "status"


@dataclass(frozen=True, kw_only=True)
class FuzzMessage:
    """One message to publish and what it must leave behind."""

    fmt: Format
    client: str  # the publisher's MQTT client id, the name its topic carries
    topic: str
    payload: bytes
    fault: Fault | None = None  # None: valid, no dead letter
    where: str = ""  # what is wrong and where, for failure messages
    rows: tuple[Row, ...] = ()
    events: tuple[EventRow, ...] = ()
    status: StatusRow | None = None

    @property
    def account(self) -> str:
        """The broker account allowed to publish on the topic."""
        return "dcu" if self.topic.startswith("amr/v1/dcu/") or self.client in DCUS else "collector"

    @property
    def keywords(self) -> tuple[str, ...]:
        return REASON_KEYWORDS[self.fault] if self.fault is not None else ()

    @property
    def forbidden(self) -> tuple[str, ...]:
        """Words the reason must not contain: the other reading version's decoder error."""
        if self.fault is None or self.fault in (Fault.VERSION, Fault.UNKNOWN_FIELD, Fault.MISSING_FIELD):
            return ()
        if self.fmt is Format.V2:
            return FORBIDDEN_IN_V2_REASON
        if self.fmt is Format.V1:
            return FORBIDDEN_IN_V1_REASON
        return ()

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # hypothesis prints failing examples with it
        printer.text(repr(self))

    def __repr__(self) -> str:  # short, and says what was meant
        what = f"{self.fault.value}: {self.where}" if self.fault else f"valid ({self.where or len(self.rows)} rows)"
        head = self.payload[:70] + (b"..." if len(self.payload) > 70 else b"")
        return f"<{self.fmt.value} on {self.topic} [{what}] {len(self.payload)} B {head!r}>"


@dataclass(frozen=True)
class FuzzSequence:
    messages: tuple[FuzzMessage, ...]

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return "FuzzSequence(\n  " + ",\n  ".join(map(repr, self.messages)) + ")"


class Slots:
    """Hands out distinct 15-minute timestamps (see BASE_TS)."""

    def __init__(self, first: int = 0) -> None:
        self.next = first

    def take(self) -> datetime:
        slot = self.next
        self.next += 1
        return BASE_TS + timedelta(seconds=SLOT_S * slot)


# -- JSON text, including what no JSON library writes ------------------------------------------------------------
class Raw(str):
    """Written verbatim into the JSON text (NaN literals, numbers out of range, nested garbage)."""


@dataclass(frozen=True)
class Pairs:
    """A JSON object written pair by pair, so a key may appear twice."""

    items: tuple[tuple[str, Any], ...]


def dump(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text of `value` (dicts, lists, str, int, float, bool, None, Raw, Pairs)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs | dict):
        pairs = value.items if isinstance(value, Pairs) else tuple(value.items())
        inner = ",".join(f"{json.dumps(k, ensure_ascii=ascii_only)}:{dump(v, ascii_only=ascii_only)}" for k, v in pairs)
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v, ascii_only=ascii_only) for v in value) + "]"
    if isinstance(value, float):
        return json.dumps(value, allow_nan=False)
    return json.dumps(value, ensure_ascii=ascii_only)


MARK = "\ue000"  # private-use character: stands in a string for the bytes spliced in after encoding


def mark_bytes(ascii_only: bool) -> bytes:
    return b"\\ue000" if ascii_only else MARK.encode()


# -- valid documents ----------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Draft:
    """A valid message as a JSON document, with what it stores."""

    fmt: Format
    client: str
    doc: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    status: StatusRow | None = None
    ascii_only: bool = True

    @property
    def topic(self) -> str:
        return topic_for(self.fmt, self.client)

    def payload(self) -> bytes:
        return dump(self.doc, ascii_only=self.ascii_only).encode()

    def message(self, *, where: str = "") -> FuzzMessage:
        return FuzzMessage(
            fmt=self.fmt, client=self.client, topic=self.topic, payload=self.payload(), where=where,
            rows=tuple(self.rows), events=tuple(self.events), status=self.status,
        )  # fmt: skip

    def refused(self, fault: Fault, where: str, payload: bytes | None = None) -> FuzzMessage:
        """This message broken as a whole: it stores nothing."""
        return FuzzMessage(
            fmt=self.fmt, client=self.client, topic=self.topic,
            payload=self.payload() if payload is None else payload, fault=fault, where=where,
        )  # fmt: skip


def topic_for(fmt: Format, client: str) -> str:
    if fmt is Format.DCU:
        return dcu_uplink_topic(client)
    if fmt is Format.EVENTS:
        return events_topic(client)
    if fmt is Format.STATUS:
        return status_topic(client)
    return readings_topic(client)


meter_serials = st.integers(1, METERS).map(serial)
# Finite doubles of every kind (subnormal, -0.0, 1e308) and integers that are exact doubles, even beyond int64.
reading_values: st.SearchStrategy[float | int] = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    (0, 1, -1, 2**53, 2**64, 2**70, 10**20, 1e308, -1e308, 5e-324)
)
qualities = st.sampled_from((0, 0, 0, 1, 128, 32_767))
seqs = st.integers(0, 2**31)


@st.composite
def _slot_time(draw: st.DrawFn, slots: Slots) -> tuple[datetime, str]:
    """A fresh slot as (instant, RFC 3339 text): UTC with Z, with a fraction of a second, or at +07:00."""
    dt = slots.take()
    style = draw(st.integers(0, 2))
    if style == 1:
        dt += timedelta(microseconds=draw(st.sampled_from((1, 250_000, 500_000, 999_999))))
    if style == 2:
        return dt, dt.astimezone(LOCAL_TZ).isoformat()
    return dt, dt.isoformat().replace("+00:00", "Z")


@st.composite
def v1_drafts(draw: st.DrawFn, slots: Slots, *, min_readings: int = 1) -> Draft:
    client = draw(st.sampled_from(COLLECTORS))
    readings: list[dict[str, Any]] = []
    rows: list[Row] = []
    for _ in range(draw(st.integers(min_readings, 8))):
        ch = draw(st.sampled_from(READING_CHANNELS))
        meter = draw(meter_serials)
        dt, text = draw(_slot_time(slots))
        value = draw(reading_values)
        quality = draw(qualities)
        reading: dict[str, Any] = {"meter": meter, "obis": ch.obis, "ts": text, "value": value, "unit": ch.unit}
        if quality or draw(st.booleans()):
            reading["quality"] = quality
        readings.append(reading)
        rows.append(Row(meter, ch.channel_id, ts_us(dt), float(value), quality))
    doc: dict[str, Any] = {"v": 1, "source": client, "seq": draw(seqs), "readings": readings}
    if draw(st.integers(0, 4)) == 0:
        del doc["v"]  # optional, 1 by default
    return Draft(fmt=Format.V1, client=client, doc=doc, rows=rows, ascii_only=draw(st.booleans()))


@st.composite
def v2_drafts(draw: st.DrawFn, slots: Slots, *, min_readings: int = 1, full_q: bool = False) -> Draft:
    client = draw(st.sampled_from(COLLECTORS))
    meters: list[str] = []
    codes: list[Channel] = []
    m: list[int] = []
    o: list[int] = []
    t: list[int | float] = []
    x: list[float | int] = []
    q: list[int] = []
    rows: list[Row] = []
    for _ in range(draw(st.integers(min_readings, 12))):
        meter = draw(meter_serials)
        ch = draw(st.sampled_from(READING_CHANNELS))
        if meter not in meters:
            meters.append(meter)
        if ch not in codes:
            codes.append(ch)
        dt = slots.take() + timedelta(seconds=draw(st.sampled_from((0, 0, 0.25, 0.5))))
        stamp = (dt - EPOCH).total_seconds()
        value = draw(reading_values)
        quality = draw(qualities)
        m.append(meters.index(meter))
        o.append(codes.index(ch))
        t.append(int(stamp) if stamp.is_integer() else stamp)
        x.append(value)
        q.append(quality)
        rows.append(Row(meter, ch.channel_id, ts_us(dt), float(value), quality))
    doc: dict[str, Any] = {
        "v": 2, "source": client, "seq": draw(seqs), "meters": meters, "obis": [c.obis for c in codes],
        "units": [c.unit for c in codes], "m": m, "o": o, "t": t, "x": x,
        "q": q if full_q or any(q) or draw(st.booleans()) else [],
    }  # fmt: skip
    return Draft(fmt=Format.V2, client=client, doc=doc, rows=rows, ascii_only=draw(st.booleans()))


def _nested_detail(depth: int, leaf: Any) -> Any:
    detail = leaf
    for level in range(depth):
        detail = {f"k{level}": detail}
    return detail


details = st.one_of(
    st.none(),
    st.builds(lambda s: {"outage_s": s}, st.floats(0, 1e7)),
    st.builds(
        lambda note, n: {"note": note, "n": n, "flag": True, "none": None, "list": [1, 2.5, "x"]},
        st.sampled_from(("câu chuyện", "line one\nline two", "tab\there", "\U0001f50c plug", 'quote " and \\')),
        st.integers(-(2**40), 2**40),
    ),
    st.builds(_nested_detail, st.integers(1, VALID_DETAIL_DEPTH_MAX), st.just({"outage_s": 480.0})),
)


@st.composite
def _events(
    draw: st.DrawFn, slots: Slots, serial_key: str, count: st.SearchStrategy[int]
) -> tuple[list[dict[str, Any]], list[EventRow]]:
    items: list[dict[str, Any]] = []
    rows: list[EventRow] = []
    for _ in range(draw(count)):
        meter = draw(meter_serials)
        dt, text = draw(_slot_time(slots))
        name = draw(st.sampled_from(VALID_EVENT_NAMES))
        item: dict[str, Any] = {serial_key: meter, "ts": text, "event": name}
        detail = draw(details)
        if detail is not None or draw(st.booleans()):
            item["detail"] = detail
        items.append(item)
        rows.append(EventRow(meter, name, ts_us(dt)))
    return items, rows


@st.composite
def event_drafts(draw: st.DrawFn, slots: Slots, *, min_events: int = 1) -> Draft:
    client = draw(st.sampled_from(COLLECTORS))
    items, rows = draw(_events(slots, "meter", st.integers(min_events, 4)))
    doc = {"v": 1, "source": client, "seq": draw(seqs), "events": items}
    return Draft(fmt=Format.EVENTS, client=client, doc=doc, events=rows, ascii_only=draw(st.booleans()))


@st.composite
def _dcu_read(draw: st.DrawFn, slots: Slots) -> tuple[dict[str, Any], list[Row]]:
    meter = draw(meter_serials)
    dt, text = draw(_slot_time(slots))
    status = draw(qualities)
    channels = draw(st.lists(st.sampled_from(DCU_CHANNELS), min_size=1, max_size=len(DCU_CHANNELS), unique=True))
    values: dict[str, Any] = {}
    rows: list[Row] = []
    for ch in channels:
        key = ch.obis[4:-4] if draw(st.integers(0, 3)) else ch.obis  # short C.D.E as DCUs send, or the full code
        value = draw(reading_values)
        values[key] = value
        rows.append(Row(meter, ch.channel_id, ts_us(dt), float(value), status))
    read: dict[str, Any] = {"serial": meter, "ts": text, "values": values}
    if status or draw(st.booleans()):
        read["status"] = status
    return read, rows


@st.composite
def dcu_drafts(draw: st.DrawFn, slots: Slots, *, min_reads: int = 1, min_events: int = 0) -> Draft:
    client = draw(st.sampled_from(DCUS))
    reads: list[dict[str, Any]] = []
    rows: list[Row] = []
    for _ in range(draw(st.integers(min_reads, 4))):
        read, read_rows = draw(_dcu_read(slots))
        reads.append(read)
        rows += read_rows
    items, events = draw(_events(slots, "serial", st.integers(min_events, 2)))
    sent = (BASE_TS + timedelta(seconds=draw(st.integers(0, 10**7)))).isoformat().replace("+00:00", "Z")
    doc: dict[str, Any] = {"v": 1, "dcu": client, "seq": draw(seqs), "sent": sent, "reads": reads}
    with_empty_events = draw(st.booleans())  # "events": [] is optional
    if items or with_empty_events:
        doc["events"] = items
    return Draft(fmt=Format.DCU, client=client, doc=doc, rows=rows, events=events, ascii_only=draw(st.booleans()))


@st.composite
def status_drafts(draw: st.DrawFn, slots: Slots, *, with_meters: bool = False) -> Draft:
    del slots  # a status stores no reading
    client = draw(st.sampled_from(COLLECTORS + DCUS))
    dt = STATUS_BASE_TS + timedelta(seconds=draw(st.integers(0, 10**6)), microseconds=draw(st.integers(0, 999_999)))
    doc: dict[str, Any] = {
        "v": 1, "source": client, "kind": "dcu" if client in DCUS else "collector",
        "state": draw(st.sampled_from(("online", "offline"))), "ts": dt.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    if draw(st.booleans()):
        doc["spool_depth"] = draw(st.integers(0, 2**31 - 1) | st.none())
    if draw(st.booleans()):
        doc["reads_per_s"] = draw(st.floats(0, 1e6) | st.none())
    if with_meters or draw(st.booleans()):
        attempts = draw(st.integers(0, 10_000))
        doc["meters"] = [
            {"meter": draw(meter_serials), "attempts": attempts, "successes": draw(st.integers(0, attempts)),
             "last_error": draw(st.sampled_from((None, "timeout", "CRC error ⚠"))),
             "last_error_at": doc["ts"]}
        ]  # fmt: skip
    return Draft(fmt=Format.STATUS, client=client, doc=doc, status=StatusRow(client, ts_us(dt)))


DRAFTS: dict[Format, Callable[[Slots], st.SearchStrategy[Draft]]] = {
    Format.V1: v1_drafts,
    Format.V2: v2_drafts,
    Format.EVENTS: event_drafts,
    Format.DCU: dcu_drafts,
    Format.STATUS: status_drafts,
}


def any_draft(slots: Slots, formats: Sequence[Format] = tuple(Format)) -> st.SearchStrategy[Draft]:
    return st.sampled_from(tuple(formats)).flatmap(lambda fmt: DRAFTS[fmt](slots))


@st.composite
def valid_messages(draw: st.DrawFn, slots: Slots) -> FuzzMessage:
    """A valid message of any kind with the rows, events or status it stores; now and then padded with
    whitespace to exactly MAX_PAYLOAD_BYTES (the limit itself is allowed), or with duplicate keys (last wins)."""
    draft = draw(any_draft(slots))
    variant = draw(st.integers(0, 19))
    if variant == 0:
        payload = draft.payload()
        padded = payload + b" " * (MAX_PAYLOAD_BYTES - len(payload))
        return replace(draft.message(where="padded to the size limit"), payload=padded)
    if variant == 1 and not DUPLICATE_KEYS_REFUSED:
        return draw(duplicate_key_messages(draft))
    return draft.message()


# -- document surgery -------------------------------------------------------------------------------------------
Path = tuple[str | int, ...]


def _get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: Path, value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _show(path: Path) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def string_sites(doc: Any, path: Path = ()) -> list[tuple[Path, bool]]:
    """Every string of a document: (path, is_key) for string values and for object keys."""
    sites: list[tuple[Path, bool]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            sites.append(((*path, key), True))
            sites += string_sites(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            sites += string_sites(value, (*path, i))
    elif isinstance(doc, str):
        sites.append((path, False))
    return sites


def _with_mark(doc: dict[str, Any], site: Path, is_key: bool, at: int) -> dict[str, Any]:
    """A copy of `doc` with MARK inserted at character `at` (clamped) of the string at `site`."""
    doc = copy.deepcopy(doc)
    if is_key:
        parent = _get(doc, site[:-1])
        key = str(site[-1])
        i = min(at, len(key))
        # Rebuild the object so the marked key keeps its position.
        items = [(k if k != key else key[:i] + MARK + key[i:], v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
        return doc
    text = _get(doc, site)
    i = min(at, len(text))
    _set(doc, site, text[:i] + MARK + text[i:])
    return doc


def _control_escapes() -> st.SearchStrategy[bytes]:
    codes = [c for c in range(1, 0x20)] + [0x7F]
    return st.sampled_from(codes).flatmap(
        lambda c: st.sampled_from((b"\\u%04x" % c, b"\\u%04X" % c))  # both hex cases
    )


STRING_POISON: dict[Fault, st.SearchStrategy[bytes]] = {
    Fault.NUL: st.sampled_from((b"\\u0000", b"\x00", b"\\u0000\\u0000")),
    Fault.CONTROL: _control_escapes(),
    Fault.CONTROL_RAW: st.integers(1, 0x1F).map(lambda c: bytes([c])),
    Fault.SURROGATE: st.sampled_from((b"\\ud800", b"\\udbff", b"\\udc00", b"\\udfff", b"\\ud800\\u0041")),
    Fault.INVALID_UTF8: st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf")),
}


@st.composite
def poisoned_strings(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    """A NUL, control character, lone surrogate or invalid UTF-8 sequence inside any string of any message
    (serials, source, obis, unit, event names, timestamps, DCU value keys, detail text, object keys)."""
    draft = draw(any_draft(slots))
    sites = string_sites(draft.doc)
    site, is_key = draw(st.sampled_from(sites))
    marked = _with_mark(draft.doc, site, is_key, draw(st.integers(0, 30)))
    text = dump(marked, ascii_only=draft.ascii_only).encode()
    poison = draw(STRING_POISON[fault])
    payload = text.replace(mark_bytes(draft.ascii_only), poison, 1)
    where = f"{poison!r} in {'key ' if is_key else ''}{_show(site)}"
    return draft.refused(fault, where, payload)


def _nested_text(depth: int, form: int) -> str:
    if form == 0:
        return '{"a":' * depth + "1" + "}" * depth
    if form == 1:
        return "[" * depth + "]" * depth
    half = depth // 2
    return '[{"a":' * half + "0" + "}]" * half


@st.composite
def deep_nesting(draw: st.DrawFn, slots: Slots) -> FuzzMessage:
    """JSON nested 2,000-5,000 levels: the whole payload, a field's value, an extra field, or an event's detail
    (on the events topic and in a DCU uplink, which a `dcu` account can send)."""
    depth = draw(st.integers(*HOSTILE_DEPTHS))
    form = draw(st.integers(0, 2))
    nested = Raw(_nested_text(depth, form))
    # The simplest draw first is the worst case: an event detail nested deep inside a valid message.
    place = draw(st.sampled_from(("event detail", "whole payload", "extra field", "field value")))
    if place == "event detail":
        draft = draw(st.sampled_from((Format.EVENTS, Format.DCU)).flatmap(_with_one_event(slots)))
        i = draw(st.integers(0, len(draft.doc["events"]) - 1))
        draft.doc["events"][i]["detail"] = Raw('{"a":' + nested + "}")  # an object, as the field's type wants
        return draft.refused(Fault.NESTING, f"{depth} levels in $.events[{i}].detail")
    draft = draw(any_draft(slots))
    if place == "whole payload":
        return draft.refused(Fault.NESTING, f"{depth} levels as the payload", nested.encode())
    if place == "field value":
        key = draw(st.sampled_from(sorted(draft.doc)))
        draft.doc[key] = nested
        return draft.refused(Fault.NESTING, f"{depth} levels in ${key}")
    draft.doc["zz"] = nested
    return draft.refused(Fault.NESTING, f"{depth} levels in an extra field $.zz")


def _with_one_event(slots: Slots) -> Callable[[Format], st.SearchStrategy[Draft]]:
    def make(fmt: Format) -> st.SearchStrategy[Draft]:
        return dcu_drafts(slots, min_events=1) if fmt is Format.DCU else event_drafts(slots)

    return make


# JSON kinds a field accepts; a wrong-type fault puts a value of another kind there.
KIND_SAMPLES: dict[str, Any] = {
    "int": 7, "float": 7.5, "str": "7", "bool": True, "null": None, "list": [7], "object": {"k": 7},
}  # fmt: skip
NUMBER = frozenset({"int", "float"})
TS = frozenset({"str"})
FIELD_KINDS: dict[Format, tuple[tuple[Path, frozenset[str]], ...]] = {
    Format.V1: (
        (("v",), frozenset({"int"})), (("source",), TS), (("seq",), frozenset({"int"})),
        (("readings",), frozenset({"list"})), (("readings", 0), frozenset({"object"})),
        (("readings", 0, "meter"), TS), (("readings", 0, "obis"), TS), (("readings", 0, "ts"), TS),
        (("readings", 0, "value"), NUMBER), (("readings", 0, "unit"), TS),
        (("readings", 0, "quality"), frozenset({"int"})),
    ),
    Format.V2: (
        (("v",), frozenset({"int"})), (("source",), TS), (("seq",), frozenset({"int"})),
        (("meters",), frozenset({"list"})), (("meters", 0), TS), (("obis",), frozenset({"list"})),
        (("obis", 0), TS), (("units",), frozenset({"list"})), (("units", 0), TS),
        (("m",), frozenset({"list"})), (("m", 0), frozenset({"int"})), (("o",), frozenset({"list"})),
        (("o", 0), frozenset({"int"})), (("t",), frozenset({"list"})), (("t", 0), NUMBER),
        (("x",), frozenset({"list"})), (("x", 0), NUMBER), (("q",), frozenset({"list"})),
        (("q", 0), frozenset({"int"})),
    ),
    Format.EVENTS: (
        (("v",), frozenset({"int"})), (("source",), TS), (("seq",), frozenset({"int"})),
        (("events",), frozenset({"list"})), (("events", 0), frozenset({"object"})),
        (("events", 0, "meter"), TS), (("events", 0, "ts"), TS), (("events", 0, "event"), TS),
        (("events", 0, "detail"), frozenset({"object", "null"})),
    ),
    Format.DCU: (
        (("v",), frozenset({"int"})), (("dcu",), TS), (("seq",), frozenset({"int"})), (("sent",), TS),
        (("reads",), frozenset({"list"})), (("reads", 0), frozenset({"object"})),
        (("reads", 0, "serial"), TS), (("reads", 0, "ts"), TS), (("reads", 0, "values"), frozenset({"object"})),
        (("reads", 0, "status"), frozenset({"int"})), (("events",), frozenset({"list"})),
    ),
    Format.STATUS: (
        (("v",), frozenset({"int"})), (("source",), TS), (("kind",), TS), (("state",), TS), (("ts",), TS),
        (("spool_depth",), frozenset({"int", "null"})), (("reads_per_s",), NUMBER | {"null"}),
        (("meters",), frozenset({"list"})), (("meters", 0), frozenset({"object"})),
        (("meters", 0, "meter"), TS), (("meters", 0, "attempts"), frozenset({"int"})),
        (("meters", 0, "last_error"), frozenset({"str", "null"})),
    ),
}  # fmt: skip
REQUIRED: dict[Format, tuple[Path, ...]] = {
    Format.V1: (("source",), ("seq",), ("readings",),
                *(("readings", 0, k) for k in ("meter", "obis", "ts", "value", "unit"))),
    Format.V2: tuple((k,) for k in ("source", "seq", "meters", "obis", "units", "m", "o", "t", "x")),
    Format.EVENTS: (("source",), ("seq",), ("events",), *((("events", 0, k)) for k in ("meter", "ts", "event"))),
    Format.DCU: (("dcu",), ("seq",), ("sent",), ("reads",), *((("reads", 0, k)) for k in ("serial", "ts", "values"))),
    Format.STATUS: (("source",), ("kind",), ("state",), ("ts",), *((("meters", 0, k)) for k in ("meter", "attempts"))),
}  # fmt: skip
OBJECTS: dict[Format, tuple[Path, ...]] = {
    Format.V1: ((), ("readings", 0)),
    Format.V2: ((),),
    Format.EVENTS: ((), ("events", 0)),
    Format.DCU: ((), ("reads", 0)),
    Format.STATUS: ((), ("meters", 0)),
}


def _exists(doc: Any, path: Path) -> bool:
    try:
        _get(doc, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _status_with_meters(slots: Slots) -> st.SearchStrategy[Draft]:
    return status_drafts(slots, with_meters=True)


def _draft_for_schema(slots: Slots) -> st.SearchStrategy[Draft]:
    """A draft whose optional lists are filled, so every schema path exists."""
    return st.sampled_from(tuple(Format)).flatmap(
        lambda fmt: {
            Format.V2: v2_drafts(slots, full_q=True), Format.STATUS: _status_with_meters(slots),
        }.get(fmt, DRAFTS[fmt](slots))
    )  # fmt: skip


@st.composite
def schema_faults(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    """A wrong JSON type, a missing required field or an unknown field, at any level of any message."""
    draft = draw(_draft_for_schema(slots))
    doc = draft.doc
    if fault is Fault.WRONG_TYPE:
        path, kinds = draw(st.sampled_from([pk for pk in FIELD_KINDS[draft.fmt] if _exists(doc, pk[0])]))
        kind = draw(st.sampled_from(sorted(set(KIND_SAMPLES) - kinds)))
        _set(doc, path, KIND_SAMPLES[kind])
        return draft.refused(fault, f"{kind} at {_show(path)}")
    if fault is Fault.MISSING_FIELD:
        path = draw(st.sampled_from([p for p in REQUIRED[draft.fmt] if _exists(doc, p)]))
        del _get(doc, path[:-1])[path[-1]]
        return draft.refused(fault, f"no {_show(path)}")
    path = draw(st.sampled_from([p for p in OBJECTS[draft.fmt] if _exists(doc, p)]))
    _get(doc, path)[draw(st.sampled_from(("zz", "Meter", "values_", "src")))] = 1
    return draft.refused(fault, f"extra key in {_show(path)}")


def _number_sites(draft: Draft) -> list[Path]:
    doc = draft.doc
    if draft.fmt is Format.V1:
        return [("readings", i, "value") for i in range(len(doc["readings"]))]
    if draft.fmt is Format.V2:
        return [(c, i) for c in ("x", "t") for i in range(len(doc[c]))]
    if draft.fmt is Format.DCU:
        return [("reads", i, "values", k) for i, r in enumerate(doc["reads"]) for k in r["values"]]
    if draft.fmt is Format.STATUS:
        return [("reads_per_s",)]
    return [("events", i, "detail") for i in range(len(doc["events"]))]


@st.composite
def number_faults(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    """A number that overflows a double (1e999, a 400-digit integer) or a NaN/Infinity literal in a float field
    (values, v2 times, reads_per_s, an event detail's number)."""
    draft = draw(any_draft(slots))
    path = draw(st.sampled_from(_number_sites(draft)))
    if fault is Fault.NUMBER_RANGE:
        # A 400-digit integer overflows a float field; in a detail (any JSON) it is a fine integer.
        huge_int = () if path[-1] == "detail" else ("1" + "0" * 400,)
        literal = draw(st.sampled_from(("1e999", "-1e999", "1e400", "-2.5e309", *huge_int)))
    else:
        literal = draw(st.sampled_from(("NaN", "Infinity", "-Infinity", "nan", "inf", "-NaN")))
    if path[-1] == "detail":
        _set(draft.doc, path, {"outage_s": Raw(literal)})
    else:
        _set(draft.doc, path, Raw(literal))
    return draft.refused(fault, f"{literal[:12]} at {_show(path)}")


@st.composite
def truncated(draw: st.DrawFn, slots: Slots) -> FuzzMessage:
    draft = draw(any_draft(slots))
    payload = draft.payload()
    cut = draw(st.integers(1, len(payload) - 1))
    return draft.refused(Fault.TRUNCATED, f"cut after {cut} of {len(payload)} bytes", payload[:cut])


@st.composite
def oversize(draw: st.DrawFn, slots: Slots) -> FuzzMessage:
    """A message of otherwise good JSON just beyond MAX_PAYLOAD_BYTES: padded, or one huge string. At most 512 bytes
    beyond: the broker's maximum packet size leaves PACKET_OVERHEAD_BYTES beside the payload limit, and a larger
    message is refused at the source (tests/amr/test_publish.py), never reaching ingest."""
    draft = draw(any_draft(slots))
    over = draw(st.integers(1, 512))
    payload = draft.payload()
    if draw(st.booleans()):
        pad = draw(st.sampled_from((b" ", b"\n", b"\t", b"\r\n")))
        padding = (pad * (MAX_PAYLOAD_BYTES + over))[: MAX_PAYLOAD_BYTES + over - len(payload)]
        payload = padding + payload if draw(st.booleans()) else payload + padding
        return draft.refused(Fault.OVERSIZE, f"padded to {len(payload)} bytes", payload)
    draft.doc["zz"] = "a" * (MAX_PAYLOAD_BYTES + over - len(payload))
    return draft.refused(Fault.OVERSIZE, f"a huge extra string, {len(draft.payload())} bytes")


@st.composite
def topic_mismatch(draw: st.DrawFn, slots: Slots) -> FuzzMessage:
    """A client speaking for another: the payload's source (or dcu) is not the name its topic carries."""
    draft = draw(any_draft(slots))
    key = "dcu" if draft.fmt is Format.DCU else "source"
    own = draft.client
    other = draw(
        st.sampled_from(
            [c for c in COLLECTORS + DCUS if c != own] + [own.upper(), own + " ", " " + own, own + "/x", ""]
        )
        | st.just(own + "\u200b")
    )
    draft.doc[key] = other
    return draft.refused(Fault.TOPIC_MISMATCH, f"${key} {other!r} on {own!r}'s topic")


@st.composite
def version_faults(draw: st.DrawFn, slots: Slots) -> FuzzMessage:
    draft = draw(any_draft(slots))
    wrong = {Format.V1: (2,), Format.V2: (1,)}.get(draft.fmt, (2,))
    v = draw(st.sampled_from((0, 3, -1, 99, 2**70, *wrong)))
    draft.doc["v"] = v
    return draft.refused(Fault.VERSION, f"v={v}")


@st.composite
def duplicate_key_messages(draw: st.DrawFn, draft: Draft) -> FuzzMessage:
    """A key twice in one object, a decoy first: with DUPLICATE_KEYS_REFUSED False the message stands for its
    last occurrences (it stores what the draft stores), else it is refused whole."""
    doc = draft.doc
    own_key = "dcu" if draft.fmt is Format.DCU else "source"
    sites: list[tuple[Path, str, Any]] = [
        ((), "v", 3), ((), own_key, draw(st.sampled_from([c for c in COLLECTORS + DCUS if c != draft.client]))),
    ]  # fmt: skip
    if "seq" in doc:
        sites.append(((), "seq", 999))
    if draft.fmt is Format.V1:
        sites.append((("readings", 0), "value", -1.0))
    if draft.fmt is Format.V2:
        sites.append(((), "x", [0.0] * len(doc["x"])))
    if draft.fmt is Format.DCU:
        first = next(iter(doc["reads"][0]["values"]))
        sites.append((("reads", 0, "values"), first, -1.0))
    path, key, decoy = draw(st.sampled_from(sites))
    parent = _get(doc, path)
    if key == "v" and "v" not in parent:
        parent["v"] = 1  # v1 may leave it out; the real one must follow the decoy
    pairs = Pairs(((key, decoy), *parent.items()))
    if path:
        _set(doc, path, pairs)
        payload = draft.payload()
    else:
        payload = dump(pairs, ascii_only=draft.ascii_only).encode()
    where = f"{key!r} twice in {_show(path)}, decoy {decoy!r} first"[:120]
    if DUPLICATE_KEYS_REFUSED:
        return draft.refused(Fault.DUPLICATE_KEYS, where, payload)
    return replace(draft.message(where=where), payload=payload)


@st.composite
def v2_column_faults(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    draft = draw(v2_drafts(slots, min_readings=2, full_q=True))
    doc = draft.doc
    if fault is Fault.UNITS_COUNT:
        if draw(st.booleans()):
            doc["units"] = doc["units"][:-1]
        else:
            doc["units"] = [*doc["units"], "kWh"]
        return draft.refused(fault, f"{len(doc['units'])} units for {len(doc['obis'])} codes")
    column = draw(st.sampled_from(("m", "o", "t", "x", "q")))
    doc[column] = doc[column][:-1] if draw(st.booleans()) else [*doc[column], doc[column][0]]
    return draft.refused(fault, f"${column} has {len(doc[column])} of {len(doc['t'])} entries")


# -- messages with some bad items ---------------------------------------------------------------------------------
PER_ITEM_FAULTS: dict[Format, tuple[Fault, ...]] = {
    Format.V1: (Fault.UNKNOWN_METER, Fault.ODD_SERIAL, Fault.UNKNOWN_OBIS, Fault.WRONG_UNIT, Fault.FUTURE_TS,
                Fault.PAST_TS, Fault.NAIVE_TS, Fault.QUALITY_RANGE),
    Format.V2: (Fault.UNKNOWN_METER, Fault.ODD_SERIAL, Fault.UNKNOWN_OBIS, Fault.WRONG_UNIT, Fault.FUTURE_TS,
                Fault.PAST_TS, Fault.QUALITY_RANGE, Fault.INDEX_RANGE),
    Format.DCU: (Fault.UNKNOWN_METER, Fault.ODD_SERIAL, Fault.UNKNOWN_OBIS, Fault.FUTURE_TS, Fault.PAST_TS,
                 Fault.QUALITY_RANGE, Fault.EVENT_NAME),
    Format.EVENTS: (Fault.UNKNOWN_METER, Fault.ODD_SERIAL, Fault.FUTURE_TS, Fault.PAST_TS, Fault.NAIVE_TS,
                    Fault.EVENT_NAME),
}  # fmt: skip


def _bad_serial(draw: st.DrawFn, fault: Fault) -> str:
    return draw(st.sampled_from(GHOST_SERIALS if fault is Fault.UNKNOWN_METER else ODD_SERIALS))


@st.composite
def partial_messages(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    """Good items with ONE bad item among them: the good ones are stored, the message gets one dead letter."""
    fmt = draw(st.sampled_from([f for f, faults in PER_ITEM_FAULTS.items() if fault in faults]))
    if fmt is Format.V1:
        return draw(_partial_v1(slots, fault))
    if fmt is Format.V2:
        return draw(_partial_v2(slots, fault))
    if fmt is Format.DCU:
        return draw(_partial_dcu(slots, fault))
    return draw(_partial_events(slots, fault))


def _with_bad_item(draft: Draft, fault: Fault, where: str) -> FuzzMessage:
    return FuzzMessage(
        fmt=draft.fmt, client=draft.client, topic=draft.topic, payload=draft.payload(), fault=fault, where=where,
        rows=tuple(draft.rows), events=tuple(draft.events), status=draft.status,
    )  # fmt: skip


@st.composite
def _partial_v1(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    draft = draw(v1_drafts(slots, min_readings=0))
    ch = draw(st.sampled_from(READING_CHANNELS))
    dt, text = draw(_slot_time(slots))
    bad: dict[str, Any] = {"meter": draw(meter_serials), "obis": ch.obis, "ts": text, "value": 1.5, "unit": ch.unit}
    if fault in (Fault.UNKNOWN_METER, Fault.ODD_SERIAL):
        bad["meter"] = _bad_serial(draw, fault)
    elif fault is Fault.UNKNOWN_OBIS:
        bad["obis"] = draw(st.sampled_from(("1.0.99.8.0.255", "1.8.0", "", "1.0.1.8.0.254")))
    elif fault is Fault.WRONG_UNIT:
        bad["unit"] = draw(st.sampled_from(("Wh", "kwh", "KWH", "", "kWh ")))
    elif fault is Fault.FUTURE_TS:
        bad["ts"] = draw(st.sampled_from(FUTURE_TS_TEXT))
    elif fault is Fault.PAST_TS:
        bad["ts"] = draw(st.sampled_from(PAST_TS_TEXT))
    elif fault is Fault.NAIVE_TS:
        bad["ts"] = dt.replace(tzinfo=None).isoformat()
    else:
        bad["quality"] = draw(st.sampled_from(BAD_QUALITIES))
    readings = draft.doc["readings"]
    i = draw(st.integers(0, len(readings)))
    readings.insert(i, bad)
    return _with_bad_item(draft, fault, f"$.readings[{i}] of {len(readings)}")


@st.composite
def _partial_v2(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    draft = draw(v2_drafts(slots, min_readings=1, full_q=fault is Fault.QUALITY_RANGE))
    doc = draft.doc
    i = draw(st.integers(0, len(doc["t"])))
    mi, oi = 0, 0
    t: float = (slots.take() - EPOCH).total_seconds()
    q = 0
    if fault in (Fault.UNKNOWN_METER, Fault.ODD_SERIAL):
        doc["meters"].append(_bad_serial(draw, fault))
        mi = len(doc["meters"]) - 1
    elif fault in (Fault.UNKNOWN_OBIS, Fault.WRONG_UNIT):
        code, unit = ("1.0.99.8.0.255", "kWh") if fault is Fault.UNKNOWN_OBIS else ("1.0.1.8.0.255", "Wh")
        doc["obis"].append(code)
        doc["units"].append(unit)
        oi = len(doc["obis"]) - 1
    elif fault is Fault.FUTURE_TS:
        t = draw(st.sampled_from(FUTURE_T_S))
    elif fault is Fault.PAST_TS:
        t = draw(st.sampled_from(PAST_T_S))
    elif fault is Fault.QUALITY_RANGE:
        q = draw(st.sampled_from(BAD_QUALITIES))
    else:
        column = draw(st.sampled_from(("m", "o")))
        size = len(doc["meters" if column == "m" else "obis"])
        bad_index = draw(st.sampled_from((size, -1, 2**70, -(2**70))))
        mi, oi = (bad_index, 0) if column == "m" else (0, bad_index)
    for column, value in (("m", mi), ("o", oi), ("t", int(t) if float(t).is_integer() else t), ("x", 2.5)):
        doc[column].insert(i, value)
    if doc["q"]:
        doc["q"].insert(i, q)
    return _with_bad_item(draft, fault, f"reading {i} of {len(doc['t'])}")


@st.composite
def _partial_dcu(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    draft = draw(dcu_drafts(slots, min_reads=0 if fault is Fault.EVENT_NAME else 1))
    doc = draft.doc
    if fault is Fault.EVENT_NAME:
        meter = draw(meter_serials)
        _, text = draw(_slot_time(slots))
        events = doc.setdefault("events", [])
        i = draw(st.integers(0, len(events)))
        events.insert(i, {"serial": meter, "ts": text, "event": draw(st.sampled_from(BAD_EVENT_NAMES))})
        return _with_bad_item(draft, fault, f"$.events[{i}]")
    if fault is Fault.UNKNOWN_OBIS:  # one unknown code among a good read's values: the others are stored
        r = draw(st.integers(0, len(doc["reads"]) - 1))
        doc["reads"][r]["values"][draw(st.sampled_from(("9.9.9", "1.8.9", "96.10.1")))] = 1.0
        return _with_bad_item(draft, fault, f"$.reads[{r}].values")
    _, text = draw(_slot_time(slots))
    bad: dict[str, Any] = {"serial": draw(meter_serials), "ts": text, "values": {"1.8.0": 1.5, "1.8.1": 0.5}}
    if fault in (Fault.UNKNOWN_METER, Fault.ODD_SERIAL):
        bad["serial"] = _bad_serial(draw, fault)
    elif fault is Fault.FUTURE_TS:
        bad["ts"] = draw(st.sampled_from(FUTURE_TS_TEXT))
    elif fault is Fault.PAST_TS:
        bad["ts"] = draw(st.sampled_from(PAST_TS_TEXT))
    else:
        bad["status"] = draw(st.sampled_from(BAD_QUALITIES))
    i = draw(st.integers(0, len(doc["reads"])))
    doc["reads"].insert(i, bad)
    return _with_bad_item(draft, fault, f"$.reads[{i}]")


@st.composite
def _partial_events(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    draft = draw(event_drafts(slots, min_events=0))
    dt, text = draw(_slot_time(slots))
    bad: dict[str, Any] = {"meter": draw(meter_serials), "ts": text, "event": "power_down"}
    if fault in (Fault.UNKNOWN_METER, Fault.ODD_SERIAL):
        bad["meter"] = _bad_serial(draw, fault)
    elif fault is Fault.FUTURE_TS:
        bad["ts"] = draw(st.sampled_from(FUTURE_TS_TEXT))
    elif fault is Fault.PAST_TS:
        bad["ts"] = draw(st.sampled_from(PAST_TS_TEXT))
    elif fault is Fault.NAIVE_TS:
        bad["ts"] = dt.replace(tzinfo=None).isoformat()
    else:
        bad["event"] = draw(st.sampled_from(BAD_EVENT_NAMES))
    events = draft.doc["events"]
    i = draw(st.integers(0, len(events)))
    events.insert(i, bad)
    return _with_bad_item(draft, fault, f"$.events[{i}]")


@st.composite
def status_faults(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    """A status a collector account may send but must not be believed: from 2100 (it would freeze its
    collector_status row) or before 2000, claiming to be an ingest worker, in a state that does not exist, with
    a spool depth or a counter beyond its integer column."""
    draft = draw(status_drafts(slots, with_meters=fault is Fault.DB_RANGE))
    doc = draft.doc
    if fault is Fault.STATUS_TIME:
        doc["ts"] = draw(st.sampled_from(("2100-01-01T00:00:00Z", "1999-12-31T00:00:00Z", "9999-12-31T23:59:59Z")))
        where = f"ts {doc['ts']}"
    elif fault is Fault.STATUS_KIND:
        doc["kind"] = draw(st.sampled_from(("ingest", "gateway", "")))
        where = f"kind {doc['kind']!r}"
    elif fault is Fault.STATUS_STATE:
        doc["state"] = draw(st.sampled_from(("zombie", "ONLINE", "")))
        where = f"state {doc['state']!r}"
    elif fault is Fault.STATUS_RANGE:
        doc["spool_depth"] = draw(st.sampled_from((-1, 2**31, 2**70)))
        where = f"spool_depth {doc['spool_depth']}"
    else:
        doc["meters"][0]["attempts"] = doc["meters"][0]["successes"] = draw(
            st.sampled_from((2**63, 2**70))
        )  # bigint columns
        where = f"$.meters[0].attempts {doc['meters'][0]['attempts']}"
    return draft.refused(fault, where)


# -- payloads that are no message at all --------------------------------------------------------------------------
@st.composite
def non_messages(draw: st.DrawFn, slots: Slots, fault: Fault) -> FuzzMessage:
    """Empty, JSON that is no object, or no JSON at all, on any topic."""
    draft = draw(any_draft(slots))
    if fault is Fault.EMPTY:
        payload = b""
    elif fault is Fault.NOT_OBJECT:
        payload = draw(st.sampled_from((b"[]", b"[1,2]", b"42", b'"text"', b"null", b"true", b"1.5", b"[{}]")))
    else:
        payload = draw(
            st.sampled_from((b"hello", b"<xml/>", b"{'v': 1}", b"{v:1}", b"\xfe\xff{}", b"{,}", b"--", b'{"v":}'))
            | st.binary(min_size=1, max_size=30).map(lambda b: b"#" + b)  # '#' starts no JSON value
        )
    return draft.refused(fault, "", payload)


# -- the dispatcher -----------------------------------------------------------------------------------------------
Builder = Callable[[Slots, Fault], st.SearchStrategy[FuzzMessage]]


def _ignore_fault(make: Callable[[Slots], st.SearchStrategy[FuzzMessage]]) -> Builder:
    return lambda slots, _fault: make(slots)


BUILDERS: dict[Fault, Builder] = {
    Fault.NESTING: _ignore_fault(deep_nesting),
    **dict.fromkeys(STRING_POISON, poisoned_strings),
    Fault.NUMBER_RANGE: number_faults,
    Fault.NON_FINITE: number_faults,
    **dict.fromkeys((Fault.WRONG_TYPE, Fault.MISSING_FIELD, Fault.UNKNOWN_FIELD), schema_faults),
    **dict.fromkeys((Fault.EMPTY, Fault.NOT_OBJECT, Fault.NOT_JSON), non_messages),
    Fault.TRUNCATED: _ignore_fault(truncated),
    Fault.OVERSIZE: _ignore_fault(oversize),
    Fault.VERSION: _ignore_fault(version_faults),
    Fault.TOPIC_MISMATCH: _ignore_fault(topic_mismatch),
    **dict.fromkeys((Fault.COLUMN_LENGTHS, Fault.UNITS_COUNT), v2_column_faults),
    **dict.fromkeys(
        (Fault.STATUS_TIME, Fault.STATUS_KIND, Fault.STATUS_STATE, Fault.STATUS_RANGE, Fault.DB_RANGE), status_faults
    ),
    **dict.fromkeys({f for faults in PER_ITEM_FAULTS.values() for f in faults}, partial_messages),
}
if DUPLICATE_KEYS_REFUSED:
    BUILDERS[Fault.DUPLICATE_KEYS] = lambda slots, _fault: any_draft(slots).flatmap(duplicate_key_messages)

HOSTILE_FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f in BUILDERS)


def hostile_messages(slots: Slots, faults: Sequence[Fault] = HOSTILE_FAULTS) -> st.SearchStrategy[FuzzMessage]:
    """One hostile message; the fault class is drawn first, so every class is about equally likely."""
    return st.sampled_from(tuple(faults)).flatmap(lambda fault: BUILDERS[fault](slots, fault))


@st.composite
def fuzz_sequences(draw: st.DrawFn, faults: Sequence[Fault] = HOSTILE_FAULTS) -> FuzzSequence:
    """Every fault class once, in a drawn order, each built its own drawn way, with 0-2 valid messages before
    each; their rows never collide (Slots). Every class in every example: a bounded number of examples must
    not leave one out by chance."""
    slots = Slots()
    messages: list[FuzzMessage] = []
    for fault in draw(st.permutations(tuple(faults))):
        messages += [draw(valid_messages(slots)) for _ in range(draw(st.integers(0, 2)))]
        messages.append(draw(BUILDERS[fault](slots, fault)))
    messages += [draw(valid_messages(slots)) for _ in range(draw(st.integers(0, 2)))]
    return FuzzSequence(tuple(messages))


def canary(value: float = 4242.5) -> FuzzMessage:
    """The last message of a run: a valid v2 reading at a time no generated message uses (a day before
    BASE_TS); once it is stored, the worker has handled everything published before it."""
    dt = BASE_TS - timedelta(days=1)
    doc = {
        "v": 2, "source": CANARY_CLIENT, "seq": 1, "meters": [serial(METERS)], "obis": ["1.0.1.8.0.255"],
        "units": ["kWh"], "m": [0], "o": [0], "t": [int((dt - EPOCH).total_seconds())], "x": [value], "q": [],
    }  # fmt: skip
    return FuzzMessage(
        fmt=Format.V2, client=CANARY_CLIENT, topic=readings_topic(CANARY_CLIENT), payload=dump(doc).encode(),
        where="canary", rows=(Row(serial(METERS), 1, ts_us(dt), value, 0),),
    )  # fmt: skip
