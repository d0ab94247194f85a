"""Tariffs as data: every ``billing/tariffs/*.toml`` file, checked and ordered by effective date.

File kinds: ``tiered`` (household tiers, any number), ``tou`` (normal / peak / off-peak price groups and TOU
windows), ``vat`` (dated VAT rates). Files load through amr.tomlfile.load_toml: a wrong file is refused with
ConfigError naming file:line and the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from amr.errors import ConfigError
from amr.tomlfile import load_toml

TARIFF_DIR = Path(__file__).with_name("tariffs")


class _Strict(BaseModel):
    # strict: `factor = "10"` or `max_s = 3600.0` is refused, not coerced; floats are finite (no inf / nan).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TieredVersion(_Strict):
    effective_from: date
    tier_kwh: list[int] = Field(description="size of each tier but the last [kWh per household and month]")
    price_vnd_per_kwh: list[int]
    provisional: bool = False
    source: str = ""

    @model_validator(mode="after")
    def _shape(self) -> TieredVersion:
        if any(t <= 0 for t in self.tier_kwh):
            raise ValueError("tier sizes must be positive")
        if any(p <= 0 for p in self.price_vnd_per_kwh):
            raise ValueError("prices must be positive")
        if len(self.price_vnd_per_kwh) != len(self.tier_kwh) + 1:
            raise ValueError(
                f"{len(self.tier_kwh)} tier sizes need {len(self.tier_kwh) + 1} prices "
                f"(the last tier is open), found {len(self.price_vnd_per_kwh)}"
            )
        return self


def _dated(versions: list[Any]) -> list[Any]:
    dates = [v.effective_from for v in versions]
    if not dates:
        raise ValueError("at least one version is required")
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise ValueError("versions must be in increasing effective_from order, one per date")
    return versions


class TieredFile(_Strict):
    kind: Literal["tiered"]
    name: str
    tariff_classes: list[str] = Field(min_length=1)
    standard_month_days: int = Field(gt=0, le=31)
    versions: list[TieredVersion]

    _v = field_validator("versions")(_dated)


class TouPrice(_Strict):
    effective_from: date
    normal: int = Field(gt=0)
    peak: int = Field(gt=0)
    offpeak: int = Field(gt=0)
    provisional: bool = False  # not read in a source (derived): bills priced on it say PROVISIONAL_PRICE
    source: str = ""


class PriceRound(_Strict):
    """A round of EVN's average retail price: price versions older than the latest round in force are outdated."""

    effective_from: date
    average_vnd_per_kwh: float = Field(gt=0)
    source: str = ""


class TouWindows(_Strict):
    effective_from: date
    peak_mon_sat: list[str]
    peak_sunday: list[str]
    offpeak: list[str]

    @field_validator("peak_mon_sat", "peak_sunday", "offpeak")
    @classmethod
    def _spans(cls, v: list[str]) -> list[str]:
        for span in v:
            parse_span(span)
        return v


class TouFile(_Strict):
    kind: Literal["tou"]
    name: str
    class_groups: dict[str, str]
    groups: dict[str, list[TouPrice]]
    windows: list[TouWindows]
    price_rounds: list[PriceRound] = Field(default_factory=list)

    _g = field_validator("windows")(_dated)

    @field_validator("price_rounds")
    @classmethod
    def _rounds_dated(cls, v: list[PriceRound]) -> list[PriceRound]:
        return _dated(v) if v else v

    @field_validator("groups")
    @classmethod
    def _groups_dated(cls, v: dict[str, list[TouPrice]]) -> dict[str, list[TouPrice]]:
        for versions in v.values():
            _dated(versions)
        return v

    @model_validator(mode="after")
    def _known_groups(self) -> TouFile:
        for cls_name, group in self.class_groups.items():
            if group not in self.groups:
                raise ValueError(f"class {cls_name!r} names unknown price group {group!r}")
        return self


class VatRate(_Strict):
    effective_from: date
    percent: float = Field(ge=0, le=100)

    @property
    def basis_points(self) -> int:
        return round(self.percent * 100)


class VatFile(_Strict):
    kind: Literal["vat"]
    name: str
    rates: list[VatRate]

    _r = field_validator("rates")(_dated)


def parse_span(span: str) -> tuple[time, time]:
    """'HH:MM-HH:MM' (local) -> (start, end); an end at or before the start wraps past midnight."""
    try:
        a, b = span.split("-")
        return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError as exc:
        raise ValueError(f"{span!r} is not HH:MM-HH:MM") from exc


def version_at(versions: list[Any], day: date) -> Any:
    """The version in force on a day (the latest effective_from on or before it)."""
    current = None
    for v in versions:
        if v.effective_from <= day:
            current = v
    if current is None:
        raise ConfigError(f"no tariff version in force on {day.isoformat()}", key="effective_from")
    return current


@dataclass(frozen=True, kw_only=True)
class TariffBook:
    tiered: dict[str, TieredFile]  # by tariff class
    tou: TouFile | None
    vat: VatFile
    sha256: str

    def vat_on(self, day: date) -> VatRate:
        rate: VatRate = version_at(self.vat.rates, day)
        return rate

    @property
    def price_rounds(self) -> list[PriceRound]:
        """EVN's average-price rounds (from the TOU file), oldest first; empty without a TOU file."""
        return list(self.tou.price_rounds) if self.tou is not None else []

    def tou_prices(self, tariff_class: str) -> list[TouPrice] | None:
        if self.tou is None or tariff_class not in self.tou.class_groups:
            return None
        return self.tou.groups[self.tou.class_groups[tariff_class]]

    def tou_period(self, local_day: date, local_time: time) -> str:
        """'peak', 'normal' or 'offpeak' for a local instant, from the windows in force that day."""
        if self.tou is None:
            raise ConfigError("no TOU tariff file loaded", source=str(TARIFF_DIR))
        w: TouWindows = version_at(self.tou.windows, local_day)
        peak = w.peak_sunday if local_day.weekday() == 6 else w.peak_mon_sat
        for spans, label in ((peak, "peak"), (w.offpeak, "offpeak")):
            for span in spans:
                start, end = parse_span(span)
                inside = start <= local_time < end if start < end else (local_time >= start or local_time < end)
                if inside:
                    return label
        return "normal"


TariffFile = TieredFile | TouFile | VatFile
_KINDS: dict[str, type[TieredFile] | type[TouFile] | type[VatFile]] = {
    "tiered": TieredFile,
    "tou": TouFile,
    "vat": VatFile,
}


class _Kind(BaseModel):
    """A tariff file's kind alone: it picks the model that reads the file (the other keys are that model's)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    kind: Literal["tiered", "tou", "vat"]


def read_tariff_file(path: Path) -> TariffFile:
    """One tariff file: its kind, then the kind's model, both through load_toml (a file of a few kB is read
    twice; every error names file:line and the key)."""
    return load_toml(path, _KINDS[load_toml(path, _Kind).kind])


def read_tariff_book(directory: Path | None = None) -> TariffBook:
    directory = directory or TARIFF_DIR
    files = sorted(directory.glob("*.toml"))
    digest = hashlib.sha256()
    tiered: dict[str, TieredFile] = {}
    tou: TouFile | None = None
    vat: VatFile | None = None
    for path in files:
        # the book's digest covers the files' names and bytes as stored (billing_runs.tariffs_sha256)
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        parsed = read_tariff_file(path)
        if isinstance(parsed, TieredFile):
            for cls_name in parsed.tariff_classes:
                if cls_name in tiered:
                    raise ConfigError(
                        f"tariff class {cls_name!r} already billed by {tiered[cls_name].name!r}",
                        source=str(path),
                        key="tariff_classes",
                    )
                tiered[cls_name] = parsed
        elif isinstance(parsed, TouFile):
            if tou is not None:
                raise ConfigError("a second TOU file", source=str(path), key="kind")
            tou = parsed
        elif isinstance(parsed, VatFile):
            if vat is not None:
                raise ConfigError("a second VAT file", source=str(path), key="kind")
            vat = parsed
    if vat is None:
        raise ConfigError('no VAT file (kind = "vat") found', source=str(directory))
    return TariffBook(tiered=tiered, tou=tou, vat=vat, sha256=digest.hexdigest())
