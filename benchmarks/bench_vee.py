"""VEE throughput: the numba kernel (full VEE: validation, estimation, daily aggregation, exceptions) beside an
expert's Polars plan and DuckDB's best query for the simple part of the task (deltas with rollover, gap /
rollover / negative flags, daily and monthly sums) on the same synthetic data in the same run, and beside pandas
and the memory-read floor (a numba pass over the same ts, value and quality bytes). Every engine must agree with
the kernel's VEE on the daily sums and flag counts, or the run fails.

    .venv/bin/python -m benchmarks.bench_vee [--quick] [--readings N] [--repeats K]

Data: 30-minute register reads, 30 days per series, registers wrapping at 10**5 (so some roll over), 0.5 % of
reads missing (gaps); sorted by (meter, channel, ts) like the loader delivers them.

The baselines, written the way an expert in each engine would for data already sorted by series:
- Polars: one lazy plan on the numpy columns (zero-copy). The previous read is a whole-column ``shift`` (no
  per-group window), a first-of-series mask (meter or channel differs from the previous row) drops each
  series' first read, the flags and the rollover fix are fused expressions, then one ``group_by`` on a packed
  (meter, day) int64 key (faster than two keys) for the daily sums; the flag counts are a second output of the
  same plan (``collect_all``, common subplan shared). Run on both the in-memory and the streaming engine; the
  faster counts.
- DuckDB: one query over an Arrow table of zero-copy numpy views: each read beside its previous read (the
  arrays and the same arrays one element earlier, so no window sort), threads = the machine's cores, one hash
  aggregate with FILTER clauses for the daily sums and the flag counts. Literals are cast to DOUBLE (a decimal
  literal times a BIGINT runs in DECIMAL arithmetic, 10x slower). ``lag() OVER (PARTITION BY m, c ORDER BY
  ts)`` and a POSITIONAL JOIN of two views were measured too and are slower (the window sorts).
Each engine's timing covers building its frame or registering its tables, the query, and turning its result into
the numpy arrays checked against the kernel; timings are the best of --repeats runs, taken in turn (the machine
may be shared: the load average is printed with the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import time
from collections.abc import Callable
from datetime import date
from typing import Any, Literal
from unittest import mock

import numpy as np
from numba import njit, prange
from rich.console import Console
from rich.table import Table

from amr.timebase import DAY_S
from billing import kernels as K
from billing.rules import read_vee_rules
from billing.synthetic import register_reads
from billing.vee import PeriodWindow, ReadingArrays, VeeResult, validate_estimate

INTERVAL_S = 1800
DAYS = 30
DIGITS = 5
READS_PER_SERIES = DAYS * DAY_S // INTERVAL_S + 1
GEN_CHUNK_METERS = 5_000  # bounds the generator's (meters x reads) float temporaries to ~60 MB
FIRST_DAY = date(2026, 9, 1)
KEY_DAYS = 64  # the baselines group on one int64 key, meter * KEY_DAYS + day (DAYS < KEY_DAYS)
PolarsEngine = Literal["in-memory", "streaming"]
POLARS_ENGINES: tuple[PolarsEngine, ...] = ("in-memory", "streaming")


def make_data(n_readings: int, seed: int = 1) -> tuple[ReadingArrays, PeriodWindow]:
    rng = np.random.default_rng(seed)
    n_meters = max(1, n_readings // READS_PER_SERIES)
    parts = []
    for lo in range(0, n_meters, GEN_CHUNK_METERS):
        ids = np.arange(lo + 1, min(lo + GEN_CHUNK_METERS, n_meters) + 1, dtype=np.int32)
        r = register_reads(
            meter_ids=ids,
            first_day=FIRST_DAY,
            n_days=DAYS,
            interval_s=INTERVAL_S,
            kwh_per_day=rng.uniform(2, 40, ids.size),
            rng=rng,
            digits=DIGITS,
            start_kwh=np.round(rng.uniform(0, 10.0**DIGITS * 0.999, ids.size), 2),
        )
        parts.append(r.take(rng.random(len(r)) > 0.005))
    cat = {
        k: np.concatenate([getattr(p, k) for p in parts])
        for k in ("meter_id", "channel_id", "ts_s", "value", "quality")
    }
    return ReadingArrays(**cat), PeriodWindow(first_day=FIRST_DAY, n_days=DAYS)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# -- the simple task in each engine: valid single-interval deltas summed per (series, local day) -------------
def _simple_params(window: PeriodWindow) -> dict[str, float]:
    rules = read_vee_rules()
    return {
        "mod": 10.0**DIGITS,
        "max_kw": rules.register_rules.max_plausible_kw,
        "day0": window.day0_s,
        "interval": INTERVAL_S,
    }


def run_pandas(r: ReadingArrays, window: PeriodWindow) -> dict[str, Any]:
    import pandas as pd

    p = _simple_params(window)
    df = pd.DataFrame({"m": r.meter_id, "ts": r.ts_s, "v": r.value})
    first = df["m"].ne(df["m"].shift())
    d = df["v"].diff()
    dt = df["ts"].diff()
    roll = (d < 0) & (d + p["mod"] >= 0) & (d + p["mod"] <= p["max_kw"] * dt / 3600) & ~first
    d = d.where(~roll, d + p["mod"])
    neg = (d < 0) & ~first
    gap = (dt > p["interval"]) & ~first
    valid = ~first & ~neg & ~gap
    day = (df["ts"] - 1 - p["day0"]) // DAY_S
    sel = pd.DataFrame({"m": df["m"][valid], "day": day[valid], "d": d[valid]})
    daily = sel.groupby(["m", "day"], sort=True)["d"].sum()
    monthly = daily.groupby(level=0).sum()
    return {
        "daily": daily.to_numpy(),
        "keys": np.stack(
            [daily.index.get_level_values(0).to_numpy(), daily.index.get_level_values(1).to_numpy()], axis=1
        ),
        "monthly": monthly.to_numpy(),
        "gaps": int(gap.sum()),
        "rollovers": int(roll.sum()),
        "negatives": int(neg.sum()),
    }


def _packed_daily(key: np.ndarray, kwh: np.ndarray, gaps: int, rollovers: int, negatives: int) -> dict[str, Any]:
    """A baseline's output from its daily sums on ascending packed keys (meter * KEY_DAYS + day)."""
    meter, day = np.divmod(key.astype(np.int64), KEY_DAYS)
    starts = np.flatnonzero(np.r_[True, meter[1:] != meter[:-1]]) if key.size else np.zeros(0, np.int64)
    return {
        "daily": kwh,
        "keys": np.stack([meter, day], axis=1),
        "monthly": np.add.reduceat(kwh, starts) if key.size else np.zeros(0),
        "gaps": int(gaps),
        "rollovers": int(rollovers),
        "negatives": int(negatives),
    }


def run_polars(r: ReadingArrays, window: PeriodWindow, engine: PolarsEngine = "streaming") -> dict[str, Any]:
    """One lazy plan: whole-column shift with a first-of-series mask, fused flags, one group_by, one collect."""
    import polars as pl

    p = _simple_params(window)
    m, c, ts, v = pl.col("m"), pl.col("c"), pl.col("ts"), pl.col("v")
    d0, dt, d = pl.col("d0"), pl.col("dt"), pl.col("d")
    first = (m != m.shift(1, fill_value=-1)) | (c != c.shift(1, fill_value=-1))
    deltas = (
        pl.LazyFrame({"m": r.meter_id, "c": r.channel_id, "ts": r.ts_s, "v": r.value})
        .with_columns(d0=v.diff(), dt=ts.diff())
        .filter(~first)
        .with_columns(roll=(d0 < 0) & (d0 + p["mod"] <= p["max_kw"] * dt / 3600), gap=dt > p["interval"])
        .with_columns(d=pl.when(pl.col("roll")).then(d0 + p["mod"]).otherwise(d0))
        .with_columns(neg=d < 0)
    )
    key = (m.cast(pl.Int64) * (KEY_DAYS * DAY_S) + ts - 1 - p["day0"]) // DAY_S  # meter * KEY_DAYS + day
    daily = deltas.filter(~pl.col("neg") & ~pl.col("gap")).group_by(key.alias("k")).agg(d.sum()).sort("k")
    counts = deltas.select(pl.col("gap").sum(), pl.col("roll").sum(), pl.col("neg").sum())
    daily_df, counts_df = pl.collect_all([daily, counts], engine=engine)
    return _packed_daily(daily_df["k"].to_numpy(), daily_df["d"].to_numpy(), *counts_df.row(0))


def run_duckdb(r: ReadingArrays, window: PeriodWindow) -> dict[str, Any]:
    """One query on zero-copy views: each read beside the previous one, one hash aggregate with FILTER clauses."""
    import duckdb
    import pyarrow as pa

    p = _simple_params(window)
    prev, cur = slice(None, -1), slice(1, None)
    pairs = pa.table(
        {
            "m": r.meter_id[cur],
            "c": r.channel_id[cur],
            "ts": r.ts_s[cur],
            "v": r.value[cur],
            "pm": r.meter_id[prev],
            "pc": r.channel_id[prev],
            "pts": r.ts_s[prev],
            "pv": r.value[prev],
        }
    )
    mod, max_kw = f"{p['mod']!r}::DOUBLE", f"{p['max_kw']!r}::DOUBLE"
    query = f"""
        WITH x AS (
            SELECT m, ts, v - pv AS d0, ts - pts AS dt FROM pairs WHERE m = pm AND c = pc
        ), f AS (
            SELECT m, ts, dt > {p["interval"]} AS gap, d0 < 0 AND d0 + {mod} <= {max_kw} * dt / 3600 AS roll, d0
            FROM x
        ), g AS (
            SELECT m, ts, gap, roll, CASE WHEN roll THEN d0 + {mod} ELSE d0 END AS d FROM f
        )
        SELECT (m::BIGINT * {KEY_DAYS * DAY_S} + ts - 1 - {p["day0"]}) // {DAY_S} AS k,
               sum(d) FILTER (d >= 0 AND NOT gap) AS kwh,
               count(*) FILTER (gap) AS gaps, count(*) FILTER (roll) AS rollovers, count(*) FILTER (d < 0) AS negs
        FROM g GROUP BY k ORDER BY k
    """
    con = duckdb.connect(config={"threads": os.cpu_count() or 1})
    try:
        con.register("pairs", pairs)
        out = con.execute(query).fetchnumpy()
    finally:
        con.close()
    kwh = np.ma.asarray(out["kwh"])
    measured = ~np.ma.getmaskarray(kwh)  # a day whose reads were all flagged has no sum
    return _packed_daily(
        np.asarray(out["k"])[measured],
        np.ma.getdata(kwh)[measured].astype(np.float64),
        np.asarray(out["gaps"]).sum(),
        np.asarray(out["rollovers"]).sum(),
        np.asarray(out["negs"]).sum(),
    )


def _validate(r: ReadingArrays, window: PeriodWindow, ids: np.ndarray) -> VeeResult:
    return validate_estimate(
        r, rules=read_vee_rules(), window=window, meter_ids=ids, register_digits=np.full(ids.size, DIGITS)
    )


def run_numba(r: ReadingArrays, window: PeriodWindow, ids: np.ndarray | None = None) -> dict[str, Any]:
    """ids: the meter table's ids (billing.run passes them from the meters table; pass them in so the timing
    does not include a sort of every reading's meter id, which is not part of VEE)."""
    res = _validate(r, window, np.unique(r.meter_id) if ids is None else ids)
    s, d = np.nonzero(res.n_measured)
    return {
        "daily": res.measured[s, d],
        "keys": np.stack([res.series_meter[s], d], axis=1),
        "monthly": res.measured.sum(axis=1),
        "gaps": int((res.exceptions["rule"] == "GAP").sum()),
        "rollovers": int((res.exceptions["rule"] == "ROLLOVER").sum()),
        "negatives": int((res.exceptions["rule"] == "NEGATIVE").sum()),
        "estimated_kwh": float(res.estimated.sum()),
        "exceptions": len(res.exceptions),
    }


class _KernelArgs(Exception):
    """Raised in place of K.vee_kernel: validate_estimate's arguments to it are captured, nothing runs."""


def kernel_only(r: ReadingArrays, window: PeriodWindow) -> Callable[[], None]:
    """The VEE kernel alone, on the arguments validate_estimate passes it (captured: the same inputs, holidays and
    output arrays as the full VEE, whatever the kernel's signature): no wrapper checks, no exception rows."""
    with mock.patch.object(K, "vee_kernel", side_effect=_KernelArgs) as fake, contextlib.suppress(_KernelArgs):
        _validate(r, window, np.unique(r.meter_id))
    if fake.call_args is None:
        raise AssertionError("validate_estimate did not call vee_kernel")
    args = fake.call_args.args
    named = inspect.signature(K.vee_kernel.py_func).bind(*args).arguments
    accumulated = (named["rec_rows"], named["exc_counts"], *named["days"])  # the rest is overwritten

    def call() -> None:
        for a in accumulated:
            a[...] = 0
        K.vee_kernel(*args)

    return call


@njit(cache=True, parallel=True)
def read_floor_kernel(ts: np.ndarray, value: np.ndarray, quality: np.ndarray) -> float:
    """The memory-read floor: one parallel pass over the bytes the VEE kernel reads."""
    total = 0.0
    for i in prange(value.shape[0]):
        total += value[i] + ts[i] + quality[i]
    return total


def memory_floor(r: ReadingArrays) -> float:
    return float(read_floor_kernel(r.ts_s, r.value, r.quality))


def _agree(ref: dict[str, Any], other: dict[str, Any], name: str) -> None:
    for key in ("gaps", "rollovers", "negatives"):
        if ref[key] != other[key]:
            raise AssertionError(f"{name}: {key} {other[key]} != numba {ref[key]}")
    if not np.array_equal(ref["keys"].astype(np.int64), other["keys"].astype(np.int64)):
        raise AssertionError(f"{name}: daily keys differ from numba's")
    if not np.allclose(ref["daily"], other["daily"], rtol=1e-9, atol=1e-6):
        raise AssertionError(f"{name}: daily sums differ from numba's")
    if not np.allclose(ref["monthly"], other["monthly"], rtol=1e-9, atol=1e-6):
        raise AssertionError(f"{name}: monthly sums differ from numba's")


def _best_of(fns: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each function's best time [s] over `repeats` rounds that take the functions in turn (load from other work
    on the machine then falls on all of them alike), and each one's last output."""
    best = dict.fromkeys(fns, float("inf"))
    out: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, out[name] = _timed(fn)
            best[name] = min(best[name], t)
    return best, out


def run(quick: bool, n_readings: int | None = None, repeats: int | None = None) -> dict[str, Any]:
    n_target = n_readings or (5_000_000 if quick else 50_000_000)
    repeats = repeats or (5 if quick else 3)
    load_start = os.getloadavg()[0]
    t_gen, (r, window) = _timed(lambda: make_data(n_target))
    n = len(r)
    # compile or load the cached kernels, import and warm up the engines, check them, before timing
    small, small_window = make_data(20_000, seed=2)
    small_ref = run_numba(small, small_window)
    kernel_only(small, small_window)()
    memory_floor(small)
    for engine in POLARS_ENGINES:
        _agree(small_ref, run_polars(small, small_window, engine), f"polars {engine}")
    _agree(small_ref, run_duckdb(small, small_window), "duckdb")
    ids = np.unique(r.meter_id)  # the meter table: not part of VEE, see run_numba
    figures: dict[str, Any] = {"readings": n, "series": int(ids.size), "generate_s": t_gen, "repeats": repeats}
    timed: dict[str, Callable[[], Any]] = {
        "floor": lambda: memory_floor(r),
        "kernel": kernel_only(r, window),
        "full": lambda: run_numba(r, window, ids),
        "duckdb": lambda: run_duckdb(r, window),
    }
    for engine in POLARS_ENGINES:
        timed[f"polars {engine}"] = lambda engine=engine: run_polars(r, window, engine)  # type: ignore[misc]
    best, out = _best_of(timed, repeats)
    ref = out["full"]
    for name in ("duckdb", *(f"polars {e}" for e in POLARS_ENGINES)):
        _agree(ref, out[name], name)
    t_pandas, pandas_out = _timed(lambda: run_pandas(r, window))  # slow: once
    _agree(ref, pandas_out, "pandas")
    rate = {name: n / t for name, t in best.items()}
    engine = max(POLARS_ENGINES, key=lambda e: rate[f"polars {e}"])
    polars, duckdb, kernel, full = rate[f"polars {engine}"], rate["duckdb"], rate["kernel"], rate["full"]
    figures |= {
        "memory_floor_rows_per_s": rate["floor"],
        "vee_kernel_rows_per_s": kernel,
        "vee_full_rows_per_s": full,
        "polars_engine": engine,
        "polars_simple_rows_per_s": polars,
        "polars_in_memory_rows_per_s": rate["polars in-memory"],
        "polars_streaming_rows_per_s": rate["polars streaming"],
        "duckdb_simple_rows_per_s": duckdb,
        "pandas_simple_rows_per_s": n / t_pandas,
        "ratio_kernel_to_polars": kernel / polars,
        "ratio_kernel_to_duckdb": kernel / duckdb,
        "ratio_full_vee_to_polars": full / polars,
        "ratio_full_vee_to_duckdb": full / duckdb,
        "ratio_kernel_to_memory_floor": kernel / rate["floor"],
        "gaps": ref["gaps"],
        "rollovers": ref["rollovers"],
        "exceptions": ref["exceptions"],
        "agree": True,
        "cores": os.cpu_count(),
        "load_average_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 M readings instead of 50 M")
    parser.add_argument("--readings", type=int, default=None, help="readings to generate")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per engine, best kept (5 quick, 3)")
    args = parser.parse_args()
    f = run(args.quick, args.readings, args.repeats)
    load = f["load_average_1min"]
    table = Table(
        title=f"VEE on {f['readings']:,} readings ({f['series']:,} series, 30-min reads, 30 days): best of "
        f"{f['repeats']}, {f['cores']} cores, load average {load[0]:.1f} at start, {load[1]:.1f} at end"
    )
    table.add_column("engine")
    table.add_column("task")
    table.add_column("M readings/s", justify="right")
    table.add_column("kernel ÷", justify="right")
    table.add_column("full VEE ÷", justify="right")
    kernel, full = f["vee_kernel_rows_per_s"], f["vee_full_rows_per_s"]
    for label, task, key in (
        ("memory-read floor", "sum of ts, value, quality", "memory_floor_rows_per_s"),
        ("numba kernel", "full VEE, kernel only", "vee_kernel_rows_per_s"),
        ("numba + wrapper", "full VEE + exception rows", "vee_full_rows_per_s"),
        (f"Polars lazy, {f['polars_engine']}", "simple task", "polars_simple_rows_per_s"),
        ("DuckDB", "simple task", "duckdb_simple_rows_per_s"),
        ("pandas", "simple task", "pandas_simple_rows_per_s"),
    ):
        table.add_row(label, task, f"{f[key] / 1e6:,.1f}", f"{kernel / f[key]:,.1f}", f"{full / f[key]:,.1f}")
    console = Console()
    console.print(table)
    console.print(
        "simple task: deltas with rollover, gap / rollover / negative flags, daily and monthly sums. "
        f"All engines agree on daily sums and flag counts (gaps {f['gaps']:,}, rollovers "
        f"{f['rollovers']:,}); exceptions recorded by VEE: {f['exceptions']:,}. Polars engines: in-memory "
        f"{f['polars_in_memory_rows_per_s'] / 1e6:,.1f}, streaming {f['polars_streaming_rows_per_s'] / 1e6:,.1f} "
        "M readings/s"
    )
    worst = min(f["ratio_kernel_to_polars"], f["ratio_kernel_to_duckdb"])
    console.print(
        f"kernel vs the expert baselines: {f['ratio_kernel_to_polars']:,.1f}x Polars, "
        f"{f['ratio_kernel_to_duckdb']:,.1f}x DuckDB: the 10x target is {'met' if worst >= 10 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
