"""``tunnel_mode = "direct"``: the coordinator dials the worker's sshd address itself."""

from __future__ import annotations

import asyncio

from coordinator.domain.model import Worker
from coordinator.domain.workers import split_address
from coordinator.tunnels.pump import Pipe, SocketEnd


class Direct:
    """Dial the worker's registered sshd address from here (a flat lab network)."""

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        host, port = split_address(worker.ssh_address)
        far = pipe.far = SocketEnd(pipe)
        await asyncio.get_running_loop().create_connection(lambda: far, host, port)
