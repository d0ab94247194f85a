"""`amr collect --metrics-port`: a real collector against simulated gateways (Modbus TCP and RTU over TCP, one
meter answering with an exception, one dead) and the real broker, its endpoint scraped over HTTP and parsed with
prometheus_client's parser. Each meter is polled once (an hour's poll interval), so every count is known."""

from __future__ import annotations

import socket
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import readings_topic
from amr.modbus.registermap import read_register_map
from collectors.config import parse_collector_config
from collectors.runner import CollectorSnapshot, run_collector
from simulators.clock import SimClock
from simulators.faults import Faults
from tests.collectors.fleet import Recorder, gateway_toml, start_gateway, wait_until
from tests.services import endpoint

POLL_ONCE_S = 3600.0  # no second poll (nor a retry after a failure's back-off) within the test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], family: str, **labels: str) -> float:
    """The one sample of a family (named without a counter's _total) with these labels."""
    samples = [
        s
        for s in families[family].samples
        if not s.name.endswith("_created") and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(samples) == 1, f"{family}{labels}: {samples}"
    return float(samples[0].value)


def test_endpoint_counts_reads_by_protocol_and_outcome(broker: LocalMosquitto, tmp_path: Path) -> None:
    clock = SimClock.fixed(datetime(2026, 10, 1, 0, 0, tzinfo=UTC))
    cid = "test-coll-metrics"
    tcp = start_gateway("tcp", "TMEA", [1, 2, 3], clock, faults={3: Faults(exception_code=2)})
    rtu = start_gateway("rtu-tcp", "TMEB", [1, 4], clock, faults={4: Faults(no_answer=1.0)})
    port = _free_port()
    try:
        text = f'collector_id = "{cid}"\nspool_dir = "{tmp_path}/spool"\nheartbeat_s = 0.5\n' + "".join(
            gateway_toml(name, gw, poll_interval_s=POLL_ONCE_S, timeout_s=0.5)
            for name, gw in (("tcp-a", tcp), ("rtu-b", rtu))
        )
        config = parse_collector_config(text, source="metrics.toml")
        recorder = Recorder(endpoint(broker, "ingest"), [readings_topic(cid)], confirm=True).start()
        stop = threading.Event()
        result: dict[str, CollectorSnapshot] = {}
        service = threading.Thread(
            target=lambda: result.update(
                snap=run_collector(
                    config, stop, endpoint=endpoint(broker, "collector"), clock=clock.now_s, metrics_port=port
                )
            )
        )
        service.start()
        try:
            expected_readings = len(read_register_map("vn_sim_meter").by_obis) * 3  # three healthy meters

            def settled() -> bool:
                try:
                    fams = scrape(port)
                except OSError:  # not listening yet
                    return False
                return (
                    sum(s.value for s in fams["amr_collector_reads"].samples if s.name.endswith("_total")) == 5
                    and value(fams, "amr_collector_confirmed", collector=cid) >= 1
                    and value(fams, "amr_collector_spool_messages", collector=cid) == 0
                )

            assert wait_until(settled, 30, step_s=0.2), "the endpoint did not show five reads, all confirmed"
            fams = scrape(port)
        finally:
            stop.set()
            service.join(30)
            recorder.stop()
        assert not service.is_alive()
    finally:
        tcp.handle.stop()
        rtu.handle.stop()

    reads = fams["amr_collector_reads"]
    assert reads.type == "counter"
    got = {(s.labels["protocol"], s.labels["outcome"]): s.value for s in reads.samples if s.name.endswith("_total")}
    assert got == {
        ("modbus_tcp", "success"): 2, ("modbus_tcp", "timeout"): 0, ("modbus_tcp", "error"): 1,
        ("modbus_rtu", "success"): 1, ("modbus_rtu", "timeout"): 1, ("modbus_rtu", "error"): 0,
        ("dlms", "success"): 0, ("dlms", "timeout"): 0, ("dlms", "error"): 0,
    }  # fmt: skip
    assert fams["amr_collector_readings"].type == "counter"
    assert value(fams, "amr_collector_readings", collector=cid) == expected_readings
    published = sum(len(b["readings"]) for b in recorder.payloads(readings_topic(cid)))
    assert published == expected_readings
    assert fams["amr_collector_spool_messages"].type == "gauge"
    assert value(fams, "amr_collector_meters", collector=cid) == 5
    assert value(fams, "amr_collector_meters_ok", collector=cid) == 3
    assert value(fams, "amr_collector_broker_connected", collector=cid) == 1
    assert result["snap"].meter_reads == 3
    # The server stops with the service.
    try:
        scrape(port)
        raise AssertionError("the metrics endpoint still answers after the collector stopped")
    except OSError:
        pass
