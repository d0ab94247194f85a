"""Versioned migrations ``NNN_name.sql`` from the ``sql`` package (the checkout's top-level ``sql/`` folder, shipped
as package data in the wheel): each applied once, in order, inside its own transaction, recorded with its checksum
in ``amr_schema_migrations``. A migration edited after it was applied is refused, and so is a run that finds no
migration files at all (an incomplete installation would otherwise report "up to date" on an empty schema)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from amr.errors import MigrationError

MIGRATIONS_PACKAGE = "sql"
_MARKER = "AMR_MIGRATIONS"  # set in sql/__init__.py: tells the platform's package from another top-level "sql"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x616D72  # 'amr': one migrator at a time across processes


def migrations_dir() -> Path:
    """The folder of the migration files: the ``sql`` package's, in a checkout or an installed wheel alike."""
    try:
        package = importlib.import_module(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError as exc:
        raise MigrationError(
            f"the migrations package {MIGRATIONS_PACKAGE!r} is not installed: reinstall amr-platform "
            "(in a checkout: make setup)"
        ) from exc
    if not getattr(package, _MARKER, False):
        where = getattr(package, "__file__", None) or list(getattr(package, "__path__", []))
        raise MigrationError(
            f"{where}: this {MIGRATIONS_PACKAGE!r} is not amr-platform's migrations package; another module of that "
            "name comes first on sys.path (run from another folder, or use the `amr` command)"
        )
    folder = importlib.resources.files(package)
    if not isinstance(folder, Path):  # e.g. imported from a zip archive: the runner reads files on disk
        raise MigrationError(f"{folder}: the migrations package must be installed as files on disk")
    return folder


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def read_migrations(sql_dir: Path | None = None) -> list[Migration]:
    """The migrations in ``sql_dir`` (default: the package's), in order; none at all is an error, not "up to date"."""
    sql_dir = migrations_dir() if sql_dir is None else sql_dir
    found: list[Migration] = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNN_name.sql")
        found.append(Migration(version=int(match[1]), name=match[2], path=path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{sql_dir}: two migrations share a version number")
    if not found:
        raise MigrationError(
            f"{sql_dir}: no migration files (NNN_name.sql); the installation is incomplete, refusing to run"
        )
    return found


def apply_migrations(conninfo: str, *, sql_dir: Path | None = None) -> tuple[list[Migration], list[str]]:
    """Apply pending migrations; return (the ones applied now, the server's notices)."""
    migrations = read_migrations(sql_dir)  # before connecting: missing files fail without touching the database
    notices: list[str] = []
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS amr_schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM amr_schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{migration.path.name} was changed after it was applied: write a new migration"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO amr_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.path.name}: {exc}") from exc
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now, notices
