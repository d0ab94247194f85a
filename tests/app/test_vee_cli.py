"""`amr vee` end to end as a user runs it: a one-shot pass, the review queue, an edit refused to the reader and
made by the billing role, an episode acknowledged, and `amr bill corrections` on the edited day."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date

import numpy as np
import psycopg

from amr.db.server import DatabaseServer, Role
from amr.timebase import DAY_S, local_midnight_utc_s
from billing.synthetic import register_reads
from tests.ingested import store_through_ingest

METERS = (
    "meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind, multiplier, register_digits,"
    " households, read_day"
)


def _amr(db: DatabaseServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "AMR_STATE_DIR": str(db.settings.state_dir),
        "AMR_DB_PORT": str(db.settings.db.port),
        "AMR_DB_NAME": db.settings.db.name,
        "COLUMNS": "200",
    }
    if db.settings.db.data_dir:
        env["AMR_DB_DATA_DIR"] = str(db.settings.db.data_dir)
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_vee_commands_as_billing_staff_use_them(make_database: Callable[[str], DatabaseServer]) -> None:
    db = make_database("vee_cli")
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO meters ({METERS}) VALUES (1, 'CLI000001', 'HCM', 'PE0100', 'PE01000001', 'household',"
            " 'smart', 1, 6, 1, 1)"
        )
    r = register_reads(meter_ids=np.array([1]), first_day=date(2026, 8, 10), n_days=56, interval_s=DAY_S,
                       kwh_per_day=np.array([10.0]), rng=np.random.default_rng(3))  # fmt: skip
    r = r.take(~np.isin(r.ts_s, [local_midnight_utc_s(date(2026, 9, d)) for d in (14, 15)]))  # a 3-day gap
    store_through_ingest(db, r)

    ran = _amr(db, "vee", "run", "--until", "2026-12-31")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "VEE passes" in ran.stdout and "first_pass" in ran.stdout
    queue = _amr(db, "vee", "exceptions", "--rule", "GAP")
    assert queue.returncode == 0, queue.stderr
    assert "CLI000001" in queue.stdout and "GAP" in queue.stdout
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        (episode,) = conn.execute("SELECT episode_id FROM vee_episodes WHERE rule = 'GAP'").fetchone() or (None,)
    bill = _amr(db, "bill", "run", "--period", "2026-10", "--out", str(db.settings.state_dir / "exports"))
    assert bill.returncode == 0, bill.stdout + bill.stderr
    assert "3 estimated day(s) of 1 bill(s) made final" in bill.stdout, bill.stdout

    refused = _amr(db, "vee", "edit", "CLI000001", "--day", "2026-09-14", "--kwh", "55", "--reason", "meter photo",
                   "--role", "reader", "--by", "mallory")  # fmt: skip
    assert refused.returncode == 2 and "may not change validated data" in refused.stderr, refused.stderr
    edited = _amr(db, "vee", "edit", "CLI000001", "--day", "2026-09-14", "--kwh", "55", "--reason", "meter photo",
                  "--by", "thu.nguyen")  # fmt: skip
    # version 3: the bill run made the billed estimate final (version 2, quality F); a person may still edit it
    assert edited.returncode == 0 and "version 3" in edited.stdout, edited.stdout + edited.stderr
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        history = conn.execute(
            "SELECT version, quality, reason FROM vee_daily_versions WHERE day = '2026-09-14' AND channel_id = 1"
            " ORDER BY version"
        ).fetchall()
    assert history == [(1, "S", "first_pass"), (2, "F", "billed"), (3, "S", "manual_edit")]
    acked = _amr(db, "vee", "ack", str(episode), "--note", "customer away, photo requested", "--by", "thu.nguyen")
    assert acked.returncode == 0, acked.stderr
    assert "acknowledged" in _amr(db, "vee", "exceptions", "--status", "acknowledged").stdout

    corrections = _amr(db, "bill", "corrections", "--period", "2026-10", "--rebill", "--by", "thu.nguyen")
    assert corrections.returncode == 0, corrections.stdout + corrections.stderr
    assert "CLI000001" in corrections.stdout and "cancel-and-rebill" in corrections.stdout
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM vee_audit ORDER BY audit_id").fetchall()]
    assert actions == ["edit", "acknowledge", "rebill"]
