"""Fuzzing ingest through the real broker into a live worker and the real database (issue 11, item 7).

A hypothesis-generated sequence of valid and hostile messages (tests/ingest/strategies.py: deep nesting, NUL and
control characters, lone surrogates, invalid UTF-8, numbers out of range, NaN literals, wrong types, truncation,
oversize, unequal v2 columns, bad items among good ones, a payload speaking for another client...) goes through
Mosquitto into an in-process worker, followed by a valid canary message. Then:
- the worker is still alive and consuming: the canary is stored, and nothing was logged as an error;
- the readings table holds exactly the valid rows (count and checksum), meter_events exactly the valid events,
  collector_status exactly the valid heartbeats;
- every hostile message has exactly one dead letter (matched by topic and payload) whose reason names its fault
  (strategies.REASON_KEYWORDS), and no valid message has one;
- nothing is left unacknowledged: a client resuming the worker's session receives nothing.

Plus the concrete poison messages of the issue as plain regression tests, in-process and through `amr ingest
--workers 2` (where they used to kill worker processes over and over and strand later valid messages).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.probe import new_client
from amr.broker.publish import WindowedPublisher
from amr.broker.topics import readings_topic
from amr.db.server import DatabaseServer, Role
from ingest.worker import Worker, WorkerConfig
from tests.ingest import strategies as fz
from tests.ingest.helpers import add_test_meters, drop_session, worker_config
from tests.services import endpoint

# Bounded so the fuzz test stays within about a minute on 2 cores (measured ~32 s): each example costs its
# generation (~0.1-0.9 s), a worker start, the publishing, the canary's round trip, the checks and a session resume;
# each example carries every fault class once (~35 hostile and ~35 valid messages), built its own drawn way.
FUZZ_EXAMPLES = 12
CANARY_TIMEOUT_S = 30.0  # the canary follows at most a few hundred messages; a live worker takes < 1 s
DEAD_LETTER_SETTLE_S = 5.0
# How long a client resuming the worker's session listens for redeliveries: Mosquitto resends unacknowledged
# messages right after the CONNACK, so on loopback they come within milliseconds.
REDELIVERY_WAIT_S = 0.7
# Tables a fuzz example writes; emptied before each example so its expectations are absolute.
TABLES = ("readings", "meter_events", "dead_letters", "collector_status", "meter_comm_stats", "meter_last_seen")
OPTIONAL_TABLES = ("ingest_poison",)  # the poison ledger, where the schema has it
AMR = [sys.executable, "-m", "app"]  # the `amr` command, run by the test's interpreter
# The recursion limit a worker process runs with (ingest does not change Python's default). Hypothesis raises the
# interpreter-wide limit while a test runs, which let the in-process worker survive nesting that kills `amr
# ingest` (measured on the old decoder: 2,000 levels decoded and stored under hypothesis, RecursionError in a
# worker process); the worker runs under the real limit. Read at import, before hypothesis raises it.
PRODUCTION_RECURSION_LIMIT = sys.getrecursionlimit()


@pytest.fixture(scope="module")
def fuzz_db(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    server = make_database("amr_ingest_fuzz")
    add_test_meters(server)
    return server


@pytest.fixture(scope="module")
def status_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-status")


def clear_tables(server: DatabaseServer) -> None:
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        present = [
            t for t in OPTIONAL_TABLES if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() != (None,)
        ]  # fmt: skip
        conn.execute(f"TRUNCATE {', '.join((*TABLES, *present))}")


# -- a worker on a thread, watched ---------------------------------------------------------------------------------
class _ErrorLog(logging.Handler):
    """Records ERROR and worse from the ingest package: a hostile message must never get that far."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(
            f"{record.name}: {record.getMessage()}" + (f"\n{record.exc_text}" if record.exc_text else "")
        )


@dataclass
class LiveWorker:
    worker: Worker
    thread: threading.Thread
    errors: _ErrorLog
    died: str | None = None  # the exception that ended the worker's thread, with its traceback

    def alive(self) -> bool:
        return self.thread.is_alive() and self.died is None

    def obituary(self) -> str:
        return f"the worker died: {self.died}" if self.died else "the worker thread ended"


@contextmanager
def production_recursion_limit() -> Iterator[None]:
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(PRODUCTION_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)  # what hypothesis set: it restores its own value after the test


@contextmanager
def live_worker(config: WorkerConfig) -> Iterator[LiveWorker]:
    """A worker on a thread, stopped on exit (its session stays at the broker: see `redelivered`)."""
    worker = Worker(config)
    stop = threading.Event()
    errors = _ErrorLog()
    logging.getLogger("ingest").addHandler(errors)

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # recorded for the assertion, not re-raised into threading's excepthook
            live.died = "".join(traceback.format_exception_only(exc)).strip() + "\n" + traceback.format_exc(limit=-6)

    thread = threading.Thread(target=run, name=f"fuzz-{config.client_id}", daemon=True)
    live = LiveWorker(worker=worker, thread=thread, errors=errors)
    thread.start()
    try:
        assert worker.consumer.subscribed.wait(20), "worker did not subscribe at the broker"
        yield live
    finally:
        stop.set()
        thread.join(30)
        logging.getLogger("ingest").removeHandler(errors)
        assert not thread.is_alive(), "worker did not stop"


def publish_in_order(broker: LocalMosquitto, messages: Sequence[fz.FuzzMessage]) -> None:
    """Each message under its own client id (the broker's ACL binds a topic's name to the publisher's client id),
    one client after the other, each until the broker acknowledged all it sent: the last message (the canary)
    reaches the broker last."""
    groups: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    for msg in messages[:-1]:
        groups.setdefault((msg.account, msg.client), []).append((msg.topic, msg.payload))
    last = messages[-1]
    for (account, client), group in [*groups.items(), ((last.account, last.client), [(last.topic, last.payload)])]:
        with WindowedPublisher(endpoint(broker, account), client_id=client, keepalive_s=30) as pub:
            pub.publish_all(group, timeout_s=60)


def wait_while_alive(live: LiveWorker, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll `predicate`; fail at once when the worker dies, with its exception."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if not live.alive():
            raise AssertionError(f"{live.obituary()} (while waiting for {what})")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (worker alive: {live.alive()})")


def redelivered(broker: LocalMosquitto, client_id: str) -> list[str]:
    """Resume a stopped worker's session with a bare client and list what the broker delivers: everything the
    worker left unacknowledged. The session ends with this client (session expiry 0)."""
    ep = endpoint(broker, "ingest")
    got: list[str] = []
    client = new_client(client_id)
    client.username_pw_set(ep.username, ep.password)
    client.manual_ack_set(True)
    client.on_message = lambda _c, _u, msg: got.append(f"{msg.topic} ({len(msg.payload)} B, dup={msg.dup})")
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(ep.host, ep.port, keepalive=10, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert connected.wait(10), "could not resume the worker's session"
        time.sleep(REDELIVERY_WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()
    return got


# -- what the database holds ---------------------------------------------------------------------------------------
def _us(ts: datetime) -> int:
    return fz.ts_us(ts)


def stored_rows(conn: psycopg.Connection[Any]) -> Counter[fz.Row]:
    rows = conn.execute(
        "SELECT m.serial, r.channel_id, r.ts, r.value, r.quality FROM readings r JOIN meters m USING (meter_id)"
    ).fetchall()
    return Counter(fz.Row(s, int(c), _us(t), float(v), int(q)) for s, c, t, v, q in rows)


def stored_events(conn: psycopg.Connection[Any]) -> Counter[fz.EventRow]:
    rows = conn.execute("SELECT m.serial, e.event, e.ts FROM meter_events e JOIN meters m USING (meter_id)").fetchall()
    return Counter(fz.EventRow(s, e, _us(t)) for s, e, t in rows)


def checksum(rows: Iterable[fz.Row]) -> str:
    """Order-free digest of reading rows (values by their exact bits)."""
    text = "\n".join(sorted(f"{r.serial}|{r.channel_id}|{r.ts_us}|{r.value.hex()}|{r.quality}" for r in rows))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _diff(kind: str, expected: Counter[Any], stored: Counter[Any]) -> list[str]:
    missing = list((expected - stored).elements())
    extra = list((stored - expected).elements())
    if not missing and not extra:
        return []
    lines = [f"{kind}: {sum(stored.values())} stored, {sum(expected.values())} expected"]
    lines += [f"  missing {r}" for r in missing[:8]] + [f"  unexpected {r}" for r in extra[:8]]
    return lines


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    dead_letters: int = 0


def check_outcome(server: DatabaseServer, messages: Sequence[fz.FuzzMessage], *, worker_id: str) -> Outcome:
    """Every expectation of the sequence against the database; the problems found, all of them."""
    out = Outcome()
    expected_rows = Counter(r for m in messages for r in m.rows)
    expected_events = Counter(e for m in messages for e in m.events)
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        rows = stored_rows(conn)
        events = stored_events(conn)
        letters = conn.execute("SELECT topic, payload, reason FROM dead_letters ORDER BY dead_letter_id").fetchall()
        status_sql = "SELECT source, updated_at FROM collector_status WHERE source <> %s"
        statuses: dict[str, datetime] = dict(conn.execute(status_sql, (worker_id,)).fetchall())
    out.rows = sum(rows.values())
    out.dead_letters = len(letters)
    if rows != expected_rows:
        out.problems.append(
            f"readings: checksum {checksum(rows.elements())} of {out.rows} rows,"
            f" expected {checksum(expected_rows.elements())} of {sum(expected_rows.values())}"
        )
        out.problems += _diff("readings", expected_rows, rows)[1:]
    out.problems += _diff("meter_events", expected_events, events)

    # Heartbeats: a source's row holds its newest valid status; a refused status sets nothing (a status from
    # 2100 must not freeze the row). Sources that sent a status refused by the database itself are left out:
    # whether its good part is kept is the writer's choice.
    newest: dict[str, int] = {}
    for m in messages:
        if m.status is not None:
            newest[m.status.source] = max(newest.get(m.status.source, m.status.ts_us), m.status.ts_us)
    unsure = {m.client for m in messages if m.fault is fz.Fault.DB_RANGE}
    got = {s: _us(t) for s, t in statuses.items() if s not in unsure}
    want = {s: t for s, t in newest.items() if s not in unsure}
    if got != want:
        out.problems.append(f"collector_status: {got} stored, {want} expected (source: newest status, µs)")

    by_message: dict[tuple[str, bytes], list[str]] = {}
    for topic, payload, reason in letters:
        by_message.setdefault((topic, bytes(payload) if payload is not None else b""), []).append(reason)
    hostile: dict[tuple[str, bytes], fz.FuzzMessage] = {}
    for m in messages:
        if m.fault is not None:
            hostile.setdefault((m.topic, m.payload), m)
    for key, m in hostile.items():
        reasons = by_message.pop(key, [])
        if len(reasons) != 1:
            out.problems.append(f"{len(reasons)} dead letters (expected 1) for {m!r}: {reasons}")
            continue
        reason = reasons[0]
        if not reason or not any(word in reason for word in m.keywords):
            out.problems.append(f"reason {reason!r} names none of {m.keywords} for {m!r}")
        elif any(word in reason for word in m.forbidden):
            out.problems.append(f"reason {reason!r} is the other version's decoder error for {m!r}")
    valid = {(m.topic, m.payload): m for m in messages if m.fault is None}
    for key, reasons in by_message.items():
        what = repr(valid[key]) if key in valid else f"unknown message on {key[0]} {key[1][:60]!r}"
        out.problems.append(f"dead letter for a message that must not have one, {what}: {reasons}")
    return out


# -- the fuzz test ---------------------------------------------------------------------------------------------------
def run_through_worker(
    broker: LocalMosquitto, server: DatabaseServer, status_dir: Path, messages: Sequence[fz.FuzzMessage]
) -> Outcome:
    """Publish `messages` (the last one valid: the canary) to a fresh worker, stop it, check everything."""
    clear_tables(server)
    config = worker_config(broker, server, status_dir)
    canary = messages[-1]
    hostile = {(m.topic, m.payload) for m in messages if m.fault is not None}
    count_sql = "SELECT count(*) FROM dead_letters"
    canary_sql = "SELECT count(*) FROM readings r JOIN meters m USING (meter_id) WHERE m.serial = %s AND r.ts = %s"
    canary_row = canary.rows[0]
    canary_ts = fz.EPOCH + timedelta(microseconds=canary_row.ts_us)
    died: str | None = None
    stalled = ""
    errors: list[str] = []
    try:
        with (
            production_recursion_limit(),
            live_worker(config) as live,
            psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn,
        ):

            def scalar(sql: str, params: Sequence[Any] = ()) -> int:
                row = conn.execute(sql, params).fetchone()
                return int(row[0]) if row else 0

            publish_in_order(broker, messages)
            try:
                wait_while_alive(
                    live, lambda: scalar(canary_sql, (canary_row.serial, canary_ts)) == 1, timeout_s=CANARY_TIMEOUT_S,
                    what="the canary message to be stored",
                )  # fmt: skip
                # Dead letters commit with their batch, before or with the canary's; this only absorbs a writer
                # that commits them on their own.
                deadline = time.monotonic() + DEAD_LETTER_SETTLE_S
                while scalar(count_sql) < len(hostile) and time.monotonic() < deadline and live.alive():
                    time.sleep(0.1)
            except AssertionError as exc:  # the worker died or stalled: still check and report everything else
                stalled = str(exc)
            died = live.died or (None if live.thread.is_alive() else "its thread ended")
            errors = live.errors.records
        outcome = check_outcome(server, messages, worker_id=config.client_id)
        if died is not None:
            outcome.problems.insert(0, f"THE WORKER DIED: {died}")
        elif stalled:
            outcome.problems.insert(0, stalled)
        outcome.problems += [f"ingest logged an error: {e}" for e in errors]
        stuck = redelivered(broker, config.client_id)
        if stuck:
            outcome.problems.append(f"{len(stuck)} message(s) left unacknowledged: {stuck[:5]}")
        return outcome
    finally:
        drop_session(broker, config.client_id)


@settings(
    derandomize=True,
    database=None,
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    # No shrinking: each step would cost a live round trip; the failing sequence is printed whole, each message
    # with its fault class, and the assertion lists every problem of it.
    phases=(Phase.explicit, Phase.generate),
    # A sequence is large by design (every fault class once, ~70 messages): its generation is slow and big.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(sequence=fz.fuzz_sequences())
def test_fuzz_valid_and_hostile_traffic(
    sequence: fz.FuzzSequence, fuzz_db: DatabaseServer, broker: LocalMosquitto, status_dir: Path
) -> None:
    messages = [*sequence.messages, fz.canary()]
    for m in sequence.messages:  # coverage, shown by --hypothesis-show-statistics
        event(f"{m.fault.value if m.fault else 'valid'} ({m.fmt.value})")
    outcome = run_through_worker(broker, fuzz_db, status_dir, messages)
    assert not outcome.problems, "\n".join(outcome.problems)


# -- the issue's poison messages, one by one -----------------------------------------------------------------------
def _v2(source: str, meter: str, *, value: str = "1.5") -> bytes:
    t = int((fz.BASE_TS - fz.EPOCH).total_seconds())
    return (
        f'{{"v":2,"source":"{source}","seq":7,"meters":["{meter}"],"obis":["1.0.1.8.0.255"],"units":["kWh"],'
        f'"m":[0],"o":[0],"t":[{t}],"x":[{value}],"q":[]}}'
    ).encode()


def _v1(source: str, meter: str) -> bytes:
    return (
        f'{{"v":1,"source":"{source}","seq":7,"readings":[{{"meter":"{meter}","obis":"1.0.1.8.0.255",'
        f'"ts":"2026-03-01T00:00:00Z","value":1.5,"unit":"kWh"}}]}}'
    ).encode()


def _dcu_with_detail(dcu: str, detail: str) -> bytes:
    return (
        f'{{"v":1,"dcu":"{dcu}","seq":88,"sent":"2026-03-01T00:31:05Z","reads":[],'
        f'"events":[{{"serial":"ING-TEST-000001","ts":"2026-03-01T00:20:00Z","event":"power_up","detail":{detail}}}]}}'
    ).encode()


NESTING_DEPTH = 3_000
COLLECTOR, DCU = fz.COLLECTORS[0], fz.DCUS[0]
GOOD_SERIAL = "ING-TEST-000001"


def poison(fmt: fz.Format, client: str, payload: bytes, fault: fz.Fault, where: str) -> fz.FuzzMessage:
    return fz.FuzzMessage(
        fmt=fmt, client=client, topic=fz.topic_for(fmt, client), payload=payload, fault=fault, where=where
    )


POISON: dict[str, fz.FuzzMessage] = {
    "nested-top-level": poison(
        fz.Format.V2, COLLECTOR, ('{"a":' * NESTING_DEPTH + "1" + "}" * NESTING_DEPTH).encode(), fz.Fault.NESTING,
        f"{NESTING_DEPTH} levels at the top",
    ),
    "nested-event-detail": poison(
        fz.Format.DCU, DCU, _dcu_with_detail(DCU, '{"a":' * NESTING_DEPTH + "1" + "}" * NESTING_DEPTH),
        fz.Fault.NESTING, f"{NESTING_DEPTH} levels in $.events[0].detail",
    ),
    "nul-serial-v1": poison(
        fz.Format.V1, COLLECTOR, _v1(COLLECTOR, "ING-TEST-\\u0000000001"), fz.Fault.NUL, "NUL in $.readings[0].meter"
    ),
    "nul-serial-v2": poison(
        fz.Format.V2, COLLECTOR, _v2(COLLECTOR, "ING-TEST-\\u0000000001"), fz.Fault.NUL, "NUL in $.meters[0]"
    ),
    "truncated-v2": poison(
        fz.Format.V2, COLLECTOR, _v2(COLLECTOR, GOOD_SERIAL)[:-12], fz.Fault.TRUNCATED, "cut inside $.x"
    ),
    "nan-v2": poison(
        fz.Format.V2, COLLECTOR, _v2(COLLECTOR, GOOD_SERIAL, value="NaN"), fz.Fault.NON_FINITE, "NaN in $.x"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(POISON))
def test_issue_poison_message_is_one_dead_letter_and_the_worker_goes_on(
    case: str, fuzz_db: DatabaseServer, broker: LocalMosquitto, status_dir: Path
) -> None:
    """One poison message of the issue, then a valid one: the poison is one dead letter whose reason names its
    fault (for v2, the v2 decoder's error, not the v1 decoder's "unknown field `meters`"), the valid one is
    stored, the worker lives on and leaves nothing unacknowledged."""
    messages = [POISON[case], fz.canary()]
    outcome = run_through_worker(broker, fuzz_db, status_dir, messages)
    assert not outcome.problems, "\n".join(outcome.problems)
    assert (outcome.rows, outcome.dead_letters) == (1, 1)


# -- the same through `amr ingest --workers 2` ----------------------------------------------------------------------
CLI_VALID_MESSAGES = 40  # the issue: "20 of 40 later valid messages never reached the database"
CLI_READINGS_PER_MESSAGE = 100


def _ingest_cli(server: DatabaseServer, broker: LocalMosquitto, cwd: Path, name: str) -> subprocess.Popen[bytes]:
    s = server.settings
    env = os.environ | {
        "AMR_STATE_DIR": str(s.state_dir), "AMR_DB_PORT": str(s.db.port), "AMR_DB_NAME": s.db.name,
        "AMR_DB_DATA_DIR": str(s.db.data_dir), "AMR_MQTT_PORT": str(broker.port),
    }  # fmt: skip
    return subprocess.Popen(
        [*AMR, "ingest", "--no-live", "--status-dir", str(cwd / "status"), "--name", name, "--workers", "2"],
        cwd=cwd, env=env, stdout=open(cwd / "ingest.out", "ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _worker_pids(status_dir: Path) -> dict[str, int]:
    pids = {}
    for f in status_dir.glob("status-*.json"):
        try:
            pids[f.name] = int(json.loads(f.read_text())["pid"])
        except (ValueError, KeyError):  # being rewritten
            continue
    return pids


def _valid_batch(client: str, seq: int) -> bytes:
    """CLI_READINGS_PER_MESSAGE readings of meters 1-50, from BASE_TS in 15-minute steps, never colliding."""
    t0 = int((fz.BASE_TS - fz.EPOCH).total_seconds())
    n = CLI_READINGS_PER_MESSAGE
    k = range(seq * n, seq * n + n)
    doc = {
        "v": 2, "source": client, "seq": seq, "meters": [f"ING-TEST-{i:06d}" for i in range(1, 51)],
        "obis": ["1.0.1.8.0.255"], "units": ["kWh"], "m": [i % 50 for i in k], "o": [0] * n,
        "t": [t0 + 900 * (i // 50) for i in k], "x": [i * 0.5 for i in k], "q": [],
    }  # fmt: skip
    return json.dumps(doc).encode()


def test_cli_workers_survive_the_issue_poison(fuzz_db: DatabaseServer, broker: LocalMosquitto, tmp_path: Path) -> None:
    """The issue's measurement in small: the poison messages, then 40 valid messages, into `amr ingest --workers
    2`. Every valid reading is stored, each poison message is one dead letter, and no worker process died (the
    pids in their status files never change)."""
    clear_tables(fuzz_db)
    name = f"ingest-fuzz-{uuid.uuid4().hex[:6]}"
    proc = _ingest_cli(fuzz_db, broker, tmp_path, name)
    status = tmp_path / "status"
    expected_rows = CLI_VALID_MESSAGES * CLI_READINGS_PER_MESSAGE

    def count(sql: str) -> int:
        with psycopg.connect(fuzz_db.conninfo(Role.OWNER), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    try:
        deadline = time.monotonic() + 60
        while len(_worker_pids(status)) < 2 or not all(
            json.loads(f.read_text()).get("state") == "online" for f in status.glob("status-*.json")
        ):
            assert proc.poll() is None, (
                f"amr ingest exited ({proc.returncode}): {(tmp_path / 'ingest.out').read_text()}"
            )
            assert time.monotonic() < deadline, "the two workers did not come online"
            time.sleep(0.2)
        time.sleep(0.5)  # the SUBSCRIBE follows the CONNACK
        pids_before = _worker_pids(status)
        poison_msgs = list(POISON.values())
        valid = [(readings_topic(COLLECTOR), _valid_batch(COLLECTOR, seq)) for seq in range(CLI_VALID_MESSAGES)]
        publish_in_order(broker, [*poison_msgs, fz.canary()])  # the canary: one more valid row at its own time
        with WindowedPublisher(endpoint(broker, "collector"), client_id=COLLECTOR, keepalive_s=30) as pub:
            pub.publish_all(valid, timeout_s=60)
        deadline = time.monotonic() + 40
        while count("SELECT count(*) FROM readings") < expected_rows + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # late duplicates or dead letters would show now
        rows = count("SELECT count(*) FROM readings")
        letters = count("SELECT count(*) FROM dead_letters")
        pids_after = _worker_pids(status)
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for i in range(2):
            drop_session(broker, f"{name}-{i}")
    log_tail = (tmp_path / "ingest.out").read_text()[-3_000:]
    assert alive, f"amr ingest exited: {log_tail}"
    restarts = (tmp_path / "ingest.out").read_text().count("restarting")
    assert rows == expected_rows + 1, (
        f"{rows} of {expected_rows + 1} valid readings stored, {restarts} worker restarts; log: {log_tail}"
    )
    assert letters == len(poison_msgs), f"{letters} dead letters for {len(poison_msgs)} poison messages"
    assert pids_after == pids_before, f"worker processes restarted: {pids_before} -> {pids_after}; log: {log_tail}"


def test_strategies_cover_every_fault_class() -> None:
    """The keyword table and the builders stay in step: every fault the strategies can produce has its words."""
    assert set(fz.HOSTILE_FAULTS) <= set(fz.REASON_KEYWORDS)
    missing = set(fz.Fault) - set(fz.HOSTILE_FAULTS) - ({fz.Fault.DUPLICATE_KEYS} - set(fz.BUILDERS))
    assert not missing, f"faults no strategy produces: {missing}"
