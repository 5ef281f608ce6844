"""``tunnel_mode = "none"``: no tunnel; users dial the worker's own sshd address."""

from __future__ import annotations

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Worker
from coordinator.domain.workers import split_address


class DirectAccess:
    """No tunnel: users dial the worker's registered sshd address, as on a flat lab network.

    ``tunnels.LinkTunnels`` replaces this where boards sit behind the coordinator.
    """

    async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        return split_address(worker.ssh_address)

    async def close(self, rid: RequestID) -> None:
        return None
