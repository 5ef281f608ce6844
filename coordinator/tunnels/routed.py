"""``RoutedTunnels``: on the leader, a job's tunnel opens on the coordinator holding its
worker's dryad link, so tunnel traffic spreads over the coordinators
(docs/failover.md §scale-out, "step 2")."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Worker
from coordinator.errors import TunnelUnavailable
from coordinator.link import peerwire
from coordinator.link.holders import LOCAL
from coordinator.link.peerclient import PeerClient, PeerDown, PeerUnreachable
from coordinator.service.interfaces import Tunnels

logger = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0  # seconds a holder has to open a tunnel


class RoutedTunnels:
    """Implements ``Tunnels``: this coordinator's own for a local link (or none), the
    holder's for a link another coordinator holds. ``where`` names a worker's holder
    (``Holders.holder``); ``lost`` is told of a holder that refused the connection
    (``Holders.lost``: its claims go at once)."""

    def __init__(
        self,
        local: Tunnels,
        where: Callable[[WorkerUUID], str | None],
        peers: PeerClient,
        lost: Callable[[str, str], None] | None = None,
    ) -> None:
        self._local = local
        self._where = where
        self._peers = peers
        self._lost = lost
        self._remote: dict[RequestID, str] = {}  # each remote tunnel's holder
        # One open or close of a job's tunnel at a time: a link that moves twice quickly
        # must not leave the first move's tunnel open on a holder.
        self._busy: dict[RequestID, anyio.Lock] = {}

    def holder_of(self, rid: RequestID) -> str:
        """The holder serving ``rid``'s tunnel, ``LOCAL`` for this coordinator."""
        return self._remote.get(rid, LOCAL)

    async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        async with self._busy.setdefault(rid, anyio.Lock()):
            return await self._open(rid, worker)

    async def _open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        tried: set[str] = set()
        while True:
            holder = self._where(worker.uuid)
            try:
                return await self._open_on(holder, rid, worker)
            except PeerDown as exc:
                # A holder whose process is gone: its claims go, and the tunnel opens
                # where the dryad's link is now (another holder, or here).
                failed = TunnelUnavailable(f"the tunnel's coordinator {holder}: {exc}")
                if holder is None or self._lost is None:
                    raise failed from exc
                tried.add(holder)
                self._lost(holder, str(exc))
                if self._where(worker.uuid) in tried:
                    raise failed from exc

    async def _open_on(self, holder: str | None, rid: RequestID, worker: Worker) -> tuple[str, int]:
        """Open ``rid``'s tunnel on ``holder`` (here for None or ``LOCAL``).

        :raises PeerDown: when ``holder`` refused the connection.
        :raises TunnelUnavailable: when it could not be opened otherwise.
        """
        if holder is None or holder == LOCAL:
            # Nobody holds the link now: here, as a lone coordinator does, for the dryad
            # may come back to this one; it moves when the link shows up elsewhere.
            await self._close_remote(rid)
            return await self._local.open(rid, worker)
        await self._local.close(rid)
        if self._remote.get(rid) not in (None, holder):
            await self._close_remote(rid)
        order = peerwire.tunnel_order(worker.uuid, worker.ssh_address)
        path = f"{peerwire.TUNNELS}{rid}"
        try:
            status, body = await self._peers.send("PUT", holder, path, order, OPEN_TIMEOUT)
            if status != 200:
                raise TunnelUnavailable(f"{holder} did not open it: {status} {str(body)[:200]}")
            address = peerwire.read_tunnel_address(body)
        except PeerDown:
            raise
        except (PeerUnreachable, peerwire.PeerWireError) as exc:
            raise TunnelUnavailable(f"the tunnel's coordinator {holder}: {exc}") from exc
        self._remote[rid] = holder
        logger.info("tunnel of request %s: on %s at %s:%d", rid, holder, *address)
        return address

    async def close(self, rid: RequestID) -> None:
        async with self._busy.setdefault(rid, anyio.Lock()):
            if rid in self._remote:
                await self._close_remote(rid)
            else:
                await self._local.close(rid)
        self._busy.pop(rid, None)

    async def _close_remote(self, rid: RequestID) -> None:
        holder = self._remote.pop(rid, None)
        if holder is None:
            return
        try:
            await self._peers.send("DELETE", holder, f"{peerwire.TUNNELS}{rid}", None, OPEN_TIMEOUT)
        except PeerUnreachable as exc:
            # Its tunnels went with it, or go when its links do.
            logger.warning("tunnel of request %s on %s not closed: %s", rid, holder, exc)
            if isinstance(exc, PeerDown) and self._lost is not None:
                self._lost(holder, str(exc))  # gone: its links go now, not in 10 s
