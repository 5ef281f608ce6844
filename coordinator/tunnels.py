"""``LinkTunnels``: each job's TCP port here, its connections carried to the worker's sshd."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Final, Protocol

import anyio
import asyncssh

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Worker
from coordinator.domain.workers import split_address
from coordinator.errors import StoreUnavailable
from coordinator.link.registry import DryadLink
from coordinator.ports import TunnelUnavailable
from coordinator.store import Store

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0  # seconds to reach the sshd before the user is dropped
BACKLOG: Final = 16


class Transport(Protocol):
    """What both kinds of end write to: an asyncio transport or an SSH channel."""

    def write(self, data: bytes, /) -> None: ...
    def write_eof(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...


class Connector(Protocol):
    """How a user's connection reaches the worker's sshd."""

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        """Set ``pipe.far`` to a new end and connect it to the worker's sshd.

        :raises OSError, asyncssh.Error: when the sshd cannot be reached.
        """


class ThroughLink:
    """Through the worker's dryad link: a forwarded-tcpip channel to its sshd."""

    def __init__(self, link: DryadLink) -> None:
        self._link = link

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        far = pipe.far = ChannelEnd(pipe)
        await self._link.open_sshd(worker.uuid, lambda: far, *pipe.orig)


class Direct:
    """Dial the worker's registered sshd address from here (a flat lab network)."""

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        host, port = split_address(worker.ssh_address)
        far = pipe.far = SocketEnd(pipe)
        await asyncio.get_running_loop().create_connection(lambda: far, host, port)


class _End:
    """One side of a user's connection; what it reads goes to the other side.

    Flow control is TCP's and SSH's own: when one side's writes back up, the other
    side stops reading until they drain, so no buffer here grows without bound.
    """

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.transport: Transport | None = None
        self.eof = False

    def _peer(self) -> _End | None:
        return self.pipe.far if self is self.pipe.near else self.pipe.near

    def _made(self, transport: Transport) -> None:
        self.transport = transport
        if self.pipe.closed:
            transport.close()  # the job ended while this end was connecting
        else:
            self.pipe.attached(self)

    def _data(self, data: bytes) -> None:
        if (peer := self._peer()) is not None and peer.transport is not None:
            peer.transport.write(data)

    def _eof(self) -> bool:
        self.eof = True
        peer = self._peer()
        if peer is None or peer.transport is None:
            return False
        try:
            peer.transport.write_eof()
        except OSError:
            return False
        return not peer.eof  # stay half-open until both sides have finished sending

    def _lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.pipe.close(exc, self)

    def _pause(self) -> None:
        if (peer := self._peer()) is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def _resume(self) -> None:
        if (peer := self._peer()) is not None and peer.transport is not None:
            peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()


class SocketEnd(_End, asyncio.Protocol):
    """A TCP socket's end: the user's, or the sshd's in direct mode."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # interactive shells
        assert isinstance(transport, asyncio.Transport)
        self._made(transport)

    def data_received(self, data: bytes) -> None:
        self._data(data)

    def eof_received(self) -> bool:
        return self._eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def pause_writing(self) -> None:
        self._pause()

    def resume_writing(self) -> None:
        self._resume()


class ChannelEnd(_End, asyncssh.SSHTCPSession[bytes]):
    """The sshd's end through the link: an SSH channel the dryad connects to its sshd."""

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._made(chan)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._data(data)

    def eof_received(self) -> bool:
        return self._eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def pause_writing(self) -> None:
        self._pause()

    def resume_writing(self) -> None:
        self._resume()


@dataclass(eq=False)
class Pipe:
    """One user connection through a job's tunnel: the user's end and the sshd's."""

    tunnel: Tunnel
    orig: tuple[str, int] = ("", 0)
    near: _End | None = None
    far: _End | None = None
    closed: bool = False
    connected: bool = False

    def attached(self, end: _End) -> None:
        if end is self.near:
            return
        self.connected = True
        if self.near is not None and self.near.transport is not None:
            self.near.transport.resume_reading()  # paused until the sshd was reached

    def refuse(self, reason: str) -> None:
        """Tell a user who looks (ssh -v shows lines before the SSH banner), then close."""
        if self.near is not None and self.near.transport is not None:
            self.near.transport.write(f"boruta: {reason}\r\n".encode())
        self.close(None, None)

    def close(self, exc: BaseException | None, by: _End | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.tunnel.pipes.discard(self)
        if by is self.far and self.far is not None and exc is not None:
            self.tunnel.log(logging.WARNING, "connection from %s:%d lost: %s", *self.orig, exc)
        for end in (self.near, self.far):
            if end is not None:
                end.close()


@dataclass(eq=False)
class Tunnel:
    """A job's listener and the connections accepted through it."""

    rid: RequestID
    port: int
    worker: Worker
    connector: Connector
    server: asyncio.AbstractServer | None = None
    pipes: set[Pipe] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def log(self, level: int, msg: str, *args: object) -> None:
        if logger.isEnabledFor(level):
            text = msg % args
            logger.log(level, "tunnel of request %s (port %d, worker %s): %s",
                       self.rid, self.port, self.worker.uuid, text)  # fmt: skip

    def accept(self) -> SocketEnd:
        pipe = Pipe(self)
        pipe.near = near = _UserEnd(pipe)
        self.pipes.add(pipe)
        return near

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
        for pipe in list(self.pipes):
            pipe.close(None, None)
        for task in list(self.tasks):
            task.cancel()


class _UserEnd(SocketEnd):
    """The user's socket: reads nothing until the sshd is reached, then copies."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.pipe.orig = (str(peer[0]), int(peer[1]))
        self.pipe.tunnel.reach(self.pipe)


class LinkTunnels:
    """``ports.Tunnels`` with a TCP listener per job on a port from ``ports``.

    A job keeps its port across a coordinator restart: the port is stored when the
    tunnel opens, and the re-opening after a restart binds it again.
    """

    def __init__(
        self,
        connector: Connector,
        store: Store,
        ports: range,
        bind: str,
        public_host: str = "",
    ) -> None:
        self._connector = connector
        self._store = store
        self._ports = ports
        self._bind = bind
        self._public_host = public_host
        self._host = ""  # the resolved public host, an IP literal
        self._stored: dict[RequestID, int] = {}
        self._tunnels: dict[RequestID, Tunnel] = {}
        self._next = 0  # where the next search for a free port starts

    @property
    def host(self) -> str:
        """The address users dial (known after ``start``)."""
        return self._host

    async def start(self) -> None:
        """Resolve the public host and read the stored ports; before the service runs.

        :raises TunnelUnavailable: when the public host does not resolve.
        """
        self._host = await public_address(self._public_host, self._bind)
        self._stored = await anyio.to_thread.run_sync(self._store.tunnel_ports)
        logger.info(
            "tunnels: ports %d-%d on %s, dialled as %s",
            self._ports.start, self._ports.stop - 1, self._bind or "*", self._host,
        )  # fmt: skip

    async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        if not self._host:
            await self.start()
        old = self._tunnels.pop(rid, None)
        if old is not None:
            old.close()
        tunnel = Tunnel(rid, 0, worker, self._connector)
        tunnel.server, tunnel.port = await self._listen(rid, tunnel)
        if self._stored.get(rid) != tunnel.port:
            try:
                await anyio.to_thread.run_sync(self._store.put_tunnel_port, rid, tunnel.port)
            except StoreUnavailable as exc:
                tunnel.close()
                raise TunnelUnavailable(f"tunnel port not recorded: {exc.message}") from exc
            self._stored = {r: p for r, p in self._stored.items() if p != tunnel.port}
            self._stored[rid] = tunnel.port
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

    def port_of(self, rid: RequestID) -> int | None:
        """The port of ``rid``'s open tunnel (for tests and benches)."""
        tunnel = self._tunnels.get(rid)
        return None if tunnel is None else tunnel.port

    async def _listen(self, rid: RequestID, tunnel: Tunnel) -> tuple[asyncio.AbstractServer, int]:
        loop = asyncio.get_running_loop()
        taken = {t.port for t in self._tunnels.values()}
        stored = self._stored.get(rid)
        if stored is not None and stored in self._ports and stored not in taken:
            try:
                sock = self._bind_port(stored)
            except OSError as exc:
                logger.error(
                    "request %s: its tunnel port %d is not free (%s); it gets another one",
                    rid, stored, exc.strerror or exc,
                )  # fmt: skip
            else:
                return await loop.create_server(tunnel.accept, sock=sock), stored
        count, ended = len(self._ports), set(self._stored.values())
        for i in range(count):
            port = self._ports[(self._next + i) % count]
            if port in taken or port in ended:
                continue  # ports of other jobs, even stopped ones, are used last
            try:
                sock = self._bind_port(port)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise TunnelUnavailable(f"cannot listen on {self._bind}:{port}: {exc}") from exc
            self._next = (self._next + i + 1) % count
            return await loop.create_server(tunnel.accept, sock=sock), port
        for port in sorted(ended - taken):  # the ports of ended jobs
            try:
                sock = self._bind_port(port)
            except OSError:
                continue
            return await loop.create_server(tunnel.accept, sock=sock), port
        reason = (
            f"no free tunnel port in {self._ports.start}-{self._ports.stop - 1} "
            f"({len(taken)} jobs have tunnels; widen tunnel_ports)"
        )
        logger.error("request %s to worker %s: %s", rid, tunnel.worker.uuid, reason)
        raise TunnelUnavailable(reason)

    def _bind_port(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Without SO_REUSEADDR a restarted coordinator could not bind a port whose
            # old connections linger in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._bind, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock


async def public_address(public_host: str, bind: str) -> str:
    """The IP literal users dial: ``public_host`` resolved, else the bind address when
    it is a specific one, else this host's name resolved.

    :raises TunnelUnavailable: when the name does not resolve.
    """
    name = public_host or (bind if bind not in ("", "0.0.0.0", "::") else socket.gethostname())
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TunnelUnavailable(f"public_host {name!r} does not resolve: {exc}") from exc
    # IPv4 first: the address ends up in the original's Go client, and in logs people read.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    address = str(infos[0][4][0])
    logger.info("tunnels: public host %s resolves to %s; users dial that", name, address)
    return address


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"its sshd refused the connection ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    return str(exc) or type(exc).__name__
