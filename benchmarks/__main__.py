"""Run every benchmark in this folder and write a JSON file and a Markdown table.

    python -m benchmarks [--quick] [--only NAME ...] [--out DIR]

Each module ``benchmarks/bench_<name>.py`` exposes ``run(quick: bool) -> dict``: its figures, each beside the
baseline it measured in the same run and the ratio. The report also records the machine it ran on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def read_machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, float):
        out.append((prefix, f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"))
    else:
        out.append((prefix, str(value)))


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Benchmarks ({report['started_at']})",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
        "",
    ]
    for name, result in report["results"].items():
        lines += [f"## {name}", "", "| figure | value |", "| --- | --- |"]
        rows: list[tuple[str, str]] = []
        _flatten("", result, rows)
        lines += [f"| {k} | {v} |" for k, v in rows]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (minutes, not tens of minutes)")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks"))
    args = parser.parse_args(argv)
    console = Console()
    names = args.only or discover()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": read_machine(),
        "results": {},
    }
    failed = 0
    for name in names:
        console.rule(f"benchmark {name}")
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            result = module.run(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
            failed += 1
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        report["results"][name] = result
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.out / f"benchmarks-{stamp}.json"
    md_path = args.out / f"benchmarks-{stamp}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(to_markdown(report))
    table = Table(title="benchmarks")
    table.add_column("benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, result in report["results"].items():
        rows: list[tuple[str, str]] = []
        _flatten("", result, rows)
        for key, value in rows:
            table.add_row(name, key, value)
    console.print(table)
    console.print(f"written: {json_path} and {md_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
