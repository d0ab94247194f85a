"""Soak: minutes of mixed valid and hostile traffic through the real pieces (the collector's spool, batcher and
publisher -> Mosquitto -> ``amr ingest`` -> TimescaleDB), with ``kill -9`` of the ingest worker, of a collector-side
publisher and of the broker at random (seeded) moments, each restarted after a short pause; then every reading is
accounted for (issue 11, item 7).

    .venv/bin/python -m benchmarks.bench_soak [--quick] [--seed N] [--workers N] [--traffic-s S]

The parts, each a real process on throwaway services (tests.services.running_services):
- ingest: ``python -m app ingest --workers N`` (the ``amr`` command) against the benchmark's database and broker.
  With one worker the worker is that process and is killed and started again by the benchmark; with several, one
  worker process is killed and the supervisor starts it again (after ingest.supervisor.RESTART_DELAY_S).
- sources (``--role source``): collectors reduced to their delivery machinery (collectors.spool.Spool,
  collectors.batcher.Batcher, collectors.publisher.MqttPublisher wired as collectors.runner wires them), fed with
  deterministic readings of registered meters: reading k of source i is a pure function of (i, k) (`reading`).
  The source keeps its progress k in the spool state, committed in the same spool transaction as the batch that
  holds readings k0..k-1, so after a kill -9 it resumes exactly where its durable state says. Sent = every k below
  its final progress. MQTT client id = the source's name (the broker's ACL grants by ``%c``).
- a hostile publisher (``--role hostile``, client id ``soak-hostile``, never killed): bad payloads, message j a
  pure function of j (`hostile_payload`): nested 2,500 levels, NUL / control character in a serial, truncated,
  NaN, oversize (over ingest's payload limit, within the broker's packet limit), another client's name in the
  payload, unknown meters, a batch mixing valid readings with an unknown meter, an exact repeat of the previous
  (mixed) message, and one too big for the broker's maximum packet size. It publishes through the same spool and
  publisher, so its messages survive broker kills too and leave its spool when ingest confirms their dead letter.
  Each distinct payload that reaches ingest must give exactly one dead letter with a reason naming its fault; the
  mixed ones must store their valid readings; each one too big for the broker must be refused at the source (the
  spool's ``refused`` table), never sent and never dropped silently.
- the broker: the project's LocalMosquitto (amr.broker.mosquitto) of the throwaway services, killed via its pid
  and started again with ``.start()``.

Kills: `kills` per part, one at a random moment in each of `kills` equal slices of the first KILL_WINDOW of the
traffic (so kills of one part are at least KILL_GAP_S apart, while kills of different parts may overlap), each
followed by a pause drawn from PAUSE_S. After the traffic the sources stop generating, the benchmark waits until
every spool is empty (ingest confirmed every message) or the drain timeout, stops everything and compares the
database with the expected set:
- lost: expected (meter, channel, ts) keys missing and no longer in any spool; undelivered: missing but still
  in a spool (the drain timed out: not lost, the source sends it again at its next start); wrong values: keys
  present with another value;
- duplicated: rows beyond one per key, and rows not in the expected set (e.g. the impostor's readings);
- dead letters: expected (one per distinct hostile payload that reaches ingest, by its SHA-256 of topic NUL
  payload) vs got, missing, unexpected (any other dead letter), and reasons that do not name the fault;
- refused at the source: the too-big hostile messages in the spool's refused table, once each.
Catch-up after a kill: the time from the kill until every message spooled before it (by each source's highest
spool id at the kill, read from its status file, at most STATUS_EVERY_S old) was confirmed committed. Drain after
the last kill is that time for the last kill; drain after the traffic stopped is the time to empty spools.

Reading the publishers' counters: "PUBACKs 'no matching subscribers'" are messages the broker accepted and dropped
because ingest had no subscription at that moment: Mosquitto (2.0.11, measured) restores a persistent session and
its queued messages after a restart but not its shared ($share/...) subscriptions, so whatever arrives between
the broker's start and ingest's re-subscribe is dropped; only the confirm timeout brings it back. The "re-sends
after a confirm timeout" beyond those mean ingest lagged more than the timeout (a starved machine): each re-send
queues one more copy behind the broker's FIFO queue for ingest, which then spends its time on duplicates. The
timeline (timeline.jsonl in the kept work directory: AMR_KEEP_TEST_STATE=1, or any failed run) shows both.

Exit status non-zero when anything was lost, undelivered or duplicated, or the dead letters or refusals are not
one per distinct hostile payload (reported in the figures as `failed`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import heapq
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SOURCE_PREFIX = "soak-src-"
HOSTILE = "soak-hostile"
INGEST_NAME = "soak-ingest"
METERS_PER_SOURCE = 200
HOSTILE_METERS = 50
SERIAL_PREFIX = "SOAK-"
OBIS = "1.0.1.8.0.255"
UNIT = "kWh"
T0_S = 1_748_736_000  # 2025-06-01T00:00:00Z: sources' readings, one 15-minute slot per pass over their meters
SLOT_S = 900
HOSTILE_T0_S = 1_740_787_200  # 2025-03-01T00:00:00Z: the hostile publisher's readings, one minute per message
HOSTILE_SLOT_S = 60
NESTING_LEVELS = 2_500  # the poison: >2,000 levels crashed the decoder before the pre-parse guard
PROGRESS_KEY = "soak.next"  # spool state: the next reading (source) or message (hostile) to generate
PASSWORD_ENV = "SOAK_MQTT_PASSWORD"  # the collector account's password, not on the command line (ps shows it)

# The production confirm timeout (amr.broker.confirm.CONFIRM_TIMEOUT_S = 60 s, doubling to an hour) would make a
# run of minutes wait a minute for every message whose confirmation a kill swallowed; the first timeout is shorter
# here so that the backstop fires, and is exercised, several times a run. It doubles up to the production maximum:
# a low cap (20 s was tried) makes every unconfirmed message come again every cap seconds once ingest lags more than
# that (a starved machine), and ingest then spends its time on duplicates and never catches up.
SOURCE_CONFIRM_TIMEOUT_S = 5.0
TICK_S = 0.1  # sources generate and commit at this cadence (collectors.runner.FLUSH_INTERVAL_S)
MAX_BATCHES_PER_TICK = 20  # a source that fell behind catches up in bounded steps
STATUS_EVERY_S = 0.2  # sources rewrite their status file this often
LOOP_S = 0.1  # the conductor's cadence
PAUSE_S = (0.5, 3.0)  # a killed part stays down this long (uniform)
KILL_WINDOW = (0.05, 0.85)  # kills fall in this fraction of the traffic time
KILL_GAP_S = PAUSE_S[1] + 2.0  # between two kills of the same part: it is back up and has run a moment
START_TIMEOUT_S = 60.0
NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code
# The sources' publisher counters summed over the run (collectors.publisher.MqttPublisher)
INGEST_COUNTERS = ("messages", "rows", "duplicates", "dead_letters", "staging_flushes", "confirmations", "poison",
                   "restarts", "queue_depth", "lag_s", "broker_connects", "db", "state")  # fmt: skip
PUBLISHER_COUNTERS = ("sent", "resent_unconfirmed", "unrouted", "rejected", "confirmations", "connects")
STOP_TIMEOUT_S = 30.0

# Words a hostile message's dead letter reason must contain (any one of them).
REASON_WORDS: dict[str, tuple[str, ...]] = {
    "nested": ("nested",),
    "nul": ("NUL",),
    "control": ("control",),
    "truncated": ("truncated", "invalid number", "malformed"),
    "nan": ("malformed", "NaN", "finite"),
    "oversize": ("oversize",),
    "impostor": ("topic",),
    "unknown_meter": ("unknown meter",),
    "mixed": ("unknown meter",),
}
# Message j of the hostile publisher is of kind HOSTILE_KINDS[j % len]; "repeat" repeats message j - 1 (mixed).
HOSTILE_KINDS = ("nested", "nul", "truncated", "impostor", "unknown_meter", "mixed", "repeat", "nan", "control",
                 "oversize", "too_big")  # fmt: skip
# "oversize": this much over ingest's payload limit, well within the broker's packet limit (the limit plus
# amr.broker.confirm.PACKET_OVERHEAD_BYTES, for the topic and properties): the broker passes it, ingest refuses it.
OVERSIZE_EXCESS_BYTES = 256
TOO_BIG_EXCESS_BYTES = 1_024  # "too_big": this much over the broker's maximum packet size


@dataclass(frozen=True, kw_only=True)
class Profile:
    traffic_s: float  # valid and hostile traffic, kills in KILL_WINDOW of it
    sources: int
    readings_per_s: float  # per source
    hostile_per_s: float
    kills: int  # per part (ingest, a source, the broker)
    drain_timeout_s: float


QUICK = Profile(traffic_s=40.0, sources=2, readings_per_s=1_000.0, hostile_per_s=4.0, kills=2, drain_timeout_s=60.0)
FULL = Profile(traffic_s=270.0, sources=3, readings_per_s=1_000.0, hostile_per_s=4.0, kills=7, drain_timeout_s=120.0)


# ---- the traffic: pure functions of (source, k) and of j ---------------------------------------------------------


def source_name(i: int) -> str:
    return f"{SOURCE_PREFIX}{i}"


def source_serial(i: int, m: int) -> str:
    return f"{SERIAL_PREFIX}S{i}-{m:04d}"


def hostile_serial(m: int) -> str:
    return f"{SERIAL_PREFIX}H-{m:04d}"


def reading_key(i: int, k: int) -> tuple[str, int, float]:
    """(serial, ts in Unix seconds, value) of reading k of source i."""
    return source_serial(i, k % METERS_PER_SOURCE), T0_S + SLOT_S * (k // METERS_PER_SOURCE), k * 0.25


def _v2(source: str, j: int, serials: list[str], value: float | None = None) -> dict[str, Any]:
    n = len(serials)
    return {"v": 2, "source": source, "seq": j, "meters": serials, "obis": [OBIS], "units": [UNIT],
            "m": list(range(n)), "o": [0] * n, "t": [HOSTILE_T0_S + HOSTILE_SLOT_S * j] * n,
            "x": [j * 0.5 + m if value is None else value for m in range(n)], "q": []}  # fmt: skip


def _mixed_serials(j: int) -> list[str]:
    return [hostile_serial((j + m) % HOSTILE_METERS) for m in range(3)]


def hostile_kind(j: int) -> str:
    return HOSTILE_KINDS[j % len(HOSTILE_KINDS)]


def hostile_payload(j: int) -> bytes:
    """Bad message j of the hostile publisher (each distinct, except a repeat)."""
    from ingest.limits import MAX_PAYLOAD_BYTES

    kind = hostile_kind(j)
    one = [hostile_serial(j % HOSTILE_METERS)]
    v1_reading = {"obis": OBIS, "ts": datetime.fromtimestamp(HOSTILE_T0_S + HOSTILE_SLOT_S * j, UTC).isoformat(),
                  "value": 1.0, "unit": UNIT}  # fmt: skip
    if kind == "nested":
        deep = "[" * NESTING_LEVELS + "]" * NESTING_LEVELS
        return f'{{"v":1,"source":"{HOSTILE}","seq":{j},"readings":{deep}}}'.encode()
    if kind in ("nul", "control"):  # json.dumps escapes them: \u0000, \u0007
        bad = one[0] + ("\x00" if kind == "nul" else "\x07") + str(j)
        return json.dumps({"v": 1, "source": HOSTILE, "seq": j, "readings": [{"meter": bad, **v1_reading}]}).encode()
    if kind == "truncated":
        full = json.dumps(_v2(HOSTILE, j, one)).encode()
        return full[: len(full) // 2]
    if kind == "nan":
        return json.dumps(_v2(HOSTILE, j, one, value=float("nan"))).encode()  # the literal NaN
    if kind in ("oversize", "too_big"):
        from amr.broker.mosquitto import MAX_PACKET_SIZE_BYTES

        size = MAX_PAYLOAD_BYTES + OVERSIZE_EXCESS_BYTES if kind == "oversize" else MAX_PACKET_SIZE_BYTES
        size += 0 if kind == "oversize" else TOO_BIG_EXCESS_BYTES
        empty = json.dumps({"v": 1, "source": HOSTILE, "seq": j, "readings": [], "pad": ""}).encode()
        return empty[:-2] + b"x" * (size - len(empty)) + empty[-2:]
    if kind == "impostor":  # valid readings, but the payload speaks for another client than its topic's
        return json.dumps(_v2(source_name(0), j, one)).encode()
    if kind == "unknown_meter":
        return json.dumps(_v2(HOSTILE, j, [f"{SERIAL_PREFIX}GHOST-{j}"])).encode()
    if kind == "mixed":  # three valid readings and one of an unknown meter: the three are stored
        return json.dumps(_v2(HOSTILE, j, [*_mixed_serials(j), f"{SERIAL_PREFIX}GHOST-{j}"])).encode()
    if kind == "repeat":
        return hostile_payload(j - 1)
    raise AssertionError(kind)


def refused_at_source(j: int) -> bool:
    """Hostile message j is larger than the broker's maximum packet size: its publisher must refuse it."""
    from amr.broker.confirm import MAX_MESSAGE_ID, publish_packet_bytes, publish_properties
    from amr.broker.mosquitto import MAX_PACKET_SIZE_BYTES
    from amr.broker.topics import readings_topic

    props = publish_properties(HOSTILE, MAX_MESSAGE_ID)
    return publish_packet_bytes(readings_topic(HOSTILE), len(hostile_payload(j)), props) > MAX_PACKET_SIZE_BYTES


def hostile_rows(j: int) -> list[tuple[str, int, float]]:
    """(serial, ts s, value) that hostile message j must store."""
    if hostile_kind(j) == "repeat":
        return hostile_rows(j - 1)
    if hostile_kind(j) != "mixed":
        return []
    return [(s, HOSTILE_T0_S + HOSTILE_SLOT_S * j, j * 0.5 + m) for m, s in enumerate(_mixed_serials(j))]


def message_sha256(topic: str, payload: bytes) -> bytes:
    """As ingest.poison.message_digest: the identity of a dead letter."""
    return hashlib.sha256(topic.encode() + b"\x00" + payload).digest()


# ---- a source process ----------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def _source_main(args: argparse.Namespace) -> None:
    from amr.broker.confirm import MAX_CONFIRM_TIMEOUT_S
    from amr.broker.mosquitto import BrokerEndpoint
    from amr.broker.topics import events_topic, readings_topic, status_topic
    from amr.messages import ClientStatus, Reading, encode
    from collectors.batcher import Batcher
    from collectors.config import DEFAULT_BATCH_READINGS, DEFAULT_PUBLISH_WINDOW
    from collectors.publisher import MqttPublisher
    from collectors.spool import Spool

    hostile = args.role == "hostile"
    name = HOSTILE if hostile else source_name(args.index)
    host, port = args.broker.rsplit(":", 1)
    endpoint = BrokerEndpoint(host=host, port=int(port), username="collector", password=os.environ[PASSWORD_ENV])
    spool = Spool(Path(args.spool))
    topic = readings_topic(name)
    batcher = Batcher(spool, source=name, readings_topic=topic, events_topic=events_topic(name),
                      batch_readings=DEFAULT_BATCH_READINGS)  # fmt: skip
    will = encode(ClientStatus(source=name, kind="collector", state="offline", ts=datetime.now(UTC)))
    publisher = MqttPublisher(
        endpoint=endpoint, client_id=name, spool=spool, batcher=batcher, window=DEFAULT_PUBLISH_WINDOW,
        status_topic=status_topic(name), will_payload=will, confirm_timeout_s=args.confirm_timeout_s,
        max_confirm_timeout_s=MAX_CONFIRM_TIMEOUT_S,
    )  # fmt: skip
    batcher.on_commit = publisher.wake
    # Count PUBACKs saying 'No matching subscribers' (MQTT 5 reason 16, a success): a message the broker accepted
    # and dropped because nobody (ingest) was subscribed, e.g. right after a broker restart that lost ingest's
    # session; only the confirm timeout sends it again.
    unrouted = [0]
    on_publish: Any = publisher.client.on_publish

    def count_unrouted(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        unrouted[0] += getattr(reason, "value", 0) == NO_MATCHING_SUBSCRIBERS
        on_publish(client, userdata, mid, reason, props)

    publisher.client.on_publish = count_unrouted
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    generating = [True]
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: generating.__setitem__(0, False))
    publisher.start()
    pump = asyncio.create_task(publisher.pump(stop))
    status_file = Path(args.status)
    next_k = int(spool.get_state(PROGRESS_KEY) or 0)
    base_k, t_start = next_k, time.monotonic()
    next_status_s = 0.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)
        if pump.done():
            pump.result()  # raises what killed it
        if generating[0] and not stop.is_set():
            due = base_k + int(args.rate * (time.monotonic() - t_start))
            if hostile and due > next_k:
                for j in range(next_k, due):
                    spool.append(topic, hostile_payload(j))
                spool.set_state(PROGRESS_KEY, str(due))  # the same spool transaction as the messages
                spool.commit()
                batcher.committed_id = spool.max_id  # what the publisher may send: committed rows only
                publisher.wake()
                next_k = due
            elif not hostile:
                due = min(due - due % DEFAULT_BATCH_READINGS, next_k + MAX_BATCHES_PER_TICK * DEFAULT_BATCH_READINGS)
                if due > next_k:
                    readings = []
                    for k in range(next_k, due):
                        serial, ts_s, value = reading_key(args.index, k)
                        readings.append(Reading(meter=serial, obis=OBIS, ts=datetime.fromtimestamp(ts_s, UTC),
                                                value=value, unit=UNIT))  # fmt: skip
                    batcher.add(readings)  # seals full batches into the open spool transaction
                    spool.set_state(PROGRESS_KEY, str(due))  # ... with the progress ...
                    batcher.flush(force=True)  # ... committed together: a kill -9 keeps both or neither
                    next_k = due
        now = time.monotonic()
        if now >= next_status_s:
            next_status_s = now + STATUS_EVERY_S
            oldest = spool.read_after(0, 1)
            _write_json(status_file, {
                "name": name, "pid": os.getpid(), "next": next_k, "generating": generating[0],
                "depth": spool.depth, "max_id": spool.max_id, "min_id": oldest[0].id if oldest else None,
                "connected": publisher.connected, "sent": publisher.sent, "published": publisher.published,
                "rejected": publisher.rejected, "confirmations": publisher.confirmations,
                "resent_unconfirmed": publisher.resent_unconfirmed, "connects": publisher.connects,
                "inflight": publisher.inflight, "unrouted": unrouted[0], "updated_at": time.time(),
            })  # fmt: skip
    await asyncio.gather(pump, return_exceptions=True)
    publisher.stop(None)
    spool.close()


# ---- the conductor -------------------------------------------------------------------------------------------------


@dataclass
class Child:
    """A subprocess the benchmark starts, kills and starts again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, chars: int = 1_500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Kill:
    part: str  # ingest | source | broker
    target: str
    at_s: float  # since the traffic started
    pause_s: float
    max_ids: dict[str, int] = field(default_factory=dict)  # each source's highest spool id at the kill
    caught_up_s: float | None = None  # since the kill: every message spooled before it confirmed


def kill_plan(rng: random.Random, profile: Profile, workers: int) -> list[Kill]:
    """`kills` kills of each part, one at a random moment in each equal slice of the kill window."""
    start_s, end_s = (f * profile.traffic_s for f in KILL_WINDOW)
    slice_s = (end_s - start_s) / profile.kills
    if slice_s < KILL_GAP_S:
        raise ValueError(f"{profile.kills} kills in {end_s - start_s:.0f} s: less than {KILL_GAP_S} s apart")
    plan = []
    for part in ("ingest", "source", "broker"):
        for n in range(profile.kills):
            at_s = start_s + n * slice_s + rng.uniform(0.0, slice_s - KILL_GAP_S)
            if part == "source":
                target = source_name(rng.randrange(profile.sources))
            elif part == "ingest":
                target = f"{INGEST_NAME}-{rng.randrange(workers)}" if workers > 1 else INGEST_NAME
            else:
                target = "mosquitto"
            plan.append(Kill(part=part, target=target, at_s=round(at_s, 2), pause_s=round(rng.uniform(*PAUSE_S), 2)))
    return sorted(plan, key=lambda k: k.at_s)


class Soak:
    def __init__(self, *, profile: Profile, seed: int, workers: int, work: Path, db: Any, broker: Any,
                 settings: Any, console: Any, confirm_timeout_s: float = SOURCE_CONFIRM_TIMEOUT_S) -> None:  # fmt: skip
        self.profile = profile
        self.confirm_timeout_s = confirm_timeout_s
        self.seed = seed
        self.workers = workers
        self.work = work
        self.db = db
        self.broker = broker
        self.console = console
        self.status_dir = work / "status"
        self.status_dir.mkdir()
        self.ingest_status_dir = work / "ingest-status"
        self.unexpected_exits: list[str] = []
        self.kills: list[Kill] = []
        self.t0 = 0.0
        self.timeline = work / "timeline.jsonl"  # one line a second: every source's and worker's status
        self._next_sample_s = 0.0
        self.peak_spool_depth = 0  # messages in all spools together, sampled once a second
        self.peak_ingest_lag_s = 0.0  # as the workers report it
        self.peak_load = 0.0  # the machine's 1-minute load average: the figures depend on the CPU the parts get
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
        env |= {
            "AMR_CONFIG": str(work / "no-amr.toml"),  # no amr.toml of the working directory
            "AMR_STATE_DIR": str(settings.state_dir),
            "AMR_DB_PORT": str(settings.db.port),
            "AMR_DB_DATA_DIR": str(settings.db.data_dir),
            "AMR_MQTT_PORT": str(settings.mqtt.port),
            "PYTHONPATH": str(ROOT),
            PASSWORD_ENV: broker.credentials.mqtt_password("collector"),
        }
        self.ingest = Child(INGEST_NAME, [sys.executable, "-m", "app", "ingest", "--workers", str(workers), "--name",
                                          INGEST_NAME, "--no-live", "--status-dir", str(self.ingest_status_dir)],
                            env, work / "ingest.log")  # fmt: skip
        self.sources: dict[str, Child] = {}
        for i in range(profile.sources):
            self.sources[source_name(i)] = self._source_child("source", i, profile.readings_per_s, env)
        self.hostile = self._source_child("hostile", 0, profile.hostile_per_s, env)
        self.down: dict[str, Kill] = {}  # target -> its kill, while it is down
        self.publisher_counts: Counter[str] = Counter()  # of the sources' processes that ended

    def _carry(self, status: dict[str, Any] | None) -> None:
        """Keep the counters of a source process that ends (from its last status file: up to 0.2 s old)."""
        if status is not None:
            self.publisher_counts.update({k: int(status[k]) for k in PUBLISHER_COUNTERS})

    def _source_child(self, role: str, index: int, rate: float, env: dict[str, str]) -> Child:
        name = HOSTILE if role == "hostile" else source_name(index)
        argv = [sys.executable, "-m", "benchmarks.bench_soak", "--role", role, "--index", str(index), "--rate",
                str(rate), "--broker", f"{self.broker.host}:{self.broker.port}", "--spool", str(self.work / name),
                "--status", str(self.status_file(name)),
                "--confirm-timeout-s", str(self.confirm_timeout_s)]  # fmt: skip
        return Child(name, argv, env, self.work / f"{name}.log")

    def status_file(self, name: str) -> Path:
        return self.status_dir / f"{name}.json"

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        return {name: _read_json(self.status_file(name)) for name in [*self.sources, HOSTILE]}

    def all_sources(self) -> list[Child]:
        return [*self.sources.values(), self.hostile]

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- start, kill, restart ------------------------------------------------------------------------------------
    def start_all(self) -> None:
        self.ingest.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self._ingest_statuses()) < self.workers:
            if time.monotonic() > deadline or not self.ingest.alive():
                raise RuntimeError(f"amr ingest did not start:\n{self.ingest.log_tail()}")
            time.sleep(0.2)
        for child in self.all_sources():
            child.start()
        while not all(s is not None and s["connected"] for s in self.statuses().values()):
            for child in self.all_sources():
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited at its start:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sources did not connect: {self.statuses()}")
            time.sleep(0.1)

    def _ingest_statuses(self) -> list[dict[str, Any]]:
        from ingest.metrics import read_status_files

        return read_status_files(self.ingest_status_dir) if self.ingest_status_dir.exists() else []

    def _kill(self, kill: Kill) -> None:
        statuses = self.statuses()
        kill.max_ids = {name: int(s["max_id"]) for name, s in statuses.items() if s is not None}
        if kill.part == "broker":
            pid = self.broker.pid()
            if pid is None:
                raise RuntimeError("the broker is not running")
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.broker.pid() is not None:  # gone (pid() tells a zombie or a reused pid from the broker)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto {pid} survived SIGKILL")
                time.sleep(0.01)
        elif kill.part == "source":
            self.sources[kill.target].kill9()
            self._carry(statuses[kill.target])
        elif self.workers == 1:
            self.ingest.kill9()
        else:  # one worker process of the supervisor: the supervisor starts it again
            pids = {s["worker"]: int(s["pid"]) for s in self._ingest_statuses()}
            if kill.target not in pids:
                raise RuntimeError(f"no status file names ingest worker {kill.target}")
            os.kill(pids[kill.target], signal.SIGKILL)
        self.kills.append(kill)
        self.down[kill.target] = kill
        self.console.print(f"{self.elapsed():6.1f} s  kill -9 {kill.part} {kill.target}, back in {kill.pause_s} s")

    def _restart(self, kill: Kill) -> None:
        if kill.part == "broker":
            if not self.broker.start():
                raise RuntimeError("LocalMosquitto.start() says the killed broker is still running")
        elif kill.part == "source":
            self.sources[kill.target].start()
        elif self.workers == 1:
            self.ingest.start()
        # else: the supervisor restarted the worker process
        del self.down[kill.target]

    def _supervise(self) -> None:
        """A part that died without being killed is a finding: note it and start it again."""
        if "mosquitto" not in self.down and self.broker.pid() is None:
            self.unexpected_exits.append(f"{self.elapsed():.1f} s mosquitto")
            self.broker.start()
        for child in [*self.all_sources(), self.ingest]:
            if child.name not in self.down and not child.alive():
                code = child.proc.returncode if child.proc is not None else None
                self.unexpected_exits.append(f"{self.elapsed():.1f} s {child.name} exit {code}")
                self.console.print(f"[red]{child.name} exited ({code}) unasked[/red]\n{child.log_tail()}")
                child.start()

    def _sample(self) -> None:
        """Append the statuses to the timeline (kept with the logs), once a second."""
        if self.elapsed() < self._next_sample_s:
            return
        self._next_sample_s = self.elapsed() + 1.0
        keys = ("depth", "max_id", "min_id", "inflight", "connected", *PUBLISHER_COUNTERS)
        sources = {n: {k: s[k] for k in keys} if s else None for n, s in self.statuses().items()}
        workers = {s["worker"]: {k: s.get(k) for k in INGEST_COUNTERS} for s in self._ingest_statuses()}
        line = {
            "t_s": round(self.elapsed(), 2),
            "load": os.getloadavg()[0],
            "down": sorted(self.down),
            "sources": sources,
            "ingest": workers,
        }
        with self.timeline.open("a") as out:
            out.write(json.dumps(line) + "\n")
        self.peak_spool_depth = max(self.peak_spool_depth, sum(int(v["depth"]) for v in sources.values() if v))
        self.peak_load = max(self.peak_load, os.getloadavg()[0])
        lags = [float(v["lag_s"] or 0.0) for v in workers.values()]
        self.peak_ingest_lag_s = max([self.peak_ingest_lag_s, *lags])

    def _check_caught_up(self) -> None:
        statuses = self.statuses()
        now = self.elapsed()
        for kill in self.kills:
            if kill.caught_up_s is not None or kill.target in self.down:
                continue
            done = True
            for name, max_id in kill.max_ids.items():
                s = statuses.get(name)
                if s is None or (s["min_id"] is not None and int(s["min_id"]) <= max_id):
                    done = False
            if done:
                kill.caught_up_s = round(now - kill.at_s, 2)

    # -- the run ---------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        p = self.profile
        plan = kill_plan(random.Random(self.seed), p, self.workers)
        self.start_all()
        self.t0 = time.monotonic()
        # (time, order, action, kill): kills from the plan, restarts pushed as kills happen
        events: list[tuple[float, int, str, Kill]] = [(k.at_s, n, "kill", k) for n, k in enumerate(plan)]
        heapq.heapify(events)
        order = len(events)
        while self.elapsed() < p.traffic_s or self.down:
            while events and events[0][0] <= self.elapsed():
                _, _, action, kill = heapq.heappop(events)
                if action == "kill":
                    self._kill(kill)
                    order += 1
                    heapq.heappush(events, (self.elapsed() + kill.pause_s, order, "restart", kill))
                else:
                    self._restart(kill)
            self._supervise()
            self._check_caught_up()
            self._sample()
            time.sleep(LOOP_S)
        stop_s = self.elapsed()
        self.console.print(f"{stop_s:6.1f} s  traffic stops; waiting for every spool to empty")
        for child in self.all_sources():
            child.signal(signal.SIGUSR1)
        drained_s: float | None = None
        deadline = stop_s + p.drain_timeout_s
        while self.elapsed() < deadline:
            self._supervise()
            self._check_caught_up()
            self._sample()
            statuses = self.statuses()
            if all(s is not None and not s["generating"] and s["depth"] == 0 and s["connected"]
                   and s["updated_at"] > time.time() - 1.0 for s in statuses.values()):  # fmt: skip
                drained_s = self.elapsed()
                break
            time.sleep(LOOP_S)
        final_status = self.statuses()
        for status in final_status.values():
            self._carry(status)
        for child in self.all_sources():
            child.stop()
        progress, depth = {}, {}
        held: dict[str, list[tuple[str, bytes]]] = {}
        refused: dict[str, list[tuple[str, bytes, str]]] = {}
        from collectors.spool import Spool

        for child in self.all_sources():
            spool = Spool(self.work / child.name)
            progress[child.name] = int(spool.get_state(PROGRESS_KEY) or 0)
            depth[child.name] = spool.depth
            held[child.name] = [(r.topic, r.payload) for r in spool.read_after(0, spool.depth + 1)]
            refused[child.name] = spool.refused()
            spool.close()
        ingest_counters = self._ingest_statuses()
        self.ingest.stop()
        return {"stop_s": stop_s, "drained_s": drained_s, "progress": progress, "depth": depth, "held": held,
                "refused": refused, "final_status": final_status, "ingest": ingest_counters}  # fmt: skip

    def shutdown(self) -> None:
        for child in [*self.all_sources(), self.ingest]:
            with contextlib.suppress(Exception):
                child.stop(5.0)


# ---- checking the database -------------------------------------------------------------------------------------


def register_meters(conninfo: str, sources: int) -> None:
    import psycopg

    serials = [source_serial(i, m) for i in range(sources) for m in range(METERS_PER_SOURCE)]
    serials += [hostile_serial(m) for m in range(HOSTILE_METERS)]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO meters (serial, city, power_company, tariff_class, meter_kind)"
            " SELECT s, 'HN', (SELECT min(code) FROM power_companies), 'household', 'smart' FROM unnest(%s::text[]) s",
            (serials,),
        )


def held_readings(held: dict[str, list[tuple[str, bytes]]]) -> tuple[set[tuple[str, int]], set[bytes]]:
    """What the spools still hold, unconfirmed: (serial, ts us) of their readings, digests of their messages."""
    import msgspec

    from amr.messages import COLUMNS_FORMAT_VERSION, ColumnarReadingBatch, ReadingBatch, iter_readings

    keys: set[tuple[str, int]] = set()
    digests: set[bytes] = set()
    for name, records in held.items():
        for topic, payload in records:
            digests.add(message_sha256(topic, payload))
            if name == HOSTILE:
                continue  # bad on purpose; its mixed readings are counted by their dead letter's digest
            batch: ReadingBatch | ColumnarReadingBatch
            if msgspec.json.decode(payload, type=dict).get("v") == COLUMNS_FORMAT_VERSION:
                batch = msgspec.json.decode(payload, type=ColumnarReadingBatch)
            else:
                batch = msgspec.json.decode(payload, type=ReadingBatch)
            keys.update((r.meter, round(r.ts.timestamp() * 1_000_000)) for r in iter_readings(batch))
    return keys, digests


def check_database(
    conninfo: str,
    progress: dict[str, int],
    held: dict[str, list[tuple[str, bytes]]],
    refused: dict[str, list[tuple[str, bytes, str]]],
) -> dict[str, Any]:
    """Compare the database with the expected readings and dead letters, and the spools' refused tables with the
    messages too big for the broker. Missing readings that a spool still holds (not confirmed, so to be sent
    again at the next start) are 'undelivered', not lost."""
    import psycopg

    sent = {name: n for name, n in progress.items() if name != HOSTILE}
    expected: dict[tuple[str, int], float] = {}
    for i in range(len(sent)):
        for k in range(sent[source_name(i)]):
            serial, ts_s, value = reading_key(i, k)
            expected[(serial, ts_s * 1_000_000)] = value
    hostile_sent = progress.get(HOSTILE, 0)
    hostile_expected_rows = 0
    letters: dict[bytes, str] = {}
    refusals_expected: set[bytes] = set()
    topic = f"amr/v1/readings/{HOSTILE}"
    held_keys, held_digests = held_readings(held)
    for j in range(hostile_sent):
        held_j = message_sha256(topic, hostile_payload(j)) in held_digests
        for serial, ts_s, value in hostile_rows(j):
            if (serial, ts_s * 1_000_000) not in expected:
                hostile_expected_rows += 1
            expected[(serial, ts_s * 1_000_000)] = value
            if held_j:
                held_keys.add((serial, ts_s * 1_000_000))
        digest = message_sha256(topic, hostile_payload(j))
        if refused_at_source(j):
            refusals_expected.add(digest)
        else:
            letters.setdefault(digest, hostile_kind(j))  # a repeat is its original's
    with psycopg.connect(conninfo, autocommit=True) as conn:
        channel = conn.execute("SELECT channel_id FROM channels WHERE obis = %s", (OBIS,)).fetchone()
        assert channel is not None
        rows = conn.execute(
            "SELECT m.serial, r.channel_id, (extract(epoch FROM r.ts) * 1000000)::bigint, r.value FROM readings r"
            " JOIN meters m USING (meter_id) WHERE m.serial LIKE %s",
            (SERIAL_PREFIX + "%",),
        ).fetchall()
        dead = conn.execute(
            "SELECT message_sha256, source, topic, reason FROM dead_letters ORDER BY dead_letter_id"
        ).fetchall()
        poison_left = conn.execute("SELECT count(*) FROM ingest_poison").fetchone()
    seen: Counter[tuple[str, int]] = Counter()
    not_expected = wrong_values = 0
    for serial, channel_id, ts_us, value in rows:
        key = (serial, int(ts_us))
        if channel_id != channel[0] or key not in expected:
            not_expected += 1
            continue
        seen[key] += 1
        wrong_values += value != expected[key]
    stored = len(seen)
    missing = expected.keys() - seen.keys()
    undelivered = len(missing & held_keys)
    repeated = sum(n - 1 for n in seen.values())
    got: Counter[bytes] = Counter()
    unexpected: list[str] = []
    wrong_reasons: list[str] = []
    for digest, source, dl_topic, reason in dead:
        d = bytes(digest) if digest is not None else b""
        if d not in letters:
            unexpected.append(f"{source} {dl_topic}: {reason[:160]}")
            continue
        got[d] += 1
        if not any(w in reason for w in REASON_WORDS[letters[d]]):
            wrong_reasons.append(f"{letters[d]}: {reason[:160]}")
    refusals = Counter(message_sha256(t, payload) for t, payload, _ in refused.get(HOSTILE, []))
    others_refused = sum(len(rows) for name, rows in refused.items() if name != HOSTILE)
    return {
        "readings_sent_by_sources": sum(sent.values()),
        "readings_sent_by_hostile_mixed": hostile_expected_rows,
        "readings_expected": len(expected),
        "readings_stored": stored,
        "lost": len(missing) - undelivered,
        "undelivered_still_spooled": undelivered,
        "duplicated": repeated + not_expected,
        "rows_not_expected": not_expected,
        "wrong_values": wrong_values,
        "hostile_messages_sent": hostile_sent,
        "dead_letters_expected": len(letters),
        "dead_letters_got": sum(got.values()),
        "dead_letters_missing": sum(1 for d in letters if got[d] == 0 and d not in held_digests),
        "dead_letters_undelivered_still_spooled": sum(1 for d in letters if got[d] == 0 and d in held_digests),
        "dead_letters_repeated": sum(n - 1 for n in got.values() if n > 1),
        "dead_letters_unexpected": len(unexpected),
        "dead_letters_wrong_reason": len(wrong_reasons),
        "poison_ledger_rows_left": int(poison_left[0]) if poison_left else 0,
        "refused_at_source_expected": len(refusals_expected),
        "refused_at_source_got": sum(refusals.values()),
        # expected and not refused, refused twice, refused and not expected, refused valid batches
        "refused_at_source_wrong": len(refusals_expected - refusals.keys())
        + sum(n - 1 for n in refusals.values())
        + len(refusals.keys() - refusals_expected)
        + others_refused,
        "examples": {
            "unexpected": unexpected[:5],
            "wrong_reasons": wrong_reasons[:5],
            "missing_kinds": dict(Counter(k for d, k in letters.items() if got[d] == 0)),
        },
    }


# ---- the benchmark ---------------------------------------------------------------------------------------------


def run(
    quick: bool,
    *,
    seed: int = 11,
    workers: int = 1,
    traffic_s: float | None = None,
    drain_timeout_s: float | None = None,
    confirm_timeout_s: float = SOURCE_CONFIRM_TIMEOUT_S,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from amr.db.server import Role
    from tests.services import make_state_dir, running_services

    profile = QUICK if quick else FULL
    if traffic_s is not None:
        profile = Profile(**{**vars(profile), "traffic_s": traffic_s})
    if drain_timeout_s is not None:
        profile = Profile(**{**vars(profile), "drain_timeout_s": drain_timeout_s})
    console = Console()
    console.print(f"[bold]soak[/bold]: {profile.traffic_s:g} s of traffic, {profile.sources} sources x "
                  f"{profile.readings_per_s:g} readings/s, hostile {profile.hostile_per_s:g} messages/s, "
                  f"{profile.kills} kill(s) of each part, ingest --workers {workers}, seed {seed}, "
                  f"first confirm timeout {confirm_timeout_s:g} s")  # fmt: skip
    t_wall = time.perf_counter()
    with running_services() as (db, broker, settings):
        register_meters(db.conninfo(Role.OWNER), profile.sources)
        work = make_state_dir("amr-bench-soak-")
        soak = Soak(profile=profile, seed=seed, workers=workers, work=work, db=db, broker=broker, settings=settings,
                    console=console, confirm_timeout_s=confirm_timeout_s)  # fmt: skip
        try:
            outcome = soak.run()
            figures = check_database(db.conninfo(Role.OWNER), outcome["progress"], outcome["held"],
                                     outcome["refused"])  # fmt: skip
        except BaseException:
            console.print(f"[red]soak failed; logs kept in {work}[/red]")
            raise
        finally:
            soak.shutdown()
        failed = bool(figures["lost"] or figures["duplicated"] or figures["wrong_values"]
                      or figures["undelivered_still_spooled"] or figures["dead_letters_missing"]
                      or figures["dead_letters_undelivered_still_spooled"] or figures["dead_letters_unexpected"]
                      or figures["dead_letters_repeated"] or figures["refused_at_source_wrong"])  # fmt: skip
        if failed or os.environ.get("AMR_KEEP_TEST_STATE"):
            console.print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    kills = soak.kills
    last = kills[-1] if kills else None
    drained_s = outcome["drained_s"]
    result: dict[str, Any] = {
        **{k: v for k, v in figures.items() if k != "examples"},
        "kills_ingest": sum(k.part == "ingest" for k in kills),
        "kills_source": sum(k.part == "source" for k in kills),
        "kills_broker": sum(k.part == "broker" for k in kills),
        "unexpected_exits": len(soak.unexpected_exits),
        "catch_up_max_s": max((k.caught_up_s for k in kills if k.caught_up_s is not None), default=0.0),
        "kills_not_caught_up": sum(k.caught_up_s is None for k in kills),
        "drain_after_last_kill_s": last.caught_up_s if last else None,
        "drain_after_traffic_stop_s": round(drained_s - outcome["stop_s"], 2) if drained_s is not None else None,
        "spool_depth_left": sum(outcome["depth"].values()),
        "peak_spool_depth": soak.peak_spool_depth,
        "peak_ingest_lag_s": round(soak.peak_ingest_lag_s, 2),
        "peak_load_avg_1min": round(soak.peak_load, 1),
        "cpus": os.cpu_count(),
        **{f"publishers_{k}": soak.publisher_counts[k] for k in PUBLISHER_COUNTERS},
        "traffic_s": profile.traffic_s,
        "workers": workers,
        "seed": seed,
        "confirm_timeout_s": confirm_timeout_s,
        "failed": failed,
    }
    table = Table(title=f"soak: {profile.traffic_s:g} s, seed {seed}, ingest --workers {workers}")
    table.add_column("figure")
    table.add_column("expected", justify="right")
    table.add_column("got", justify="right")
    f = figures
    for label, exp, got in (
        ("readings sent by the sources", "", f"{f['readings_sent_by_sources']:,}"),
        ("readings sent in hostile mixed batches", "", f"{f['readings_sent_by_hostile_mixed']:,}"),
        ("readings stored", f"{f['readings_expected']:,}", f"{f['readings_stored']:,}"),
        ("lost (missing, and gone from the spools)", "0", f"{f['lost']:,}"),
        ("undelivered (missing, still in a spool: drain timed out)", "0", f"{f['undelivered_still_spooled']:,}"),
        ("duplicated (extra rows)", "0", f"{f['duplicated']:,}"),
        ("wrong values", "0", f"{f['wrong_values']:,}"),
        ("hostile messages sent (incl. repeats)", "", f"{f['hostile_messages_sent']:,}"),
        ("dead letters", f"{f['dead_letters_expected']:,}", f"{f['dead_letters_got']:,}"),
        ("dead letters missing / repeated", "0 / 0", f"{f['dead_letters_missing']} / {f['dead_letters_repeated']}"),
        ("dead letters undelivered (still in the spool)", "0", f"{f['dead_letters_undelivered_still_spooled']}"),
        ("dead letters unexpected", "0", f"{f['dead_letters_unexpected']}"),
        ("dead letters not naming their fault", "0", f"{f['dead_letters_wrong_reason']}"),
        ("poison ledger rows left", "0", f"{f['poison_ledger_rows_left']}"),
        ("refused at the source (too big for the broker)", f"{f['refused_at_source_expected']}",
         f"{f['refused_at_source_got']}"),
        ("refused at the source: missing, repeated or wrong", "0", f"{f['refused_at_source_wrong']}"),
        ("kills ingest / source / broker", "", f"{result['kills_ingest']} / {result['kills_source']} / "
                                               f"{result['kills_broker']}"),
        ("unexpected exits", "0", f"{len(soak.unexpected_exits)}"),
        ("machine: peak 1-min load average / CPUs", "", f"{result['peak_load_avg_1min']} / {os.cpu_count()}"),
        ("catch-up after a kill, max s", "", f"{result['catch_up_max_s']}"),
        ("kills never caught up", "0", f"{result['kills_not_caught_up']}"),
        ("drain after the last kill, s", "", f"{result['drain_after_last_kill_s']}"),
        ("drain after the traffic stopped, s", "", f"{result['drain_after_traffic_stop_s']}"),
        ("spool depth left", "0", f"{result['spool_depth_left']}"),
        ("peak spool depth (all sources) / peak ingest lag s", "", f"{result['peak_spool_depth']:,} / "
                                                                   f"{result['peak_ingest_lag_s']}"),
        ("publishers: sends / re-sends after a confirm timeout", "", f"{result['publishers_sent']:,} / "
                                                                     f"{result['publishers_resent_unconfirmed']:,}"),
        ("publishers: PUBACKs 'no matching subscribers'", "", f"{result['publishers_unrouted']:,}"),
        ("publishers: connects / PUBACKs refused", "", f"{result['publishers_connects']} / "
                                                      f"{result['publishers_rejected']}"),
    ):  # fmt: skip
        table.add_row(label, exp, got)
    console.print(table)
    for kind, examples in figures["examples"].items():
        if examples:
            console.print(f"[yellow]{kind}[/yellow]: {examples}")
    for line in soak.unexpected_exits:
        console.print(f"[red]unexpected exit[/red]: {line}")
    console.print("kills: " + "; ".join(f"{k.at_s:g} s {k.target} (down {k.pause_s} s, caught up after "
                                        f"{k.caught_up_s} s)" for k in kills))  # fmt: skip
    console.print(
        f"wall {time.perf_counter() - t_wall:.0f} s; " + ("[red]FAILED[/red]" if failed else "[green]ok[/green]")
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK.traffic_s:g} s of traffic, not {FULL.traffic_s:g}"
    )
    parser.add_argument("--seed", type=int, default=11, help="the kill plan's seed")
    parser.add_argument("--workers", type=int, default=1, help="amr ingest --workers")
    parser.add_argument("--traffic-s", type=float, default=None, help="override the profile's traffic time")
    parser.add_argument(
        "--drain-timeout-s",
        type=float,
        default=None,
        help="override the profile's drain timeout (a tiny one checks "
        "that what the spools still hold is counted as undelivered, not lost)",
    )
    # a child process of the benchmark (a source or the hostile publisher)
    parser.add_argument("--role", choices=("source", "hostile"), help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--confirm-timeout-s", type=float, default=SOURCE_CONFIRM_TIMEOUT_S,
                        help="the sources' first confirm timeout (production: 60)")  # fmt: skip
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    parser.add_argument("--spool", help=argparse.SUPPRESS)
    parser.add_argument("--status", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        import logging

        logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {args.role} %(levelname)s %(message)s")
        asyncio.run(_source_main(args))
        return 0
    result = run(args.quick, seed=args.seed, workers=args.workers, traffic_s=args.traffic_s,
                 drain_timeout_s=args.drain_timeout_s, confirm_timeout_s=args.confirm_timeout_s)  # fmt: skip
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
