"""Typed, validated settings from a TOML file and ``AMR_*`` environment variables.

Order of precedence (last wins): defaults, the TOML file (``amr.toml`` in the working directory or the file
named by ``AMR_CONFIG``), environment variables. A wrong value is refused at start with the key and the file.

Environment variables: ``AMR_DATABASE_URL`` and ``AMR_MQTT_URL`` point at existing servers; ``AMR_STATE_DIR``,
``AMR_DB_PORT``, ``AMR_DB_DATA_DIR``, ``AMR_MQTT_PORT`` move the project-local ones; ``AMR_PG_BINDIR`` names
PostgreSQL's bin directory when ``pg_config --bindir`` does not.

The state directory (credentials, the local cluster and broker, spools, exports), unless ``AMR_STATE_DIR`` or
``state_dir`` in the file names one:

- in a checkout (this project's ``pyproject.toml`` beside the ``amr`` package): ``<checkout>/.amr``;
- installed (a wheel in a virtual environment or the system): ``$XDG_STATE_HOME/amr``, by default
  ``~/.local/state/amr`` (the XDG base directory for state that persists across restarts);
- installed and running as root with ``XDG_STATE_HOME`` unset and no ``~/.local/state/amr`` yet:
  ``/var/lib/amr``, the system-wide place for a service's state (systemd's ``StateDirectory=amr``). Root's home is
  not where a system service keeps its data, and an existing ``~/.local/state/amr`` keeps being used so that
  upgrading never silently starts on an empty state.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amr.errors import ConfigError
from amr.tomlfile import config_error, read_toml

# The folder holding the `amr` package: the checkout's root when running from one, site-packages when installed
# (see checkout_root()).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = "amr.toml"
PROJECT_NAME = "amr-platform"  # [project] name in pyproject.toml: tells this project's checkout from any other
CHECKOUT_STATE_DIR_NAME = ".amr"  # git-ignored
STATE_DIR_NAME = "amr"  # under $XDG_STATE_HOME
SYSTEM_STATE_DIR = Path("/var/lib/amr")  # FHS /var/lib: state of a system-wide service run as root


def checkout_root(root: Path = PROJECT_ROOT) -> Path | None:
    """``root`` when it is a checkout of this project (its pyproject.toml names amr-platform), else None."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # no pyproject.toml beside an installed package (or not a readable one): not a checkout
    return root if isinstance(project, dict) and project.get("name") == PROJECT_NAME else None


def default_state_dir(
    environ: Mapping[str, str], *, checkout: Path | None, is_root: bool, home: Path | None = None
) -> Path:
    """The state directory when neither AMR_STATE_DIR nor the settings file names one (the module's docstring)."""
    if checkout is not None:
        return checkout / CHECKOUT_STATE_DIR_NAME
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is invalid and ignored
        return Path(xdg) / STATE_DIR_NAME
    home = home or (Path(environ["HOME"]) if environ.get("HOME") else Path.home())
    user_state = home / ".local" / "state" / STATE_DIR_NAME
    if is_root and not user_state.exists():
        return SYSTEM_STATE_DIR
    return user_state


def _state_dir_here(environ: Mapping[str, str]) -> Path:
    return default_state_dir(environ, checkout=checkout_root(), is_root=os.geteuid() == 0)


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
    state_dir: Path = Field(
        default_factory=lambda: _state_dir_here(os.environ),
        strict=False,
        description="runtime state: <checkout>/.amr, $XDG_STATE_HOME/amr or /var/lib/amr (module docstring)",
    )
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
    if "state_dir" not in raw:  # the default from the same environment as the rest (XDG_STATE_HOME, HOME)
        raw["state_dir"] = _state_dir_here(env)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, source=str(path), text=text, sources=sources) from exc
