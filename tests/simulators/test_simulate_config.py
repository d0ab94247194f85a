"""`amr simulate`'s config file is read as TOML typed it (no coercion, finite floats); the error names the file,
the line and the key, or the command line for a value given there."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from amr.errors import ConfigError
from simulators.orchestrate import read_simulate_config

GOOD = '[simulate]\nseed = 7\nspeed = 60\nstart = "2025-04-01T00:00:00+07:00"\n[simulate.gateways]\ntcp = 1\n'


def test_typed_and_quoted_start_both_load(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text(GOOD)
    quoted = read_simulate_config(cfg, {})
    cfg.write_text(GOOD.replace('"2025-04-01T00:00:00+07:00"', "2025-04-01T00:00:00+07:00"))
    typed = read_simulate_config(cfg, {})
    assert quoted.start == typed.start == datetime(2025, 3, 31, 17, tzinfo=UTC)
    assert read_simulate_config(cfg, {"start": "2025-05-01T00:00:00+00:00"}).start == datetime(2025, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ("speed = 60", 'speed = "60"', 3, "simulate.speed", "got a string '60'"),
        ("speed = 60", "speed = inf", 3, "simulate.speed", "finite number"),
        ("seed = 7", "seed = 7.0", 2, "simulate.seed", "got a float"),
        ("seed = 7", "seed = true", 2, "simulate.seed", "got a boolean"),
        ("tcp = 1", "tcp = 1.0", 6, "simulate.gateways.tcp", "got a float"),
        ("tcp = 1", "tcp = 1\n[simulate.faults]\nno_answer = nan", 8, "simulate.faults.no_answer", "finite"),
        ('start = "2025-04-01T00:00:00+07:00"', "start = 1743465600", 4, "simulate.start", "valid datetime"),
        ('start = "2025-04-01T00:00:00+07:00"', 'start = "tomorrow"', 4, "simulate.start", "not an ISO date"),
    ],
)
def test_values_are_not_coerced(tmp_path: Path, old: str, new: str, line: int, key: str, words: str) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        read_simulate_config(cfg, {})
    assert err.value.source == f"{cfg}:{line}", str(err.value)
    assert err.value.key == key and words in str(err.value), str(err.value)


def test_a_wrong_command_line_value_names_the_command_line(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text(GOOD)
    with pytest.raises(ConfigError) as err:
        read_simulate_config(cfg, {"faults": {"no_answer": float("inf")}})
    assert err.value.source == "command line" and err.value.key == "simulate.faults.no_answer", str(err.value)


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text(GOOD.replace("tcp = 1", "tcp = "))
    with pytest.raises(ConfigError) as err:
        read_simulate_config(cfg, {})
    assert err.value.source == f"{cfg}:6" and "not valid TOML" in str(err.value), str(err.value)


def test_bad_simulate_config_names_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text("[simulate]\nmeters_per_gateway = 300\n")
    with pytest.raises(ConfigError) as err:
        read_simulate_config(cfg, {})
    assert str(cfg) in str(err.value) and "simulate.meters_per_gateway" in str(err.value)
    cfg.write_text("[simulate.faults]\nmeltdown = 0.1\n")
    with pytest.raises(ConfigError, match="unknown fault 'meltdown'"):
        read_simulate_config(cfg, {})
