"""EVN tariffs to the VND: the worked example, price changes, tier scaling, TOU, VAT dating, any number of tiers.
Expected amounts are worked out by hand in the comments, not by the engine."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from amr.errors import ConfigError
from billing.charges import household_charges, round_half_up_div, split_kwh, tou_charges, vat_vnd
from billing.cycles import cycle, cycles, parse_period
from billing.tariff_book import TieredFile, parse_tariff_file, read_tariff_book

BOOK = read_tariff_book()
HOUSEHOLD = BOOK.tiered["household"]


def test_worked_example_350_kwh_at_2024_10_11_prices() -> None:
    # 50 x 1,893 + 50 x 1,956 + 100 x 2,271 + 100 x 2,860 + 50 x 3,197 = 865,400 VND before VAT
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 11, 5),
                          cycle_end=date(2024, 12, 5))
    assert c.amount_vnd.tolist() == [865_400]
    assert c.detail[0].tolist() == [[50, 50, 100, 100, 50, 0]]


def test_pro_rata_across_the_2024_10_11_price_change() -> None:
    # T = 30 days, Nc = 16 (Sep 25 .. Oct 10), Nm = 14. Old kWh = round(350 x 16 / 30) = 187, new 163.
    # Old tiers 50x16/30 = 27, 27, 100x16/30 = 53, 53, 53: 27x1806 + 27x1866 + 53x2167 + 53x2729 + 27x3050 = 440,982
    # New tiers 50x14/30 = 23, 23, 100x14/30 = 47, 47, 47: 23x1893 + 23x1956 + 47x2271 + 47x2860 + 23x3197 = 403,215
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25),
                          cycle_end=date(2024, 10, 25))
    assert [p.days for p in c.parts] == [16, 14]
    assert c.kwh_parts.tolist() == [[187, 163]]
    assert c.amount_vnd.tolist() == [440_982 + 403_215]


def test_read_on_the_change_day_bills_each_part_from_its_reading() -> None:
    # 200 kWh before the change, 150 after: old 200 on tiers 27, 27, 53, 53 -> 27x1806 + 27x1866 + 53x2167 +
    # 53x2729 + 40x3050 = 480,632; new 150 on 23, 23, 47, 47 -> 23x1893 + 23x1956 + 47x2271 + 47x2860 + 10x3197
    # = 361,654
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25),
                          cycle_end=date(2024, 10, 25), kwh_parts=np.array([[200, 150]]))
    assert c.amount_vnd.tolist() == [480_632 + 361_654]


def test_tier_sizes_scale_with_a_51_day_period() -> None:
    # Hanoi moving its read day: 2024-05-10 .. 2024-06-30 is 51 days. Tiers x 51/30: 85, 85, 170, 170, 170.
    # 600 kWh: 85x1806 + 85x1866 + 170x2167 + 170x2729 + 90x3050 = 1,418,940
    c = household_charges(np.array([600]), tariff=HOUSEHOLD, cycle_start=date(2024, 5, 10),
                          cycle_end=date(2024, 6, 30), whole_month=False)
    assert c.detail[0].tolist() == [[85, 85, 170, 170, 90, 0]]
    assert c.amount_vnd.tolist() == [1_418_940]


def test_56_day_period_across_a_price_change() -> None:
    # 2024-09-01 .. 2024-10-27: T = 56, Nc = 40, Nm = 16; 560 kWh -> 400 old, 160 new.
    # old tiers 50x40/30 = 67, 67, 100x40/30 = 133, 133: 67x1806 + 67x1866 + 133x2167 + 133x2729 = 897,203
    # new tiers 50x16/30 = 27, 27, 100x16/30 = 53, 53: 27x1893 + 27x1956 + 53x2271 + 53x2860 = 375,866
    c = household_charges(np.array([560]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 1),
                          cycle_end=date(2024, 10, 27), whole_month=False)
    assert c.kwh_parts.tolist() == [[400, 160]]
    assert c.amount_vnd.tolist() == [897_192 + 375_866]


def test_households_sharing_a_meter_multiply_the_tiers() -> None:
    # two households: tiers 100, 100, 200, ...; 350 kWh: 100x1893 + 100x1956 + 150x2271 = 725,550
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 11, 1),
                          cycle_end=date(2024, 12, 1), households=2)
    assert c.amount_vnd.tolist() == [725_550]


def test_vectorized_amounts_equal_one_by_one() -> None:
    kwh = np.arange(0, 1200, 7)
    together = household_charges(kwh, tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25), cycle_end=date(2024, 10, 25))
    single = [household_charges(np.array([k]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25),
                                cycle_end=date(2024, 10, 25)).amount_vnd[0] for k in kwh]
    assert together.amount_vnd.tolist() == single
    assert (np.diff(together.amount_vnd) > 0).all()


def test_tou_bill_for_a_business_customer() -> None:
    # business < 6 kV: 1,000 x 2,666 + 300 x 4,587 + 500 x 1,622 = 4,853,100
    prices = BOOK.tou_prices("business")
    assert prices is not None
    c = tou_charges(np.array([1000]), np.array([300]), np.array([500]), prices=prices,
                    cycle_start=date(2026, 9, 1), cycle_end=date(2026, 10, 1))
    assert c.amount_vnd.tolist() == [4_853_100]
    assert BOOK.tou_period(date(2026, 10, 5), __import__("datetime").time(18, 0)) == "peak"  # Monday evening
    assert BOOK.tou_period(date(2026, 10, 4), __import__("datetime").time(18, 0)) == "normal"  # Sunday
    assert BOOK.tou_period(date(2026, 10, 4), __import__("datetime").time(3, 59)) == "offpeak"


@pytest.mark.parametrize(("day", "percent"), [(date(2022, 6, 1), 8), (date(2023, 5, 1), 10),
                                               (date(2023, 8, 1), 8), (date(2026, 10, 1), 8),
                                               (date(2027, 2, 1), 10)])
def test_vat_is_dated(day: date, percent: int) -> None:
    rate = BOOK.vat_on(day)
    assert rate.percent == percent
    # 865,400 x 8 % = 69,232; x 10 % = 86,540
    assert vat_vnd(np.array([865_400]), rate.basis_points).tolist() == [{8: 69_232, 10: 86_540}[percent]]


def test_vat_rounds_half_up_to_the_vnd() -> None:
    assert vat_vnd(np.array([12_345, 12_350, 5]), 800).tolist() == [988, 988, 0]  # 987.6, 988.0, 0.4
    assert round_half_up_div(5, 2) == 3 and round_half_up_div(np.array([1, 3]), 2).tolist() == [1, 2]


def test_pro_rata_parts_add_up() -> None:
    parts = split_kwh(np.array([0, 1, 29, 350, 10_001]), [16, 14])
    assert parts.sum(axis=1).tolist() == [0, 1, 29, 350, 10_001]
    assert parts[:, 0].tolist() == [0, 1, 15, 187, 5334]  # 29x16/30 = 15.47 -> 15; 10001x16/30 = 5333.9 -> 5334


FIVE_TIERS = """
kind = "tiered"
name = "household-2026"
tariff_classes = ["household"]
standard_month_days = 30
[[versions]]
effective_from = 2026-01-01
tier_kwh = [100, 100, 200, 300]
price_vnd_per_kwh = [1000, 1200, 1500, 1800, 2000]
"""


def test_five_tier_structure_from_data() -> None:
    tariff = parse_tariff_file(FIVE_TIERS, source="five.toml")
    assert isinstance(tariff, TieredFile)
    # 800 kWh: 100x1000 + 100x1200 + 200x1500 + 300x1800 + 100x2000 = 1,260,000
    c = household_charges(np.array([800]), tariff=tariff, cycle_start=date(2026, 3, 1), cycle_end=date(2026, 4, 1))
    assert c.amount_vnd.tolist() == [1_260_000]


def test_provisional_prices_are_marked() -> None:
    assert [v.provisional for v in HOUSEHOLD.versions] == [False, False, True]
    assert HOUSEHOLD.versions[-1].price_vnd_per_kwh[-1] == 3460


def test_bad_tariff_files_are_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"five\.toml:6, key 'versions\[0\]'.*need 5 prices"):
        parse_tariff_file(FIVE_TIERS.replace(", 2000]", "]"), source="five.toml")
    with pytest.raises(ConfigError, match="key 'kind'"):
        parse_tariff_file(FIVE_TIERS.replace('"tiered"', '"flat"'), source="five.toml")
    with pytest.raises(ConfigError, match=r"key 'versions\[0\]\.price_vnd_per_kwh': required key is missing"):
        parse_tariff_file(FIVE_TIERS.replace("price_vnd_per_kwh", "price_vnd"), source="five.toml")
    (tmp_path / "household.toml").write_text(FIVE_TIERS)
    with pytest.raises(ConfigError, match="no VAT file"):
        read_tariff_book(tmp_path)


def test_billing_cycles_follow_the_read_day() -> None:
    assert cycle("2026-10", 1) == (date(2026, 9, 1), date(2026, 10, 1))
    assert cycle("2026-03", 31) == (date(2026, 2, 28), date(2026, 3, 31))
    assert cycle("2026-01", 15) == (date(2025, 12, 15), date(2026, 1, 15))
    start, end = cycles("2026-10", np.array([1, 31]))
    assert start.tolist() == [date(2026, 9, 1), date(2026, 9, 30)]
    assert end.tolist() == [date(2026, 10, 1), date(2026, 10, 31)]
    with pytest.raises(ConfigError, match="--period"):
        parse_period("2026-13")
