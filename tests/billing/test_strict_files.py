"""VEE rules and tariff files are read as TOML typed them: no string-to-number coercion, booleans are not
numbers, integers are not written as floats, floats are finite; the error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from amr.errors import ConfigError
from billing.rules import DEFAULT_RULES_FILE, read_vee_rules
from billing.tariff_book import TARIFF_DIR, read_tariff_file

RULES = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
VAT = (TARIFF_DIR / "vat.toml").read_text(encoding="utf-8")
HOUSEHOLD = (TARIFF_DIR / "household.toml").read_text(encoding="utf-8")


def _line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if line.startswith(fragment))


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("factor = 10.0", 'factor = "10"', "spike.factor", "got a string '10'"),
        ("factor = 10.0", "factor = inf", "spike.factor", "finite number"),
        ("min_kw = 15.0", "min_kw = nan", "spike.min_kw", "finite number"),
        ("max_s = 172800", "max_s = 172800.0", "flat_line.max_s", "got a float"),
        ("zero_days = 3", "zero_days = true", "history.zero_days", "got a boolean"),
        ("enabled = true\nfactor", "enabled = 1\nfactor", "spike.enabled", "got an integer 1"),
        ("suspect_s = 30", 'suspect_s = "30"', "clock.suspect_s", "got a string"),
        ("max_estimated_share = 0.02", "max_estimated_share = nan", "hold.max_estimated_share", "finite"),
    ],
)
def test_vee_rules_are_not_coerced(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    assert old in RULES
    text = RULES.replace(old, new, 1)
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_vee_rules(path)
    line = _line_of(text, new.split("\n")[0])
    assert err.value.source == f"{path}:{line}", str(err.value)
    assert err.value.key == key and words in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("text", "old", "new", "key", "words"),
    [
        (VAT, "percent = 10", 'percent = "10"', "rates[0].percent", "got a string '10'"),
        (VAT, "percent = 10", "percent = inf", "rates[0].percent", "finite number"),
        (
            VAT,
            "effective_from = 2016-01-01",
            'effective_from = "2016-01-01"',
            "rates[0].effective_from",
            "got a string",
        ),
        (HOUSEHOLD, "standard_month_days = 30", "standard_month_days = 30.0", "standard_month_days", "got a float"),
        (HOUSEHOLD, "provisional = false", "provisional = 0", "versions[0].provisional", "got an integer 0"),
        (
            HOUSEHOLD,
            "tier_kwh = [50, 50, 100, 100, 100]",
            "tier_kwh = [50, 50, 100, 100, 100.0]",
            "versions[0].tier_kwh[4]",
            "got a float",
        ),
    ],
)
def test_tariff_files_are_not_coerced(tmp_path: Path, text: str, old: str, new: str, key: str, words: str) -> None:
    assert old in text
    changed = text.replace(old, new, 1)
    path = tmp_path / "tariff.toml"
    path.write_text(changed, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_tariff_file(path)
    assert err.value.source == f"{path}:{_line_of(changed, new)}", str(err.value)
    assert err.value.key == key and words in str(err.value), str(err.value)
