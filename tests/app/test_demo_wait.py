"""The demo's stepped clock moves on only when every live meter was read at the current instant (or is dead)."""

from __future__ import annotations

import threading
import time

from app.demo.run import wait_polled
from collectors.stats import MeterStats

T_S = 1_788_224_400.0  # a simulated instant [UTC epoch s]


class _Stats:
    def __init__(self, stats: list[MeterStats]) -> None:
        self.stats = stats

    def meter_stats(self) -> list[MeterStats]:
        return self.stats


def test_a_meter_that_failed_once_is_waited_for_until_its_retry_reads_it() -> None:
    healthy, flaky = MeterStats(meter="A"), MeterStats(meter="B")
    healthy.attempt(T_S)
    healthy.success(T_S, 4)
    flaky.attempt(T_S)
    flaky.failure(T_S, "timeout after 0.5 s", timeout=True)  # a loaded machine: the first try timed out

    def retry_after_back_off() -> None:
        time.sleep(0.3)
        flaky.attempt(T_S)
        flaky.success(T_S, 4)

    retry = threading.Thread(target=retry_after_back_off)
    retry.start()
    wait_polled(_Stats([healthy, flaky]), T_S, timeout_s=30.0)
    read_when_released = flaky.last_success_s
    retry.join()
    # Moving on before the retry lost this instant's read (the demo's bills then depended on the load).
    assert read_when_released == T_S


def test_a_dead_meter_is_not_waited_for() -> None:
    dead = MeterStats(meter="C")
    for _ in range(2):
        dead.attempt(T_S)
        dead.failure(T_S, "timeout after 0.5 s", timeout=True)
    started = time.monotonic()
    wait_polled(_Stats([dead]), T_S, timeout_s=30.0)
    assert time.monotonic() - started < 25.0  # returned on the failures, not on the 30 s bound


def test_an_unread_meter_is_waited_for_until_the_bound() -> None:
    silent = MeterStats(meter="D")
    silent.attempt(T_S - 86_400)
    silent.success(T_S - 86_400, 4)  # read at the previous instant only
    started = time.monotonic()
    wait_polled(_Stats([silent]), T_S, timeout_s=0.5)
    assert time.monotonic() - started >= 0.5
