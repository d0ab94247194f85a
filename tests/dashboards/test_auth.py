"""The dashboards are authenticated by default: generated credentials (mode 0600) printed at start, a half-set
configuration refused, --no-auth only on loopback; through `amr dashboard` as a user starts it."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from amr.db.server import DatabaseServer
from amr.errors import ConfigError
from dashboards.auth import BasicAuth, credentials_file, is_loopback, read_or_create_credentials, resolve_auth
from tests.services import free_port

START_TIMEOUT_S = 60.0  # a loaded 2-core machine imports Dash and pandas slowly; never a speed assertion
ENV_VARS = ("AMR_DASHBOARD_USER", "AMR_DASHBOARD_PASSWORD")


def test_generated_credentials_are_stored_private_and_reused(tmp_path: Path) -> None:
    first = resolve_auth(state_dir=tmp_path, host="127.0.0.1", environ={})
    path = credentials_file(tmp_path)
    assert first.auth is not None and first.auth.user == "operator" and len(first.auth.password) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The notice says who logs in and where the password is, never the password itself.
    assert first.notice == f"user 'operator', password in {path} (mode 0600)"
    assert first.auth.password not in first.notice
    again = resolve_auth(state_dir=tmp_path, host="0.0.0.0", environ={})
    assert again.auth == first.auth
    # A file whose mode was loosened is tightened again; a broken one is refused by name, not regenerated.
    path.chmod(0o644)
    assert read_or_create_credentials(path) == first.auth
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text('user = "operator"\n')
    with pytest.raises(ConfigError, match=r"dashboard-credentials\.toml, key 'password'"):
        read_or_create_credentials(path)


def test_environment_credentials_take_precedence(tmp_path: Path) -> None:
    choice = resolve_auth(
        state_dir=tmp_path, host="0.0.0.0", environ={"AMR_DASHBOARD_USER": "ops", "AMR_DASHBOARD_PASSWORD": "pw"}
    )
    assert choice.auth == BasicAuth(user="ops", password="pw")
    assert "AMR_DASHBOARD_PASSWORD" in choice.notice and "pw" not in choice.notice.replace("PASSWORD", "")
    assert not credentials_file(tmp_path).exists()


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({"AMR_DASHBOARD_USER": "ops"}, "AMR_DASHBOARD_PASSWORD"),
        ({"AMR_DASHBOARD_USER": "ops", "AMR_DASHBOARD_PASSWORD": ""}, "AMR_DASHBOARD_PASSWORD"),
        ({"AMR_DASHBOARD_PASSWORD": "pw"}, "AMR_DASHBOARD_USER"),
    ],
)
def test_half_set_configuration_is_refused(tmp_path: Path, environ: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=f"set without {missing}"):
        resolve_auth(state_dir=tmp_path, host="127.0.0.1", environ=environ)
    assert not credentials_file(tmp_path).exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.20.0.5", "192.168.1.10", "dashboards.example.org"])
def test_no_auth_is_refused_off_loopback(tmp_path: Path, host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="allowed only on a loopback address"):
        resolve_auth(state_dir=tmp_path, host=host, no_auth=True, environ={})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"])
def test_no_auth_is_allowed_on_loopback(tmp_path: Path, host: str) -> None:
    choice = resolve_auth(state_dir=tmp_path, host=host, no_auth=True, environ={})
    assert choice.auth is None and "without authentication" in choice.notice
    assert not credentials_file(tmp_path).exists()


def test_no_auth_with_credentials_in_the_environment_is_ambiguous(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="contradict"):
        resolve_auth(
            state_dir=tmp_path,
            host="127.0.0.1",
            no_auth=True,
            environ={"AMR_DASHBOARD_USER": "ops", "AMR_DASHBOARD_PASSWORD": "pw"},
        )


# -- through the real command --------------------------------------------------------------------------------------


def _env(db: DatabaseServer | None, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env |= {"AMR_STATE_DIR": str(state_dir), "COLUMNS": "200", **extra}
    if db is not None:
        env |= {"AMR_DB_PORT": str(db.settings.db.port), "AMR_DB_NAME": db.settings.db.name}
        if db.settings.db.data_dir:
            env["AMR_DB_DATA_DIR"] = str(db.settings.db.data_dir)
    return env


def _status(url: str, auth: BasicAuth | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def _dashboard(env: dict[str, str], *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`amr dashboard` on a free loopback port, until it answers; yields its base URL and process."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "dashboard", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                _status(url + "/_dash-layout")
                break
            except OSError:
                assert time.monotonic() < deadline, "amr dashboard did not answer"
                time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_amr_dashboard_generates_credentials_and_requires_them(dash_db: tuple[DatabaseServer, Path]) -> None:
    db, _ = dash_db
    state_dir = db.settings.state_dir
    with _dashboard(_env(db, state_dir)) as (url, proc):
        auth = read_or_create_credentials(credentials_file(state_dir))  # the file the command created
        for path in ("/", "/_dash-layout", "/billing"):
            assert _status(url + path) == 401
            assert _status(url + path, BasicAuth(user=auth.user, password="wrong")) == 401
            assert _status(url + path, auth) == 200
    out, _ = proc.communicate()
    assert f"user 'operator', password in {credentials_file(state_dir)} (mode 0600)" in out
    assert auth.password not in out


def test_amr_dashboard_no_auth_serves_on_loopback(dash_db: tuple[DatabaseServer, Path]) -> None:
    db, _ = dash_db
    with _dashboard(_env(db, db.settings.state_dir), "--no-auth", "--host", "127.0.0.1") as (url, proc):
        assert _status(url + "/_dash-layout") == 200
    assert "without authentication" in proc.communicate()[0]


@pytest.mark.parametrize(
    ("args", "extra", "words"),
    [
        (["--no-auth", "--host", "0.0.0.0"], {}, "--no-auth: would serve the dashboards without authentication"),
        ([], {"AMR_DASHBOARD_USER": "ops"}, "AMR_DASHBOARD_USER is set without AMR_DASHBOARD_PASSWORD"),
        ([], {"AMR_DASHBOARD_PASSWORD": "pw"}, "AMR_DASHBOARD_PASSWORD is set without AMR_DASHBOARD_USER"),
    ],
)
def test_amr_dashboard_refuses_unsafe_configurations(
    tmp_path: Path, args: list[str], extra: dict[str, str], words: str
) -> None:
    port = str(free_port())
    # No database needed: the command refuses before it connects or listens.
    done = subprocess.run(
        [sys.executable, "-m", "app", "dashboard", "--port", port, *args],
        env=_env(None, tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr
    assert "dashboards on" not in done.stdout
    assert not credentials_file(tmp_path).exists()
