"""The dryad-side steps of PREPARE and BUSY, and what a board shows for its state."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from coordinator.domain.ids import WorkerUUID
from coordinator.domain.model import KeyType, Request, Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import DryadUnreachable
from coordinator.service.interfaces import Dryads
from coordinator.service.keys import KeyPool
from coordinator.wire import Display, MaintenanceMessage, WorkerState as WireState

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAINTENANCE: Final = MaintenanceMessage()  # the original's (docs/boruta-api.md §busy)
# The one place the domain's worker states become the link's: the values are the same
# (both are the original's strings); the names differ (RUN, FAIL).
WIRE_STATES: Final[dict[WorkerState, WireState]] = {
    WorkerState.MAINTENANCE: WireState.MAINTENANCE,
    WorkerState.IDLE: WireState.IDLE,
    WorkerState.RUN: WireState.RUNNING,
    WorkerState.FAIL: WireState.FAILED,
    WorkerState.PREPARE: WireState.PREPARE,
    WorkerState.BUSY: WireState.BUSY,
}

# Called with the worker, the epoch the step began at, the failure ("" if none) and the key.
Done = Callable[[WorkerUUID, int, str, bytes], Awaitable[None]]


class Steps:
    """Runs a worker's background step on its dryad and reports how it went."""

    def __init__(self, dryads: Dryads, keys: KeyPool, done: Done) -> None:
        self._dryads = dryads
        self._keys = keys
        self._done = done

    async def prepare(self, uuid: WorkerUUID, epoch: int, kind: KeyType = KeyType.RSA) -> None:
        """PREPARE: a new key; the dryad recreates the job user with it (then IDLE)."""
        key, failure = await self.rekey(uuid, kind)
        await self._done(uuid, epoch, failure, key)

    async def rekey(self, uuid: WorkerUUID, kind: KeyType) -> tuple[bytes, str]:
        """A new key of ``kind`` given to the dryad, which recreates the job user with it:
        the private key, and the failure ("" if none)."""
        key = await self._keys.get(kind)
        try:
            await self._dryads.prepare(uuid, key.public_openssh)
        except Exception as exc:  # any failure of the dryad is the worker's FAIL reason
            return key.private_pem, f"prepare failed: {exc}"
        return key.private_pem, ""

    async def maintenance(self, uuid: WorkerUUID, epoch: int) -> None:
        """BUSY: the dryad shows maintenance (then MAINTENANCE)."""
        try:
            await self._dryads.maintenance(uuid, MAINTENANCE.message)
            failure = ""
        except Exception as exc:
            failure = f"maintenance failed: {exc}"
        await self._done(uuid, epoch, failure, b"")


async def ask(uuid: WorkerUUID, call: Awaitable[T]) -> T:
    """A dryad's answer to ``call``; its failure, whatever it was, is ``DryadUnreachable``."""
    try:
        return await call
    except Exception as exc:
        raise DryadUnreachable(f"worker {uuid}: {exc}") from exc


async def tell(uuid: WorkerUUID, what: str, call: Awaitable[None]) -> None:
    """Deliver a message the worker's state does not depend on; a failure is only logged."""
    try:
        await call
    except Exception as exc:
        logger.warning("worker %s: %s not delivered: %s", uuid, what, exc)


def wire_state(state: WorkerState) -> WireState:
    """``state`` as the link says it (``display``, the answer to ``register``)."""
    return WIRE_STATES[state]


def panel_for(worker: Worker, running: Request | None) -> Display:
    """What the board should show: the owner and end of a job, the maintenance message,
    or the reason of a failure."""
    state = wire_state(worker.state)
    if worker.state is WorkerState.RUN and running is not None and running.job is not None:
        return Display(state, owner=running.owner, until=running.job.timeout.isoformat())
    if worker.state in (WorkerState.BUSY, WorkerState.MAINTENANCE):
        return Display.for_maintenance(MAINTENANCE, state)
    return Display(state, reason=worker.reason)
