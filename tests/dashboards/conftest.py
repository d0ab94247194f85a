"""A live dashboard server over a seeded database, and one headless Chromium for the browser tests."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from amr.db.server import DatabaseServer, Role
from amr.settings import PROJECT_ROOT
from amr.timebase import local_today
from dashboards.app import create_app
from dashboards.auth import BasicAuth
from tests.dashboards import seed
from tests.services import make_state_dir

logging.getLogger("werkzeug").setLevel(logging.WARNING)

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class LiveDashboard:
    url: str
    db: DatabaseServer
    export_dir: Path
    auth: BasicAuth  # the server answers 401 without these credentials, as a deployed one does


@pytest.fixture(scope="session")
def vee_plan() -> seed.VeePlan:
    """The continuous VEE rows seeded into dash_db, relative to the day the session started."""
    return seed.plan_vee(local_today())


@pytest.fixture(scope="session")
def bill_plan() -> seed.BillPlan:
    """The continuous bill run and its corrections seeded into dash_db."""
    return seed.plan_bills()


@pytest.fixture(scope="session")
def dash_db(
    make_database: Callable[[str], DatabaseServer], vee_plan: seed.VeePlan, bill_plan: seed.BillPlan
) -> tuple[DatabaseServer, Path]:
    server = make_database("dash_test")
    export_dir = make_state_dir("amr-dash-exports-")
    (export_dir / "bills_2024-05_HN.csv").write_text(
        "customer_code,energy_kwh,total_vnd\nPD0100000001,212,648000\n", encoding="utf-8"
    )
    seed.seed(server.conninfo(Role.OWNER))
    seed.seed_billing(server.conninfo(Role.OWNER), str(export_dir))
    seed.seed_vee(server.conninfo(Role.OWNER), vee_plan)
    seed.seed_continuous_billing(server.conninfo(Role.OWNER), bill_plan)
    return server, export_dir


@pytest.fixture(scope="session")
def bill_runs(dash_db: tuple[DatabaseServer, Path]) -> seed.BillRuns:
    """The run ids of the seeded continuous bill run and of the rebill runs that correct it."""
    return seed.bill_runs(dash_db[0].conninfo(Role.OWNER))


@pytest.fixture(scope="session")
def empty_db(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    """A migrated database with nothing in it: no meters, no VEE pass, no billing run."""
    return make_database("dash_empty")


@contextmanager
def _serving(server: DatabaseServer, auth: BasicAuth) -> Iterator[str]:
    """The dashboards on a free loopback port over `server` (read-only role), guarded by `auth`; yields the URL."""
    app = create_app(server.conninfo(Role.READER), auth=auth)
    http: BaseWSGIServer = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="dash-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(timeout=10)
        app.server.config["AMR_DATA_SOURCE"].close()


@pytest.fixture(scope="session")
def live_dashboard(dash_db: tuple[DatabaseServer, Path]) -> Iterator[LiveDashboard]:
    server, export_dir = dash_db
    auth = BasicAuth(user="operator", password=secrets.token_urlsafe(16))
    with _serving(server, auth) as url:
        yield LiveDashboard(url=url, db=server, export_dir=export_dir, auth=auth)


@pytest.fixture(scope="session")
def empty_dashboard(empty_db: DatabaseServer, live_dashboard: LiveDashboard) -> Iterator[LiveDashboard]:
    """The dashboards over the empty database, with live_dashboard's credentials (the browser page logs in with
    those)."""
    with _serving(empty_db, live_dashboard.auth) as url:
        yield LiveDashboard(url=url, db=empty_db, export_dir=live_dashboard.export_dir, auth=live_dashboard.auth)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
