"""Real services for the tests: a throwaway TimescaleDB cluster and Mosquitto on free loopback ports.

Started once per test session by the fixtures in conftest.py. A missing program fails with a clear message
(run `make setup`); it never skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto
from amr.credentials import Credentials, read_or_create_credentials
from amr.db.server import DatabaseServer
from amr.settings import DatabaseSettings, MqttSettings, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_state_dir(prefix: str) -> Path:
    # Not pytest's tmp_path: it is mode 0700 under root, and the postgres user must reach the data directory.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@contextmanager
def running_services() -> Iterator[tuple[DatabaseServer, LocalMosquitto, Settings]]:
    state = make_state_dir("amr-test-")
    settings = Settings(
        state_dir=state,
        db=DatabaseSettings(port=free_port(), data_dir=state / "pg" / "data"),
        mqtt=MqttSettings(port=free_port()),
    )
    db = DatabaseServer.from_settings(settings, durable=False)
    broker = LocalMosquitto(
        base_dir=state / "mosquitto",
        port=settings.mqtt.port,
        credentials=read_or_create_credentials(settings.credentials_file),
    )
    try:
        db.up()
        broker.start()
        yield db, broker, settings
    finally:
        broker.stop()
        if db.cluster is not None:
            db.cluster.stop()
        if not os.environ.get("AMR_KEEP_TEST_STATE"):
            shutil.rmtree(state, ignore_errors=True)


def endpoint(broker: LocalMosquitto, account: str) -> BrokerEndpoint:
    return BrokerEndpoint(
        host=broker.host, port=broker.port, username=account, password=broker.credentials.mqtt_password(account)
    )


@contextmanager
def own_broker(credentials: Credentials, prefix: str = "amr-broker-") -> Iterator[LocalMosquitto]:
    """A Mosquitto of a test's own, for tests that count every message or restart the broker: on the session's
    shared broker, other packages' clients may still publish."""
    state = make_state_dir(prefix)
    broker = LocalMosquitto(base_dir=state / "mosquitto", port=free_port(), credentials=credentials)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)
