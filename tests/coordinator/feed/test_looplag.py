"""The event loop's lag probe: a step that holds the loop shows as a late wake-up, in the
histogram and in the peak gauge, which each scrape resets."""

from __future__ import annotations

import time

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from coordinator.feed.looplag import LoopLag

pytestmark = pytest.mark.anyio


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    found = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("boruta_event_loop_lag") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_lags_fall_in_their_buckets_and_the_peak_is_reset_by_a_scrape() -> None:
    lag = LoopLag(0.001)
    registry = CollectorRegistry()
    registry.register(lag)
    for seconds in (0.0004, 0.004, 0.004, 0.02, 2.0, -0.001):
        lag.record(seconds)
    first = _scrape(registry)
    assert first['boruta_event_loop_lag_seconds_bucket{le="0.0005"}'] == 2  # -0.001 → 0
    assert first['boruta_event_loop_lag_seconds_bucket{le="0.005"}'] == 4
    assert first['boruta_event_loop_lag_seconds_bucket{le="0.02"}'] == 5
    assert first['boruta_event_loop_lag_seconds_bucket{le="1.0"}'] == 5
    assert first['boruta_event_loop_lag_seconds_bucket{le="+Inf"}'] == 6
    assert first["boruta_event_loop_lag_seconds_count"] == 6
    assert first["boruta_event_loop_lag_peak_seconds"] == 2.0
    assert _scrape(registry)["boruta_event_loop_lag_peak_seconds"] == 0.0
    assert lag.longest == 2.0


async def test_a_step_that_holds_the_loop_shows_as_lag() -> None:
    lag = LoopLag(0.001)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lag.run)
        await anyio.sleep(0.01)  # the probe is sleeping now
        time.sleep(0.05)  # noqa: ASYNC251 - the step that holds the loop, on purpose
        for _ in range(1000):  # the probe's timer is due: it runs within a few turns
            if lag.longest >= 0.03:
                break
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert lag.longest >= 0.03


async def test_an_interval_of_zero_turns_the_probe_off() -> None:
    lag = LoopLag(0)
    with anyio.fail_after(1):
        await lag.run()  # returns at once
    assert lag.longest == 0
