"""DLMS/COSEM meter simulator: an asyncio TCP server (IEC 62056-47 wrapper) speaking to any DLMS client.

Entry point: ``start_dlms_server(meters, host, port, clock) -> DlmsServerHandle`` (``.port``, ``.addresses``,
``.stop()``). See ``server`` for addressing, ``session`` for the services, ``objects`` for the COSEM objects.
"""

from simulators.dlms.objects import LOAD_PROFILE_OBIS, REGISTERS, CosemMeter, ProfileConfig
from simulators.dlms.server import DlmsDevice, DlmsServer, DlmsServerHandle, start_dlms_server
from simulators.dlms.source import Clock, MeterSource

__all__ = [
    "LOAD_PROFILE_OBIS",
    "REGISTERS",
    "Clock",
    "CosemMeter",
    "DlmsDevice",
    "DlmsServer",
    "DlmsServerHandle",
    "MeterSource",
    "ProfileConfig",
    "start_dlms_server",
]
