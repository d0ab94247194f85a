"""Session-wide real services: one TimescaleDB cluster and one Mosquitto for the whole test run."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from amr.broker.mosquitto import LocalMosquitto
from amr.db.server import DatabaseServer, Role
from amr.settings import Settings
from tests.services import running_services


@pytest.fixture(scope="session")
def services() -> Iterator[tuple[DatabaseServer, LocalMosquitto, Settings]]:
    with running_services() as started:
        yield started


@pytest.fixture(scope="session")
def db(services: tuple[DatabaseServer, LocalMosquitto, Settings]) -> DatabaseServer:
    return services[0]


@pytest.fixture(scope="session")
def broker(services: tuple[DatabaseServer, LocalMosquitto, Settings]) -> LocalMosquitto:
    return services[1]


@pytest.fixture(scope="session")
def settings(services: tuple[DatabaseServer, LocalMosquitto, Settings]) -> Settings:
    return services[2]


@pytest.fixture()
def owner_conn(db: DatabaseServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        yield conn
