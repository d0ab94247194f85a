"""DLMS/COSEM collector: read registers, clock drift and load profile from a meter over TCP (IEC 62056-47).

``fetch_dlms_meter(host, port, logical_address=..., password=..., since=..., timeout_s=...) -> DlmsReadResult``.
Layers: ``decode`` (pure), ``session`` (the only I/O, error translation), ``fetch`` (orchestration, retries).
"""

from collectors.dlms.fetch import DEFAULT_REGISTERS, ClockStepped, DlmsReadResult, fetch_dlms_meter
from collectors.dlms.session import DlmsAssociationRefused

__all__ = ["DEFAULT_REGISTERS", "ClockStepped", "DlmsAssociationRefused", "DlmsReadResult", "fetch_dlms_meter"]
