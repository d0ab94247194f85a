"""Ingest tests count every message their workers receive, so they get a broker of their own: on the
session's shared broker, other packages' clients (collectors, DCUs) may still publish status or uplinks that
an ingest worker's subscriptions would also receive."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from amr.broker.mosquitto import LocalMosquitto
from amr.db.server import DatabaseServer
from tests.services import free_port, make_state_dir


@pytest.fixture(scope="package")
def broker(db: DatabaseServer) -> Iterator[LocalMosquitto]:
    state = make_state_dir("amr-ingest-broker-")
    own = LocalMosquitto(base_dir=state / "mosquitto", port=free_port(), credentials=db.credentials)
    own.start()
    try:
        yield own
    finally:
        own.stop()
        shutil.rmtree(state, ignore_errors=True)
