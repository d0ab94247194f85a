"""The collector service: Modbus buses, DLMS meters and the DCU bridge feeding one spool and one MQTT link.

``run_collector(config, stop_event)`` runs until `stop_event` (a threading.Event) is set, then stops polling,
seals what waits in memory into the spool, waits a bounded time for ingest to confirm what the spool holds (what
is not confirmed stays in the spool and is sent again at the next start; docs/delivery.md), publishes the
'offline' status and returns a summary. The collector's MQTT client id is its collector id: the broker's ACL lets
a client write only under its own client id and read only its own confirmation topic.
``amr collect --config FILE`` wraps it with a live status line and gives it its broker endpoint (the service
reads no global settings: :func:`resolve_endpoint` takes the project's broker from the caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from amr.broker.confirm import CONFIRM_TIMEOUT_S, MAX_CONFIRM_TIMEOUT_S
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.topics import events_topic, readings_topic, status_topic
from amr.errors import ConfigError
from amr.messages import ClientStatus, Reading, encode
from collectors.batcher import Batcher
from collectors.config import CollectorConfig, GatewayConfig
from collectors.dlmspoll import DlmsPoller
from collectors.metrics import serve_metrics
from collectors.modbus.bus import BusPoller
from collectors.modbus.meterread import ModbusMeterReader, read_compiled_map
from collectors.modbus.transport import ModbusClient, RtuOverTcpClient, SerialRtuClient, TcpClient
from collectors.mqtt.bridge import DcuBridge
from collectors.publisher import MqttPublisher
from collectors.spool import Spool
from collectors.stats import MeterStats

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1  # spool commit cadence: the most a reading waits before it is durable (plus linger)
DRAIN_TIMEOUT_S = 5.0  # at a clean stop, how long to wait for ingest to confirm the spool
RATE_WINDOW_S = 5.0  # reads/s is measured over this window


@dataclass(frozen=True, kw_only=True)
class CollectorSnapshot:
    """What the status line and the heartbeat show."""

    collector_id: str
    meters: int
    meters_ok: int  # answered their last poll
    meter_reads: int
    reads_per_s: float
    readings: int
    errors: int  # failed polls
    spool_depth: int  # messages not yet confirmed by ingest (sent or not)
    published: int  # PUBACKs (a message sent again counts again)
    confirmed: int  # messages ingest confirmed, gone from the spool
    refused: int  # readings and events refused at the source: alone larger than the broker's maximum packet
    inflight: int
    connected: bool
    dcu_uplinks: int


def resolve_endpoint(config: CollectorConfig, project: Callable[[], BrokerEndpoint] | None = None) -> BrokerEndpoint:
    """The broker for this collector: the config's [broker] when it names a password; else the project's account
    `collector`, given by the composition layer's `project` (called only then: it may create credentials), at the
    [broker]'s host and port when the config has one."""
    if config.broker is not None and config.broker.password is not None:
        b = config.broker
        return BrokerEndpoint(host=b.host, port=b.port, username=b.username, password=b.password or "")
    if project is None:
        raise ConfigError(
            "no broker password in the config and no project broker given",
            source=str(config.source_file) if config.source_file else None,
            key="broker.password",
        )
    ep = project()
    if config.broker is not None:
        ep = BrokerEndpoint(
            host=config.broker.host, port=config.broker.port, username=ep.username, password=ep.password
        )
    return ep


def protocol_of(gw: GatewayConfig) -> str:
    """The `protocol` label of a gateway's reads in the metrics (collectors.metrics.PROTOCOLS)."""
    return "modbus_rtu" if gw.transport == "serial" or gw.framer == "rtu" else "modbus_tcp"


def make_client(gw: GatewayConfig) -> ModbusClient:
    if gw.transport == "serial":
        assert gw.device is not None
        return SerialRtuClient(
            gw.name, gw.device, baudrate=gw.baudrate, parity=gw.parity, stopbits=gw.stopbits, bytesize=gw.bytesize
        )
    assert gw.host is not None
    if gw.framer == "rtu":
        return RtuOverTcpClient(gw.name, gw.host, gw.port, connect_timeout_s=gw.timeout_s)
    return TcpClient(gw.name, gw.host, gw.port, connect_timeout_s=gw.timeout_s)


class Collector:
    """The assembled service; `run` is its asyncio entry point."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        endpoint: BrokerEndpoint | None = None,
        clock: Callable[[], float] = time.time,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        max_confirm_timeout_s: float = MAX_CONFIRM_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.clock = clock
        self.endpoint = endpoint or resolve_endpoint(config)
        self.spool = Spool(config.spool_dir, sync=config.spool_sync)
        self.batcher = Batcher(
            self.spool,
            source=config.collector_id,
            readings_topic=readings_topic(config.collector_id),
            events_topic=events_topic(config.collector_id),
            batch_readings=config.batch_readings,
        )
        self.buses = [
            BusPoller(
                name=gw.name,
                client=make_client(gw),
                readers=[
                    ModbusMeterReader(
                        serial=m.serial,
                        unit_id=m.unit_id,
                        poll_interval_s=m.poll_interval_s,
                        multiplier=m.multiplier,
                        compiled=read_compiled_map(config.map_path(m.map).resolve()),
                    )
                    for m in gw.meters
                ],
                sink=self._on_readings,
                timeout_s=gw.timeout_s,
                retries=gw.retries,
                inter_request_delay_s=gw.inter_request_delay_s,
                max_backoff_s=gw.max_backoff_s,
                wall_clock=clock,
            )
            for gw in config.gateways
        ]
        self.bus_protocols = [protocol_of(gw) for gw in config.gateways]
        self.dlms = DlmsPoller(
            meters=list(config.dlms_meters),
            sink=lambda readings, done: self.batcher.add(readings, on_durable=done),
            load_since=self._load_since,
            save_since=self._save_since,
            wall_clock=clock,
        )
        self.publisher = MqttPublisher(
            endpoint=self.endpoint,
            client_id=config.collector_id,
            spool=self.spool,
            batcher=self.batcher,
            window=config.publish_window,
            status_topic=status_topic(config.collector_id),
            will_payload=self._status_payload("offline"),
            subscriptions=list(config.concentrators.topics),
            on_message=self._on_uplink,
            on_connected=self._heartbeat,
            confirm_timeout_s=confirm_timeout_s,
            max_confirm_timeout_s=max_confirm_timeout_s,
        )
        self.bridge = DcuBridge(self.batcher, self.publisher.ack_incoming)
        self.batcher.on_commit = self.publisher.wake
        self._rate_marks: list[tuple[float, int]] = []

    # ---- wiring -----------------------------------------------------------------------------------------------

    def _on_readings(self, readings: list[Reading]) -> None:
        self.batcher.add(readings)

    def _on_uplink(self, message: object) -> None:
        self.bridge.handle(message)  # type: ignore[arg-type]

    def _load_since(self, serial: str) -> datetime | None:
        value = self.spool.get_state(f"dlms.since.{serial}")
        return datetime.fromisoformat(value) if value else None

    def _save_since(self, serial: str, ts: datetime) -> None:
        self.spool.set_state(f"dlms.since.{serial}", ts.astimezone(UTC).isoformat())

    # ---- status -----------------------------------------------------------------------------------------------

    def meter_stats(self) -> list[MeterStats]:
        out: list[MeterStats] = []
        for bus in self.buses:
            out += bus.stats
        return out + self.dlms.stats

    def meter_reads(self) -> int:
        return sum(b.meter_reads for b in self.buses) + self.dlms.meter_reads

    def reads_per_s(self) -> float:
        now = time.monotonic()
        total = self.meter_reads()
        self._rate_marks.append((now, total))
        while len(self._rate_marks) > 2 and now - self._rate_marks[1][0] >= RATE_WINDOW_S:
            self._rate_marks.pop(0)
        t0, n0 = self._rate_marks[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0

    def snapshot(self) -> CollectorSnapshot:
        stats = self.meter_stats()
        return CollectorSnapshot(
            collector_id=self.config.collector_id,
            meters=len(stats),
            meters_ok=sum(1 for s in stats if s.successes and s.consecutive_failures == 0),
            meter_reads=self.meter_reads(),
            reads_per_s=self.reads_per_s(),
            readings=self.batcher.readings_in,
            errors=sum(s.attempts - s.successes for s in stats),
            spool_depth=self.spool.depth,
            published=self.publisher.published,
            confirmed=self.publisher.confirmed,
            refused=self.batcher.refused_readings + self.batcher.refused_events,
            inflight=self.publisher.inflight,
            connected=self.publisher.connected,
            dcu_uplinks=self.bridge.uplinks,
        )

    def _status_payload(self, state: str, *, with_meters: bool = False) -> bytes:
        status = ClientStatus(
            source=self.config.collector_id,
            kind="collector",
            state=state,
            ts=datetime.now(UTC),
            spool_depth=self.spool.depth,
            reads_per_s=round(self.reads_per_s(), 2) if with_meters else None,
            meters=[s.snapshot() for s in self.meter_stats()] if with_meters else [],
        )
        return encode(status)

    def _heartbeat(self) -> None:
        self.publisher.publish_status(self._status_payload("online", with_meters=True))

    # ---- run --------------------------------------------------------------------------------------------------

    async def _ticker(self, stop: asyncio.Event, on_tick: Callable[[CollectorSnapshot], None] | None) -> None:
        next_beat = time.monotonic() + self.config.heartbeat_s
        next_tick = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
            self.batcher.flush()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.config.heartbeat_s
                self._heartbeat()
            if on_tick is not None and now >= next_tick:
                next_tick = now + 0.5
                on_tick(self.snapshot())

    async def run(
        self,
        stop_event: threading.Event,
        on_tick: Callable[[CollectorSnapshot], None] | None = None,
        *,
        metrics_port: int | None = None,
    ) -> CollectorSnapshot:
        """Run until `stop_event` is set; with `metrics_port`, serve Prometheus metrics on 127.0.0.1 meanwhile."""
        metrics = serve_metrics(self, metrics_port) if metrics_port else None
        try:
            return await self._run(stop_event, on_tick)
        finally:
            if metrics is not None:
                metrics.shutdown()

    async def _run(
        self, stop_event: threading.Event, on_tick: Callable[[CollectorSnapshot], None] | None
    ) -> CollectorSnapshot:
        stop = asyncio.Event()
        polling_stop = asyncio.Event()
        self.publisher.start()
        tasks = [asyncio.create_task(bus.run(polling_stop), name=f"bus-{bus.name}") for bus in self.buses]
        tasks.append(asyncio.create_task(self.dlms.run(polling_stop), name="dlms"))
        pump = asyncio.create_task(self.publisher.pump(stop), name="pump")
        ticker = asyncio.create_task(self._ticker(stop, on_tick), name="ticker")
        try:
            while not stop_event.is_set():
                await asyncio.sleep(0.05)
                for task in [*tasks, pump, ticker]:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            polling_stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.batcher.flush(force=True)
            self.publisher.wake()
            await self.publisher.drain(DRAIN_TIMEOUT_S)
            stop.set()
            await asyncio.gather(pump, ticker, return_exceptions=True)
            snapshot = self.snapshot()
            self.publisher.stop(self._status_payload("offline", with_meters=True))
            self.spool.close()
        return snapshot


def run_collector(
    config: CollectorConfig,
    stop_event: threading.Event,
    *,
    endpoint: BrokerEndpoint | None = None,
    clock: Callable[[], float] = time.time,
    on_tick: Callable[[CollectorSnapshot], None] | None = None,
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
    metrics_port: int | None = None,
) -> CollectorSnapshot:
    """Run a collector until `stop_event` is set; returns the final counters.

    `clock` gives the UTC epoch seconds readings are stamped with (a simulator's ``SimClock.now_s`` in tests).
    `endpoint`: the broker, given by the composition layer (:func:`resolve_endpoint`); default: the config's
    [broker], which must then name a password (the collector reads no global settings).
    `confirm_timeout_s`: how long a sent message waits for its confirmation before it is sent again (doubling).
    `metrics_port`: serve Prometheus metrics (collectors.metrics) on 127.0.0.1:PORT while it runs."""
    collector = Collector(config, endpoint=endpoint, clock=clock, confirm_timeout_s=confirm_timeout_s)
    return asyncio.run(collector.run(stop_event, on_tick, metrics_port=metrics_port))
