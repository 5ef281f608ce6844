"""Which dryads are connected, and which have been away longer than the grace period."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from coordinator.domain.ids import WorkerUUID

logger = logging.getLogger(__name__)


class Presence:
    """Link epochs per worker (odd while connected); a grace timer per disconnection.

    A timer only acts if no reconnection (or new disconnection) happened since it was
    started, so a dryad that flaps is judged by its last disconnection.
    """

    def __init__(self, grace: float, on_away: Callable[[WorkerUUID], Awaitable[None]]) -> None:
        self.grace = grace  # seconds
        self._on_away = on_away
        self._epochs: dict[WorkerUUID, int] = {}
        self._tg: TaskGroup | None = None
        self._on_up: dict[WorkerUUID, Callable[[], None]] = {}

    def start(self, tg: TaskGroup) -> None:
        """Grace timers run in ``tg`` from now on."""
        self._tg = tg

    def connected(self, uuid: WorkerUUID) -> bool:
        return self._epochs.get(uuid, 0) % 2 == 1

    def up(self, uuid: WorkerUUID) -> None:
        if not self.connected(uuid):
            self._epochs[uuid] = self._epochs.get(uuid, 0) + 1
            logger.info("worker %s: link up", uuid)
            if (then := self._on_up.pop(uuid, None)) is not None:
                then()

    def when_up(self, uuid: WorkerUUID, then: Callable[[], None]) -> None:
        """Call ``then`` when the worker's link comes up next (once)."""
        self._on_up[uuid] = then

    def down(self, uuid: WorkerUUID) -> None:
        if self.connected(uuid):
            self._epochs[uuid] += 1
            logger.warning("worker %s: link down; %.0f s grace", uuid, self.grace)
            self.watch(uuid)

    def watch(self, uuid: WorkerUUID) -> None:
        """Start a grace timer for a worker that is not connected now."""
        if self._tg is not None and not self.connected(uuid):
            self._tg.start_soon(self._expire, uuid, self._epochs.get(uuid, 0))

    async def _expire(self, uuid: WorkerUUID, epoch: int) -> None:
        await anyio.sleep(self.grace)
        if self._epochs.get(uuid, 0) == epoch:
            await self._on_away(uuid)
