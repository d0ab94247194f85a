"""One client's application association with one logical device: APDU in, APDU out (pure, no I/O).

Handles AARQ -> AARE (lowest-level security, or low-level security with a password), GET.request normal ->
GET.response normal or, when the answer does not fit the negotiated PDU size, GET.response with-datablock
(GetResponseWithBlock ... GetResponseLastBlock, driven by GET.request next), and RLRQ -> RLRE.
dlms-cosem's classes decode the other requests and encode most answers. GET.request normal is decoded here
(``parse_get_request_normal``): dlms-cosem cannot decode every access selector (an entry descriptor, selector 2,
made it raise), and a request the meter understands but cannot serve must get a GET.response with a
data-access-result, not an exception response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dlms_cosem import enumerations as enums
from dlms_cosem.connection import XDlmsApduFactory
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.xdlms.conformance import Conformance
from dlms_cosem.protocol.xdlms.invoke_id_and_priority import InvokeIdAndPriority

from simulators.dlms.objects import AccessError, CosemMeter, obis_str, parse_access_selection

# What a small meter accepts per APDU; a load-profile range of more than a few hours goes out in blocks.
SERVER_MAX_PDU_SIZE = 1024
# GetResponseWithBlock header: tag, type, invoke id, last-block, block number (4), choice, length (up to 3).
BLOCK_HEADER_BYTES = 12

SERVER_CONFORMANCE = Conformance(
    get=True,
    selective_access=True,
    block_transfer_with_get_or_read=True,
    priority_management_supported=True,
)


# GET-Request-Normal: tag, choice, invoke-id-and-priority, class id (2), logical name (6), attribute id,
# access-selection flag, then (flag 1) the selector and its parameters.
_GET_NORMAL_HEAD = bytes([xdlms.GetRequestNormal.TAG, enums.GetRequestType.NORMAL])
_GET_NORMAL_FIXED_BYTES = 13


@dataclass(frozen=True, kw_only=True)
class GetNormal:
    """A decoded GET-Request-Normal."""

    invoke: InvokeIdAndPriority
    class_id: int
    obis: str
    attribute: int
    access: bytes | None  # selector byte and its parameters, None without selective access


def parse_get_request_normal(apdu: bytes) -> GetNormal | None:
    """The GET-Request-Normal in `apdu`; None if it is not one or is malformed (no access flag, flag not 0/1,
    bytes after an attribute without selective access, a flag 1 without a selector)."""
    if apdu[:2] != _GET_NORMAL_HEAD or len(apdu) < _GET_NORMAL_FIXED_BYTES:
        return None
    flag = apdu[12]
    if flag not in (0, 1) or (flag == 0 and len(apdu) != _GET_NORMAL_FIXED_BYTES):
        return None
    if flag == 1 and len(apdu) == _GET_NORMAL_FIXED_BYTES:
        return None
    return GetNormal(
        invoke=InvokeIdAndPriority.from_bytes(apdu[2:3]),
        class_id=int.from_bytes(apdu[3:5], "big"),
        obis=obis_str(apdu[5:11]),
        attribute=apdu[11],
        access=apdu[13:] if flag == 1 else None,
    )


def encode_get_response_normal(invoke: InvokeIdAndPriority, data: bytes) -> bytes:
    # dlms-cosem 25.1's GetResponseNormal.to_bytes appends a bytes object to a bytearray and fails.
    return bytes([xdlms.GetResponseNormal.TAG, enums.GetResponseType.NORMAL]) + invoke.to_bytes() + b"\x00" + data


@dataclass
class _PendingBlocks:
    invoke: InvokeIdAndPriority
    data: bytes
    block_size: int
    next_block: int = 1  # the number the next block will carry
    offset: int = 0


@dataclass
class DlmsSession:
    """State of one association (client SAP -> server SAP) on one TCP connection."""

    meter: CosemMeter
    password: bytes | None = None
    associated: bool = False
    client_max_pdu: int = SERVER_MAX_PDU_SIZE
    pending: _PendingBlocks | None = field(default=None, repr=False)

    @property
    def max_pdu(self) -> int:
        return min(self.client_max_pdu, SERVER_MAX_PDU_SIZE)

    def handle(self, apdu: bytes, now: datetime) -> bytes:
        """The answer to one request APDU at true time `now`."""
        if apdu[:2] == _GET_NORMAL_HEAD:
            get = parse_get_request_normal(apdu)
            if get is None or not self.associated:
                return self._exception(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
            return self._get(get, now)
        try:
            request = XDlmsApduFactory.apdu_from_bytes(apdu)
        except Exception:  # dlms-cosem raises many types on malformed input; the answer is the same
            return self._exception(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
        if isinstance(request, acse.ApplicationAssociationRequest):
            return self._associate(request)
        if isinstance(request, acse.ReleaseRequest):
            self.associated = False
            self.pending = None
            return acse.ReleaseResponse(reason=enums.ReleaseResponseReason.NORMAL).to_bytes()
        if not self.associated:
            return self._exception(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
        if isinstance(request, xdlms.GetRequestNext):
            return self._get_next(request)
        return self._exception(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED)

    @staticmethod
    def _exception(state: enums.StateException, service: enums.ServiceException) -> bytes:
        return bytes(xdlms.ExceptionResponse(state_error=state, service_error=service).to_bytes())

    def _associate(self, aarq: acse.ApplicationAssociationRequest) -> bytes:
        mechanism = aarq.authentication or enums.AuthenticationMechanism.NONE
        if aarq.ciphered:
            return self._reject(enums.AcseServiceUserDiagnostics.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        if self.password is not None:
            if mechanism != enums.AuthenticationMechanism.LLS:
                return self._reject(enums.AcseServiceUserDiagnostics.AUTHENTICATION_MECHANISM_NAME_REQUIRED)
            if aarq.authentication_value != self.password:
                return self._reject(enums.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED)
        elif mechanism not in (enums.AuthenticationMechanism.NONE, enums.AuthenticationMechanism.LLS):
            return self._reject(enums.AcseServiceUserDiagnostics.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED)
        initiate = aarq.user_information.content
        if isinstance(initiate, xdlms.InitiateRequest) and initiate.client_max_receive_pdu_size:
            self.client_max_pdu = int(initiate.client_max_receive_pdu_size)
        self.associated = True
        self.pending = None
        response = xdlms.InitiateResponse(
            negotiated_conformance=SERVER_CONFORMANCE, server_max_receive_pdu_size=SERVER_MAX_PDU_SIZE
        )
        return acse.ApplicationAssociationResponse(
            result=enums.AssociationResult.ACCEPTED,
            result_source_diagnostics=enums.AcseServiceUserDiagnostics.NULL,
            authentication=enums.AuthenticationMechanism.LLS if self.password is not None else None,
            user_information=acse.UserInformation(content=response),
        ).to_bytes()

    def _reject(self, diagnostic: enums.AcseServiceUserDiagnostics) -> bytes:
        self.associated = False
        return acse.ApplicationAssociationResponse(
            result=enums.AssociationResult.REJECTED_PERMANENT, result_source_diagnostics=diagnostic
        ).to_bytes()

    def _get(self, request: GetNormal, now: datetime) -> bytes:
        self.pending = None
        invoke = request.invoke
        try:
            # Parsed here, not by dlms-cosem: its RangeDescriptor cannot tell a UTC bound from one without
            # deviation, and it cannot decode an entry descriptor at all.
            access = parse_access_selection(request.access) if request.access is not None else None
            data = self.meter.get(request.class_id, request.obis, request.attribute, access, now)
        except AccessError as exc:
            return xdlms.GetResponseNormalWithError(error=exc.result, invoke_id_and_priority=invoke).to_bytes()
        if len(data) + 4 <= self.max_pdu:
            return encode_get_response_normal(invoke, data)
        self.pending = _PendingBlocks(invoke=invoke, data=data, block_size=self.max_pdu - BLOCK_HEADER_BYTES)
        return self._next_block()

    def _get_next(self, request: xdlms.GetRequestNext) -> bytes:
        pending = self.pending
        invoke = request.invoke_id_and_priority
        if pending is None:
            return xdlms.GetResponseLastBlockWithError(
                error=enums.DataAccessResult.NO_LONG_GET_IN_PROGRESS, block_number=0, invoke_id_and_priority=invoke
            ).to_bytes()
        if request.block_number != pending.next_block - 1:
            self.pending = None
            return xdlms.GetResponseLastBlockWithError(
                error=enums.DataAccessResult.DATA_BLOCK_NUMBER_INVALID,
                block_number=pending.next_block,
                invoke_id_and_priority=invoke,
            ).to_bytes()
        return self._next_block()

    def _next_block(self) -> bytes:
        pending = self.pending
        assert pending is not None
        chunk = pending.data[pending.offset : pending.offset + pending.block_size]
        pending.offset += len(chunk)
        number = pending.next_block
        pending.next_block += 1
        if pending.offset >= len(pending.data):
            self.pending = None
            return xdlms.GetResponseLastBlock(
                data=chunk, block_number=number, invoke_id_and_priority=pending.invoke
            ).to_bytes()
        return xdlms.GetResponseWithBlock(
            data=chunk, block_number=number, invoke_id_and_priority=pending.invoke
        ).to_bytes()
