"""The schema, migrations and least-privilege roles, against a real TimescaleDB."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from amr.db.migrate import apply_migrations, migrations_dir
from amr.db.server import DatabaseServer, Role
from amr.errors import MigrationError
from amr.obis import CHANNELS

SQL_DIR = migrations_dir()


def test_migrations_apply_twice_without_error(db: DatabaseServer) -> None:
    applied, _ = apply_migrations(db.conninfo(Role.OWNER))
    assert applied == []  # the session fixture applied them all already
    applied_again, _ = apply_migrations(db.conninfo(Role.OWNER))
    assert applied_again == []
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM amr_schema_migrations ORDER BY 1")]
    assert versions == sorted(int(p.name[:3]) for p in SQL_DIR.glob("*.sql"))


def test_edited_migration_is_refused(db: DatabaseServer, tmp_path: Path) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy)
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(db.conninfo(Role.OWNER), sql_dir=copy)


def test_readings_is_a_hypertable_with_one_day_chunks(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1").fetchall()
    assert {"readings", "meter_events"} <= {r[0] for r in rows}
    interval = owner_conn.execute(
        "SELECT time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert interval is not None and interval[0].days == 1
    indexes = {r[0] for r in owner_conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'readings'")}
    assert indexes == {"readings_meter_channel_ts"}


def test_duplicate_readings_are_dropped_by_the_unique_key(db: DatabaseServer) -> None:
    ts = datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
    with psycopg.connect(db.conninfo(Role.INGEST)) as conn:
        for value in (10.0, 99.0):
            conn.execute(
                "INSERT INTO readings (ts, meter_id, channel_id, value) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (ts, 900001, 1, value),
            )
        conn.commit()
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        rows = conn.execute("SELECT value FROM readings WHERE meter_id = 900001").fetchall()
        conn.execute("DELETE FROM readings WHERE meter_id = 900001")
    assert rows == [(10.0,)]


def test_channel_catalogue_matches_the_python_mirror(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute("SELECT channel_id, obis, name, unit, kind FROM channels ORDER BY 1").fetchall()
    assert rows == [(c.channel_id, c.obis, c.name, c.unit, c.kind) for c in CHANNELS]


def test_power_companies_keep_vietnamese_names(owner_conn: psycopg.Connection) -> None:
    counts = dict(owner_conn.execute("SELECT city, count(*) FROM power_companies GROUP BY city").fetchall())
    assert counts == {"HCM": 15, "HN": 30}
    name = owner_conn.execute("SELECT name FROM power_companies WHERE code = 'PD0100'").fetchone()
    assert name == ("Hoàn Kiếm",)


def _refused(conninfo: str, statement: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def test_reader_can_read_but_not_write(db: DatabaseServer) -> None:
    reader = db.conninfo(Role.READER)
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM power_companies").fetchone() == (45,)
    assert _refused(reader, "INSERT INTO readings (ts, meter_id, channel_id, value) VALUES (now(), 1, 1, 1)")
    assert _refused(reader, "DELETE FROM meters")


def test_ingest_cannot_read_customers_or_run_ddl(db: DatabaseServer) -> None:
    ingest = db.conninfo(Role.INGEST)
    with psycopg.connect(ingest) as conn:
        conn.execute("SELECT meter_id, serial, multiplier FROM meters").fetchall()
    assert _refused(ingest, "SELECT customer_code FROM meters")
    assert _refused(ingest, "SELECT * FROM readings")
    assert _refused(ingest, "CREATE TABLE intruder (x int)")
    assert _refused(ingest, "DROP TABLE readings")
    assert _refused(ingest, "DELETE FROM readings")


def test_billing_reads_raw_data_but_cannot_change_it(db: DatabaseServer) -> None:
    billing = db.conninfo(Role.BILLING)
    with psycopg.connect(billing) as conn:
        conn.execute("SELECT count(*) FROM readings").fetchone()
        conn.execute("SELECT customer_code FROM meters LIMIT 1").fetchall()
    assert _refused(billing, "UPDATE readings SET value = 0")
    assert _refused(billing, "INSERT INTO readings (ts, meter_id, channel_id, value) VALUES (now(), 1, 1, 1)")


def test_status_reports_timescaledb_and_the_readings_hypertable(db: DatabaseServer) -> None:
    info = db.status()
    assert info["postgresql"].startswith("15")
    assert info["timescaledb"]
    assert info["edition"] in ("apache", "licensed (timescale)")
    assert "readings" in dict(info["hypertables"])
