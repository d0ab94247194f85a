"""Run a simulator command in its own process (its own GIL and core) and learn where it listens.

    with SimulateProcess(config_toml, command=[sys.executable, "-m", "app", "simulate"]) as sim:
        for row in sim.listeners: row["protocol"], row["host"], row["port"], row["units"], row["serials"]

The caller names the command (`amr simulate` belongs to the composition layer above this stage, so the stage does
not start it by name); it must take ``--config FILE`` (a [simulate] table) and ``--listing FILE`` (the listeners as
JSON) as `amr simulate` does. Benchmarks use this so the simulators do not share an interpreter with the collector
they measure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amr.errors import ServiceError


class SimulateProcess:
    """`<command> --config <file> --listing <file>` in a child process; ``listeners`` as written by ``--listing``."""

    def __init__(self, config_toml: str, *, command: Sequence[str], start_timeout_s: float = 60.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="amr-simproc-"))
        cfg = self._dir / "simulate.toml"
        cfg.write_text(config_toml, encoding="utf-8")
        listing = self._dir / "listing.json"
        self.command = " ".join(command)
        self.proc = subprocess.Popen(
            [*command, "--config", str(cfg), "--listing", str(listing)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + start_timeout_s
        while not listing.exists():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                self.stop()  # closes the pipe and removes the config directory
                raise ServiceError(f"{self.command} exited with {self.proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{self.command} did not list its listeners within {start_timeout_s:g} s")
            time.sleep(0.05)
        time.sleep(0.05)  # the listing is written in one call; give the writer a moment to close it
        doc = json.loads(listing.read_text())
        self.listeners: list[dict[str, Any]] = doc["listeners"]
        self.pid = self.proc.pid

    def cpu_time_s(self) -> float:
        """User + system CPU seconds the simulator process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        for p in self._dir.iterdir():
            p.unlink(missing_ok=True)
        self._dir.rmdir()

    def __enter__(self) -> SimulateProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
