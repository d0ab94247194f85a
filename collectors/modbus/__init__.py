"""Modbus collection: bus scheduling, RTU and TCP transports, meter reads (the protocol layer is amr.modbus)."""
