"""Turn DLMS attribute values into catalogue readings (pure: bytes and numbers in, values out, no I/O).

- Register value x scaler_unit -> value in the catalogue unit (Wh -> kWh, varh -> kvarh, W -> kW, ...).
- COSEM date-time (12-byte octet string) -> aware UTC datetime, with an unspecified deviation taken as the
  meter's configured time zone (dlms-cosem reads deviation 0 as "naive", so this module decodes dates itself).
- Profile Generic buffer + capture objects -> Readings.
- Clock drift from the meter time and the collector's send/receive instants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dlms_cosem import utils

from amr.errors import ProtocolError
from amr.messages import Reading
from amr.obis import BY_OBIS

CLOCK_OBIS = "0.0.1.0.0.255"
STATUS_OBIS = "0.0.96.10.1.255"
CLASS_DATA = 1
CLASS_REGISTER = 3
CLASS_CLOCK = 8

# DLMS unit code -> (catalogue unit, DLMS base units per catalogue unit).
UNITS: dict[int, tuple[str, int]] = {
    7: ("s", 1),
    27: ("kW", 1000),  # W
    28: ("kVA", 1000),  # VA
    29: ("kvar", 1000),  # var
    30: ("kWh", 1000),  # Wh
    31: ("kVAh", 1000),  # VAh
    32: ("kvarh", 1000),  # varh
    33: ("A", 1),
    35: ("V", 1),
    44: ("Hz", 1),
    255: ("-", 1),  # no unit (power factor, counts)
}


@dataclass(frozen=True, kw_only=True)
class ScalerUnit:
    scaler: int
    unit_code: int


def parse_data(raw: bytes) -> Any:
    """A-XDR Data -> Python (int, bytes, list for arrays and structures)."""
    try:
        return utils.parse_as_dlms_data(raw)
    except Exception as exc:  # the A-XDR decoder raises IndexError/KeyError/ValueError on bad input
        raise ProtocolError(f"undecodable A-XDR data {bytes(raw[:32]).hex()}: {exc}") from exc


def parse_scaler_unit(raw: bytes) -> ScalerUnit:
    value = parse_data(raw)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise ProtocolError(f"scaler_unit is not a structure of two integers: {value!r}")
    return ScalerUnit(scaler=value[0], unit_code=value[1])


def scaled_value(obis: str, raw_value: int | float, scaler_unit: ScalerUnit) -> tuple[float, str]:
    """A register's value in its catalogue unit; refuses a unit the catalogue does not use for that code."""
    if scaler_unit.unit_code not in UNITS:
        raise ProtocolError(f"{obis}: DLMS unit code {scaler_unit.unit_code} is not supported")
    unit, base_per_unit = UNITS[scaler_unit.unit_code]
    channel = BY_OBIS.get(obis)
    if channel is not None and channel.unit != unit:
        raise ProtocolError(f"{obis}: meter reports unit {unit!r}, the catalogue expects {channel.unit!r}")
    # One division by an exact integer: 2236 / 10 is 223.6 where 2236 * 0.1 is 223.60000000000002.
    if scaler_unit.scaler >= 0:
        return raw_value * 10**scaler_unit.scaler / base_per_unit, unit
    return raw_value / (base_per_unit * 10**-scaler_unit.scaler), unit


def decode_cosem_datetime(raw: bytes, meter_tz: timezone) -> datetime:
    """12-byte COSEM date-time -> aware UTC. Deviation is minutes from local time to UTC (-420 = UTC+7)."""
    if len(raw) != 12:
        raise ProtocolError(f"date-time must be 12 bytes, got {len(raw)}: {bytes(raw).hex()}")
    year = int.from_bytes(raw[0:2], "big")
    month, day, _weekday, hour, minute, second, hundredths = raw[2:9]
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    if year == 0xFFFF or month > 12 or day > 31 or hour > 23 or minute > 59 or second > 59:
        raise ProtocolError(f"date-time with unspecified or invalid fields: {bytes(raw).hex()}")
    tz = meter_tz if deviation == -0x8000 else timezone(timedelta(minutes=-deviation))
    try:
        local = datetime(year, month, day, hour, minute, second, (hundredths if hundredths < 100 else 0) * 10_000, tz)
    except ValueError as exc:
        raise ProtocolError(f"invalid date-time {bytes(raw).hex()}: {exc}") from exc
    return local.astimezone(UTC)


def clock_offset_s(meter_time: datetime, sent_at: datetime, received_at: datetime) -> float:
    """How far the meter clock is ahead of the collector's [s]: the meter read its clock, on average, half-way
    through the round trip."""
    midpoint = sent_at + (received_at - sent_at) / 2
    return (meter_time - midpoint).total_seconds()


@dataclass(frozen=True, kw_only=True)
class CaptureColumn:
    class_id: int
    obis: str
    attribute: int


def parse_capture_objects(raw: bytes) -> list[CaptureColumn]:
    value = parse_data(raw)
    columns = []
    try:
        for item in value:
            class_id, logical_name, attribute, _data_index = item
            columns.append(
                CaptureColumn(class_id=int(class_id), obis=".".join(str(b) for b in logical_name), attribute=attribute)
            )
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"capture objects are not a list of 4-element structures: {value!r}") from exc
    return columns


def profile_readings(
    *,
    serial: str,
    buffer: Sequence[Sequence[Any]],
    columns: Sequence[CaptureColumn],
    scalers: Mapping[str, ScalerUnit],
    meter_tz: timezone,
    after: datetime | None = None,
) -> list[Reading]:
    """Profile Generic entries -> one Reading per register column and entry (timestamps after `after` only).

    The status column becomes each reading's quality; a null cell (no value captured) gives no reading."""
    try:
        clock_index = next(i for i, c in enumerate(columns) if c.class_id == CLASS_CLOCK and c.obis == CLOCK_OBIS)
    except StopIteration:
        raise ProtocolError("load profile has no clock column") from None
    status_index = next((i for i, c in enumerate(columns) if c.obis == STATUS_OBIS), None)
    readings: list[Reading] = []
    for entry in buffer:
        if len(entry) != len(columns):
            raise ProtocolError(f"profile entry has {len(entry)} values for {len(columns)} capture objects")
        ts = decode_cosem_datetime(bytes(entry[clock_index]), meter_tz)
        if after is not None and ts <= after:
            continue
        quality = int(entry[status_index] or 0) if status_index is not None else 0
        for index, column in enumerate(columns):
            cell = entry[index]
            if column.class_id != CLASS_REGISTER or cell is None:
                continue
            if column.obis not in BY_OBIS:
                continue  # a column the catalogue does not store
            value, unit = scaled_value(column.obis, cell, scalers[column.obis])
            readings.append(Reading(meter=serial, obis=column.obis, ts=ts, value=value, unit=unit, quality=quality))
    return readings
