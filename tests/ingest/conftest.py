"""Ingest tests count every message their workers receive, so they get a broker of their own: on the
session's shared broker, other packages' clients (collectors, DCUs) may still publish status or uplinks that
an ingest worker's subscriptions would also receive."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amr.broker.mosquitto import LocalMosquitto
from amr.db.server import DatabaseServer
from tests.services import own_broker


@pytest.fixture(scope="package")
def broker(db: DatabaseServer) -> Iterator[LocalMosquitto]:
    with own_broker(db.credentials, "amr-ingest-broker-") as started:
        yield started
