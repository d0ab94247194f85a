"""A billing (or VEE-only) run for one period: meters -> partitions by meter id -> readings (binary COPY) ->
VEE kernels -> daily consumption and exceptions -> determinants per customer -> tariffs -> bills, exports and a
billing_runs record, held when a data-quality threshold is exceeded unless overridden.

Orchestration only: the stages live in billing.load, billing.vee, billing.store, billing.pricing and
billing.export. The caller passes the billing role's connection string and a parsed BillingPeriod."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from amr.errors import ConfigError
from amr.timebase import DAY_S, LOCAL_TZ_NAME, local_midnight
from billing import flags as F
from billing.bill_ready import (
    BackgroundCopy,
    Readiness,
    bill_ready,
    cycle_bill_ready,
    cycle_determinants,
    days_as_vee,
    finalize_billed_estimates,
)
from billing.continuous import PASS_LOCK
from billing.cycles import BillingPeriod
from billing.export import write_exports
from billing.load import (
    CONTINUOUS_PARTITION_METERS,
    CYCLE_SUM_MAX_DAYS,
    PARTITION_METERS,
    CycleSums,
    MeterTable,
    ValidatedDays,
    fetch_cycle_sums_concurrently,
    fetch_meters,
    fetch_readings,
    fetch_validated_days,
)
from billing.metrics import write_run_textfile
from billing.pricing import BILL_DB_COLUMNS, Determinants, determinants, price_bills
from billing.rules import DEFAULT_RULES_FILE, VeeRules, read_vee_rules, rules_sha256
from billing.store import copy_frame, finish_run, insert_run, write_daily, write_exceptions
from billing.tariff_book import read_tariff_book
from billing.vee import CLOCK_CHANNEL, ENERGY_CHANNELS, PeriodWindow, empty_exceptions, validate_estimate

ProgressFn = Callable[[int, int, str], None]  # (meters done, meters in total, stage)
# Partitions can run in parallel processes (each keeps one PostgreSQL backend streaming COPY; numba runs one
# thread per worker). Default 1: on this 2-core machine, shared with the database, 2 workers were slower
# (measured: 100 k customers 52 s -> 66 s); use more on a machine with cores to spare, or Dask across machines.
DEFAULT_WORKERS = 1


SOURCES = ("readings", "continuous")  # bill from raw readings (VEE run on the month) or from the validated days


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
    source: str = "readings"


@dataclass(kw_only=True)
class _PartitionResult:
    determinants: Determinants
    exceptions: pd.DataFrame
    readings: int
    seconds: dict[str, float]
    readiness: Readiness | None = None


def _run_partition(job: _PartitionJob) -> _PartitionResult:
    """One meter-id range: from the validated days (source 'continuous'), or fetch its readings, run VEE, store its
    daily rows and exceptions; return determinants."""
    if job.source == "continuous":
        return _continuous_partition(job)
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


def _continuous_partition(job: _PartitionJob) -> _PartitionResult:
    """Determinants and the bill-ready gate of one meter-id range from vee_daily (no readings, no VEE): PostgreSQL
    sums each series' days over the cycle (billing.load.fetch_cycle_sums_concurrently), so one row per series is
    read instead of one per day."""
    seconds: dict[str, float] = {}
    part, window = job.meters, job.window
    t = time.perf_counter()
    sums: CycleSums | None = None
    days: ValidatedDays | None = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        gate_rows = pool.submit(_pending_and_episodes, job)  # on a connection of its own, beside the sums
        if window.n_days <= CYCLE_SUM_MAX_DAYS:
            first = np.datetime64(window.first_day, "D")
            sums = fetch_cycle_sums_concurrently(
                job.conninfo, meter_ids=part.meter_id, channels=ENERGY_CHANNELS, first_day=window.first_day,
                n_days=window.n_days, start=(job.start - first).astype(np.int64),
                end=(job.end - first).astype(np.int64),
            )  # fmt: skip
        else:  # a window longer than a day mask (no billing period has one): every day
            with psycopg.connect(job.conninfo, autocommit=True) as conn:
                days = fetch_validated_days(
                    conn, meter_ids=part.meter_id, channels=ENERGY_CHANNELS, first_day=window.first_day,
                    n_days=window.n_days,
                )  # fmt: skip
        pending, episodes = gate_rows.result()
    seconds["fetch"] = time.perf_counter() - t
    t = time.perf_counter()
    if sums is not None:
        det = cycle_determinants(sums, part, job.start, job.end, window)
        days_read = int(np.bitwise_count(sums.day_mask).sum())
    else:
        assert days is not None
        det = determinants(days_as_vee(days, window), part, job.start, job.end, energy_multiplied=True)
        days_read = len(days)
    intervals = det.n_measured + det.n_estimated
    share = np.divide(det.n_estimated, intervals, out=np.full(len(part), np.nan), where=intervals > 0)
    gate = dict(
        meter_id=part.meter_id,
        start=job.start,
        end=job.end,
        pending_meter=pending[:, 0],
        pending_day=pending[:, 1],
        episode_meter=episodes[:, 0],
        episode_first_day=episodes[:, 1],
        episode_last_day=episodes[:, 2],
        estimated_share=share,
        rules=job.rules.bill_ready,
    )
    if sums is not None:
        readiness = cycle_bill_ready(window=window, sums=sums, **gate)
    else:
        assert days is not None
        readiness = bill_ready(days=days, **gate)
    seconds["determinants"] = time.perf_counter() - t
    return _PartitionResult(
        determinants=det, exceptions=empty_exceptions(), readings=days_read, seconds=seconds, readiness=readiness
    )


def _pending_and_episodes(job: _PartitionJob) -> tuple[np.ndarray, np.ndarray]:
    """The partition's units waiting in vee_pending over the window, (meter, local day number), and its open
    episodes of a blocking severity, (meter, first local day, last local day)."""
    window = job.window
    lo, hi = int(job.meters.meter_id[0]), int(job.meters.meter_id[-1])
    with psycopg.connect(job.conninfo, autocommit=True) as conn:
        pending = np.array(
            conn.execute(
                "SELECT meter_id, day - date '1970-01-01' FROM vee_pending WHERE meter_id BETWEEN %s AND %s"
                " AND day BETWEEN %s AND %s",
                (lo, hi, window.first_day, window.last_day),
            ).fetchall(),
            dtype=np.int64,
        ).reshape(-1, 2)
        episodes = np.array(
            conn.execute(
                "SELECT meter_id, (first_start AT TIME ZONE %s)::date - date '1970-01-01',"
                " ((last_end - interval '1 microsecond') AT TIME ZONE %s)::date - date '1970-01-01'"
                " FROM vee_episodes WHERE status = 'open' AND severity = ANY(%s) AND meter_id BETWEEN %s AND %s"
                " AND last_end > %s AND first_start < %s",
                (LOCAL_TZ_NAME, LOCAL_TZ_NAME, list(job.rules.bill_ready.blocking_severities), lo, hi,
                 local_midnight(window.first_day), local_midnight(window.last_day + timedelta(days=1))),
            ).fetchall(),
            dtype=np.int64,
        ).reshape(-1, 3)  # fmt: skip
    return pending, episodes


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
    readings: int = 0  # raw readings read (source 'readings') or validated days read ('continuous')
    held: int = 0  # customers whose cycle is not bill-ready (source 'continuous')
    final_bills: int = 0  # billed customers whose estimated days became final (F) versions (source 'continuous')
    final_days: int = 0  # those days (every energy channel)
    source: str = "readings"
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
    partition_meters: int | None = None,
    workers: int = DEFAULT_WORKERS,
    dask_scheduler: str | None = None,
    on_progress: ProgressFn | None = None,
    metrics_file: Path | None = None,
    source: str = "readings",
) -> RunSummary:
    """VEE (kind='vee') or VEE + billing (kind='bill') for one period, on the database at `conninfo` (the billing
    role's: every partition connects with it too); see the module docstring.
    Partitions of partition_meters meters (default billing.load.PARTITION_METERS, CONTINUOUS_PARTITION_METERS for
    the continuous source) run in `workers` processes (1: in this process), or on the Dask
    cluster at `dask_scheduler` ('local': a LocalCluster); the per-stage seconds add up the workers' time.
    `metrics_file`: at the end of the run (failed or not), its stage durations as a node_exporter textfile
    (billing.metrics).
    `source` 'continuous' bills from the continuous VEE's validated days (billing.bill_ready): no readings, no VEE;
    customers whose cycle is not bill-ready are held (bills status 'held' with their reasons); each bill records
    the sum of its days' versions and the run the snapshot time, for `corrections`."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r} (one of {', '.join(SOURCES)})", source="--source")
    if source == "continuous" and kind != "bill":
        raise ConfigError("a VEE run validates readings: it has no continuous source", source="--source")
    if partition_meters is None:  # a continuous partition reads sums, not days: larger ones
        partition_meters = CONTINUOUS_PARTITION_METERS if source == "continuous" else PARTITION_METERS
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
        summary = RunSummary(
            run_id=run_id, kind=kind, period=period, status="running", customers=len(meters), source=source
        )
        lock = _ContinuousSnapshot(conn) if source == "continuous" else None
        store: BackgroundCopy | None = None  # the bills' COPY of a continuous run
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
            data_as_of = lock.take() if lock is not None else None
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
                    source=source,
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
            if lock is not None:
                lock.release()  # the determinants are read: VEE passes may go on
            parts_det = [r.determinants for r in results if r is not None]
            exceptions = [r.exceptions for r in results if r is not None]
            all_exc = pd.concat(exceptions, ignore_index=True) if exceptions else pd.DataFrame()
            if source == "continuous":
                all_exc = open_episodes(conn, meters.meter_id, window)
            summary.exceptions_by_rule = (
                {str(k): int(v) for k, v in all_exc["rule"].value_counts().sort_index().items()} if len(all_exc) else {}
            )
            det = Determinants.concat(parts_det, len(meters))
            n_int = det.n_measured.sum() + det.n_estimated.sum()
            summary.estimated_share = float(det.n_estimated.sum() / n_int) if n_int else 0.0
            summary.no_data_share = float(np.isnan(det.total_kwh).mean()) if len(meters) else 0.0
            # Billed from validated days, the gate holds single customers instead of the whole run.
            status, reason = _hold(summary, rules, override_hold) if source == "readings" else ("released", None)
            fields: dict[str, Any] = {}
            if kind == "bill":
                t = time.perf_counter()
                bills = price_bills(meters, det, start, end, book)
                bills.insert(0, "run_id", run_id)
                columns = ["run_id", *BILL_DB_COLUMNS]
                if source == "continuous":
                    ready = _concat_readiness([r.readiness for r in results if r is not None])
                    held = ready.held & (bills["status"] == "billed").to_numpy()
                    bills.loc[held, "status"] = "held"
                    reasons = ready.reasons.copy()
                    reasons[~held] = None  # NULL in the table, a blank cell in the exports (not NaN)
                    # object, not pandas' str dtype, whose missing value is NaN
                    bills["hold_reasons"] = pd.Series(reasons, index=bills.index, dtype=object)
                    bills["determinant_versions"] = ready.version_sum
                    bills["validated_days"] = ready.validated_days
                    summary.held = int(held.sum())
                    columns += ["hold_reasons", "determinant_versions", "validated_days"]
                clock["price"] = time.perf_counter() - t
                t = time.perf_counter()
                if source == "continuous":
                    # binary COPY on connections of its own (billing.bill_ready.COPY_STREAMS), beside the summary
                    # and the exports below: the database's work beside this process's; committed when waited for
                    store = BackgroundCopy(
                        conninfo,
                        "bills",
                        bills[columns],
                        not_null=("tariff_versions", "quality_flags"),
                        unique=("run_id", "meter_id"),  # bill_kind: the default, "bill"
                    )
                else:
                    copy_frame(conn, "bills", bills[columns], not_null=("tariff_versions", "quality_flags"))
                    clock["store_bills"] = time.perf_counter() - t
                billed = bills["status"] == "billed"
                summary.billed = int(billed.sum())
                summary.no_data = int((bills["status"] == "no_data").sum())
                summary.no_tariff = int((bills["status"] == "no_tariff").sum())
                summary.energy_kwh = int(bills.loc[billed, "energy_kwh"].sum())
                summary.amount_vnd = int(bills.loc[billed, "amount_vnd"].sum())
                summary.vat_vnd = int(bills.loc[billed, "vat_vnd"].sum())
                summary.total_vnd = int(bills.loc[billed, "total_vnd"].sum())
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
                if store is not None:
                    # The estimates the released bills used become final (F), in the bills' own transactions.
                    made_final: list[tuple[int, int]] = []

                    def finalize(c: psycopg.Connection, as_of: Any = data_as_of) -> None:
                        t = time.perf_counter()
                        made_final.append(finalize_billed_estimates(c, run_id=run_id, data_as_of=as_of))
                        clock["finalize"] = clock.get("finalize", 0.0) + time.perf_counter() - t

                    released = summary.status in ("released", "overridden")
                    # from its start: it ran beside the summary and exports
                    clock["store_bills"] = store.wait(before_commit=finalize if released else None)
                    summary.final_bills = sum(b for b, _ in made_final)
                    summary.final_days = sum(d for _, d in made_final)
                fields |= {
                    "source": source,
                    "data_as_of": data_as_of,
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
            detail: dict[str, Any] = {
                "readings": summary.readings,
                "no_data_share": summary.no_data_share,
                "price_flags": summary.price_flags,
                "seconds": {k: round(v, 3) for k, v in clock.items()},
            }
            if store is not None:  # the estimated days the bills used, made final (F)
                detail["made_final"] = {"bills": summary.final_bills, "days": summary.final_days}
            finish_run(
                conn,
                run_id,
                status=summary.status,
                estimated_share=summary.estimated_share,
                exceptions=summary.exceptions_by_rule,
                hold_reason=summary.hold_reason,
                detail=detail,
                **fields,
            )
        except BaseException:
            summary.status = "failed"
            if lock is not None:
                lock.release()
            if store is not None:
                store.wait(raise_error=False)  # its bills are stored or not; the run is failed either way
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


class _ContinuousSnapshot:
    """The VEE service's pass lock, held while the partitions read the validated days: no pass commits during the
    read, so the snapshot time names the version of every day the bills use (sql/085)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.held = False

    def take(self) -> Any:
        self.conn.execute("SELECT pg_advisory_lock(%s)", (PASS_LOCK,))
        self.held = True
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        return row[0] if row else None

    def release(self) -> None:
        if self.held:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (PASS_LOCK,))
            self.held = False


def _concat_readiness(parts: list[Readiness | None]) -> Readiness:
    ready = [p for p in parts if p is not None]
    return Readiness(**{k: np.concatenate([getattr(p, k) for p in ready]) for k in Readiness.__dataclass_fields__})


def open_episodes(conn: psycopg.Connection, meter_ids: np.ndarray, window: PeriodWindow) -> pd.DataFrame:
    """Episodes open or acknowledged over the window for these meters (sorted ids), as the run's exceptions (the
    columns of billing.vee's exception frame, plus episode_id, occurrences, status)."""
    lo, hi = (int(meter_ids[0]), int(meter_ids[-1])) if len(meter_ids) else (0, -1)
    with conn.cursor() as cur:
        # the meters' id range (a city's ids as one array parameter cost more than the query), then the meters;
        # ties in (meter, start) in one order
        cur.execute(
            "SELECT e.meter_id, e.channel_id, e.first_start, e.last_end, e.rule, e.severity, e.value_max,"
            " e.episode_id, e.occurrences, e.status FROM vee_episodes e"
            " WHERE e.status IN ('open', 'acknowledged') AND e.meter_id BETWEEN %s AND %s AND e.last_end > %s"
            " AND e.first_start < %s ORDER BY e.meter_id, e.first_start, e.channel_id, e.rule, e.episode_id",
            (lo, hi, local_midnight(window.first_day), local_midnight(window.last_day + timedelta(days=1))),
        )
        rows = cur.fetchall()
    if len(meter_ids) != hi - lo + 1:
        rows = [r for r, keep in zip(rows, np.isin([r[0] for r in rows], meter_ids), strict=True) if keep]
    columns = ["meter_id", "channel_id", "interval_start", "interval_end", "rule", "severity", "value"]
    frame = pd.DataFrame(rows, columns=[*columns, "episode_id", "occurrences", "status"])
    for c in ("interval_start", "interval_end"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    # a rule without a value (GAP) has none: a blank cell in the exports, not NaN
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    return frame


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
