"""The no-fit scan after a worker changes: only a worker that lost a cap (or was removed)
can leave a waiting request without a worker, and only one it fitted."""

from __future__ import annotations

from collections.abc import Generator

import anyio
import anyio.lowlevel
import pytest

from coordinator.domain.ids import RequestID
from coordinator.domain.matcher import STEP_NEEDS
from coordinator.domain.states import RequestState, WorkerState
from coordinator.service.cascade import stepwise
from coordinator.service.operations import Service
from tests.coordinator.doubles import ADMIN, ALICE, until, uuid_of

pytestmark = pytest.mark.anyio


async def _states(service: Service, *rids: RequestID) -> list[RequestState]:
    return [(await service.get_request(rid)).state for rid in rids]


async def test_a_worker_that_loses_a_cap_invalidates_only_what_it_alone_fitted(
    service: Service,
) -> None:
    one, two = uuid_of(1), uuid_of(2)
    await service.register({"UUID": one, "board": "odroid", "usb": "yes"}, "10.0.0.1:22")
    await service.register({"UUID": two, "board": "rpi"}, "10.0.0.2:22")
    usb = await service.new_request(ALICE, 8, {"board": "odroid", "usb": "yes"})
    odroid = await service.new_request(ALICE, 8, {"board": "odroid"})
    rpi = await service.new_request(ALICE, 8, {"board": "rpi"})
    await service.register({"UUID": two, "board": "rpi", "extra": "x"}, "10.0.0.2:22")
    assert await _states(service, usb, odroid, rpi) == [RequestState.WAITING] * 3
    await service.register({"UUID": one, "board": "odroid"}, "10.0.0.1:22")  # usb lost
    assert await _states(service, usb, odroid, rpi) == [
        RequestState.INVALID,
        RequestState.WAITING,
        RequestState.WAITING,
    ]
    await service.register({"UUID": two, "board": "odroid"}, "10.0.0.2:22")  # rpi lost
    assert await _states(service, odroid, rpi) == [RequestState.WAITING, RequestState.INVALID]


async def test_a_new_worker_leaves_every_waiting_request_waiting(service: Service) -> None:
    await service.register({"UUID": uuid_of(1), "board": "odroid"}, "10.0.0.1:22")
    rid = await service.new_request(ALICE, 8, {"board": "odroid"})
    await service.register({"UUID": uuid_of(2), "board": "rpi"}, "10.0.0.2:22")
    assert await _states(service, rid) == [RequestState.WAITING]


async def test_a_worker_that_fits_nothing_leaves_the_queue_as_it_was(service: Service) -> None:
    await service.register({"UUID": uuid_of(1), "board": "odroid"}, "10.0.0.1:22")
    await service.register({"UUID": uuid_of(2), "board": "rpi"}, "10.0.0.2:22")
    waiting = [await service.new_request(ALICE, 8, {"board": "odroid"}) for _ in range(3)]
    await service.set_worker_state(ADMIN, uuid_of(2), WorkerState.IDLE)  # fits none of them
    await until(service, lambda: service.get_worker(uuid_of(2)).state is WorkerState.IDLE)
    assert await _states(service, *waiting) == [RequestState.WAITING] * 3
    await service.set_worker_state(ADMIN, uuid_of(1), WorkerState.IDLE)
    await until(service, lambda: service.get_worker(uuid_of(1)).state is WorkerState.RUN)
    assert await _states(service, *waiting) == [
        RequestState.IN_PROGRESS,
        RequestState.WAITING,
        RequestState.WAITING,
    ]


async def test_a_worker_gone_strands_every_need_only_it_fitted(service: Service) -> None:
    """More distinct needs than one step of the scan judges (``STEP_NEEDS``)."""
    keys = [f"c{n}" for n in range(9)]  # 511 non-empty subsets: 511 distinct needs
    assert 2 ** len(keys) - 1 > STEP_NEEDS
    await service.register({"UUID": uuid_of(1), **dict.fromkeys(keys, "y")}, "10.0.0.1:22")
    await service.register({"UUID": uuid_of(2), "c0": "y"}, "10.0.0.2:22")
    subsets = [
        {k: "y" for bit, k in enumerate(keys) if mask >> bit & 1}
        for mask in range(1, 2 ** len(keys))
    ]
    made: dict[int, RequestID] = {}

    async def create(mask: int, caps: dict[str, str]) -> None:
        made[mask] = await service.new_request(ALICE, 8, caps)

    async with anyio.create_task_group() as tasks:
        for mask, caps in enumerate(subsets, 1):
            tasks.start_soon(create, mask, caps)
    await service.deregister(ADMIN, uuid_of(1))
    states = {mask: (await service.get_request(rid)).state for mask, rid in made.items()}
    assert states.pop(1) is RequestState.WAITING  # {"c0": "y"}: worker 2 still fits it
    assert set(states.values()) == {RequestState.INVALID}


async def test_a_stepwise_scan_lets_other_tasks_run_at_each_pause() -> None:
    seen: list[str] = []

    def scan() -> Generator[None, None, str]:
        for part in range(3):
            seen.append(f"scan {part}")
            yield
        return "done"

    async def other() -> None:
        for _ in range(3):
            seen.append("other")
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other)
        assert await stepwise(scan()) == "done"
    assert seen[:4] == ["scan 0", "other", "scan 1", "other"]
