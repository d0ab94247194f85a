"""The project-local Mosquitto: authentication and ACLs, against the real broker."""

from __future__ import annotations

import stat

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.probe import fetch_connect_result, fetch_publish_result
from amr.broker.topics import dcu_uplink_topic, readings_topic
from amr.settings import Settings
from tests.services import endpoint


def test_anonymous_client_is_refused(broker: LocalMosquitto) -> None:
    assert fetch_connect_result(broker.host, broker.port) == "Not authorized"


def test_wrong_password_is_refused(broker: LocalMosquitto) -> None:
    assert fetch_connect_result(broker.host, broker.port, "collector", "wrong") in (
        "Not authorized",
        "Bad user name or password",
    )


def test_collector_publishes_to_its_topics_only(broker: LocalMosquitto) -> None:
    ep = endpoint(broker, "collector")
    ok = fetch_publish_result(ep.host, ep.port, ep.username, ep.password, readings_topic("c1"))
    assert ok in ("Success", "No matching subscribers")
    denied = fetch_publish_result(ep.host, ep.port, ep.username, ep.password, "amr/v1/billing/secret")
    assert denied == "Not authorized"
    spoof = fetch_publish_result(ep.host, ep.port, ep.username, ep.password, dcu_uplink_topic("dcu-1"))
    assert spoof == "Not authorized"


def test_ingest_may_not_publish_readings(broker: LocalMosquitto) -> None:
    ep = endpoint(broker, "ingest")
    assert fetch_publish_result(ep.host, ep.port, ep.username, ep.password, readings_topic("x")) == "Not authorized"


def test_secrets_are_private(broker: LocalMosquitto, settings: Settings) -> None:
    for path in (settings.credentials_file, broker.base_dir / "passwd"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "collector:" in (broker.base_dir / "passwd").read_text()
    assert broker.credentials.mqtt_password("collector") not in (broker.base_dir / "passwd").read_text()
