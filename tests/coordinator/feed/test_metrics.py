"""``/metrics``: token required unless ``metrics_public``; values after a job cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.domain.states import RequestState
from coordinator.feed.events import Broadcaster, TransitionEvent
from coordinator.feed.metrics import Metrics
from coordinator.service.keys import RATE_WINDOW, KeyPool
from coordinator.settings import Settings
from coordinator.wire import CheckResult, HealthReport
from tests.plugins.app_harness import AppFarm, Template, open_farm

pytestmark = pytest.mark.anyio


async def scrape(f: AppFarm) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await f.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


async def test_values_after_a_job_cycle(farm: AppFarm) -> None:
    await farm.parked_worker()  # worker 9, MAINTENANCE
    await farm.new_request({"Priority": 5, "Caps": {"board": "rpi4"}})
    uuid = await farm.idle_worker(1)
    farm.clock.advance(timedelta(seconds=30))
    rid = await farm.new_request({"Priority": 8})
    farm.clock.advance(timedelta(seconds=2))  # matched at once: the wait is 0 s
    farm.clock.advance(timedelta(seconds=90))
    assert (await farm.post(f"/api/v1/reqs/{rid}/close")).status_code == 204
    farm.dryads.report = HealthReport((CheckResult("stm", False, True, "no answer"),))
    await farm.service.report_health(uuid, farm.dryads.report)
    events: Broadcaster = farm.app.state.coordinator.events
    with anyio.fail_after(10):
        await events.settled()  # and so the metrics, a listener, have every transition
    got = await scrape(farm)
    assert got[("boruta_queue_length", (("priority", "5"),))] == 1
    assert got[("boruta_workers", (("state", "MAINTENANCE"),))] == 1
    assert got[("boruta_workers", (("state", "FAILED"),))] == 1
    assert got[("boruta_workers", (("state", "IDLE"),))] == 0
    assert got[("boruta_link_sessions", ())] == 0
    assert got[("boruta_matches_total", ())] == 1
    assert got[("boruta_request_wait_seconds_count", ())] == 1
    assert got[("boruta_request_wait_seconds_sum", ())] == 0
    assert got[("boruta_job_duration_seconds_count", (("state", "DONE"),))] == 1
    assert got[("boruta_job_duration_seconds_sum", (("state", "DONE"),))] == 92
    assert got[("boruta_healthcheck_failures_total", ())] == 1
    close = (("method", "POST"), ("route", "/api/v1/reqs/{rid}/close"), ("status", "204"))
    assert got[("boruta_http_request_duration_seconds_count", close)] == 1
    assert not any(name.startswith("python_") for name, _ in got)  # a registry of its own


async def test_times_come_from_the_events_not_from_the_services_memory(farm: AppFarm) -> None:
    # The broadcaster may hand a transition on before the service has applied it (which
    # once made boruta_matches_total read 0): request 99 is unknown to the service, and
    # still counted and timed.
    metrics: Metrics = farm.app.state.coordinator.metrics
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made, matched, ended = (start + timedelta(seconds=s) for s in (0, 7, 67))
    waiting, running = RequestState.WAITING, RequestState.IN_PROGRESS
    metrics.observe(
        [
            TransitionEvent(1, made, "request", "99", None, waiting, "", "alice"),
            TransitionEvent(2, matched, "request", "99", waiting, running, "", ""),
            TransitionEvent(3, ended, "request", "99", running, RequestState.FAILED, "x", ""),
        ]
    )
    got = await scrape(farm)
    assert got[("boruta_matches_total", ())] == 1
    assert got[("boruta_request_wait_seconds_sum", ())] == 7
    assert got[("boruta_job_duration_seconds_sum", (("state", "FAILED"),))] == 60


async def test_each_healthcheck_report_with_a_failed_check_counts_once(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)

    async def report(*checks: CheckResult) -> None:
        await farm.service.report_health(uuid, HealthReport(checks))

    # Back to back: each report is counted when it is stored, not when the feed reads it.
    await report(CheckResult("stm", True, True, ""))
    await report(CheckResult("fan", False, False, "slow"))  # a note: the worker stays IDLE
    await report(CheckResult("stm", False, True, "no answer"))  # the worker FAILS
    await report(CheckResult("stm", False, True, "no answer"))  # already FAILED: counted too
    answer = await farm.post(
        f"/api/v1/workers/{uuid}/setstate", {"WorkerState": "MAINTENANCE"}, as_="root"
    )
    assert answer.status_code == 202  # more events of the worker: no report counted again
    got = await scrape(farm)
    assert got[("boruta_healthcheck_failures_total", ())] == 3


async def test_metrics_need_a_token_unless_public(
    farm: AppFarm, tmp_path: Path, template: Template
) -> None:
    assert (await farm.get("/metrics", as_=None)).status_code == 401
    async with open_farm(template, tmp_path / "open.db", Settings(metrics_public=True)) as f:
        assert (await f.get("/metrics", as_=None)).status_code == 200


async def test_the_key_stock_shows_its_level_size_and_refill_rate(farm: AppFarm) -> None:
    now = [500.0]
    keys = KeyPool(3, makers=1, processes=False, clock=lambda: now[0])
    metrics = Metrics(farm.service, keys)

    def sample(name: str) -> float:
        return next(
            s.value
            for family in text_string_to_metric_families(metrics.exposition().decode())
            for s in family.samples
            if s.name == name
        )

    async with anyio.create_task_group() as tg:
        await tg.start(keys.run)
        with anyio.fail_after(30):
            while keys.level < 3:  # noqa: ASYNC110 - the pool tells no one of a new key
                await anyio.sleep(0.01)
        await keys.get()
        assert sample("boruta_job_keys_stock") == 2  # taken; its successor not counted yet
        assert sample("boruta_job_keys_stock_size") == 3
        assert sample("boruta_job_keys_refill_rate") == pytest.approx(3 / RATE_WINDOW)
        tg.cancel_scope.cancel()


async def test_a_sqlite_coordinator_holds_no_epoch_and_keeps_its_own_time(farm: AppFarm) -> None:
    got = await scrape(farm)
    assert got[("boruta_serving_epoch", ())] == 0
    assert got[("boruta_database_clock_offset_seconds", ())] == 0


async def test_each_http_series_counts_every_response_of_its_route_method_and_status(
    farm: AppFarm,
) -> None:
    for _ in range(3):
        await farm.new_request({"Priority": 8})
    assert (await farm.get("/api/v1/nowhere")).status_code == 404
    assert (await farm.get("/api/v1/nowhere")).status_code == 404
    got = await scrape(farm)
    create = (("method", "POST"), ("route", "/api/v1/reqs/"), ("status", "201"))
    nowhere = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert got[("boruta_http_request_duration_seconds_count", create)] == 3
    assert got[("boruta_http_request_duration_seconds_count", nowhere)] == 2
