"""Ingest throughput end to end (publisher -> Mosquitto -> ingest workers -> committed rows) beside the raw binary
COPY ceiling into the same hypertable, measured in the same run on throwaway services.

    .venv/bin/python -m benchmarks.bench_ingest [--quick] [--workers N]

Figures:
- raw COPY ceiling: numpy-encoded binary COPY straight into ``readings`` (not idempotent), 20,000-row batches,
  one connection; measured first and again last, the ceiling is the better of the two (on this shared 2-core
  machine one measurement alone varies by +-25 %, and the ratio should not profit from a slow one).
- staging path: COPY into a temp table + INSERT ... SELECT ... ON CONFLICT DO NOTHING (idempotent, always).
- savepoint path: COPY into ``readings`` inside a savepoint, staging only for a batch holding a duplicate
  (the path ingest uses).
- end to end: publishers (bounded window of 1,000 unacknowledged QoS 1 messages) into ``--workers`` ingest
  processes; rows/s from the first publish to the last commit. Measured for the columnar v2 reading batch that
  collectors publish (100 readings a message, the collectors' default, and ``--large`` readings a message) and
  for v1 (100 a message) as a comparison. Payloads are encoded before the clock starts.
The ratio end-to-end (v2, 100 a message) / raw ceiling is the figure the issue targets (>= 0.5). End to end
includes everything ingest does per batch (dedup-safe savepoint COPY, acks after commit) and meter_last_seen,
which workers write every LAST_SEEN_INTERVAL_S rather than with every batch (see ingest.limits).
The end is the last commit as reported by the workers' status files, which they rewrite after each commit.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.probe import new_client
from amr.broker.publish import WindowedPublisher
from amr.broker.topics import readings_topic
from amr.db.server import DatabaseServer, Role
from amr.messages import Reading, ReadingBatch, columnar_from_readings, encode
from amr.pgcopy import unix_s_to_pg_us
from ingest.metrics import read_status_files
from ingest.worker import WorkerConfig, run_worker
from ingest.writer import ReadingColumns, Strategy, prepare_session, write_readings

SERIAL_PREFIX = "BENCH-"
METERS = 10_000
READINGS_PER_MESSAGE = 100  # what collectors send (docs/architecture.md, collectors.config.DEFAULT_BATCH_READINGS)
LARGE_READINGS_PER_MESSAGE = 500  # a larger message: per-message costs (paho, broker, acks) a fifth per reading
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


def measure_copy(server: DatabaseServer, strategy: Strategy, rows: int, slot0: int, connections: int = 1) -> float:
    """rows/s of one write path, 20,000-row transactions (meter ids are the registry's first METERS), the batches
    shared out over `connections` parallel sessions (threads: psycopg waits without the GIL)."""
    conns = [psycopg.connect(server.conninfo(Role.INGEST), autocommit=True) for _ in range(connections)]
    try:
        for conn in conns:
            prepare_session(conn)
        first = conns[0].execute("SELECT min(meter_id) FROM meters WHERE serial LIKE %s", (SERIAL_PREFIX + "%",))
        offset = int(first.fetchone()[0]) - 1  # type: ignore[index]
        batches = []
        for b in range(rows // COPY_BATCH_ROWS):
            ts, meter, ch, val, q = _meter_columns(COPY_BATCH_ROWS, slot0 + b * (COPY_BATCH_ROWS // METERS))
            batches.append(ReadingColumns.from_arrays(ts, meter + offset, ch, val, q))

        def write(conn: psycopg.Connection[Any], share: list[ReadingColumns]) -> None:
            for cols in share:  # encoding counts: ingest pays it too
                with conn.transaction():
                    write_readings(conn, cols.copy_data(), len(cols), strategy)

        threads = [threading.Thread(target=write, args=(conn, batches[i::connections])) for i, conn in enumerate(conns)]
        t = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return rows / (time.perf_counter() - t)
    finally:
        for conn in conns:
            conn.close()


def _payloads(index: int, first_msg: int, count: int, version: int, per_message: int, slot0: int) -> list[bytes]:
    payloads = []
    for m in range(first_msg, first_msg + count):
        readings = []
        for j in range(per_message):
            k = m * per_message + j
            ts = datetime.fromtimestamp(T0_S + 900.0 * (slot0 + k // METERS), UTC)
            readings.append(Reading(meter=f"{SERIAL_PREFIX}{k % METERS + 1:06d}", obis="1.0.1.8.0.255",
                                    ts=ts, value=float(k), unit="kWh"))  # fmt: skip
        source = f"bench-{index}"
        batch = columnar_from_readings(source, m, readings) if version == 2 else None
        payloads.append(encode(batch or ReadingBatch(source=source, seq=m, readings=readings)))
    return payloads


def _publisher(ep: BrokerEndpoint, index: int, payloads: list[bytes], ready: Any, go: Any) -> None:
    topic = readings_topic(f"bench-{index}")
    # The broker lets a client publish only under its own client id: the topic's name.
    with WindowedPublisher(ep, client_id=f"bench-{index}", window=PUBLISH_WINDOW) as pub:
        ready.set()
        go.wait()
        pub.publish_all(((topic, p) for p in payloads), timeout_s=600)


def measure_end_to_end(
    server: DatabaseServer,
    ep_ingest: BrokerEndpoint,
    ep_pub: BrokerEndpoint,
    rows: int,
    workers: int,
    *,
    version: int,
    per_message: int,
    slot0: int,
) -> tuple[float, dict[str, float]]:
    ctx = mp.get_context("spawn")
    status_dir = Path(tempfile.mkdtemp(prefix="amr-bench-ingest-"))
    procs = []
    tag = f"v{version}-{per_message}"
    client_ids = [f"bench-ingest-{tag}-{i}" for i in range(workers)]
    for client_id in client_ids:
        cfg = WorkerConfig(broker=ep_ingest, conninfo=server.conninfo(Role.INGEST), client_id=client_id,
                           status_dir=status_dir, share_group=f"bench-{tag}")  # fmt: skip
        p = ctx.Process(target=run_worker, args=(cfg,))
        p.start()
        procs.append(p)
    deadline = time.monotonic() + 60
    while len(read_status_files(status_dir)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # subscriptions settle
    messages = rows // per_message
    payloads = _payloads(0, 0, messages, version, per_message, slot0)
    ready, go = ctx.Event(), ctx.Event()
    pubs = [ctx.Process(target=_publisher, args=(ep_pub, 0, payloads, ready, go))]
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
    for client_id in client_ids:  # forget the persistent sessions, or the broker queues the next runs for them
        _drop_session(ep_ingest, client_id)
    detail = {k: sum(float(s[k]) for s in stats) for k in ("rows", "duplicates", "dead_letters", "staging_flushes",
                                                          "flushes")}  # fmt: skip
    return stored / elapsed, detail


def _drop_session(ep: BrokerEndpoint, client_id: str) -> None:
    client = new_client(client_id)
    client.username_pw_set(ep.username, ep.password)
    client.connect(ep.host, ep.port, keepalive=10, clean_start=True)
    client.loop_start()
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def run(quick: bool, workers: int = 2, large: int = LARGE_READINGS_PER_MESSAGE) -> dict[str, float]:
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
        raw_first = measure_copy(db, Strategy.RAW, rows, slot0=0)
        staging = measure_copy(db, Strategy.STAGING, rows, slot0=2_000)
        savepoint = measure_copy(db, Strategy.SAVEPOINT, rows, slot0=4_000)
        eps = (endpoint(broker, "ingest"), endpoint(broker, "collector"))
        e2e, detail = measure_end_to_end(db, *eps, rows, workers, version=2, per_message=READINGS_PER_MESSAGE,
                                         slot0=10_000)  # fmt: skip
        e2e_large, detail_large = measure_end_to_end(db, *eps, rows, workers, version=2, per_message=large,
                                                     slot0=12_000)  # fmt: skip
        e2e_v1, detail_v1 = measure_end_to_end(db, *eps, rows, workers, version=1, per_message=READINGS_PER_MESSAGE,
                                               slot0=14_000)  # fmt: skip
        raw_last = measure_copy(db, Strategy.RAW, rows, slot0=16_000)
        raw_parallel = measure_copy(db, Strategy.RAW, rows, slot0=18_000, connections=workers)
    raw = max(raw_first, raw_last)
    result = {
        "raw_copy_rows_per_s": raw,
        "raw_copy_first_rows_per_s": raw_first,
        "raw_copy_last_rows_per_s": raw_last,
        "raw_copy_parallel_rows_per_s": raw_parallel,
        "ratio_end_to_end_to_raw_parallel": e2e / raw_parallel,
        "staging_rows_per_s": staging,
        "savepoint_rows_per_s": savepoint,
        "end_to_end_rows_per_s": e2e,
        "ratio_end_to_end_to_raw": e2e / raw,
        "end_to_end_large_rows_per_s": e2e_large,
        "ratio_end_to_end_large_to_raw": e2e_large / raw,
        "end_to_end_v1_rows_per_s": e2e_v1,
        "ratio_end_to_end_v1_to_raw": e2e_v1 / raw,
        **{f"e2e_{k}": v for k, v in detail.items()},
    }
    table = Table(title="ingest: readings/s (same hypertable, same run)")
    table.add_column("path")
    table.add_column("rows/s", justify="right")
    table.add_column("ratio to raw COPY", justify="right")
    for label, value in (
        ("raw binary COPY (ceiling, not idempotent)", raw),
        ("  raw COPY measured first", raw_first),
        ("  raw COPY measured last", raw_last),
        (f"raw COPY, {workers} connections in parallel (as many as workers)", raw_parallel),
        ("staging + INSERT ON CONFLICT DO NOTHING", staging),
        ("savepoint COPY, staging on duplicate", savepoint),
        (f"end to end v2, {READINGS_PER_MESSAGE}/message: MQTT -> {workers} worker(s) -> commit", e2e),
        (f"end to end v2, {large}/message", e2e_large),
        (f"end to end v1, {READINGS_PER_MESSAGE}/message (comparison)", e2e_v1),
    ):
        table.add_row(label, f"{value:,.0f}", f"{value / raw:.2f}")
    console.print(table)
    for label, d in (("v2", detail), (f"v2 {large}/message", detail_large), ("v1", detail_v1)):
        console.print(f"end to end detail ({label}): {d}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 readings instead of 1,000,000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--large", type=int, default=LARGE_READINGS_PER_MESSAGE, help="readings a large message")
    args = parser.parse_args()
    run(args.quick, workers=args.workers, large=args.large)


if __name__ == "__main__":
    main()
