"""Session-wide real services: one TimescaleDB cluster and one Mosquitto for the whole test run."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

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


@pytest.fixture(scope="session")
def make_database(db: DatabaseServer) -> Iterator[Callable[[str], DatabaseServer]]:
    """Factory for a separate, fully migrated database on the session's cluster, for tests that fill or
    empty whole tables (fleet generation, billing runs) without disturbing the shared one."""
    made: list[str] = []

    def make(name: str) -> DatabaseServer:
        settings = db.settings.model_copy(update={"db": db.settings.db.model_copy(update={"name": name})})
        server = DatabaseServer(settings=settings, credentials=db.credentials, cluster=db.cluster)
        server.up()
        made.append(name)
        return server

    yield make
    with psycopg.connect(db.admin_conninfo("postgres"), autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
