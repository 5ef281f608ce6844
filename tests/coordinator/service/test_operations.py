"""The service end to end in one process: real SQLite, fake clock, recording dryads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.domain.ids import RequestID
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import Forbidden, ModificationForbidden, WorkerNotAssigned
from coordinator.service.operations import Service
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


async def test_request_gets_an_idle_worker_and_its_fresh_key(service: Service) -> None:
    uuid = await idle_worker(service, 1, {"device_type": "rpi4"})
    rid = await service.new_request(ALICE, 8, {"device_type": "rpi4"})
    req = await service.get_request(rid)
    assert req.state is RequestState.IN_PROGRESS and req.job and req.job.worker == uuid
    access = await service.acquire_worker(ALICE, rid)
    assert access.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert (access.host, access.port, access.username) == ("10.0.0.1", 20000 + rid, "boruta-user")


async def test_closing_a_job_prepares_the_worker_with_a_new_key(
    service: Service, dryads: RecordingDryads, tunnels: RecordingTunnels
) -> None:
    uuid = await idle_worker(service, 1)
    rid = await service.new_request(ALICE, 8, {})
    first = (await service.acquire_worker(ALICE, rid)).key_pem
    await service.close_request(ALICE, rid)
    assert (await service.get_request(rid)).state is RequestState.DONE
    assert rid not in tunnels.open_now
    await until(service, lambda: service.get_worker(uuid).state is WorkerState.IDLE)
    assert service.get_worker(uuid).key != first
    assert [c[0] for c in dryads.calls] == ["prepare", "prepare"]


async def test_waiting_request_is_matched_when_a_worker_becomes_idle(service: Service) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {})
    assert (await service.get_request(rid)).state is RequestState.WAITING
    await service.set_worker_state(ADMIN, uuid_of(1), WorkerState.IDLE)
    await until(service, lambda: service.farm.requests[rid].state is RequestState.IN_PROGRESS)


async def test_higher_priority_goes_first_then_fifo(service: Service) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    low = await service.new_request(ALICE, 9, {})
    first = await service.new_request(ALICE, 3, {})
    second = await service.new_request(BOB, 3, {})
    await service.set_worker_state(ADMIN, uuid_of(1), WorkerState.IDLE)
    await until(service, lambda: service.farm.requests[first].state is RequestState.IN_PROGRESS)
    assert (await service.get_request(second)).state is RequestState.WAITING
    assert service.queue_position(second) == 0 and service.queue_position(low) == 1


async def test_only_the_owner_or_an_admin_may_close(service: Service) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {})
    with pytest.raises(Forbidden):
        await service.close_request(BOB, rid)
    assert (await service.get_request(rid)).state is RequestState.WAITING
    await service.close_request(ADMIN, rid)
    assert (await service.get_request(rid)).state is RequestState.CANCELLED


async def test_worker_failing_during_a_job_fails_the_request(
    service: Service, tunnels: RecordingTunnels
) -> None:
    uuid = await idle_worker(service, 1)
    rid = await service.new_request(ALICE, 8, {})
    await service.set_fail(uuid, "STM does not answer")
    req = await service.get_request(rid)
    assert req.state is RequestState.FAILED and req.reason == "STM does not answer"
    assert service.get_worker(uuid).reason == "STM does not answer"
    assert rid not in tunnels.open_now
    with pytest.raises(WorkerNotAssigned):
        await service.acquire_worker(ALICE, rid)


async def test_job_ends_at_its_timeout_unless_prolonged(service: Service, clock) -> None:
    await idle_worker(service, 1)
    rid = await service.new_request(ALICE, 8, {})
    clock.advance(timedelta(minutes=50))
    await service.prolong_access(ALICE, rid)
    clock.advance(timedelta(minutes=50))
    await service.fire_timers()
    assert (await service.get_request(rid)).state is RequestState.IN_PROGRESS
    clock.advance(timedelta(minutes=11))
    await service.fire_timers()
    assert (await service.get_request(rid)).state is RequestState.DONE


async def test_waiting_request_times_out_at_its_deadline(service: Service, clock) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {}, deadline=clock.now() + timedelta(hours=1))
    clock.advance(timedelta(hours=1))
    await service.fire_timers()
    assert (await service.get_request(rid)).state is RequestState.TIMEOUT


async def test_request_becomes_ready_at_valid_after(service: Service, clock) -> None:
    await idle_worker(service, 1)
    rid = await service.new_request(ALICE, 8, {}, valid_after=clock.now() + timedelta(hours=1))
    assert (await service.get_request(rid)).state is RequestState.WAITING
    clock.advance(timedelta(hours=1))
    await service.fire_timers()
    assert (await service.get_request(rid)).state is RequestState.IN_PROGRESS


async def test_deregistering_the_last_fitting_worker_invalidates_waiting_requests(
    service: Service,
) -> None:
    await service.register({"UUID": uuid_of(1), "board": "odroid"}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {"board": "odroid"})
    await service.deregister(ADMIN, uuid_of(1))
    assert (await service.get_request(rid)).state is RequestState.INVALID


async def test_second_close_is_refused_and_changes_nothing(service: Service) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {})
    await service.close_request(ALICE, rid)
    with pytest.raises(ModificationForbidden):
        await service.close_request(ALICE, rid)
    assert (await service.get_request(rid)).state is RequestState.CANCELLED


async def test_failed_prepare_sends_the_worker_to_fail_with_the_reason(
    service: Service, dryads: RecordingDryads
) -> None:
    dryads.fail = "useradd: exit 12"
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    await service.set_worker_state(ADMIN, uuid_of(1), WorkerState.IDLE)
    await until(service, lambda: service.get_worker(uuid_of(1)).state is WorkerState.FAIL)
    assert "useradd: exit 12" in service.get_worker(uuid_of(1)).reason


async def test_acquire_with_wait_returns_once_matched(service: Service) -> None:
    import anyio

    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {})
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.set_worker_state, ADMIN, uuid_of(1), WorkerState.IDLE)
        access = await service.acquire_worker(ALICE, RequestID(rid), wait=10)
    assert access.port == 20000 + rid
