"""Webhooks against a real local receiver: signatures, retries on 5xx, drops on 4xx and after
the last attempt, the admin endpoints, and pending deliveries resumed after a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from coordinator.feed.webhooks import Webhooks
from coordinator.settings import Settings
from tests.coordinator.feed.test_events import ODD_REASON, ODD_REASON_JSON
from tests.coordinator.uvicorn_server import serving
from tests.plugins.app_harness import AppFarm, Template, open_farm

pytestmark = pytest.mark.anyio

SECRET = "a-shared-secret-of-enough-length"


@pytest.fixture
def settings() -> Settings:
    return Settings(webhook_backoff=0.01, webhook_max_attempts=3)


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (the last one repeats)."""

    statuses: list[int]
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hold: anyio.Event | None = None  # when set, answers wait for it
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    async def endpoint(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        self._arrived.set()
        self._arrived = anyio.Event()
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses[min(len(self.got), len(self.statuses)) - 1]
        return Response(status_code=status)

    async def until(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.got) < count:
                await self._arrived.wait()


@asynccontextmanager
async def receiving(*statuses: int) -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver(list(statuses))
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as url:
        yield receiver, f"{url}/hook"


async def add_hook(f: AppFarm, url: str, kinds: list[str] | None = None) -> int:
    body = {"URL": url, "Kinds": kinds or ["request"], "Secret": SECRET}
    answer = await f.post("/api/v1/webhooks", body, as_="root")
    assert answer.status_code == 201, answer.text
    assert "Secret" not in answer.json()  # given, so not echoed
    hook: int = answer.json()["ID"]
    return hook


async def deliveries(f: AppFarm, hook: int) -> list[dict[str, Any]]:
    answer = await f.get(f"/api/v1/webhooks/{hook}/deliveries", as_="root")
    assert answer.status_code == 200
    found: list[dict[str, Any]] = answer.json()
    return found


async def until_settled(f: AppFarm, hook: int, count: int) -> list[dict[str, Any]]:
    """Wait, outcome by outcome, until ``count`` deliveries are no longer pending."""
    hooks: Webhooks = f.app.state.coordinator.webhooks
    with anyio.fail_after(10):
        while True:
            seen = hooks.outcomes  # before reading, so no outcome slips between
            found = await deliveries(f, hook)
            if sum(d["Status"] != "pending" for d in found) >= count:
                return found
            await hooks.recorded(seen)


async def test_signed_deliveries_retried_after_a_5xx(farm: AppFarm) -> None:
    async with receiving(500, 200) as (receiver, url):
        hook = await add_hook(farm, url)
        rid = await farm.new_request()  # WAITING, then INVALID (no worker could take it)
        await farm.worker(1)  # a worker event: not of this hook's kind
        found = await until_settled(farm, hook, 2)
        hooks: Webhooks = farm.app.state.coordinator.webhooks
        with anyio.fail_after(10):
            await hooks.caught_up(farm.store.last_transition_id())
        assert len(await deliveries(farm, hook)) == 2  # none for the worker's event
    assert len(receiver.got) == 3  # the first attempt got a 500 and was retried
    for headers, body in receiver.got:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["boruta-signature"] == f"sha256={expected}"
        assert headers["boruta-event"] == "request"
        assert headers["content-type"] == "application/json"
    events = [json.loads(body) for _, body in receiver.got]
    assert {e["new"] for e in events} == {"WAITING", "INVALID"}
    assert all(e["subject"] == str(rid) and e["kind"] == "request" for e in events)
    by_event = {d["Event"]: d for d in found}
    first = by_event[events[0]["id"]]  # the first to arrive got the 500
    assert (first["Status"], first["Attempts"], first["LastError"]) == ("delivered", 2, "HTTP 500")
    sent = [headers["boruta-delivery"] for headers, _ in receiver.got]
    assert sent.count(sent[0]) == 2  # the one that got the 500 came again, as itself
    assert all(d["Status"] == "delivered" and d["DeliveredAt"] for d in found)


async def test_the_bytes_of_one_body_are_pinned(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    farm.clock.advance(timedelta(seconds=1.25))
    async with receiving(200) as (receiver, url):
        hook = await add_hook(farm, url, ["worker"])  # from the next event on
        await farm.service.set_fail(uuid, ODD_REASON)
        (found,) = await until_settled(farm, hook, 1)
    ((headers, body),) = receiver.got
    n = found["Event"]
    assert headers["boruta-event"] == "worker"
    assert headers["boruta-delivery"] == str(found["ID"])
    assert (
        body
        == (
            f'{{"id":{n},"kind":"worker","subject":"{uuid}","old":"IDLE","new":"FAILED",'
            f'"reason":{ODD_REASON_JSON},"actor":"","at":"2026-01-01T00:00:01.25Z"}}'
        ).encode()
    )


async def test_a_4xx_drops_the_delivery_with_a_record(farm: AppFarm) -> None:
    async with receiving(400) as (receiver, url):
        hook = await add_hook(farm, url, ["worker"])
        await farm.worker(1)
        (found,) = await until_settled(farm, hook, 1)
    assert len(receiver.got) == 1
    assert (found["Status"], found["Attempts"], found["LastError"]) == ("dropped", 1, "HTTP 400")


async def test_transient_errors_give_up_after_the_last_attempt(farm: AppFarm) -> None:
    async with receiving(503) as (receiver, url):
        hook = await add_hook(farm, url, ["worker"])
        await farm.worker(1)
        (found,) = await until_settled(farm, hook, 1)
    assert len(receiver.got) == 3
    assert found["Status"] == "dropped"
    assert found["LastError"] == "gave up after 3 attempts: HTTP 503"


async def test_connection_errors_are_transient(farm: AppFarm) -> None:
    async with receiving(200) as (_, url):
        pass  # the port is closed now
    hook = await add_hook(farm, url, ["worker"])
    await farm.worker(1)
    (found,) = await until_settled(farm, hook, 1)
    assert found["Attempts"] == 3 and "ConnectError" in found["LastError"]


async def test_webhook_admin_endpoints(farm: AppFarm) -> None:
    body = {"URL": "http://127.0.0.1:9/x?key=private", "Kinds": ["worker"]}
    assert (await farm.post("/api/v1/webhooks", body)).status_code == 403
    assert (await farm.get("/api/v1/webhooks")).status_code == 403
    made = await farm.post("/api/v1/webhooks", body, as_="root")
    assert made.status_code == 201
    hook, secret = made.json()["ID"], made.json()["Secret"]
    assert len(secret) >= 32  # generated, and shown this once
    listed = (await farm.get("/api/v1/webhooks", as_="root")).json()
    assert listed == [
        {
            "ID": hook,
            "URL": body["URL"],
            "Kinds": ["worker"],
            "CreatedBy": "root",
            "CreatedAt": "2026-01-01T00:00:00Z",
        }
    ]
    assert secret not in json.dumps(listed)
    for bad in (
        {"URL": "ftp://x/", "Kinds": ["worker"]},
        {"URL": "http://x/", "Kinds": ["panel"]},
        {"URL": "http://x/", "Secret": "short"},
    ):
        assert (await farm.post("/api/v1/webhooks", bad, as_="root")).status_code == 400
    assert (await farm.call("DELETE", f"/api/v1/webhooks/{hook}", as_="alice")).status_code == 403
    assert (await farm.call("DELETE", f"/api/v1/webhooks/{hook}", as_="root")).status_code == 204
    assert (await farm.call("DELETE", f"/api/v1/webhooks/{hook}", as_="root")).status_code == 404
    assert (await farm.get("/api/v1/webhooks", as_="root")).json() == []
    (gone,) = (await farm.get("/api/v1/webhooks?all=true", as_="root")).json()
    assert (gone["DeletedBy"], gone["DeletedAt"]) == ("root", "2026-01-01T00:00:00Z")


async def test_pending_deliveries_resume_after_a_restart(
    tmp_path: Path, template: Template, settings: Settings
) -> None:
    async with receiving(200) as (receiver, url):
        receiver.hold = anyio.Event()  # the first run stops while its attempt hangs
        async with open_farm(template, tmp_path / "first.db", settings) as first:
            hook = await add_hook(first, url, ["worker"])
            await first.worker(1)
            await receiver.until(1)
        receiver.hold.set()
        receiver.hold = None
        shutil.copyfile(tmp_path / "first.db", tmp_path / "saved.db")
        saved = Template(tmp_path / "saved.db", template.tokens)
        async with open_farm(saved, tmp_path / "second.db", settings) as second:
            (found,) = await until_settled(second, hook, 1)
    assert found["Status"] == "delivered"
    assert len(receiver.got) == 2  # sent again: at least once
    assert receiver.got[0][1] == receiver.got[1][1]
