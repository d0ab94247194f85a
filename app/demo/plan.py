"""What the demo simulates, as data: live meters grouped into gateways per protocol, the collector's config and
the simulated instants it steps through. Pure: no I/O.

The demo drives a stepped simulated clock: at each step (local midnight by default) the clock is set, every
polled meter is read at exactly that instant, then the clock moves on. Polled Modbus reads thus fall on the
interval grid the VEE expects, however fast the demo runs; DLMS load profiles and concentrator pushes carry
their own 30-minute interval timestamps.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from amr.timebase import local_midnight
from billing.cycles import BillingPeriod

MODBUS_KINDS = {"modbus-tcp": "tcp", "modbus-rtu-tcp": "rtu-tcp", "modbus-rtu": "rtu-serial"}
SIM_TARIFF = {
    "household": "household",
    "business": "business",
    "production": "production",
    "administrative": "business",
}


@dataclass(frozen=True, kw_only=True)
class LiveMeter:
    meter_id: int
    serial: str
    city: str
    tariff_class: str
    protocol: str
    gateway: str
    unit_id: int
    multiplier: float
    register_digits: int
    read_day: int


@dataclass(kw_only=True)
class GatewayPlan:
    name: str
    protocol: str  # registry protocol: modbus-tcp, modbus-rtu-tcp, modbus-rtu, dlms, dcu-mqtt
    meters: list[LiveMeter] = field(default_factory=list)


def group_gateways(meters: list[LiveMeter]) -> list[GatewayPlan]:
    """One simulated gateway per registry gateway (all DLMS meters behind one server)."""
    groups: dict[tuple[str, str], GatewayPlan] = {}
    for m in meters:
        key = (m.protocol, "dlms" if m.protocol == "dlms" else m.gateway)
        groups.setdefault(key, GatewayPlan(name=key[1], protocol=m.protocol)).meters.append(m)
    return sorted(groups.values(), key=lambda g: (g.protocol, g.name))


def period_days(period: BillingPeriod, read_days: list[int]) -> tuple[date, date]:
    """First and last local day whose midnight read some live meter's billing cycle needs (inclusive)."""
    start, end = period.cycles(np.asarray(read_days or [1], dtype=np.int64))
    return start.min().astype(date), end.max().astype(date)


def local_midnights(first: date, last: date, step_min: int) -> list[datetime]:
    """UTC instants from local midnight of `first` to local midnight of `last`, every `step_min` minutes."""
    t = local_midnight(first).astimezone(UTC)
    end = local_midnight(last).astimezone(UTC)
    out = []
    while t <= end:
        out.append(t)
        t += timedelta(minutes=step_min)
    return out


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where the collector reaches one simulated gateway."""

    host: str = "127.0.0.1"
    port: int | None = None
    device: str | None = None  # serial pty
    dlms_addresses: dict[str, int] = field(default_factory=dict)


def collector_toml(
    *,
    collector_id: str,
    spool_dir: str,
    gateways: list[tuple[GatewayPlan, Endpoint]],
    baud: int,
    poll_interval_s: float,
) -> str:
    """The collector config for the simulated gateways (validated by collectors.config when read)."""
    lines = [
        f"collector_id = {json.dumps(collector_id)}",
        f"spool_dir = {json.dumps(spool_dir)}",
        "heartbeat_s = 2.0",
        "",
    ]
    for gw, ep in gateways:
        if gw.protocol in ("modbus-tcp", "modbus-rtu-tcp"):
            lines += [
                "[[gateways]]",
                f"name = {json.dumps(gw.name)}",
                'transport = "tcp"',
                f'framer = "{"socket" if gw.protocol == "modbus-tcp" else "rtu"}"',
                f"host = {json.dumps(ep.host)}",
                f"port = {ep.port}",
                "timeout_s = 0.5",
                "max_backoff_s = 0.5",
                "",
            ]
        elif gw.protocol == "modbus-rtu":
            lines += [
                "[[gateways]]",
                f"name = {json.dumps(gw.name)}",
                'transport = "serial"',
                f"device = {json.dumps(ep.device)}",
                f"baudrate = {baud}",
                "timeout_s = 0.5",
                "max_backoff_s = 0.5",
                "",
            ]
        else:
            if gw.protocol == "dlms":
                for m in gw.meters:
                    lines += [
                        "[[dlms_meters]]",
                        f"serial = {json.dumps(m.serial)}",
                        f"host = {json.dumps(ep.host)}",
                        f"port = {ep.port}",
                        f"logical_address = {ep.dlms_addresses[m.serial]}",
                        f"poll_interval_s = {poll_interval_s}",
                        "timeout_s = 5.0",
                        f"multiplier = {m.multiplier}",
                        "",
                    ]
            continue
        for m in gw.meters:
            lines += [
                "[[gateways.meters]]",
                f"serial = {json.dumps(m.serial)}",
                f"unit_id = {m.unit_id}",
                'map = "vn_sim_meter"',
                f"poll_interval_s = {poll_interval_s}",
                f"multiplier = {m.multiplier}",
                "",
            ]
    return "\n".join(lines)


def count_by_protocol(meters: list[LiveMeter]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for m in meters:
        counts[m.protocol] += 1
    return dict(sorted(counts.items()))
