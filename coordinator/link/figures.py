"""The dryad links' figures for ``/metrics``: on the leader, how many links each
coordinator holds (docs/failover.md §scale-out)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator.link.holders import LOCAL, Holders

SELF = "self"  # the holder label of this coordinator's own links


class HolderFigures(Collector):
    """``boruta_link_holder_links{holder}``: the links each coordinator holds, as the
    leader knows them (this one's own as ``self``), read at scrape time."""

    def __init__(self, holders: Holders) -> None:
        self._holders = holders

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "boruta_link_holder_links",
            "Dryad links held by each coordinator, as the leader knows them (farm-wide)",
            labels=["holder"],
        )
        counts = self._holders.counts()
        for holder in sorted(counts):
            gauge.add_metric([SELF if holder == LOCAL else holder], counts[holder])
        yield gauge
