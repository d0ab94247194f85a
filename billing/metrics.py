"""Prometheus metrics of billing and VEE.

A bill or VEE run is a batch job: nothing would be there to scrape when it ends, so its figures go to a
node_exporter textfile (``--collector.textfile.directory``), written atomically at the end of the run (success or
failure) by :func:`write_run_textfile`: ``<state dir>/metrics/billing.prom`` for ``amr bill``. Each run replaces
the file; the `kind` label tells a bill run (VEE + pricing) from a VEE-only run.

``amr_billing_stage_seconds{kind,stage}`` is a histogram: the partition stages (fetch, vee, store_vee) are
observed once per partition of meters, the run stages (meters, price, store_bills, export, total) once per run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Histogram, write_to_textfile

TEXTFILE_NAME = "billing.prom"  # in <state dir>/metrics, the directory node_exporter's textfile collector reads
# Seconds, from a small partition's stage (tens of ms) to a whole national run (about an hour at scale 1.0).
STAGE_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
PARTITION_STAGES = ("fetch", "vee", "store_vee")  # timed in each partition (billing.run._run_partition)
RUN_STATUSES = ("released", "held", "overridden", "empty", "failed")


def stage_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "amr_billing_stage_seconds",
        "duration of a billing-run stage (partition stages once per partition, run stages once per run)",
        labelnames=("kind", "stage"),
        buckets=STAGE_BUCKETS_S,
        registry=registry,
    )


def vee_pass_histogram(registry: CollectorRegistry) -> Histogram:
    """The slot for the continuous VEE service (issue 14, item 1; it does not exist yet): observe the duration of
    each pass over the newly arrived readings. The billing run's VEE is the stage 'vee' of
    amr_billing_stage_seconds."""
    return Histogram(
        "amr_vee_pass_seconds",
        "duration of one pass of the continuous VEE service",
        buckets=STAGE_BUCKETS_S,
        registry=registry,
    )


def write_run_textfile(
    path: Path,
    *,
    kind: str,
    status: str,
    partition_seconds: Sequence[Mapping[str, float]],
    run_seconds: Mapping[str, float],
    readings: int,
    customers: int,
) -> None:
    """Write one run's metrics to `path` (atomically: a temporary file, then a rename)."""
    registry = CollectorRegistry()
    stages = stage_histogram(registry)
    for seconds in partition_seconds:
        for stage, s in seconds.items():
            stages.labels(kind=kind, stage=stage).observe(s)
    for stage, s in run_seconds.items():
        if stage not in PARTITION_STAGES:  # the run's clock also holds the partitions' sums: observed above
            stages.labels(kind=kind, stage=stage).observe(s)
    Gauge("amr_billing_run_finished_timestamp_seconds", "when the last run ended (UTC epoch seconds)",
          labelnames=("kind",), registry=registry).labels(kind=kind).set(time.time())  # fmt: skip
    state = Gauge("amr_billing_run_status", "1 for the status of the last run", labelnames=("kind", "status"),
                  registry=registry)  # fmt: skip
    for name in RUN_STATUSES:
        state.labels(kind=kind, status=name).set(1.0 if name == status else 0.0)
    Gauge("amr_billing_run_readings", "register readings the last run read", labelnames=("kind",),
          registry=registry).labels(kind=kind).set(readings)  # fmt: skip
    Gauge("amr_billing_run_customers", "customers the last run selected", labelnames=("kind",),
          registry=registry).labels(kind=kind).set(customers)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
