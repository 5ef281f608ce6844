"""The service's side of the dryad link: grace period, health, buttons, identify, panels."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import DryadUnreachable, Forbidden
from coordinator.service.operations import Service
from coordinator.wire import CheckResult, HealthReport
from tests.coordinator.doubles import (
    ADMIN,
    ALICE,
    RecordingDryads,
    RecordingTunnels,
    idle_worker,
    until,
    uuid_of,
)

pytestmark = pytest.mark.anyio

BROKEN_STM = HealthReport(
    (CheckResult("stm", False, True, "no answer"), CheckResult("disk", True, False, "5 GB"))
)
LOW_DISK = HealthReport((CheckResult("disk", False, False, "12 MB free"),))
ALL_GOOD = HealthReport((CheckResult("stm", True, True, "v1.2"),))


async def test_a_dryad_away_past_the_grace_period_fails_its_worker_and_job(
    service: Service,
) -> None:
    uuid = await idle_worker(service, 1)
    service.link_up(uuid)
    rid = await service.new_request(ALICE, 8, {})
    service.link_grace = 0.01
    service.link_down(uuid)
    await until(service, lambda: service.get_worker(uuid).state is WorkerState.FAIL)
    assert service.get_worker(uuid).reason == "disconnected"
    assert (await service.get_request(rid)).state is RequestState.FAILED


async def test_a_dryad_back_within_the_grace_period_keeps_its_job(service: Service) -> None:
    uuid = await idle_worker(service, 1)
    service.link_up(uuid)
    rid = await service.new_request(ALICE, 8, {})
    service.link_grace = 0.05
    service.link_down(uuid)
    service.link_up(uuid)
    with anyio.move_on_after(0.2):  # well past the grace period: nothing may change
        await service.changed()
    assert service.connected(uuid)
    assert service.get_worker(uuid).state is WorkerState.RUN
    assert (await service.get_request(rid)).state is RequestState.IN_PROGRESS


async def test_a_failed_critical_check_fails_the_worker_with_the_check_as_reason(
    service: Service,
) -> None:
    uuid = await idle_worker(service, 1)
    await service.report_health(uuid, BROKEN_STM)
    worker = service.get_worker(uuid)
    assert worker.state is WorkerState.FAIL
    assert worker.reason == "healthcheck stm failed: no answer"
    assert service.last_health(uuid) is not None


async def test_a_failed_minor_check_is_recorded_but_keeps_the_worker_in_service(
    service: Service, store
) -> None:
    uuid = await idle_worker(service, 1)
    await service.report_health(uuid, LOW_DISK)
    assert service.get_worker(uuid).state is WorkerState.IDLE
    notes = [t.reason for t in store.transitions(subject=uuid)]
    assert "healthcheck: disk FAILED" in notes


async def test_with_self_heal_passing_checks_bring_a_failed_worker_back(service: Service) -> None:
    uuid = await idle_worker(service, 1)
    await service.report_health(uuid, BROKEN_STM)
    service.self_heal = True
    await service.report_health(uuid, ALL_GOOD)
    await until(service, lambda: service.get_worker(uuid).state is WorkerState.IDLE)


async def test_without_self_heal_a_failed_worker_stays_failed(service: Service) -> None:
    uuid = await idle_worker(service, 1)
    await service.report_health(uuid, BROKEN_STM)
    await service.report_health(uuid, ALL_GOOD)
    assert service.get_worker(uuid).state is WorkerState.FAIL


async def test_a_button_press_is_in_the_workers_history(service: Service, store) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    await service.button(uuid_of(1), 2)
    assert store.transitions(subject=uuid_of(1))[-1].reason == "button 2 pressed"


async def test_identify_and_healthcheck_are_for_admins_and_reach_the_dryad(
    service: Service, dryads: RecordingDryads
) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    with pytest.raises(Forbidden):
        await service.identify(ALICE, uuid_of(1), 10)
    await service.identify(ADMIN, uuid_of(1), 10)
    report = await service.run_healthcheck(ADMIN, uuid_of(1))
    assert report == dryads.report
    assert [c[0] for c in dryads.calls][-2:] == ["identify", "healthcheck"]


async def test_an_unreachable_dryad_is_a_clear_error(
    service: Service, dryads: RecordingDryads
) -> None:
    await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
    dryads.fail = "dryad not connected"
    with pytest.raises(DryadUnreachable, match="dryad not connected"):
        await service.run_healthcheck(ADMIN, uuid_of(1))


async def test_a_connected_board_is_told_what_to_show(
    service: Service, dryads: RecordingDryads
) -> None:
    uuid = await idle_worker(service, 1)
    service.link_up(uuid)
    await service.new_request(ALICE, 8, {})
    await wait_all_tasks_blocked()
    worker, panel = dryads.shown[-1]
    assert (worker, panel.state, panel.owner) == (uuid, "RUNNING", "alice")
    assert panel.until


async def test_a_failed_job_releases_its_user_on_the_board(
    service: Service, dryads: RecordingDryads
) -> None:
    uuid = await idle_worker(service, 1)
    await service.new_request(ALICE, 8, {})
    await service.set_fail(uuid, "power lost")
    await wait_all_tasks_blocked()
    assert ("release", uuid, "") in dryads.calls


async def test_a_board_that_registers_again_is_told_what_to_show(
    service: Service, dryads: RecordingDryads
) -> None:
    """A restarted dryad shows its boot screen; its state did not change, its view must come."""
    uuid = await idle_worker(service, 1)
    service.link_up(uuid)
    await service.new_request(ALICE, 8, {})
    await wait_all_tasks_blocked()
    dryads.shown.clear()
    await service.register({"UUID": uuid}, "10.0.0.1:22")
    await wait_all_tasks_blocked()
    worker, panel = dryads.shown[-1]
    assert (worker, panel.state, panel.owner) == (uuid, "RUNNING", "alice")


async def _tunnelled_job(
    service: Service, tunnels: RecordingTunnels
) -> tuple[WorkerUUID, RequestID]:
    """A linked worker running a job whose tunnel is open: (its UUID, the request ID)."""
    uuid = await idle_worker(service, 1)
    service.link_up(uuid)
    rid = await service.new_request(ALICE, 8, {})
    await until(service, lambda: rid in tunnels.open_now)
    return uuid, rid


async def test_a_relinked_worker_has_its_running_jobs_tunnel_opened_again(
    service: Service, tunnels: RecordingTunnels
) -> None:
    uuid, rid = await _tunnelled_job(service, tunnels)
    tunnels.open_now.clear()
    await service.relinked(uuid)  # its link moved: the tunnel opens where it is now
    assert tunnels.open_now == {rid: uuid}
    await service.relinked(uuid_of(2))  # no such worker, no job: nothing
    assert tunnels.open_now == {rid: uuid}


async def test_a_job_that_ends_while_its_tunnel_moves_keeps_no_tunnel(
    service: Service, tunnels: RecordingTunnels
) -> None:
    uuid, rid = await _tunnelled_job(service, tunnels)
    opening = anyio.Event()
    go_on = anyio.Event()
    plain_open = tunnels.open

    async def slow_open(rid_: Any, worker: Any) -> tuple[str, int]:
        opening.set()
        await go_on.wait()
        return await plain_open(rid_, worker)

    tunnels.open = slow_open  # type: ignore[method-assign,assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.relinked, uuid)
        await opening.wait()
        await service.close_request(ALICE, rid)
        await until(service, lambda: rid not in tunnels.open_now)
        go_on.set()
    assert tunnels.open_now == {}
