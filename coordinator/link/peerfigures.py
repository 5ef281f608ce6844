"""The peer calls this process made, for ``/metrics``: how many, to whom, by route and
result, and how long they took (docs/failover.md §scale-out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from coordinator.link import peerwire

# The leader's routes (a follower calls them) and a holder's (the leader calls them).
TO: Final = {"holders": "leader", "links": "leader", "enrol": "leader"}
# Same buckets as the HTTP API's latency (feed.metrics): peer calls are HTTP on the LAN.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

OK: Final = "ok"  # the peer answered 2xx (a dryad's own refusal inside it included)
REFUSED: Final = "refused"  # the peer answered another status (secret, route, body, 503)
UNREACHABLE: Final = "unreachable"  # no connection: refused, no route, name unknown
TIMEOUT: Final = "timeout"  # no answer in the call's time
LOST: Final = "lost"  # the connection broke, or the answer was not JSON


def route_of(path: str) -> tuple[str, str]:
    """Whom a peer path goes to (``leader`` or ``holder``) and its route's kind."""
    kind = path.removeprefix(peerwire.PREFIX).partition("/")[0] or "?"
    if kind not in TO and kind not in ("dryads", "tunnels"):
        kind = "other"
    return TO.get(kind, "holder"), kind


class PeerFigures(Collector):
    """Counters and a latency histogram of this process's peer calls, per process."""

    def __init__(self) -> None:
        self.calls = Counter(
            "boruta_peer_calls",
            "Calls this process made to other coordinators since it started (per "
            "process, not farm-wide), by whom they went to, route and result",
            ["to", "route", "result"],
            registry=None,
        )
        self.seconds = Histogram(
            "boruta_peer_call_duration_seconds",
            "Time to a peer's answer (or failure) of this process's calls (per process), "
            "by whom they went to and route",
            ["to", "route"],
            buckets=BUCKETS,
            registry=None,
        )

    def observe(self, path: str, result: str, seconds: float) -> None:
        to, route = route_of(path)
        self.calls.labels(to, route, result).inc()
        self.seconds.labels(to, route).observe(seconds)

    def collect(self) -> Iterator[Metric]:
        yield from self.calls.collect()
        yield from self.seconds.collect()
