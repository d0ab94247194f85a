"""EVN tariffs to the VND: the worked example, price changes, tier scaling, TOU, VAT dating, any number of tiers.
Expected amounts are worked out by hand in the comments, not by the engine."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from amr.errors import ConfigError
from amr.timebase import DAY_S
from billing import flags as F
from billing.charges import household_charges, price_flags, round_half_up_div, split_kwh, tou_charges, vat_vnd
from billing.cycles import BillingPeriod
from billing.tariff_book import TieredFile, TouFile, TouPrice, read_tariff_book, read_tariff_file

BOOK = read_tariff_book()
HOUSEHOLD = BOOK.tiered["household"]


def test_worked_example_350_kwh_at_2024_10_11_prices() -> None:
    # 50 x 1,893 + 50 x 1,956 + 100 x 2,271 + 100 x 2,860 + 50 x 3,197 = 865,400 VND before VAT
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 11, 5), cycle_end=date(2024, 12, 5))
    assert c.amount_vnd.tolist() == [865_400]
    assert c.detail[0].tolist() == [[50, 50, 100, 100, 50, 0]]


def test_pro_rata_across_the_2024_10_11_price_change() -> None:
    # T = 30 days, Nc = 16 (Sep 25 .. Oct 10), Nm = 14. Old kWh = round(350 x 16 / 30) = 187, new 163.
    # Old tiers 50x16/30 = 27, 27, 100x16/30 = 53, 53, 53: 27x1806 + 27x1866 + 53x2167 + 53x2729 + 27x3050 = 440,982
    # New tiers 50x14/30 = 23, 23, 100x14/30 = 47, 47, 47: 23x1893 + 23x1956 + 47x2271 + 47x2860 + 23x3197 = 403,215
    c = household_charges(
        np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25), cycle_end=date(2024, 10, 25)
    )
    assert [p.days for p in c.parts] == [16, 14]
    assert c.kwh_parts.tolist() == [[187, 163]]
    assert c.amount_vnd.tolist() == [440_982 + 403_215]


def test_read_on_the_change_day_bills_each_part_from_its_reading() -> None:
    # 200 kWh before the change, 150 after: old 200 on tiers 27, 27, 53, 53 -> 27x1806 + 27x1866 + 53x2167 +
    # 53x2729 + 40x3050 = 480,632; new 150 on 23, 23, 47, 47 -> 23x1893 + 23x1956 + 47x2271 + 47x2860 + 10x3197
    # = 361,654
    c = household_charges(
        np.array([350]),
        tariff=HOUSEHOLD,
        cycle_start=date(2024, 9, 25),
        cycle_end=date(2024, 10, 25),
        kwh_parts=np.array([[200, 150]]),
    )
    assert c.amount_vnd.tolist() == [480_632 + 361_654]


def test_tier_sizes_scale_with_a_51_day_period() -> None:
    # Hanoi moving its read day: 2024-05-10 .. 2024-06-30 is 51 days. Tiers x 51/30: 85, 85, 170, 170, 170.
    # 600 kWh: 85x1806 + 85x1866 + 170x2167 + 170x2729 + 90x3050 = 1,418,940
    c = household_charges(
        np.array([600]), tariff=HOUSEHOLD, cycle_start=date(2024, 5, 10), cycle_end=date(2024, 6, 30), whole_month=False
    )
    assert c.detail[0].tolist() == [[85, 85, 170, 170, 90, 0]]
    assert c.amount_vnd.tolist() == [1_418_940]


def test_56_day_period_across_a_price_change() -> None:
    # 2024-09-01 .. 2024-10-27: T = 56, Nc = 40, Nm = 16; 560 kWh -> 400 old, 160 new.
    # old tiers 50x40/30 = 67, 67, 100x40/30 = 133, 133: 67x1806 + 67x1866 + 133x2167 + 133x2729 = 897,203
    # new tiers 50x16/30 = 27, 27, 100x16/30 = 53, 53: 27x1893 + 27x1956 + 53x2271 + 53x2860 = 375,866
    c = household_charges(
        np.array([560]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 1), cycle_end=date(2024, 10, 27), whole_month=False
    )
    assert c.kwh_parts.tolist() == [[400, 160]]
    assert c.amount_vnd.tolist() == [897_192 + 375_866]


def test_households_sharing_a_meter_multiply_the_tiers() -> None:
    # two households: tiers 100, 100, 200, ...; 350 kWh: 100x1893 + 100x1956 + 150x2271 = 725,550
    c = household_charges(
        np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 11, 1), cycle_end=date(2024, 12, 1), households=2
    )
    assert c.amount_vnd.tolist() == [725_550]


def test_vectorized_amounts_equal_one_by_one() -> None:
    kwh = np.arange(0, 1200, 7)
    together = household_charges(kwh, tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25), cycle_end=date(2024, 10, 25))
    single = [
        household_charges(
            np.array([k]), tariff=HOUSEHOLD, cycle_start=date(2024, 9, 25), cycle_end=date(2024, 10, 25)
        ).amount_vnd[0]
        for k in kwh
    ]
    assert together.amount_vnd.tolist() == single
    assert (np.diff(together.amount_vnd) > 0).all()


def test_tou_bill_for_a_business_customer() -> None:
    # business < 6 kV in 2026, Decision 1279/QD-BCT prices (from 2025-05-10), not 648/QD-BCT (2019):
    # 1,000 x 3,152 + 300 x 5,422 + 500 x 1,918 = 3,152,000 + 1,626,600 + 959,000 = 5,737,600
    prices = BOOK.tou_prices("business")
    assert prices is not None
    c = tou_charges(
        np.array([1000]),
        np.array([300]),
        np.array([500]),
        prices=prices,
        cycle_start=date(2026, 9, 1),
        cycle_end=date(2026, 10, 1),
    )
    assert c.amount_vnd.tolist() == [5_737_600]
    assert price_flags(c.parts, BOOK.price_rounds) == []
    assert BOOK.tou_period(date(2026, 10, 5), __import__("datetime").time(18, 0)) == "peak"  # Monday evening
    assert BOOK.tou_period(date(2026, 10, 4), __import__("datetime").time(18, 0)) == "normal"  # Sunday
    assert BOOK.tou_period(date(2026, 10, 4), __import__("datetime").time(3, 59)) == "offpeak"


@pytest.mark.parametrize(
    ("day", "percent"),
    [
        (date(2022, 6, 1), 8),
        (date(2023, 5, 1), 10),
        (date(2023, 8, 1), 8),
        (date(2026, 10, 1), 8),
        (date(2027, 2, 1), 10),
    ],
)
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


def _tariff_file(tmp_path: Path, text: str, name: str = "five.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_five_tier_structure_from_data(tmp_path: Path) -> None:
    tariff = read_tariff_file(_tariff_file(tmp_path, FIVE_TIERS))
    assert isinstance(tariff, TieredFile)
    # 800 kWh: 100x1000 + 100x1200 + 200x1500 + 300x1800 + 100x2000 = 1,260,000
    c = household_charges(np.array([800]), tariff=tariff, cycle_start=date(2026, 3, 1), cycle_end=date(2026, 4, 1))
    assert c.amount_vnd.tolist() == [1_260_000]


def test_provisional_prices_are_marked() -> None:
    assert [v.provisional for v in HOUSEHOLD.versions] == [False, False, True]
    assert HOUSEHOLD.versions[-1].price_vnd_per_kwh[-1] == 3460


def test_bad_tariff_files_are_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"five\.toml:6, key 'versions\[0\]'.*need 5 prices"):
        read_tariff_file(_tariff_file(tmp_path, FIVE_TIERS.replace(", 2000]", "]")))
    with pytest.raises(ConfigError, match=r"five\.toml:2, key 'kind'.*got a string 'flat'"):
        read_tariff_file(_tariff_file(tmp_path, FIVE_TIERS.replace('"tiered"', '"flat"')))
    with pytest.raises(ConfigError, match=r"five\.toml, key 'kind': required key is missing"):
        read_tariff_file(_tariff_file(tmp_path, FIVE_TIERS.replace('kind = "tiered"', "")))
    with pytest.raises(ConfigError, match=r"key 'versions\[0\]\.price_vnd_per_kwh': required key is missing"):
        read_tariff_file(_tariff_file(tmp_path, FIVE_TIERS.replace("price_vnd_per_kwh", "price_vnd")))
    (tmp_path / "five.toml").unlink()
    (tmp_path / "household.toml").write_text(FIVE_TIERS)
    with pytest.raises(ConfigError, match="no VAT file"):
        read_tariff_book(tmp_path)


def test_billing_cycles_follow_the_read_day() -> None:
    october = BillingPeriod.parse("2026-10")
    assert october == BillingPeriod(2026, 10) and str(october) == october.label == "2026-10"
    assert october.cycle(1) == (date(2026, 9, 1), date(2026, 10, 1))
    assert BillingPeriod.parse("2026-03").cycle(31) == (date(2026, 2, 28), date(2026, 3, 31))
    assert BillingPeriod.parse(" 2026-01 ").cycle(15) == (date(2025, 12, 15), date(2026, 1, 15))
    start, end = october.cycles(np.array([1, 31]))
    assert start.tolist() == [date(2026, 9, 1), date(2026, 9, 30)]
    assert end.tolist() == [date(2026, 10, 1), date(2026, 10, 31)]
    # the period spans every read day's cycle; its UTC bounds are the local (UTC+7) midnights
    assert (october.start_day, october.end_day) == (date(2026, 9, 1), date(2026, 10, 31))
    assert october.start_utc_s == 1_788_195_600  # 2026-08-31T17:00:00Z
    assert october.end_utc_s - october.start_utc_s == 60 * DAY_S
    with pytest.raises(ConfigError, match="--period"):
        BillingPeriod.parse("2026-13")
    with pytest.raises(ConfigError, match="not YYYY-MM"):
        BillingPeriod.parse("10/2026", source="--period")
    with pytest.raises(ConfigError, match="no billing period"):
        BillingPeriod(2026, 0)


# --- TOU prices of the 2023-2025 rounds ----------------------------------------------------------------------


def test_a_june_2025_bill_uses_the_may_2025_prices() -> None:
    # production < 6 kV, cycle 2025-06-01 .. 2025-07-01: Decision 1279/QD-BCT (from 2025-05-10) only.
    # 20,000 x 1,987 + 5,000 x 3,640 + 10,000 x 1,300 = 39,740,000 + 18,200,000 + 13,000,000 = 70,940,000
    prices = BOOK.tou_prices("production")
    assert prices is not None
    c = tou_charges(
        np.array([20_000]),
        np.array([5_000]),
        np.array([10_000]),
        prices=prices,
        cycle_start=date(2025, 6, 1),
        cycle_end=date(2025, 7, 1),
    )
    assert [p.version.effective_from for p in c.parts] == [date(2025, 5, 10)]
    assert c.amount_vnd.tolist() == [70_940_000]
    assert price_flags(c.parts, BOOK.price_rounds) == []


def test_a_cycle_across_may_10_2025_is_split_and_flagged_provisional() -> None:
    # business < 6 kV, 2025-04-25 .. 2025-05-25: 15 days at the 2024-10-11 prices (provisional), 15 at 2025's.
    # normal 3,000 kWh -> 1,500 + 1,500: 1,500 x 3,008 + 1,500 x 3,152 = 9,240,000
    prices = BOOK.tou_prices("business")
    assert prices is not None
    c = tou_charges(
        np.array([3_000]),
        np.array([0]),
        np.array([0]),
        prices=prices,
        cycle_start=date(2025, 4, 25),
        cycle_end=date(2025, 5, 25),
    )
    assert [(p.version.effective_from, p.days) for p in c.parts] == [(date(2024, 10, 11), 15), (date(2025, 5, 10), 15)]
    assert c.amount_vnd.tolist() == [9_240_000]
    assert price_flags(c.parts, BOOK.price_rounds) == [F.PROVISIONAL_PRICE]


def test_every_group_has_a_version_from_every_price_round() -> None:
    tou = BOOK.tou
    assert tou is not None
    rounds = [r.effective_from for r in tou.price_rounds]
    assert rounds == [date(2019, 3, 20), date(2023, 5, 4), date(2023, 11, 9), date(2024, 10, 11), date(2025, 5, 10)]
    for name, versions in tou.groups.items():
        assert [v.effective_from for v in versions] == rounds, name
        assert all(v.source for v in versions), name
        # read in a source: 2019 (Decision 648) and 2025 (Decision 1279); the rounds between are derived
        assert [v.provisional for v in versions] == [False, True, True, True, False], name


def _derived(anchor: TouPrice, ratio: float) -> tuple[int, int, int]:
    return tuple(
        int(round_half_up_div(round(p * ratio * 1_000_000), 1_000_000))
        for p in (anchor.normal, anchor.peak, anchor.offpeak)
    )  # type: ignore[return-value]


def test_provisional_prices_follow_the_published_average_price_increases() -> None:
    """Each provisional version = the prices of the source-read version fewest rounds away (ties: the later),
    times the ratio of the two rounds' average retail prices, rounded half up (as tou.toml's header says)."""
    tou = BOOK.tou
    assert isinstance(tou, TouFile)
    average = {r.effective_from: r.average_vnd_per_kwh for r in tou.price_rounds}
    for name, versions in tou.groups.items():
        read = [k for k, v in enumerate(versions) if not v.provisional]
        for k, v in enumerate(versions):
            if not v.provisional:
                continue
            anchor = versions[min(read, key=lambda a: (abs(a - k), -a))]
            ratio = average[v.effective_from] / average[anchor.effective_from]
            assert (v.normal, v.peak, v.offpeak) == _derived(anchor, ratio), (name, v.effective_from)


def test_prices_older_than_the_latest_round_are_flagged_outdated(tmp_path: Path) -> None:
    # A TOU file whose business prices stop at 2019 while the rounds go on: a 2026 bill is priced on outdated
    # prices (the defect this data fixes: 648/QD-BCT prices billed years after four increases).
    text = (Path(__file__).parents[2] / "billing" / "tariffs" / "tou.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[[groups.business_lt6kv]]\neffective_from = 2023-05-04")
    stale = head + rest[rest.index("[[groups.business_ge22kv]]") :]
    tou = read_tariff_file(_tariff_file(tmp_path, stale, "stale.toml"))
    assert isinstance(tou, TouFile)
    assert [v.effective_from for v in tou.groups["business_lt6kv"]] == [date(2019, 3, 20)]
    c = tou_charges(
        np.array([1000]),
        np.array([300]),
        np.array([500]),
        prices=tou.groups["business_lt6kv"],
        cycle_start=date(2026, 9, 1),
        cycle_end=date(2026, 10, 1),
    )
    assert c.amount_vnd.tolist() == [4_853_100]  # 1,000 x 2,666 + 300 x 4,587 + 500 x 1,622
    assert price_flags(c.parts, tou.price_rounds) == [F.OUTDATED_PRICE]
    # Before the first increase the same prices were current.
    c2019 = tou_charges(
        np.array([1]),
        np.array([0]),
        np.array([0]),
        prices=tou.groups["business_lt6kv"],
        cycle_start=date(2023, 4, 1),
        cycle_end=date(2023, 5, 1),
    )
    assert price_flags(c2019.parts, tou.price_rounds) == []
    # A cycle that runs into a round the data lacks is outdated too (its last day is past 2023-05-04).
    c_may = tou_charges(
        np.array([1]),
        np.array([0]),
        np.array([0]),
        prices=tou.groups["business_lt6kv"],
        cycle_start=date(2023, 4, 15),
        cycle_end=date(2023, 5, 15),
    )
    assert price_flags(c_may.parts, tou.price_rounds) == [F.OUTDATED_PRICE]


def test_households_on_provisional_prices_are_flagged() -> None:
    # The 2025-05-10 household prices are provisional (household.toml): a 2026 household bill says so.
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2026, 9, 1), cycle_end=date(2026, 10, 1))
    assert price_flags(c.parts, BOOK.price_rounds) == [F.PROVISIONAL_PRICE]
    # 2024-11: the 2024-10-11 prices, read in a source and the latest round then: no flag.
    c = household_charges(np.array([350]), tariff=HOUSEHOLD, cycle_start=date(2024, 11, 5), cycle_end=date(2024, 12, 5))
    assert price_flags(c.parts, BOOK.price_rounds) == []
