"""Tunnel ports: which port of the range a job listens on, kept across restarts."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import Final

import anyio

from coordinator.domain.ids import RequestID
from coordinator.errors import StoreUnavailable, TunnelUnavailable
from coordinator.store import Store

logger = logging.getLogger(__name__)

BACKLOG: Final = 128  # a burst of a job's connections (scripts, parallel scp) waits here


class Ports:
    """The configured port range: a job gets its stored port again, else a free one.

    Ports are handed out round-robin, and ports of ended jobs are used last, so a user
    who still dials an old job's port reaches nothing rather than someone else's board.
    Without a ``store`` they are remembered in memory only (a follower's).
    """

    def __init__(self, ports: range, bind: str, store: Store | None) -> None:
        self.range = ports
        self.bind = bind
        self._store = store
        self._stored: dict[RequestID, int] = {}
        self._next = 0  # where the next search for a free port starts

    async def load(self) -> None:
        """Read the stored ports (before the service re-opens running jobs' tunnels)."""
        if self._store is not None:
            self._stored = await anyio.to_thread.run_sync(self._store.tunnel_ports)

    def listen(self, rid: RequestID, taken: set[int], worker: str) -> tuple[socket.socket, int]:
        """A listening socket for ``rid``'s tunnel and its port.

        :raises TunnelUnavailable: when no port of the range is free.
        """
        stored = self._stored.get(rid)
        if stored is not None and stored in self.range and stored not in taken:
            try:
                return self._bind_port(stored), stored
            except OSError as exc:
                logger.error(
                    "request %s: its tunnel port %d is not free (%s); it gets another one",
                    rid, stored, exc.strerror or exc,
                )  # fmt: skip
        count, ended = len(self.range), set(self._stored.values())
        for i in range(count):
            port = self.range[(self._next + i) % count]
            if port in taken or port in ended:
                continue  # ports of other jobs, even stopped ones, are used last
            try:
                sock = self._bind_port(port)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise TunnelUnavailable(f"cannot listen on {self.bind}:{port}: {exc}") from exc
            self._next = (self._next + i + 1) % count
            return sock, port
        for port in sorted(ended - taken):  # the ports of ended jobs
            try:
                return self._bind_port(port), port
            except OSError:
                continue
        reason = (
            f"no free tunnel port in {self.range.start}-{self.range.stop - 1} "
            f"({len(taken)} jobs have tunnels; widen tunnel_ports)"
        )
        logger.error("request %s to worker %s: %s", rid, worker, reason)
        raise TunnelUnavailable(reason)

    async def record(self, rid: RequestID, port: int) -> None:
        """Store ``rid``'s port so a restart binds it again.

        :raises TunnelUnavailable: when the store refuses it.
        """
        if self._stored.get(rid) == port:
            return
        if self._store is not None:
            try:
                await anyio.to_thread.run_sync(self._store.put_tunnel_port, rid, port)
            except StoreUnavailable as exc:
                raise TunnelUnavailable(f"tunnel port not recorded: {exc.message}") from exc
        self._stored = {r: p for r, p in self._stored.items() if p != port}
        self._stored[rid] = port

    def _bind_port(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Without SO_REUSEADDR a restarted coordinator could not bind a port whose
            # old connections linger in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.bind, port))
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
