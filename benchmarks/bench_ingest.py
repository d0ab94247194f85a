"""Ingest throughput end to end (publisher -> Mosquitto -> ingest workers -> committed rows) beside the raw binary
COPY ceiling into the same hypertable, measured in the same run on throwaway services.

    .venv/bin/python -m benchmarks.bench_ingest [--quick] [--workers N]

Figures:
- raw COPY ceiling: numpy-encoded binary COPY straight into ``readings`` (not idempotent), 20,000-row batches.
- staging path: COPY into a temp table + INSERT ... SELECT ... ON CONFLICT DO NOTHING (idempotent, always).
- savepoint path: COPY into ``readings`` inside a savepoint, staging only for a batch holding a duplicate
  (the path ingest uses).
- end to end: publishers (bounded window of 1,000 unacknowledged QoS 1 messages, 100 readings a message) into
  ``--workers`` ingest processes; rows/s from the first publish to the last commit.
The ratio end-to-end / raw ceiling is the figure the issue targets (>= 0.5).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from amr.broker.topics import readings_topic
from amr.db.server import DatabaseServer, Role
from amr.messages import Reading, ReadingBatch, encode
from ingest.copy_binary import unix_s_to_pg_us
from ingest.metrics import read_status_files
from ingest.worker import WorkerConfig, run_worker
from ingest.writer import ReadingColumns, Strategy, prepare_session, write_readings

SERIAL_PREFIX = "BENCH-"
METERS = 10_000
READINGS_PER_MESSAGE = 100  # what collectors send (DESIGN.md)
PUBLISH_WINDOW = 1_000  # unacknowledged QoS 1 messages per publisher; paho ids are 16-bit
COPY_BATCH_ROWS = 20_000
T0_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _meter_columns(n: int, slot0: int) -> tuple[np.ndarray, ...]:
    """n rows: meters cycle, one 15-minute slot per pass over the meters, channel 1."""
    k = np.arange(n)
    meter = (k % METERS + 1).astype(np.int32)
    ts_s = (T0_S + 900.0 * (slot0 + k // METERS)).astype(np.float64)
    return (
        unix_s_to_pg_us(ts_s),
        meter,
        np.ones(n, np.int16),
        np.random.default_rng(1).random(n) * 1e4,
        np.zeros(n, np.int16),
    )


def measure_copy(server: DatabaseServer, strategy: Strategy, rows: int, slot0: int) -> float:
    """rows/s of one write path, 20,000-row transactions (meter ids are the registry's first METERS)."""
    with psycopg.connect(server.conninfo(Role.INGEST), autocommit=True) as conn:
        prepare_session(conn)
        first = conn.execute("SELECT min(meter_id) FROM meters WHERE serial LIKE %s", (SERIAL_PREFIX + "%",))
        offset = int(first.fetchone()[0]) - 1  # type: ignore[index]
        batches = []
        for b in range(rows // COPY_BATCH_ROWS):
            ts, meter, ch, val, q = _meter_columns(COPY_BATCH_ROWS, slot0 + b * (COPY_BATCH_ROWS // METERS))
            batches.append(ReadingColumns.from_arrays(ts, meter + offset, ch, val, q))
        t = time.perf_counter()
        for cols in batches:  # encoding counts: ingest pays it too
            with conn.transaction():
                write_readings(conn, cols.copy_data(), len(cols), strategy)
        return rows / (time.perf_counter() - t)


def _publisher(ep: BrokerEndpoint, index: int, first_msg: int, count: int, ready: Any, go: Any) -> None:
    payloads = []
    for m in range(first_msg, first_msg + count):
        readings = []
        for j in range(READINGS_PER_MESSAGE):
            k = m * READINGS_PER_MESSAGE + j
            ts = time.gmtime(T0_S + 900.0 * (10_000 + k // METERS))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", ts)
            readings.append(Reading(meter=f"{SERIAL_PREFIX}{k % METERS + 1:06d}", obis="1.0.1.8.0.255",
                                    ts=stamp, value=float(k), unit="kWh"))  # type: ignore[arg-type]  # fmt: skip
        payloads.append(encode(ReadingBatch(source=f"bench-{index}", seq=m, readings=readings)))
    client = new_client(f"bench-pub-{index}")
    client.username_pw_set(ep.username, ep.password)
    window = threading.Semaphore(PUBLISH_WINDOW)
    done = threading.Event()
    left = [count]
    lock = threading.Lock()

    def on_publish(*_args: Any) -> None:
        window.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    client.on_publish = on_publish
    client.connect(ep.host, ep.port, keepalive=60)
    client.loop_start()
    ready.set()
    go.wait()
    topic = readings_topic(f"bench-{index}")
    for p in payloads:
        window.acquire()
        client.publish(topic, p, qos=1)
    done.wait(600)
    client.disconnect()
    client.loop_stop()


def measure_end_to_end(
    server: DatabaseServer, ep_ingest: BrokerEndpoint, ep_pub: BrokerEndpoint, rows: int, workers: int
) -> tuple[float, dict[str, float]]:
    ctx = mp.get_context("spawn")
    status_dir = Path(tempfile.mkdtemp(prefix="amr-bench-ingest-"))
    procs = []
    for i in range(workers):
        cfg = WorkerConfig(broker=ep_ingest, conninfo=server.conninfo(Role.INGEST), client_id=f"bench-ingest-{i}",
                           status_dir=status_dir, share_group="bench")  # fmt: skip
        p = ctx.Process(target=run_worker, args=(cfg,))
        p.start()
        procs.append(p)
    deadline = time.monotonic() + 60
    while len(read_status_files(status_dir)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # subscriptions settle
    messages = rows // READINGS_PER_MESSAGE
    publishers = 1
    ready, go = ctx.Event(), ctx.Event()
    pubs = [
        ctx.Process(target=_publisher, args=(ep_pub, i, i * messages, messages, ready, go)) for i in range(publishers)
    ]
    for p in pubs:
        p.start()
    ready.wait(300)
    t0 = time.perf_counter()
    go.set()
    stored = 0.0
    while time.perf_counter() - t0 < 600:
        stored = sum(float(s["rows"]) for s in read_status_files(status_dir))
        if stored >= rows:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    stats = read_status_files(status_dir)
    for p in pubs:
        p.join(60)
    for p in procs:
        p.terminate()
        p.join(30)
    detail = {k: sum(float(s[k]) for s in stats) for k in ("rows", "duplicates", "dead_letters", "staging_flushes",
                                                          "flushes")}  # fmt: skip
    return stored / elapsed, detail


def run(quick: bool, workers: int = 2) -> dict[str, float]:
    from tests.services import endpoint, running_services  # throwaway TimescaleDB and Mosquitto

    rows = 200_000 if quick else 1_000_000
    console = Console()
    with running_services() as (db, broker, _settings):
        with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO meters (serial, city, power_company, tariff_class, meter_kind)"
                " SELECT %s || lpad(g::text, 6, '0'), 'HN', (SELECT min(code) FROM power_companies), 'household',"
                " 'smart' FROM generate_series(1, %s) g",
                (SERIAL_PREFIX, METERS),
            )
        console.print(f"[bold]ingest benchmark[/bold]: {rows:,} readings, {workers} worker(s), 1 publisher")
        raw = measure_copy(db, Strategy.RAW, rows, slot0=0)
        staging = measure_copy(db, Strategy.STAGING, rows, slot0=2_000)
        savepoint = measure_copy(db, Strategy.SAVEPOINT, rows, slot0=4_000)
        e2e, detail = measure_end_to_end(db, endpoint(broker, "ingest"), endpoint(broker, "collector"), rows, workers)
    result = {
        "raw_copy_rows_per_s": raw,
        "staging_rows_per_s": staging,
        "savepoint_rows_per_s": savepoint,
        "end_to_end_rows_per_s": e2e,
        "ratio_end_to_end_to_raw": e2e / raw,
        **{f"e2e_{k}": v for k, v in detail.items()},
    }
    table = Table(title="ingest: readings/s (same hypertable, same run)")
    table.add_column("path")
    table.add_column("rows/s", justify="right")
    table.add_column("ratio to raw COPY", justify="right")
    for label, value in (
        ("raw binary COPY (ceiling, not idempotent)", raw),
        ("staging + INSERT ON CONFLICT DO NOTHING", staging),
        ("savepoint COPY, staging on duplicate", savepoint),
        (f"end to end: MQTT -> {workers} worker(s) -> commit", e2e),
    ):
        table.add_row(label, f"{value:,.0f}", f"{value / raw:.2f}")
    console.print(table)
    console.print(f"end to end detail: {detail}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 readings instead of 1,000,000")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run(args.quick, workers=args.workers)


if __name__ == "__main__":
    main()
