"""A project-local Mosquitto with a generated config: loopback listener, persistence, no anonymous access,
a generated password file and an ACL (amr.broker.topics.ACL_PATTERNS and ACL, written by `acl_file_text`).

What the ACL guarantees. Accounts are shared per role (collector, dcu, ingest, monitor); a collector's or DCU's
name is its MQTT client id, substituted for ``%c`` in the ``pattern`` lines:
- a collector writes only amr/v1/readings|events|status/<its client id>; a DCU only amr/v1/dcu/<its client
  id>/uplink and amr/v1/status/<its client id>; a name is one topic level (deeper topics are denied);
- every client reads amr/v1/confirm/<its client id> and no other confirmation topic; only the ingest account
  writes confirmations (a forged one would make a source delete a batch that was never stored);
- ingest reads readings, events, uplinks and status and writes amr/v1/confirm/# and its own status; monitor
  reads status; anonymous clients are refused at CONNECT.

What it does not guarantee (measured against Mosquitto 2.0.11, tests/amr/test_broker.py):
- Identity is only as strong as the shared account password: whoever holds the collector password may connect
  with any collector's client id and publish as that collector. Mosquitto then disconnects the client that held
  the id (session takeover), and the impostor also receives that client's queued confirmations. Per-device
  accounts (``%u``) or client certificates (``use_identity_as_username``) would close this.
- Mosquitto applies ``pattern`` lines to every account, after the account's own ``topic`` lines, and a
  ``topic deny`` refuses reading as well as writing. So an account cannot be denied a pattern write under a
  subtree it must read: the collector account may also write amr/v1/dcu/<its client id>/uplink (it reads
  uplinks to relay them), ingest may write readings, events and uplinks under its own client id (it reads them
  all), monitor may write amr/v1/status/<its client id>. Each of these writes only under the writer's own
  client id, i.e. it is no more than what the impersonation above already allows.
- Subscribing is never refused (Mosquitto 2.0 does not check SUBSCRIBE against an acl_file): a subscription to
  another client's confirmation topic is granted, and the broker then delivers nothing on it.
- A client id holding "+" or "#" loses every pattern grant (Mosquitto's own rule), so it can publish nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from amr.broker.confirm import PACKET_OVERHEAD_BYTES
from amr.broker.topics import ACL, ACL_PATTERNS
from amr.credentials import MQTT_ACCOUNTS, Credentials
from amr.errors import ConfigError, ServiceError
from amr.messages import MAX_PAYLOAD_BYTES
from amr.proc import chown_tree, require_program, service_user_ids
from amr.settings import Settings

MOSQUITTO_USER = "mosquitto"
# Ingest keeps a persistent session; while it is away the broker queues for it. Mosquitto's default of 1,000
# queued messages per client would drop readings during a short ingest outage, so allow far more.
MAX_QUEUED_MESSAGES = 1_000_000
# Messages in flight to one client: enough to keep a batching ingest worker busy between its commits.
MAX_INFLIGHT_MESSAGES = 1_000
# The broker refuses a packet that could not carry a payload ingest accepts: the payload limit plus room for the
# topic, the MQTT 5 properties (response topic, correlation data) and the fixed header.
MAX_PACKET_SIZE_BYTES = MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES


@dataclass(frozen=True, kw_only=True)
class Persistence:
    """How often Mosquitto writes its in-memory state (sessions, queued messages) to disk. Each save rewrites the
    whole database and fsyncs it, in the broker's only thread. Every `autosave_interval` seconds, or, with
    `on_changes`, every `autosave_interval` stored or queued messages."""

    autosave_interval: int
    on_changes: bool = False

    def config_lines(self) -> list[str]:
        return [
            f"autosave_interval {self.autosave_interval}",
            f"autosave_on_changes {'true' if self.on_changes else 'false'}",
        ]


# Chosen by benchmarks/bench_broker_persistence.py (QoS 1 reading batches of 3.7 KB into an absent persistent
# session, kill -9 right after a PUBACK). Measured on a 2-core machine shared with other jobs (load 6-40), so
# rates vary by 2x between runs; ratios are to the no-persistence baseline of the same run, 4 quick runs:
#   queue short (0-8,000 messages, ingest keeping up): autosave_interval 30 and 5 within that noise (0.6-2.1 x),
#     interval 1 0.5-1.7 x; autosave_on_changes 1000 0.2-1.6 x, on_changes 100 0.03-1.0 x (mostly below 0.4).
#   queue of 100,000 messages (~400 MB, ingest away for long): one save takes 2.0-2.6 s during which the broker
#     serves nobody. Baseline 3,056 msgs/s, interval 30 1,692, interval 5 988 (0.32 x); interval 1 had not taken
#     the backlog in after 17 min (saving back to back).
#   loss at kill -9 (bound: interval + 1 s + one save): interval 30 lost everything in every run (all < 31 s);
#     interval 5 lost 0.6-5.0 s of messages (and everything in runs shorter than 6 s); interval 1 0.3-1.8 s;
#     on_changes 1000 at most 1,000 messages, on_changes 100 at most 67.
# Interval 5 cuts the window from ~31 s to ~6 s where the broker spends its life (a short queue) at no cost we can
# tell from noise; in a long ingest outage it costs two thirds of the broker's peak rate (still ~1,000 msgs/s, far
# above what collectors send) and rewrites the database every ~9 s. Not shorter: interval 1 saves back to back once
# the queue is long, and a count of changes multiplies the saves with the traffic. End-to-end confirmations
# (docs/delivery.md) are the guarantee for sources that send them; the broker's persistence protects sources that
# do not, and a shorter window means fewer re-sends after a crash.
PERSISTENCE = Persistence(autosave_interval=5)
# Mosquitto saves its whole database when it gets SIGTERM: with a long queue (about 400 MB for 100,000 queued reading
# batches) on a busy disk that took longer than the 10 s we used to wait, and the SIGKILL that followed lost every
# message since the last autosave. Wait long enough for the save; SIGKILL is for a broker that hangs.
STOP_TIMEOUT_S = 120.0


@dataclass(frozen=True, kw_only=True)
class BrokerEndpoint:
    host: str
    port: int
    username: str
    password: str

    def as_url(self) -> str:
        return f"mqtt://{self.username}:***@{self.host}:{self.port}"


def broker_endpoint(settings: Settings, credentials: Credentials, account: str) -> BrokerEndpoint:
    """Where `account` connects: AMR_MQTT_URL (its credentials serve every account) or the local broker."""
    if account not in MQTT_ACCOUNTS:
        raise ConfigError(f"unknown broker account {account!r}; known: {', '.join(MQTT_ACCOUNTS)}")
    if settings.mqtt.url:
        parts = urlsplit(settings.mqtt.url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ConfigError("expected mqtt://user:password@host:port", source="AMR_MQTT_URL")
        return BrokerEndpoint(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )
    return BrokerEndpoint(
        host=settings.mqtt.host, port=settings.mqtt.port, username=account, password=credentials.mqtt_password(account)
    )


@dataclass(frozen=True, kw_only=True)
class LocalMosquitto:
    base_dir: Path
    port: int
    credentials: Credentials
    host: str = "127.0.0.1"
    persistence: Persistence | None = PERSISTENCE  # None: nothing on disk (benchmarks' baseline only)

    @property
    def config_file(self) -> Path:
        return self.base_dir / "mosquitto.conf"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "mosquitto.pid"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "mosquitto.log"

    def write_config(self) -> None:
        data_dir = self.base_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        passwd = self.base_dir / "passwd"
        acl = self.base_dir / "acl"
        plain = "".join(f"{a}:{self.credentials.mqtt_password(a)}\n" for a in MQTT_ACCOUNTS)
        fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(plain)
        subprocess.run([require_program("mosquitto_passwd"), "-U", str(passwd)], check=True, capture_output=True)
        acl.write_text(acl_file_text())
        conf = [
            "# Generated by amr broker up: do not edit, it is rewritten at every start.",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {acl}",
            *(
                ["persistence true", f"persistence_location {data_dir}/", *self.persistence.config_lines()]
                if self.persistence
                else ["persistence false"]
            ),
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"max_packet_size {MAX_PACKET_SIZE_BYTES}",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            f"pid_file {self.pid_file}",
        ]
        self.config_file.write_text("\n".join(conf) + "\n")
        os.chmod(acl, 0o600)
        chown_tree(self.base_dir, service_user_ids(MOSQUITTO_USER))

    def pid(self) -> int | None:
        """The pid of this broker's Mosquitto, or None. A pid file left by a killed broker names a process that is
        gone, a zombie nobody reaped (a container without init), or by now an unrelated process (pids are reused):
        only a live process whose command line is mosquitto with this config file counts."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return None  # no such process
        except PermissionError:
            return pid  # hidden from us (hidepid): cannot tell, so do not start a second broker on the port
        comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if state in "ZX":
            return None  # dead, not reaped: its sockets are closed
        if not argv[0]:
            # Exiting: the kernel drops the memory (and with it the command line) before it closes the files, so
            # a Mosquitto killed a moment ago may still hold the port. Kernel threads have no command line either.
            return pid if comm == "mosquitto" else None
        is_ours = Path(os.fsdecode(argv[0])).name == "mosquitto"
        return pid if is_ours and os.fsencode(self.config_file) in argv else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> bool:
        """Start the broker; False when it already runs. A stale pid file (see `pid`) is removed first."""
        if self.is_running():
            return False
        self.pid_file.unlink(missing_ok=True)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        proc = subprocess.run(
            [require_program("mosquitto"), "-c", str(self.config_file), "-d"],
            capture_output=True,
            text=True,
            check=False,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.is_running() and _port_open(self.host, self.port):
                return True
            time.sleep(0.05)
        log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        raise ServiceError(f"Mosquitto did not start on {self.host}:{self.port}: {proc.stderr.strip()}\n{log}")

    def stop(self) -> bool:
        """SIGTERM, then wait for Mosquitto to save its database and exit; SIGKILL after STOP_TIMEOUT_S."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.pid() is not None:  # not os.kill(pid, 0): it succeeds on a zombie nobody reaps
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True


def acl_file_text() -> str:
    """The broker's acl_file: the pattern lines every account gets, then each account's own lines."""
    lines = [
        "# Generated by amr broker up from amr.broker.topics: do not edit, it is rewritten at every start.",
        "# Pattern lines apply to every account (%c = the client id), after the account's own topic lines;",
        "# topic deny lines come first and refuse reading and writing alike. Nothing else is allowed.",
        "",
    ]
    lines += [f"pattern {access} {topic}" for access, topic in ACL_PATTERNS]
    for account, rules in ACL.items():
        lines += ["", f"user {account}"]
        lines += [f"topic {access} {topic}" for access, topic in rules]
    return "\n".join(lines) + "\n"


def _port_open(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
