"""A billing (or VEE-only) run for one period: meters -> partitions by meter id -> readings (binary COPY) ->
VEE kernels -> daily consumption and exceptions -> determinants per customer -> tariffs -> bills, exports and a
billing_runs record, held when a data-quality threshold is exceeded unless overridden.

Orchestration only: the stages live in billing.load, billing.vee, billing.store, billing.pricing and
billing.export. The caller passes the billing role's connection string and a parsed BillingPeriod."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from amr.timebase import DAY_S
from billing import flags as F
from billing.cycles import BillingPeriod
from billing.export import write_exports
from billing.load import PARTITION_METERS, MeterTable, fetch_meters, fetch_readings
from billing.metrics import write_run_textfile
from billing.pricing import BILL_DB_COLUMNS, Determinants, determinants, price_bills
from billing.rules import DEFAULT_RULES_FILE, VeeRules, read_vee_rules, rules_sha256
from billing.store import copy_frame, finish_run, insert_run, write_daily, write_exceptions
from billing.tariff_book import read_tariff_book
from billing.vee import CLOCK_CHANNEL, ENERGY_CHANNELS, PeriodWindow, validate_estimate

ProgressFn = Callable[[int, int, str], None]  # (meters done, meters in total, stage)
# Partitions can run in parallel processes (each keeps one PostgreSQL backend streaming COPY; numba runs one
# thread per worker). Default 1: on this 2-core machine, shared with the database, 2 workers were slower
# (measured: 100 k customers 52 s -> 66 s); use more on a machine with cores to spare, or Dask across machines.
DEFAULT_WORKERS = 1


@dataclass(kw_only=True)
class _PartitionJob:
    conninfo: str
    meters: MeterTable
    start: np.ndarray
    end: np.ndarray
    window: PeriodWindow
    from_s: int
    rules: VeeRules
    run_id: int


@dataclass(kw_only=True)
class _PartitionResult:
    determinants: Determinants
    exceptions: pd.DataFrame
    readings: int
    seconds: dict[str, float]


def _run_partition(job: _PartitionJob) -> _PartitionResult:
    """Fetch one meter-id range's readings, run VEE, store its daily rows and exceptions, return determinants."""
    seconds: dict[str, float] = {}
    part = job.meters
    with psycopg.connect(job.conninfo, autocommit=True) as conn:
        t = time.perf_counter()
        readings = fetch_readings(
            conn,
            meter_ids=part.meter_id,
            channels=(*ENERGY_CHANNELS, CLOCK_CHANNEL),
            from_s=job.from_s,
            to_s=job.window.end_s,
        )
        seconds["fetch"] = time.perf_counter() - t
        t = time.perf_counter()
        vee = validate_estimate(
            readings, rules=job.rules, window=job.window, meter_ids=part.meter_id, register_digits=part.register_digits
        )
        seconds["vee"] = time.perf_counter() - t
        t = time.perf_counter()
        row = np.searchsorted(part.meter_id, vee.series_meter)
        with conn.transaction():
            write_daily(conn, vee, multiplier=part.multiplier[row], run_id=job.run_id)
            write_exceptions(conn, vee.exceptions, run_id=job.run_id)
        seconds["store_vee"] = time.perf_counter() - t
    return _PartitionResult(
        determinants=determinants(vee, part, job.start, job.end),
        exceptions=vee.exceptions,
        readings=len(readings),
        seconds=seconds,
    )


def _worker_init() -> None:
    import numba

    numba.set_num_threads(1)


def _run_jobs(
    jobs: list[_PartitionJob], workers: int, dask_scheduler: str | None = None
) -> Iterator[tuple[int, _PartitionResult]]:
    """(job index, result) as partitions finish: on a Dask cluster when `dask_scheduler` is given, else in
    `workers` local processes, else in this process (one worker or one job)."""
    if dask_scheduler:
        from billing.distributed import run_on_dask

        yield from run_on_dask(_run_partition, jobs, dask_scheduler)
        return
    if workers <= 1 or len(jobs) <= 1:
        for k, job in enumerate(jobs):
            yield k, _run_partition(job)
        return
    # spawn, not fork: numba's thread pool and open connections do not survive a fork
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(_run_partition, job): k for k, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


@dataclass(kw_only=True)
class RunSummary:
    run_id: int
    kind: str
    period: BillingPeriod
    status: str
    customers: int = 0
    billed: int = 0
    no_data: int = 0
    no_tariff: int = 0
    energy_kwh: int = 0
    amount_vnd: int = 0
    vat_vnd: int = 0
    total_vnd: int = 0
    estimated_share: float = 0.0
    no_data_share: float = 0.0
    readings: int = 0
    exceptions_by_rule: dict[str, int] = field(default_factory=dict)
    price_flags: dict[str, int] = field(default_factory=dict)  # billed customers per price flag (flags.PRICE_FLAG_*)
    hold_reason: str | None = None
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def vee_window(period: BillingPeriod, meters: MeterTable) -> tuple[PeriodWindow, np.ndarray, np.ndarray]:
    """The local days covering every meter's cycle, and each meter's cycle (start, end) as datetime64[D]."""
    start, end = period.cycles(meters.read_day if len(meters) else np.array([1]))
    first = start.min()
    n_days = int((end.max() - first).astype(int))
    return PeriodWindow(first_day=first.item(), n_days=n_days), start[: len(meters)], end[: len(meters)]


def run_period(
    conninfo: str,
    *,
    period: BillingPeriod,
    kind: str = "bill",
    city: str | None = None,
    power_company: str | None = None,
    read_day: int | None = None,
    out_dir: Path | None = None,
    override_hold: bool = False,
    rules_file: Path | None = None,
    tariff_dir: Path | None = None,
    partition_meters: int = PARTITION_METERS,
    workers: int = DEFAULT_WORKERS,
    dask_scheduler: str | None = None,
    on_progress: ProgressFn | None = None,
    metrics_file: Path | None = None,
) -> RunSummary:
    """VEE (kind='vee') or VEE + billing (kind='bill') for one period, on the database at `conninfo` (the billing
    role's: every partition connects with it too); see the module docstring.
    Partitions of partition_meters meters run in `workers` processes (1: in this process), or on the Dask
    cluster at `dask_scheduler` ('local': a LocalCluster); the per-stage seconds add up the workers' time.
    `metrics_file`: at the end of the run (failed or not), its stage durations as a node_exporter textfile
    (billing.metrics)."""
    rules: VeeRules = read_vee_rules(rules_file)
    book = read_tariff_book(tariff_dir)
    clock: dict[str, float] = {}
    partition_seconds: list[dict[str, float]] = []
    t0 = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        meters = fetch_meters(conn, city=city, power_company=power_company, read_day=read_day)
        run_id = insert_run(
            conn,
            kind=kind,
            period=period.label,
            city=city,
            power_company=power_company,
            rules_sha256=rules_sha256(rules_file or DEFAULT_RULES_FILE),
            tariffs_sha256=book.sha256,
        )
        summary = RunSummary(run_id=run_id, kind=kind, period=period, status="running", customers=len(meters))
        try:
            if len(meters) == 0:
                # Nothing selected is nothing to release: an 'empty' run is recorded (who asked for what),
                # with no bills, no exceptions and no export files.
                summary.status = "empty"
                summary.seconds = {"total": time.perf_counter() - t0}
                finish_run(
                    conn, run_id, status="empty", customers=0, detail={"reason": "no customer matches the filters"}
                )
                return summary
            clock["meters"] = time.perf_counter() - t0
            window, start, end = vee_window(period, meters)
            from_s = window.day0_s - rules.history.days * DAY_S
            jobs = [
                _PartitionJob(
                    conninfo=conninfo,
                    meters=meters.take(slice(lo, lo + partition_meters)),
                    start=start[lo : lo + partition_meters],
                    end=end[lo : lo + partition_meters],
                    window=window,
                    from_s=from_s,
                    rules=rules,
                    run_id=run_id,
                )
                for lo in range(0, len(meters), partition_meters)
            ]
            results: list[_PartitionResult | None] = [None] * len(jobs)
            done = 0
            for k, result in _run_jobs(jobs, workers, dask_scheduler):
                results[k] = result
                done += len(jobs[k].meters)
                summary.readings += result.readings
                partition_seconds.append(result.seconds)
                for stage, seconds in result.seconds.items():
                    clock[stage] = clock.get(stage, 0.0) + seconds
                if on_progress:
                    on_progress(done, len(meters), "VEE")
            parts_det = [r.determinants for r in results if r is not None]
            exceptions = [r.exceptions for r in results if r is not None]
            all_exc = pd.concat(exceptions, ignore_index=True) if exceptions else pd.DataFrame()
            summary.exceptions_by_rule = (
                {str(k): int(v) for k, v in all_exc["rule"].value_counts().sort_index().items()} if len(all_exc) else {}
            )
            det = Determinants.concat(parts_det, len(meters))
            n_int = det.n_measured.sum() + det.n_estimated.sum()
            summary.estimated_share = float(det.n_estimated.sum() / n_int) if n_int else 0.0
            summary.no_data_share = float(np.isnan(det.total_kwh).mean()) if len(meters) else 0.0
            status, reason = _hold(summary, rules, override_hold)
            fields: dict[str, Any] = {}
            if kind == "bill":
                t = time.perf_counter()
                bills = price_bills(meters, det, start, end, book)
                bills.insert(0, "run_id", run_id)
                clock["price"] = time.perf_counter() - t
                t = time.perf_counter()
                copy_frame(
                    conn, "bills", bills[["run_id", *BILL_DB_COLUMNS]], not_null=("tariff_versions", "quality_flags")
                )
                clock["store_bills"] = time.perf_counter() - t
                billed = bills["status"] == "billed"
                summary.billed = int(billed.sum())
                summary.no_data = int((bills["status"] == "no_data").sum())
                summary.no_tariff = int((bills["status"] == "no_tariff").sum())
                summary.energy_kwh = int(bills["energy_kwh"].sum())
                summary.amount_vnd = int(bills["amount_vnd"].sum())
                summary.vat_vnd = int(bills["vat_vnd"].sum())
                summary.total_vnd = int(bills["total_vnd"].sum())
                codes = bills["quality_flags"].str.split(",")
                summary.price_flags = {
                    code: n
                    for code in F.PRICE_FLAG_LABELS
                    if (n := int((billed & codes.map(lambda c, k=code: k in c)).sum()))
                }
                summary.status, summary.hold_reason = status, reason
                if out_dir is not None:
                    t = time.perf_counter()
                    run_dir = out_dir / f"{period.label}_run{run_id}"
                    summary.files = write_exports(
                        run_dir, bills=bills, exceptions=all_exc.assign(run_id=run_id), summary=summary_items(summary)
                    )
                    clock["export"] = time.perf_counter() - t
                    fields["export_dir"] = str(run_dir)
                fields |= {
                    "customers": summary.billed,
                    "energy_kwh": summary.energy_kwh,
                    "amount_vnd": summary.amount_vnd,
                    "vat_vnd": summary.vat_vnd,
                    "total_vnd": summary.total_vnd,
                }
            else:
                summary.status, summary.hold_reason = ("held", reason) if status == "held" else ("released", None)
                fields["customers"] = len(meters)
            clock["total"] = time.perf_counter() - t0
            summary.seconds = clock
            finish_run(
                conn,
                run_id,
                status=summary.status,
                estimated_share=summary.estimated_share,
                exceptions=summary.exceptions_by_rule,
                hold_reason=summary.hold_reason,
                detail={
                    "readings": summary.readings,
                    "no_data_share": summary.no_data_share,
                    "price_flags": summary.price_flags,
                    "seconds": {k: round(v, 3) for k, v in clock.items()},
                },
                **fields,
            )
        except BaseException:
            summary.status = "failed"
            finish_run(conn, run_id, status="failed")
            raise
        finally:
            if metrics_file is not None:
                write_run_textfile(
                    metrics_file,
                    kind=kind,
                    status=summary.status,
                    partition_seconds=partition_seconds,
                    run_seconds={"total": time.perf_counter() - t0} | clock,  # a failed run's total too
                    readings=summary.readings,
                    customers=summary.customers,
                )
    return summary


def _hold(summary: RunSummary, rules: VeeRules, override: bool) -> tuple[str, str | None]:
    reasons = []
    if summary.estimated_share > rules.hold.max_estimated_share:
        reasons.append(
            f"{summary.estimated_share:.2%} of intervals estimated (limit {rules.hold.max_estimated_share:.2%})"
        )
    if summary.no_data_share > rules.hold.max_no_data_share:
        reasons.append(
            f"{summary.no_data_share:.2%} of customers without consumption (limit {rules.hold.max_no_data_share:.2%})"
        )
    if not reasons:
        return "released", None
    return ("overridden" if override else "held"), "; ".join(reasons)


def summary_items(s: RunSummary) -> dict[str, Any]:
    items: dict[str, Any] = {
        "run": s.run_id,
        "period": s.period.label,
        "status": s.status,
        "customers": s.customers,
        "billed": s.billed,
        "no data": s.no_data,
        "no tariff": s.no_tariff,
        "energy [kWh]": s.energy_kwh,
        "amount before VAT [VND]": s.amount_vnd,
        "VAT [VND]": s.vat_vnd,
        "total [VND]": s.total_vnd,
        "intervals estimated": f"{s.estimated_share:.3%}",
        "readings": s.readings,
    }
    for code, count in s.price_flags.items():
        items[F.PRICE_FLAG_LABELS[code]] = count
    if s.hold_reason:
        items["hold reason"] = s.hold_reason
    for rule, count in s.exceptions_by_rule.items():
        items[f"exceptions {rule}"] = count
    return items
