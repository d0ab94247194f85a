"""Query parameters for large arrays: psycopg dumps a Python list item by item (~10x slower than one string)."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt


def int_array_literal(values: npt.NDArray[Any]) -> str:
    """A PostgreSQL array literal of integers, for a parameter cast to integer[] / bigint[] / smallint[]."""
    return "{" + ",".join(map(str, values.tolist())) + "}"
