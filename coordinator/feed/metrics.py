"""Prometheus metrics: gauges read from the service at scrape time, counters and histograms
fed by the event stream, and HTTP latency from an ASGI middleware."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.domain import listing
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, WorkerFilter
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState, WorkerState
from coordinator.feed.events import TransitionEvent
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store import Store
from coordinator.wire import HealthReport

# Waits and jobs on a board farm run from seconds to a day.
_LONG: Final = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)
_HTTP: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Farm(Collector):
    """Gauges computed from the service's in-memory state when Prometheus scrapes."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        farm = self._service.farm  # the queue is in memory: no store read at a scrape
        queue = GaugeMetricFamily(
            "boruta_queue_length", "Requests WAITING, per priority", labels=["priority"]
        )
        for priority, n in farm.queue.per_priority().items():  # counted, not walked
            queue.add_metric([str(priority)], n)
        yield queue
        workers = self._service.list_workers(
            ListSpec(WorkerFilter(), listing.worker_sort_key(""))
        ).items
        per_state = Tally(w.state.value for w in workers)
        gauge = GaugeMetricFamily("boruta_workers", "Workers, per state", labels=["state"])
        for state in WorkerState:
            gauge.add_metric([state.value], per_state[state.value])
        yield gauge
        yield GaugeMetricFamily(
            "boruta_link_sessions",
            "Workers whose dryad link is up",
            value=sum(1 for w in workers if self._service.connected(w.uuid)),
        )


class _KeyStock(Collector):
    """The stock of RSA job keys made ahead (docs/boruta-api.md §keys), read at scrape time."""

    def __init__(self, keys: KeyPool) -> None:
        self._keys = keys

    def collect(self) -> Iterator[Metric]:
        keys = self._keys
        yield GaugeMetricFamily(
            "boruta_job_keys_stock", "RSA job keys made ahead and not yet used", value=keys.level
        )
        yield GaugeMetricFamily(
            "boruta_job_keys_stock_size", "RSA job keys the stock is refilled to", value=keys.size
        )
        yield GaugeMetricFamily(
            "boruta_job_keys_refill_rate",
            "RSA job keys made per second, over the last minute",
            value=keys.rate(),
        )


class _Serving(Collector):
    """This process's hold on the database (docs/failover.md §standby), at scrape time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "boruta_serving_epoch",
            "The serving epoch this coordinator holds (0 on SQLite)",
            value=self._store.serving_epoch(),
        )
        yield GaugeMetricFamily(
            "boruta_database_clock_offset_seconds",
            "The database's clock minus this host's (0 on SQLite)",
            value=self._store.clock_offset().total_seconds(),
        )


class Metrics:
    """One app's metrics in a registry of its own (so that apps in one process, as in the
    tests, do not share counters)."""

    def __init__(
        self, service: Service, keys: KeyPool | None = None, store: Store | None = None
    ) -> None:
        self._service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.matches = Counter("boruta_matches", "Requests given a worker", registry=r)
        self.wait = Histogram(
            "boruta_request_wait_seconds",
            "From a request's creation to IN PROGRESS",
            buckets=_LONG,
            registry=r,
        )
        self.jobs = Histogram(
            "boruta_job_duration_seconds",
            "From IN PROGRESS to the request's end, per final state",
            ["state"],
            buckets=_LONG,
            registry=r,
        )
        self.health_failures = Counter(
            "boruta_healthcheck_failures",
            "Healthcheck reports with a failed check",
            registry=r,
        )
        self.http = Histogram(
            "boruta_http_request_duration_seconds",
            "Time to the response's headers, per route template, method and status",
            ["route", "method", "status"],
            buckets=_HTTP,
            registry=r,
        )
        # Each series' child, found once: prometheus_client's ``labels`` checks and converts
        # the values and takes a lock on every call, and HTTP timing calls it per request.
        self._http_series: dict[tuple[str, str, int], Histogram] = {}
        self._job_series: dict[str, Histogram] = {}
        r.register(_Farm(service))
        if store is not None:
            r.register(_Serving(store))
        if keys is not None:
            r.register(_KeyStock(keys))
        # Times from the events themselves, not from the service, whose memory may not
        # hold a change yet when the broadcaster hands its transition on.
        self._created: dict[str, datetime] = {}  # WAITING requests: since when
        self._started: dict[str, datetime] = {}  # IN PROGRESS requests: since when

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def http_series(self, route: str, method: str, status: int) -> Histogram:
        """The HTTP histogram's series for a route template, a method and a status."""
        key = (route, method, status)
        series = self._http_series.get(key)
        if series is None:
            series = self._http_series[key] = self.http.labels(route, method, status)
        return series

    def observe(self, events: Sequence[TransitionEvent]) -> None:
        """A broadcaster listener: count matches and time waits and jobs."""
        for event in events:
            if event.kind == "request":
                self._request(event)

    def _request(self, event: TransitionEvent) -> None:
        subject = event.subject
        if event.old is None:  # created, WAITING
            self._created[subject] = event.at
        elif event.new is RequestState.IN_PROGRESS:  # a match
            self.matches.inc()
            created = self._created.pop(subject, None)
            if created is None and (req := self._loaded(subject)) is not None:
                created = req.created
            if created is not None:
                self.wait.observe(_seconds(created, event.at))
            self._started[subject] = event.at
        elif event.old is RequestState.IN_PROGRESS and event.new is not None:  # a job's end
            started = self._started.pop(subject, None)
            if started is None and (req := self._loaded(subject)) is not None and req.job:
                started = req.job.started
            if started is not None:
                self._job_series_of(event.new.value).observe(_seconds(started, event.at))
        else:  # out of the queue without a worker
            self._created.pop(subject, None)

    def _job_series_of(self, state: str) -> Histogram:
        series = self._job_series.get(state)
        if series is None:
            series = self._job_series[state] = self.jobs.labels(state)
        return series

    def _loaded(self, subject: str) -> Request | None:
        """A request created, or matched, before this coordinator started: the service
        loaded it from the store then, and holds it while it is live (a request that
        finished long before the feed got here may have been let go: not timed)."""
        try:
            return self._service.farm.requests.get(RequestID(int(subject)))
        except ValueError:
            return None

    def health_reported(self, uuid: WorkerUUID, report: HealthReport) -> None:
        """A service health listener: count a report with a failed check."""
        if not all(check.passed for check in report.checks):
            self.health_failures.inc()


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


class HttpMetrics:
    """ASGI middleware: the time to each response's headers, labelled by the route template
    (not the path, which would make a series per request ID)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self._metrics.http_series(template, scope["method"], message["status"]).observe(
                    time.perf_counter() - start
                )
            await send(message)

        await self._app(scope, receive, timed)
