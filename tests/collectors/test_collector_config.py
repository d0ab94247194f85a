"""A wrong collector config or register map is refused at start, naming the file, the line and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amr.broker.mosquitto import BrokerEndpoint
from amr.errors import ConfigError
from collectors.config import parse_collector_config, read_collector_config
from collectors.runner import resolve_endpoint
from tests.collectors.fleet import env_without_pytest

GOOD = """collector_id = "c-cfg"

[[gateways]]
name = "g1"
transport = "tcp"
host = "127.0.0.1"
port = 1502

[[gateways.meters]]
serial = "TCFG001"
unit_id = 1
map = "vn_sim_meter"

[[gateways.meters]]
serial = "TCFG002"
unit_id = 2
map = "eastron_sdm630"
poll_interval_s = 60
"""


def _write(tmp_path: Path, text: str, name: str = "collector.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_loads(tmp_path: Path) -> None:
    config = read_collector_config(_write(tmp_path, GOOD))
    assert [m.serial for m in config.gateways[0].meters] == ["TCFG001", "TCFG002"]
    assert config.spool_dir == tmp_path / "spool"
    assert config.gateways[0].framing == "socket"


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ("unit_id = 2", "unit_id = 300", 16, "gateways[0].meters[1].unit_id", "less than or equal to 255"),
        ("unit_id = 2", "unit_id = 1", 16, "gateways[0].meters[1].unit_id", "used twice"),
        ('map = "eastron_sdm630"', 'map = "no_such_map"', 17, "gateways[0].meters[1].map", "not found"),
        ("poll_interval_s = 60", "poll_every = 60", 18, "gateways[0].meters[1].poll_every", "unknown key"),
        ('host = "127.0.0.1"', "", 3, "gateways[0]", "needs 'host'"),
        ('transport = "tcp"', 'transport = "udp"', 5, "gateways[0].transport", "'tcp' or 'serial'"),
        ('serial = "TCFG002"', 'serial = "TCFG001"', 15, "gateways[0].meters[1].serial", "configured twice"),
    ],
)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key: str, words: str
) -> None:
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        read_collector_config(path)
    message = str(err.value)
    assert f"{path}:{line}" in message
    assert key in message
    assert words in message


SERIAL_GATEWAY = """
[[gateways]]
name = "rs485"
transport = "serial"
device = "/dev/ttyAMR0"
stopbits = 1
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        # No string-to-number coercion: a quoted port is a string.
        ("port = 1502", 'port = "15020"', 7, "gateways[0].port", "got a string '15020'"),
        # A boolean is not a unit id, and neither is a float with an integral value.
        ("unit_id = 2", "unit_id = true", 16, "gateways[0].meters[1].unit_id", "got a boolean True"),
        ("unit_id = 2", "unit_id = 1.0", 16, "gateways[0].meters[1].unit_id", "got a float 1.0"),
        # Floats are finite, whether written as TOML's inf / nan or as strings.
        ("poll_interval_s = 60", 'multiplier = "inf"', 18, "gateways[0].meters[1].multiplier", "valid number"),
        ("poll_interval_s = 60", "multiplier = inf", 18, "gateways[0].meters[1].multiplier", "finite number"),
        ("poll_interval_s = 60", "poll_interval_s = nan", 18, "gateways[0].meters[1].poll_interval_s", "finite"),
        (
            "poll_interval_s = 60",
            'poll_interval_s = "60"',
            18,
            "gateways[0].meters[1].poll_interval_s",
            "got a string '60'",
        ),
        ('host = "127.0.0.1"', 'host = "127.0.0.1"\ntimeout_s = inf', 7, "gateways[0].timeout_s", "finite"),
        ('collector_id = "c-cfg"', 'collector_id = "c-cfg"\nheartbeat_s = "10"', 2, "heartbeat_s", "got a string"),
        ('collector_id = "c-cfg"', 'collector_id = "c-cfg"\npublish_window = 10.0', 2, "publish_window", "got a float"),
        # Choices among integers: pydantic's Literal would take true for 1.
        ("stopbits = 1", "stopbits = true", 24, "gateways[1].stopbits", "got a boolean"),
        ("stopbits = 1", "stopbits = 1.0", 24, "gateways[1].stopbits", "got a float"),
        ("stopbits = 1", "stopbits = 3", 24, "gateways[1].stopbits", "must be one of 1, 2"),
    ],
)
def test_values_are_taken_as_typed_not_coerced(
    tmp_path: Path, old: str, new: str, line: int, key: str, words: str
) -> None:
    path = _write(tmp_path, (GOOD + SERIAL_GATEWAY).replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        read_collector_config(path)
    message = str(err.value)
    assert f"{path}:{line}" in message, message
    assert key in message, message
    assert words in message, message


def test_integers_are_welcome_where_floats_are_expected(tmp_path: Path) -> None:
    config = read_collector_config(_write(tmp_path, GOOD + SERIAL_GATEWAY.replace("stopbits = 1", "stopbits = 2")))
    assert config.gateways[0].meters[1].poll_interval_s == 60.0
    assert config.gateways[1].stopbits == 2


def test_bad_register_map_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path,
        '[map]\nname = "bad"\nmodel = "x"\n\n[[register]]\nname = "e"\nobis = "1.0.1.8.0.255"\nfunction = "input"\n'
        'address = 0\ntype = "uint32"\nscale = 1.0\nunit = "Wh"\n',
        "bad_map.toml",
    )
    path = _write(tmp_path, GOOD.replace('map = "vn_sim_meter"', 'map = "./bad_map.toml"'))
    with pytest.raises(ConfigError) as err:
        read_collector_config(path)
    message = str(err.value)
    assert f"{path}:12" in message and "gateways[0].meters[0].map" in message
    assert "bad_map.toml:12" in message and "'Wh'" in message


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("unit_id = 2", "unit_id = 2 2"))
    with pytest.raises(ConfigError) as err:
        read_collector_config(path)
    assert err.value.source == f"{path}:16" and "not valid TOML" in str(err.value), str(err.value)
    with pytest.raises(ConfigError) as err:  # generated text is labelled the same way
        parse_collector_config(GOOD.replace("[[gateways]]", "[[gateways]"), source="generated.toml")
    assert err.value.source == "generated.toml:3", str(err.value)


def test_the_collector_takes_the_project_broker_from_its_caller(tmp_path: Path) -> None:
    """The service reads no global settings: without a password of its own it needs the caller's broker."""
    project = BrokerEndpoint(host="10.0.0.1", port=1883, username="collector", password="from-the-caller")
    config = read_collector_config(_write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as err:
        resolve_endpoint(config)
    assert err.value.key == "broker.password" and str(tmp_path) in str(err.value), str(err.value)
    assert resolve_endpoint(config, lambda: project) == project
    moved = read_collector_config(_write(tmp_path, GOOD + '[broker]\nhost = "10.0.0.2"\nport = 1884\n'))
    assert resolve_endpoint(moved, lambda: project) == BrokerEndpoint(
        host="10.0.0.2", port=1884, username="collector", password="from-the-caller"
    )

    def not_needed() -> BrokerEndpoint:
        raise AssertionError("the project broker was asked for though the config names its own")

    own = read_collector_config(_write(tmp_path, GOOD + '[broker]\nusername = "c1"\npassword = "own"\n'))
    assert resolve_endpoint(own, not_needed) == BrokerEndpoint(
        host="127.0.0.1", port=18830, username="c1", password="own"
    )


def test_cli_refuses_a_bad_config(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("unit_id = 2", "unit_id = 300"))
    proc = subprocess.run(
        [sys.executable, "-m", "app", "collect", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_pytest(),
    )
    assert proc.returncode == 2
    assert f"{path}:16" in proc.stderr.replace("\n", "")
