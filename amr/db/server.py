"""One handle on the database the platform uses, whichever server it is.

Local (default): a project cluster started by `amr db up`, with a database owned by ``amr_owner``.
External (``AMR_DATABASE_URL``): the URL's user creates the roles when it may, and runs the migrations.
Roles: ``amr_owner`` (schema), ``amr_ingest``, ``amr_billing``, ``amr_reader``; passwords from the credentials file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from amr.credentials import Credentials, read_or_create_credentials
from amr.db.cluster import LocalCluster, default_data_dir
from amr.db.migrate import Migration, apply_migrations
from amr.db.roles import Role
from amr.errors import ServiceError
from amr.settings import Settings

__all__ = ["DatabaseServer", "Role"]  # Role is defined in amr.db.roles; most callers import it from here


@dataclass(kw_only=True)
class DatabaseServer:
    settings: Settings
    credentials: Credentials
    cluster: LocalCluster | None = field(default=None)

    @classmethod
    def from_settings(cls, settings: Settings, *, durable: bool = True) -> DatabaseServer:
        creds = read_or_create_credentials(settings.credentials_file)
        cluster = None
        if settings.db.url is None:
            cluster = LocalCluster(
                data_dir=settings.db.data_dir or default_data_dir(settings.state_dir),
                port=settings.db.port,
                host=settings.db.host,
                superuser_password=creds.db_password("postgres"),
                durable=durable,
                bin_dir=settings.db.bin_dir,
            )
        return cls(settings=settings, credentials=creds, cluster=cluster)

    @property
    def is_external(self) -> bool:
        return self.cluster is None

    # -- connection strings ------------------------------------------------------------------------------
    def admin_conninfo(self, dbname: str | None = None) -> str:
        """The administrative connection: the local superuser, or the external URL's own user."""
        if self.cluster is not None:
            return self.cluster.superuser_conninfo(dbname or self.settings.db.name)
        assert self.settings.db.url is not None
        params: dict[str, Any] = conninfo_to_dict(self.settings.db.url)
        if dbname:
            params["dbname"] = dbname
        return make_conninfo(**params)

    def conninfo(self, role: Role) -> str:
        """Connection string for one of the platform's roles (the owner is the admin user when external)."""
        if self.cluster is None and role is Role.OWNER:
            return self.admin_conninfo()
        if self.cluster is not None:
            base: dict[str, Any] = {
                "host": self.cluster.host,
                "port": self.cluster.port,
                "dbname": self.settings.db.name,
            }
        else:
            base = conninfo_to_dict(self.admin_conninfo())
        base |= {"user": role.value, "password": self.credentials.db_password(role.value)}
        return make_conninfo(**base)

    def url(self, role: Role) -> str:
        p = conninfo_to_dict(self.conninfo(role))
        host, port = p.get("host", "127.0.0.1"), p.get("port", 5432)
        return f"postgresql://{p['user']}:{p['password']}@{host}:{port}/{p['dbname']}"

    # -- lifecycle --------------------------------------------------------------------------------------
    def up(self) -> tuple[list[Migration], list[str]]:
        """Start (local), create roles and database, apply migrations. Idempotent."""
        if self.cluster is not None:
            self.cluster.start()
            self._bootstrap_local()
        else:
            self._bootstrap_external()
        return apply_migrations(self.conninfo(Role.OWNER))

    def down(self) -> bool:
        if self.cluster is None:
            raise ServiceError("AMR_DATABASE_URL points at an external server: the project does not stop it")
        return self.cluster.stop()

    def _ensure_roles(self, conn: psycopg.Connection[Any], roles: list[Role]) -> None:
        existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}
        for role in roles:
            verb = "ALTER" if role.value in existing else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role.value), sql.Literal(self.credentials.db_password(role.value))
                )
            )

    def _bootstrap_local(self) -> None:
        assert self.cluster is not None
        name = self.settings.db.name
        with psycopg.connect(self.cluster.superuser_conninfo("postgres"), autocommit=True) as conn:
            self._ensure_roles(conn, list(Role))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER amr_owner").format(sql.Identifier(name)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO amr_ingest, amr_billing, amr_reader").format(
                    sql.Identifier(name)
                )
            )
        with psycopg.connect(self.cluster.superuser_conninfo(name), autocommit=True) as conn:
            # TimescaleDB is not a trusted extension: the superuser creates it, the owner uses it.
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("ALTER SCHEMA public OWNER TO amr_owner")

    def _bootstrap_external(self) -> None:
        try:
            with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
                can_create = conn.execute(
                    "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
                missing = [
                    r
                    for r in (Role.INGEST, Role.BILLING, Role.READER)
                    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r.value,)).fetchone()
                ]
                if can_create and can_create[0]:
                    self._ensure_roles(conn, [Role.INGEST, Role.BILLING, Role.READER])
                elif missing:
                    raise ServiceError(
                        "roles missing on the server named by AMR_DATABASE_URL and its user may not create them: "
                        + ", ".join(r.value for r in missing)
                    )
        except psycopg.OperationalError as exc:
            raise ServiceError(f"cannot connect to AMR_DATABASE_URL: {exc}") from exc

    # -- status -----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Versions, edition, hypertables with their chunk counts; raises ServiceError when unreachable."""
        try:
            with psycopg.connect(self.conninfo(Role.OWNER), connect_timeout=5) as conn:
                pg_version = conn.execute("SHOW server_version").fetchone()
                ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
                hypertables = (
                    conn.execute(
                        "SELECT h.hypertable_name, count(c.chunk_name)"
                        " FROM timescaledb_information.hypertables h"
                        " LEFT JOIN timescaledb_information.chunks c"
                        "   ON c.hypertable_name = h.hypertable_name AND c.hypertable_schema = h.hypertable_schema"
                        " GROUP BY h.hypertable_name ORDER BY 1"
                    ).fetchall()
                    if ts
                    else []
                )
                migrations = conn.execute("SELECT count(*), max(version) FROM amr_schema_migrations").fetchone()
        except psycopg.OperationalError as exc:
            raise ServiceError(f"database not reachable: {exc}") from exc
        lic = license_row[0] if license_row else None
        return {
            "server": (
                "external (AMR_DATABASE_URL)" if self.is_external else f"local cluster, port {self.settings.db.port}"
            ),
            "postgresql": pg_version[0] if pg_version else None,
            "timescaledb": ts[0] if ts else None,
            "edition": "apache" if lic == "apache" else ("licensed (timescale)" if lic == "timescale" else lic),
            "hypertables": [(name, int(chunks)) for name, chunks in hypertables],
            "migrations": (int(migrations[0]), migrations[1]) if migrations else (0, None),
        }
