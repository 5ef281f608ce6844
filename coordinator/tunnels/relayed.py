"""``tunnel_mode = "dialback"``: each connection dialled back by the dryad and relayed here.

For each user connection to a job's tunnel port the coordinator calls ``dial_back`` on
the worker's dryad over the link with a one-time secret; the dryad connects its local
sshd and dials back a plain TCP connection to ``dialback.DialBackListener``, which
matches the secret. The user's socket and the dial-back socket then go to one relay
thread (``wire.relay.Relay``) that splices them into each other off the event loop: the
bytes are the user's end-to-end SSH, not encrypted again, and never read in Python.

Where the dial-back cannot come (a firewall, an older dryad), the connection goes through
the link as ``tunnel_mode = "link"`` does; why is logged once per worker, and that
worker's later connections take the link straight away until ``RETRY_AFTER`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

from coordinator import wire
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Worker
from coordinator.tunnels.dialback import DialBackListener
from coordinator.tunnels.listeners import CONNECT_TIMEOUT, Connector
from coordinator.tunnels.pump import Pipe
from coordinator.wire.relay import Relay

if TYPE_CHECKING:
    from coordinator.tunnels.listeners import Tunnel

logger = logging.getLogger(__name__)

DIAL_WAIT: Final = CONNECT_TIMEOUT / 2  # seconds for a dial-back; the link gets the rest
RETRY_AFTER: Final = 300.0  # seconds a worker's connections take the link after a failure


class DialsBack(Protocol):
    """What asks a worker's dryad to dial back (``link.registry.DryadLink``)."""

    async def dial_back(self, worker: WorkerUUID, port: int, secret: bytes) -> wire.DialedBack: ...


class NoDialBack(Exception):
    """The dial-back did not come; the link may still carry the connection."""


class Relayed:
    """Dial-back tunnels, with ``fallback`` (through the link) where they cannot come."""

    def __init__(
        self,
        link: DialsBack,
        listener: DialBackListener,
        fallback: Connector,
        *,
        dial_wait: float = DIAL_WAIT,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        self._link = link
        self.listener = listener
        self._fallback = fallback
        self._dial_wait = dial_wait
        self._retry_after = retry_after
        self.relay = Relay("tunnel relay")
        self._link_until: dict[WorkerUUID, float] = {}  # workers whose dial-back failed
        self._told: dict[WorkerUUID, str] = {}  # the failure logged per worker

    async def start(self) -> None:
        """Listen for dial-backs and start the relay thread.

        :raises TunnelUnavailable: when the dial-back port cannot be bound.
        """
        await self.listener.start()
        self.relay.start()

    async def stop(self) -> None:
        await self.listener.stop()
        self.relay.stop()

    def closed(self, rid: RequestID) -> None:
        """``rid``'s job ended: its relayed connections close at once."""
        self.relay.close_group(rid)

    async def connect(self, worker: Worker, pipe: Pipe) -> None:
        """The link's way, for connections whose dial-back did not come."""
        await self._fallback.connect(worker, pipe)

    async def serve(self, tunnel: Tunnel, user: socket.socket, orig: tuple[str, int]) -> None:
        """Carry ``user``'s connection to the worker's sshd; owns ``user`` from here."""
        handed = False
        worker = tunnel.worker.uuid
        try:
            if time.monotonic() < self._link_until.get(worker, 0.0):
                handed = True
                await tunnel.through_link(user)
                return
            try:
                far = await self._dial(worker)
            except NoDialBack as exc:
                self._fell_back(worker, str(exc))
                handed = True
                await tunnel.through_link(user)
                return
            except (OSError, wire.RpcError) as exc:  # the dryad is gone, or its sshd
                reason = _reason(exc)
                tunnel.log(logging.WARNING, "connection from %s:%d dropped: %s", *orig, reason)
                await _refuse(user, f"worker {worker} unreachable: {reason}")
                return
            if self._told.pop(worker, None) is not None:
                logger.info("worker %s: dial-back works again; tunnels relayed here", worker)
            self.relay.add(user, far, tunnel.rid)
            handed = True
            tunnel.log(logging.DEBUG, "connection from %s:%d relayed to the sshd", *orig)
        finally:
            if not handed:
                user.close()

    async def _dial(self, worker: WorkerUUID) -> socket.socket:
        """The dryad's dial-back connection to its sshd.

        :raises NoDialBack: when it does not come (the link may carry the connection).
        :raises ConnectionError: when the dryad is not connected.
        :raises wire.RpcError: REFUSED when its sshd cannot be reached.
        """
        with self.listener.expect() as awaited:
            call = asyncio.ensure_future(
                self._link.dial_back(worker, self.listener.port, awaited.secret)
            )
            try:
                async with asyncio.timeout(self._dial_wait):
                    either: list[asyncio.Future[Any]] = [awaited.arrived, call]
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                    if not awaited.arrived.done():
                        answer = call.result()
                        if not answer.dialled:
                            raise NoDialBack(answer.reason or "the dryad could not dial back")
                        await asyncio.shield(awaited.arrived)  # on its way: TCP has no order
            except TimeoutError as exc:
                if not call.done() or call.exception() is None:
                    raise NoDialBack(f"no dial-back within {self._dial_wait:g} s") from exc
                raise NoDialBack(_reason(exc)) from exc  # the dryad's answer timed out
            except wire.RpcError as exc:
                if exc.code == wire.REFUSED:
                    raise
                raise NoDialBack(f"the dryad does not dial back ({exc.message})") from exc
            except wire.WireError as exc:
                raise NoDialBack(f"the dryad's answer was not understood: {exc}") from exc
            finally:
                if call.done():
                    _ = call.cancelled() or call.exception()  # retrieved: nobody waits on it
                else:
                    call.cancel()
            awaited.taken = True
            return awaited.arrived.result()

    def _fell_back(self, worker: WorkerUUID, reason: str) -> None:
        self._link_until[worker] = time.monotonic() + self._retry_after
        if self._told.get(worker) == reason:
            logger.debug("worker %s: dial-back failed again: %s", worker, reason)
            return
        self._told[worker] = reason
        logger.warning(
            "worker %s: dial-back failed (%s); its tunnel connections go through the link"
            " (encrypted twice, slower) and dial-back is tried again in %g s",
            worker, reason, self._retry_after,
        )  # fmt: skip


async def _refuse(user: socket.socket, reason: str) -> None:
    """Tell a user who looks (``ssh -v`` shows lines before the banner), then close."""
    with contextlib.suppress(OSError):
        await asyncio.get_running_loop().sock_sendall(user, f"boruta: {reason}\r\n".encode())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, wire.RpcError):
        return exc.message
    return str(exc) or type(exc).__name__
