"""VEE rules as data: the shipped file loads; a wrong file is refused naming the file, the line and the key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from amr.errors import ConfigError
from billing.rules import DEFAULT_RULES_FILE, VeeRules, kernel_thresholds, read_vee_rules

TEXT = DEFAULT_RULES_FILE.read_text()


def _rules(tmp_path: Path, text: str) -> VeeRules:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return read_vee_rules(path)


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
        _rules(tmp_path, TEXT.replace("[register]", "[registers]"))
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        _rules(tmp_path, "[spike\n")
    assert err.value.source is not None and err.value.source.startswith(str(tmp_path / "rules.toml"))
    with pytest.raises(ConfigError, match="cannot read") as err:
        read_vee_rules(tmp_path / "missing.toml")
    assert err.value.source == str(tmp_path / "missing.toml")


def test_disabled_rule_never_fires(tmp_path: Path) -> None:
    shipped = kernel_thresholds(read_vee_rules())
    assert shipped.spike_factor == 10.0 and shipped.flat_line_s == 172800.0
    text = TEXT.replace("enabled = true\nfactor", "enabled = false\nfactor")
    text = text.replace("enabled = true\nmax_s", "enabled = false\nmax_s")
    th = kernel_thresholds(_rules(tmp_path, text))
    assert th.spike_factor == math.inf and th.flat_line_s == math.inf


def test_kernel_thresholds_have_one_type_per_field(tmp_path: Path) -> None:
    """numba compiles one specialisation per argument type: a float rule written as an integer must still reach
    the kernels as a float."""
    th = kernel_thresholds(_rules(tmp_path, TEXT.replace("max_plausible_kw = 2000.0", "max_plausible_kw = 2000")))
    assert th == kernel_thresholds(read_vee_rules())
    assert [type(v) for v in th] == [type(v) for v in kernel_thresholds(read_vee_rules())]
    assert type(th.max_plausible_kw) is float and type(th.estimate_max_s) is int
