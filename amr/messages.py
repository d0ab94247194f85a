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

3. **Client status** (``amr/v1/status/<client id>``, retained, also the MQTT last will): ``ClientStatus``.

Events in a reading batch's sibling topic (``amr/v1/events/<collector id>``) use ``EventBatch``.
Timestamps are RFC 3339 in UTC (a ``Z`` or an explicit offset; naive times are refused).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

FORMAT_VERSION = 1


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
