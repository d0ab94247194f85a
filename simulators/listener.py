"""The record a simulator starter returns: one running endpoint, as `amr simulate` lists it.

Protocol-neutral so that every starter (Modbus, DLMS, DCU, and any plugged in) returns the same thing and none of
them imports another protocol's module to get it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class Listener:
    """One running simulator endpoint, as `amr simulate` lists it."""

    protocol: str
    endpoint: str
    units: list[int]
    serials: list[str]
    stop: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)
