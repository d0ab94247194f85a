"""Start and stop the demo's simulated world: one simulator per gateway, speaking its real protocol."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

from amr.broker.mosquitto import BrokerEndpoint
from amr.modbus.registermap import read_register_map
from app.demo.plan import MODBUS_KINDS, SIM_TARIFF, Endpoint, GatewayPlan, LiveMeter
from simulators.clock import SimClock
from simulators.dcu.dcu import start_dcu
from simulators.dlms.server import start_dlms_server
from simulators.meter import SimulatedMeter
from simulators.modbus.gateway import ModbusMeter
from simulators.modbus.servers import start_modbus_gateway
from simulators.modbus.starter import PtyPair
from simulators.population import faults_for

DCU_INTERVAL_S = 1800  # concentrators push 30-minute interval reads, as Vietnamese AMR systems do by default


def fetch_live_meters(conninfo: str, since: datetime) -> list[LiveMeter]:
    """Remote-read meters in the registry that were read remotely before `since` (they are simulated live)."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT meter_id, serial, city, tariff_class, protocol, coalesce(gateway, serial), coalesce(unit_id, 1),"
            " multiplier, register_digits, read_day FROM meters"
            " WHERE remote_read AND protocol IS NOT NULL AND protocol <> 'manual' AND remote_since <= %s"
            " ORDER BY protocol, gateway, unit_id",
            (since.date(),),
        ).fetchall()
    return [
        LiveMeter(
            meter_id=r[0],
            serial=r[1],
            city=r[2],
            tariff_class=r[3],
            protocol=r[4],
            gateway=r[5],
            unit_id=r[6],
            multiplier=r[7],
            register_digits=r[8],
            read_day=r[9],
        )
        for r in rows
    ]


def simulated_meter(
    m: LiveMeter, *, seed: int, fault_shares: dict[str, float], start: datetime, index: int
) -> SimulatedMeter:
    return SimulatedMeter(
        serial=m.serial,
        seed=seed * 1_000_003 + m.meter_id,
        tariff_class=SIM_TARIFF[m.tariff_class],
        city=m.city,
        register_digits=m.register_digits,
        multiplier=m.multiplier,
        faults=faults_for(seed, index, fault_shares, start),
    )


@dataclass(kw_only=True)
class World:
    """The running simulators; `stop()` ends them all."""

    endpoints: list[tuple[GatewayPlan, Endpoint]] = field(default_factory=list)
    dcu_handles: list[object] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def published_by_dcus(self) -> int:
        return sum(int(getattr(h, "published_count", 0)) for h in self.dcu_handles)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        self._stops.clear()


def start_world(
    gateways: list[GatewayPlan],
    *,
    clock: SimClock,
    seed: int,
    fault_shares: dict[str, float],
    baud: int,
    run_dir: Path,
    dcu_endpoint: BrokerEndpoint,
    dcu_start: datetime | None = None,
) -> World:
    """One simulator per gateway on `clock`; `dcu_start`: the first interval the concentrators read (default: the
    next interval boundary after the clock's start)."""
    world = World()
    regmap = read_register_map("vn_sim_meter")
    start = clock.now()
    index = 0
    try:
        for gw in gateways:
            sims = []
            for m in gw.meters:
                # Concentrator meters keep their faults at the DCU level; a dead meter behind a DCU just has gaps.
                sims.append(simulated_meter(m, seed=seed, fault_shares=fault_shares, start=start, index=index))
                index += 1
            if gw.protocol in MODBUS_KINDS:
                kind = MODBUS_KINDS[gw.protocol]
                units = [
                    ModbusMeter(unit_id=m.unit_id, meter=s, regmap=regmap) for m, s in zip(gw.meters, sims, strict=True)
                ]
                if kind == "rtu-serial":
                    pty = PtyPair(run_dir / "pty", gw.name)
                    world._stops.append(pty.close)
                    handle = start_modbus_gateway(kind, units, clock=clock, serial_path=pty.sim_path, baud=baud)
                    world._stops.append(handle.stop)
                    world.endpoints.append((gw, Endpoint(device=pty.client_path)))
                else:
                    handle = start_modbus_gateway(kind, units, clock=clock)
                    world._stops.append(handle.stop)
                    world.endpoints.append((gw, Endpoint(port=handle.port)))
            elif gw.protocol == "dlms":
                dlms = start_dlms_server(sims, clock=clock)
                world._stops.append(dlms.stop)
                world.endpoints.append((gw, Endpoint(port=dlms.port, dlms_addresses=dlms.addresses)))
            elif gw.protocol == "dcu-mqtt":
                dcu = start_dcu(
                    gw.name,
                    sims,
                    dcu_endpoint,
                    clock,
                    DCU_INTERVAL_S,
                    outbox_dir=run_dir / "dcu-outbox" / gw.name,
                    start=dcu_start,
                )
                world._stops.append(dcu.stop)
                world.dcu_handles.append(dcu)
                world.endpoints.append((gw, Endpoint()))
    except BaseException:
        world.stop()
        raise
    return world
