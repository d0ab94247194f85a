"""A small deterministic fleet whose counts on 2017-09-15 reproduce the published 2017 shares
(amr.rollout_figures), scaled down to 1,000 customers per city. Plus network state (meter_last_seen,
meter_comm_stats, collector_status) with one silent gateway, meters silent for 2 days, 10 days and never read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from amr.rollout_figures import MINISTRY_REPORT_DATE, published
from amr.timebase import local_midnight

REFERENCE_DAY = MINISTRY_REPORT_DATE
CUSTOMERS_PER_CITY = 1000


def _per_city(share: float | None) -> int:
    assert share is not None
    return round(share * CUSTOMERS_PER_CITY)


# (electronic, remote) meters on REFERENCE_DAY: the published shares of CUSTOMERS_PER_CITY.
AS_OF_REFERENCE = {
    city: (_per_city(fig.electronic_share), _per_city(fig.remote_share))
    for city, fig in ((c, published(c, REFERENCE_DAY)) for c in ("HN", "HCM"))
}
COMPANIES = {
    "HN": ["PD0100", "PD0200", "PD0300", "PD0400", "PD2900"],
    "HCM": ["PE0100", "PE0300", "PE0400", "PE1000", "PE1500"],
}
# HCMC keeps two mechanical meters: 99.8 % remote at the end, like the few holdouts EVN published for 2023.
HCM_MECHANICAL = 2
SILENT_GATEWAY = "GW-HCM-PE0300-0"
SERIAL_PREFIX = "DASH"


@dataclass(frozen=True)
class SeededMeter:
    serial: str
    city: str
    power_company: str
    meter_kind: str
    remote_read: bool
    protocol: str
    gateway: str | None
    connected_on: dt.date
    installed_on: dt.date | None
    remote_since: dt.date | None
    latitude_deg: float | None
    longitude_deg: float | None


def plan_meters() -> list[SeededMeter]:
    meters: list[SeededMeter] = []
    for city, (electronic_ref, remote_ref) in AS_OF_REFERENCE.items():
        companies = COMPANIES[city]
        for i in range(CUSTOMERS_PER_CITY):
            # Uneven companies: the early meters cluster in the first companies.
            company = companies[(i * i + i // 7) % len(companies)]
            connected = dt.date(2005, 1, 1) + dt.timedelta(days=(i * 37) % 3000)
            mechanical = city == "HCM" and i >= CUSTOMERS_PER_CITY - HCM_MECHANICAL
            if i < electronic_ref:
                installed: dt.date | None = dt.date(2014, 1, 1) + dt.timedelta(days=(i * 3) % 1300)
            elif mechanical:
                installed = None
            else:
                # The rest after the reference day: the target year and the long HCMC tail.
                span = 200 if city == "HN" else 1800
                installed = dt.date(2017, 10, 1) + dt.timedelta(days=(i * 11) % span)
            if installed is None:
                remote_since = None
            elif i < remote_ref:
                remote_since = min(installed + dt.timedelta(days=30), REFERENCE_DAY)
            elif i < electronic_ref:
                remote_since = dt.date(2017, 10, 1) + dt.timedelta(days=i % 90)
            else:
                remote_since = installed + dt.timedelta(days=14)
            protocol = ("dcu-mqtt", "modbus-tcp", "dlms")[i % 3] if remote_since else "manual"
            gateway = f"GW-{city}-{company}-{i % 2}" if protocol in ("dcu-mqtt", "modbus-tcp") else None
            has_coords = i % 2 == 0
            meters.append(
                SeededMeter(
                    serial=f"{SERIAL_PREFIX}-{city}-{i:05d}",
                    city=city,
                    power_company=company,
                    meter_kind="mechanical" if mechanical else ("smart" if i % 4 == 0 else "electronic"),
                    remote_read=remote_since is not None,
                    protocol=protocol,
                    gateway=gateway,
                    connected_on=connected,
                    installed_on=installed,
                    remote_since=remote_since,
                    latitude_deg=(21.02 if city == "HN" else 10.78) + ((i * 7919) % 200 - 100) / 1000
                    if has_coords
                    else None,
                    longitude_deg=(105.84 if city == "HN" else 106.68) + ((i * 104729) % 200 - 100) / 1000
                    if has_coords
                    else None,
                )
            )
    return meters


def seed(conninfo_owner: str) -> dict[str, int]:
    """Fill meters, network state and the aggregates in an empty, migrated database; return some counts."""
    meters = plan_meters()
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(conninfo_owner, autocommit=True) as conn, conn.transaction():
        with conn.cursor().copy(
            "COPY meters (serial, city, power_company, customer_code, tariff_class, meter_kind, remote_read, protocol,"
            " gateway, unit_id, connected_on, installed_on, remote_since, latitude_deg, longitude_deg) FROM STDIN"
        ) as copy:
            for n, m in enumerate(meters):
                copy.write_row(
                    (
                        m.serial,
                        m.city,
                        m.power_company,
                        f"{m.power_company}{n:08d}",
                        "household",
                        m.meter_kind,
                        m.remote_read,
                        m.protocol,
                        m.gateway,
                        n % 247 + 1,
                        m.connected_on,
                        m.installed_on,
                        m.remote_since,
                        m.latitude_deg,
                        m.longitude_deg,
                    )
                )
        found = conn.execute("SELECT serial, meter_id FROM meters WHERE serial LIKE 'DASH-%'").fetchall()
        ids: dict[str, int] = dict(found)
        silent_2d = silent_10d = never = 0
        with conn.cursor().copy("COPY meter_last_seen (meter_id, last_reading_ts, last_received_at) FROM STDIN") as c1:
            for i, m in enumerate(meters):
                if not m.remote_read:
                    continue
                if m.gateway == SILENT_GATEWAY or i % 50 == 1:
                    ts = now - dt.timedelta(days=2, minutes=i)
                    silent_2d += 1
                elif i % 50 == 2:
                    ts = now - dt.timedelta(days=10)
                    silent_10d += 1
                elif i % 50 == 3:
                    never += 1
                    continue
                elif i % 10 == 4:
                    ts = now - dt.timedelta(hours=3)
                else:
                    ts = now - dt.timedelta(minutes=5)
                c1.write_row((ids[m.serial], ts, ts + dt.timedelta(seconds=2)))
        with conn.cursor().copy(
            "COPY meter_comm_stats (meter_id, source, attempts, successes, last_attempt_at, last_success_at,"
            " last_error, last_error_at) FROM STDIN"
        ) as c2:
            for i, m in enumerate(meters):
                if not m.remote_read:
                    continue
                # DLMS answers worse than Modbus in this fleet: success rate differs per protocol.
                successes = 90 if m.protocol == "dlms" else 99
                if m.gateway == SILENT_GATEWAY:
                    successes = 40
                c2.write_row(
                    (
                        ids[m.serial],
                        f"collector-{m.city.lower()}-{i % 2}",
                        100,
                        successes,
                        now,
                        now - dt.timedelta(minutes=5),
                        "timeout" if successes < 99 else None,
                        now - dt.timedelta(minutes=30) if successes < 99 else None,
                    )
                )
        conn.execute(
            "INSERT INTO collector_status (source, kind, state, updated_at, spool_depth, reads_per_s, lag_s) VALUES"
            " ('collector-hn-0', 'collector', 'online', now(), 0, 210.5, NULL),"
            " ('collector-hcm-0', 'collector', 'online', now(), 1234, 180.0, NULL),"
            " ('collector-hcm-1', 'collector', 'offline', now() - interval '2 hours', 56789, 0, NULL),"
            " ('ingest-0', 'ingest', 'online', now(), NULL, 395.0, 2.5)"
        )
        conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
    return {"meters": len(meters), "silent_2d": silent_2d, "silent_10d": silent_10d, "never": never}


VEE_PERIOD = "2024-05"
DRILL_SERIAL = f"{SERIAL_PREFIX}-HN-00000"
VEE_RULES = ("GAP", "SPIKE", "NEGATIVE", "FLAT_LINE")


def seed_billing(conninfo_owner: str, export_dir: str) -> dict[str, int]:
    """A finished VEE run for 2024-05 with exceptions and daily consumption, 14 days of 30-min register reads for
    one meter (DRILL_SERIAL), and a held bill run whose export_dir holds a CSV; then refresh the aggregates."""
    start = local_midnight(dt.date(2024, 5, 1)).astimezone(dt.UTC)
    with psycopg.connect(conninfo_owner, autocommit=True) as conn, conn.transaction():
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT meter_id FROM meters WHERE serial LIKE 'DASH-%' AND remote_read ORDER BY meter_id LIMIT 40"
            ).fetchall()
        ]
        drill = conn.execute("SELECT meter_id FROM meters WHERE serial = %s", (DRILL_SERIAL,)).fetchone()
        assert drill is not None
        vee = conn.execute(
            "INSERT INTO billing_runs (kind, period, status, finished_at, customers, estimated_share, exceptions)"
            " VALUES ('vee', %s, 'released', now(), 40, 0.02, '{\"GAP\": 20}') RETURNING run_id",
            (VEE_PERIOD,),
        ).fetchone()
        assert vee is not None
        n_exc = 0
        for k, meter_id in enumerate(ids):
            for j in range(1 + (k % 3)):
                rule = VEE_RULES[(k + j) % len(VEE_RULES)]
                ts = start + dt.timedelta(days=2 + j, hours=k % 24)
                conn.execute(
                    "INSERT INTO vee_exceptions (run_id, meter_id, channel_id, interval_start, interval_end, rule,"
                    " severity, value) VALUES (%s, %s, 1, %s, %s, %s, %s, 0)",
                    (
                        vee[0],
                        meter_id,
                        ts,
                        ts + dt.timedelta(minutes=30),
                        rule,
                        "invalid" if rule in ("NEGATIVE", "SPIKE") else "review",
                    ),
                )
                n_exc += 1
        # The drill-down meter: reads every 30 min, a 6-hour gap on day 5 (estimated), exceptions marked.
        value = 1000.0
        with conn.cursor().copy("COPY readings (ts, meter_id, channel_id, value) FROM STDIN") as copy:
            for step in range(14 * 48):
                ts = start + dt.timedelta(minutes=30 * step)
                value += 0.25 + 0.2 * ((step % 48) in range(36, 44))
                if 5 * 48 + 10 <= step < 5 * 48 + 22:
                    continue
                copy.write_row((ts, drill[0], 1, round(value, 3)))
        for day in range(14):
            est = 12 if day == 5 else 0
            conn.execute(
                "INSERT INTO daily_consumption (meter_id, channel_id, day, measured_kwh, estimated_kwh, n_measured,"
                " n_estimated, flags, methods, vee_run_id) VALUES (%s, 1, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    drill[0],
                    dt.date(2024, 5, 1) + dt.timedelta(days=day),
                    14.0 - est * 0.3,
                    est * 0.3,
                    48 - est,
                    est,
                    (1 << 18) | (1 << 4) if est else 0,
                    1 if est else 0,
                    vee[0],
                ),
            )
        conn.execute(
            "INSERT INTO vee_exceptions (run_id, meter_id, channel_id, interval_start, interval_end, rule, severity,"
            " value) VALUES (%s, %s, 1, %s, %s, 'GAP', 'review', NULL)",
            (vee[0], drill[0], start + dt.timedelta(days=5, hours=5), start + dt.timedelta(days=5, hours=11)),
        )
        conn.execute(
            "INSERT INTO billing_runs (kind, period, city, status, finished_at, customers, energy_kwh, amount_vnd,"
            " vat_vnd, total_vnd, estimated_share, exceptions, hold_reason, export_dir) VALUES"
            " ('bill', %s, 'HN', 'held', now(), 1000, 250000, 600000000, 48000000, 648000000, 0.021,"
            " '{\"HIGH_USE\": 3}', 'estimated share above 2 %%', %s)",
            (VEE_PERIOD, export_dir),
        )
        conn.execute(
            "INSERT INTO billing_runs (kind, period, city, status, finished_at, customers, export_dir) VALUES"
            " ('bill', '2024-04', 'HCM', 'released', now(), 1000, NULL)"
        )
        conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
    return {"exceptions": n_exc + 1, "drill_meter": int(drill[0])}
