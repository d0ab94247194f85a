"""Simulated data concentrator (DCU) pushing interval reads over MQTT; the format is in docs/dcu-uplink.md.

``start_dcu(dcu_id, meters, endpoint, clock, interval_s, faults=DcuFaults(...)) -> DcuHandle``.
"""

from simulators.dcu.dcu import DcuFaults, DcuHandle, SimulatedDcu, start_dcu
from simulators.dcu.outbox import Outbox, OutboxItem

__all__ = ["DcuFaults", "DcuHandle", "Outbox", "OutboxItem", "SimulatedDcu", "start_dcu"]
