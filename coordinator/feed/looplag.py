"""The event loop's lag: a task that sleeps a short interval and records how late it wakes,
exposed in ``/metrics`` (docs/events.md §loop lag)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Final

import anyio
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Seconds; fine at the low end, where the goal (no step over 10 ms) lies.
BUCKETS: Final = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
WARN_AFTER: Final = 0.5  # seconds of lag worth a log line: the loop stood still that long


class LoopLag(Collector):
    """Sleeps ``interval`` seconds over and over; how much later than asked it wakes is a
    step that held the loop (or the machine was busy). A histogram of the lags, and the
    longest since the previous scrape (a peak gauge: what a scrape interval hid)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._counts = [0] * (len(BUCKETS) + 1)  # the last one: above every bucket
        self._sum = 0.0
        self._peak = 0.0  # since the previous scrape
        self.longest = 0.0  # since the start

    def record(self, lag: float) -> None:
        """Count one wake-up ``lag`` seconds late."""
        lag = max(lag, 0.0)
        at = 0
        while at < len(BUCKETS) and lag > BUCKETS[at]:
            at += 1
        self._counts[at] += 1
        self._sum += lag
        self._peak = max(self._peak, lag)
        self.longest = max(self.longest, lag)

    async def run(self) -> None:
        """Probe until cancelled; an interval of 0 turns the probe off."""
        if self.interval <= 0:
            return
        while True:
            start = time.perf_counter()
            await anyio.sleep(self.interval)
            lag = time.perf_counter() - start - self.interval
            self.record(lag)
            if lag > WARN_AFTER:
                logger.warning("event loop: a step held it for %.0f ms", lag * 1000)

    def collect(self) -> Iterator[Metric]:
        cumulative, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self._counts, strict=True):
            running += count
            cumulative.append((bound, running))
        hist = HistogramMetricFamily(
            "boruta_event_loop_lag_seconds",
            "How late the event loop woke a task sleeping a short interval",
            buckets=cumulative,
            sum_value=self._sum,
        )
        yield hist
        peak = GaugeMetricFamily(
            "boruta_event_loop_lag_peak_seconds",
            "The longest event loop lag since the previous scrape",
            value=self._peak,
        )
        self._peak = 0.0
        yield peak
