"""VEE rules and thresholds, read from TOML (``billing/vee_rules.toml`` ships the defaults).

Loaded through amr.tomlfile.load_toml: a wrong file is refused with ConfigError naming file:line and the key.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from amr.obis import STATUS_BITS
from amr.timebase import DAY_S
from amr.tomlfile import load_toml

DEFAULT_RULES_FILE = Path(__file__).with_name("vee_rules.toml")


class _Strict(BaseModel):
    # strict: `factor = "10"` or `max_s = 3600.0` is refused, not coerced; floats are finite (no inf / nan).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class IntervalRules(_Strict):
    default_s: int = Field(gt=0)
    allowed_s: list[int] = Field(min_length=1)
    align_tolerance_s: int = Field(ge=0)

    @field_validator("allowed_s")
    @classmethod
    def _divides_day(cls, v: list[int]) -> list[int]:
        for s in v:
            if s <= 0 or (DAY_S % s != 0 and s % DAY_S != 0):
                raise ValueError(f"{s} s neither divides a day nor is a whole number of days")
        return sorted(v)


class RegisterRules(_Strict):
    max_plausible_kw: float = Field(gt=0)
    replacement_max_kwh: float = Field(ge=0)


class SpikeRules(_Strict):
    enabled: bool
    factor: float = Field(gt=1)
    min_kw: float = Field(ge=0)


class FlatLineRules(_Strict):
    enabled: bool
    max_s: int = Field(gt=0)


class HistoryRules(_Strict):
    days: int = Field(ge=0, le=366)
    active_min_kwh_per_day: float = Field(ge=0)
    high_factor: float = Field(gt=1)
    low_factor: float = Field(gt=1)
    zero_days: int = Field(ge=1)


class EstimationRules(_Strict):
    linear_max_s: int = Field(ge=0)
    max_s: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> EstimationRules:
        if self.max_s < self.linear_max_s:
            raise ValueError("max_s must be at least linear_max_s")
        return self


class TouSumRules(_Strict):
    enabled: bool
    tolerance_kwh: float = Field(ge=0)
    tolerance_ratio: float = Field(ge=0)


class ClockRules(_Strict):
    suspect_s: float = Field(gt=0)
    invalid_s: float = Field(gt=0)


class StatusRules(_Strict):
    invalid_bits: list[str]
    review_bits: list[str]

    @field_validator("invalid_bits", "review_bits")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in STATUS_BITS:
                raise ValueError(f"unknown status bit {name!r}; known: {', '.join(STATUS_BITS)}")
        return v


class HoldRules(_Strict):
    max_estimated_share: float = Field(ge=0, le=1)
    max_no_data_share: float = Field(ge=0, le=1)


Severity = Literal["info", "review", "invalid"]


class BillReadyRules(_Strict):
    """Per customer: a cycle is bill-ready when every day is validated, no episode of a blocking severity is open
    over it, and at most max_estimated_share of its intervals are estimated; otherwise the customer is held."""

    max_estimated_share: float = Field(default=0.25, ge=0, le=1)
    blocking_severities: list[Severity] = Field(default_factory=lambda: list[Severity](["invalid"]))


class VeeRules(_Strict):
    interval: IntervalRules
    register_rules: RegisterRules = Field(alias="register")
    spike: SpikeRules
    flat_line: FlatLineRules
    history: HistoryRules
    estimation: EstimationRules
    tou_sum: TouSumRules
    clock: ClockRules
    status: StatusRules
    hold: HoldRules
    bill_ready: BillReadyRules = BillReadyRules()

    @property
    def status_invalid_mask(self) -> int:
        return sum(STATUS_BITS[n] for n in set(self.status.invalid_bits))

    @property
    def status_review_mask(self) -> int:
        return sum(STATUS_BITS[n] for n in set(self.status.review_bits))


class VeeThresholds(NamedTuple):
    """The rules the VEE kernels read, as one typed record (numba takes a NamedTuple of scalars as a struct).
    A disabled rule gets an unreachable threshold (inf)."""

    default_interval_s: int  # a series' interval when none of the allowed ones shows between its reads
    align_tolerance_s: int
    max_plausible_kw: float
    replacement_max_kwh: float
    spike_factor: float  # inf: spike check disabled
    spike_min_kw: float
    flat_line_s: float  # inf: flat-line check disabled
    linear_max_s: int
    estimate_max_s: int
    status_invalid_mask: int  # amr.obis.STATUS_BITS: value not used
    status_review_mask: int  # value used, flagged STATUS_WARN
    history_s: int  # the horizon of a series' smoothed average day (history.days) [s]


def kernel_thresholds(rules: VeeRules) -> VeeThresholds:
    """The kernels' record of `rules`; every field converted to its one type, so numba compiles one
    specialisation (a float rule written as an integer in TOML is still a float)."""
    return VeeThresholds(
        default_interval_s=int(rules.interval.default_s),
        align_tolerance_s=int(rules.interval.align_tolerance_s),
        max_plausible_kw=float(rules.register_rules.max_plausible_kw),
        replacement_max_kwh=float(rules.register_rules.replacement_max_kwh),
        spike_factor=float(rules.spike.factor) if rules.spike.enabled else math.inf,
        spike_min_kw=float(rules.spike.min_kw),
        flat_line_s=float(rules.flat_line.max_s) if rules.flat_line.enabled else math.inf,
        linear_max_s=int(rules.estimation.linear_max_s),
        estimate_max_s=int(rules.estimation.max_s),
        status_invalid_mask=rules.status_invalid_mask,
        status_review_mask=rules.status_review_mask,
        history_s=int(rules.history.days) * DAY_S,
    )


def read_vee_rules(path: Path | None = None) -> VeeRules:
    """The VEE rules in `path` (default: the shipped billing/vee_rules.toml); ConfigError naming file:line and
    key when the file is wrong."""
    return load_toml(path or DEFAULT_RULES_FILE, VeeRules)


def rules_sha256(path: Path | None = None) -> str:
    return hashlib.sha256((path or DEFAULT_RULES_FILE).read_bytes()).hexdigest()
