"""Typed, validated settings from a TOML file and ``AMR_*`` environment variables.

Order of precedence (last wins): defaults, the TOML file (``amr.toml`` in the working directory or the file
named by ``AMR_CONFIG``), environment variables. A wrong value is refused at start with the key and the file.

Environment variables: ``AMR_DATABASE_URL`` and ``AMR_MQTT_URL`` point at existing servers; ``AMR_STATE_DIR``,
``AMR_DB_PORT``, ``AMR_DB_DATA_DIR``, ``AMR_MQTT_PORT`` move the project-local ones.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amr.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = "amr.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: str | None = Field(default=None, description="existing server; the local cluster is not used")
    host: str = "127.0.0.1"
    port: int = Field(default=54329, ge=1, le=65535, description="local cluster port, away from 5432")
    name: str = Field(default="amr", pattern=r"^[a-z_][a-z0-9_]*$")
    data_dir: Path | None = Field(default=None, description="local cluster data directory")


class MqttSettings(_Strict):
    url: str | None = Field(default=None, description="existing broker, mqtt://user:password@host:port")
    host: str = "127.0.0.1"
    port: int = Field(default=18830, ge=1, le=65535)


class Settings(_Strict):
    state_dir: Path = Field(default=PROJECT_ROOT / ".amr", description="git-ignored runtime state")
    db: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.toml"


_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "AMR_STATE_DIR": ("state_dir",),
    "AMR_DATABASE_URL": ("db", "url"),
    "AMR_DB_PORT": ("db", "port"),
    "AMR_DB_NAME": ("db", "name"),
    "AMR_DB_DATA_DIR": ("db", "data_dir"),
    "AMR_MQTT_URL": ("mqtt", "url"),
    "AMR_MQTT_PORT": ("mqtt", "port"),
}


def _set_nested(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def read_settings(config_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load settings; raise ConfigError naming the key and its source on any wrong value."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or (Path(env["AMR_CONFIG"]) if env.get("AMR_CONFIG") else Path(DEFAULT_CONFIG_FILE))
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from exc
    elif config_file is not None:
        raise ConfigError("file not found", source=str(path))
    sources: dict[tuple[str, ...], str] = {}
    for var, keys in _ENV_KEYS.items():
        if env.get(var):
            _set_nested(raw, keys, env[var])
            sources[keys] = f"environment variable {var}"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        keys = tuple(str(part) for part in first["loc"])
        source = sources.get(keys, str(path))
        raise ConfigError(first["msg"], source=source, key=".".join(keys)) from exc
