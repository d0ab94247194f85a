"""The supervisor behind `amr up`: one small process that starts every long-running part of the platform as a
child (``python -m app ...``), restarts a child that dies, logs each child's output with rotation, keeps a state
file for `amr status`, and stops everything cleanly on SIGTERM.

- Children: each runs in its own session (process group), so a stop reaches its own children too (gunicorn's
  workers): SIGTERM to the group, ``restart.stop_timeout_s`` for a clean exit, then SIGKILL.
- Restarts: exponential back-off (``backoff_initial_s`` doubling up to ``backoff_max_s``); a child that stayed up
  ``reset_after_s`` starts again from ``backoff_initial_s`` after its next crash.
- Daemons (the local PostgreSQL and Mosquitto, unless external): started before the children through their own
  start/stop (pg_ctl, mosquitto -d), watched and restarted with the same back-off, stopped after the children.
- Logs: ``<state dir>/logs/<service>.log``, rotated by size (``.1`` .. ``.N``); the supervisor's own events in
  ``supervisor.log``.
- State: ``<state dir>/services/state.json`` (atomically replaced every second and on every change); the
  supervisor holds an exclusive lock on ``services/supervisor.lock`` for its lifetime, which is how `amr status`
  and `amr down` tell a live supervisor from a stale state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.services.config import LogPolicy, RestartPolicy

TICK_S = 0.2  # how often children are checked: a dead child is noticed within this
STATE_WRITE_S = 1.0  # the state file is rewritten at least this often (its updated_at shows the supervisor lives)
DAEMON_CHECK_S = 5.0  # the database and broker are checked this often (pg_ctl status costs a process)
LOG_CHUNK_BYTES = 65_536


def services_dir(state_dir: Path) -> Path:
    return state_dir / "services"


def logs_dir(state_dir: Path) -> Path:
    return state_dir / "logs"


def state_file(state_dir: Path) -> Path:
    return services_dir(state_dir) / "state.json"


def lock_file(state_dir: Path) -> Path:
    return services_dir(state_dir) / "supervisor.lock"


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """A service run as `python -m app <args>`."""

    name: str
    args: tuple[str, ...]
    kind: str  # ingest | collector | refresh | dashboards: how `amr status` finds its throughput
    status_key: str = ""  # the ingest client id / the collector id its status is published under
    metrics_port: int | None = None  # its Prometheus endpoint on 127.0.0.1, if it serves one


@dataclass(frozen=True, kw_only=True)
class DaemonSpec:
    """A server that runs as its own daemon (pg_ctl, mosquitto -d): started, watched and stopped through these."""

    name: str
    start: Callable[[], object]
    stop: Callable[[], object]
    pid: Callable[[], int | None]
    kind: str


class RotatingLog:
    """Append-only log file rotated by size: <name>.log -> .log.1 -> ... -> .log.<backups> (dropped)."""

    def __init__(self, path: Path, policy: LogPolicy) -> None:
        self.path = path
        self.policy = policy
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(path, "ab")  # noqa: SIM115 (kept open for the service's lifetime)

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fh.tell() + len(data) > self.policy.max_bytes and self._fh.tell() > 0:
                self._rotate()
            self._fh.write(data)
            self._fh.flush()

    def line(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.write(f"{stamp} [supervisor] {text}\n".encode())

    def _rotate(self) -> None:
        self._fh.close()
        for n in range(self.policy.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._fh = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


@dataclass
class _Run:
    """What the supervisor knows of one service."""

    name: str
    kind: str
    status_key: str = ""
    metrics_port: int | None = None
    state: str = "starting"  # starting | running | backoff | stopping | stopped | failed
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    failures: int = 0  # consecutive short-lived runs, for the back-off
    last_exit: str = ""
    last_exit_at: float | None = None
    next_start_at: float = 0.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    reader: threading.Thread | None = field(default=None, repr=False)
    log: RotatingLog | None = field(default=None, repr=False)
    next_check_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status_key": self.status_key,
            "metrics_port": self.metrics_port,
            "state": self.state,
            "pid": self.pid,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
            "next_start_at": self.next_start_at if self.state == "backoff" else None,
        }


def backoff_s(policy: RestartPolicy, failures: int) -> float:
    """Delay before restart number `failures` (1-based) of a run of short-lived children."""
    return float(min(policy.backoff_initial_s * 2 ** max(failures - 1, 0), policy.backoff_max_s))


class Supervisor:
    def __init__(
        self,
        *,
        state_dir: Path,
        children: list[ChildSpec],
        daemons: list[DaemonSpec],
        restart: RestartPolicy,
        logs: LogPolicy,
        env: dict[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
        external: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.children = {c.name: c for c in children}
        self.daemons = {d.name: d for d in daemons}
        self.restart = restart
        self.log_policy = logs
        self.external = external or {}  # name -> where (database / broker run elsewhere)
        base_env = dict(os.environ if env is None else env)
        # every child on the same state dir as the supervisor; unbuffered so its log shows lines as they happen
        base_env |= {"AMR_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"}
        self.env = base_env
        self.echo = echo
        self.stop_event = threading.Event()
        self.runs: dict[str, _Run] = {}
        self.started_at = time.time()
        services_dir(state_dir).mkdir(parents=True, exist_ok=True)
        self.log = RotatingLog(logs_dir(state_dir) / "supervisor.log", logs)
        self._last_state_write = 0.0

    # -- events ------------------------------------------------------------------------------------------------
    def _event(self, text: str, run: _Run | None = None) -> None:
        self.log.line(text)
        if run is not None and run.log is not None:
            run.log.line(text)
        if self.echo is not None:
            self.echo(text)

    # -- children ----------------------------------------------------------------------------------------------
    def _start_child(self, run: _Run) -> None:
        spec = self.children[run.name]
        if run.log is None:
            run.log = RotatingLog(logs_dir(self.state_dir) / f"{run.name}.log", self.log_policy)
        argv = [sys.executable, "-m", "app", *spec.args]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # its own process group: the stop reaches its children (gunicorn workers)
        )
        run.proc, run.pid, run.started_at, run.state = proc, proc.pid, time.time(), "running"
        assert proc.stdout is not None
        run.reader = threading.Thread(target=_copy_output, args=(proc.stdout, run.log), daemon=True)
        run.reader.start()
        self._event(f"{run.name}: started pid {proc.pid}: {' '.join(spec.args)}", run)

    def _check_child(self, run: _Run, now: float) -> None:
        if run.state == "backoff":
            if now >= run.next_start_at:
                run.restarts += 1
                self._start_child(run)
            return
        if run.proc is None:  # never started (a stop came first)
            return
        code = run.proc.poll()
        if code is None:
            return
        uptime = now - (run.started_at or now)
        if uptime >= self.restart.reset_after_s:
            run.failures = 0
        run.failures += 1
        delay = backoff_s(self.restart, run.failures)
        run.last_exit, run.last_exit_at = describe_exit(code), now
        run.state, run.pid, run.proc, run.next_start_at = "backoff", None, None, now + delay
        self._event(f"{run.name}: {run.last_exit} after {uptime:.1f} s; restart in {delay:.1f} s", run)

    def _stop_children(self) -> None:
        live = [r for r in self.runs.values() if r.proc is not None and r.proc.poll() is None]
        for run in live:
            run.state = "stopping"
            self._event(f"{run.name}: SIGTERM to pid {run.pid}", run)
            _signal_group(run.proc, signal.SIGTERM)  # type: ignore[arg-type]
        self._write_state(force=True)
        deadline = time.monotonic() + self.restart.stop_timeout_s
        for run in live:
            assert run.proc is not None
            try:
                run.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                self._event(f"{run.name}: no exit within {self.restart.stop_timeout_s:.0f} s; SIGKILL", run)
                _signal_group(run.proc, signal.SIGKILL)
                run.proc.wait()
            _signal_group(run.proc, signal.SIGKILL)  # anything of its group still left (an orphaned grandchild)
            run.last_exit, run.last_exit_at = describe_exit(run.proc.returncode), time.time()
            run.state, run.pid, run.proc = "stopped", None, None
            if run.reader is not None:
                run.reader.join(timeout=5)
        for run in self.runs.values():
            if run.kind != "daemon":
                run.state, run.pid = "stopped", None

    # -- daemons -----------------------------------------------------------------------------------------------
    def _start_daemon(self, run: _Run) -> None:
        spec = self.daemons[run.name]
        try:
            spec.start()
        except Exception as exc:  # any failure of pg_ctl / mosquitto is one failed start
            run.failures += 1
            delay = backoff_s(self.restart, run.failures)
            run.last_exit, run.last_exit_at = f"start failed: {exc}", time.time()
            run.state, run.pid, run.next_start_at = "backoff", None, time.time() + delay
            self._event(f"{run.name}: start failed ({exc}); retry in {delay:.1f} s")
            return
        run.pid, run.state, run.started_at = spec.pid(), "running", time.time()
        run.next_check_at = time.time() + DAEMON_CHECK_S
        self._event(f"{run.name}: running, pid {run.pid}")

    def _check_daemon(self, run: _Run, now: float) -> None:
        if run.state == "backoff":
            if now >= run.next_start_at:
                run.restarts += 1
                self._start_daemon(run)
            return
        if now < run.next_check_at:
            return
        run.next_check_at = now + DAEMON_CHECK_S
        pid = self.daemons[run.name].pid()
        if pid is not None:
            run.pid = pid
            if now - (run.started_at or now) >= self.restart.reset_after_s:
                run.failures = 0
            return
        run.failures += 1
        run.last_exit, run.last_exit_at = "not running", now
        run.state, run.pid, run.next_start_at = "backoff", None, now + backoff_s(self.restart, run.failures)
        self._event(f"{run.name}: not running; restart in {run.next_start_at - now:.1f} s")

    # -- state -------------------------------------------------------------------------------------------------
    def _write_state(self, *, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_state_write < STATE_WRITE_S:
            return
        self._last_state_write = now
        document = {
            "supervisor": {"pid": os.getpid(), "started_at": self.started_at, "updated_at": now},
            "external": self.external,
            "services": {name: run.public() for name, run in self.runs.items()},
        }
        write_json_atomic(state_file(self.state_dir), document)

    # -- main loop ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Start everything, watch until SIGTERM/SIGINT (or stop_event), stop everything."""
        with hold_lock(self.state_dir):
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop_event.set())
            self._event(f"supervisor pid {os.getpid()} on {self.state_dir}")
            try:
                for name, daemon in self.daemons.items():
                    self.runs[name] = _Run(name=name, kind=daemon.kind)
                for name, child in self.children.items():
                    self.runs[name] = _Run(
                        name=name, kind=child.kind, status_key=child.status_key, metrics_port=child.metrics_port
                    )
                self._write_state(force=True)
                for name in self.daemons:  # the servers first: ingest and the dashboards need them
                    if not self.stop_event.is_set():
                        self._start_daemon(self.runs[name])
                self._write_state(force=True)
                for name in self.children:
                    if not self.stop_event.is_set():
                        self._start_child(self.runs[name])
                self._write_state(force=True)
                while not self.stop_event.wait(TICK_S):
                    now = time.time()
                    for run in self.runs.values():
                        if run.name in self.daemons:
                            self._check_daemon(run, now)
                        else:
                            self._check_child(run, now)
                    self._write_state()
            finally:
                self._event("stopping")
                self._stop_children()
                for name in reversed(list(self.daemons)):
                    daemon_run = self.runs.get(name)
                    if daemon_run is None:
                        continue
                    try:
                        self.daemons[name].stop()
                    except Exception as exc:  # report it and go on stopping the rest
                        self._event(f"{name}: stop failed: {exc}")
                    daemon_run.state, daemon_run.pid = "stopped", None
                self._write_state(force=True)
                self._event("stopped")
                self.log.close()


def _copy_output(stream: IO[bytes], log: RotatingLog) -> None:
    """Copy a child's output to its log until the child closes it (exits)."""
    with contextlib.suppress(OSError, ValueError):
        while True:
            chunk = stream.readline(LOG_CHUNK_BYTES)
            if not chunk:
                break
            log.write(chunk)
    stream.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a file


@contextlib.contextmanager
def hold_lock(state_dir: Path) -> Iterator[None]:
    """The supervisor's lock for its lifetime; ServiceError when another supervisor holds it."""
    from amr.errors import ServiceError

    path = lock_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 (held until the supervisor ends)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ServiceError(f"a supervisor already runs on {state_dir} (`amr status`, `amr down`)") from exc
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def supervisor_pid(state_dir: Path) -> int | None:
    """The pid of the supervisor running on `state_dir`, or None (no lock held: none runs)."""
    path = lock_file(state_dir)
    if not path.exists():
        return None
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(state_file(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
