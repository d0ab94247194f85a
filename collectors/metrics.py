"""A collector's Prometheus metrics (``amr collect --metrics-port PORT``), read from the running service at each
scrape by :class:`CollectorMetrics` and served on 127.0.0.1 by prometheus-client's HTTP server (a thread).

The scrape runs in the server's thread while the service runs in its asyncio loop: it only reads ints the loop
keeps (counters, the spool's cached depth) and never calls into the spool's SQLite connection or the publisher.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors.stats import MeterStats

if TYPE_CHECKING:
    from collectors.runner import Collector as CollectorService

METRICS_ADDR = "127.0.0.1"  # loopback: expose it further through a reverse proxy or the scraper's host only
# The `protocol` label: how the collector talks to a meter (bounded: one value per kind of link it supports).
PROTOCOLS = ("modbus_tcp", "modbus_rtu", "dlms")
OUTCOMES = ("success", "timeout", "error")  # of one meter read (all its blocks or its profile)


@dataclass(frozen=True)
class ReadCounts:
    success: int = 0
    timeout: int = 0
    error: int = 0  # failures other than timeouts (exception responses, connection, decoding)

    @classmethod
    def of(cls, stats: Iterable[MeterStats]) -> ReadCounts:
        success = timeout = failures = 0
        for s in stats:
            success += s.successes
            timeout += s.timeouts
            failures += s.failures
        return cls(success=success, timeout=timeout, error=failures - timeout)


class CollectorMetrics(Collector):
    """Metrics of one collector service (label `collector`: its collector id)."""

    def __init__(self, service: CollectorService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        cid = svc.config.collector_id
        by_protocol: dict[str, list[MeterStats]] = {p: [] for p in PROTOCOLS}
        for protocol, bus in zip(svc.bus_protocols, svc.buses, strict=True):
            by_protocol[protocol] += bus.stats
        by_protocol["dlms"] += svc.dlms.stats
        reads = CounterMetricFamily(
            "amr_collector_reads_total",
            "meter reads by protocol and outcome (a read that failed after its retries counts once)",
            labels=["collector", "protocol", "outcome"],
        )
        for protocol, stats in by_protocol.items():
            counts = ReadCounts.of(stats)
            for outcome in OUTCOMES:
                reads.add_metric([cid, protocol, outcome], getattr(counts, outcome))
        yield reads

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["collector"])
            family.add_metric([cid], value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["collector"])
            family.add_metric([cid], value)
            return family

        batcher, publisher = svc.batcher, svc.publisher
        yield counter("amr_collector_readings_total", "readings taken from meters and DCUs", batcher.readings_in)
        yield counter(
            "amr_collector_refused_total",
            "readings and events refused at the source (alone larger than the broker's maximum packet)",
            batcher.refused_readings + batcher.refused_events,
        )
        yield counter("amr_collector_published_total", "messages the broker acknowledged (re-sends again)",
                      publisher.published)  # fmt: skip
        yield counter("amr_collector_confirmed_total", "messages ingest confirmed as committed", publisher.confirmed)
        yield counter("amr_collector_dcu_uplinks_total", "DCU uplink messages bridged", svc.bridge.uplinks)
        yield gauge("amr_collector_spool_messages", "messages in the spool, not yet confirmed by ingest",
                    svc.spool.depth)  # fmt: skip
        yield gauge("amr_collector_inflight_messages", "messages sent and not yet acknowledged", publisher.inflight)
        yield gauge("amr_collector_broker_connected", "1 while connected to the broker", float(publisher.connected))
        stats = svc.meter_stats()
        yield gauge("amr_collector_meters", "meters this collector polls", len(stats))
        yield gauge(
            "amr_collector_meters_ok",
            "meters that answered their last poll",
            sum(1 for s in stats if s.successes and s.consecutive_failures == 0),
        )


def serve_metrics(service: CollectorService, port: int) -> WSGIServer:
    """Serve the service's metrics on 127.0.0.1:`port` (any path, /metrics by convention); `.shutdown()` stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorMetrics(service))
    server, _thread = start_http_server(port, addr=METRICS_ADDR, registry=registry)
    return server
