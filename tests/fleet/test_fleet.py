"""The fleet generator: calibration on the published rollout, registry invariants, binary COPY into a real
TimescaleDB (a database of its own), replacement, determinism."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.errors import AmrError
from amr.pgcopy import HEADER, PG_EPOCH_UNIX_DAYS, TRAILER, Column, encode_rows
from amr.rollout_figures import (
    COMPLETION_DATE,
    HANOI_ALL_ELECTRONIC_DATE,
    MINISTRY_REPORT_DATE,
    PUBLISHED,
    TARGET_DATE,
    TARGET_REMOTE_SHARE,
    published,
)
from fleet.calibration import CALIBRATION_DATE, CITIES, COMPANIES, HORIZON
from fleet.counts import city_coverage_series, count_fleet
from fleet.registry import Fleet, build_fleet
from fleet.rollout import NEVER, day_number
from fleet.store import FleetRun, fetch_coverage, write_fleet

SCALE = 0.01
SEED = 11


def _published_2017(city: str) -> tuple[int, float, int, float]:
    """(electronic meters, electronic share, remote meters, remote share) of mid-Sep 2017."""
    ref = published(city, MINISTRY_REPORT_DATE)
    assert ref.electronic_meters and ref.electronic_share and ref.remote_meters and ref.remote_share
    return ref.electronic_meters, ref.electronic_share, ref.remote_meters, ref.remote_share


@pytest.fixture(scope="module")
def fleet_db(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    return make_database("fleet_test")


@pytest.fixture(scope="module")
def written(fleet_db: DatabaseServer) -> tuple[Fleet, FleetRun]:
    fleet = build_fleet(scale=SCALE, seed=SEED)
    return fleet, write_fleet(fleet_db.conninfo(Role.OWNER), fleet)


# -- without a database: the rollout at real size --------------------------------------------------------
def test_scale_one_counts_reproduce_the_published_counts_exactly() -> None:
    counts = count_fleet(CALIBRATION_DATE, scale=1.0, seed=SEED)
    for city in CITIES:
        (electronic, electronic_share, remote, remote_share), got = _published_2017(city), counts.cities[city]
        assert got.electronic == electronic
        assert got.remote == remote
        assert 2_100_000 <= got.customers <= 2_300_000  # the range the report's shares imply
        # no customer total reproduces both rounded shares; ours is within one percentage point of each
        assert abs(got.electronic_share - electronic_share) < 0.01
        assert abs(got.remote_share - remote_share) < 0.01
        companies = [v for k, v in counts.companies.items() if any(c.code == k and c.city == city for c in COMPANIES)]
        assert sum(c.electronic for c in companies) == got.electronic
        assert all(c.customers > 0 and c.electronic > 0 for c in companies)


def test_scale_one_rollout_completes_as_published_and_grows() -> None:
    done = count_fleet(COMPLETION_DATE, scale=1.0, seed=SEED).cities
    assert published("HN", COMPLETION_DATE).remote_share == 1.0
    assert done["HN"].remote == done["HN"].customers
    assert round(done["HCM"].remote_share, 4) == published("HCM", COMPLETION_DATE).remote_share
    assert done["HCM"].remote < done["HCM"].customers
    before = count_fleet(date(2023, 5, 30), scale=1.0, seed=SEED).cities
    assert before["HN"].remote < before["HN"].customers  # completed on the day, not long before
    target = count_fleet(TARGET_DATE, scale=1.0, seed=SEED).cities
    calib = count_fleet(CALIBRATION_DATE, scale=1.0, seed=SEED).cities
    for city in CITIES:
        assert calib[city].remote_share < target[city].remote_share < done[city].remote_share
    assert count_fleet(date(2011, 12, 31), scale=1.0, seed=SEED).cities["HN"].electronic == 0
    assert count_fleet(date(2012, 12, 31), scale=1.0, seed=SEED).cities["HN"].electronic > 0
    feb_2024 = published("HN", HANOI_ALL_ELECTRONIC_DATE)  # more than N customers, all electronic
    assert feb_2024.customers is not None
    for day in (HANOI_ALL_ELECTRONIC_DATE, HORIZON):
        hanoi = count_fleet(day, scale=1.0, seed=SEED).cities["HN"]
        assert hanoi.customers >= feb_2024.customers and hanoi.electronic_share == feb_2024.electronic_share
    now = count_fleet(HORIZON, scale=1.0, seed=SEED).cities
    assert 2_500_000 <= now["HCM"].customers <= 2_700_000


def test_city_curves_replay_day_by_day_consistently() -> None:
    for city in CITIES:
        days, customers, electronic, remote = city_coverage_series(city, scale=1.0)
        assert len(days) == len(customers) and days[-1] == np.datetime64(HORIZON)
        for curve in (customers, electronic, remote):
            assert np.all(np.diff(curve) >= 0)
        assert np.all(remote <= electronic) and np.all(electronic <= customers)


def test_generation_is_deterministic_for_a_seed() -> None:
    a, b, c = (build_fleet(scale=0.002, seed=s) for s in (5, 5, 6))
    for name in (
        "company",
        "tariff",
        "protocol",
        "gateway_no",
        "unit_id",
        "connected_day",
        "installed_day",
        "remote_day",
        "latitude_deg",
        "multiplier",
        "read_day",
    ):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.serials()[0], b.serials()[0])
    assert not np.array_equal(a.company, c.company)
    assert not np.array_equal(a.latitude_deg, c.latitude_deg)


def test_registry_arrays_are_consistent() -> None:
    fleet = build_fleet(scale=SCALE, seed=SEED)
    serials, _ = fleet.serials()
    assert len(np.unique(serials)) == len(fleet)
    assert len(np.unique(fleet.customer_codes())) == len(fleet)
    has_date = fleet.installed_day != NEVER
    assert np.all(fleet.connected_day[has_date] <= fleet.installed_day[has_date])
    assert np.all(fleet.installed_day <= fleet.remote_day)  # NEVER is the largest day number
    household = fleet.tariff == 0
    assert 0.85 <= household.mean() <= 0.95
    assert np.all(fleet.multiplier[household] == 1) and np.any(fleet.multiplier[~household] > 1)
    assert np.any(fleet.households[household] > 1) and np.all(fleet.households[~household] == 1)


# -- the binary COPY encoder against the real server ------------------------------------------------------
def test_binary_copy_encodes_nulls_empty_and_variable_text(fleet_db: DatabaseServer) -> None:
    text = np.array([b"", b"abc", b"xy", b"abcdef"], dtype="S6")
    columns = [
        Column(
            name="t",
            pg_type="text",
            values=text,
            lengths=np.array([0, 3, 2, 6]),
            null=np.array([False, False, True, False]),
        ),
        Column(name="i", pg_type="int4", values=np.array([1, -2, 3, 2**31 - 1]), null=np.array([0, 1, 0, 0], bool)),
        Column(
            name="d", pg_type="date", values=np.array([day_number(date(1999, 12, 31)), 0, PG_EPOCH_UNIX_DAYS, 20000])
        ),
        Column(name="f", pg_type="float8", values=np.array([0.1, -1e300, np.pi, 2.5])),
        Column(name="b", pg_type="bool", values=np.array([True, False, True, False])),
        Column(name="s", pg_type="int2", values=np.array([1, 2, 3, -4])),
    ]
    with psycopg.connect(fleet_db.conninfo(Role.OWNER)) as conn:
        conn.execute("CREATE TEMP TABLE enc (t text, i int4, d date, f float8, b bool, s int2)")
        with conn.cursor() as cur, cur.copy("COPY enc FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(HEADER + encode_rows(columns, np.arange(4)) + TRAILER)
        rows = conn.execute("SELECT t, i, d, f, b, s FROM enc ORDER BY s").fetchall()
        stored_order = [r[0] for r in conn.execute("SELECT s FROM enc ORDER BY ctid")]
    assert stored_order == [1, 2, 3, -4]  # rows are written in the order given, whatever their layout
    assert rows == [
        ("abcdef", 2**31 - 1, date(2024, 10, 4), 2.5, False, -4),
        ("", 1, date(1999, 12, 31), 0.1, True, 1),
        ("abc", None, date(1970, 1, 1), -1e300, False, 2),
        (None, 3, date(2000, 1, 1), np.pi, True, 3),
    ]


# -- the fleet written into its own database ---------------------------------------------------------------
def test_written_fleet_counts_match_published_within_one_percent(
    fleet_db: DatabaseServer, written: tuple[Fleet, FleetRun]
) -> None:
    fleet, run = written
    assert run.meters == len(fleet)
    db_counts = fetch_coverage(fleet_db.conninfo(Role.READER), CALIBRATION_DATE)
    for city in CITIES:
        (electronic, _, remote, _), got = _published_2017(city), db_counts[city]
        assert got.electronic == pytest.approx(electronic * SCALE, rel=0.01)
        assert got.remote == pytest.approx(remote * SCALE, rel=0.01)
    pure = count_fleet(CALIBRATION_DATE, scale=SCALE, seed=SEED)
    assert db_counts == pure.cities  # the pure count is the database's count
    assert fetch_coverage(fleet_db.conninfo(Role.READER), CALIBRATION_DATE, by="company") == pure.companies
    done = fetch_coverage(fleet_db.conninfo(Role.READER), COMPLETION_DATE)
    assert done["HN"].remote == done["HN"].customers
    assert round(done["HCM"].remote_share, 4) == published("HCM", COMPLETION_DATE).remote_share


def test_written_registry_invariants(fleet_db: DatabaseServer, written: tuple[Fleet, FleetRun]) -> None:
    checks = {
        "serials unique": "SELECT count(*) - count(DISTINCT serial) FROM meters",
        "company in another city": "SELECT count(*) FROM meters m JOIN power_companies p ON p.code = m.power_company"
        " WHERE p.city <> m.city",
        "remote before installed": "SELECT count(*) FROM meters WHERE remote_since < installed_on",
        "installed before connected": "SELECT count(*) FROM meters WHERE installed_on < connected_on",
        "mechanical with a date": "SELECT count(*) FROM meters WHERE (meter_kind = 'mechanical')"
        " <> (installed_on IS NULL)",
        "remote flag": "SELECT count(*) FROM meters WHERE remote_read <> (remote_since IS NOT NULL)",
        "remote without gateway": "SELECT count(*) FROM meters WHERE remote_read AND (gateway IS NULL"
        " OR unit_id IS NULL OR protocol = 'manual')",
        "customer code": "SELECT count(*) FROM meters WHERE customer_code NOT LIKE power_company || '%'",
        "serial format": "SELECT count(*) FROM meters WHERE serial !~ ('^VN[0-9]{2}' || city || '[0-9]{7}$')",
        "gateway mixes": "SELECT count(*) FROM (SELECT gateway FROM meters WHERE gateway IS NOT NULL GROUP BY gateway"
        " HAVING count(DISTINCT power_company) > 1 OR count(DISTINCT protocol) > 1 OR count(*) > 64"
        " OR count(DISTINCT unit_id) < count(*)) g",
        "far from centroid": "SELECT count(*) FROM meters m JOIN power_companies p ON p.code = m.power_company"
        " WHERE abs(m.latitude_deg - p.latitude_deg) > 0.3 OR abs(m.longitude_deg - p.longitude_deg) > 0.3",
    }
    with psycopg.connect(fleet_db.conninfo(Role.READER)) as conn:
        found = {name: conn.execute(query).fetchone()[0] for name, query in checks.items()}  # type: ignore[index]
        companies = conn.execute("SELECT count(DISTINCT power_company) FROM meters").fetchone()
        gateway_sizes = conn.execute(
            "SELECT avg(n) FROM (SELECT count(*) n FROM meters WHERE gateway IS NOT NULL GROUP BY gateway) g"
        ).fetchone()
        hn_read_days = conn.execute("SELECT array_agg(DISTINCT read_day) FROM meters WHERE city = 'HN'").fetchone()
    assert found == dict.fromkeys(checks, 0)
    assert companies == (45,)
    assert gateway_sizes is not None and 16 <= gateway_sizes[0] <= 64
    assert hn_read_days == ([31],)


def test_written_rows_read_back_equal_to_the_arrays(fleet_db: DatabaseServer, written: tuple[Fleet, FleetRun]) -> None:
    fleet, run = written
    rows = np.random.default_rng(0).choice(len(fleet), size=300, replace=False)
    serials = fleet.serials()[0]
    codes = fleet.customer_codes()
    gateways, _, no_gateway = fleet.gateways()
    with psycopg.connect(fleet_db.conninfo(Role.READER)) as conn:
        got = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT meter_id, serial, customer_code, gateway, connected_on, installed_on, latitude_deg,"
                " multiplier FROM meters WHERE meter_id = ANY(%s)",
                ([int(run.first_meter_id + i) for i in rows],),
            )
        }
    assert len(got) == len(rows)
    for i in rows:
        serial, code, gateway, connected, installed, lat, multiplier = got[run.first_meter_id + int(i)]
        assert serial == serials[i].decode() and code == codes[i].decode()
        assert gateway == (None if no_gateway[i] else gateways[i].decode())
        assert day_number(connected) == fleet.connected_day[i]
        assert (installed is None) == (fleet.installed_day[i] == NEVER)
        assert lat == fleet.latitude_deg[i] and multiplier == fleet.multiplier[i]


def test_regeneration_needs_replace_and_keeps_other_meters(make_database: Callable[[str], DatabaseServer]) -> None:
    server = make_database("fleet_test_replace")
    conninfo = server.conninfo(Role.OWNER)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO meters (serial, city, power_company, tariff_class, meter_kind)"
            " VALUES ('TEST-FLEET-KEEP-0001', 'HN', 'PD0100', 'household', 'electronic')"
        )
    first = write_fleet(conninfo, build_fleet(scale=0.002, seed=1))
    with pytest.raises(AmrError, match="--replace"):
        write_fleet(conninfo, build_fleet(scale=0.002, seed=1))
    second_fleet = build_fleet(scale=0.001, seed=2)
    second = write_fleet(conninfo, second_fleet, replace=True)
    assert second.replaced_meters == first.meters and second.first_meter_id > first.last_meter_id
    with psycopg.connect(conninfo) as conn:
        total = conn.execute("SELECT count(*) FROM meters").fetchone()
        kept = conn.execute("SELECT count(*) FROM meters WHERE serial = 'TEST-FLEET-KEEP-0001'").fetchone()
        active = conn.execute("SELECT run_id FROM fleet_runs WHERE replaced_at IS NULL").fetchall()
        fk = conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'meters'::regclass").fetchone()
    assert total == (len(second_fleet) + 1,) and kept == (1,)
    assert active == [(second.run_id,)]
    assert fk is not None and fk[0] >= 13  # keys, foreign key and checks all still there


def test_rollout_reference_matches_the_published_figures_and_is_readable(fleet_db: DatabaseServer) -> None:
    # sql/050 seeds rollout_reference with its own copy of the figures (a migration cannot change once applied):
    # it must agree with amr.rollout_figures row for row, and the target rows with the Resolution 36a target.
    expected = sorted(
        (p.as_of, p.city, p.customers, p.electronic_meters, p.electronic_share, p.remote_meters, p.remote_share)
        for p in PUBLISHED
    )
    for role in (Role.READER, Role.BILLING):
        with psycopg.connect(fleet_db.conninfo(role)) as conn:
            measured = conn.execute(
                "SELECT as_of, city, customers, electronic_meters, electronic_share, remote_meters, remote_share"
                " FROM rollout_reference WHERE kind = 'measured' ORDER BY as_of, city"
            ).fetchall()
            targets = conn.execute(
                "SELECT as_of, city, remote_share FROM rollout_reference WHERE kind = 'target' ORDER BY city"
            ).fetchall()
            conn.execute("SELECT run_id FROM fleet_runs").fetchall()
        assert sorted(measured) == expected
        assert targets == [(TARGET_DATE, city, TARGET_REMOTE_SHARE) for city in sorted(CITIES)]
