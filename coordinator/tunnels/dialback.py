"""The dial-back listener: dryads' plain TCP connections back, matched by one-time secrets.

Each expected dial-back has a fresh secret of ``wire.SECRET_SIZE`` random bytes, sent to
the dryad over its authenticated link; a connection to this port must send exactly that
first. A secret is matched once (then forgotten: a replay finds nothing) and only while
its connection is awaited (at most ``CONNECT_TIMEOUT``: later, it has expired). Secrets
are found by their SHA-256 and then compared in constant time, so neither the lookup
nor the comparison times anything an attacker could learn a secret from. Connections
with a wrong, replayed or expired secret, garbage, or nothing in time are closed and
logged once per source address and window (``link.attempts.FailedAttempts``); a user's
connection awaiting its own dial-back is not affected by them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from coordinator import wire
from coordinator.errors import TunnelUnavailable
from coordinator.link.attempts import FailedAttempts

logger = logging.getLogger(__name__)

SECRET_TIMEOUT: Final = 5.0  # seconds a dial-back has to send its secret
MAX_UNCHECKED: Final = 1024  # connections still sending their secret; more are closed
BACKLOG: Final = 1024  # a burst of users' connections is a burst of dial-backs
UNKNOWN: Final = "dial-backs with a wrong, used or expired secret"


@dataclass(eq=False)
class Awaited:
    """One expected dial-back: its secret, and the socket once it has arrived."""

    secret: bytes
    arrived: asyncio.Future[socket.socket] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    taken: bool = False  # the socket went to its user (else it is closed with this)


class Expecting:
    """``with`` it, a secret is awaited; after it, it is forgotten (used, or expired).

    A class rather than ``contextlib.contextmanager``: that one sets ``__traceback__`` on
    the exception passing through, which a frozen dataclass exception (``wire.RpcError``)
    refuses.
    """

    def __init__(self, awaited: dict[bytes, Awaited]) -> None:
        self._all = awaited
        self.awaited = Awaited(secrets.token_bytes(wire.SECRET_SIZE))
        self._digest = hashlib.sha256(self.awaited.secret).digest()

    def __enter__(self) -> Awaited:
        self._all[self._digest] = self.awaited
        return self.awaited

    def __exit__(self, *exc_info: object) -> None:
        self._all.pop(self._digest, None)
        arrived = self.awaited.arrived
        if arrived.done() and not arrived.cancelled() and not self.awaited.taken:
            arrived.result().close()  # it came as its user gave up
        arrived.cancel()


class DialBackListener:
    """Listens on ``bind:port`` (``port`` 0: any) for dial-backs; ``port`` is the bound one."""

    def __init__(
        self,
        bind: str,
        port: int,
        *,
        secret_timeout: float = SECRET_TIMEOUT,
        attempts: FailedAttempts | None = None,
    ) -> None:
        self.bind = bind
        self.port = port
        self._secret_timeout = secret_timeout
        self.attempts = attempts or FailedAttempts(name="dial-back", pauses=False)
        self._awaited: dict[bytes, Awaited] = {}  # by the secret's SHA-256
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unchecked = 0

    async def start(self) -> None:
        """Bind and start accepting.

        :raises TunnelUnavailable: when the address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # As the tunnel ports: a restarted coordinator binds again past TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.bind, self.port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            where = f"{self.bind or '*'}:{self.port}"
            raise TunnelUnavailable(f"cannot listen for dial-backs on {where}: {exc}") from exc
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._spawn(self._accept(sock))
        self._spawn(self._sweep())
        logger.info("tunnels: dial-backs accepted on %s:%d", self.bind or "*", self.port)

    async def stop(self) -> None:
        """Stop accepting; connections being checked are closed."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def expect(self) -> Expecting:
        """A new secret to send a dryad, valid for one ``with`` block around the wait."""
        return Expecting(self._awaited)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listening)
            except OSError as exc:  # out of descriptors, say: the next try may work
                logger.warning("tunnels: dial-back not accepted: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if self._unchecked >= MAX_UNCHECKED:
                sock.close()  # a flood: the dryads' own dial-backs are retried by users
                self._failed(str(address[0]), "dial-backs over the limit of unchecked ones")
                continue
            self._spawn(self._check(sock, str(address[0])))

    async def _check(self, sock: socket.socket, source: str) -> None:
        self._unchecked += 1
        try:
            reason = await self._match(sock)
        except asyncio.CancelledError:
            sock.close()
            raise
        finally:
            self._unchecked -= 1
        if reason:
            sock.close()
            self._failed(source, reason)

    async def _match(self, sock: socket.socket) -> str:
        """Read the secret and hand ``sock`` to its awaiter; else why not (then close it)."""
        loop = asyncio.get_running_loop()
        got = b""
        try:
            async with asyncio.timeout(self._secret_timeout):
                while len(got) < wire.SECRET_SIZE:  # exactly: what follows is the sshd's
                    chunk = await loop.sock_recv(sock, wire.SECRET_SIZE - len(got))
                    if not chunk:
                        return "dial-backs that closed before sending a secret"
                    got += chunk
        except TimeoutError:
            return "dial-backs that sent no secret in time"
        except OSError as exc:
            return f"dial-backs lost before their secret ({exc.strerror or exc})"
        awaited = self._awaited.get(hashlib.sha256(got).digest())
        if (
            awaited is None
            or not hmac.compare_digest(awaited.secret, got)
            or awaited.arrived.done()
        ):
            return UNKNOWN
        del self._awaited[hashlib.sha256(got).digest()]  # single use
        awaited.arrived.set_result(sock)
        return ""

    def _failed(self, source: str, reason: str) -> None:
        if self.attempts.failed(source, reason):
            logger.warning(
                "tunnels: a connection from %s to the dial-back port was closed: %s"
                " (more from it within %g s are counted and logged once)",
                source, reason, self.attempts.window,
            )  # fmt: skip

    async def _sweep(self) -> None:
        while True:  # the failures' summaries, once their window has ended
            await asyncio.sleep(self.attempts.window)
            self.attempts.sweep()
