"""Modbus simulators: many simulated meters (unit ids) behind one gateway, over Modbus TCP, RTU-over-TCP or
RTU on a serial line. Entry point: :func:`simulators.modbus.servers.start_modbus_gateway`."""

from simulators.modbus.gateway import Gateway, ModbusMeter
from simulators.modbus.servers import GatewayHandle, GatewayKind, start_modbus_gateway

__all__ = ["Gateway", "GatewayHandle", "GatewayKind", "ModbusMeter", "start_modbus_gateway"]
