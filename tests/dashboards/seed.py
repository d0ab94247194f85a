"""A small deterministic fleet whose counts on 2017-09-15 reproduce the published 2017 shares
(amr.rollout_figures), scaled down to 1,000 customers per city. Plus network state (meter_last_seen,
meter_comm_stats, collector_status) with one silent gateway, meters silent for 2 days, 10 days and never read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

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


# -- continuous VEE -----------------------------------------------------------------------------------------------
# What the continuous VEE service (billing.continuous) would have written, relative to the day the tests run: 20 days
# of validated total-import days for 30 HN and 10 HCM meters, one meter (VEE_SERIAL) with late data, a manual edit
# and register reads, exception episodes of every status, a few pending units and the service's watermark.
VEE_SERIAL = f"{SERIAL_PREFIX}-HN-00005"
VEE_OPERATOR = "lan.nguyen"
VEE_EDIT_NOTE = "register photographed on site: 5,123.4 kWh"
VEE_PENDING_UNITS = 7
VEE_LAG_S = 42
VEE_GAP_DAY = 2  # days before today: the drill meter's reads miss 06:00-12:00 (local) that day
VEE_READ_DAYS = 14  # days before today with the drill meter's 30-min reads (today excluded)
CLOSED = ("resolved", "auto_resolved")


@dataclass(frozen=True, kw_only=True)
class VeeVersion:
    serial: str
    channel_id: int
    day: dt.date
    version: int
    measured_kwh: float
    estimated_kwh: float
    n_measured: int
    n_estimated: int
    quality: str
    method: int | None
    reason: str
    made_by: str = "vee-service"
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class VeeEpisode:
    serial: str
    channel_id: int
    rule: str
    severity: str
    first_start: dt.datetime
    last_end: dt.datetime
    occurrences: int
    status: str
    value_min: float | None = None
    value_max: float | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class VeePlan:
    today: dt.date
    versions: tuple[VeeVersion, ...]
    episodes: tuple[VeeEpisode, ...]
    pending: tuple[tuple[str, dt.date], ...]
    company: dict[str, tuple[str, str]]  # serial -> (city, power company)

    def day(self, before_today: int) -> dt.date:
        return self.today - dt.timedelta(days=before_today)

    def current(self) -> list[VeeVersion]:
        """The greatest version of each (serial, channel, day)."""
        best: dict[tuple[str, int, dt.date], VeeVersion] = {}
        for v in self.versions:
            key = (v.serial, v.channel_id, v.day)
            if key not in best or v.version > best[key].version:
                best[key] = v
        return list(best.values())

    def in_city(self, serial: str, city: str | None) -> bool:
        return city is None or self.company[serial][0] == city

    def open_counts(self, city: str | None) -> tuple[int, int, int]:
        """(open episodes, meters with an open one, acknowledged episodes)."""
        eps = [e for e in self.episodes if self.in_city(e.serial, city)]
        opened = [e for e in eps if e.status == "open"]
        return len(opened), len({e.serial for e in opened}), sum(e.status == "acknowledged" for e in eps)

    def open_by_rule(self, city: str | None) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for e in self.episodes:
            if e.status == "open" and self.in_city(e.serial, city):
                key = (e.rule, self.company[e.serial][1])
                out[key] = out.get(key, 0) + 1
        return out

    def daily(self, first: dt.date, last: dt.date, city: str | None) -> dict[tuple[dt.date, str], list[float]]:
        """(day, quality) -> [meter-days, measured kWh, estimated kWh] of the current channel-1 days."""
        out: dict[tuple[dt.date, str], list[float]] = {}
        for v in self.current():
            if v.channel_id == 1 and first <= v.day <= last and self.in_city(v.serial, city):
                acc = out.setdefault((v.day, v.quality), [0, 0.0, 0.0])
                acc[0] += 1
                acc[1] += v.measured_kwh
                acc[2] += v.estimated_kwh
        return out


def _vee_meters() -> list[SeededMeter]:
    by_serial = {m.serial: m for m in plan_meters()}
    return [by_serial[f"{SERIAL_PREFIX}-HN-{i:05d}"] for i in range(30)] + [
        by_serial[f"{SERIAL_PREFIX}-HCM-{i:05d}"] for i in range(10)
    ]


def plan_vee(today: dt.date) -> VeePlan:
    meters = _vee_meters()

    def day(k: int) -> dt.date:
        return today - dt.timedelta(days=k)

    def at(k: int, hour: float) -> dt.datetime:
        return local_midnight(day(k)) + dt.timedelta(hours=hour)

    def actual(serial: str, k: int, kwh: float, channel: int = 1) -> VeeVersion:
        return VeeVersion(
            serial=serial,
            channel_id=channel,
            day=day(k),
            version=1,
            measured_kwh=kwh,
            estimated_kwh=0.0,
            n_measured=48,
            n_estimated=0,
            quality="A",
            method=None,
            reason="first_pass",
        )

    def est(
        serial: str,
        k: int,
        measured: float,
        estimated: float,
        quality: str,
        method: int | None,
        *,
        version: int = 1,
        reason: str = "first_pass",
        channel: int = 1,
        made_by: str = "vee-service",
        note: str | None = None,
    ) -> VeeVersion:
        """A day with estimates: 12 intervals estimated when part was measured, all 48 when none was."""
        n_est = 0 if not estimated else (12 if measured else 48)
        return VeeVersion(
            serial=serial,
            channel_id=channel,
            day=day(k),
            version=version,
            measured_kwh=measured,
            estimated_kwh=estimated,
            n_measured=48 - n_est if measured else 0,
            n_estimated=n_est,
            quality=quality,
            method=method,
            reason=reason,
            made_by=made_by,
            note=note,
        )

    hn = [m.serial for m in meters if m.city == "HN"]
    hcm = [m.serial for m in meters if m.city == "HCM"]
    special: dict[tuple[str, int], list[VeeVersion]] = {}
    for s in hcm:  # a concentrator outage in HCMC three days ago: part of every meter's day estimated
        special[(s, 3)] = [est(s, 3, 6.0, 2.0, "V", 17)]
    special[(hn[1], 8)] = [est(hn[1], 8, 0.0, 9.0, "S", 14)]
    special[(hn[1], 7)] = [est(hn[1], 7, 0.0, 9.0, "S", 14)]
    special[(hn[2], 1)] = [est(hn[2], 1, 0.0, 8.0, "E", 25)]
    special[(hn[3], 15)] = [est(hn[3], 15, 0.0, 0.0, "N", None)]
    special[(VEE_SERIAL, 6)] = [
        est(VEE_SERIAL, 6, 5.0, 3.1, "V", 17),
        replace(actual(VEE_SERIAL, 6, 8.2), version=2, reason="late_data"),
    ]
    special[(VEE_SERIAL, 4)] = [
        actual(VEE_SERIAL, 4, 8.0),
        est(
            VEE_SERIAL,
            4,
            0.0,
            7.5,
            "S",
            None,
            version=2,
            reason="manual_edit",
            made_by=VEE_OPERATOR,
            note=VEE_EDIT_NOTE,
        ),
    ]
    special[(VEE_SERIAL, VEE_GAP_DAY)] = [est(VEE_SERIAL, VEE_GAP_DAY, 6.0, 2.0, "V", 17)]
    versions: list[VeeVersion] = []
    for i, m in enumerate(meters):
        for k in range(20, 0, -1):
            versions += special.get((m.serial, k), [actual(m.serial, k, 8.0 + i % 5)])
    # Left out of the page's figures: a rate register (channel 2) and a day before the 30-day window.
    versions.append(est(hn[0], 5, 0.0, 100.0, "S", 14, channel=2))
    versions.append(est(hn[4], 40, 0.0, 1000.0, "S", 14))

    def ep(serial: str, rule: str, first: dt.datetime, last: dt.datetime, n: int, status: str, **kw: Any) -> VeeEpisode:
        severity = "invalid" if rule == "NEGATIVE" else "review"
        return VeeEpisode(
            serial=serial,
            channel_id=kw.pop("channel_id", 1),
            rule=rule,
            severity=severity,
            first_start=first,
            last_end=last,
            occurrences=n,
            status=status,
            **kw,
        )

    episodes = [
        ep(VEE_SERIAL, "GAP", at(6, 6), at(6, 12), 12, "auto_resolved"),
        ep(VEE_SERIAL, "GAP", at(VEE_GAP_DAY, 6), at(VEE_GAP_DAY, 12), 12, "open"),
        ep(VEE_SERIAL, "SPIKE", at(9, 18), at(9, 18.5), 1, "open", value_min=4.2, value_max=4.2),
        ep(VEE_SERIAL, "CLOCK_SUSPECT", at(5, 0), at(3, 0), 3, "open", channel_id=20, value_min=95.0, value_max=140.0),
        ep(
            VEE_SERIAL,
            "NEGATIVE",
            at(4, 10),
            at(4, 10.5),
            1,
            "acknowledged",
            value_min=-0.4,
            value_max=-0.4,
            note="register reset by the technician",
        ),
        ep(VEE_SERIAL, "FLAT_LINE", at(30, 0), at(29, 0), 48, "resolved", note="vacant house"),  # before the drill days
        ep(hn[0], "SPIKE", at(12, 19), at(12, 19.5), 1, "open", value_min=6.5, value_max=6.5),
        ep(hn[0], "HIGH_USE", at(11, 0), at(10, 0), 1, "open", value_min=31.0, value_max=31.0),
        ep(hn[1], "GAP_TOO_LONG", at(8, 0), at(6, 0), 96, "open"),
        ep(hn[2], "GAP", at(1, 0), at(0, 0), 48, "open"),
        ep(hn[3], "FLAT_LINE", at(15, 0), at(14, 0), 48, "resolved"),
    ] + [ep(s, "GAP", at(3, 2), at(3, 4), 4, "open") for s in hcm]
    pending = tuple((s, today) for s in hn[:VEE_PENDING_UNITS])
    return VeePlan(
        today=today,
        versions=tuple(versions),
        episodes=tuple(episodes),
        pending=pending,
        company={m.serial: (m.city, m.power_company) for m in meters},
    )


def drill_reads(plan: VeePlan, first: dt.date, last: dt.date) -> int:
    """How many of VEE_SERIAL's seeded channel-1 reads fall in the local days [first, last]."""
    n = 0
    for k in range(VEE_READ_DAYS, 0, -1):
        if first <= plan.day(k) <= last:
            n += 48 - (12 if k == VEE_GAP_DAY else 0)
    return n


def seed_vee(conninfo_owner: str, plan: VeePlan) -> None:
    """Write `plan` as the continuous VEE service would have (sql/080), plus VEE_SERIAL's register reads."""
    with psycopg.connect(conninfo_owner, autocommit=True) as conn, conn.transaction():
        ids: dict[str, int] = dict(
            conn.execute("SELECT serial, meter_id FROM meters WHERE serial = ANY(%s)", (list(plan.company),)).fetchall()
        )
        current = {(v.serial, v.channel_id, v.day): v.version for v in plan.current()}
        with conn.cursor() as cur:
            rows = []
            for v in plan.versions:
                made_at = local_midnight(v.day + dt.timedelta(days=1)) + dt.timedelta(minutes=10, hours=v.version - 1)
                flags, methods = (1 << 18, 1) if v.estimated_kwh else (0, 0)  # ESTIMATED; linear
                rows.append(
                    (
                        ids[v.serial],
                        v.channel_id,
                        v.day,
                        v.version,
                        v.measured_kwh,
                        v.estimated_kwh,
                        v.n_measured,
                        v.n_estimated,
                        flags,
                        methods,
                        v.quality,
                        v.method,
                        v.reason,
                        v.made_by,
                        made_at,
                        v.note,
                    )
                )
            cur.executemany(
                "INSERT INTO vee_daily_versions (meter_id, channel_id, day, version, measured_kwh, estimated_kwh,"
                " n_measured, n_estimated, flags, methods, quality, method, reason, made_by, made_at, note)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            cur.executemany(
                "INSERT INTO vee_daily (meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured,"
                " n_estimated, flags, methods, quality, method, reason, locked, made_at)"
                " SELECT meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured, n_estimated,"
                " flags, methods, quality, method, reason, reason IN ('manual_edit', 'accept'), made_at"
                " FROM vee_daily_versions WHERE meter_id = %s AND channel_id = %s AND day = %s AND version = %s",
                [(ids[s], ch, d, ver) for (s, ch, d), ver in current.items()],
            )
            cur.executemany(
                "INSERT INTO vee_episodes (meter_id, channel_id, rule, severity, first_start, last_end, occurrences,"
                " value_min, value_max, status, closed_at, closed_by, note) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        ids[e.serial],
                        e.channel_id,
                        e.rule,
                        e.severity,
                        e.first_start,
                        e.last_end,
                        e.occurrences,
                        e.value_min,
                        e.value_max,
                        e.status,
                        e.last_end if e.status in CLOSED else None,
                        VEE_OPERATOR if e.status == "resolved" else None,
                        e.note,
                    )
                    for e in plan.episodes
                ],
            )
            cur.executemany(
                "INSERT INTO vee_pending (meter_id, day) VALUES (%s, %s)", [(ids[s], d) for s, d in plan.pending]
            )
        conn.execute(
            "INSERT INTO vee_state (service, last_pass_at, last_day, passes, units, versions, last_seconds)"
            " VALUES ('vee-service', now() - make_interval(secs => %s), %s, 1234, 5678, %s, 0.42)",
            (VEE_LAG_S, plan.day(1), len(plan.versions)),
        )
        start = local_midnight(plan.day(VEE_READ_DAYS))
        value = 5000.0
        with conn.cursor().copy("COPY readings (ts, meter_id, channel_id, value) FROM STDIN") as copy:
            for step in range(VEE_READ_DAYS * 48):
                ts = start + dt.timedelta(minutes=30 * step)  # 48 reads in each local day
                value += 0.15 + 0.1 * ((step % 48) in range(36, 44))
                k = VEE_READ_DAYS - step // 48
                if k == VEE_GAP_DAY and 12 <= step % 48 < 24:
                    continue
                copy.write_row((ts, ids[VEE_SERIAL], 1, round(value, 3)))
        # The validated days were written with their own (past) made_at: count every day of the window again, as
        # the first refresh after sql/090 does.
        conn.execute("DELETE FROM vee_quality_days")
        conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()


# -- continuous billing ---------------------------------------------------------------------------------------------
# A continuous bill run (billing.run, --source continuous) over 60 HN and 40 HCMC customers: households (a few
# meters shared by two) and businesses (TOU), billed, held with the bill-ready gate's reasons, without data; then two
# released rebill runs correcting it (billing.corrections: a cancel row negating the bill in force and a rebill row,
# one customer corrected twice) and a failed one, which corrects nothing.
BILL_PERIOD = "2024-06"
BILL_CYCLE = (dt.date(2024, 6, 1), dt.date(2024, 7, 1))
BILL_VND_PER_KWH = 2_000  # a flat price: the page sums what billing wrote, it does not price
BILL_VAT_PERCENT = 8
HOLD_REASONS = (
    "3 of 30 days not validated",
    "readings waiting for validation",
    "2 of 30 days not validated; open blocking exception episode",
    "35% of intervals estimated",
)


@dataclass(frozen=True, kw_only=True)
class SeededBill:
    serial: str
    city: str
    power_company: str
    tariff_class: str
    households: int
    status: str  # billed, held, no_data
    energy_kwh: int
    hold_reasons: str | None = None

    @property
    def amount_vnd(self) -> int:
        return self.energy_kwh * BILL_VND_PER_KWH

    @property
    def vat_vnd(self) -> int:
        return self.amount_vnd * BILL_VAT_PERCENT // 100

    @property
    def total_vnd(self) -> int:
        return self.amount_vnd + self.vat_vnd

    def rates_kwh(self) -> tuple[int | None, int | None, int | None]:
        """(normal, peak, off-peak) kWh of a TOU bill; None for a household."""
        if self.tariff_class == "household":
            return None, None, None
        peak, offpeak = self.energy_kwh * 15 // 100, self.energy_kwh * 25 // 100
        return self.energy_kwh - peak - offpeak, peak, offpeak


@dataclass(frozen=True, kw_only=True)
class BillPlan:
    bills: tuple[SeededBill, ...]
    # per released rebill run, in order: (serial, new energy [kWh]) of each bill it corrects
    rebills: tuple[tuple[tuple[str, int], ...], ...]

    def billed(self) -> list[SeededBill]:
        return [b for b in self.bills if b.status == "billed"]

    def corrections(self) -> list[tuple[SeededBill, SeededBill]]:
        """(bill in force before, new bill) of every rebill row, in order."""
        in_force = {b.serial: b for b in self.bills}
        out = []
        for run in self.rebills:
            for serial, kwh in run:
                old = in_force[serial]
                new = replace(old, energy_kwh=kwh)
                out.append((old, new))
                in_force[serial] = new
        return out


def plan_bills() -> BillPlan:
    by_serial = {m.serial: m for m in plan_meters()}
    serials = [f"{SERIAL_PREFIX}-HN-{i:05d}" for i in range(60)] + [f"{SERIAL_PREFIX}-HCM-{i:05d}" for i in range(40)]
    bills = []
    for i, serial in enumerate(serials):
        m = by_serial[serial]
        business = i % 10 == 9
        status = "held" if i % 12 == 4 else ("no_data" if i % 31 == 17 else "billed")
        kwh = (1500 + 97 * i) if business else (i * 53) % 650 + 3
        bills.append(
            SeededBill(
                serial=serial,
                city=m.city,
                power_company=m.power_company,
                tariff_class="business" if business else "household",
                households=2 if not business and i % 7 == 3 else 1,
                status=status,
                energy_kwh=0 if status == "no_data" else kwh,
                hold_reasons=HOLD_REASONS[(i // 12) % len(HOLD_REASONS)] if status == "held" else None,
            )
        )
    household = next(b for b in bills if b.status == "billed" and b.tariff_class == "household" and b.energy_kwh > 100)
    shop = next(b for b in bills if b.status == "billed" and b.tariff_class == "business")
    return BillPlan(
        bills=tuple(bills),
        rebills=(
            ((household.serial, household.energy_kwh + 25), (shop.serial, shop.energy_kwh - 300)),
            ((household.serial, household.energy_kwh + 32),),
        ),
    )


BILL_COLUMNS = (
    "run_id, meter_id, customer_code, city, power_company, tariff_class, cycle_start, cycle_end, days, households,"
    " multiplier, energy_kwh, normal_kwh, peak_kwh, offpeak_kwh, estimated_kwh, amount_vnd, vat_percent, vat_vnd,"
    " total_vnd, tariff_versions, quality_flags, status, bill_kind, hold_reasons, determinant_versions, validated_days"
)


def _bill_row(run_id: int, meter_id: int, b: SeededBill, *, kind: str = "bill", sign: int = 1) -> tuple[Any, ...]:
    normal, peak, offpeak = b.rates_kwh()
    start, end = BILL_CYCLE
    return (
        run_id,
        meter_id,
        None,
        b.city,
        b.power_company,
        b.tariff_class,
        start,
        end,
        (end - start).days,
        b.households,
        1.0,
        sign * b.energy_kwh,
        None if normal is None else sign * normal,
        None if peak is None else sign * peak,
        None if offpeak is None else sign * offpeak,
        0.0,
        sign * b.amount_vnd,
        BILL_VAT_PERCENT,
        sign * b.vat_vnd,
        sign * b.total_vnd,
        f"{b.tariff_class}:2024-06-01:30d",
        "",
        "cancelled" if kind == "cancel" else b.status,
        kind,
        b.hold_reasons,
        30,
        30,
    )


@dataclass(frozen=True, kw_only=True)
class BillRuns:
    bill: int  # the continuous bill run
    rebills: tuple[int, ...]  # the released rebill runs correcting it, in order
    failed: int  # a failed rebill run correcting it (corrects nothing)
    empty: int  # the released 2024-04 HCMC bill run of seed_billing, without bills


def bill_runs(conninfo_owner: str) -> BillRuns:
    with psycopg.connect(conninfo_owner, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT run_id, kind, status, period FROM billing_runs WHERE kind IN ('bill', 'rebill') ORDER BY run_id"
        ).fetchall()
    bill = next(r for r, k, _, p in rows if k == "bill" and p == BILL_PERIOD)
    return BillRuns(
        bill=bill,
        rebills=tuple(r for r, k, s, _ in rows if k == "rebill" and s == "released"),
        failed=next(r for r, k, s, _ in rows if k == "rebill" and s == "failed"),
        empty=next(r for r, k, s, p in rows if k == "bill" and p == "2024-04"),
    )


def seed_continuous_billing(conninfo_owner: str, plan: BillPlan) -> None:
    """Write `plan` as billing.run and billing.corrections would have, then refresh the aggregates."""
    billed = plan.billed()
    with psycopg.connect(conninfo_owner, autocommit=True) as conn, conn.transaction():
        ids: dict[str, int] = dict(
            conn.execute(
                "SELECT serial, meter_id FROM meters WHERE serial = ANY(%s)", ([b.serial for b in plan.bills],)
            ).fetchall()
        )
        row = conn.execute(
            "INSERT INTO billing_runs (kind, period, status, source, data_as_of, finished_at, customers, energy_kwh,"
            " amount_vnd, vat_vnd, total_vnd, estimated_share)"
            " VALUES ('bill', %s, 'released', 'continuous', now() - interval '1 hour', now(), %s, %s, %s, %s, %s, 0.01)"
            " RETURNING run_id",
            (
                BILL_PERIOD,
                len(plan.bills),
                sum(b.energy_kwh for b in billed),
                sum(b.amount_vnd for b in billed),
                sum(b.vat_vnd for b in billed),
                sum(b.total_vnd for b in billed),
            ),
        ).fetchone()
        assert row is not None
        bill_run = int(row[0])
        with conn.cursor().copy(f"COPY bills ({BILL_COLUMNS}) FROM STDIN") as copy:
            for b in plan.bills:
                copy.write_row(_bill_row(bill_run, ids[b.serial], b))
        corrections = iter(plan.corrections())
        rebill_runs: list[int] = []
        for run in plan.rebills:
            pairs = [next(corrections) for _ in run]
            row = conn.execute(
                "INSERT INTO billing_runs (kind, period, status, source, corrects_run_id, data_as_of, finished_at,"
                " customers, energy_kwh, total_vnd) VALUES ('rebill', %s, 'released', 'continuous', %s, now(), now(),"
                " %s, %s, %s) RETURNING run_id",
                (
                    BILL_PERIOD,
                    bill_run,
                    len(pairs),
                    sum(new.energy_kwh - old.energy_kwh for old, new in pairs),
                    sum(new.total_vnd - old.total_vnd for old, new in pairs),
                ),
            ).fetchone()
            assert row is not None
            rebill_runs.append(int(row[0]))
            with conn.cursor().copy(f"COPY bills ({BILL_COLUMNS}) FROM STDIN") as copy:
                for old, new in pairs:
                    copy.write_row(_bill_row(rebill_runs[-1], ids[old.serial], old, kind="cancel", sign=-1))
                    copy.write_row(_bill_row(rebill_runs[-1], ids[new.serial], new, kind="rebill"))
        conn.execute(
            "INSERT INTO billing_runs (kind, period, status, source, corrects_run_id, finished_at)"
            " VALUES ('rebill', %s, 'failed', 'continuous', %s, now())",
            (BILL_PERIOD, bill_run),
        )
        conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
