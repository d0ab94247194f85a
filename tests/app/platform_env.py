"""The environment of an `amr` process run by a test against the session's services as *external* ones
(AMR_DATABASE_URL / AMR_MQTT_URL), on a state directory of its own."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from base64 import b64encode
from email.message import Message
from pathlib import Path

from amr.broker.mosquitto import LocalMosquitto
from amr.db.server import DatabaseServer, Role
from amr.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def external_env(db: DatabaseServer, broker: LocalMosquitto, settings: Settings, state_dir: Path) -> dict[str, str]:
    """AMR_* variables naming the session's database and broker as external servers; the role passwords come
    from the session's credentials file, copied into `state_dir` (the platform reads them there)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(settings.credentials_file, state_dir / settings.credentials_file.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    env |= {
        "AMR_STATE_DIR": str(state_dir),
        "AMR_DATABASE_URL": db.url(Role.OWNER),
        "AMR_MQTT_URL": f"mqtt://ingest:{broker.credentials.mqtt_password('ingest')}@{broker.host}:{broker.port}",
    }
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(
    url: str, *, user: str = "", password: str = "", headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    """(status, headers, body) of a GET; HTTP errors are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    if user:
        request.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def wait_until_listening(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")
