"""One scenario twice: over HTTP (``AsyncClient`` on the ASGI app) and embedded
(``LocalClient`` on a service); the answers and the errors must be the same."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator.client import AsyncClient
from coordinator.client.http import RequestSpec
from coordinator.client.local import LocalClient
from coordinator.domain import listing
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import ListSpec, RequestFilter, WorkerFilter
from coordinator.domain.model import User
from coordinator.domain.states import WorkerState
from coordinator.errors import BorutaError
from tests.plugins.app_harness import AppFarm, Template, open_farm

pytestmark = pytest.mark.anyio

Api = AsyncClient | LocalClient


async def scenario(farm: AppFarm, user: Api, bob: Api, admin: Api) -> list[Any]:
    """Everything a program might do; returns what it saw, errors as (class, message)."""
    seen: list[Any] = []

    async def note(call: Any) -> Any:
        try:
            result = await call
        except BorutaError as exc:
            result = (type(exc).__name__, exc.message)
        seen.append(result)
        return result

    rpi = await farm.idle_worker(1, {"board": "rpi4"})
    parked = await farm.parked_worker()
    await note(user.version())
    first = await note(user.new_request(None, {"board": "rpi4"}))
    await note(user.get_request(first))
    access = await user.acquire_worker(first)
    seen.append((access.host, access.port, access.username))
    second = await note(
        user.new_request(4, {"board": "rpi4"}, deadline=farm.clock.now() - timedelta(1))
    )
    second = await note(user.new_request(4, {"board": "rpi4"}))
    await note(user.queue_position(second))
    await note(user.update_request(second, priority=3))
    await note(user.update_request(second))
    await note(user.acquire_worker(second, wait=0.01))
    await note(user.acquire_worker(RequestID(99)))
    await note(user.new_request(0, {}))
    await note(user.new_request(None, {"board": "none"}))
    await note(bob.close_request(second))
    farm.clock.advance(timedelta(minutes=10))
    await note(user.prolong_access(first))
    await note(user.list_requests())
    waiting: RequestSpec = ListSpec(
        RequestFilter(states=frozenset({"WAITING"})), listing.request_sort_key("")
    )
    await note(user.list_requests(waiting))
    await note(user.get_worker(rpi))
    await note(user.list_workers(ListSpec(WorkerFilter(), listing.worker_sort_key("state"))))
    await note(user.set_worker_state(parked, WorkerState.IDLE))
    await note(admin.set_worker_state(parked, WorkerState.RUN))
    await note(admin.set_worker_groups(parked, ["lab"]))
    await note(admin.identify(parked, 3))
    await note(admin.run_healthcheck(parked))
    await note(admin.get_worker(parked))
    await note(admin.deregister(rpi))
    await note(user.close_request(first))
    await note(user.close_request(second))
    await note(user.update_request(second, priority=2))
    await note(admin.deregister(parked))
    await note(user.get_worker(parked))
    await note(user.list_requests())
    return seen


async def test_http_and_embedded_answer_the_same(tmp_path: Path, template: Template) -> None:
    async with open_farm(template, tmp_path / "http.db") as farm:
        transport = httpx.ASGITransport(farm.app)
        clients = [
            AsyncClient("http://boruta", farm.tokens[name], transport=transport)
            for name in ("alice", "bob", "root")
        ]
        over_http = await scenario(farm, *clients)
        for client in clients:
            await client.aclose()
    async with open_farm(template, tmp_path / "local.db") as farm:
        users = (User("alice"), User("bob"), User("root", admin=True))
        embedded = await scenario(farm, *(LocalClient(farm.service, u) for u in users))
    assert over_http == embedded
    errors = [step for step in over_http if isinstance(step, tuple) and len(step) == 2]
    assert [kind for kind, _ in errors] == [
        "DeadlineInThePast",
        "WorkerNotAssigned",
        "NotFound",
        "PriorityOutOfBounds",
        "Forbidden",
        "Forbidden",
        "WrongStateArgument",
        "NotInFailOrMaintenance",
        "ModificationForbidden",
        "NotFound",
    ]
