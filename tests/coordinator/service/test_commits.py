"""Every kind of write staged during a commit shares the next one; none answers before it
is durable; a refused commit takes back what rested on it, and only that."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import cast

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.model import Transition
from coordinator.domain.quotas import Quota
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import ModificationForbidden, StoreUnavailable
from coordinator.service.batch import Batch
from coordinator.service.commits import SETTLED, Commits, Group, Staged, merged
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.service.quotas import QuotaAdmin
from coordinator.store import Changes, Store
from coordinator.store.records import Numbered
from coordinator.store.sql import SqlStore
from tests.coordinator.domain.builders import make_worker
from tests.coordinator.doubles import (
    ADMIN,
    ALICE,
    BOB,
    RecordingDryads,
    RecordingTunnels,
    idle_worker,
    uuid_of,
)
from tests.coordinator.service.gated import GatedStore

pytestmark = pytest.mark.anyio

Call = Callable[[], Awaitable[object]]


@pytest.fixture
def gated(store: SqlStore) -> GatedStore:
    return GatedStore(store)


@pytest.fixture
async def service(gated: GatedStore, clock: FakeClock) -> AsyncIterator[Service]:
    svc = Service(
        cast("Store", gated), RecordingDryads(), RecordingTunnels(), clock, keys=KeyPool(2)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        # A worker in MAINTENANCE: the requests stay WAITING rather than INVALID.
        await svc.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
        yield svc
        tg.cancel_scope.cancel()


async def run_while_gated(gated: GatedStore, first: Call, rest: list[Call]) -> list[object]:
    """Run ``first`` until its commit waits at the gate, then ``rest`` (they stage meanwhile);
    open the gate; every outcome (an answer or an exception), and none before the gate."""
    got: dict[int, object] = {}

    async def one(n: int, call: Call) -> None:
        try:
            got[n] = await call()
        except Exception as exc:
            got[n] = exc

    gated.gate.clear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, first)
        await anyio.wait_all_tasks_blocked()  # its commit is at the gate
        for n, call in enumerate(rest, 1):
            tg.start_soon(one, n, call)
        await anyio.wait_all_tasks_blocked()  # all decided and staged: the lock is free
        assert got == {}, "an answer came before its commit"
        gated.gate.set()
    return [got[n] for n in range(len(rest) + 1)]


async def test_writes_of_every_kind_staged_during_a_commit_share_the_next_one(
    service: Service, gated: GatedStore, store: SqlStore
) -> None:
    one = await service.new_request(ALICE, 8, {})
    two = await service.new_request(BOB, 8, {})
    before = len(gated.commits)
    got = await run_while_gated(
        gated,
        lambda: service.close_request(ALICE, one),
        [
            lambda: service.update_request(BOB, two, 3, None, None),
            lambda: service.register({"UUID": uuid_of(2)}, "10.0.0.2:22"),
            lambda: service.set_worker_groups(ADMIN, uuid_of(1), ["lab"]),
            lambda: service.button(uuid_of(2), 1),
            lambda: service.new_request(ALICE, 4, {}),
        ],
    )
    assert not [g for g in got if isinstance(g, Exception)]
    assert len(gated.commits) - before == 2  # the close alone, then the five together
    assert len(gated.commits[-1].transitions) == 4  # worker 2, the note, the groups, a request
    stored = {r.id: r for r in store.load().requests}
    assert stored[one].state is RequestState.CANCELLED and stored[two].priority == 3
    assert service.get_worker(uuid_of(1)).groups == ("lab",)
    assert service.get_worker(uuid_of(2)).state is WorkerState.MAINTENANCE


async def test_a_refusal_in_a_group_is_that_callers_alone(
    service: Service, gated: GatedStore
) -> None:
    one = await service.new_request(ALICE, 8, {})
    two = await service.new_request(ALICE, 8, {})
    got = await run_while_gated(
        gated,
        lambda: service.close_request(ALICE, one),
        [
            lambda: service.close_request(ALICE, two),
            lambda: service.close_request(ALICE, two),  # decided on the pending close: refused
            lambda: service.update_request(ALICE, two, 3, None, None),
        ],
    )
    assert got[:2] == [None, None]
    assert isinstance(got[2], ModificationForbidden) and isinstance(got[3], ModificationForbidden)
    assert (await service.get_request(two)).state is RequestState.CANCELLED


async def test_a_refused_commit_fails_its_group_and_the_one_staged_on_it_and_keeps_nothing(
    service: Service, gated: GatedStore, store: SqlStore
) -> None:
    one = await service.new_request(ALICE, 8, {})
    two = await service.new_request(ALICE, 8, {})
    gated.refuse = {gated.calls + 1}  # the first commit is refused
    got = await run_while_gated(
        gated,
        lambda: service.close_request(ALICE, one),
        [
            lambda: service.update_request(ALICE, two, 3, None, None),  # staged on the close
            lambda: service.close_request(ALICE, one),  # refused on it: that refusal is void
        ],
    )
    assert all(isinstance(g, StoreUnavailable) for g in got)
    stored = {r.id: r for r in store.load().requests}
    assert [stored[one].state, stored[two].priority] == [RequestState.WAITING, 8]
    # The pending view went back to what is stored: the same close now goes through.
    await service.update_request(ALICE, two, 5, None, None)
    await service.close_request(ALICE, one)
    stored = {r.id: r for r in store.load().requests}
    assert [stored[one].state, stored[two].priority] == [RequestState.CANCELLED, 5]
    assert (await service.get_request(two)).priority == 5


async def test_a_match_staged_during_a_commit_opens_its_tunnel_after_it_and_only_once_stored(
    gated: GatedStore, store: SqlStore, clock: FakeClock
) -> None:
    tunnels = RecordingTunnels()
    svc = Service(cast("Store", gated), RecordingDryads(), tunnels, clock, keys=KeyPool(2))
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        uuid = await idle_worker(svc, 1)
        gated.refuse = {gated.calls + 1}
        got = await run_while_gated(gated, lambda: svc.new_request(ALICE, 8, {}), [])
        assert isinstance(got[0], StoreUnavailable)
        assert tunnels.open_now == {} and svc.get_worker(uuid).state is WorkerState.IDLE
        rid = await svc.new_request(ALICE, 8, {})
        assert (await svc.get_request(rid)).state is RequestState.IN_PROGRESS
        assert list(tunnels.open_now) == [rid]
        tg.cancel_scope.cancel()


def test_merged_changes_keep_the_last_version_and_the_last_word_on_a_worker() -> None:
    w1, w2 = make_worker(1), make_worker(2)
    first = Changes(workers=[w1], removed_workers=[w2.uuid])
    second = Changes(workers=[w2], removed_workers=[w1.uuid])
    both = merged([first, second])
    assert (list(both.workers), list(both.removed_workers)) == ([w2], [w1.uuid])
    assert not merged([])


def _staged(clock: FakeClock, n: int) -> Staged:
    batch = Batch(clock.now(), "", {}, {}, {})
    batch.put_worker(make_worker(n))
    return Staged(batch, batch.changes())


async def test_the_committer_hands_on_what_the_store_returned_and_fails_what_it_leaves(
    clock: FakeClock,
) -> None:
    gate = threading.Event()
    seen: list[Changes] = []

    def commit(changes: Changes) -> list[Numbered]:
        gate.wait(10)
        seen.append(changes)
        return [Numbered(len(seen), Transition(clock.now(), "request", "1", "", "WAITING"))]

    async def durable(group: Group) -> None:
        stored.append([n.id for n in group.stored or ()])

    async def failed(group: Group, exc: Exception) -> None:
        raise AssertionError("nothing is refused here")

    commits, stored = Commits(commit), list[list[int]]()
    with pytest.raises(RuntimeError, match="not running"):
        commits.stage(_staged(clock, 1))
    async with anyio.create_task_group() as tg:
        await tg.start(partial(commits.run, durable, failed))
        first = commits.stage(_staged(clock, 1))
        await anyio.wait_all_tasks_blocked()  # in flight, at the gate
        second = commits.stage(_staged(clock, 2))
        assert commits.tail() is second and not first.done
        gate.set()
        await second.wait()
        assert stored == [[1], [2]] and commits.tail() is SETTLED
        gate.clear()
        commits.stage(_staged(clock, 3))
        await anyio.wait_all_tasks_blocked()
        left = commits.stage(_staged(clock, 4))  # open when the service stops
        tg.cancel_scope.cancel()
        gate.set()
    with pytest.raises(StoreUnavailable, match="stopping"):
        await left.wait()
    assert len(seen) == 3  # the one in flight was finished, shielded


async def test_a_quota_counts_the_boards_held_by_staged_matches(
    gated: GatedStore, store: SqlStore, clock: FakeClock
) -> None:
    svc = Service(
        cast("Store", gated), RecordingDryads(), RecordingTunnels(), clock, keys=KeyPool(2)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        for n in (1, 2):
            await idle_worker(svc, n)
        store.add_user(ALICE, "hash")
        await QuotaAdmin(svc, cast("Store", gated), clock).set_quota(
            ADMIN, "user", "alice", Quota(max_held=1)
        )
        got = await run_while_gated(
            gated,
            lambda: svc.new_request(ALICE, 8, {}),  # matched: alice holds one board
            [lambda: svc.new_request(ALICE, 8, {})],  # decided before that is stored
        )
        states = [(await svc.get_request(cast("RequestID", rid))).state for rid in got]
        assert states == [RequestState.IN_PROGRESS, RequestState.WAITING]
        assert svc.farm.held == {"alice": 1}
        tg.cancel_scope.cancel()
