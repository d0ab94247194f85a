"""Fault injection end to end: simulator -> collector -> broker -> ingest -> TimescaleDB, each a real process.

The DLMS meters' load profiles are the ground truth: the model gives every 30-minute entry, and the collector
reads each meter's profile since its last successful read (kept in its spool), so every entry produced during
the run must end up stored exactly once whatever is killed or cut. Faults, one after the other in one run:
kill -9 of ingest, of the collector and of the simulator; a PostgreSQL restart; a broker restart; a network
cut between collector and broker (a TCP proxy the test controls).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.obis import BY_OBIS
from amr.settings import Settings
from amr.timebase import DAY_S
from simulators.dlms.objects import PROFILE_REGISTER_COLUMNS
from simulators.tcpproxy import TcpProxy
from tests.e2e.dlms_sim import e2e_meters
from tests.services import free_port, running_services

pytestmark = pytest.mark.fault

SPEED = 1800.0  # simulated seconds per real second: one 30-minute profile entry per real second
METERS = 4
PROFILE_INTERVAL_S = 1800
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_services() -> Iterator[tuple[DatabaseServer, object, Settings]]:
    # Own cluster and broker: this test restarts both.
    with running_services() as started:
        yield started


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AMR_STATE_DIR": str(settings.state_dir),
            "AMR_DB_PORT": str(settings.db.port),
            "AMR_DB_DATA_DIR": str(settings.db.data_dir),
            "AMR_MQTT_PORT": str(settings.mqtt.port),
            "AMR_DB_NAME": settings.db.name,
        }
    )
    env.pop("AMR_DATABASE_URL", None)
    env.pop("AMR_MQTT_URL", None)
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT
    )


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait(pred: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except psycopg.OperationalError:
            pass  # the database is restarting
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _profile_rows(conninfo: str) -> int:
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE channel_id = 1").fetchone()
    return int(row[0]) if row else 0


def test_every_profile_entry_is_stored_exactly_once_through_faults(own_services, tmp_path: Path) -> None:
    db, broker, settings = own_services
    owner = db.conninfo(Role.OWNER)
    with psycopg.connect(owner, autocommit=True) as conn:
        for i, m in enumerate(e2e_meters(METERS, 7)):
            conn.execute(
                "INSERT INTO meters (serial, city, power_company, tariff_class, meter_kind, remote_read,"
                " protocol, unit_id) VALUES (%s, 'HN', 'PD0100', 'household', 'smart', true, 'dlms', %s)",
                (m.serial, i + 16),
            )
    env = _env(settings)
    # The simulated run starts 20 days ago (ingest refuses readings from the future), on an interval boundary.
    sim_start = datetime.fromtimestamp((time.time() - 20 * DAY_S) // PROFILE_INTERVAL_S * PROFILE_INTERVAL_S, UTC)
    anchor_real = time.time()
    sim_port = free_port()
    sim_args = [
        "-m",
        "tests.e2e.dlms_sim",
        "--port",
        str(sim_port),
        "--meters",
        str(METERS),
        "--anchor-real",
        str(anchor_real),
        "--anchor-sim",
        sim_start.isoformat(),
        "--speed",
        str(SPEED),
    ]
    proxy = TcpProxy(target_host="127.0.0.1", target_port=broker.port).start()
    config = tmp_path / "collector.toml"
    lines = [
        'collector_id = "e2e-collector"',
        f'spool_dir = "{tmp_path / "spool"}"',
        "heartbeat_s = 1.0",
        "",
        "[broker]",
        'host = "127.0.0.1"',
        f"port = {proxy.port}",
        'username = "collector"',
        f'password = "{broker.credentials.mqtt_password("collector")}"',
        "",
    ]
    for i, m in enumerate(e2e_meters(METERS, 7)):
        lines += [
            "[[dlms_meters]]",
            f'serial = "{m.serial}"',
            'host = "127.0.0.1"',
            f"port = {sim_port}",
            f"logical_address = {16 + i}",
            "poll_interval_s = 1.0",
            "timeout_s = 3.0",
            "",
        ]
    config.write_text("\n".join(lines))
    collect_args = ["-m", "app", "collect", "--config", str(config), "--quiet"]
    ingest_args = ["-m", "app", "ingest", "--workers", "1", "--no-live", "--name", "e2e-ingest"]
    logs = tmp_path
    sim = _spawn(sim_args, env, logs / "sim.log")
    ingest = _spawn(ingest_args, env, logs / "ingest.log")
    collector = _spawn(collect_args, env, logs / "collector.log")
    try:

        def grows() -> None:
            before = _profile_rows(owner)
            _wait(lambda: _profile_rows(owner) > before + METERS * 3, "rows to keep arriving")

        _wait(lambda: _profile_rows(owner) > 0, "the first rows")
        grows()
        _kill9(ingest)  # 1. ingest dies; the broker keeps its persistent session's messages
        time.sleep(2)
        ingest = _spawn(ingest_args, env, logs / "ingest.log")
        grows()
        _kill9(collector)  # 2. the collector dies; its spool and the per-meter profile position survive
        time.sleep(2)
        collector = _spawn(collect_args, env, logs / "collector.log")
        grows()
        _kill9(sim)  # 3. the simulator dies; the meters' clocks and profiles go on when it is back
        time.sleep(3)
        sim = _spawn(sim_args, env, logs / "sim.log")
        grows()
        assert db.cluster is not None
        db.cluster.stop()  # 4. PostgreSQL restarts; ingest stops acknowledging and retries
        time.sleep(3)
        db.cluster.start()
        grows()
        broker.stop()  # 5. the broker restarts; persisted sessions and the collector's spool keep everything
        time.sleep(2)
        broker.start()
        grows()
        proxy.cut()  # 6. the network between collector and broker is cut
        time.sleep(4)
        proxy.restore()
        grows()
        for proc in (sim, collector, ingest):
            assert proc.poll() is None, f"a process died on its own: see the logs in {logs}"
        # Everything up to a little before now must arrive: the collector reads the profile once a second.
        sim_now = sim_start + timedelta(seconds=SPEED * (time.time() - anchor_real))
        last_expected = sim_now - timedelta(seconds=3 * PROFILE_INTERVAL_S)
        expected_ts = []
        t = sim_start
        while t <= last_expected:
            expected_ts.append(t)
            t += timedelta(seconds=PROFILE_INTERVAL_S)
        cutoff = expected_ts[-1]
        _wait(lambda: _stored_at(owner, cutoff) == METERS, "every meter's entry at the last expected instant")
    finally:
        for proc in (collector, sim):
            _stop(proc)
        time.sleep(2)
        _stop(ingest)
        proxy.stop()
    meters = e2e_meters(METERS, 7)
    # The registers the simulated meters capture in their load profile (the rates are read as registers only).
    energy_channels = {BY_OBIS[obis].channel_id: obis for obis in PROFILE_REGISTER_COLUMNS}
    with psycopg.connect(owner) as conn:
        query = "SELECT serial, meter_id FROM meters WHERE serial LIKE 'E2E-%'"
        ids: dict[str, int] = dict(conn.execute(query).fetchall())
        rows = conn.execute(
            "SELECT meter_id, channel_id, ts, value, count(*) OVER (PARTITION BY meter_id, channel_id, ts)"
            " FROM readings WHERE ts BETWEEN %s AND %s AND channel_id = ANY(%s)",
            (expected_ts[0], expected_ts[-1], list(energy_channels)),
        ).fetchall()
    stored = {(r[0], r[1], r[2]): r[3] for r in rows}
    assert all(r[4] == 1 for r in rows)  # the unique key makes this structural; kept as the stated property
    missing = []
    wrong = []
    for m in meters:
        profile = {ts: values for ts, values in m.load_profile(expected_ts[0], expected_ts[-1], PROFILE_INTERVAL_S)}
        for ts in expected_ts:
            for channel_id, obis in energy_channels.items():
                key = (ids[m.serial], channel_id, ts)
                if key not in stored:
                    missing.append(key)
                elif abs(stored[key] - profile[ts][obis]) > 1e-3:
                    wrong.append((key, stored[key], profile[ts][obis]))
    assert not missing, f"{len(missing)} profile entries lost, e.g. {missing[:5]}"
    assert not wrong, f"{len(wrong)} entries with wrong values, e.g. {wrong[:5]}"
    assert len(stored) >= METERS * len(expected_ts)


def _stored_at(conninfo: str, ts: datetime) -> int:
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT meter_id) FROM readings WHERE channel_id = 1 AND ts = %s", (ts,)
        ).fetchone()
    return int(row[0]) if row else 0
