"""`amr simulate` starter for DLMS/COSEM meters: one TCP port per server, meters at logical addresses 16, 17, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulators.clock import SimClock
from simulators.dlms.objects import ProfileConfig
from simulators.dlms.server import start_dlms_server
from simulators.listener import Listener
from simulators.meter import SimulatedMeter


def start_listener(
    *,
    protocol: str,
    meters: list[SimulatedMeter],
    clock: SimClock,
    host: str,
    port: int,
    options: dict[str, Any],
    index: int,
    run_dir: Path,
) -> Listener:
    password = options.get("password")
    handle = start_dlms_server(
        meters, host=host, port=port, clock=clock,
        passwords=password.encode() if isinstance(password, str) else None,
        profile=ProfileConfig(interval_s=int(options.get("profile_interval_s", 1800))),
        seed=index,
    )  # fmt: skip
    addresses = handle.addresses
    return Listener(
        protocol=protocol,
        endpoint=f"{host}:{handle.port}",
        units=[addresses[m.serial] for m in meters],
        serials=[m.serial for m in meters],
        stop=handle.stop,
        extra={"logical_addresses": addresses},
    )
