"""`amr up` / `amr status` / `amr down` as an operator runs them, with the session's database and broker as
external servers: every service runs, each ingest worker serves its own Prometheus endpoint, a `kill -9` of an
ingest worker is followed by its restart (new pid, restarts 1, its endpoint answers again) and every reading
published meanwhile is stored, and `amr down` leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import readings_topic
from amr.db.server import DatabaseServer, Role
from amr.messages import Reading, columnar_from_readings, encode
from amr.settings import Settings
from app.services.config import ServicesConfig, read_services_config
from app.services.supervisor import RotatingLog, backoff_s
from tests.app.platform_env import ROOT, external_env, free_port, http_get
from tests.ingest.helpers import drop_session, publish_paho
from tests.services import endpoint

pytestmark = pytest.mark.fault

METERS = 20
INGEST_WORKERS = 2  # two endpoints: each must report its own worker only
READINGS_PER_BATCH = 100
BATCHES_BEFORE, BATCHES_DURING = 5, 15  # before the kill, and while the worker is dead / restarting
USER, PASSWORD = "ops", "a-test-password-of-some-length"
TIMEOUT_S = 120.0


def _amr(env: dict[str, str], *args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _status(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = _amr(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)["services"]}


def _wait(pred: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _processes_of(state_dir: Path) -> list[int]:
    """Every process started with this state dir in its environment (the supervisor, its children, theirs)."""
    marker = f"AMR_STATE_DIR={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _add_meters(db: DatabaseServer, prefix: str) -> None:
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        company = conn.execute("SELECT code FROM power_companies ORDER BY code LIMIT 1").fetchone()
        assert company is not None
        conn.execute(
            "INSERT INTO meters (serial, city, power_company, tariff_class, meter_kind, remote_read, protocol)"
            " SELECT %s || lpad(g::text, 4, '0'), 'HN', %s, 'household', 'smart', true, 'dcu-mqtt'"
            " FROM generate_series(1, %s) g",
            (prefix, company[0], METERS),
        )


def _batch(source: str, seq: int, prefix: str, start: datetime) -> bytes:
    readings = [
        Reading(
            meter=f"{prefix}{1 + k % METERS:04d}",
            obis="1.0.1.8.0.255",
            ts=start + timedelta(minutes=15 * (k // METERS)),
            value=float(k),
            unit="kWh",
        )
        for k in range(seq * READINGS_PER_BATCH, (seq + 1) * READINGS_PER_BATCH)
    ]
    columnar = columnar_from_readings(source, seq, readings)
    assert columnar is not None
    return encode(columnar)


def _stored(db: DatabaseServer, prefix: str) -> int:
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM readings r JOIN meters m USING (meter_id) WHERE m.serial LIKE %s", (prefix + "%",)
        ).fetchone()
    return int(row[0]) if row else 0


def _validated(db: DatabaseServer, prefix: str) -> tuple[int, int]:
    """(validated days, units still pending) of the test's meters."""
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM vee_daily d JOIN meters m USING (meter_id) WHERE m.serial LIKE %s),"
            " (SELECT count(*) FROM vee_pending p JOIN meters m USING (meter_id) WHERE m.serial LIKE %s)",
            (prefix + "%", prefix + "%"),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a Prometheus text endpoint, parsed by prometheus_client's own parser (a malformed
    exposition raises)."""
    status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("text/plain"), headers["Content-Type"]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _stored_by_worker(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        dict(labels)["worker"]: value
        for (name, labels), value in samples.items()
        if name == "amr_ingest_readings_stored_total"
    }


def test_up_status_kill_restart_down(
    db: DatabaseServer, broker: LocalMosquitto, settings: Settings, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    state = tmp_path / "state"
    env = external_env(db, broker, settings, state) | {
        "AMR_DASHBOARD_USER": USER,
        "AMR_DASHBOARD_PASSWORD": PASSWORD,
        "COLUMNS": "200",  # the status table unwrapped
    }
    web_port = free_port()
    metrics_base = free_port()  # workers on base + 1, base + 2: free in practice (ephemeral range, just released)
    config = tmp_path / "amr-services.toml"
    config.write_text(
        "[services]\n"
        f"ingest_workers = {INGEST_WORKERS}\n"
        f'ingest_name = "svc-{tag}"\n'
        f"ingest_metrics_port = {metrics_base}\n"
        "refresh_every_s = 60\n"
        "[services.dashboards]\n"
        f"port = {web_port}\nworkers = 1\nthreads = 2\n"
        "[services.restart]\n"
        "backoff_initial_s = 0.5\n"
    )
    prefix = f"SVC-{tag}-"
    _add_meters(db, prefix)
    source = f"svc-col-{tag}"
    topic = readings_topic(source)
    start = datetime.fromtimestamp((time.time() - 2 * 86_400) // 900 * 900, UTC)  # the past, on a 15-min boundary
    messages = [(topic, _batch(source, seq, prefix, start)) for seq in range(BATCHES_BEFORE + BATCHES_DURING)]
    publisher = endpoint(broker, "collector")
    ingest_clients = [f"svc-{tag}-{i}-0" for i in range(1, INGEST_WORKERS + 1)]
    metrics_ports = [metrics_base + i for i in range(1, INGEST_WORKERS + 1)]
    total = (BATCHES_BEFORE + BATCHES_DURING) * READINGS_PER_BATCH
    try:
        up = _amr(env, "up", "--config", str(config))
        assert up.returncode == 0, up.stdout + up.stderr
        table = _amr(env, "status").stdout
        for name in ("ingest-1", "ingest-2", "dashboard-refresh", "vee", "dashboards"):
            assert name in table
        assert "external" in table
        assert f"http://127.0.0.1:{metrics_ports[0]}/metrics" in table, table
        services = _status(env)
        for name in ("ingest-1", "ingest-2", "dashboard-refresh", "vee", "dashboards"):
            assert services[name]["state"] == "running", services
            assert services[name]["pid"]
        assert services["ingest-2"]["metrics"] == f"http://127.0.0.1:{metrics_ports[1]}/metrics"
        assert services["dashboards"]["metrics"] == ""
        assert services["database"]["state"].startswith("external")
        assert http_get(f"http://127.0.0.1:{web_port}/", user=USER, password=PASSWORD)[0] == 200
        # the worker reports its throughput once it runs (its status file): it is subscribed
        _wait(lambda: _status(env)["ingest-1"]["throughput"] != "", "the ingest worker's status")
        _wait(lambda: _status(env)["ingest-2"]["throughput"] != "", "the second ingest worker's status")

        publish_paho(publisher, messages[:BATCHES_BEFORE])
        before = BATCHES_BEFORE * READINGS_PER_BATCH
        _wait(lambda: _stored(db, prefix) == before, "the first readings")
        # Each endpoint reports its own worker only, so the sum over the endpoints is what was stored (with one
        # status folder shared by the workers, every endpoint served every worker: twice the readings).
        for port, client in zip(metrics_ports, ingest_clients, strict=True):
            assert set(_stored_by_worker(_scrape(port))) == {client}

        def summed() -> float:
            return sum(sum(_stored_by_worker(_scrape(port)).values()) for port in metrics_ports)

        _wait(lambda: summed() == before, f"the endpoints to count {before} readings stored")  # files lag ~1 s
        samples = _scrape(metrics_ports[0])
        assert samples[("amr_ingest_worker_online", (("worker", ingest_clients[0]),))] == 1.0
        assert ("amr_ingest_dead_letters_total", (("reason", "schema"), ("worker", ingest_clients[0]))) in samples

        old_pid = int(services["ingest-1"]["pid"])
        os.kill(old_pid, signal.SIGKILL)
        publish_paho(publisher, messages[BATCHES_BEFORE:])  # while the worker is dead or restarting

        def restarted() -> bool:
            row = _status(env)["ingest-1"]
            return row["state"] == "running" and row["pid"] not in (None, old_pid)

        _wait(restarted, "the ingest worker's restart")
        row = _status(env)["ingest-1"]
        assert row["restarts"] == 1
        assert row["last_exit"] == "killed by SIGKILL"

        def reports_again() -> bool:
            try:  # the restarted process binds its port a moment after the supervisor counts it as running
                return set(_stored_by_worker(_scrape(metrics_ports[0]))) == {ingest_clients[0]}
            except urllib.error.URLError:
                return False

        _wait(reports_again, "the restarted worker's endpoint")
        _wait(lambda: _stored(db, prefix) == total, f"all {total} readings stored")
        # the VEE service validates what landed, with no command run: every marked unit is settled
        _wait(lambda: (v := _validated(db, prefix))[0] > 0 and v[1] == 0, "the VEE service's passes")
        assert "units validated" in _status(env)["vee"]["throughput"]
        assert "killed by SIGKILL" in (state / "logs" / "ingest-1.log").read_text()
        assert len(_processes_of(state)) >= 6  # supervisor, 2 ingest, refresh, vee, gunicorn master and worker
    finally:
        down = _amr(env, "down")
        for client in ingest_clients:
            drop_session(broker, client)
    assert down.returncode == 0, down.stdout + down.stderr
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in _processes_of(state)}
    assert left == {}, left
    after = _status(env)
    assert all(not row["pid"] for row in after.values()), after
    time.sleep(1.0)
    assert _stored(db, prefix) == total  # nothing stored twice after the stop either


def test_backoff_doubles_up_to_its_maximum() -> None:
    policy = ServicesConfig().restart.model_copy(update={"backoff_initial_s": 1.0, "backoff_max_s": 10.0})
    assert [backoff_s(policy, n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_logs_rotate_by_size_keeping_a_few_files(tmp_path: Path) -> None:
    policy = ServicesConfig().logs.model_copy(update={"max_bytes": 1_000, "backups": 2})
    log = RotatingLog(tmp_path / "x.log", policy)
    line = b"x" * 99 + b"\n"
    for _ in range(50):  # 5,000 bytes through a 1,000-byte file
        log.write(line)
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1", "x.log.2"]
    assert all(p.stat().st_size <= 1_000 for p in tmp_path.iterdir())


def test_services_file_errors_name_file_line_and_key(tmp_path: Path) -> None:
    from amr.errors import ConfigError

    path = tmp_path / "amr-services.toml"
    path.write_text("[services]\ningest_workers = 1\nvee_interval_s = 0\n")
    with pytest.raises(ConfigError) as caught:
        read_services_config(path)
    assert f"{path}:3" in str(caught.value) and "vee_interval_s" in str(caught.value)
    path.write_text('[services]\ncollectors = ["missing.toml"]\n')
    with pytest.raises(ConfigError) as caught:
        read_services_config(path)
    assert f"{path}:2" in str(caught.value) and "missing.toml" in str(caught.value)
    # worker 2's metrics port would be the dashboards' port: the second to bind would restart forever
    path.write_text("[services]\ningest_workers = 3\ningest_metrics_port = 8048\n[services.dashboards]\nport = 8050\n")
    with pytest.raises(ConfigError) as caught:
        read_services_config(path)
    assert f"{path}:3" in str(caught.value) and "ingest_metrics_port + 2 = 8050" in str(caught.value)
    assert "dashboards.port" in str(caught.value)


def test_metrics_ports_reach_the_children_and_default_off(tmp_path: Path) -> None:
    from app.services.plan import child_specs

    assert all("--metrics-port" not in c.args for c in child_specs(ServicesConfig(ingest_workers=2), tmp_path))
    specs = {c.name: c for c in child_specs(ServicesConfig(ingest_workers=2, ingest_metrics_port=9310), tmp_path)}
    assert [specs[n].metrics_port for n in ("ingest-1", "ingest-2")] == [9311, 9312]
    args = specs["ingest-2"].args
    assert args[args.index("--metrics-port") + 1] == "9312"
    # a status folder per worker: an endpoint serves every status file of its folder
    assert args[args.index("--status-dir") + 1] == str(tmp_path / "ingest" / "ingest-2")
