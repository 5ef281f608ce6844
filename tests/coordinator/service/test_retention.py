"""A service that holds only a few finished requests answers as if it held them all, also
after a restart (docs/architecture.md §requests in memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import pytest

from coordinator.domain import listing
from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import ListSpec, RequestFilter
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import BorutaError
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import (
    ALICE,
    BOB,
    RecordingDryads,
    RecordingTunnels,
    idle_worker,
    until,
    uuid_of,
)

pytestmark = pytest.mark.anyio

SPECS: list[ListSpec[Any, RequestID]] = [
    ListSpec(RequestFilter(), listing.request_sort_key(item), descending, anchor, backward, n)
    for item in ("", "priority", "state", "deadline")
    for descending in (False, True)
    for anchor in (None, RequestID(2), RequestID(9))
    for backward in (False, True)
    for n in (0, 3)
] + [
    ListSpec(flt, listing.request_sort_key("id"))
    for flt in (
        RequestFilter(states=frozenset({"DONE"})),
        RequestFilter(states=frozenset({"CANCELLED", "WAITING"})),
        RequestFilter(ids=frozenset({1, 5, 40}), priorities=frozenset({3})),
        RequestFilter(priorities=frozenset({8})),
    )
]


@asynccontextmanager
async def running(store: SqlStore, clock: FakeClock, keep: int | None) -> AsyncIterator[Service]:
    svc = Service(
        store, RecordingDryads(), RecordingTunnels(), clock, keys=KeyPool(2, processes=False),
        finished_in_memory=keep,
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        yield svc
        tg.cancel_scope.cancel()


async def history(service: Service, clock: FakeClock) -> None:
    """Jobs run and closed, requests cancelled while waiting, and some left waiting."""
    worker = await idle_worker(service, 1, {"board": "a"})
    for n in range(12):
        rid = await service.new_request(ALICE, 3 + n % 6, {"board": "a" if n % 4 else "b"})
        if n % 3 and n % 4:
            await service.close_request(ALICE, rid)  # DONE, or CANCELLED while waiting
        await until(service, lambda: service.get_worker(worker).state is not WorkerState.PREPARE)
        clock.advance(timedelta(seconds=1))
    await service.new_request(BOB, 8, {"board": "none"})  # INVALID
    # The last job's end sends the worker through PREPARE: wait for the matcher after it.
    await until(service, lambda: service.get_worker(worker).state is WorkerState.RUN)


async def answer(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except BorutaError as exc:
        return (type(exc).__name__, str(exc))


async def answers(service: Service) -> list[Any]:
    """Every request, every listing, and what operations on each request say."""
    got: list[Any] = []
    for n in range(16):
        rid = RequestID(n)
        req = await answer(partial(service.get_request, rid))
        got.append(req)
        got.append(service.queue_position(rid))
        got.append(await answer(partial(service.acquire_worker, BOB, rid)))
        got.append(await answer(partial(service.close_request, BOB, rid)))
        if not isinstance(req, tuple) and req.state not in _LIVE:  # changes nothing
            got.append(await answer(partial(service.update_request, ALICE, rid, 2, None, None)))
            got.append(await answer(partial(service.close_request, ALICE, rid)))
            got.append(await answer(partial(service.acquire_worker, ALICE, rid)))
    got.extend([await answer(partial(service.list_requests, spec)) for spec in SPECS])
    return got


async def test_answers_are_the_same_with_three_finished_requests_in_memory(
    tmp_path: Any, clock: FakeClock
) -> None:
    results = []
    for keep in (None, 3):
        store = SqlStore.open(tmp_path / f"keep-{keep}.db")
        store.migrate()
        try:
            now = FakeClock(clock.now())
            async with running(store, now, keep) as service:
                await history(service, now)
                finished = [r for r in service.farm.requests.values() if r.state not in _LIVE]
                results.append((len(finished), await answers(service)))
            async with running(store, now, keep) as again:
                assert await answers(again) == results[-1][1]  # after a restart too
                assert await again.new_request(ALICE, 8, {"board": "a"}) == 14
        finally:
            store.close()
    (all_held, everything), (few_held, bounded) = results
    assert (all_held, few_held) == (10, 3)
    assert bounded == everything


_LIVE = (RequestState.WAITING, RequestState.IN_PROGRESS)


async def test_a_request_that_ends_during_acquire_wait_answers_not_assigned(
    store: SqlStore, clock: FakeClock
) -> None:
    async with running(store, clock, 0) as service:
        await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")  # in MAINTENANCE
        rid = await service.new_request(ALICE, 8, {})  # it waits
        outcome: list[Any] = []

        async def acquire() -> None:
            outcome.append(await answer(lambda: service.acquire_worker(ALICE, rid, wait=30)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(acquire)
            await anyio.wait_all_tasks_blocked()
            await service.close_request(ALICE, rid)
        assert rid not in service.farm.requests  # let go at once
        assert outcome == [("WorkerNotAssigned", str(outcome[0][1]))]


async def test_timers_and_memory_stay_flat_over_many_cycles(
    store: SqlStore, clock: FakeClock
) -> None:
    async with running(store, clock, 5) as service:
        await idle_worker(service, 1)
        for _ in range(150):
            rid = await service.new_request(ALICE, 8, {})
            await service.close_request(ALICE, rid)
            clock.advance(timedelta(seconds=1))
        farm = service.farm
        assert len(farm.requests) <= 6 and farm.left_out >= 144
        timers = service.timers  # the pending view's: the committed farm keeps none
        assert len(timers) <= 1 and timers.size <= 1 + 64
