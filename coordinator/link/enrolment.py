"""A dryad's enrolment: its token checked and its key bound to its UUID in the farm's
database, by the coordinator that decides for the farm (docs/failover.md §scale-out).

A lone coordinator or the leader does it in its own store (``StoreEnrolment``), the
binding under its epoch fence; a follower holding the dryad's link passes it to the
leader (``announcer.LeaderLinks.enrol``), so a follower writes nothing of the farm's.
"""

from __future__ import annotations

from typing import Protocol

import anyio

from coordinator.domain.clock import Clock
from coordinator.domain.ids import WorkerUUID
from coordinator.store import Store


class Enrolment(Protocol):
    """Checks an enrolment token and binds a dryad's key."""

    async def enrol(self, uuid: WorkerUUID, token_hash: str, public_key: str) -> bool:
        """Whether the token (by its hash) is valid; if so ``public_key`` is bound to
        ``uuid`` now (or was already).

        :raises Conflict: when ``uuid`` is bound to another key.
        :raises StoreUnavailable: when the store cannot answer or refuses the write.
        :raises wire.RpcError: UNAVAILABLE when whoever decides cannot be reached.
        """
        ...


class StoreEnrolment:
    """Implements ``Enrolment`` in this coordinator's store (fenced while it serves)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def enrol(self, uuid: WorkerUUID, token_hash: str, public_key: str) -> bool:
        valid = await anyio.to_thread.run_sync(
            self._store.enrol_token_valid, token_hash, self._clock.now()
        )
        if valid:
            await anyio.to_thread.run_sync(self._store.bind_dryad, uuid, public_key)
        return valid
