"""The OBIS channel catalogue (IEC 62056-61) the platform stores readings under.

Mirrors the ``channels`` table seeded by ``sql/002_reference_data.sql`` (and channels added by later migrations,
e.g. ``sql/070_total_energy_channel.sql``); a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChannelKind = Literal["cumulative", "instantaneous", "demand", "state"]


@dataclass(frozen=True, kw_only=True)
class Channel:
    channel_id: int
    obis: str
    name: str
    unit: str
    kind: ChannelKind


CHANNELS: tuple[Channel, ...] = (
    Channel(channel_id=1, obis="1.0.1.8.0.255", name="active_import_total", unit="kWh", kind="cumulative"),
    Channel(channel_id=2, obis="1.0.1.8.1.255", name="active_import_rate1_normal", unit="kWh", kind="cumulative"),
    Channel(channel_id=3, obis="1.0.1.8.2.255", name="active_import_rate2_peak", unit="kWh", kind="cumulative"),
    Channel(channel_id=4, obis="1.0.1.8.3.255", name="active_import_rate3_offpeak", unit="kWh", kind="cumulative"),
    Channel(channel_id=5, obis="1.0.2.8.0.255", name="active_export_total", unit="kWh", kind="cumulative"),
    Channel(channel_id=6, obis="1.0.3.8.0.255", name="reactive_import_total", unit="kvarh", kind="cumulative"),
    Channel(channel_id=7, obis="1.0.4.8.0.255", name="reactive_export_total", unit="kvarh", kind="cumulative"),
    Channel(channel_id=8, obis="1.0.1.6.0.255", name="max_demand_import", unit="kW", kind="demand"),
    # |+A| + |-A|: what Eastron meters show as "Total kWh" (0x0156); equals the import total without export.
    Channel(channel_id=9, obis="1.0.15.8.0.255", name="active_total_absolute", unit="kWh", kind="cumulative"),
    Channel(channel_id=10, obis="1.0.32.7.0.255", name="voltage_l1", unit="V", kind="instantaneous"),
    Channel(channel_id=11, obis="1.0.52.7.0.255", name="voltage_l2", unit="V", kind="instantaneous"),
    Channel(channel_id=12, obis="1.0.72.7.0.255", name="voltage_l3", unit="V", kind="instantaneous"),
    Channel(channel_id=13, obis="1.0.31.7.0.255", name="current_l1", unit="A", kind="instantaneous"),
    Channel(channel_id=14, obis="1.0.51.7.0.255", name="current_l2", unit="A", kind="instantaneous"),
    Channel(channel_id=15, obis="1.0.71.7.0.255", name="current_l3", unit="A", kind="instantaneous"),
    Channel(channel_id=16, obis="1.0.1.7.0.255", name="active_power_import", unit="kW", kind="instantaneous"),
    Channel(channel_id=17, obis="1.0.13.7.0.255", name="power_factor", unit="-", kind="instantaneous"),
    Channel(channel_id=18, obis="1.0.14.7.0.255", name="frequency", unit="Hz", kind="instantaneous"),
    Channel(channel_id=19, obis="0.0.96.10.1.255", name="amr_profile_status", unit="flags", kind="state"),
    Channel(channel_id=20, obis="0.0.1.0.0.255", name="clock_offset", unit="s", kind="state"),
)

BY_OBIS: dict[str, Channel] = {c.obis: c for c in CHANNELS}
BY_ID: dict[int, Channel] = {c.channel_id: c for c in CHANNELS}

# AMR profile status bits (0.0.96.10.1.255), as meters report them.
STATUS_BITS: dict[str, int] = {
    "CRITICAL_ERROR": 1 << 0,
    "CLOCK_INVALID": 1 << 1,
    "DATA_NOT_VALID": 1 << 2,
    "DAYLIGHT_SAVING": 1 << 3,
    "CLOCK_ADJUSTED": 1 << 5,
    "RECOVERED_VALUE": 1 << 6,
    "POWER_DOWN": 1 << 7,
}


def channel_for_obis(obis: str) -> Channel:
    """The catalogue entry for an OBIS code; accepts the short form without the trailing '.255'."""
    code = obis if obis.count(".") == 5 else f"{obis}.255"
    try:
        return BY_OBIS[code]
    except KeyError as exc:
        raise KeyError(f"OBIS code {obis!r} is not in the channel catalogue") from exc
