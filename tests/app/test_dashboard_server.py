"""`amr dashboard` as an operator starts it: gunicorn (not Flask's development server) with several workers,
basic auth on every request, X-Forwarded-User trusted only with --trust-proxy-header on a loopback bind."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from amr.broker.mosquitto import LocalMosquitto
from amr.db.server import DatabaseServer
from amr.settings import Settings
from tests.app.platform_env import ROOT, external_env, free_port, http_get, wait_until_listening

USER, PASSWORD = "ops", "a-test-password-of-some-length"
WORKERS = 2


@contextmanager
def _dashboard(env: dict[str, str], log: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "dashboard", "--port", str(port), "--workers", str(WORKERS), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(port)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("gunicorn did not stop on SIGTERM within 30 s") from None


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_dashboards_answer_under_gunicorn_with_basic_auth(
    db: DatabaseServer, broker: LocalMosquitto, settings: Settings, tmp_path: Path
) -> None:
    env = external_env(db, broker, settings, tmp_path / "state") | {
        "AMR_DASHBOARD_USER": USER,
        "AMR_DASHBOARD_PASSWORD": PASSWORD,
    }
    log = tmp_path / "dashboard.log"
    with _dashboard(env, log) as (proc, port):
        url = f"http://127.0.0.1:{port}/"
        status, headers, _ = http_get(url)
        assert status == 401, log.read_text()
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert http_get(url, user=USER, password="wrong")[0] == 401
        status, headers, body = http_get(url, user=USER, password=PASSWORD)
        assert status == 200, log.read_text()
        assert b"AMR dashboards" in body
        assert headers["Server"].startswith("gunicorn"), headers["Server"]
        status, _, _ = http_get(f"http://127.0.0.1:{port}/_dash-layout", user=USER, password=PASSWORD)
        assert status == 200  # Dash's own routes behind the same guard
        # the process tree: the `amr dashboard` process is gunicorn's master, with its workers as children
        assert len(_children(proc.pid)) == WORKERS
        assert proc.poll() is None
    assert proc.returncode == 0, log.read_text()[-2000:]


def test_proxy_header_trusted_only_when_asked_and_on_loopback(
    db: DatabaseServer, broker: LocalMosquitto, settings: Settings, tmp_path: Path
) -> None:
    env = external_env(db, broker, settings, tmp_path / "state") | {
        "AMR_DASHBOARD_USER": USER,
        "AMR_DASHBOARD_PASSWORD": PASSWORD,
    }
    proxied = {"X-Forwarded-User": "alice"}
    with _dashboard(env, tmp_path / "plain.log") as (_, port):
        assert http_get(f"http://127.0.0.1:{port}/", headers=proxied)[0] == 401
    with _dashboard(env, tmp_path / "proxy.log", "--trust-proxy-header") as (_, port):
        url = f"http://127.0.0.1:{port}/"
        assert http_get(url, headers=proxied)[0] == 200
        assert http_get(url)[0] == 401  # no header: basic auth as before
        assert http_get(url, user=USER, password=PASSWORD)[0] == 200
    refused = subprocess.run(
        [sys.executable, "-m", "app", "dashboard", "--host", "0.0.0.0", "--trust-proxy-header"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "--trust-proxy-header" in refused.stderr and "loopback" in refused.stderr
