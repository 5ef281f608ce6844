"""The serving lease, watched: a coordinator that lost its database to another one stops
serving, so its dryads and clients move to the one that can write."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import anyio

from coordinator.store.serving import Lease

logger = logging.getLogger("coordinator")

CHECK_EVERY: Final = 1.0  # seconds between checks of the serving lock


async def watch(check: Callable[[], Lease], stop: Callable[[], None], every: float) -> None:
    """Check the lease every ``every`` seconds; call ``stop`` and return once it is lost.

    While the database cannot be reached, nobody can take the lease from this coordinator
    without a new epoch that its writes would see, so it keeps serving what it can (reads;
    writes answer 503) and says so once (docs/failover.md §standby).
    """
    unreachable = False
    while True:
        await anyio.sleep(every)
        lease = await anyio.to_thread.run_sync(check)
        if lease is Lease.LOST:
            logger.error("another coordinator serves the database now: this one stops serving")
            stop()
            return
        if (lease is Lease.UNKNOWN) != unreachable:
            unreachable = not unreachable
            if unreachable:
                logger.warning("cannot reach the database to check the serving lock")
            else:
                logger.warning("the database answers again; this coordinator still serves it")
