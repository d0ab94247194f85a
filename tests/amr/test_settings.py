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


@pytest.mark.parametrize(
    ("toml", "line", "key", "words"),
    [
        ('[db]\nname = "amr"\nport = "6000"\n', 3, "db.port", "got a string '6000'"),
        ("[db]\nport = 6000.0\n", 2, "db.port", "got a float 6000.0"),
        ("[mqtt]\nport = true\n", 2, "mqtt.port", "got a boolean True"),
        ("state_dir = 5\n", 1, "state_dir", "valid path"),
    ],
)
def test_file_values_are_not_coerced(tmp_path: Path, toml: str, line: int, key: str, words: str) -> None:
    cfg = tmp_path / "amr.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        read_settings(cfg, environ={})
    message = str(err.value)
    assert f"{cfg}:{line}" in message and key in message and words in message, message


def test_environment_strings_are_parsed_explicitly(tmp_path: Path) -> None:
    s = read_settings(
        _empty(tmp_path),
        environ={"AMR_DB_PORT": "6001", "AMR_MQTT_PORT": "7001", "AMR_STATE_DIR": str(tmp_path / "state")},
    )
    assert (s.db.port, s.mqtt.port, s.state_dir) == (6001, 7001, tmp_path / "state")


@pytest.mark.parametrize("value", ["6e3", "6000.0", "true", "port", "６０００"])
def test_environment_integers_are_decimal_digits(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        read_settings(_empty(tmp_path), environ={"AMR_DB_PORT": value})
    assert "environment variable AMR_DB_PORT" in str(err.value) and "not an integer" in str(err.value)


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "amr.toml"
    cfg.write_text("[db]\nport = 6000\nname = \n[mqtt]\nport = 7000\n")
    with pytest.raises(ConfigError) as err:
        read_settings(cfg, environ={})
    assert err.value.source == f"{cfg}:3" and "not valid TOML" in str(err.value), str(err.value)
