"""A project-local PostgreSQL 15 cluster with TimescaleDB preloaded.

Runs as the ``postgres`` system user when the CLI is root; listens on loopback TCP at its own port and on a unix
socket in its own directory, so it never meets a system cluster. Authentication is scram-sha-256 everywhere.
The server programs (initdb, pg_ctl) are in ``AMR_PG_BINDIR`` (settings ``[db] bin_dir``) when set, else in the
directory ``pg_config --bindir`` names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from amr.errors import ServiceError
from amr.proc import chown_tree, require_program, run_as, service_user_ids, user_can_reach

PG_USER = "postgres"
# A directory counts as PostgreSQL's bin directory when it holds this program (pg_config of a client-only libpq
# install names /usr/bin, which has no server programs).
_SERVER_PROGRAM = "pg_ctl"
_PG_CONFIG_TIMEOUT_S = 10.0  # pg_config only prints its build settings
_INSTALL_HINT = (
    "install PostgreSQL 15 (`make setup`) or set AMR_PG_BINDIR to the directory that holds pg_ctl and initdb"
)


def find_pg_bindir(configured: Path | None, *, search_path: str | None = None) -> Path:
    """The directory of PostgreSQL's server programs: `configured` (AMR_PG_BINDIR / [db] bin_dir) when given,
    else what ``pg_config --bindir`` prints, pg_config looked up in `search_path` (None: $PATH). ServiceError
    names the directory tried and both ways to fix it."""
    if configured is not None:
        if not (configured / _SERVER_PROGRAM).is_file():
            raise ServiceError(
                f"AMR_PG_BINDIR ([db] bin_dir) is {configured}, which holds no {_SERVER_PROGRAM}: point it at "
                "PostgreSQL's bin directory (the one `pg_config --bindir` prints), or unset it to ask pg_config"
            )
        return configured
    pg_config = shutil.which("pg_config", path=search_path)
    if pg_config is None:
        raise ServiceError(
            "PostgreSQL's server programs not found: AMR_PG_BINDIR is not set and pg_config is not on PATH; "
            + _INSTALL_HINT
        )
    return _bindir_from_pg_config(pg_config)


@lru_cache(maxsize=4)
def _bindir_from_pg_config(pg_config: str) -> Path:
    """Cached: every cluster command asks, and pg_config's answer does not change while we run."""
    try:
        proc = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=_PG_CONFIG_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`{pg_config} --bindir` failed ({exc}): {_INSTALL_HINT}") from exc
    bindir = Path(proc.stdout.strip())
    if proc.returncode != 0 or not (bindir / _SERVER_PROGRAM).is_file():
        said = proc.stdout.strip() or proc.stderr.strip() or f"exit status {proc.returncode}"
        raise ServiceError(
            f"`{pg_config} --bindir` gave {said!r}, which holds no {_SERVER_PROGRAM} (AMR_PG_BINDIR is not set): "
            + _INSTALL_HINT
        )
    return bindir


@dataclass(frozen=True, kw_only=True)
class LocalCluster:
    data_dir: Path
    port: int
    superuser_password: str
    host: str = "127.0.0.1"
    durable: bool = True  # False for throwaway test clusters: fsync off, much faster
    bin_dir: Path | None = None  # PostgreSQL's server programs; None: ask pg_config (find_pg_bindir)

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgresql.log"

    def _bin(self, name: str) -> str:
        return require_program(str(find_pg_bindir(self.bin_dir) / name))

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        return run_as(PG_USER, [self._bin("pg_ctl"), "status", "-D", str(self.data_dir)], check=False).returncode == 0

    def init(self) -> bool:
        """Create the data directory with initdb; False when it already existed."""
        if self.is_initialised():
            return False
        initdb = self._bin("initdb")  # before any directory is made: a missing PostgreSQL leaves nothing behind
        if not user_can_reach(PG_USER, self.data_dir.parent):
            raise ServiceError(
                f"the postgres user cannot reach {self.data_dir.parent}: set AMR_DB_DATA_DIR to a directory "
                "it can traverse (e.g. under /var/lib)"
            )
        ids = service_user_ids(PG_USER)
        for d in (self.data_dir.parent, self.data_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        chown_tree(self.data_dir.parent, ids)
        fd, pwfile = tempfile.mkstemp(prefix="amr-pw-", dir=self.data_dir.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.superuser_password + "\n")
            if ids:
                os.chown(pwfile, *ids)
            run_as(
                PG_USER,
                [
                    initdb,
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
            )
        finally:
            os.unlink(pwfile)
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "max_connections": "200",
            "shared_buffers": "'1GB'",
            "work_mem": "'64MB'",
            "maintenance_work_mem": "'512MB'",
            "max_wal_size": "'4GB'",
            "timezone": "'UTC'",
            "log_min_messages": "warning",
        }
        if not self.durable:
            settings |= {
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "shared_buffers": "'256MB'",
            }
        conf = "\n# amr project settings\n" + "\n".join(f"{k} = {v}" for k, v in settings.items()) + "\n"
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write(conf)
        return True

    def start(self) -> bool:
        """Start the cluster (initialising it first if needed); False when it was already running."""
        self.init()
        if self.is_running():
            return False
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        chown_tree(self.socket_dir, service_user_ids(PG_USER))
        proc = run_as(
            PG_USER,
            [self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-w", "-t", "60", "-l", str(self.log_file)],
            check=False,
        )
        if proc.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise ServiceError(f"PostgreSQL did not start on port {self.port}: {proc.stderr.strip()}\n{tail}")
        return True

    def stop(self) -> bool:
        if not self.is_running():
            return False
        run_as(PG_USER, [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"])
        return True

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} dbname={dbname} user=postgres password={self.superuser_password}"


def default_data_dir(state_dir: Path) -> Path:
    """The project's data directory, or one under /var/lib when the postgres user cannot reach the project."""
    preferred = state_dir / "pg" / "data"
    if user_can_reach(PG_USER, state_dir):
        return preferred
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]
    return Path("/var/lib/amr") / digest / "data"
