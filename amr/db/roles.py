"""The platform's database roles, least privilege each (grants in sql/). A module of its own so that naming a
role (the choices of `amr db psql --role`) does not load the database driver."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "amr_owner"
    INGEST = "amr_ingest"
    BILLING = "amr_billing"
    READER = "amr_reader"
