"""Typed, validated settings from a TOML file and ``AMR_*`` environment variables.

Order of precedence (last wins): defaults, the TOML file (``amr.toml`` in the working directory or the file
named by ``AMR_CONFIG``), environment variables. A wrong value is refused at start with the key and the file.

Environment variables: ``AMR_DATABASE_URL`` and ``AMR_MQTT_URL`` point at existing servers; ``AMR_STATE_DIR``,
``AMR_DB_PORT``, ``AMR_DB_DATA_DIR``, ``AMR_MQTT_PORT`` move the project-local ones; ``AMR_PG_BINDIR`` names
PostgreSQL's bin directory when ``pg_config --bindir`` does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amr.errors import ConfigError
from amr.tomlfile import config_error, read_toml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = "amr.toml"


class _Strict(BaseModel):
    # strict: the file's `port = "6000"` is refused, not coerced; environment variables (always strings) are
    # parsed explicitly by _ENV_KEYS before validation.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DatabaseSettings(_Strict):
    url: str | None = Field(default=None, description="existing server; the local cluster is not used")
    host: str = "127.0.0.1"
    port: int = Field(default=54329, ge=1, le=65535, description="local cluster port, away from 5432")
    name: str = Field(default="amr", pattern=r"^[a-z_][a-z0-9_]*$")
    data_dir: Path | None = Field(default=None, strict=False, description="local cluster data directory")
    bin_dir: Path | None = Field(
        default=None,
        strict=False,
        description="PostgreSQL's server programs (initdb, pg_ctl); default: pg_config --bindir",
    )


class MqttSettings(_Strict):
    url: str | None = Field(default=None, description="existing broker, mqtt://user:password@host:port")
    host: str = "127.0.0.1"
    port: int = Field(default=18830, ge=1, le=65535)


class Settings(_Strict):
    state_dir: Path = Field(default=PROJECT_ROOT / ".amr", strict=False, description="git-ignored runtime state")
    db: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.toml"


def _integer(text: str) -> int:
    """A decimal integer as written ('6000', not '6e3', '6000.0' or 'true')."""
    stripped = text.strip()
    if not stripped.lstrip("+-").isdigit() or not stripped.isascii():
        raise ValueError(f"not an integer: {text!r}")
    return int(stripped)


# variable -> (key path in the settings, parser of its text): the environment only holds strings, so each one
# is parsed here, explicitly, and the strict models see the typed value.
_ENV_KEYS: dict[str, tuple[tuple[str, ...], Callable[[str], Any]]] = {
    "AMR_STATE_DIR": (("state_dir",), Path),
    "AMR_DATABASE_URL": (("db", "url"), str),
    "AMR_DB_PORT": (("db", "port"), _integer),
    "AMR_DB_NAME": (("db", "name"), str),
    "AMR_DB_DATA_DIR": (("db", "data_dir"), Path),
    "AMR_PG_BINDIR": (("db", "bin_dir"), Path),
    "AMR_MQTT_URL": (("mqtt", "url"), str),
    "AMR_MQTT_PORT": (("mqtt", "port"), _integer),
}


def _set_nested(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):  # `db = 5` in the file: validation reports the table itself
            return
    tree[keys[-1]] = value


def read_settings(config_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load settings; raise ConfigError naming the key and its source on any wrong value."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or (Path(env["AMR_CONFIG"]) if env.get("AMR_CONFIG") else Path(DEFAULT_CONFIG_FILE))
    raw: dict[str, Any] = {}
    text: str | None = None
    if path.exists():
        text, raw = read_toml(path)
    elif config_file is not None:
        raise ConfigError("file not found", source=str(path))
    sources: dict[str, str] = {}
    for var, (keys, parse) in _ENV_KEYS.items():
        if env.get(var):
            key = ".".join(keys)
            try:
                value = parse(env[var])
            except ValueError as exc:
                raise ConfigError(str(exc), source=f"environment variable {var}", key=key) from exc
            _set_nested(raw, keys, value)
            sources[key] = f"environment variable {var}"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, source=str(path), text=text, sources=sources) from exc
