"""Build DCU uplink messages (amr.messages.DcuUplink) from simulated meters (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from amr.messages import DcuEvent, DcuRead, DcuUplink
from amr.obis import CHANNELS
from simulators.dlms.source import MeterSource

STATUS_OBIS = "0.0.96.10.1.255"
# What a DCU forwards per interval: the energy registers and the maximum demand, as EVN's head end bills from.
DCU_CHANNELS: tuple[str, ...] = tuple(
    c.obis for c in CHANNELS if c.kind in ("cumulative", "demand") and c.obis.startswith("1.0.")
)
# Reads per message: ~150 bytes each, so a message stays near 30 KB however many meters hang off the DCU.
MAX_READS_PER_MESSAGE = 200
VALUE_DECIMALS = 3  # registers show Wh / varh / W: 0.001 of the catalogue's kWh / kvarh / kW


def short_obis(full: str) -> str:
    """'1.0.1.8.0.255' -> '1.8.0' (C.D.E), the form DcuRead.values uses (inverse of short_obis_to_full)."""
    parts = full.split(".")
    if len(parts) != 6 or parts[0] != "1" or parts[1] != "0" or parts[5] != "255":
        raise ValueError(f"{full!r} has no short form: DCU values carry electricity codes 1.0.C.D.E.255 only")
    return ".".join(parts[2:5])


def serial_at(meter: MeterSource, at: datetime) -> str:
    # A replaced meter reports its new serial from the replacement on (SimulatedMeter.serial_at).
    serial_at = getattr(meter, "serial_at", None)
    return str(serial_at(at)) if callable(serial_at) else meter.serial


def interval_reads(
    meters: Sequence[MeterSource], at: datetime, channels: Sequence[str] = DCU_CHANNELS
) -> list[DcuRead]:
    reads = []
    for meter in meters:
        registers = meter.read_registers(at)
        values = {short_obis(obis): round(registers[obis], VALUE_DECIMALS) for obis in channels if obis in registers}
        reads.append(
            DcuRead(serial=serial_at(meter, at), ts=at, values=values, status=int(registers.get(STATUS_OBIS, 0)))
        )
    return reads


def power_events(meters: Sequence[MeterSource], down: datetime, up: datetime) -> list[DcuEvent]:
    """The DCU lost power (with the feeder its meters hang on): one power_down and one power_up per meter."""
    events = []
    for meter in meters:
        events.append(DcuEvent(serial=serial_at(meter, down), ts=down, event="power_down"))
        events.append(
            DcuEvent(
                serial=serial_at(meter, up),
                ts=up,
                event="power_up",
                detail={"outage_s": round((up - down).total_seconds(), 3)},
            )
        )
    return events


def split_reads(reads: Sequence[DcuRead], limit: int = MAX_READS_PER_MESSAGE) -> list[list[DcuRead]]:
    return [list(reads[i : i + limit]) for i in range(0, len(reads), limit)] or [[]]


def make_uplink(
    dcu_id: str, seq: int, sent: datetime, reads: Sequence[DcuRead], events: Sequence[DcuEvent] = ()
) -> DcuUplink:
    return DcuUplink(dcu=dcu_id, seq=seq, sent=sent, reads=list(reads), events=list(events))


def next_boundary(at: datetime, interval_s: int) -> datetime:
    """The first interval boundary at or after `at` [UTC]."""
    return datetime.fromtimestamp(math.ceil(at.timestamp() / interval_s) * interval_s, UTC)
