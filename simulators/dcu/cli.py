"""`amr simulate` starter for data concentrators: each pushes its meters' interval reads to its uplink topic.

The starter takes the broker (the project's, account ``dcu``) and the state directory from its caller, the
composition layer (``amr simulate`` binds them), on top of the keyword arguments every starter gets: it reads no
global settings.

Options (``[simulate.options.dcu]``):

- ``dcu_prefix`` (default "DCU-SIM"): DCU ids are ``<prefix>-0001``, ...; each is also the DCU's MQTT client id.
- ``interval_s`` (default 1800): the read interval.
- ``outbox_dir`` (default ``<state dir>/dcu-outbox``): where each DCU keeps its outbox, in ``<outbox_dir>/<dcu
  id>``, so that a restarted simulator sends what its DCUs held (a real concentrator keeps it on flash).
- ``confirm`` (default true): an uplink leaves the outbox when ingest confirms it (docs/delivery.md); false: on
  its PUBACK, as a concentrator that does not speak the confirmation protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.topics import dcu_uplink_topic
from amr.errors import ConfigError
from simulators.clock import SimClock
from simulators.dcu.dcu import start_dcu
from simulators.listener import Listener
from simulators.meter import SimulatedMeter

OUTBOX_DIR_NAME = "dcu-outbox"


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
    broker: BrokerEndpoint,
    state_dir: Path,
) -> Listener:
    dcu_id = str(options.get("dcu_prefix", "DCU-SIM")) + f"-{index:04d}"
    outbox_root = options.get("outbox_dir", state_dir / OUTBOX_DIR_NAME)
    if not isinstance(outbox_root, str | Path):
        raise ConfigError(f"expected a directory path, got {outbox_root!r}", key="simulate.options.dcu.outbox_dir")
    confirm = options.get("confirm", True)
    if not isinstance(confirm, bool):
        raise ConfigError(f"expected true or false, got {confirm!r}", key="simulate.options.dcu.confirm")
    handle = start_dcu(
        dcu_id,
        meters,
        broker,
        clock,
        int(options.get("interval_s", 1800)),
        outbox_dir=Path(outbox_root) / dcu_id,
        confirm=confirm,
    )
    return Listener(
        protocol=protocol,
        endpoint=f"mqtt {broker.host}:{broker.port} {dcu_uplink_topic(dcu_id)}",
        units=list(range(1, len(meters) + 1)),
        serials=[m.serial for m in meters],
        stop=handle.stop,
        extra={"dcu_id": dcu_id, "outbox": str(Path(outbox_root) / dcu_id)},
    )
