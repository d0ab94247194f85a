"""The services `amr up` runs, from the services config and the settings: the local database and broker (unless
AMR_DATABASE_URL / AMR_MQTT_URL name external ones), N ingest workers, the collectors, the aggregate refresh, the
the continuous VEE service, the dashboards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from amr.settings import Settings
from app.services.config import ServicesConfig
from app.services.supervisor import ChildSpec, DaemonSpec

INGEST_STATUS_DIR = "ingest"  # under the state dir, as `amr ingest` uses by default
VEE_SERVICE = "vee"  # `amr vee`: its passes are in the vee_state table (amr status shows the last one)


@dataclass(frozen=True, kw_only=True)
class Plan:
    children: list[ChildSpec]
    daemons: list[DaemonSpec]
    external: dict[str, str]  # service -> where it runs (host:port), for the status table


def _where(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname:
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    # a libpq keyword string (host=... port=...)
    fields = dict(part.split("=", 1) for part in url.split() if "=" in part)
    return f"{fields.get('host', '?')}:{fields.get('port', '5432')}"


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    if not first.isdigit() or not Path(f"/proc/{first}").exists():
        return None
    return int(first)


def daemon_specs(settings: Settings) -> tuple[list[DaemonSpec], dict[str, str]]:
    from amr.broker.mosquitto import LocalMosquitto
    from amr.credentials import read_or_create_credentials
    from amr.db.server import DatabaseServer

    daemons: list[DaemonSpec] = []
    external: dict[str, str] = {}
    db = DatabaseServer.from_settings(settings)
    if db.cluster is None:
        external["database"] = _where(settings.db.url or "")
    else:
        cluster = db.cluster

        def db_pid() -> int | None:
            return _postmaster_pid(cluster.data_dir)

        daemons.append(DaemonSpec(name="database", start=db.up, stop=cluster.stop, pid=db_pid, kind="daemon"))
    if settings.mqtt.url:
        external["broker"] = _where(settings.mqtt.url)
    else:
        broker = LocalMosquitto(
            base_dir=settings.state_dir / "mosquitto",
            port=settings.mqtt.port,
            host=settings.mqtt.host,
            credentials=read_or_create_credentials(settings.credentials_file),
        )
        daemons.append(DaemonSpec(name="broker", start=broker.start, stop=broker.stop, pid=broker.pid, kind="daemon"))
    return daemons, external


def ingest_status_dir(state_dir: Path, service: str) -> Path:
    """Where the supervised ingest worker `service` (ingest-<i>) writes its status file: a folder of its own, so
    that its metrics endpoint (which serves every status file of its folder) reports this worker only; with a
    shared folder each of N endpoints would serve all N workers and a Prometheus sum would count everything N times.
    `amr status` reads these folders (app.services.status)."""
    return state_dir / INGEST_STATUS_DIR / service


def _metrics_args(port: int | None) -> tuple[str, ...]:
    return ("--metrics-port", str(port)) if port else ()


def child_specs(config: ServicesConfig, state_dir: Path) -> list[ChildSpec]:
    from collectors.config import read_collector_config
    from ingest.supervisor import default_name

    children: list[ChildSpec] = []
    prefix = config.ingest_name or default_name()
    ingest_ports = config.ingest_metrics_ports()
    for i in range(1, config.ingest_workers + 1):
        name, service = f"{prefix}-{i}", f"ingest-{i}"
        port = ingest_ports[i - 1] if ingest_ports else None
        # one worker per supervised process: a crash or kill -9 costs one worker, and its pid is the worker's
        status_dir = str(ingest_status_dir(state_dir, service))
        children.append(
            ChildSpec(
                name=service,
                args=(
                    "ingest",
                    "--workers",
                    "1",
                    "--name",
                    name,
                    "--no-live",
                    "--status-dir",
                    status_dir,
                    *_metrics_args(port),
                ),
                kind="ingest",
                status_key=f"{name}-0",  # ingest.supervisor.worker_configs: <name>-<index>
                metrics_port=port,
            )
        )
    collector_ports = config.collector_metrics_ports()
    for i, path in enumerate(config.collectors, start=1):
        collector = read_collector_config(Path(path))  # a bad collector config fails `amr up`, not a restart loop
        port = collector_ports[i - 1] if collector_ports else None
        children.append(
            ChildSpec(
                name=f"collector-{collector.collector_id}",
                args=("collect", "--config", path, "--quiet", *_metrics_args(port)),
                kind="collector",
                status_key=collector.collector_id,
                metrics_port=port,
            )
        )
    if config.refresh_every_s > 0:
        children.append(
            ChildSpec(
                name="dashboard-refresh",
                args=("dashboard", "refresh", "--every", f"{config.refresh_every_s:g}"),
                kind="refresh",
            )
        )
    if config.vee:
        children.append(
            ChildSpec(name=VEE_SERVICE, args=("vee", "--interval-s", f"{config.vee_interval_s:g}"), kind="vee")
        )
    web = config.dashboards
    if web.enabled:
        args = ["dashboard", "--host", web.host, "--port", str(web.port)]
        args += ["--workers", str(web.workers), "--threads", str(web.threads)]
        if web.trust_proxy_header:
            args.append("--trust-proxy-header")
        children.append(ChildSpec(name="dashboards", args=tuple(args), kind="dashboards", status_key=str(web.port)))
    return children


def make_plan(settings: Settings, config: ServicesConfig) -> Plan:
    children = child_specs(config, settings.state_dir)
    daemons, external = daemon_specs(settings)
    return Plan(children=children, daemons=daemons, external=external)
