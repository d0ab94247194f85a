"""Whether the collector's clock jumped during one meter read (a stepped simulated clock, an NTP step): such a
read mixes two instants and is taken again. One home for the tolerance, used by the Modbus and DLMS pollers."""

from __future__ import annotations

# How far the collector clock may run ahead of the monotonic clock (or back at all) during one read before the read
# counts as straddling a clock step [s]. A real clock slews far less than this over a read; a stepped clock jumps
# by its step. (A simulated collector clock running faster than real time is not a steady clock in this sense.)
CLOCK_STEP_TOLERANCE_S = 1.0
CLOCK_STEP_REREADS = 2  # reads again after a step before giving up


def clock_step_s(started_s: float, ended_s: float, elapsed_s: float) -> float | None:
    """How far the collector clock jumped while `elapsed_s` real seconds passed from `started_s` to `ended_s`
    [UTC epoch s]; None when it ran steadily (or stood still, as a stepped simulated clock does between steps)."""
    moved_s = ended_s - started_s
    jump_s = moved_s - max(elapsed_s, 0.0)
    if moved_s < 0 or jump_s > CLOCK_STEP_TOLERANCE_S:
        return jump_s
    return None
