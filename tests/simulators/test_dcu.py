"""The DCU simulator against a real Mosquitto: format, values, faults, delivery until ingest confirms (the test's
Recorder plays ingest's part with the broker's `ingest` account), no loss across a broker outage or a kill -9
of the simulator (its outbox is on disk), and uplinks that fit the broker's maximum packet size."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from amr.broker.confirm import max_payload_bytes
from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import confirm_topic, dcu_uplink_topic
from amr.credentials import read_or_create_credentials
from amr.messages import DcuUplink, short_obis_to_full
from simulators.clock import SimClock
from simulators.dcu import DcuFaults, Outbox, OutboxItem, SimulatedDcu, start_dcu
from simulators.dcu.outbox import OUTBOX_FILE
from simulators.meter import SimulatedMeter
from simulators.tcpproxy import TcpProxy
from tests.collectors.fleet import Recorder, check_seqs, env_without_pytest, wait_until
from tests.services import endpoint, make_state_dir
from tests.services import own_broker as start_own_broker
from tests.simulators.dcu_proc import PASSWORD_VARIABLE

SPEED = 3600.0  # one 30-min interval every 0.5 s of real time
INTERVAL = timedelta(minutes=30)
T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


@pytest.fixture()
def own_broker() -> Iterator[LocalMosquitto]:
    """A broker of the test's own: it counts every message, and may be stopped."""
    state = make_state_dir("amr-dcu-cred-")
    with start_own_broker(read_or_create_credentials(state / "cred.toml"), "amr-dcu-broker-") as started:
        yield started
    shutil.rmtree(state, ignore_errors=True)


def uplinks(recorder: Recorder) -> list[DcuUplink]:
    return [msgspec.json.decode(p, type=DcuUplink) for p in recorder.raw("amr/v1/dcu/")]


def reads_of(recorder: Recorder) -> set[tuple[str, datetime]]:
    return {(r.serial, r.ts) for m in uplinks(recorder) for r in m.reads}


def outbox_seqs(outbox_dir: Path) -> list[int]:
    with sqlite3.connect(outbox_dir / OUTBOX_FILE) as db:
        return [int(s) for (s,) in db.execute("SELECT seq FROM items ORDER BY seq")]


def test_uplink_format_values_and_faults(broker: LocalMosquitto, tmp_path: Path) -> None:
    meters = [SimulatedMeter(serial=f"VN26DCU{i:05d}", seed=100 + i, tariff_class="household") for i in range(5)]
    clock = SimClock(T0 - timedelta(minutes=1), SPEED)
    dcu_id = "DCU-TEST-0001"
    sub = Recorder(endpoint(broker, "ingest"), [dcu_uplink_topic(dcu_id)], confirm=True).start()
    down, up = T0 + 3 * INTERVAL + timedelta(minutes=5), T0 + 5 * INTERVAL + timedelta(minutes=5)
    faults = DcuFaults(duplicate_every=3, reorder_every=4, power_down=((down, up),))
    dcu = start_dcu(
        dcu_id, meters, endpoint(broker, "dcu"), clock, 1800, faults=faults, start=T0, outbox_dir=tmp_path / "ob"
    )
    try:
        assert wait_until(lambda: len(dcu.dcu.read_times) >= 10, 30)
    finally:
        dcu.stop()
    expected = {(m.serial, ts) for m in meters for ts in dcu.dcu.read_times}
    assert dcu.dcu.read_times[:10] == [T0 + k * INTERVAL for k in range(10)]  # none missed, power-down included
    assert wait_until(lambda: reads_of(sub) >= expected, 10), (
        sorted(expected - reads_of(sub))[:5],
        dcu.published_count,
        dcu.queued_count,
        dcu.publisher.rejected_count,
    )
    sub.stop()
    received = uplinks(sub)
    seqs = [m.seq for m in received]
    assert len(seqs) > len(set(seqs))  # duplicates: same seq twice
    assert seqs != sorted(seqs)  # out of order
    assert all(m.dcu == dcu_id and m.v == 1 for m in received)
    # docs/delivery.md: where to confirm, and the seq as ASCII digits
    with sub.lock:
        deliveries = list(sub.deliveries)
    assert all(d.response_topic == confirm_topic(dcu_id) for d in deliveries)
    assert [d.message_id for d in deliveries] == seqs
    by_meter = {m.serial: m for m in meters}
    for message in received:
        for read in message.reads:
            truth = by_meter[read.serial].read_registers(read.ts)
            assert set(read.values) >= {"1.8.0", "1.8.1", "1.8.2", "1.8.3", "2.8.0"}
            for short, value in read.values.items():
                assert value == pytest.approx(truth[short_obis_to_full(short)], abs=0.0006)
            assert read.status == int(truth["0.0.96.10.1.255"])
    events = [e for m in received for e in m.events]
    assert {(e.serial, e.event, e.ts) for e in events} == {
        (m.serial, kind, ts) for m in meters for kind, ts in (("power_down", down), ("power_up", up))
    }


def test_uplinks_stay_in_the_outbox_until_confirmed(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    meters = [SimulatedMeter(serial=f"VN26DCUC{i:04d}", seed=150 + i) for i in range(2)]
    dcu_id = "DCU-TEST-CONF"
    sub = Recorder(endpoint(own_broker, "ingest"), [dcu_uplink_topic(dcu_id)], confirm=True)
    sub.confirming.clear()
    sub.start()
    clock = SimClock(T0 - timedelta(minutes=1), SPEED)
    dcu = start_dcu(dcu_id, meters, endpoint(own_broker, "dcu"), clock, 1800, outbox_dir=tmp_path / "ob")
    try:
        assert wait_until(lambda: len(sub.deliveries) >= 4, 30)
        received = {m.seq for m in uplinks(sub)}
        # PUBACKed (the subscriber has them) but not confirmed: still in the outbox.
        assert wait_until(lambda: dcu.published_count >= len(received), 10)
        assert received <= set(dcu.dcu.outbox.seqs())
        sub.confirming.set()
        sub.confirm_received()
        assert wait_until(lambda: not received & set(dcu.dcu.outbox.seqs()), 10)
        assert dcu.publisher.confirmed_count >= len(received)
    finally:
        dcu.stop()  # ingest was heard confirming: the stop waits for the last confirmations
        sub.stop()
    assert outbox_seqs(tmp_path / "ob") == []


def test_puback_only_mode_for_a_head_end_that_does_not_confirm(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    meters = [SimulatedMeter(serial=f"VN26DCUP{i:04d}", seed=170 + i) for i in range(2)]
    dcu_id = "DCU-TEST-PUBACK"
    sub = Recorder(endpoint(own_broker, "ingest"), [dcu_uplink_topic(dcu_id)]).start()  # confirms nothing
    clock = SimClock(T0 - timedelta(minutes=1), SPEED)
    dcu = start_dcu(dcu_id, meters, endpoint(own_broker, "dcu"), clock, 1800, outbox_dir=tmp_path / "ob", confirm=False)
    try:
        assert wait_until(lambda: len(sub.deliveries) >= 4, 30)
        assert wait_until(lambda: len(dcu.dcu.outbox) == 0, 10)  # gone on PUBACK
    finally:
        dcu.stop()
        sub.stop()
    with sub.lock:
        assert all(d.response_topic is None and d.message_id is None for d in sub.deliveries)


def test_nothing_lost_across_a_broker_outage(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    meters = [SimulatedMeter(serial=f"VN26DCUO{i:04d}", seed=200 + i) for i in range(3)]
    dcu_id = "DCU-TEST-0002"
    sub = Recorder(endpoint(own_broker, "ingest"), [dcu_uplink_topic(dcu_id)], confirm=True).start()
    clock = SimClock(T0 - timedelta(minutes=1), SPEED)
    dcu = start_dcu(dcu_id, meters, endpoint(own_broker, "dcu"), clock, 1800, start=T0, outbox_dir=tmp_path / "ob")
    try:
        assert wait_until(lambda: dcu.published_count >= 3, 30)
        own_broker.stop()
        time.sleep(2.5)  # ~5 intervals while the broker is away
        buffered = dcu.queued_count
        own_broker.start()
        assert wait_until(lambda: len(dcu.dcu.read_times) >= 14, 30)
    finally:
        dcu.stop()
    assert buffered >= 3
    assert dcu.dropped_count == 0
    expected = {(m.serial, ts) for m in meters for ts in dcu.dcu.read_times}
    assert wait_until(lambda: reads_of(sub) >= expected, 15), sorted(expected - reads_of(sub))[:5]
    assert dcu.dcu.read_times == [T0 + k * INTERVAL for k in range(len(dcu.dcu.read_times))]
    sub.stop()
    assert outbox_seqs(tmp_path / "ob") == []


def _spawn_dcu(dcu_id: str, port: int, password: str, outbox: Path, anchor_real: float) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "tests.simulators.dcu_proc", "--dcu", dcu_id, "--port", str(port),
        "--outbox", str(outbox), "--serial-prefix", "VN26DCUK",
        "--anchor-real", str(anchor_real), "--anchor-sim", (T0 - timedelta(minutes=1)).isoformat(),
        "--speed", str(SPEED),
    ]  # fmt: skip
    env = env_without_pytest() | {PASSWORD_VARIABLE: password}
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_outbox_survives_a_kill_9_of_the_simulator(own_broker: LocalMosquitto, tmp_path: Path) -> None:
    """Uplinks buffered while the broker is unreachable survive a kill -9 of the DCU process; the restarted DCU
    sends them, reuses no seq, back-reads the intervals it missed, and every read from the first interval on
    arrives."""
    dcu_id = "DCU-TEST-KILL"
    outbox = tmp_path / "outbox"
    proxy = TcpProxy(target_host=own_broker.host, target_port=own_broker.port).start()
    sub = Recorder(endpoint(own_broker, "ingest"), [dcu_uplink_topic(dcu_id)], confirm=True).start()
    password = own_broker.credentials.mqtt_password("dcu")
    anchor = time.time()
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(_spawn_dcu(dcu_id, proxy.port, password, outbox, anchor))
        assert wait_until(lambda: len(sub.deliveries) >= 3, 30)
        proxy.cut()
        assert wait_until(lambda: len(outbox_seqs(outbox)) >= 4, 30)  # buffered while unreachable
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        held = outbox_seqs(outbox)
        time.sleep(1.0)  # two intervals while the DCU is down: read back at its restart
        proxy.restore()
        procs.append(_spawn_dcu(dcu_id, proxy.port, password, outbox, anchor))
        assert wait_until(lambda: {m.seq for m in uplinks(sub)} >= set(held), 30)
        newest = max(held)
        assert wait_until(lambda: max(m.seq for m in uplinks(sub)) >= newest + 6, 30)
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        proxy.stop()
        sub.stop()
    by_seq, _repeats = check_seqs(sub.raw("amr/v1/dcu/"))  # seq 1..max, a repeat is the same bytes
    assert max(by_seq) == max(m.seq for m in uplinks(sub))
    stamps = sorted({ts for _, ts in reads_of(sub)})
    assert stamps == [stamps[0] + k * INTERVAL for k in range(len(stamps))], "an interval is missing"
    assert {s for s, _ in reads_of(sub)} == {f"VN26DCUK{i:04d}" for i in range(3)}
    assert all(len({s for s, ts in reads_of(sub) if ts == t}) == 3 for t in stamps)
    assert outbox_seqs(outbox) == []  # confirmed, and the clean stop waited for the last confirmations


def test_amr_simulate_hands_the_dcus_the_project_broker_and_state_dir(tmp_path: Path) -> None:
    """`amr simulate --dcu 1` resolves the project's settings (here AMR_STATE_DIR and AMR_MQTT_PORT) and gives the
    DCU starter its broker (account dcu) and state directory: the DCU publishes there and keeps its outbox under
    <state dir>/dcu-outbox."""
    state = make_state_dir("amr-dcu-sim-")
    dcu_id = "DCU-SIM-0000"  # the starter's default prefix, first index
    listing = tmp_path / "listing.json"
    with start_own_broker(read_or_create_credentials(state / "credentials.toml"), "amr-dcu-sim-broker-") as broker:
        sub = Recorder(endpoint(broker, "ingest"), [dcu_uplink_topic(dcu_id)], confirm=True).start()
        env = {k: v for k, v in env_without_pytest().items() if k not in ("AMR_MQTT_URL", "AMR_DATABASE_URL")}
        env |= {"AMR_STATE_DIR": str(state), "AMR_MQTT_PORT": str(broker.port), "AMR_CONFIG": str(tmp_path / "none")}
        cmd = [sys.executable, "-m", "app", "simulate", "--dcu", "1", "--meters-per-gateway", "2",
               "--speed", str(SPEED), "--listing", str(listing)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: listing.exists() or proc.poll() is not None, 60)
            assert proc.poll() is None, proc.communicate()
            (row,) = json.loads(listing.read_text())["listeners"]
            assert row["endpoint"] == f"mqtt {broker.host}:{broker.port} {dcu_uplink_topic(dcu_id)}", row
            assert row["outbox"] == str(state / "dcu-outbox" / dcu_id), row
            assert wait_until(lambda: len(uplinks(sub)) >= 2, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
            sub.stop()
    assert proc.returncode == 0
    assert (state / "dcu-outbox" / dcu_id / OUTBOX_FILE).is_file()
    shutil.rmtree(state, ignore_errors=True)


def test_outbox_is_bounded_persistent_and_ordered(tmp_path: Path) -> None:
    box = Outbox(tmp_path, limit=3)
    for seq in range(1, 6):
        box.put(OutboxItem(seq=seq, payload=b"%d" % seq))
    assert box.dropped == 2 and len(box) == 3 and box.seqs() == [3, 4, 5]
    box.put(OutboxItem(seq=6, payload=b"6"), held=True)  # the reorder fault: 6 goes out behind 7
    assert [r.seq for r in box.read_after((-1, -1), 10)] == [4, 5]  # a held message is not sent yet
    box.close()
    again = Outbox(tmp_path, limit=3)  # a restart: what was stored is there, the held one released
    assert again.seqs() == [4, 5, 6] and again.last_seq == 6
    again.put(OutboxItem(seq=7, payload=b"7"))
    again.put(OutboxItem(seq=8, payload=b"8"), held=True)
    again.put(OutboxItem(seq=9, payload=b"9"))
    again.release_held()
    assert [r.seq for r in again.read_after((-1, -1), 10)] == [7, 9, 8]
    assert again.confirm([7, 8]) == 2 and again.seqs() == [9]
    again.close()


def test_uplinks_are_split_below_the_broker_limit_and_an_item_that_never_fits_is_refused(tmp_path: Path) -> None:
    meters = [SimulatedMeter(serial=f"VN26DCUS{i:04d}", seed=400 + i) for i in range(40)]
    dcu_id = "DCU-TEST-SPLIT"
    limit = 2_000  # bytes: a packet holds a few reads
    dcu = SimulatedDcu(dcu_id=dcu_id, meters=meters, clock=SimClock.fixed(T0), outbox=Outbox(tmp_path / "a"))
    dcu.set_max_packet(limit)
    dcu.step(T0, T0)
    box = dcu.outbox
    payloads = [r.payload for r in box.read_after((-1, -1), 1000)]
    assert len(payloads) > 5
    assert all(len(p) <= max_payload_bytes(limit, dcu_uplink_topic(dcu_id), dcu_id) for p in payloads)
    sent = [msgspec.json.decode(p, type=DcuUplink) for p in payloads]
    assert sorted(r.serial for m in sent for r in m.reads) == sorted(m.serial for m in meters)  # each once
    assert [m.seq for m in sent] == list(range(1, len(sent) + 1))
    assert dcu.refused == 0
    # The limit is kept for the next start (uplinks sealed before the next CONNACK fit too).
    assert SimulatedDcu(dcu_id=dcu_id, meters=meters, clock=dcu.clock, outbox=box).max_packet_bytes == limit
    tiny = SimulatedDcu(dcu_id=dcu_id, meters=meters[:2], clock=dcu.clock, outbox=Outbox(tmp_path / "b"))
    tiny.set_max_packet(300)  # not even one read fits
    tiny.step(T0, T0)
    assert tiny.refused == 2 and len(tiny.outbox) == 0
    reasons = [reason for _, reason in tiny.outbox.refused()]
    assert len(reasons) == 2 and all("maximum packet size is 300 bytes" in r for r in reasons), reasons
