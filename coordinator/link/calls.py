"""``WireCalls``: the ``Dryads`` port's calls, each one link method with its parameters.

The dryad link (``registry.DryadLink``) sends them on a dryad's own session; the leader's
routing (``holders.Holders``) sends them there or to the coordinator holding the link. Each
says only how one call reaches a dryad, in ``_call``."""

from __future__ import annotations

from typing import TypeVar

from coordinator import wire
from coordinator.domain.ids import WorkerUUID
from coordinator.wire import Display, HealthReport, Method

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")


class WireCalls:
    """The port's calls in the link's terms; subclasses deliver them."""

    async def _call(self, worker: WorkerUUID, method: Method[P, R], params: P) -> R:
        raise NotImplementedError

    async def prepare(self, worker: WorkerUUID, public_key: str) -> None:
        await self._call(worker, wire.PREPARE, wire.Prepare(public_key))

    async def maintenance(self, worker: WorkerUUID, message: str) -> None:
        await self._call(worker, wire.MAINTENANCE, wire.MaintenanceMessage(message))

    async def release(self, worker: WorkerUUID) -> None:
        await self._call(worker, wire.RELEASE, wire.Empty())

    async def healthcheck(self, worker: WorkerUUID) -> HealthReport:
        return await self._call(worker, wire.HEALTHCHECK, wire.Empty())

    async def identify(self, worker: WorkerUUID, seconds: float) -> None:
        await self._call(worker, wire.IDENTIFY, wire.Identify(seconds))

    async def display(self, worker: WorkerUUID, panel: Display) -> None:
        await self._call(worker, wire.DISPLAY, panel)
