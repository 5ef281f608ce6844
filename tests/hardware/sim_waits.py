"""Waiting, without polling, for the simulated STM's state to satisfy a check."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from hardware.sim.pty import PtyStm


async def wait_until(sim: PtyStm, check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait, without polling, until the simulator's state satisfies *check*."""
    with anyio.fail_after(within):
        while not check():
            await sim.changed.wait()
