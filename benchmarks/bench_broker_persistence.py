"""Mosquitto's persistence settings: QoS 1 messages/s into a queued session, the cost of one save, and the
acknowledged messages a `kill -9` of the broker loses, for each setting beside no persistence at all (the
baseline), in the same run.

    .venv/bin/python -m benchmarks.bench_broker_persistence [--quick]

Mosquitto 2.0 keeps everything in memory and, at each autosave, rewrites its whole database and fsyncs it, in its
only thread: a save costs more the longer the queue (ingest away), and nothing is served meanwhile. So each setting
is measured with an empty queue and with a backlog, on a private broker:
1. a persistent session (the ingest account, session expiry a week) subscribes to readings and goes away, as
   ingest does when it is stopped; the backlog is published; the broker is stopped and started again, so session
   and backlog are on disk (the baseline keeps nothing on disk: it skips the restart and loses everything);
2. SIGUSR1 makes the broker save once: `save_s` is how long one save of that database takes;
3. one collector publishes reading batches (100 readings, ~3.7 KB, v2) with the project's WindowedPublisher for
   a random time in Sizes.publish_s (seeded per setting: where in the save cycle the kill falls is chance); the
   rate runs from its first publish to the last PUBACK;
4. right after the last PUBACK the broker gets SIGKILL and is started again; a marker message is published, and
   the session is drained up to it: acknowledged messages that did not come back are `lost`, their span at the
   measured rate is `loss_window_s` (one sample), and `loss_bound_s` is the setting's worst case: interval + 1 s +
   one save for time-based saves (Mosquitto saves when more than `autosave_interval` whole seconds have passed),
   the count of queued messages at the measured rate + one save for `autosave_on_changes` (each message queued for
   an absent session is one change). A run shorter than an interval loses everything it published.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console
from rich.table import Table

from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto, Persistence
from amr.broker.probe import new_client
from amr.broker.publish import WindowedPublisher
from amr.broker.topics import READINGS, readings_topic
from amr.credentials import Credentials, read_or_create_credentials
from amr.errors import ServiceError
from amr.messages import ColumnarReadingBatch, Reading, columnar_from_readings, encode

COLLECTOR = "bench-persist-c1"  # the publisher's client id: the ACL lets it publish only under its own name
QUEUE_CLIENT = "bench-persist-queue"  # the persistent session that stands for a stopped ingest
READINGS_PER_MESSAGE = 100  # what collectors send (collectors.config.DEFAULT_BATCH_READINGS)
SESSION_EXPIRY_S = 7 * 24 * 3600
WAIT_S = 30.0
DRAIN_TIMEOUT_S = 600.0
# Published after the restart, so queued behind every message that survived: when it arrives, the queue is drained
# (a pause is no sign: the broker sends nothing while it saves its database, seconds with a long queue).
END_MARKER_SEQ = -1
T0_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z

SETTINGS: list[tuple[str, Persistence | None]] = [
    ("no persistence (baseline)", None),
    ("autosave_interval 30", Persistence(autosave_interval=30)),
    ("autosave_interval 5", Persistence(autosave_interval=5)),
    ("autosave_interval 1", Persistence(autosave_interval=1)),
    ("autosave_on_changes 1000", Persistence(autosave_interval=1000, on_changes=True)),
    ("autosave_on_changes 100", Persistence(autosave_interval=100, on_changes=True)),
]


@dataclass(frozen=True, kw_only=True)
class Sizes:
    backlogs: tuple[int, ...]  # messages queued before the measurement (100,000 is about an hour of HCMC's fleet)
    publish_s: tuple[float, float]  # the publisher runs for a random time in this range, then the broker is killed


QUICK = Sizes(backlogs=(0, 5_000), publish_s=(2.0, 7.0))
FULL = Sizes(backlogs=(0, 20_000, 100_000), publish_s=(10.0, 40.0))


class _Seq(msgspec.Struct):
    seq: int


_decode_seq = msgspec.json.Decoder(_Seq).decode


def _template() -> ColumnarReadingBatch:
    readings = [
        Reading(
            meter=f"BENCH-{j + 1:06d}",
            obis="1.0.1.8.0.255",
            ts=datetime.fromtimestamp(T0_S, UTC),
            value=float(j),
            unit="kWh",
        )
        for j in range(READINGS_PER_MESSAGE)
    ]
    batch = columnar_from_readings(COLLECTOR, 0, readings)
    assert batch is not None
    return batch


def _messages(template: ColumnarReadingBatch, first: int, count: int, until_s: float) -> Iterator[tuple[str, bytes]]:
    """Messages numbered first.. (seq), until `count` or the monotonic clock passes `until_s`."""
    topic = readings_topic(COLLECTOR)
    for seq in range(first, first + count):
        if time.monotonic() > until_s:
            return
        yield topic, encode(msgspec.structs.replace(template, seq=seq))


def _publish_all(pub: WindowedPublisher, messages: Iterator[tuple[str, bytes]]) -> int:
    """Publish and return the count acknowledged; raise if the broker refused any (the ACL, for a wrong client id)."""
    acked = pub.publish_all(messages)
    if pub.rejected:
        raise ServiceError(f"the broker refused the benchmark's messages: {pub.rejected}")
    return acked


def _publish(endpoint: BrokerEndpoint, messages: Iterator[tuple[str, bytes]]) -> int:
    with WindowedPublisher(endpoint, client_id=COLLECTOR) as pub:
        return _publish_all(pub, messages)


def _endpoint(broker: LocalMosquitto, account: str) -> BrokerEndpoint:
    return BrokerEndpoint(
        host=broker.host, port=broker.port, username=account, password=broker.credentials.mqtt_password(account)
    )


class _Queue:
    """The persistent session: subscribe once and leave; later, come back and count what the broker kept."""

    def __init__(self, broker: LocalMosquitto) -> None:
        self.endpoint = _endpoint(broker, "ingest")
        self.seqs: set[int] = set()
        self.session_present = False
        self._subscribed = threading.Event()
        self._connected = threading.Event()

    def _connect(self, *, subscribe: bool) -> mqtt.Client:
        client = new_client(QUEUE_CLIENT)
        client.username_pw_set(self.endpoint.username, self.endpoint.password)

        def on_connect(c: mqtt.Client, _u: object, flags: Any, reason: Any, _p: object) -> None:
            self.session_present = bool(flags.session_present)
            self._connected.set()
            if subscribe:
                c.subscribe(f"{READINGS}/#", qos=1)

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            self.seqs.add(_decode_seq(msg.payload).seq)

        client.on_connect = on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect(self.endpoint.host, self.endpoint.port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()
        if not self._connected.wait(WAIT_S):
            raise ServiceError("the queue session did not connect")
        return client

    def subscribe_and_leave(self) -> None:
        client = self._connect(subscribe=True)
        if not self._subscribed.wait(WAIT_S):
            raise ServiceError("the queue session did not subscribe")
        client.disconnect()
        client.loop_stop()

    def drain(self) -> set[int]:
        """Reconnect and collect up to the END_MARKER_SEQ message; nothing when the broker lost the session."""
        self._connected.clear()
        client = self._connect(subscribe=False)
        try:
            if not self.session_present:
                return set()
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while END_MARKER_SEQ not in self.seqs:
                if time.monotonic() > deadline:
                    raise ServiceError(f"the queue was not drained in {DRAIN_TIMEOUT_S:g} s: {len(self.seqs):,} so far")
                time.sleep(0.05)
            return self.seqs - {END_MARKER_SEQ}
        finally:
            client.disconnect()
            client.loop_stop()


def _kill_9(broker: LocalMosquitto) -> None:
    pid = broker.pid()
    if pid is None:
        raise ServiceError("the broker is not running")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    while broker.pid() is not None:  # until gone or a zombie: only then are its sockets closed
        if time.monotonic() > deadline:
            raise ServiceError(f"mosquitto {pid} survived SIGKILL")
        time.sleep(0.01)


def _save_s(broker: LocalMosquitto, db_file: Path) -> float:
    """Seconds for one save on SIGUSR1: until the new database file is renamed over the old one."""
    pid = broker.pid()
    if pid is None:
        raise ServiceError("the broker is not running")
    before = db_file.stat().st_ino if db_file.exists() else None
    t = time.perf_counter()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while not db_file.exists() or db_file.stat().st_ino == before:
        if time.monotonic() > deadline:
            raise ServiceError(f"mosquitto did not save {db_file} on SIGUSR1")
        time.sleep(0.005)
    return time.perf_counter() - t


def _loss_bound_s(persistence: Persistence | None, save_s: float, rate: float) -> float | str:
    if persistence is None:
        return "everything"
    if persistence.on_changes:
        return persistence.autosave_interval / rate + save_s
    return persistence.autosave_interval + 1 + save_s


def measure(
    credentials: Credentials,
    label: str,
    persistence: Persistence | None,
    backlog: int,
    sizes: Sizes,
    template: ColumnarReadingBatch,
) -> dict[str, Any]:
    from tests.services import free_port, make_state_dir

    state = make_state_dir("amr-bench-persist-")
    broker = LocalMosquitto(
        base_dir=state / "mosquitto", port=free_port(), credentials=credentials, persistence=persistence
    )
    db_file = broker.base_dir / "data" / "mosquitto.db"
    publish_s = random.Random(f"{label}/{backlog}").uniform(*sizes.publish_s)
    try:
        broker.start()
        collector = _endpoint(broker, "collector")
        queue = _Queue(broker)
        queue.subscribe_and_leave()
        _publish(collector, _messages(template, 0, backlog, float("inf")))
        save_s = 0.0
        if persistence is not None:  # a clean stop saves everything: the backlog is on disk, as after hours
            broker.stop()
            broker.start()
            save_s = _save_s(broker, db_file)
        with WindowedPublisher(collector, client_id=COLLECTOR) as pub:
            t = time.perf_counter()
            acked = _publish_all(pub, _messages(template, backlog, 10**9, time.monotonic() + publish_s))
            elapsed = time.perf_counter() - t
            _kill_9(broker)
        db_mb = db_file.stat().st_size / 1e6 if db_file.exists() else 0.0
        broker.start()
        _publish(collector, _messages(template, END_MARKER_SEQ, 1, float("inf")))
        seqs = queue.drain()
        survived = sum(1 for s in seqs if s >= backlog)
        rate = acked / elapsed
        return {
            "msgs_per_s": rate,
            "save_s": save_s,
            "acked": acked,
            "lost": acked - survived,
            "loss_window_s": (acked - survived) / rate,
            "loss_bound_s": _loss_bound_s(persistence, save_s, rate),
            "backlog_lost": backlog - sum(1 for s in seqs if s < backlog),
            "db_file_mb_at_kill": db_mb,
        }
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


def run(quick: bool) -> dict[str, Any]:
    from tests.services import make_state_dir

    sizes = QUICK if quick else FULL
    console = Console()
    creds_dir = make_state_dir("amr-bench-persist-creds-")
    credentials = read_or_create_credentials(creds_dir / "credentials.toml")
    template = _template()
    console.print(
        f"[bold]broker persistence[/bold]: {len(encode(template)):,} B messages, backlogs {sizes.backlogs}, "
        f"publishing {sizes.publish_s[0]:g}-{sizes.publish_s[1]:g} s before each kill -9"
    )
    results: dict[str, Any] = {}
    # On SIGTERM (`timeout`) leave through the finally clauses: a private broker must not outlive the run.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    columns = ("msgs/s", "ratio", "save s", "acked", "lost", "loss window s", "loss bound s", "backlog lost", "db MB")
    try:
        for backlog in sizes.backlogs:
            table = Table(title=f"kill -9 right after a PUBACK, {backlog:,} messages queued at the start")
            table.add_column("setting")
            for column in columns:
                table.add_column(column, justify="right")
            baseline = 0.0
            for label, persistence in SETTINGS:
                f = measure(credentials, label, persistence, backlog, sizes, template)
                baseline = baseline or f["msgs_per_s"]
                f["ratio_to_baseline"] = f["msgs_per_s"] / baseline
                results.setdefault(f"backlog_{backlog}", {})[label.replace(" ", "_")] = f
                bound = f["loss_bound_s"]
                table.add_row(
                    label,
                    f"{f['msgs_per_s']:,.0f}",
                    f"{f['ratio_to_baseline']:.2f}",
                    f"{f['save_s']:.2f}",
                    f"{f['acked']:,}",
                    f"{f['lost']:,}",
                    f"{f['loss_window_s']:.2f}",
                    bound if isinstance(bound, str) else f"{bound:.1f}",
                    f"{f['backlog_lost']:,}",
                    f"{f['db_file_mb_at_kill']:.1f}",
                )
            console.print(table)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(creds_dir, ignore_errors=True)
    return results


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"backlogs {QUICK.backlogs} instead of {FULL.backlogs}")
    args = parser.parse_args()
    run(args.quick)


if __name__ == "__main__":
    main()
