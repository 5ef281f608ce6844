"""``LinkTunnels``: each job's TCP listener here, its connections carried to the worker's sshd."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

import asyncssh

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Worker
from coordinator.store import Store
from coordinator.tunnels.ports import Ports, public_address
from coordinator.tunnels.pump import Pipe, SocketEnd, UserEnd

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0  # seconds to reach the sshd before the user is dropped


class Connector(Protocol):
    """How a user's connection reaches the worker's sshd."""

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        """Set ``pipe.far`` to a new end and connect it to the worker's sshd.

        :raises OSError, asyncssh.Error: when the sshd cannot be reached.
        """


@runtime_checkable
class RawConnector(Connector, Protocol):
    """A connector that takes the user's socket itself (off asyncio), with a lifecycle;
    its ``connect`` serves the connections it hands back through ``Tunnel.through_link``."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def closed(self, rid: RequestID) -> None: ...
    async def serve(self, tunnel: Tunnel, user: socket.socket, orig: tuple[str, int]) -> None:
        """Carry ``user`` to the worker's sshd; ``user`` is the connector's from the call."""


@dataclass(eq=False)
class Tunnel:
    """A job's listener and the connections accepted through it."""

    rid: RequestID
    port: int
    worker: Worker
    connector: Connector
    server: asyncio.AbstractServer | None = None
    acceptor: asyncio.Task[None] | None = None  # a RawConnector's accept loop
    pipes: set[Pipe] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def log(self, level: int, msg: str, *args: object) -> None:
        if logger.isEnabledFor(level):
            text = msg % args
            logger.log(level, "tunnel of request %s (port %d, worker %s): %s",
                       self.rid, self.port, self.worker.uuid, text)  # fmt: skip

    def accept(self) -> SocketEnd:
        pipe = Pipe(self)
        pipe.near = near = UserEnd(pipe)
        self.pipes.add(pipe)
        return near

    async def accept_raw(self, listening: socket.socket, connector: RawConnector) -> None:
        """Accept users' sockets for ``connector`` until closed."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    user, peer = await loop.sock_accept(listening)
                except OSError as exc:  # out of descriptors, say: the next try may work
                    self.log(logging.WARNING, "connection not accepted: %s", exc)
                    await asyncio.sleep(0.1)
                    continue
                orig = (str(peer[0]), int(peer[1]))
                task = loop.create_task(connector.serve(self, user, orig))
                self.tasks.add(task)
                task.add_done_callback(self._served)
        finally:
            listening.close()

    def _served(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("tunnel of request %s: connection failed", self.rid, exc_info=exc)

    async def through_link(self, user: socket.socket) -> None:
        """Carry ``user`` as the asyncio pump does (``connector.connect``)."""
        await asyncio.get_running_loop().connect_accepted_socket(self.accept, user)

    def reach(self, pipe: Pipe) -> None:
        task = asyncio.get_running_loop().create_task(self._reach(pipe))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reach(self, pipe: Pipe) -> None:
        try:
            connecting = self.connector.connect(self.worker, pipe)
            await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = _reason(exc)
            self.log(logging.WARNING, "connection from %s:%d dropped: %s", *pipe.orig, reason)
            pipe.refuse(f"worker {self.worker.uuid} unreachable: {reason}")
            return
        self.log(logging.DEBUG, "connection from %s:%d reached the sshd", *pipe.orig)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.acceptor is not None:
            self.acceptor.cancel()
        if isinstance(self.connector, RawConnector):
            self.connector.closed(self.rid)  # its relayed connections
        for pipe in list(self.pipes):
            pipe.close(None, None)
        for task in list(self.tasks):
            task.cancel()


class LinkTunnels:
    """``Tunnels`` with a TCP listener per job on a port from ``ports``.

    A job keeps its port across a coordinator restart: the port is stored when the
    tunnel opens, and the re-opening after a restart binds it again. Without a ``store``
    (a follower's tunnels: docs/failover.md §scale-out) the ports are kept in memory only.
    """

    def __init__(
        self,
        connector: Connector,
        store: Store | None,
        ports: range,
        bind: str,
        public_host: str = "",
    ) -> None:
        self._connector = connector
        self._ports = Ports(ports, bind, store)
        self._public_host = public_host
        self._host = ""  # the resolved public host, an IP literal
        self._started = False  # whether a RawConnector's start ran
        self._tunnels: dict[RequestID, Tunnel] = {}

    @property
    def host(self) -> str:
        """The address users dial (known after ``start``)."""
        return self._host

    async def start(self) -> None:
        """Resolve the public host and read the stored ports; before the service runs.

        :raises TunnelUnavailable: when the public host does not resolve, or the
            connector cannot start (the dial-back port is taken).
        """
        ports = self._ports
        host = await public_address(self._public_host, ports.bind)
        await ports.load()
        if isinstance(self._connector, RawConnector) and not self._started:
            await self._connector.start()
            self._started = True
        self._host = host
        logger.info(
            "tunnels: ports %d-%d on %s, dialled as %s",
            ports.range.start, ports.range.stop - 1, ports.bind or "*", self._host,
        )  # fmt: skip

    async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        if not self._host:
            await self.start()
        old = self._tunnels.pop(rid, None)
        if old is not None:
            old.close()
        tunnel = Tunnel(rid, 0, worker, self._connector)
        taken = {t.port for t in self._tunnels.values()}
        sock, tunnel.port = self._ports.listen(rid, taken, worker.uuid)
        loop = asyncio.get_running_loop()
        if isinstance(self._connector, RawConnector):
            tunnel.acceptor = loop.create_task(tunnel.accept_raw(sock, self._connector))
        else:
            tunnel.server = await loop.create_server(tunnel.accept, sock=sock)
        try:
            await self._ports.record(rid, tunnel.port)
        except BaseException:
            tunnel.close()
            raise
        self._tunnels[rid] = tunnel
        tunnel.log(logging.INFO, "open")
        return self._host, tunnel.port

    async def close(self, rid: RequestID) -> None:
        tunnel = self._tunnels.pop(rid, None)
        if tunnel is not None:
            tunnel.close()
            tunnel.log(logging.INFO, "closed")

    async def aclose(self) -> None:
        """Close every tunnel (at shutdown); their ports stay stored for the restart."""
        for tunnel in self._tunnels.values():
            tunnel.close()
        self._tunnels.clear()
        if isinstance(self._connector, RawConnector) and self._started:
            self._started = False
            await self._connector.stop()

    def port_of(self, rid: RequestID) -> int | None:
        """The port of ``rid``'s open tunnel (for tests and benches)."""
        tunnel = self._tunnels.get(rid)
        return None if tunnel is None else tunnel.port


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"its sshd refused the connection ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    return str(exc) or type(exc).__name__
