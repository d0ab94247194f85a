"""The only I/O of the DLMS collector: one association with one meter through dlms-cosem's DlmsClient over TCP.

Every dlms-cosem or socket error is translated here into the platform's errors:
- the meter cannot be reached, or stops answering -> ServiceError (worth a retry);
- the meter refuses the association -> DlmsAssociationRefused (a ProtocolError: retrying will not help);
- a GET answered with an error, or an answer that does not decode -> ProtocolError.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime

import structlog
from dlms_cosem import cosem, enumerations, exceptions
from dlms_cosem.client import DataResultError, DlmsClient
from dlms_cosem.cosem.selective_access import CaptureObject, RangeDescriptor
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import LowLevelSecurityAuthentication, NoSecurityAuthentication

from amr.errors import ProtocolError, ServiceError

LOG = logging.getLogger(__name__)

PUBLIC_CLIENT_SAP = 16
CLOCK_OBIS = "0.0.1.0.0.255"


class DlmsAssociationRefused(ProtocolError):
    """The meter answered the AARQ with a rejection (wrong password, unsupported mechanism)."""


def _quiet_structlog() -> None:
    # dlms-cosem logs every frame through structlog at debug level to stdout; keep warnings only unless the
    # application configured structlog itself.
    if not structlog.is_configured():
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


class _ClosingAwareTcpIO(BlockingTcpIO):
    """dlms-cosem's BlockingTcpIO loops for ever when the peer closes the socket (recv returns b""); fail instead."""

    def recv(self, amount: int = 1) -> bytes:
        if not self.tcp_socket:
            raise exceptions.CommunicationError("TCP transport not connected")
        data = b""
        while len(data) < amount:
            try:
                chunk = self.tcp_socket.recv(amount - len(data))
            except OSError as exc:
                raise exceptions.CommunicationError("could not receive data") from exc
            if not chunk:
                raise exceptions.CommunicationError("the meter closed the connection")
            data += chunk
        return data


def _attribute(class_id: int, obis: str, attribute: int) -> cosem.CosemAttribute:
    return cosem.CosemAttribute(
        interface=enumerations.CosemInterface(class_id), instance=cosem.Obis.from_string(obis), attribute=attribute
    )


class DlmsMeterSession:
    """``with DlmsMeterSession(...) as s: s.get(...)`` opens TCP, associates, and releases on exit."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        logical_address: int,
        password: bytes | None = None,
        client_address: int = PUBLIC_CLIENT_SAP,
        timeout_s: float = 10.0,
    ) -> None:
        _quiet_structlog()
        self.where = f"DLMS meter {host}:{port} SAP {logical_address}"
        auth = LowLevelSecurityAuthentication(secret=password) if password is not None else NoSecurityAuthentication()
        # BlockingTcpIO passes the timeout to socket.create_connection: it bounds connect and every recv.
        io = _ClosingAwareTcpIO(host=host, port=port, timeout=timeout_s)
        transport = TcpTransport(client_logical_address=client_address, server_logical_address=logical_address, io=io)
        self.client = DlmsClient(transport=transport, authentication=auth)

    def __enter__(self) -> DlmsMeterSession:
        try:
            self.client.connect()
        except (exceptions.CommunicationError, OSError) as exc:
            raise ServiceError(f"{self.where}: cannot connect: {exc.__cause__ or exc}") from exc
        try:
            self.client.associate()
        except exceptions.DlmsClientException as exc:
            self._disconnect()
            raise DlmsAssociationRefused(f"{self.where}: association refused: {exc}") from exc
        except BaseException as exc:
            self._disconnect()
            raise self._translate(exc, "association") from exc
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.client.release_association()
        except Exception as exc:
            # dlms-cosem fails to parse some RLRE answers (e.g. an empty one) although the meter released the
            # association; the data is already read, so a failed release is only worth a note.
            LOG.debug("%s: release failed (ignored): %r", self.where, exc)
        self._disconnect()

    def _disconnect(self) -> None:
        try:
            self.client.disconnect()
        except Exception as exc:
            LOG.debug("%s: disconnect failed (ignored): %r", self.where, exc)

    def _translate(self, exc: BaseException, what: str) -> Exception:
        if isinstance(exc, exceptions.CommunicationError | socket.timeout | OSError):
            return ServiceError(f"{self.where}: {what}: no answer: {exc.__cause__ or exc}")
        if isinstance(exc, DataResultError):
            return ProtocolError(f"{self.where}: {what}: meter answered {exc}")
        if isinstance(exc, Exception):
            return ProtocolError(f"{self.where}: {what}: unexpected answer: {exc!r}")
        raise exc

    def get(self, class_id: int, obis: str, attribute: int) -> bytes:
        """One attribute's encoded Data (block transfer is followed by the client)."""
        try:
            return bytes(self.client.get(_attribute(class_id, obis, attribute)))
        except Exception as exc:
            raise self._translate(exc, f"GET {class_id}/{obis}/{attribute}") from exc

    def get_range(self, class_id: int, obis: str, attribute: int, start: datetime, end: datetime) -> bytes:
        """A Profile Generic buffer restricted to clock values in [start, end] (range descriptor on the clock)."""
        descriptor = RangeDescriptor(
            restricting_object=CaptureObject(cosem_attribute=_attribute(8, CLOCK_OBIS, 2)),
            from_value=start,
            to_value=end,
        )
        try:
            return bytes(self.client.get(_attribute(class_id, obis, attribute), access_descriptor=descriptor))
        except Exception as exc:
            raise self._translate(exc, f"GET {class_id}/{obis}/{attribute} by range") from exc
