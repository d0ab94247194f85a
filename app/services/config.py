"""What `amr up` runs: the `[services]` table of a services file (default ``amr-services.toml`` in the working
directory, or the file named by ``--config`` / ``AMR_SERVICES_CONFIG``), read by :func:`amr.tomlfile.load_toml`
into the strict model below; with no file, the defaults (one ingest worker, the aggregate refresh, the dashboards).

The services file is separate from ``amr.toml`` (the settings file), whose strict model refuses unknown tables;
where the database and broker are is still decided by the settings (``AMR_DATABASE_URL`` / ``AMR_MQTT_URL``).

Example::

    [services]
    ingest_workers = 2
    collectors = ["/etc/amr/collector-hn-1.toml"]   # relative paths: from the services file's folder
    refresh_every_s = 300                           # 0: no aggregate refresh service
    ingest_metrics_port = 9310                      # Prometheus: ingest worker i on 127.0.0.1:9310+i
    collector_metrics_port = 9330                   # collector i (in the order above) on 127.0.0.1:9330+i

    [services.dashboards]
    enabled = true
    host = "127.0.0.1"
    port = 8050
    workers = 2
    threads = 4

    [services.restart]
    backoff_initial_s = 1.0
    backoff_max_s = 60.0
    reset_after_s = 60.0

    [services.logs]
    max_bytes = 10_000_000
    backups = 3
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from amr.errors import ConfigError
from amr.tomlfile import key_error, load_toml

DEFAULT_FILE = "amr-services.toml"
MAX_PORT = 65535
CONFIG_VAR = "AMR_SERVICES_CONFIG"
SECTION = "services"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DashboardService(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"  # loopback: a reverse proxy in front publishes it (deploy/README.md)
    port: int = Field(default=8050, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)  # gunicorn worker processes
    threads: int = Field(default=4, ge=1, le=64)  # threads per worker (gthread): callbacks wait on the database
    trust_proxy_header: bool = False


class RestartPolicy(_Strict):
    # 1 s, 2 s, 4 s ... up to a minute: a crash loop (database down) costs little, a one-off crash little time.
    backoff_initial_s: float = Field(default=1.0, gt=0.0)
    backoff_max_s: float = Field(default=60.0, gt=0.0)
    # a child that stayed up this long is healthy again: its next crash restarts it after backoff_initial_s
    reset_after_s: float = Field(default=60.0, gt=0.0)
    # SIGTERM, then this long for a clean stop (ingest commits its batch, collectors drain), then SIGKILL
    stop_timeout_s: float = Field(default=30.0, gt=0.0)


class LogPolicy(_Strict):
    max_bytes: int = Field(default=10_000_000, ge=1_000)  # per file; a few files per service
    backups: int = Field(default=3, ge=1, le=50)


class ServicesConfig(_Strict):
    ingest_workers: int = Field(default=1, ge=0, le=64, description="one supervised `amr ingest` process each")
    ingest_name: str = Field(default="", pattern=r"^[A-Za-z0-9_.\-]{0,40}$", description="client id prefix")
    collectors: list[str] = Field(default_factory=list, description="collector config files")
    refresh_every_s: float = Field(default=300.0, ge=0.0, description="dashboard aggregates; 0 = no service")
    # Prometheus endpoints (on 127.0.0.1, like `amr ingest/collect --metrics-port`): ingest worker i (1-based) on
    # ingest_metrics_port + i, collector i on collector_metrics_port + i. 0 = no endpoint, the default: a port
    # opened without being asked for may clash with another program on the host, so the operator picks the range.
    ingest_metrics_port: int = Field(default=0, ge=0, le=MAX_PORT - 1, description="base port; 0 = no endpoint")
    collector_metrics_port: int = Field(default=0, ge=0, le=MAX_PORT - 1, description="base port; 0 = no endpoint")
    # The continuous VEE service (`amr vee`): validates what ingest marks, a pass every vee_interval_s when idle.
    vee: bool = Field(default=True, description="run the continuous VEE service")
    vee_interval_s: float = Field(default=5.0, gt=0.0, le=3600.0, description="seconds between idle passes")
    dashboards: DashboardService = DashboardService()
    restart: RestartPolicy = RestartPolicy()
    logs: LogPolicy = LogPolicy()

    def ingest_metrics_ports(self) -> list[int]:
        """The metrics port of each ingest worker (1-based order); empty when off."""
        base = self.ingest_metrics_port
        return [base + i for i in range(1, self.ingest_workers + 1)] if base else []

    def collector_metrics_ports(self) -> list[int]:
        """The metrics port of each collector, in the order of `collectors`; empty when off."""
        base = self.collector_metrics_port
        return [base + i for i in range(1, len(self.collectors) + 1)] if base else []

    def port_conflict(self) -> tuple[str, str] | None:
        """(key, problem) when a metrics port range runs past 65535 or meets another service's port; two services
        on one port would leave the second failing to bind and restarting forever, so the file is refused."""
        ranges = {
            "ingest_metrics_port": self.ingest_metrics_ports(),
            "collector_metrics_port": self.collector_metrics_ports(),
        }
        for key, ports in ranges.items():
            if ports and ports[-1] > MAX_PORT:
                return key, f"{key} + {len(ports)} services = {ports[-1]}, above {MAX_PORT}"
        taken: dict[int, str] = {self.dashboards.port: "dashboards.port"} if self.dashboards.enabled else {}
        for key, ports in ranges.items():
            for i, port in enumerate(ports, start=1):
                if port in taken:
                    return key, f"{key} + {i} = {port}, the port of {taken[port]} already"
                taken[port] = f"{key} + {i}"
        return None


def services_file(explicit: Path | None, environ: dict[str, str] | None = None) -> Path | None:
    """The services file to read: `explicit`, else $AMR_SERVICES_CONFIG, else ./amr-services.toml when it exists;
    None means the defaults. A named file that does not exist is an error."""
    env = os.environ if environ is None else environ
    named = explicit or (Path(env[CONFIG_VAR]) if env.get(CONFIG_VAR) else None)
    if named is not None:
        if not named.is_file():
            raise ConfigError("file not found", source=str(named))
        return named
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def read_services_config(path: Path | None) -> ServicesConfig:
    """The [services] table of `path` (collector paths made absolute from the file's folder), or the defaults."""
    if path is None:
        return ServicesConfig()
    config = load_toml(path, ServicesConfig, section=SECTION)
    base = path.resolve().parent
    collectors = [str(base / c) for c in config.collectors]  # an absolute `c` stays as it is
    for collector in map(Path, collectors):
        if not collector.is_file():
            raise key_error(
                f"collector config file not found: {collector}",
                source=str(path),
                text=path.read_text(encoding="utf-8"),
                key=f"{SECTION}.collectors",
            )
    conflict = config.port_conflict()
    if conflict is not None:
        key, problem = conflict
        raise key_error(problem, source=str(path), text=path.read_text(encoding="utf-8"), key=f"{SECTION}.{key}")
    return config.model_copy(update={"collectors": collectors})
