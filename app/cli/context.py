"""What every command needs: validated settings and handles on the database and broker.

The core modules are imported inside the functions: `amr --help` imports every command module, and settings
(pydantic) and the database handle (psycopg) are only needed once a command runs."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from amr.broker.mosquitto import LocalMosquitto
    from amr.db.server import DatabaseServer
    from amr.settings import Settings

console = Console()
err_console = Console(stderr=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    from amr.settings import read_settings

    return read_settings()


def database() -> DatabaseServer:
    from amr.db.server import DatabaseServer

    return DatabaseServer.from_settings(settings())


def local_broker() -> LocalMosquitto | None:
    from amr.broker.mosquitto import LocalMosquitto
    from amr.credentials import read_or_create_credentials

    s = settings()
    if s.mqtt.url:
        return None
    return LocalMosquitto(
        base_dir=s.state_dir / "mosquitto",
        port=s.mqtt.port,
        host=s.mqtt.host,
        credentials=read_or_create_credentials(s.credentials_file),
    )
