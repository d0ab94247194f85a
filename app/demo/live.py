"""The demo's live phase: after the simulated period is billed, the same network runs on wall-clock time.

The stepped phase leaves every meter's last reading at the end of the simulated period, weeks before now, so the
Network page would show the whole network as silent. The live phase starts a fresh world of the same gateways and
meters (same seeds, so the same customers and faults) on a clock that follows now at speed 1, a collector polling
it every `poll_interval_s`, an ingest worker, and the dashboard-aggregate refresh in a thread (what `amr dashboard
refresh --every` does), until stopped.

Fresh rather than re-timed: the stepped collector's DLMS positions and the concentrators' next-read marks sit at
the end of the simulated period; resuming them would back-fill the weeks between that period and now. A fresh
spool reads the DLMS load profile of the last day only (collectors.dlms.fetch.DEFAULT_PROFILE_LOOKBACK) and the
concentrators start at the current interval, so nothing is written into the billed period (run.py refuses a
live phase whose readings would reach it).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from amr.broker.mosquitto import BrokerEndpoint
from app.demo.plan import GatewayPlan, collector_toml
from app.demo.world import DCU_INTERVAL_S, World, start_world
from collectors.config import parse_collector_config
from collectors.dlms.fetch import DEFAULT_PROFILE_LOOKBACK
from collectors.runner import Collector
from simulators.clock import SimClock

# A real network polls every 15 to 30 minutes; the demo polls every minute so the Network page visibly moves.
LIVE_POLL_S = 60.0
# Aggregates refreshed twice per poll round: the Network page lags the meters by at most half a round.
LIVE_REFRESH_S = 30.0
# "Read in the last interval" on the Network page: the concentrators' 30-minute interval, the slowest reader here
# (the `amr dashboard refresh` default).
READ_INTERVAL_MIN = DCU_INTERVAL_S // 60
# The earliest reading the live phase can write: DLMS load profiles are read back this far on a fresh spool.
LIVE_LOOKBACK = DEFAULT_PROFILE_LOOKBACK
COLLECTOR_JOIN_S = 30.0  # the collector drains its spool to the broker before its thread ends
DRAIN_QUIET_S = 3.0  # ingest is done when the stored row count has not moved for this long


def count_rows(conninfo: str) -> tuple[int, int]:
    """(readings, dead letters) stored."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM dead_letters)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def continuous_figures(conninfo: str) -> dict[str, int]:
    """What the continuous VEE left: validated (meter, channel, day) rows and open exception episodes."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM vee_daily), (SELECT count(*) FROM vee_episodes WHERE status = 'open')"
        ).fetchone()
    assert row is not None
    return {"validated days": int(row[0]), "open episodes": int(row[1])}


def wait_quiet(conninfo: str, timeout_s: float = 120.0, quiet_s: float = DRAIN_QUIET_S) -> int:
    """Readings stored once the count has not moved for `quiet_s` (or at `timeout_s`)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows, _ = count_rows(conninfo)
        if rows != last:
            last, since = rows, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return rows
        time.sleep(0.5)
    return last


VEE_INTERVAL_S = 2.0  # the demo's simulated days pass in seconds: validate each one as it lands


def start_ingest(log_path: Path) -> subprocess.Popen[bytes]:
    """One ingest worker as a child process (`amr ingest`), logging to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "app", "ingest", "--workers", "1", "--no-live", "--name", "demo-ingest"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def start_vee(log_path: Path, interval_s: float = VEE_INTERVAL_S) -> subprocess.Popen[bytes]:
    """The continuous VEE service as a child process (`amr vee`), logging to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "app", "vee", "--interval-s", f"{interval_s:g}"], stdout=log, stderr=subprocess.STDOUT
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass(frozen=True, kw_only=True)
class NetworkNow:
    """What the Network page's headline shows after a refresh."""

    refreshed_at: datetime
    remote_meters: int
    read_interval: int  # remote meters with a reading newer than one read interval
    read_24h: int


def refresh_dashboards(conninfo: str, read_interval_min: int = READ_INTERVAL_MIN) -> NetworkNow | None:
    """Refresh the dashboard aggregates (sql/040); None when the database has no such function yet."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:
            conn.execute(
                "SELECT * FROM refresh_dashboard_aggregates(make_interval(mins => %s))", (read_interval_min,)
            ).fetchall()
        except psycopg.errors.UndefinedFunction:
            return None
        row = conn.execute(
            "SELECT now(), coalesce(sum(remote_meters), 0), coalesce(sum(read_interval), 0),"
            " coalesce(sum(read_24h), 0) FROM network_summary"
        ).fetchone()
    assert row is not None
    return NetworkNow(refreshed_at=row[0], remote_meters=int(row[1]), read_interval=int(row[2]), read_24h=int(row[3]))


@dataclass(kw_only=True)
class AggregateRefresher:
    """Refreshes the dashboard aggregates every `every_s` in a thread until `stop()`."""

    conninfo: str
    every_s: float
    read_interval_min: int = READ_INTERVAL_MIN
    on_refresh: Callable[[NetworkNow], None] | None = None
    on_error: Callable[[Exception], None] | None = None
    refreshes: int = 0  # the periodic ones, while the network ran
    failures: int = 0
    last: NetworkNow | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-aggregate-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.refresh_once():
                self.refreshes += 1

    def refresh_once(self) -> bool:
        """One refresh; False when it failed (reported to `on_error`) or there are no aggregates yet."""
        try:
            now = refresh_dashboards(self.conninfo, self.read_interval_min)
        except psycopg.Error as exc:  # the database restarting: the next round tries again
            self.failures += 1
            if self.on_error is not None:
                self.on_error(exc)
            return False
        if now is None:
            return False
        self.last = now
        if self.on_refresh is not None:
            self.on_refresh(now)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


@dataclass(kw_only=True)
class LiveNetwork:
    """The running live phase; `stop()` ends it (idempotent, from any thread)."""

    started_at: datetime
    world: World
    collector: Collector
    ingest: subprocess.Popen[bytes]
    vee: subprocess.Popen[bytes]  # the continuous VEE service validates the live days as they land
    refresher: AggregateRefresher
    owner_conninfo: str
    _stop_collector: threading.Event
    _collector_thread: threading.Thread
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: bool = False

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stop_collector.set()
            self._collector_thread.join(timeout=COLLECTOR_JOIN_S)
            self.world.stop()
            self.refresher.stop()
            with contextlib.suppress(psycopg.Error):
                wait_quiet(self.owner_conninfo, timeout_s=30.0)
            stop_process(self.ingest)
            stop_process(self.vee)
            # Once more with everything stored, so the dashboards show the network as it was when it stopped
            # rather than up to one refresh period before.
            self.refresher.refresh_once()

    def meters_read_live(self) -> int:
        """Meters whose readings ingest stored during the live phase (meter_last_seen.last_received_at); a
        concentrator's first live read carries the boundary of the current interval, before the phase began."""
        with psycopg.connect(self.owner_conninfo) as conn:
            row = conn.execute(
                "SELECT count(*) FROM meter_last_seen WHERE last_received_at >= %s", (self.started_at,)
            ).fetchone()
        assert row is not None
        return int(row[0])


def start_live(
    gateways: list[GatewayPlan],
    *,
    seed: int,
    fault_shares: dict[str, float],
    baud: int,
    run_dir: Path,
    endpoint: Callable[[str], BrokerEndpoint],
    owner_conninfo: str,
    ingest_log: Path,
    poll_interval_s: float = LIVE_POLL_S,
    refresh_s: float = LIVE_REFRESH_S,
    on_refresh: Callable[[NetworkNow], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> LiveNetwork:
    """Start the simulators on a clock that follows now (speed 1), the collector, ingest and the refresh."""
    started_at = datetime.now(UTC)
    clock = SimClock(started_at, speed=1.0)
    # The concentrators read the interval that has just begun at once instead of waiting up to 30 minutes for
    # the next boundary: its timestamp is at most one read interval old.
    current_interval = datetime.fromtimestamp(started_at.timestamp() // DCU_INTERVAL_S * DCU_INTERVAL_S, UTC)
    run_dir.mkdir(parents=True, exist_ok=True)
    world = start_world(
        gateways,
        clock=clock,
        seed=seed,
        fault_shares=fault_shares,
        baud=baud,
        run_dir=run_dir,
        dcu_endpoint=endpoint("dcu"),
        dcu_start=current_interval,
    )
    try:
        config = parse_collector_config(
            collector_toml(
                collector_id="demo-collector",
                spool_dir=str(run_dir / "spool"),
                gateways=world.endpoints,
                baud=baud,
                poll_interval_s=poll_interval_s,
            ),
            source=str(run_dir / "collector.toml"),
            base_dir=run_dir,
        )
        # Readings stamped with the real time (the simulators' clock follows it at speed 1).
        collector = Collector(config, endpoint=endpoint("collector"))
        ingest = start_ingest(ingest_log)
        vee = start_vee(ingest_log.with_name("demo-vee.log"))
    except BaseException:
        world.stop()
        raise
    stop_collector = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(collector.run(stop_collector, None)), name="demo-live-collector", daemon=True
    )
    refresher = AggregateRefresher(conninfo=owner_conninfo, every_s=refresh_s, on_refresh=on_refresh, on_error=on_error)
    live = LiveNetwork(
        started_at=started_at,
        world=world,
        collector=collector,
        ingest=ingest,
        vee=vee,
        refresher=refresher,
        owner_conninfo=owner_conninfo,
        _stop_collector=stop_collector,
        _collector_thread=thread,
    )
    thread.start()
    refresher.start()
    return live


__all__ = [
    "LIVE_LOOKBACK",
    "LIVE_POLL_S",
    "LIVE_REFRESH_S",
    "READ_INTERVAL_MIN",
    "AggregateRefresher",
    "LiveNetwork",
    "NetworkNow",
    "count_rows",
    "refresh_dashboards",
    "start_ingest",
    "start_live",
    "stop_process",
    "wait_quiet",
]
