"""One exception hierarchy for the platform; each carries the context a user needs to act on it."""

from __future__ import annotations


class AmrError(Exception):
    """Base of every error the platform raises on purpose."""


class ConfigError(AmrError):
    """A settings, register-map or collector config file (or variable) holds a wrong value.

    The message names the file (or variable), the key or line, and what is wrong.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        where = ", ".join(part for part in (source, f"key {key!r}" if key else None) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ServiceError(AmrError):
    """A real part (PostgreSQL, Mosquitto, a simulator) failed to start, stop or answer."""


class MigrationError(AmrError):
    """A schema migration failed or was changed after it had been applied."""


class PayloadError(AmrError):
    """A message payload cannot be decoded or fails validation; `reason` goes to the dead-letter table."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProtocolError(AmrError):
    """A meter or gateway answered with something the protocol does not allow."""
