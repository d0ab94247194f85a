"""`amr simulate` starter for data concentrators: each pushes its meters' interval reads to its uplink topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amr.broker.mosquitto import broker_endpoint
from amr.broker.topics import dcu_uplink_topic
from amr.credentials import read_or_create_credentials
from amr.settings import read_settings
from simulators.clock import SimClock
from simulators.dcu.dcu import start_dcu
from simulators.meter import SimulatedMeter
from simulators.modbus.fleet import Listener


def start_listener(*, protocol: str, meters: list[SimulatedMeter], clock: SimClock, host: str, port: int,
                   options: dict[str, Any], index: int, run_dir: Path) -> Listener:
    settings = read_settings()
    endpoint = broker_endpoint(settings, read_or_create_credentials(settings.credentials_file), "dcu")
    dcu_id = str(options.get("dcu_prefix", "DCU-SIM")) + f"-{index:04d}"
    handle = start_dcu(dcu_id, meters, endpoint, clock, int(options.get("interval_s", 1800)))
    return Listener(protocol=protocol, endpoint=f"mqtt {endpoint.host}:{endpoint.port} {dcu_uplink_topic(dcu_id)}",
                    units=list(range(1, len(meters) + 1)), serials=[m.serial for m in meters], stop=handle.stop,
                    extra={"dcu_id": dcu_id})
