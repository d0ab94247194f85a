from __future__ import annotations

from pathlib import Path

import pytest

from amr.errors import ConfigError
from amr.settings import read_settings


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "amr.toml"
    path.write_text("")
    return path


def test_toml_and_environment_are_merged(tmp_path: Path) -> None:
    cfg = tmp_path / "amr.toml"
    cfg.write_text("[db]\nport = 6000\n[mqtt]\nport = 7000\n")
    s = read_settings(cfg, environ={"AMR_MQTT_PORT": "7100"})
    assert (s.db.port, s.mqtt.port) == (6000, 7100)


def test_wrong_value_names_the_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "amr.toml"
    cfg.write_text("[db]\nport = 'many'\n")
    with pytest.raises(ConfigError) as err:
        read_settings(cfg, environ={})
    assert str(cfg) in str(err.value) and "db.port" in str(err.value)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "amr.toml"
    cfg.write_text("[db]\nprot = 5\n")
    with pytest.raises(ConfigError, match=r"db\.prot"):
        read_settings(cfg, environ={})


def test_wrong_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AMR_DB_PORT"):
        read_settings(_empty(tmp_path), environ={"AMR_DB_PORT": "99999"})


def test_external_urls_come_from_the_environment(tmp_path: Path) -> None:
    s = read_settings(
        _empty(tmp_path),
        environ={"AMR_DATABASE_URL": "postgresql://u:p@db.example:5432/amr", "AMR_MQTT_URL": "mqtt://u:p@mq:1883"},
    )
    assert s.db.url and s.mqtt.url
