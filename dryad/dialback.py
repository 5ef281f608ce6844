"""Dial-back tunnels, the board's end: reach the local sshd, dial the coordinator, relay.

The coordinator calls ``dial_back`` for each user connection to a job's tunnel
(docs/link-protocol.md §dial-back). The board dials out, as it does for the link, so it
still needs no inbound port; the dial-back carries the user's own SSH session, so it is
not encrypted again, and one relay thread copies it by splice, light enough for a
NanoPi.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Final

from coordinator import wire
from coordinator.wire.relay import Relay

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 5.0  # seconds per connect: within the coordinator's wait for us
RESOLVED_FOR: Final = 60.0  # seconds a resolved coordinator address is reused


class DialBacks:
    """Serves ``dial_back``: the local sshd at ``sshd_port``, the coordinator at ``host``
    (a function for a dryad with several coordinators: the one linked now, which is the
    one asking, docs/failover.md §dial-backs).

    ``start`` before the first call and ``stop`` at the end (the relay's thread).
    """

    def __init__(
        self,
        host: str | Callable[[], str],
        sshd_port: int,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._host = host if callable(host) else (lambda: host)
        self._sshd_port = sshd_port
        self._timeout = connect_timeout
        self.relay = Relay("dial-back relay")
        self._resolved: tuple[float, str, tuple[int, str]] | None = None

    def start(self) -> None:
        self.relay.start()

    def stop(self) -> None:
        """Close every relayed connection."""
        self.relay.stop()

    async def end_job(self) -> None:
        """A job ended: its connections end too, even if the coordinator's side lingers."""
        self.relay.close_group(None)

    async def dial_back(self, params: wire.DialBack) -> wire.DialedBack:
        """Connect the sshd, dial the coordinator, send the secret, relay the two.

        :raises wire.RpcError: REFUSED when the local sshd cannot be reached (the link
            could not reach it either, so the coordinator tells the user).
        """
        try:
            sshd = await self._connect(socket.AF_INET, "127.0.0.1", self._sshd_port)
        except OSError as exc:
            reason = f"its sshd refused the connection (port {self._sshd_port}: {_reason(exc)})"
            logger.warning("dial-back: %s", reason)
            raise wire.RpcError(wire.REFUSED, reason) from exc
        host = self._host().strip("[]")
        where = f"{host}:{params.port}"
        try:
            family, address = await self._address(host)
            back = await self._connect(family, address, params.port)
        except OSError as exc:
            sshd.close()
            return wire.DialedBack(False, f"cannot connect to {where}: {_reason(exc)}")
        try:
            await asyncio.get_running_loop().sock_sendall(back, params.secret_bytes)
        except OSError as exc:
            sshd.close()
            back.close()
            return wire.DialedBack(False, f"connection to {where} lost: {_reason(exc)}")
        self.relay.add(back, sshd)
        return wire.DialedBack(True)

    async def _address(self, host: str) -> tuple[int, str]:
        """The coordinator's address: a literal as it is, a name resolved once a minute."""
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(host)
            return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), str(ip)
        now = time.monotonic()
        if self._resolved is not None:
            at, name, found = self._resolved
            if name == host and now - at < RESOLVED_FOR:
                return found
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"{host} does not resolve")
        family, *_, sockaddr = infos[0]
        found = (int(family), str(sockaddr[0]))
        self._resolved = (now, host, found)
        return found

    async def _connect(self, family: int, host: str, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except TimeoutError:
            sock.close()
            raise TimeoutError(f"no answer within {self._timeout:g} s") from None
        except BaseException:
            sock.close()
            raise
        return sock


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
