"""``Pulse``: a fire wakes every waiter of that moment, and is not kept for later ones."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from coordinator.service.pulse import Pulse

pytestmark = pytest.mark.anyio


async def test_a_fire_wakes_every_task_waiting_then() -> None:
    pulse, woken = Pulse(), []

    async def waiter(n: int) -> None:
        await pulse.wait()
        woken.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        pulse.fire()
    assert sorted(woken) == [0, 1, 2]


async def test_a_fire_nobody_waited_for_is_not_kept() -> None:
    pulse, woken = Pulse(), []
    pulse.fire()

    async def waiter() -> None:
        await pulse.wait()  # for the next fire, not the one before
        woken.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        pulse.fire()
    assert woken == [True]


async def test_a_task_waiting_after_a_fire_waits_for_the_next_one() -> None:
    pulse, rounds = Pulse(), []

    async def waiter() -> None:
        await pulse.wait()
        rounds.append(1)
        await pulse.wait()
        rounds.append(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        pulse.fire()
        await anyio.wait_all_tasks_blocked()
        assert rounds == [1]
        pulse.fire()
    assert rounds == [1, 2]


async def test_a_cancelled_waiter_leaves_the_pulse_working() -> None:
    pulse = Pulse()
    with anyio.move_on_after(0.01):
        await pulse.wait()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pulse.wait)
        await anyio.wait_all_tasks_blocked()
        pulse.fire()
    await anyio.lowlevel.checkpoint()
