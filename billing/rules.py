"""VEE rules and thresholds, read from TOML (``billing/vee_rules.toml`` ships the defaults).

A wrong file is refused with ConfigError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amr.errors import ConfigError
from amr.obis import STATUS_BITS
from amr.tomlfile import config_error

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
            if s <= 0 or (86400 % s != 0 and s % 86400 != 0):
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

    @property
    def status_invalid_mask(self) -> int:
        return sum(STATUS_BITS[n] for n in set(self.status.invalid_bits))

    @property
    def status_review_mask(self) -> int:
        return sum(STATUS_BITS[n] for n in set(self.status.review_bits))


# Kernel parameter vector: index constants shared with billing.kernels (numba takes arrays, not models).
P_DEFAULT_INTERVAL_S = 0
P_ALIGN_TOL_S = 1
P_MAX_PLAUSIBLE_KW = 2
P_REPLACEMENT_MAX_KWH = 3
P_SPIKE_FACTOR = 4
P_SPIKE_MIN_KW = 5
P_FLAT_LINE_S = 6
P_LINEAR_MAX_S = 7
P_ESTIMATE_MAX_S = 8
P_STATUS_INVALID_MASK = 9
P_STATUS_REVIEW_MASK = 10
N_PARAMS = 11


def kernel_params(rules: VeeRules) -> np.ndarray:
    """The float64 parameter vector the VEE kernel reads (disabled rules get an unreachable threshold)."""
    p = np.zeros(N_PARAMS, dtype=np.float64)
    p[P_DEFAULT_INTERVAL_S] = rules.interval.default_s
    p[P_ALIGN_TOL_S] = rules.interval.align_tolerance_s
    p[P_MAX_PLAUSIBLE_KW] = rules.register_rules.max_plausible_kw
    p[P_REPLACEMENT_MAX_KWH] = rules.register_rules.replacement_max_kwh
    p[P_SPIKE_FACTOR] = rules.spike.factor if rules.spike.enabled else np.inf
    p[P_SPIKE_MIN_KW] = rules.spike.min_kw
    p[P_FLAT_LINE_S] = rules.flat_line.max_s if rules.flat_line.enabled else np.inf
    p[P_LINEAR_MAX_S] = rules.estimation.linear_max_s
    p[P_ESTIMATE_MAX_S] = rules.estimation.max_s
    p[P_STATUS_INVALID_MASK] = rules.status_invalid_mask
    p[P_STATUS_REVIEW_MASK] = rules.status_review_mask
    return p


def parse_vee_rules(text: str, *, source: str = "<string>") -> VeeRules:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from exc
    try:
        return VeeRules.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source=source, text=text) from exc


def read_vee_rules(path: Path | None = None) -> VeeRules:
    path = path or DEFAULT_RULES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read VEE rules: {exc}", source=str(path)) from exc
    return parse_vee_rules(text, source=str(path))


def rules_sha256(path: Path | None = None) -> str:
    return hashlib.sha256((path or DEFAULT_RULES_FILE).read_bytes()).hexdigest()
