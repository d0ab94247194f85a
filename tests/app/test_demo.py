"""`amr demo --non-interactive` end to end, in a database of its own on the session's services."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from amr.broker.mosquitto import LocalMosquitto
from amr.db.server import DatabaseServer, Role
from app.demo.run import DemoOptions, _serve, run_demo
from dashboards.auth import credentials_file, read_or_create_credentials
from tests.services import free_port, own_broker

pytestmark = pytest.mark.slow


@pytest.fixture()
def demo_broker(db: DatabaseServer) -> Iterator[LocalMosquitto]:
    with own_broker(db.credentials, "amr-demo-broker-") as started:
        yield started


def test_demo_runs_every_protocol_into_bills(
    make_database: Callable[[str], DatabaseServer],
    demo_broker: LocalMosquitto,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    broker = demo_broker
    db = make_database("demo_test")
    s = db.settings
    assert s.db.data_dir is not None
    # The demo's ingest worker is a child process: it finds the services through the environment.
    for key, value in {
        "AMR_STATE_DIR": s.state_dir,
        "AMR_DB_PORT": s.db.port,
        "AMR_DB_NAME": s.db.name,
        "AMR_DB_DATA_DIR": s.db.data_dir,
        "AMR_MQTT_PORT": broker.port,
    }.items():
        monkeypatch.setenv(key, str(value))
    console = Console(file=(tmp_path / "demo.log").open("w"), width=120)
    summary = run_demo(db, broker, DemoOptions(scale=0.00002, seed=3, serve=False, baud=38400), console)
    assert summary["meters simulated live"] > 50
    assert summary["readings stored"] > 100_000
    assert summary["customers billed"] > 0.9 * summary["meters simulated live"]
    exports = summary["exports"].split(", ")
    assert {Path(p).name for p in exports} >= {"bills.csv", "bills.parquet", "bills.xlsx"}
    assert all(Path(p).exists() for p in exports)
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        protocols: dict[str, int] = dict(
            conn.execute(
                "SELECT m.protocol, count(DISTINCT r.meter_id) FROM readings r JOIN meters m USING (meter_id)"
                " GROUP BY 1"
            ).fetchall()
        )
        runs = conn.execute("SELECT status FROM billing_runs WHERE run_id = %s", (summary["billing run"],)).fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    # Every protocol delivered readings through its real path.
    assert set(protocols) == {"modbus-tcp", "modbus-rtu-tcp", "modbus-rtu", "dlms", "dcu-mqtt"}
    assert runs is not None and runs[0] in ("released", "held")
    assert dead == (0,)
    # The demo then serves the dashboards (here in a daemon thread, as Ctrl-C cannot be sent to it), behind the
    # generated login of the state directory.
    monkeypatch.delenv("AMR_DASHBOARD_USER", raising=False)
    monkeypatch.delenv("AMR_DASHBOARD_PASSWORD", raising=False)
    login = read_or_create_credentials(credentials_file(s.state_dir))
    token = base64.b64encode(f"{login.user}:{login.password}".encode()).decode()
    port = free_port()
    threading.Thread(target=_serve, args=(db, DemoOptions(port=port), console), daemon=True).start()
    url = f"http://127.0.0.1:{port}/_dash-layout"
    deadline = time.monotonic() + 30
    while True:
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
            with urllib.request.urlopen(request, timeout=5) as page:
                assert "Hồ Chí Minh" in json.dumps(json.loads(page.read()), ensure_ascii=False)
                break
        except OSError:
            assert time.monotonic() < deadline, "the demo's dashboards did not answer"
            time.sleep(0.5)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401
