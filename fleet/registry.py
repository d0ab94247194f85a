"""The meter registry of both cities as numpy columns (one row per customer meter, in `meters` column order).

Pure computation, deterministic from (scale, seed), vectorised (no loop over meters). Built on the rollout
dates of fleet.rollout; this module adds what a registry holds besides dates:

- tariff class per company area (about 90 % households; more shops in the business districts), households
  sharing one meter (5 %), CT-connected meters (multiplier = CT ratio 20..200) for large business/production;
- meter kind: mechanical until replaced (installed_on NULL), electronic, smart (installed from `smart_from`);
- protocol of each remote meter (most through DCUs pushing over MQTT; RS-485 lines behind Modbus gateways;
  DLMS for large customers), 'manual' for hand-read meters;
- gateways of 8-64 meters, each in one power company and speaking one protocol, unit ids 1..n on it;
  ids 'GW-<city>-<company>-<nnnn>';
- read day: Hanoi reads everyone on the last day of the month (31 = month end), HCMC by reading route
  (one day 1..28 per gateway);
- coordinates: gateways scattered around their company's centroid (spread by area), meters within ~150 m of
  their gateway;
- serial 'VN<yy><city><nnnnnnn>' (yy = year the meter was installed, or connected if mechanical; unique number
  per city), customer code '<company code><nnnnnnn>' (EVN style: PE0100... in HCMC, PD0100... in Hanoi).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from amr.pgcopy import Column
from fleet.calibration import (
    AREA_SPREAD_KM,
    AREA_TARIFF_MIX,
    CBD_TARIFF_MIX,
    CITIES,
    CITY_CALIBRATION,
    COMPANIES,
    DEFAULT_SEED,
    MAX_SCALE,
    METER_KINDS,
    PROTOCOLS,
    TARIFF_CLASSES,
)
from fleet.rollout import NEVER, CityRollout, day_number, fleet_rollout

HOUSEHOLD, BUSINESS, PRODUCTION, ADMINISTRATIVE = range(4)
MECHANICAL, ELECTRONIC, SMART = range(3)
MANUAL = PROTOCOLS.index("manual")

# Households per meter for household customers (a shared meter multiplies the tier limits).
HOUSEHOLDS_PER_METER = (np.array([1, 2, 3, 4, 5]), np.array([0.95, 0.03, 0.01, 0.006, 0.004]))
# Share of CT-connected meters per tariff class, and the CT ratios (100/5 .. 1000/5 A).
CT_SHARE = np.array([0.0, 0.05, 0.40, 0.10])
CT_RATIOS = (np.array([20.0, 40.0, 60.0, 100.0, 200.0]), np.array([0.3, 0.3, 0.15, 0.15, 0.1]))
# Protocol mix of remote meters (PROTOCOLS order without 'manual'): households mostly behind DCUs (RF mesh/PLC),
# other direct meters more often on RS-485 lines or DLMS modems, CT meters DLMS or Modbus over 3G/4G.
PROTOCOL_MIX = {
    "household": np.array([0.02, 0.05, 0.10, 0.03, 0.80]),
    "direct": np.array([0.05, 0.05, 0.15, 0.20, 0.55]),
    "ct": np.array([0.15, 0.0, 0.25, 0.60, 0.0]),
}
# Meters per gateway (min, max) by protocol: an RS-485 line carries fewer meters than a DCU.
GATEWAY_SIZE = {
    "modbus-tcp": (16, 64),
    "modbus-rtu": (8, 32),
    "modbus-rtu-tcp": (16, 32),
    "dlms": (16, 64),
    "dcu-mqtt": (16, 64),
}
METER_SCATTER_KM = 0.15  # meters around their gateway
KM_PER_DEG_LAT = 111.32
SERIAL_DIGITS = 7
CUSTOMER_DIGITS = 7


@dataclass(frozen=True, kw_only=True)
class Fleet:
    """The registry, one entry per meter in row order (city, company, gateway, unit id). Codes index
    calibration.CITIES / COMPANIES / TARIFF_CLASSES / METER_KINDS / PROTOCOLS; day numbers count from
    1970-01-01, NEVER = no date; gateway_no/unit_id 0 = none."""

    scale: float
    seed: int
    rollout: dict[str, CityRollout]
    city: npt.NDArray[np.int8]
    company: npt.NDArray[np.int16]
    customer_no: npt.NDArray[np.int32]  # within the company, in connection order
    serial_no: npt.NDArray[np.int32]  # within the city
    tariff: npt.NDArray[np.int8]
    kind: npt.NDArray[np.int8]
    protocol: npt.NDArray[np.int8]
    gateway_no: npt.NDArray[np.int32]  # within the company
    unit_id: npt.NDArray[np.int32]
    multiplier: npt.NDArray[np.float64]
    register_digits: npt.NDArray[np.int16]
    households: npt.NDArray[np.int16]
    read_day: npt.NDArray[np.int16]
    connected_day: npt.NDArray[np.int32]
    installed_day: npt.NDArray[np.int32]
    remote_day: npt.NDArray[np.int32]
    latitude_deg: npt.NDArray[np.float64]
    longitude_deg: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.city)

    def serials(self) -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.int64]]:
        """Serial numbers ('VN17HN0000123') as bytes and their lengths."""
        day = np.where(self.installed_day != NEVER, self.installed_day, self.connected_day)
        yy = (day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970) % 100
        out = np.zeros(len(self), dtype="S16")
        lengths = np.zeros(len(self), dtype=np.int64)
        for i, city in enumerate(CITIES):
            rows = np.flatnonzero(self.city == i)
            parts = [
                _const(b"VN", len(rows)),
                _digits(yy[rows], 2),
                _const(city.encode(), len(rows)),
                _digits(self.serial_no[rows], SERIAL_DIGITS),
            ]
            out[rows] = _join(parts)
            lengths[rows] = 4 + len(city) + SERIAL_DIGITS
        return out, lengths

    def customer_codes(self) -> npt.NDArray[np.bytes_]:
        return _join([_company_codes()[self.company], _digits(self.customer_no, CUSTOMER_DIGITS)])

    def gateways(self) -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Gateway ids ('GW-HCM-PE0100-0042'), their lengths, and the rows without a gateway."""
        width = max(4, len(str(int(self.gateway_no.max(initial=0)))))
        out = np.zeros(len(self), dtype="S32")
        lengths = np.zeros(len(self), dtype=np.int64)
        for i, city in enumerate(CITIES):
            rows = np.flatnonzero((self.city == i) & (self.gateway_no > 0))
            parts = [
                _const(f"GW-{city}-".encode(), len(rows)),
                _company_codes()[self.company[rows]],
                _const(b"-", len(rows)),
                _digits(self.gateway_no[rows], width),
            ]
            out[rows] = _join(parts)
            lengths[rows] = 3 + len(city) + 1 + 6 + 1 + width
        return out, lengths, self.gateway_no == 0

    def copy_columns(self, first_meter_id: int) -> list[Column]:
        """The `meters` columns for a binary COPY, meter ids first_meter_id.. in row order."""
        n = len(self)
        serial, serial_len = self.serials()
        gateway, gateway_len, no_gateway = self.gateways()
        cities = np.array([c.encode() for c in CITIES], dtype="S3")
        codes = np.array([c.code.encode() for c in COMPANIES], dtype="S6")
        tariffs = np.array([t.encode() for t in TARIFF_CLASSES], dtype="S16")
        kinds = np.array([k.encode() for k in METER_KINDS], dtype="S16")
        protocols = np.array([p.encode() for p in PROTOCOLS], dtype="S16")
        city_len = np.array([len(c) for c in CITIES])[self.city]

        def lengths_of(table: npt.NDArray[np.bytes_], codes_: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
            return np.char.str_len(table).astype(np.int64)[codes_]

        return [
            Column(name="meter_id", pg_type="int4", values=np.arange(first_meter_id, first_meter_id + n)),
            Column(name="serial", pg_type="text", values=serial, lengths=serial_len),
            Column(name="city", pg_type="text", values=cities[self.city], lengths=city_len),
            Column(name="power_company", pg_type="text", values=codes[self.company]),
            Column(name="customer_code", pg_type="text", values=self.customer_codes()),
            Column(
                name="tariff_class",
                pg_type="text",
                values=tariffs[self.tariff],
                lengths=lengths_of(tariffs, self.tariff),
            ),
            Column(name="meter_kind", pg_type="text", values=kinds[self.kind], lengths=lengths_of(kinds, self.kind)),
            Column(name="remote_read", pg_type="bool", values=self.remote_day != NEVER),
            Column(
                name="protocol",
                pg_type="text",
                values=protocols[self.protocol],
                lengths=lengths_of(protocols, self.protocol),
            ),
            Column(name="gateway", pg_type="text", values=gateway, lengths=gateway_len, null=no_gateway),
            Column(name="unit_id", pg_type="int4", values=self.unit_id, null=self.unit_id == 0),
            Column(name="multiplier", pg_type="float8", values=self.multiplier),
            Column(name="register_digits", pg_type="int2", values=self.register_digits),
            Column(name="households", pg_type="int2", values=self.households),
            Column(name="read_day", pg_type="int2", values=self.read_day),
            Column(name="connected_on", pg_type="date", values=self.connected_day),
            Column(name="installed_on", pg_type="date", values=self.installed_day, null=self.installed_day == NEVER),
            Column(name="remote_since", pg_type="date", values=self.remote_day, null=self.remote_day == NEVER),
            Column(name="latitude_deg", pg_type="float8", values=self.latitude_deg),
            Column(name="longitude_deg", pg_type="float8", values=self.longitude_deg),
        ]


# -- text helpers: fixed-width ASCII matrices joined into a bytes array -------------------------------------
def _company_codes() -> npt.NDArray[np.uint8]:
    return np.frombuffer(b"".join(c.code.encode() for c in COMPANIES), dtype=np.uint8).reshape(len(COMPANIES), 6)


def _digits(values: npt.NDArray[np.integer], width: int) -> npt.NDArray[np.uint8]:
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < 0 or v.max() >= 10**width):
        raise ValueError(f"numbers do not fit in {width} digits")
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((v[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _const(text: bytes, n: int) -> npt.NDArray[np.uint8]:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def _join(parts: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.bytes_]:
    matrix = np.ascontiguousarray(np.concatenate(parts, axis=1))
    return matrix.view(f"S{matrix.shape[1]}").ravel()


# -- generation ---------------------------------------------------------------------------------------------
def _draw(
    rng: np.random.Generator, table: npt.NDArray[np.float64], group: npt.NDArray[np.integer]
) -> npt.NDArray[np.int8]:
    """One category per row: row i draws from the probabilities table[group[i]] (groups x categories)."""
    cum = np.cumsum(table, axis=1)
    u = rng.random(len(group))
    out = np.zeros(len(group), dtype=np.int8)
    for k in range(table.shape[1] - 1):  # a few categories: one vector pass each
        out += u >= cum[:, k][group]
    return out


def _offsets_deg(
    rng: np.random.Generator, lat_deg: npt.NDArray[np.float64], sigma_km: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    d = rng.standard_normal((2, len(lat_deg))) * sigma_km
    return d[0] / KM_PER_DEG_LAT, d[1] / (KM_PER_DEG_LAT * np.cos(np.radians(lat_deg)))


def _city_registry(r: CityRollout, seed: int) -> dict[str, npt.NDArray[np.generic]]:
    """Registry columns of one city, sorted into row order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, CITIES.index(r.city), 2]))
    cal = CITY_CALIBRATION[r.city]
    n = len(r)
    company = r.company
    lat0 = np.array([c.latitude_deg for c in COMPANIES])
    lon0 = np.array([c.longitude_deg for c in COMPANIES])
    spread = np.array([AREA_SPREAD_KM[c.area] for c in COMPANIES])
    mix = np.array([CBD_TARIFF_MIX.get(c.code, AREA_TARIFF_MIX[c.area]) for c in COMPANIES])

    tariff = _draw(rng, mix, company)
    household = tariff == HOUSEHOLD
    households = np.ones(n, dtype=np.int16)
    households[household] = rng.choice(HOUSEHOLDS_PER_METER[0], size=int(household.sum()), p=HOUSEHOLDS_PER_METER[1])
    ct = rng.random(n) < CT_SHARE[tariff]
    multiplier = np.ones(n)
    multiplier[ct] = rng.choice(CT_RATIOS[0], size=int(ct.sum()), p=CT_RATIOS[1])

    mechanical = r.installed_day == NEVER
    kind = np.where(
        mechanical, MECHANICAL, np.where(r.installed_day >= day_number(cal.smart_from), SMART, ELECTRONIC)
    ).astype(np.int8)
    register_digits = np.where(mechanical, 5, np.where(ct, 7, 6)).astype(np.int16)

    remote = r.remote_day != NEVER
    mixes = np.stack([PROTOCOL_MIX["household"], PROTOCOL_MIX["direct"], PROTOCOL_MIX["ct"]])
    which = np.where(ct, 2, np.where(household, 0, 1))
    protocol = np.full(n, MANUAL, dtype=np.int8)
    protocol[remote] = _draw(rng, mixes, which[remote])

    # Gateways per (company, protocol): consecutive runs of random size, cut again where the company changes.
    gateway_uid = np.full(n, -1, dtype=np.int64)
    unit_id = np.zeros(n, dtype=np.int32)
    gateway_company: list[npt.NDArray[np.int16]] = []
    uid_offset = 0
    for p, name in enumerate(PROTOCOLS[:MANUAL]):
        members = np.flatnonzero(protocol == p)
        if len(members) == 0:
            continue
        members = members[np.argsort(company[members] + rng.random(len(members)))]
        lo, hi = GATEWAY_SIZE[name]
        cuts = np.cumsum(rng.integers(lo, hi + 1, size=len(members) // lo + 1))
        company_starts = np.flatnonzero(np.diff(company[members])) + 1
        starts = np.union1d(np.concatenate(([0], cuts[cuts < len(members)])), company_starts)
        local = np.searchsorted(starts, np.arange(len(members)), side="right") - 1
        gateway_uid[members] = local + uid_offset
        unit_id[members] = np.arange(len(members)) - starts[local] + 1
        gateway_company.append(company[members[starts]])
        uid_offset += len(starts)
    gw_company = np.concatenate(gateway_company) if gateway_company else np.zeros(0, dtype=np.int16)
    by_company = np.lexsort((np.arange(len(gw_company)), gw_company))
    sorted_company = gw_company[by_company]
    gw_number = np.empty(len(gw_company), dtype=np.int32)
    gw_number[by_company] = np.arange(len(gw_company)) - np.searchsorted(sorted_company, sorted_company) + 1
    gateway_no = np.where(gateway_uid >= 0, gw_number[np.maximum(gateway_uid, 0)], 0).astype(np.int32)

    if cal.read_day is not None:
        read_day = np.full(n, cal.read_day, dtype=np.int16)
    else:  # one reading route (day 1..28) per gateway; hand-read meters on routes of their own
        route_day = rng.integers(1, 29, size=len(gw_company))
        read_day = np.where(
            gateway_uid >= 0, route_day[np.maximum(gateway_uid, 0)], rng.integers(1, 29, size=n)
        ).astype(np.int16)

    # Coordinates: gateways around the company centroid, meters around their gateway.
    dlat, dlon = _offsets_deg(rng, lat0[gw_company], spread[gw_company])
    gw_lat, gw_lon = lat0[gw_company] + dlat, lon0[gw_company] + dlon
    has_gw = gateway_uid >= 0
    uid = np.maximum(gateway_uid, 0)
    centre_lat = np.where(has_gw, gw_lat[uid] if len(gw_lat) else 0.0, lat0[company])
    centre_lon = np.where(has_gw, gw_lon[uid] if len(gw_lon) else 0.0, lon0[company])
    sigma = np.where(has_gw, METER_SCATTER_KM, spread[company])
    dlat, dlon = _offsets_deg(rng, centre_lat, sigma)

    # Customer numbers within the company in connection order (rollout arrays are in connection order).
    by_conn = np.argsort(company, kind="stable")
    customer_no = np.empty(n, dtype=np.int32)
    sorted_conn = company[by_conn]
    customer_no[by_conn] = np.arange(n) - np.searchsorted(sorted_conn, sorted_conn) + 1

    # Row order: company, meters on gateways first (by gateway, unit id), then hand-read meters.
    # One int64 key: company 7 bits | hand-read 1 | gateway number 17 | unit id 8 | customer number 24 bits.
    key = (company.astype(np.int64) << 50) | ((~has_gw).astype(np.int64) << 49) | (gateway_no.astype(np.int64) << 32)
    order = np.argsort(key | (unit_id.astype(np.int64) << 24) | customer_no)
    cols: dict[str, npt.NDArray[np.generic]] = {
        "company": company,
        "customer_no": customer_no,
        "tariff": tariff,
        "kind": kind,
        "protocol": protocol,
        "gateway_no": gateway_no,
        "unit_id": unit_id,
        "multiplier": multiplier,
        "register_digits": register_digits,
        "households": households,
        "read_day": read_day,
        "connected_day": r.connected_day,
        "installed_day": r.installed_day,
        "remote_day": r.remote_day,
        "latitude_deg": centre_lat + dlat,
        "longitude_deg": centre_lon + dlon,
    }
    out = {k: v[order] for k, v in cols.items()}
    out["city"] = np.full(n, CITIES.index(r.city), dtype=np.int8)
    out["serial_no"] = np.arange(1, n + 1, dtype=np.int32)
    return out


def build_fleet(*, scale: float, seed: int = DEFAULT_SEED) -> Fleet:
    """The registry of both cities at `scale` (1.0 = real size, about 5.5 M meters on the horizon date;
    at most MAX_SCALE, where serial numbers and the row-order key still fit)."""
    if not 0 < scale <= MAX_SCALE:
        raise ValueError(f"scale must be in (0, {MAX_SCALE}], got {scale}")
    rollout = fleet_rollout(scale=scale, seed=seed)
    # Cities in text order (HCM before HN), like companies and gateways within them: the rows then arrive in
    # the order of the meters table's indexes, whose builds are much faster on presorted rows.
    parts = [_city_registry(rollout[city], seed) for city in sorted(CITIES)]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Fleet(scale=scale, seed=seed, rollout=rollout, **merged)
