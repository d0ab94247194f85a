"""The collector's config file (TOML): where the meters are and how to reach them, validated at start.

Example (every key is documented on its model below)::

    collector_id = "collector-hn-1"
    spool_dir = "spool"                 # relative to this file; holds what the broker has not acknowledged

    [[gateways]]                        # one bus: a Modbus TCP gateway or a serial RS-485 line
    name = "gw-hn-1"
    transport = "tcp"                   # "tcp" or "serial"
    framer = "socket"                   # on TCP: "socket" (MBAP) or "rtu" (RTU frames over TCP)
    host = "10.20.0.5"
    port = 502
    timeout_s = 1.0
    inter_request_delay_s = 0.0         # RTU-over-TCP gateways need ~0.05 s between requests

    [[gateways.meters]]
    serial = "VN24HN000123"
    unit_id = 1
    map = "vn_sim_meter"                # a built-in map (amr/modbus/maps) or a file relative to this one
    poll_interval_s = 900
    multiplier = 1.0                    # CT/VT ratio; readings are published before it (meters.multiplier)

    [[gateways]]
    name = "rs485-1"
    transport = "serial"
    device = "/dev/ttyUSB0"
    baudrate = 9600
    parity = "N"
    stopbits = 1

    [[dlms_meters]]
    serial = "VN24HCM00042"
    host = "10.20.1.9"
    port = 4059
    logical_address = 1
    password = "00000000"               # optional (low-level security)

    [concentrators]
    topics = ["amr/v1/dcu/+/uplink"]

    [broker]                            # optional: default is the project's broker as account `collector`
    host = "127.0.0.1"
    port = 18830

A wrong file is refused with :class:`amr.errors.ConfigError` naming the file, the line and the key. Values are
taken as TOML typed them: ``port = "502"``, ``unit_id = true`` or ``unit_id = 1.0`` are refused (no coercion),
and floats must be finite (``inf``, ``nan`` refused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from amr.errors import ConfigError
from amr.modbus.registermap import MAPS_DIR
from amr.tomlfile import key_error, parse_toml, read_toml, validate_toml

DEFAULT_PUBLISH_WINDOW = 1_000  # outstanding QoS 1 messages: far below paho's 65,535 message ids
DEFAULT_BATCH_READINGS = 100  # readings per message: the broker hop carries ~1 M readings/s at this size


class _Strict(BaseModel):
    # strict: a config file says what it means: "15020" is not a port, true is not a unit id, 1.0 is not an
    # integer; allow_inf_nan=False: TOML's inf and nan are no timeout, multiplier or interval.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _one_of(*choices: int) -> AfterValidator:
    """An integer among `choices` (pydantic's Literal[1, 2] would take true and 1.0 even in strict mode)."""

    def check(value: int) -> int:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}, got {value}")
        return value

    return AfterValidator(check)


StopBits = Annotated[int, _one_of(1, 2)]
ByteSize = Annotated[int, _one_of(7, 8)]


class ModbusMeterConfig(_Strict):
    serial: str = Field(min_length=1, max_length=64)
    unit_id: int = Field(ge=0, le=255, description="Modbus slave address; 1..247 on a serial line")
    map: str = Field(min_length=1, description="built-in map name or a TOML file relative to the config file")
    poll_interval_s: float = Field(default=900.0, ge=0.0, description="0 = as fast as the bus allows")
    multiplier: float = Field(default=1.0, gt=0.0, description="CT/VT ratio, recorded, not applied")


class GatewayConfig(_Strict):
    name: str = Field(min_length=1, max_length=64)
    transport: Literal["tcp", "serial"]
    framer: Literal["socket", "rtu"] = "socket"
    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    device: str | None = None
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: StopBits = 1
    bytesize: ByteSize = 8
    timeout_s: float = Field(default=1.0, gt=0.0, le=60.0)
    retries: int = Field(default=1, ge=0, le=10, description="retries after a garbled or refused answer")
    inter_request_delay_s: float = Field(default=0.0, ge=0.0, le=10.0)
    max_backoff_s: float = Field(default=300.0, gt=0.0, description="longest pause for a meter that is silent")
    meters: list[ModbusMeterConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_transport(self) -> GatewayConfig:
        if self.transport == "tcp" and not self.host:
            raise ValueError("a tcp gateway needs 'host'")
        if self.transport == "serial":
            if not self.device:
                raise ValueError("a serial gateway needs 'device'")
            if self.framer != "rtu" and "framer" in self.model_fields_set:
                raise ValueError("a serial line speaks RTU: framer must be 'rtu'")
        return self

    @property
    def framing(self) -> Literal["socket", "rtu"]:
        return "rtu" if self.transport == "serial" else self.framer


class DlmsMeterConfig(_Strict):
    serial: str = Field(min_length=1, max_length=64)
    host: str
    port: int = Field(default=4059, ge=1, le=65535)
    logical_address: int = Field(default=1, ge=0, le=0x3FFF, description="the meter's logical device (server)")
    password: str | None = Field(default=None, description="low-level security secret; none: public client")
    poll_interval_s: float = Field(default=900.0, ge=0.0)
    timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    multiplier: float = Field(default=1.0, gt=0.0)


class ConcentratorConfig(_Strict):
    topics: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_topics(self) -> ConcentratorConfig:
        for topic in self.topics:
            if not topic.startswith("amr/v1/dcu/") or not topic.endswith("/uplink"):
                raise ValueError(f"topic {topic!r} is not a DCU uplink topic (amr/v1/dcu/<id>/uplink, '+' allowed)")
        return self


class BrokerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=18830, ge=1, le=65535)
    username: str = "collector"
    password: str | None = Field(default=None, description="default: the project's generated credentials")


class CollectorConfig(_Strict):
    collector_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    spool_dir: Path = Field(default=Path("spool"), strict=False)  # a TOML string; strict Path wants a Path
    spool_sync: Literal["normal", "full"] = Field(
        default="normal", description="normal: survives a process crash; full: fsync each commit (power loss)"
    )
    heartbeat_s: float = Field(default=10.0, gt=0.0)
    publish_window: int = Field(default=DEFAULT_PUBLISH_WINDOW, ge=1, le=20_000)
    batch_readings: int = Field(default=DEFAULT_BATCH_READINGS, ge=1, le=10_000)
    gateways: list[GatewayConfig] = Field(default_factory=list)
    dlms_meters: list[DlmsMeterConfig] = Field(default_factory=list)
    concentrators: ConcentratorConfig = ConcentratorConfig()
    broker: BrokerConfig | None = None
    source_file: Path | None = Field(default=None, exclude=True, description="set by the loader")

    def map_path(self, name: str) -> Path:
        """Where a meter's `map` value points: a built-in map name or a file relative to the config."""
        if "/" not in name and not name.endswith(".toml"):
            return MAPS_DIR / f"{name}.toml"
        path = Path(name)
        if not path.is_absolute() and self.source_file is not None:
            path = self.source_file.parent / path
        return path


def _semantic_errors(config: CollectorConfig) -> list[tuple[str, str]]:
    """(key path, message) for rules pydantic cannot see one field at a time."""
    errors: list[tuple[str, str]] = []
    names: set[str] = set()
    serials: dict[str, str] = {}
    endpoints: dict[tuple[str, str | int], str] = {}
    for g, gw in enumerate(config.gateways):
        where = f"gateways[{g}]"
        if gw.name in names:
            errors.append((f"{where}.name", f"gateway name {gw.name!r} is used twice"))
        names.add(gw.name)
        endpoint: tuple[str, str | int] = (
            (gw.device or "", "") if gw.transport == "serial" else (gw.host or "", gw.port)
        )
        if endpoint in endpoints:
            errors.append((f"{where}.name", f"gateway {gw.name!r} is the same bus as {endpoints[endpoint]!r}"))
        endpoints[endpoint] = gw.name
        units: set[int] = set()
        for m, meter in enumerate(gw.meters):
            mwhere = f"{where}.meters[{m}]"
            if meter.unit_id in units:
                errors.append((f"{mwhere}.unit_id", f"unit id {meter.unit_id} is used twice on gateway {gw.name!r}"))
            units.add(meter.unit_id)
            if gw.framing == "rtu" and not 1 <= meter.unit_id <= 247:
                errors.append((f"{mwhere}.unit_id", f"unit id {meter.unit_id} outside 1..247 on an RTU bus"))
            if meter.serial in serials:
                errors.append((f"{mwhere}.serial", f"meter {meter.serial!r} is configured twice"))
            serials[meter.serial] = mwhere
            map_path = config.map_path(meter.map)
            if map_path.is_file():
                from collectors.modbus.meterread import read_compiled_map

                try:
                    read_compiled_map(map_path.resolve())
                except ConfigError as exc:
                    errors.append((f"{mwhere}.map", f"bad register map: {exc}"))
            else:
                errors.append(
                    (f"{mwhere}.map", f"register map {meter.map!r} not found at {config.map_path(meter.map)}")
                )
    for d, dlms in enumerate(config.dlms_meters):
        if dlms.serial in serials:
            errors.append((f"dlms_meters[{d}].serial", f"meter {dlms.serial!r} is configured twice"))
        serials[dlms.serial] = f"dlms_meters[{d}]"
    return errors


def parse_collector_config(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> CollectorConfig:
    """Validate config text (a generated config, a test's); ConfigError naming `source`, the line and the key of the
    first problem. Relative paths (maps, spool) are taken from `base_dir`, else from `source`'s directory."""
    source_file = (base_dir / "collector.toml") if base_dir is not None else Path(source)
    return _validated(text, parse_toml(text, source=source), source=source, source_file=source_file)


def read_collector_config(path: Path) -> CollectorConfig:
    """Read and validate a collector config file (see the module docstring for its keys)."""
    text, document = read_toml(path)
    return _validated(text, document, source=str(path), source_file=path.resolve())


def _validated(text: str, document: dict[str, Any], *, source: str, source_file: Path) -> CollectorConfig:
    """The model of a parsed config, its relative paths resolved against `source_file`, checked across keys."""
    config = validate_toml(CollectorConfig, document, source=source, text=text)
    update: dict[str, Any] = {"source_file": source_file}
    if not config.spool_dir.is_absolute():
        update["spool_dir"] = source_file.parent / config.spool_dir
    config = config.model_copy(update=update)
    problems = _semantic_errors(config)
    if problems:
        path, message = problems[0]
        raise key_error(message, source=source, text=text, key=path)
    return config
