"""Nothing is lost when the broker goes away or the collector is killed: batches carry a seq that is assigned
in the spool transaction, so every seq from 1 to the last must reach the broker, and a repeat must be the
same bytes (what QoS 1 may legally repeat). The recorder confirms what it receives as ingest does after its
commit (docs/delivery.md): only then does the collector's spool let go of a batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import dcu_uplink_topic, readings_topic
from amr.credentials import read_or_create_credentials
from amr.messages import DcuRead, DcuUplink, encode
from collectors.config import parse_collector_config
from collectors.runner import run_collector
from collectors.spool import SPOOL_FILE
from simulators.clock import SimClock
from simulators.tcpproxy import TcpProxy
from tests.collectors.fleet import (
    Recorder,
    check_seqs,
    env_without_pytest,
    gateway_toml,
    start_gateway,
    wait_until,
)
from tests.services import endpoint, make_state_dir
from tests.services import own_broker as start_own_broker

pytestmark = pytest.mark.fault


@pytest.fixture()
def own_broker() -> Iterator[LocalMosquitto]:
    """A broker this test may stop and start (the session broker is shared by other tests)."""
    state = make_state_dir("amr-coll-cred-")
    with start_own_broker(read_or_create_credentials(state / "cred.toml"), "amr-coll-broker-") as started:
        yield started


def test_broker_outage_loses_nothing(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    clock = SimClock(datetime(2026, 10, 1, tzinfo=UTC))
    cid = "test-coll-outage"
    gw = start_gateway("tcp", "TOUT", [1, 2, 3, 4, 5], clock)
    text = f'collector_id = "{cid}"\nspool_dir = "{tmp_path}/spool"\n' + gateway_toml("g", gw, poll_interval_s=0.05)
    config = parse_collector_config(text, source="outage.toml")
    recorder = Recorder(endpoint(own_broker, "ingest"), [readings_topic(cid)], confirm=True).start()
    stop = threading.Event()
    result: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: result.update(snap=run_collector(config, stop, endpoint=endpoint(own_broker, "collector")))
    )
    try:
        worker.start()
        assert wait_until(lambda: len(recorder.raw(readings_topic(cid))) >= 5, 30)
        own_broker.stop()
        time.sleep(2.0)  # the collector keeps polling into its spool
        own_broker.start()
        before = len(recorder.raw(readings_topic(cid)))
        assert wait_until(lambda: len(recorder.raw(readings_topic(cid))) >= before + 5, 60)
    finally:
        stop.set()
        worker.join(60)
        gw.handle.stop()
    snap = result["snap"]
    assert snap.spool_depth == 0  # type: ignore[attr-defined]
    assert wait_until(lambda: _seq_max(recorder) >= (_spool_seq(tmp_path / "spool")), 30)
    recorder.stop()
    batches, _repeats = check_seqs(recorder.raw(readings_topic(cid)))
    assert max(batches) == _spool_seq(tmp_path / "spool")
    assert sum(len(b["readings"]) for b in batches.values()) == snap.readings  # type: ignore[attr-defined]


def _seq_max(recorder: Recorder) -> int:
    import json

    return max((json.loads(p)["seq"] for p in recorder.raw("amr/v1/readings/")), default=0)


def _spool_seq(spool_dir: Path) -> int:
    with sqlite3.connect(spool_dir / SPOOL_FILE) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    return int(row[0]) if row else 0


def _spool_rows(spool_dir: Path) -> int:
    with sqlite3.connect(spool_dir / SPOOL_FILE) as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


def test_kill_9_mid_run_loses_nothing(broker: LocalMosquitto, tmp_path: Path) -> None:
    clock = SimClock(datetime.now(UTC))  # the collector process stamps readings with real time
    cid = "test-coll-kill9"
    gw = start_gateway("tcp", "TKIL", [1, 2, 3, 4], clock)
    proxy = TcpProxy(target_host=broker.host, target_port=broker.port).start()
    spool = tmp_path / "spool"
    ep = endpoint(broker, "collector")
    text = (
        f'collector_id = "{cid}"\nspool_dir = "{spool}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {proxy.port}\nusername = "{ep.username}"\npassword = "{ep.password}"\n'
        + gateway_toml("g", gw, poll_interval_s=0.05)
    )
    path = tmp_path / "collector.toml"
    path.write_text(text)
    recorder = Recorder(endpoint(broker, "ingest"), [readings_topic(cid)], confirm=True).start()
    cmd = [sys.executable, "-m", "app", "collect", "--config", str(path), "--quiet"]
    env = env_without_pytest()
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    second = None
    try:
        assert wait_until(lambda: len(recorder.raw(readings_topic(cid))) >= 5, 60), first.stderr
        proxy.cut()  # the broker is unreachable: new batches stay in the spool
        time.sleep(1.5)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        spooled = _spool_rows(spool)
        assert spooled > 0, "the test meant to kill the collector with messages in its spool"
        proxy.restore()
        second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killed_seq = _spool_seq(spool)
        assert wait_until(lambda: _seq_max(recorder) > killed_seq + 3, 60)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr.read() if second.stderr else ""
        assert wait_until(lambda: _seq_max(recorder) >= _spool_seq(spool), 30)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        proxy.stop()
        gw.handle.stop()
        recorder.stop()
    batches, _repeats = check_seqs(recorder.raw(readings_topic(cid)))
    assert max(batches) == _spool_seq(spool)
    assert _spool_rows(spool) == 0
    assert {r["meter"] for b in batches.values() for r in b["readings"]} == {f"TKIL{u:03d}" for u in (1, 2, 3, 4)}


def test_concentrator_uplinks_are_normalized(broker: LocalMosquitto, tmp_path: Path) -> None:
    cid = "test-coll-bridge"
    dcu = "DCU-TEST-COLL-1"
    text = (
        f'collector_id = "{cid}"\nspool_dir = "{tmp_path}/spool"\n[concentrators]\n'
        f'topics = ["{dcu_uplink_topic(dcu)}"]\n'
    )
    config = parse_collector_config(text, source="bridge.toml")
    recorder = Recorder(endpoint(broker, "ingest"), [readings_topic(cid)]).start()
    stop = threading.Event()
    worker = threading.Thread(target=lambda: run_collector(config, stop, endpoint=endpoint(broker, "collector")))
    worker.start()
    try:
        ts = datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
        uplink = DcuUplink(
            dcu=dcu,
            seq=7,
            sent=ts,
            reads=[
                DcuRead(
                    serial="TBRG001",
                    ts=ts,
                    status=128,
                    values={"1.8.0": 12.5, "1.8.1": 7.5, "3.8.0": 2.0, "99.99.9": 1.0},
                )
            ],
        )
        dcu_ep = endpoint(broker, "dcu")
        from amr.broker.probe import new_client

        pub = new_client(dcu)  # a DCU's client id is its name: the ACL lets it write only under that
        pub.username_pw_set(dcu_ep.username, dcu_ep.password)
        pub.connect(dcu_ep.host, dcu_ep.port)
        pub.loop_start()
        time.sleep(1.0)  # let the collector subscribe
        pub.publish(dcu_uplink_topic(dcu), b"{not json", qos=1).wait_for_publish(5)
        pub.publish(dcu_uplink_topic(dcu), encode(uplink), qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(recorder.payloads(readings_topic(cid))) >= 1, 30)
        pub.loop_stop()
    finally:
        stop.set()
        worker.join(30)
        recorder.stop()
    readings = {r["obis"]: r for b in recorder.payloads(readings_topic(cid)) for r in b["readings"]}
    assert set(readings) == {"1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.3.8.0.255"}
    assert readings["1.0.1.8.0.255"]["value"] == 12.5 and readings["1.0.1.8.0.255"]["unit"] == "kWh"
    assert readings["1.0.3.8.0.255"]["unit"] == "kvarh"
    assert all(
        r["quality"] == 128 and r["meter"] == "TBRG001" and r["ts"] == "2026-10-01T00:30:00Z" for r in readings.values()
    )
