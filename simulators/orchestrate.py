"""Starting a fleet of meter simulators speaking the real protocols: the `amr simulate` config and the starters.

The config comes from a TOML file's [simulate] table with command-line overrides on top::

    [simulate]
    seed = 1
    start = "2025-04-01T00:00:00+07:00"   # simulated start (any offset; stored as UTC)
    speed = 1440                          # simulated seconds per real second (1440: a day per minute)
    host = "127.0.0.1"
    base_port = 0                         # 0: the OS picks free ports; else consecutive ports from here
    meters_per_gateway = 10
    city = "mix"                          # HN | HCM | mix

    [simulate.gateways]                   # gateways (or serial lines) per protocol
    tcp = 2
    rtu-tcp = 1
    rtu-serial = 1

    [simulate.faults]                     # share of meters with each fault
    no_answer = 0.02
    exception = 0.01

    [simulate.options.tcp]                # per-protocol options, passed to its starter
    register_map = "eastron_sdm630"

Extension point: ``STARTERS`` (or :func:`register_starter`) maps a protocol name to a starter, or to
"module:function" imported on first use. A starter is called with keyword arguments (protocol, meters, clock, host,
port, options, index, run_dir) and returns a :class:`simulators.listener.Listener` (protocol, endpoint, units,
serials, stop). The DCU starter also takes the broker and the state directory: the caller binds them and passes it
to :func:`start_fleet` (``starters=``); the simulators read no global settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from amr.errors import ConfigError
from amr.tomlfile import config_error, read_toml
from simulators.clock import SimClock
from simulators.listener import Listener
from simulators.modbus.starter import start_modbus_listener
from simulators.population import FAULT_NAMES, build_meters

Starter = Callable[..., Listener]

# protocol -> starter (or "module:function"); other simulators plug in here.
STARTERS: dict[str, Starter | str] = {
    "tcp": start_modbus_listener,
    "rtu-tcp": start_modbus_listener,
    "rtu-serial": start_modbus_listener,
    "dlms": "simulators.dlms.cli:start_listener",
    "dcu": "simulators.dcu.cli:start_listener",
}
DEFAULT_START = "2025-04-01T00:00:00+07:00"


def register_starter(protocol: str, starter: Starter | str) -> None:
    """Add (or replace) the starter of a protocol."""
    STARTERS[protocol] = starter


def resolve_starter(protocol: str) -> Starter:
    entry = STARTERS.get(protocol)
    if entry is None:
        raise ConfigError(f"unknown simulator protocol {protocol!r}; known: {sorted(STARTERS)}", key="gateways")
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"protocol {protocol!r}: its starter {STARTERS[protocol]!r} is not available ({exc})"
            ) from exc
        STARTERS[protocol] = entry
    return entry


class SimulateConfig(BaseModel):
    # strict: `speed = "1440"` or `seed = 1.0` in the file is refused, not coerced; floats are finite.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False)

    seed: int = 1
    start: datetime = Field(default_factory=lambda: datetime.fromisoformat(DEFAULT_START))
    speed: float = Field(default=1.0, ge=0)
    host: str = "127.0.0.1"
    base_port: int = Field(default=0, ge=0, le=65535)
    meters_per_gateway: int = Field(default=10, ge=1, le=247)
    city: str = Field(default="mix", pattern="^(HN|HCM|mix)$")
    gateways: dict[str, int] = Field(default_factory=lambda: {"tcp": 1})
    faults: dict[str, float] = Field(default_factory=dict)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("start", mode="before")
    @classmethod
    def _iso_text(cls, v: object) -> object:
        # A TOML datetime arrives as one; the docs' quoted form and --start arrive as ISO text, parsed here
        # (strict mode would refuse text, lax mode would also take a number as a Unix time).
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an ISO date and time, e.g. 2025-04-01T00:00:00+07:00") from None
        return v

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2025-04-01T00:00:00+07:00")
        return v.astimezone(UTC)

    @field_validator("faults")
    @classmethod
    def _faults(cls, v: dict[str, float]) -> dict[str, float]:
        for name, share in v.items():
            if name not in FAULT_NAMES:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            if not 0 <= share <= 1:
                raise ValueError(f"fault {name!r} share must be in [0, 1], got {share}")
        return v

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: dict[str, int]) -> dict[str, int]:
        for name, n in v.items():
            if n < 0:
                raise ValueError(f"gateways.{name} must be >= 0, got {n}")
        return v


def read_simulate_config(path: Path | None, overrides: dict[str, Any]) -> SimulateConfig:
    """The [simulate] table of ``path`` (if any) with command-line ``overrides`` on top."""
    data: dict[str, Any] = {}
    source = str(path) if path else "command line"
    text: str | None = None
    if path is not None:
        text, doc = read_toml(path)
        data = dict(doc.get("simulate", {}))
        unknown = set(doc) - {"simulate"}
        if unknown:
            raise ConfigError(f"unknown table(s) {sorted(unknown)}; expected [simulate]", source=source)
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    try:
        return SimulateConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(
            exc, source=source, text=text, prefix="simulate", sources=dict.fromkeys(given, "command line")
        ) from exc


def start_fleet(
    cfg: SimulateConfig, clock: SimClock, run_dir: Path, *, starters: Mapping[str, Starter] | None = None
) -> list[Listener]:
    """Start every gateway the config asks for; on a failure stop those already started.

    `starters`: the caller's starters, ahead of ``STARTERS``: the composition layer binds there what a simulator
    needs beyond the common keyword arguments (the DCU's broker and state directory)."""
    listeners: list[Listener] = []
    index = 0
    try:
        for protocol, count in cfg.gateways.items():
            starter = starters[protocol] if starters and protocol in starters else resolve_starter(protocol)
            for _ in range(count):
                meters = build_meters(
                    fleet_seed=cfg.seed,
                    first_index=index * cfg.meters_per_gateway,
                    count=cfg.meters_per_gateway,
                    city=cfg.city,
                    start=cfg.start,
                    fault_shares=cfg.faults,
                )
                now_s = clock.now_s()
                for m in meters:  # build each meter's energy table now, not on the first request
                    m.read_registers_ts(now_s)
                port = cfg.base_port + index if cfg.base_port else 0
                listeners.append(
                    starter(
                        protocol=protocol,
                        meters=meters,
                        clock=clock,
                        host=cfg.host,
                        port=port,
                        options=cfg.options.get(protocol, {}),
                        index=index,
                        run_dir=run_dir,
                    )
                )
                index += 1
    except BaseException:
        for listener in listeners:
            listener.stop()
        raise
    return listeners
