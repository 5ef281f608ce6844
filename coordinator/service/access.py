"""Where users reach each running job: its tunnel's host and port, or why a matched request
got no tunnel; and the callers of ``acquire_worker?wait=`` waiting for a match."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Request, Worker
from coordinator.errors import TunnelUnavailable, WorkerNotAssigned
from coordinator.service.interfaces import Tunnels

logger = logging.getLogger(__name__)


class Access:
    """Per request, only while it is live: every entry goes when the request ends."""

    def __init__(self, tunnels: Tunnels) -> None:
        self._tunnels = tunnels
        self._open: dict[RequestID, tuple[str, int]] = {}
        self._refused: dict[RequestID, TunnelUnavailable] = {}  # acquire_worker says why
        self._waiters: dict[RequestID, anyio.Event] = {}

    def address(self, rid: RequestID) -> tuple[str, int] | None:
        return self._open.get(rid)

    def refusal(self, rid: RequestID) -> Exception:
        """Why there is no access: the tunnel's failure, or no worker yet."""
        return self._refused.get(rid) or WorkerNotAssigned()

    async def wait(self, rid: RequestID, seconds: float) -> None:
        """Wait up to ``seconds`` for the request's state to change (unless its tunnel
        failed already: that is the answer)."""
        if rid in self._refused:
            return
        event = self._waiters.setdefault(rid, anyio.Event())
        with anyio.move_on_after(seconds):
            await event.wait()

    def changed(self, rid: RequestID, final: bool) -> None:
        """The request's state changed (and it ``final``ly ended)."""
        if (event := self._waiters.pop(rid, None)) is not None:
            event.set()
        if final:
            self._refused.pop(rid, None)  # its last reason is of no use any more

    async def open(self, rid: RequestID, worker: Worker) -> bool:
        """Open the request's tunnel to ``worker``; False (logged) when it cannot be."""
        try:
            self._open[rid] = await self._tunnels.open(rid, worker)
        except Exception as exc:
            known = isinstance(exc, TunnelUnavailable)  # a reason, where a bug needs a trace
            logger.error(
                "request %s: no tunnel to %s: %s", rid, worker.uuid, exc, exc_info=not known
            )
            if isinstance(exc, TunnelUnavailable):
                self._refused[rid] = exc
                self._waiters.pop(rid, anyio.Event()).set()  # acquire_worker?wait= learns it now
            return False
        self._refused.pop(rid, None)
        return True

    async def reopen(
        self, req: Request, worker: Worker, running: Callable[[], Request | None]
    ) -> None:
        """Open ``req``'s tunnel to ``worker`` again (its link moved); closed again when
        ``running`` says the worker's job changed while it opened: no stray tunnel."""
        await self.open(req.id, worker)
        now = running()
        if now is None or now.id != req.id:
            await self.close(req.id)

    async def close(self, rid: RequestID) -> None:
        if self._open.pop(rid, None) is not None:
            await self._tunnels.close(rid)
