"""Quotas, fair order and their admin operations in the service (docs/scheduling.md), on a
real SQLite store with a fake clock."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from coordinator.domain import listing
from coordinator.domain.clock import FakeClock
from coordinator.domain.fairshare import Policy, Scheduling
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import ListSpec, RequestFilter
from coordinator.domain.model import Request, User
from coordinator.domain.quotas import Quota, Quotas
from coordinator.domain.states import RequestState
from coordinator.errors import BadQuota, Forbidden, JobQuotaReached, NotFound, QuotaExceeded
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.service.quotas import QuotaAdmin
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import (
    ADMIN,
    ALICE,
    BOB,
    RecordingDryads,
    RecordingTunnels,
    idle_worker,
    until,
    uuid_of,
)

pytestmark = pytest.mark.anyio

CI = User("ci", groups=("ci",))


@pytest.fixture
def admin(service: Service, store: SqlStore, clock: FakeClock) -> QuotaAdmin:
    for n, user in enumerate((ALICE, BOB, CI)):
        store.add_user(user, f"hash-{n}")
    return QuotaAdmin(service, store, clock)


@pytest.fixture
async def parked(service: Service) -> None:
    """A worker in MAINTENANCE: requests wait (no worker is IDLE) instead of being INVALID."""
    await service.register({"UUID": uuid_of(9)}, "10.0.0.9:22")
    await service.set_worker_groups(ADMIN, uuid_of(9), ["ci"])


def _waiting(service: Service) -> list[int]:
    return [r.id for r in service.farm.requests.values() if r.state is RequestState.WAITING]


async def test_over_the_waiting_limit_creation_is_refused_with_limit_and_count(
    service: Service, admin: QuotaAdmin, parked: None
) -> None:
    await admin.set_quota(ADMIN, "user", "alice", Quota(max_waiting=2))
    first = await service.new_request(ALICE, 8, {})
    await service.new_request(ALICE, 8, {})
    with pytest.raises(QuotaExceeded, match="alice has 2 requests waiting, the limit is 2"):
        await service.new_request(ALICE, 8, {})
    assert len(_waiting(service)) == 2
    await service.new_request(BOB, 8, {})  # others are not limited
    await service.close_request(ALICE, first)
    await service.new_request(ALICE, 8, {})  # under the limit again


async def test_a_burst_counts_its_own_requests_against_the_limit(
    service: Service, admin: QuotaAdmin, parked: None
) -> None:
    await admin.set_quota(ADMIN, "group", "ci", Quota(max_waiting=3))
    results: list[object] = []

    async def one() -> None:
        try:
            results.append(await service.new_request(CI, 8, {}))
        except QuotaExceeded as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 2
    assert len(_waiting(service)) == 3


async def test_over_the_held_limit_a_request_waits_says_why_and_runs_when_under(
    service: Service, admin: QuotaAdmin
) -> None:
    for n in (1, 2, 3):
        await idle_worker(service, n)
    await admin.set_quota(ADMIN, "user", "alice", Quota(max_held=1))
    first = await service.new_request(ALICE, 8, {})
    second = await service.new_request(ALICE, 8, {})
    assert (await service.get_request(first)).state is RequestState.IN_PROGRESS
    req = await service.get_request(second)
    assert req.state is RequestState.WAITING
    assert req.reason == "over quota: holds 1 of 1 boards"
    page = await service.list_requests(_all())
    assert [r.reason for r in page.items if r.id == second] == ["over quota: holds 1 of 1 boards"]
    bob = await service.new_request(BOB, 8, {})  # someone else takes a board meanwhile
    assert (await service.get_request(bob)).state is RequestState.IN_PROGRESS
    await service.close_request(ALICE, first)  # under the limit: matched at once
    done = await service.get_request(second)
    assert done.state is RequestState.IN_PROGRESS and done.reason == ""


async def test_raising_a_limit_lets_waiting_requests_through_at_once(
    service: Service, admin: QuotaAdmin
) -> None:
    await idle_worker(service, 1)
    await admin.set_quota(ADMIN, "user", "alice", Quota(max_held=0))
    rid = await service.new_request(ALICE, 8, {})
    assert (await service.get_request(rid)).reason == "over quota: holds 0 of 0 boards"
    await admin.set_quota(ADMIN, "user", "alice", Quota(max_held=1))
    assert (await service.get_request(rid)).state is RequestState.IN_PROGRESS


async def test_removing_a_quota_frees_its_members(service: Service, admin: QuotaAdmin) -> None:
    await idle_worker(service, 1, groups=("ci",))
    await admin.set_quota(ADMIN, "group", "ci", Quota(max_held=0))
    rid = await service.new_request(CI, 8, {})
    assert (await service.get_request(rid)).state is RequestState.WAITING
    await admin.delete_quota(ADMIN, "group", "ci")
    assert (await service.get_request(rid)).state is RequestState.IN_PROGRESS
    assert admin.quotas() == Quotas()
    with pytest.raises(NotFound, match="quota of group ci not found"):
        await admin.delete_quota(ADMIN, "group", "ci")


async def test_a_jobs_length_is_capped_by_its_owners_quota(
    service: Service, admin: QuotaAdmin, clock: FakeClock
) -> None:
    await idle_worker(service, 1)
    await admin.set_quota(ADMIN, "user", "alice", Quota(max_job=timedelta(minutes=70)))
    rid = await service.new_request(ALICE, 8, {})
    job = (await service.get_request(rid)).job
    assert job is not None and job.timeout - job.started == timedelta(hours=1)
    clock.advance(timedelta(minutes=30))
    await service.prolong_access(ALICE, rid)
    job = (await service.get_request(rid)).job
    assert job is not None and job.timeout - job.started == timedelta(minutes=70)
    with pytest.raises(JobQuotaReached, match="jobs of alice may last at most 4200 s"):
        await service.prolong_access(ALICE, rid)


async def test_quota_input_is_checked_before_anything_changes(
    service: Service, admin: QuotaAdmin, store: SqlStore
) -> None:
    with pytest.raises(Forbidden):
        await admin.set_quota(ALICE, "user", "alice", Quota(max_held=9))
    with pytest.raises(Forbidden):
        await admin.delete_quota(ALICE, "user", "alice")
    with pytest.raises(BadQuota, match="MaxHeld must be a whole number from 0 to 10000"):
        await admin.set_quota(ADMIN, "user", "alice", Quota(max_held=-1))
    with pytest.raises(NotFound, match="user mallory not found"):
        await admin.set_quota(ADMIN, "user", "mallory", Quota(max_held=1))
    with pytest.raises(NotFound, match="group nobody not found"):
        await admin.set_quota(ADMIN, "group", "nobody", Quota(max_held=1))
    assert store.quotas() == Quotas() and admin.quotas() == Quotas()


async def test_a_group_only_workers_have_is_known(service: Service, admin: QuotaAdmin) -> None:
    await idle_worker(service, 1, groups=("rack7",))
    await admin.set_quota(ADMIN, "group", "rack7", Quota(max_held=2))
    assert admin.quotas().groups == {"rack7": Quota(max_held=2)}


async def test_fair_order_puts_the_light_user_first_and_positions_follow(
    service: Service, admin: QuotaAdmin, clock: FakeClock
) -> None:
    worker = await idle_worker(service, 1, groups=("ci",))
    running = await service.new_request(CI, 8, {})
    flood = [await service.new_request(CI, 8, {}) for _ in range(3)]
    person = await service.new_request(BOB, 8, {})
    clock.advance(timedelta(minutes=30))  # ci's running job counts as usage
    assert [service.queue_position(r) for r in (*flood, person)] == [0, 1, 2, 3]
    scheduling = await admin.set_scheduling(ADMIN, Policy.FAIR, None)
    assert scheduling == Scheduling(Policy.FAIR, timedelta(days=1))
    assert [service.queue_position(r) for r in (*flood, person)] == [1, 2, 3, 0]
    await service.close_request(CI, running)
    await until(service, lambda: service.farm.requests[person].state is RequestState.IN_PROGRESS)
    assert (await service.get_request(person)).job.worker == worker  # type: ignore[union-attr]
    assert sorted(_waiting(service)) == sorted(flood)  # nothing lost
    await admin.set_scheduling(ADMIN, Policy.FIFO, None)
    assert [service.queue_position(r) for r in flood] == [0, 1, 2]


async def test_scheduling_input_is_checked(service: Service, admin: QuotaAdmin) -> None:
    with pytest.raises(BadQuota, match="half-life must be from 60"):
        await admin.set_scheduling(ADMIN, None, timedelta(0))
    with pytest.raises(Forbidden):
        await admin.set_scheduling(ALICE, Policy.FAIR, None)
    assert admin.scheduling() == Scheduling()
    got = await admin.set_scheduling(ADMIN, None, timedelta(hours=2))
    assert got == Scheduling(Policy.FIFO, timedelta(hours=2))


async def test_usage_is_charged_when_a_job_ends_and_survives_a_restart(
    service: Service,
    admin: QuotaAdmin,
    store: SqlStore,
    clock: FakeClock,
    dryads: RecordingDryads,
    tunnels: RecordingTunnels,
) -> None:
    await idle_worker(service, 1)
    rid = await service.new_request(ALICE, 8, {})
    clock.advance(timedelta(minutes=10))
    report = await admin.usage()
    assert [(u.name, u.holds) for u in report.users] == [("bob", 0), ("ci", 0), ("alice", 1)]
    assert report.users[-1].usage == pytest.approx(600, rel=1e-2)
    await service.close_request(ALICE, rid)
    stored = store.usage()["alice"]
    assert stored.value == pytest.approx(600, rel=1e-2) and stored.at == clock.now()
    again = Service(store, dryads, tunnels, clock, keys=KeyPool(1, processes=False))
    async with anyio.create_task_group() as tg:
        await tg.start(again.run)
        assert again.farm.usage == service.farm.usage
        tg.cancel_scope.cancel()


def _all() -> ListSpec[Request, RequestID]:
    return ListSpec(RequestFilter(), listing.request_sort_key(""))


async def test_a_restart_counts_the_boards_held_and_keeps_the_limit(
    service: Service,
    admin: QuotaAdmin,
    store: SqlStore,
    clock: FakeClock,
    dryads: RecordingDryads,
    tunnels: RecordingTunnels,
) -> None:
    for n in (1, 2):
        await idle_worker(service, n)
    await admin.set_quota(ADMIN, "user", "alice", Quota(max_held=1))
    await service.new_request(ALICE, 8, {})
    again = Service(store, dryads, tunnels, clock, keys=KeyPool(1, processes=False))
    async with anyio.create_task_group() as tg:
        await tg.start(again.run)
        assert again.farm.held == {"alice": 1}
        assert again.farm.quotas == Quotas(users={"alice": Quota(max_held=1)})
        tg.cancel_scope.cancel()
