"""Quality of a validated day in one published code list: AEMO NEM12 quality flags and substitution method
numbers (docs/vee.md has the mapping and IEC 61968-9's equivalents). Pure numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from billing import flags as F

ACTUAL = "A"  # every interval of the day measured
FORWARD_ESTIMATE = "E"  # estimated from one side only (no closing read yet): to be replaced
SUBSTITUTED = "S"  # estimated between valid reads, or edited by a person
FINAL = "F"  # final substitute: an estimate a released bill used (reason 'billed'); a later version corrects the bill
NULL = "N"  # nothing measured or estimated
VARIABLE = "V"  # measured and estimated intervals in the same day
QUALITY_CODES = (ACTUAL, FORWARD_ESTIMATE, SUBSTITUTED, FINAL, NULL, VARIABLE)
# The estimates a released bill makes final: F is their final form (sql/095_final_versions.sql, billing.bill_ready).
ESTIMATE_CODES = (FORWARD_ESTIMATE, SUBSTITUTED, VARIABLE)

# AEMO substitution methods, by our method bits in the order that names a day (the first present wins): a
# like-day shape dominates the day's estimate, then interpolation, then a flat rate, then scaling alone.
METHOD_RETROSPECTIVE_LIKE_DAY = 14
METHOD_LINEAR_INTERPOLATION = 17
METHOD_SCALED_TO_REGISTER = 24
METHOD_AVERAGE_DAILY_LOAD = 25
_METHOD_ORDER = (
    (F.METHOD_HISTORICAL, METHOD_RETROSPECTIVE_LIKE_DAY),
    (F.METHOD_LINEAR, METHOD_LINEAR_INTERPOLATION),
    (F.METHOD_FLAT, METHOD_AVERAGE_DAILY_LOAD),
    (F.METHOD_SCALED, METHOD_SCALED_TO_REGISTER),
)


def day_quality(
    n_measured: npt.NDArray[np.integer], n_estimated: npt.NDArray[np.integer], methods: npt.NDArray[np.integer]
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int16]]:
    """(quality flag, AEMO method number or 0 for none) per day from its interval counts and method bits."""
    meas = np.asarray(n_measured) > 0
    est = np.asarray(n_estimated) > 0
    bits = np.asarray(methods).astype(np.int64)
    one_sided = (bits & F.METHOD_FLAT) != 0
    quality = np.full(meas.shape, NULL, dtype="<U1")
    quality[meas & ~est] = ACTUAL
    quality[meas & est] = VARIABLE
    only_est = ~meas & est
    quality[only_est & one_sided & ((bits & ~(F.METHOD_FLAT | F.METHOD_SCALED)) == 0)] = FORWARD_ESTIMATE
    quality[only_est & (quality != FORWARD_ESTIMATE)] = SUBSTITUTED
    method = np.zeros(meas.shape, dtype=np.int16)
    for bit, number in reversed(_METHOD_ORDER):  # reversed: the earlier entries overwrite the later ones
        method[est & ((bits & bit) != 0)] = number
    return quality, method
