"""``tunnel_mode = "link"``: connections reach the worker's sshd through its dryad link."""

from __future__ import annotations

from coordinator.domain.model import Worker
from coordinator.link.registry import DryadLink
from coordinator.tunnels.pump import ChannelEnd, Pipe


class ThroughLink:
    """Through the worker's dryad link: a forwarded-tcpip channel to its sshd."""

    def __init__(self, link: DryadLink) -> None:
        self._link = link

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        far = pipe.far = ChannelEnd(pipe)
        await self._link.open_sshd(worker.uuid, lambda: far, *pipe.orig)
