"""How a batch of readings is written (ingest.writer): a module of its own so that naming a strategy (the choices
of `amr ingest --strategy`) loads neither numpy nor psycopg."""

from __future__ import annotations

from enum import StrEnum


class Strategy(StrEnum):
    SAVEPOINT = "savepoint"  # direct COPY, staging only for a batch that holds a duplicate (the default)
    STAGING = "staging"  # always staging + INSERT ... ON CONFLICT DO NOTHING
    RAW = "raw"  # plain COPY, NOT idempotent: the ceiling the benchmark compares against
