"""The `amr` command as a user runs it (`python -m app`, the interpreter of the tests): `--help` stays light, and
`amr fleet counts` prints the generator's counts."""

from __future__ import annotations

import subprocess
import sys

from fleet.calibration import CALIBRATION_DATE, DEFAULT_SEED
from fleet.counts import count_fleet

# What no command's registration may import: each takes a second or more to load, and `amr --help` (and shell
# completion) would pay for all of them. The commands import them in their bodies.
HEAVY_PACKAGES = ("numpy", "pandas", "numba", "dash", "plotly", "psycopg", "pydantic", "paho", "pymodbus", "dask")
COMMANDS = ("collect", "ingest", "simulate", "demo", "db", "broker", "fleet", "bill", "vee", "dashboard")
_TIMEOUT_S = 120.0


def _amr(*args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-m", "app", *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )


def _imported_packages(importtime_stderr: str) -> set[str]:
    """Top-level package names from `-X importtime` lines ('import time: self | cumulative | a.b.c')."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            module = line.rsplit("|", 1)[1].strip()
            if module != "imported package":  # the header line
                names.add(module.split(".")[0])
    return names


def test_help_lists_every_command_and_imports_no_heavy_package() -> None:
    done = _amr("--help", importtime=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for command in COMMANDS:
        assert f" {command} " in done.stdout, command
    imported = _imported_packages(done.stderr)
    assert {"typer", "app", "amr"} <= imported  # the parse saw the real imports
    assert imported.isdisjoint(HEAVY_PACKAGES), sorted(imported & set(HEAVY_PACKAGES))


def test_every_command_help_still_loads_its_options() -> None:
    # The options of each command are declared at import; their help shows them without running anything.
    for command, option in (("fleet", "--help"), ("db", "--help"), ("bill", "--help"), ("vee", "--help")):
        assert _amr(command, option).returncode == 0, command
    ingest = _amr("ingest", "--help")
    assert ingest.returncode == 0 and "savepoint" in ingest.stdout, ingest.stderr
    psql = _amr("db", "psql", "--help")
    assert psql.returncode == 0 and "amr_reader" in psql.stdout, psql.stderr


def test_fleet_counts_prints_the_generators_counts() -> None:
    done = _amr("fleet", "counts", "--scale", "0.001", "--as-of", CALIBRATION_DATE.isoformat())
    assert done.returncode == 0, done.stderr
    counts = count_fleet(CALIBRATION_DATE, scale=0.001, seed=DEFAULT_SEED)
    assert f"{counts.cities['HN'].electronic:,}" in done.stdout
    assert f"{counts.cities['HCM'].remote:,}" in done.stdout
