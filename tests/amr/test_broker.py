"""The project-local Mosquitto: authentication, the ACL (identities: each client publishes only under its own client
id) and a stale pid file after kill -9, against the real broker."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.mosquitto import PERSISTENCE, LocalMosquitto, acl_file_text
from amr.broker.probe import fetch_connect_result, fetch_publish_result, new_client
from amr.broker.publish import WindowedPublisher
from amr.broker.topics import confirm_topic, dcu_uplink_topic, events_topic, readings_topic, status_topic
from amr.settings import Settings
from tests.services import endpoint, own_broker

ALLOWED = ("Success", "No matching subscribers")
DENIED = "Not authorized"
WAIT_S = 10.0
SESSION_EXPIRY_S = 3600
PERSISTED_MESSAGES = 50
# Mosquitto saves once more than autosave_interval whole seconds have passed since the last save (+1 s); its loop
# wakes at least once a second, and a save of 50 small messages takes milliseconds (+1 s margin)
LOSS_WINDOW_S = 7.0


def _name(prefix: str) -> str:
    # unique per test: the session broker is shared with other packages' clients, and a client id is an identity
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _publish(broker: LocalMosquitto, account: str, client_id: str, topic: str) -> str:
    ep = endpoint(broker, account)
    return fetch_publish_result(ep.host, ep.port, ep.username, ep.password, topic, client_id=client_id)


def test_anonymous_client_is_refused(broker: LocalMosquitto) -> None:
    assert fetch_connect_result(broker.host, broker.port) == DENIED


def test_wrong_password_is_refused(broker: LocalMosquitto) -> None:
    assert fetch_connect_result(broker.host, broker.port, "collector", "wrong") in (
        DENIED,
        "Bad user name or password",
    )


def test_collector_publishes_under_its_own_client_id_only(broker: LocalMosquitto) -> None:
    me, other = _name("coll-a"), _name("coll-b")
    for topic in (readings_topic(me), events_topic(me), status_topic(me)):
        assert _publish(broker, "collector", me, topic) in ALLOWED, topic
    for topic in (
        readings_topic(other),
        events_topic(other),
        status_topic(other),
        dcu_uplink_topic(other),
        confirm_topic(me),  # a forged confirmation would make a source delete an unstored batch
        confirm_topic(other),
        f"{readings_topic(me)}/deeper",  # a name is one topic level
        "amr/v1/billing/secret",
    ):
        assert _publish(broker, "collector", me, topic) == DENIED, topic


def test_a_client_id_with_a_slash_reaches_no_deeper_topic(broker: LocalMosquitto) -> None:
    me = f"{_name('coll')}/x"
    for topic in (readings_topic(me), events_topic(me), status_topic(me)):
        assert _publish(broker, "collector", me, topic) == DENIED, topic
    assert _publish(broker, "dcu", me, dcu_uplink_topic(me)) == DENIED


def test_dcu_publishes_its_uplink_and_status_only(broker: LocalMosquitto) -> None:
    me, other = _name("dcu-a"), _name("dcu-b")
    for topic in (dcu_uplink_topic(me), status_topic(me)):
        assert _publish(broker, "dcu", me, topic) in ALLOWED, topic
    for topic in (
        dcu_uplink_topic(other),
        status_topic(other),
        readings_topic(me),  # the collectors' pattern lines apply to every account: denied to dcu explicitly
        events_topic(me),
        readings_topic(other),
        confirm_topic(me),
    ):
        assert _publish(broker, "dcu", me, topic) == DENIED, topic


def test_ingest_confirms_to_any_client_and_publishes_no_readings(broker: LocalMosquitto) -> None:
    me = _name("ingest")
    assert _publish(broker, "ingest", me, confirm_topic(_name("coll"))) in ALLOWED
    assert _publish(broker, "ingest", me, status_topic(me)) in ALLOWED
    for topic in (readings_topic("x"), events_topic("x"), dcu_uplink_topic("x"), status_topic(_name("coll"))):
        assert _publish(broker, "ingest", me, topic) == DENIED, topic


def test_monitor_publishes_no_data(broker: LocalMosquitto) -> None:
    me = _name("monitor")
    for topic in (readings_topic(me), events_topic(me), dcu_uplink_topic(me), confirm_topic(me), status_topic("c")):
        assert _publish(broker, "monitor", me, topic) == DENIED, topic


def test_documented_limits_of_the_acl(broker: LocalMosquitto) -> None:
    """What the mosquitto.py docstring says the ACL cannot prevent: pattern lines apply to every account, and an
    account reading a subtree cannot be denied writing in it under its own client id. If this fails, Mosquitto
    changed: update the docstring (and tighten the ACL)."""
    me = _name("x")
    assert _publish(broker, "collector", me, dcu_uplink_topic(me)) in ALLOWED
    assert _publish(broker, "ingest", me, readings_topic(me)) in ALLOWED
    assert _publish(broker, "monitor", me, status_topic(me)) in ALLOWED


class _Listener:
    """A connected client with `account`'s credentials and `client_id`, recording the topics it receives;
    `persistent`: a session that outlives the connection (the broker queues for it while it is away)."""

    def __init__(
        self,
        broker: LocalMosquitto,
        account: str,
        client_id: str,
        filters: list[str],
        *,
        persistent: bool = False,
        subscribe: bool = True,
    ) -> None:
        ep = endpoint(broker, account)
        self.client_id = client_id
        self.topics: list[str] = []
        self.received = threading.Condition()
        self.ready = threading.Event()
        self.client = new_client(client_id)
        self.client.username_pw_set(ep.username, ep.password)
        if subscribe:
            self.client.on_connect = lambda c, *_a: c.subscribe([(f, 1) for f in filters])
            self.client.on_subscribe = lambda *_a: self.ready.set()
        else:
            self.client.on_connect = lambda *_a: self.ready.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect(ep.host, ep.port, keepalive=10, clean_start=not persistent, properties=props)
        self.client.loop_start()
        assert self.ready.wait(WAIT_S), f"{client_id} not ready"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.received:
            self.topics.append(msg.topic)
            self.received.notify_all()

    def wait_for(self, topic: str) -> list[str]:
        with self.received:
            assert self.received.wait_for(lambda: topic in self.topics, WAIT_S), f"{topic} never arrived"
            return list(self.topics)

    def wait_count(self, count: int) -> list[str]:
        with self.received:
            self.received.wait_for(lambda: len(self.topics) >= count, WAIT_S)
            return list(self.topics)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_client_reads_only_its_own_confirmations(broker: LocalMosquitto) -> None:
    a, b = _name("coll-a"), _name("dcu-b")
    # Mosquitto grants every SUBSCRIBE; the ACL acts when it delivers
    snooper = _Listener(broker, "collector", a, [confirm_topic(a), confirm_topic(b), "amr/v1/confirm/#"])
    owner = _Listener(broker, "dcu", b, [confirm_topic(b)])
    try:
        assert _publish(broker, "ingest", _name("ingest"), confirm_topic(b)) in ALLOWED
        assert _publish(broker, "ingest", _name("ingest"), confirm_topic(a)) in ALLOWED
        assert owner.wait_for(confirm_topic(b)) == [confirm_topic(b)]
        # b's confirmation was acknowledged by the broker before a's was sent, and a client receives in order:
        # had the snooper been given b's, it would have it by the time a's arrives.
        seen = snooper.wait_for(confirm_topic(a))
        assert confirm_topic(b) not in seen
        assert set(seen) == {confirm_topic(a)}
    finally:
        snooper.close()
        owner.close()


def test_generated_acl_file_is_the_tables_and_private(broker: LocalMosquitto, settings: Settings) -> None:
    acl = broker.base_dir / "acl"
    assert acl.read_text() == acl_file_text()
    assert "pattern write amr/v1/readings/%c" in acl.read_text()
    for path in (settings.credentials_file, broker.base_dir / "passwd", acl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "collector:" in (broker.base_dir / "passwd").read_text()
    assert broker.credentials.mqtt_password("collector") not in (broker.base_dir / "passwd").read_text()


def test_acknowledged_messages_survive_kill_9_after_one_autosave(broker: LocalMosquitto) -> None:
    """The chosen persistence (PERSISTENCE, autosave every 5 s) really runs: messages acknowledged LOSS_WINDOW_S
    before a kill -9 are still queued for an absent persistent session after the restart (with the former
    autosave_interval 30 they were all lost)."""
    assert not PERSISTENCE.on_changes and PERSISTENCE.autosave_interval + 1 < LOSS_WINDOW_S
    me = _name("coll")
    with own_broker(broker.credentials, prefix="amr-broker-persist-") as mine:
        queue = _Listener(mine, "ingest", _name("queue"), [readings_topic(me)], persistent=True)
        queue.close()
        with WindowedPublisher(endpoint(mine, "collector"), client_id=me) as pub:
            sent = pub.publish_all((readings_topic(me), f"{i}".encode()) for i in range(PERSISTED_MESSAGES))
            assert sent == PERSISTED_MESSAGES and not pub.rejected
        time.sleep(LOSS_WINDOW_S)
        pid = mine.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        assert mine.start() is True
        back = _Listener(mine, "ingest", queue.client_id, [], persistent=True, subscribe=False)
        try:
            assert back.wait_count(PERSISTED_MESSAGES) == [readings_topic(me)] * PERSISTED_MESSAGES
        finally:
            back.close()


@pytest.fixture()
def private_broker(broker: LocalMosquitto) -> Iterator[LocalMosquitto]:
    with own_broker(broker.credentials, prefix="amr-broker-pid-") as mine:
        yield mine


def _wait_gone(pid: int) -> None:
    """Until `pid` is no process, or a zombie (nobody may reap the daemon in a container)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive after SIGKILL")


def _answers(broker: LocalMosquitto) -> bool:
    ep = endpoint(broker, "collector")
    return fetch_connect_result(ep.host, ep.port, ep.username, ep.password) == "Success"


def test_start_after_kill_9_ignores_the_stale_pid_file(private_broker: LocalMosquitto) -> None:
    pid = private_broker.pid()
    assert pid is not None and _answers(private_broker)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert private_broker.pid_file.read_text().strip() == str(pid)  # mosquitto had no chance to remove it
    assert private_broker.pid() is None
    assert private_broker.start() is True
    assert private_broker.pid() not in (None, pid)
    assert _answers(private_broker)


def test_a_reused_pid_is_not_taken_for_the_broker(private_broker: LocalMosquitto, broker: LocalMosquitto) -> None:
    """After a kill -9 the pid in the file may belong to another process by now: neither an unrelated program
    nor another broker (another config file) counts, and stop() must not signal them."""
    assert private_broker.stop() is True
    unrelated = subprocess.Popen(["sleep", "60"])
    other_broker = broker.pid()
    assert other_broker is not None
    try:
        for pid in (unrelated.pid, other_broker):
            private_broker.pid_file.write_text(f"{pid}\n")
            assert private_broker.pid() is None
            assert private_broker.stop() is False
        assert unrelated.poll() is None and broker.pid() == other_broker and _answers(broker)
        private_broker.pid_file.write_text(f"{unrelated.pid}\n")
        assert private_broker.start() is True
        assert private_broker.pid() not in (None, unrelated.pid)
        assert _answers(private_broker)
    finally:
        unrelated.kill()
        unrelated.wait()
