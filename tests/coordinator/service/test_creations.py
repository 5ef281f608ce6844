"""Requests asked for during a commit share the next one; each still answers for itself."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState
from coordinator.errors import PriorityOutOfBounds, StoreUnavailable
from coordinator.service import creations
from coordinator.service.creations import Creation
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store import Changes, Store
from coordinator.store.records import Numbered
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import ALICE, BOB, RecordingDryads, RecordingTunnels, uuid_of

pytestmark = pytest.mark.anyio

NONE = {"board": "none has it"}  # no registered worker has this cap


class GatedStore:
    """The real SQLite store, with commits that wait at a gate and can be made to fail."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.commits: list[Changes] = []  # those that went through
        self.calls = 0
        self.refuse: set[int] = set()  # the numbers of the calls to refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, changes: Changes) -> list[Numbered]:
        if not self.gate.wait(10):
            raise AssertionError("the test never opened the gate")
        self.calls += 1
        if self.calls in self.refuse:
            raise StoreUnavailable("database or disk is full")
        numbered = self.inner.commit(changes)
        self.commits.append(changes)
        return numbered


@pytest.fixture
def gated(store: SqlStore) -> GatedStore:
    return GatedStore(store)


@pytest.fixture
async def service(gated: GatedStore, clock: FakeClock) -> AsyncIterator[Service]:
    store = cast("Store", gated)
    svc = Service(store, RecordingDryads(), RecordingTunnels(), clock, keys=KeyPool(2))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        # A worker in MAINTENANCE: the requests stay WAITING rather than INVALID.
        await svc.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
        yield svc
        tg.cancel_scope.cancel()


async def test_requests_asked_for_during_a_commit_share_the_next_one(
    service: Service, gated: GatedStore, store: SqlStore
) -> None:
    gated.gate.clear()  # the first commit waits: the others queue up behind it
    got: dict[int, RequestID] = {}

    async def ask(n: int) -> None:
        got[n] = await service.new_request(ALICE if n % 2 else BOB, 8, {})

    before = len(gated.commits)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, 0)
        await anyio.wait_all_tasks_blocked()  # the first is in its commit, at the gate
        for n in range(1, 10):
            tg.start_soon(ask, n)
        await anyio.wait_all_tasks_blocked()
        gated.gate.set()

    assert len(gated.commits) - before == 2  # the first alone, then the nine together
    assert [len(c.requests) for c in gated.commits[before:]] == [1, 9]
    first = got[0]
    assert got == {n: RequestID(first + n) for n in range(10)}  # IDs in arrival order
    stored = {r.id: r for r in store.load().requests}
    for n, rid in got.items():
        assert stored[rid].owner == ("alice" if n % 2 else "bob")
        assert (await service.get_request(rid)).state is RequestState.WAITING
    # The audit names each request's own creator, though one commit made them all.
    created = {
        int(t.transition.subject): t.transition.actor
        for t in store.transitions_after(0, 100)
        if t.transition.kind == "request"
    }
    assert created == {rid: ("alice" if n % 2 else "bob") for n, rid in got.items()}


async def test_bad_input_in_a_group_refuses_that_request_only(
    service: Service, gated: GatedStore
) -> None:
    gated.gate.clear()
    got: dict[int, RequestID | Exception] = {}

    async def ask(n: int, priority: int, caps: dict[str, str]) -> None:
        try:
            got[n] = await service.new_request(ALICE, priority, caps)
        except PriorityOutOfBounds as exc:
            got[n] = exc

    async with anyio.create_task_group() as tg:
        for n, (priority, caps) in enumerate([(8, {}), (8, NONE), (99, {}), (8, {})]):
            tg.start_soon(ask, n, priority, caps)
        await anyio.wait_all_tasks_blocked()
        gated.gate.set()

    assert isinstance(got[2], PriorityOutOfBounds)
    ids = [cast("RequestID", got[n]) for n in (0, 1, 3)]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]  # no ID is used up by the refusal
    states = [(await service.get_request(rid)).state for rid in ids]
    assert states == [RequestState.WAITING, RequestState.INVALID, RequestState.WAITING]


async def test_a_refused_group_commit_fails_every_request_in_it_and_keeps_nothing(
    service: Service, gated: GatedStore, store: SqlStore
) -> None:
    gated.refuse = {gated.calls + 2}  # the first goes through, the group behind it not
    gated.gate.clear()
    got: dict[int, RequestID | Exception] = {}

    async def ask(n: int) -> None:
        try:
            got[n] = await service.new_request(ALICE, 8, {})
        except StoreUnavailable as exc:
            got[n] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, 0)
        await anyio.wait_all_tasks_blocked()
        for n in range(1, 5):
            tg.start_soon(ask, n)
        await anyio.wait_all_tasks_blocked()
        gated.gate.set()

    first = got[0]
    assert isinstance(first, int)
    assert all(isinstance(got[n], StoreUnavailable) for n in range(1, 5))
    assert [r.id for r in store.load().requests] == [first]
    with pytest.raises(LookupError):
        await service.get_request(RequestID(first + 1))
    # The service goes on: the next request gets the next ID, as nothing was used.
    assert await service.new_request(ALICE, 8, {}) == first + 1


async def test_a_caller_cancelled_while_waiting_creates_nothing(
    service: Service, gated: GatedStore, store: SqlStore
) -> None:
    gated.gate.clear()
    got: list[RequestID] = []

    async def ask() -> None:
        got.append(await service.new_request(ALICE, 8, {}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()  # the first holds the lock, in its commit
        async with anyio.create_task_group() as impatient:
            impatient.start_soon(ask)
            await anyio.wait_all_tasks_blocked()  # queued behind the first
            impatient.cancel_scope.cancel()
        gated.gate.set()

    assert len(got) == 1
    assert [r.id for r in store.load().requests] == got


def test_a_bug_during_the_commit_reaches_every_caller_and_goes_on_up() -> None:
    asked = [Creation(ALICE, 8, {}, None, None) for _ in range(2)]
    made = [(c, cast("Request", None)) for c in asked]
    with pytest.raises(ZeroDivisionError), creations.settled(made):
        _ = 1 / 0
    for creation in asked:
        with pytest.raises(ZeroDivisionError):
            creation.outcome()


def test_a_creation_nobody_decided_is_a_bug_not_an_id() -> None:
    with pytest.raises(RuntimeError, match="never created"):
        Creation(ALICE, 8, {}, None, None).outcome()
