"""A bill run's node_exporter textfile: written at the end of the run, failed or not, with the stage durations
(partition stages once per partition, run stages once per run), parsed with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from amr.db.server import DatabaseServer, Role
from amr.timebase import DAY_S
from billing.cycles import BillingPeriod
from billing.metrics import TEXTFILE_NAME
from billing.run import run_period
from billing.synthetic import copy_readings, register_reads

OCTOBER = BillingPeriod.parse("2026-10")
METERS = 3
PARTITION_METERS = 2  # two partitions of the three meters


@pytest.fixture(scope="module")
def billing_db(make_database: Callable[[str], DatabaseServer]) -> str:
    db = make_database("billing_metrics_test")
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        for mid in range(1, METERS + 1):
            conn.execute(
                "INSERT INTO meters (meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind,"
                " multiplier, register_digits, households, read_day)"
                " VALUES (%s, %s, 'HCM', 'PE0100', %s, 'household', 'smart', 1, 6, 1, 1)",
                (mid, f"BM{mid:06d}", f"PE0100{mid:07d}"),
            )
        reads = register_reads(
            meter_ids=np.arange(1, METERS + 1),
            first_day=date(2026, 8, 10),
            n_days=67,
            interval_s=DAY_S,
            kwh_per_day=np.full(METERS, 10.0),
            rng=np.random.default_rng(3),
        )
        copy_readings(conn, reads)
    return db.conninfo(Role.BILLING)


def families(path: Path) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def sample(fams: dict[str, Any], name: str, **labels: str) -> float:
    family = name.removesuffix("_count").removesuffix("_sum")
    found = [s for s in fams[family].samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return float(found[0].value)


def test_bill_run_writes_stage_durations(billing_db: str, tmp_path: Path) -> None:
    path = tmp_path / "metrics" / TEXTFILE_NAME
    summary = run_period(
        billing_db, period=OCTOBER, out_dir=tmp_path / "out", partition_meters=PARTITION_METERS, metrics_file=path
    )
    assert summary.billed == METERS
    assert [p.name for p in path.parent.iterdir()] == [TEXTFILE_NAME]  # no temporary file left behind
    fams = families(path)
    stages = fams["amr_billing_stage_seconds"]
    assert stages.type == "histogram"
    for stage in ("fetch", "vee", "store_vee"):
        assert sample(fams, "amr_billing_stage_seconds_count", kind="bill", stage=stage) == 2  # per partition
    for stage in ("meters", "price", "store_bills", "export", "total"):
        assert sample(fams, "amr_billing_stage_seconds_count", kind="bill", stage=stage) == 1
    assert sample(fams, "amr_billing_stage_seconds_sum", kind="bill", stage="vee") == pytest.approx(
        summary.seconds["vee"]
    )
    assert sample(fams, "amr_billing_stage_seconds_sum", kind="bill", stage="total") == pytest.approx(
        summary.seconds["total"], rel=0.05
    )
    assert sample(fams, "amr_billing_run_status", kind="bill", status="released") == 1
    assert sample(fams, "amr_billing_run_status", kind="bill", status="failed") == 0
    assert sample(fams, "amr_billing_run_readings", kind="bill") == summary.readings > 0
    assert sample(fams, "amr_billing_run_customers", kind="bill") == METERS


def test_failed_run_still_writes_its_textfile(billing_db: str, tmp_path: Path) -> None:
    path = tmp_path / "metrics" / TEXTFILE_NAME
    blocker = tmp_path / "out"
    blocker.write_text("a file where the export folder should go")
    with pytest.raises(OSError):
        run_period(billing_db, period=OCTOBER, out_dir=blocker, metrics_file=path)
    fams = families(path)
    assert sample(fams, "amr_billing_run_status", kind="bill", status="failed") == 1
    assert sample(fams, "amr_billing_stage_seconds_count", kind="bill", stage="total") == 1
    assert sample(fams, "amr_billing_stage_seconds_count", kind="bill", stage="vee") == 1  # one partition ran
    assert "export" not in {s.labels.get("stage") for s in fams["amr_billing_stage_seconds"].samples}
