"""VEE throughput: the numba kernels (full VEE: validation, estimation, daily aggregation, exceptions) beside
pandas, Polars and DuckDB doing the simple part of the task (deltas with rollover, gap / rollover / negative
flags, daily and monthly sums) on the same synthetic data in the same run, and beside the memory-read floor
(a numba pass over the same ts, value and quality bytes). All engines must agree on the daily sums and flag counts.

    .venv/bin/python -m benchmarks.bench_vee [--quick] [--readings N]

Data: 30-minute register reads, 30 days per series, registers wrapping at 10**5 (so some roll over), 0.5 % of
reads missing (gaps); sorted by (meter, ts) like the loader delivers them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
from numba import njit, prange
from rich.console import Console
from rich.table import Table

from amr.timebase import DAY_S
from billing.flags import RULES
from billing.kernels import VEE_CHUNKS, new_day_arrays, new_series_arrays, vee_kernel
from billing.rules import kernel_thresholds, read_vee_rules
from billing.synthetic import register_reads
from billing.vee import PeriodWindow, ReadingArrays, series_segments, validate_estimate

INTERVAL_S = 1800
DAYS = 30
DIGITS = 5
READS_PER_SERIES = DAYS * DAY_S // INTERVAL_S + 1
GEN_CHUNK_METERS = 5_000  # bounds the generator's (meters x reads) float temporaries to ~60 MB
FIRST_DAY = date(2026, 9, 1)


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


def run_polars(r: ReadingArrays, window: PeriodWindow) -> dict[str, Any]:
    import polars as pl

    p = _simple_params(window)
    df = pl.DataFrame({"m": r.meter_id, "ts": r.ts_s, "v": r.value})
    out = (
        df.lazy()
        .with_columns(d=pl.col("v").diff().over("m"), dt=pl.col("ts").diff().over("m"))
        .with_columns(roll=(pl.col("d") < 0) & (pl.col("d") + p["mod"] <= p["max_kw"] * pl.col("dt") / 3600))
        .with_columns(d=pl.when(pl.col("roll")).then(pl.col("d") + p["mod"]).otherwise(pl.col("d")))
        .with_columns(
            neg=pl.col("d") < 0, gap=pl.col("dt") > p["interval"], day=(pl.col("ts") - 1 - p["day0"]) // DAY_S
        )
        .collect()
    )
    valid = out.filter(pl.col("d").is_not_null() & ~pl.col("neg") & ~pl.col("gap"))
    daily = valid.group_by(["m", "day"]).agg(pl.col("d").sum()).sort(["m", "day"])
    monthly = daily.group_by("m").agg(pl.col("d").sum()).sort("m")
    return {
        "daily": daily["d"].to_numpy(),
        "keys": daily.select(["m", "day"]).to_numpy(),
        "monthly": monthly["d"].to_numpy(),
        "gaps": int(out["gap"].sum()),
        "rollovers": int(out["roll"].sum()),
        "negatives": int(out["neg"].sum()),
    }


def run_duckdb(r: ReadingArrays, window: PeriodWindow) -> dict[str, Any]:
    import duckdb

    p = _simple_params(window)
    con = duckdb.connect()
    import pandas as pd

    frame = pd.DataFrame({"m": r.meter_id, "ts": r.ts_s, "v": r.value})
    con.register("reads", frame)
    con.execute(f"""
        CREATE TEMP TABLE flagged AS
        WITH d AS (
            SELECT m, ts, v - lag(v) OVER w AS d, ts - lag(ts) OVER w AS dt FROM reads
            WINDOW w AS (PARTITION BY m ORDER BY ts)
        ), r AS (
            SELECT m, ts, dt, d < 0 AND d + {p["mod"]} <= {p["max_kw"]} * dt / 3600 AS roll, d FROM d
        )
        SELECT m, (ts - 1 - {p["day0"]}) // {DAY_S} AS day, roll,
               CASE WHEN roll THEN d + {p["mod"]} ELSE d END AS d, dt > {p["interval"]} AS gap FROM r
    """)
    daily = con.execute("""
        SELECT m, day, sum(d) AS d FROM flagged WHERE d IS NOT NULL AND d >= 0 AND NOT gap
        GROUP BY m, day ORDER BY m, day
    """).fetchnumpy()
    monthly = con.execute(
        "SELECT m, sum(d) FROM flagged WHERE d IS NOT NULL AND d >= 0 AND NOT gap GROUP BY m ORDER BY m"
    ).fetchnumpy()
    counts = con.execute(
        "SELECT count(*) FILTER (gap), count(*) FILTER (roll), count(*) FILTER (d < 0) FROM flagged"
    ).fetchone()
    assert counts is not None
    con.close()
    return {
        "daily": np.asarray(daily["d"]),
        "keys": np.stack([daily["m"], daily["day"]], axis=1),
        "monthly": np.asarray(list(monthly.values())[1]),
        "gaps": int(counts[0]),
        "rollovers": int(counts[1]),
        "negatives": int(counts[2]),
    }


def run_numba(r: ReadingArrays, window: PeriodWindow, ids: np.ndarray | None = None) -> dict[str, Any]:
    """ids: the meter table's ids (billing.run passes them from the meters table; pass them in so the timing
    does not include a sort of every reading's meter id, which is not part of VEE)."""
    rules = read_vee_rules()
    ids = np.unique(r.meter_id) if ids is None else ids
    res = validate_estimate(r, rules=rules, window=window, meter_ids=ids, register_digits=np.full(ids.size, DIGITS))
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


def kernel_only(r: ReadingArrays, window: PeriodWindow) -> Callable[[], None]:
    """The VEE kernel alone, outputs allocated (and paged in) beforehand: no wrapper checks, no exception rows."""
    rules = read_vee_rules()
    seg = series_segments(r)
    n_s, n, d = seg.shape[0] - 1, len(r), window.n_days
    rule_bits = np.array([rule.bit for rule in RULES], np.uint32)
    rows = np.zeros(VEE_CHUNKS, np.int64)
    exc_counts = np.zeros((VEE_CHUNKS, rule_bits.size), np.int64)
    days = new_day_arrays(n_s, d)
    args = (
        seg,
        r.ts_s,
        r.value,
        r.quality,
        np.full(n_s, 10.0**DIGITS),
        kernel_thresholds(rules),
        np.asarray(rules.interval.allowed_s, np.int64),
        window.day0_s,
        window.end_s,
        rule_bits,
        np.empty(n, np.int64),
        np.empty(n, np.uint32),
        np.empty(n, np.int64),
        rows,
        exc_counts,
        days,
        new_series_arrays(n_s),
    )

    def call() -> None:
        for a in (rows, exc_counts, *days):  # the accumulated outputs (the rest is overwritten)
            a[...] = 0
        vee_kernel(*args)

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


def run(quick: bool, n_readings: int | None = None) -> dict[str, Any]:
    n_target = n_readings or (5_000_000 if quick else 50_000_000)
    t_gen, (r, window) = _timed(lambda: make_data(n_target))
    n = len(r)
    small, small_window = make_data(20_000, seed=2)
    run_numba(small, small_window)  # compile or load the cached kernels before timing
    kernel_only(small, small_window)()
    memory_floor(small)
    figures: dict[str, Any] = {"readings": n, "series": int(np.unique(r.meter_id).size), "generate_s": t_gen}
    t_floor, _ = _timed(lambda: memory_floor(r))
    kernel = kernel_only(r, window)
    t_kernel, _ = _timed(kernel)
    ids = np.unique(r.meter_id)  # the meter table: not part of VEE, see run_numba
    t_numba, ref = _timed(lambda: run_numba(r, window, ids))
    results = {"numba full VEE": (t_numba, ref)}
    for name, fn in (("polars", run_polars), ("duckdb", run_duckdb), ("pandas", run_pandas)):
        t, out = _timed(lambda fn=fn: fn(r, window))  # type: ignore[misc]
        _agree(ref, out, name)
        results[name] = (t, out)
    rate = {name: n / t for name, (t, _) in results.items()}
    figures |= {
        "memory_floor_rows_per_s": n / t_floor,
        "vee_kernel_rows_per_s": n / t_kernel,
        "vee_full_rows_per_s": rate["numba full VEE"],
        "polars_simple_rows_per_s": rate["polars"],
        "duckdb_simple_rows_per_s": rate["duckdb"],
        "pandas_simple_rows_per_s": rate["pandas"],
        "ratio_full_vee_to_polars": rate["numba full VEE"] / rate["polars"],
        "ratio_kernel_to_memory_floor": (n / t_kernel) / (n / t_floor),
        "gaps": ref["gaps"],
        "rollovers": ref["rollovers"],
        "exceptions": ref["exceptions"],
        "agree": True,
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 M readings instead of 50 M")
    parser.add_argument("--readings", type=int, default=None, help="readings to generate")
    args = parser.parse_args()
    f = run(args.quick, args.readings)
    table = Table(title=f"VEE on {f['readings']:,} readings ({f['series']:,} series, 30-min reads, 30 days)")
    table.add_column("engine")
    table.add_column("task")
    table.add_column("M readings/s", justify="right")
    table.add_column("x Polars", justify="right")
    polars = f["polars_simple_rows_per_s"]
    for label, task, key in (
        ("memory-read floor", "numba sum over ts, value, quality", "memory_floor_rows_per_s"),
        ("numba kernel", "full VEE kernel only", "vee_kernel_rows_per_s"),
        ("numba + wrapper", "full VEE + exception rows", "vee_full_rows_per_s"),
        ("Polars", "simple: deltas, 3 flags, daily + monthly", "polars_simple_rows_per_s"),
        ("DuckDB", "simple", "duckdb_simple_rows_per_s"),
        ("pandas", "simple", "pandas_simple_rows_per_s"),
    ):
        table.add_row(label, task, f"{f[key] / 1e6:,.1f}", f"{f[key] / polars:,.1f}")
    Console().print(table)
    Console().print(
        f"all engines agree on daily sums and flag counts (gaps {f['gaps']:,}, rollovers "
        f"{f['rollovers']:,}); exceptions recorded by VEE: {f['exceptions']:,}"
    )


if __name__ == "__main__":
    main()
