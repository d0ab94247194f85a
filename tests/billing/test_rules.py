"""VEE rules as data: the shipped file loads; a wrong file is refused naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from amr.errors import ConfigError
from billing.rules import DEFAULT_RULES_FILE, kernel_params, parse_vee_rules, read_vee_rules
from billing.rules import P_SPIKE_FACTOR as SPIKE

TEXT = DEFAULT_RULES_FILE.read_text()


def test_shipped_rules_load() -> None:
    rules = read_vee_rules()
    assert rules.estimation.linear_max_s == 3 * 3600
    assert rules.hold.max_estimated_share == 0.02
    assert rules.status_invalid_mask == 1 | 4  # CRITICAL_ERROR | DATA_NOT_VALID


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("factor = 10.0", "factor = 0.5", "spike.factor"),
        ("max_s = 691200", "max_s = 60", "estimation"),
        ('"DATA_NOT_VALID"]', '"DATA_INVALID"]', "status.invalid_bits"),
        ("zero_days = 3", "zero_days = 'three'", "history.zero_days"),
        ("[hold]", "[hold]\nmax_missing = 1", "hold.max_missing"),
        ("allowed_s = [900, 1800, 3600, 86400]", "allowed_s = [900, 7000]", "interval.allowed_s"),
    ],
)
def test_wrong_rules_are_refused_naming_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in TEXT
    path = tmp_path / "rules.toml"
    path.write_text(TEXT.replace(old, new))
    with pytest.raises(ConfigError) as err:
        read_vee_rules(path)
    assert err.value.source is not None and err.value.source.startswith(f"{path}:")  # file:line
    assert err.value.key is not None and err.value.key.startswith(key)


def test_missing_section_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'register'"):
        parse_vee_rules(TEXT.replace("[register]", "[registers]"), source="x.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_vee_rules("[spike\n", source="x.toml")


def test_disabled_rule_never_fires() -> None:
    rules = parse_vee_rules(TEXT.replace("enabled = true\nfactor", "enabled = false\nfactor"))
    assert kernel_params(rules)[SPIKE] == float("inf")
