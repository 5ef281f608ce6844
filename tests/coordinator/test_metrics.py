"""``/metrics``: token required unless ``metrics_public``; values after a job cycle."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.feed.events import Broadcaster
from coordinator.settings import Settings
from coordinator.wire import CheckResult, HealthReport
from tests.coordinator.api.harness import Farm, Template, farm, open_farm, settings, template

__all__ = ["farm", "settings", "template"]

pytestmark = pytest.mark.anyio


async def scrape(f: Farm) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await f.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


async def test_values_after_a_job_cycle(farm: Farm) -> None:
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
    events: Broadcaster = farm.app.state.events
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


async def test_metrics_need_a_token_unless_public(
    farm: Farm, tmp_path: Path, template: Template
) -> None:
    assert (await farm.get("/metrics", as_=None)).status_code == 401
    async with open_farm(template, tmp_path / "open.db", Settings(metrics_public=True)) as f:
        assert (await f.get("/metrics", as_=None)).status_code == 200
