"""The wire formats between collectors, concentrators and ingest (JSON, decoded with msgspec).

Two message kinds reach ingest:

1. **Reading batch** (``amr/v1/readings/<collector id>``), what every collector publishes after normalizing any
   protocol: ::

       {"v": 1, "source": "collector-hn-1", "seq": 4711,
        "readings": [{"meter": "VN24HN000123", "obis": "1.0.1.8.0.255", "ts": "2026-10-01T00:30:00Z",
                      "value": 1234.567, "unit": "kWh", "quality": 0}, ...]}

   ``meter`` is the meter serial (``meters.serial``); ``obis`` a code of the channel catalogue (amr.obis);
   ``value`` is in ``unit``, which must be the catalogue's unit for that code, before the meter multiplier;
   ``quality`` carries the AMR profile status bits (amr.obis.STATUS_BITS). About 100 readings a message.

2. **Concentrator (DCU) uplink** (``amr/v1/dcu/<dcu id>/uplink``), what a data concentrator pushes: ::

       {"v": 1, "dcu": "DCU-HCM-0001", "seq": 88, "sent": "2026-10-01T00:31:05Z",
        "reads": [{"serial": "VN24HCM00042", "ts": "2026-10-01T00:30:00Z", "status": 0,
                   "values": {"1.8.0": 1234.567, "1.8.1": 700.1, "1.8.2": 300.2, "1.8.3": 234.267}}],
        "events": [{"serial": "VN24HCM00042", "ts": "2026-10-01T00:12:00Z", "event": "power_down"}]}

   ``values`` keys are short OBIS codes (C.D.E of 1.0.C.D.E.255) in the catalogue's unit (kWh for energy).
   A DCU may repeat a message after a reconnect (same ``seq``) and replays its buffer oldest first.

   **Columnar variant, v2** (same topic, same meaning, what collectors publish since v2): the batch's distinct
   meters and OBIS codes once, then one column per field with one entry per reading: ::

       {"v": 2, "source": "collector-hn-1", "seq": 4712,
        "meters": ["VN24HN000123", "VN24HN000124"], "obis": ["1.0.1.8.0.255", "1.0.32.7.0.255"],
        "units": ["kWh", "V"],
        "m": [0, 1, 0], "o": [0, 0, 1], "t": [1759278600, 1759278600, 1759278600.25],
        "x": [1234.567, 88.1, 229.8], "q": [0, 0, 128]}

   ``units[j]`` is the unit of ``obis[j]``; reading ``i`` is meter ``meters[m[i]]``, code ``obis[o[i]]``, time
   ``t[i]`` [s since the Unix epoch, UTC; an int or a float to the microsecond], value ``x[i]`` in
   ``units[o[i]]`` and quality ``q[i]``. ``q`` may be empty, meaning quality 0 for every reading; otherwise
   ``m``, ``o``, ``t``, ``x`` (and ``q``) have equal lengths. Ingest decodes the columns straight into arrays
   (no per-reading objects), which is what makes it several times cheaper than v1 per reading; v1 stays
   accepted. ``iter_readings`` turns either version into ``Reading`` objects (tests, tools).

3. **Client status** (``amr/v1/status/<client id>``, retained, also the MQTT last will): ``ClientStatus``.

Events in a reading batch's sibling topic (``amr/v1/events/<collector id>``) use ``EventBatch``.
Timestamps are RFC 3339 in UTC (a ``Z`` or an explicit offset; naive times are refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

FORMAT_VERSION = 1

# The largest payload of any message ingest accepts (ingest.guard refuses larger ones before decoding). A collector
# batch carries about 100 readings (~3 KB in v2, ~12 KB in v1); 256 KiB leaves room for ~2,000 readings or a large
# DCU uplink and bounds an ingest worker's memory at Receive Maximum x this (256 MiB) in the worst case. The broker's
# maximum packet size is set from it (amr.broker.mosquitto), so publishers, which read that limit from the CONNACK,
# split their batches below what ingest accepts instead of sending what it would dead-letter.
MAX_PAYLOAD_BYTES = 256 * 1024


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    meter: str
    obis: str
    ts: datetime
    value: float
    unit: str
    quality: int = 0


class ReadingBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str
    seq: int
    readings: list[Reading]
    v: int = FORMAT_VERSION


COLUMNS_FORMAT_VERSION = 2


class ColumnarReadingBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Reading batch v2 (see the module docstring): one column per field, meters and OBIS codes listed once."""

    source: str
    seq: int
    meters: list[str]
    obis: list[str]
    units: list[str]
    m: list[int]
    o: list[int]
    t: list[float]  # [s since the Unix epoch, UTC]
    x: list[float]
    q: list[int] = []
    v: int = COLUMNS_FORMAT_VERSION


def columnar_from_readings(source: str, seq: int, readings: list[Reading]) -> ColumnarReadingBatch | None:
    """The v2 form of `readings`; None when one has a naive timestamp (v2 cannot say 'naive': send those as v1,
    which ingest dead-letters with its reason). A reading's unit is its code's unit in v2: a reading whose unit
    differs from the first unit seen for its code gets a second entry for the same code in ``obis``."""
    meter_index: dict[str, int] = {}
    code_index: dict[tuple[str, str], int] = {}
    m: list[int] = []
    o: list[int] = []
    t: list[float] = []
    x: list[float] = []
    q: list[int] = []
    for r in readings:
        ts = r.ts
        if ts.tzinfo is None:
            return None
        stamp = ts.timestamp()
        m.append(meter_index.setdefault(r.meter, len(meter_index)))
        o.append(code_index.setdefault((r.obis, r.unit), len(code_index)))
        t.append(int(stamp) if stamp.is_integer() else stamp)  # '1759278600' rather than '1759278600.0'
        x.append(r.value)
        q.append(r.quality)
    return ColumnarReadingBatch(
        source=source, seq=seq, meters=list(meter_index), obis=[c for c, _ in code_index],
        units=[u for _, u in code_index], m=m, o=o, t=t, x=x, q=q if any(q) else [],
    )  # fmt: skip


def iter_readings(batch: ReadingBatch | ColumnarReadingBatch) -> Iterator[Reading]:
    """The readings of either version as v1 ``Reading`` objects (tests and tools; ingest reads the columns)."""
    if isinstance(batch, ReadingBatch):
        yield from batch.readings
        return
    q = batch.q or [0] * len(batch.t)
    for mi, oi, ts, value, quality in zip(batch.m, batch.o, batch.t, batch.x, q, strict=True):
        yield Reading(meter=batch.meters[mi], obis=batch.obis[oi], ts=datetime.fromtimestamp(ts, UTC), value=value,
                      unit=batch.units[oi], quality=quality)  # fmt: skip


class MeterEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    meter: str
    ts: datetime
    event: str
    detail: dict[str, Any] | None = None


class EventBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str
    seq: int
    events: list[MeterEvent]
    v: int = FORMAT_VERSION


class DcuRead(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    serial: str
    ts: datetime
    values: dict[str, float]
    status: int = 0


class DcuEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    serial: str
    ts: datetime
    event: str
    detail: dict[str, Any] | None = None


class DcuUplink(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dcu: str
    seq: int
    sent: datetime
    reads: list[DcuRead]
    events: list[DcuEvent] = []
    v: int = FORMAT_VERSION


class MeterCommStats(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    meter: str
    attempts: int
    successes: int
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


class ClientStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Heartbeat and last will on ``amr/v1/status/<client id>`` (retained). Ingest stores it in
    ``collector_status`` and the per-meter counters in ``meter_comm_stats``."""

    source: str
    kind: str  # 'collector' | 'ingest' | 'dcu'
    state: str  # 'online' | 'offline'
    ts: datetime
    spool_depth: int | None = None
    reads_per_s: float | None = None
    meters: list[MeterCommStats] = []
    v: int = FORMAT_VERSION


def short_obis_to_full(short: str) -> str:
    """'1.8.0' -> '1.0.1.8.0.255' (electricity, channel 0), the form DCUs send."""
    return f"1.0.{short}.255"


encode = msgspec.json.Encoder().encode
