"""The serving lease, watched: a coordinator that lost its database to another one stops
serving, so its dryads and clients move to the one that can write."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import anyio

from coordinator.store.serving import Lease

logger = logging.getLogger("coordinator")

CHECK_EVERY: Final = 1.0  # seconds between checks of the serving lock


async def watch(
    check: Callable[[], Lease], stop: Callable[[], None], every: float, grace: float
) -> None:
    """Check the lease every ``every`` seconds; call ``stop`` and return once it is lost,
    or once the database has not answered for ``grace`` seconds.

    Nobody can take the lease over without a new epoch that this coordinator's writes
    would see, so while the database does not answer it keeps serving what it can (reads;
    writes answer 503). Past the grace it stands by: the database may be away for it
    alone (a network cut) while a standby took over, and its dryads must move to a
    coordinator that can write (docs/failover.md §standby).
    """
    unreachable_since: float | None = None
    while True:
        await anyio.sleep(every)
        lease = await anyio.to_thread.run_sync(check)
        if lease is Lease.LOST:
            logger.error("another coordinator serves the database now: this one stops serving")
            stop()
            return
        if lease is Lease.HELD:
            if unreachable_since is not None:
                logger.warning("the database answers again; this coordinator still serves it")
            unreachable_since = None
            continue
        now = time.monotonic()
        if unreachable_since is None:
            unreachable_since = now
            logger.warning(
                "cannot reach the database: serving reads, refusing writes; standing by in %g s",
                grace,
            )
        elif now - unreachable_since >= grace:
            logger.error("the database has not answered for %g s: this one stops serving", grace)
            stop()
            return
