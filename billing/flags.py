"""VEE rule codes as bits: per reading, per daily row (``daily_consumption.flags``) and per exception.

A reading or day can fail several rules at once, so flags are a bit mask (uint32). ``RULES`` maps each bit to
its code (the ``vee_exceptions.rule`` text) and severity: ``invalid`` (value not used, estimated instead),
``review`` (value used, a person should look), ``info`` (recorded, nothing wrong, e.g. a register rollover).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "review", "invalid"]

DUPLICATE = 1 << 0  # same (meter, channel, ts) seen twice; the later one is ignored
STATUS_INVALID = 1 << 1  # the meter's status bits say the value is not valid
STATUS_WARN = 1 << 2  # status bits worth a look (power down, clock adjusted)
INTERVAL_SIZE = 1 << 3  # read off the expected interval grid
GAP = 1 << 4  # reads missing before this one
NEGATIVE = 1 << 5  # register went backwards: not rollover, not replacement
ROLLOVER = 1 << 6  # register wrapped at 10**register_digits
REPLACEMENT = 1 << 7  # register restarted near zero: meter replaced
SPIKE = 1 << 8  # interval far above the last valid one
FLAT_LINE = 1 << 9  # register unchanged for too long
GAP_TOO_LONG = 1 << 10  # gap beyond the estimation maximum: not estimated, for review
LEADING_GAP = 1 << 11  # no valid read at or before the period start
HIGH_USE = 1 << 12  # day above the customer's own history by a factor
LOW_USE = 1 << 13  # day below the customer's own history by a factor
ZERO_USE = 1 << 14  # active customer with zero use for days
TOU_SUM = 1 << 15  # rate registers (T1+T2+T3) disagree with the total register
CLOCK_SUSPECT = 1 << 16  # meter clock offset above the suspect threshold
CLOCK_INVALID = 1 << 17  # meter clock offset above the invalid threshold
ESTIMATED = 1 << 18  # (daily rows) part of the day is estimated

# Bill-level price flags: text codes in bills.quality_flags beside the rule codes. No bits: they describe the
# prices a bill was priced on, not its readings. Each is counted in the run summary.
PROVISIONAL_PRICE = "PROVISIONAL_PRICE"  # a price version marked provisional (derived, not read in a source)
OUTDATED_PRICE = "OUTDATED_PRICE"  # a price version older than EVN's latest average-price round then in force
PRICE_FLAG_LABELS: dict[str, str] = {
    PROVISIONAL_PRICE: "bills on provisional prices",
    OUTDATED_PRICE: "bills on outdated prices",
}

# Estimation methods (daily_consumption.methods)
METHOD_LINEAR = 1
METHOD_HISTORICAL = 2
METHOD_FLAT = 4
METHOD_SCALED = 8  # scaled so the estimates sum to the register delta between two valid reads

METHOD_NAMES: dict[int, str] = {
    METHOD_LINEAR: "linear",
    METHOD_HISTORICAL: "historical",
    METHOD_FLAT: "flat",
    METHOD_SCALED: "scaled",
}


@dataclass(frozen=True, kw_only=True)
class Rule:
    bit: int
    code: str
    severity: Severity


RULES: tuple[Rule, ...] = (
    Rule(bit=DUPLICATE, code="DUPLICATE", severity="invalid"),
    Rule(bit=STATUS_INVALID, code="STATUS_INVALID", severity="invalid"),
    Rule(bit=STATUS_WARN, code="STATUS_WARN", severity="review"),
    Rule(bit=INTERVAL_SIZE, code="INTERVAL_SIZE", severity="review"),
    Rule(bit=GAP, code="GAP", severity="review"),
    Rule(bit=NEGATIVE, code="NEGATIVE", severity="invalid"),
    Rule(bit=ROLLOVER, code="ROLLOVER", severity="info"),
    Rule(bit=REPLACEMENT, code="REPLACEMENT", severity="review"),
    Rule(bit=SPIKE, code="SPIKE", severity="review"),
    Rule(bit=FLAT_LINE, code="FLAT_LINE", severity="review"),
    Rule(bit=GAP_TOO_LONG, code="GAP_TOO_LONG", severity="review"),
    Rule(bit=LEADING_GAP, code="LEADING_GAP", severity="review"),
    Rule(bit=HIGH_USE, code="HIGH_USE", severity="review"),
    Rule(bit=LOW_USE, code="LOW_USE", severity="review"),
    Rule(bit=ZERO_USE, code="ZERO_USE", severity="review"),
    Rule(bit=TOU_SUM, code="TOU_SUM", severity="review"),
    Rule(bit=CLOCK_SUSPECT, code="CLOCK_SUSPECT", severity="review"),
    Rule(bit=CLOCK_INVALID, code="CLOCK_INVALID", severity="invalid"),
)
BY_CODE: dict[str, Rule] = {r.code: r for r in RULES}
# Reading-level bits that become exception rows (ESTIMATED is a state, not a failure).
EXCEPTION_MASK = 0
for _rule in RULES:
    EXCEPTION_MASK |= _rule.bit


def flag_codes(flags: int) -> list[str]:
    """Rule codes set in a flag mask, in rule order."""
    codes = [r.code for r in RULES if flags & r.bit]
    if flags & ESTIMATED:
        codes.append("ESTIMATED")
    return codes


def method_names(methods: int) -> list[str]:
    return [name for bit, name in METHOD_NAMES.items() if methods & bit]
