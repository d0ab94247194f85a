"""What every command needs: validated settings and handles on the database and broker."""

from __future__ import annotations

from functools import lru_cache

from rich.console import Console

from amr.broker.mosquitto import LocalMosquitto
from amr.credentials import read_or_create_credentials
from amr.db.server import DatabaseServer
from amr.settings import Settings, read_settings

console = Console()
err_console = Console(stderr=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return read_settings()


def database() -> DatabaseServer:
    return DatabaseServer.from_settings(settings())


def local_broker() -> LocalMosquitto | None:
    s = settings()
    if s.mqtt.url:
        return None
    return LocalMosquitto(
        base_dir=s.state_dir / "mosquitto",
        port=s.mqtt.port,
        host=s.mqtt.host,
        credentials=read_or_create_credentials(s.credentials_file),
    )
