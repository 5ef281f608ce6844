"""``DryadLink``: the connected dryads by worker UUID, our calls to them and theirs to us.

Every method, its direction, timeout, params and result is a row of ``wire.TABLE``
(rendered as docs/link-protocol.md): our calls go through their rows, and the dryads'
calls are dispatched from the table to the handlers registered in ``DryadLink``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import anyio
import asyncssh

from coordinator import wire
from coordinator.domain.clock import Clock, SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.states import WorkerState
from coordinator.errors import BorutaError, StoreUnavailable
from coordinator.link.attempts import FailedAttempts
from coordinator.link.calls import WireCalls
from coordinator.link.enrolment import Enrolment, StoreEnrolment
from coordinator.link.session import BoundedLines, DryadSession, LineTooLong
from coordinator.service.steps import wire_state
from coordinator.store import Store
from coordinator.tokens import hash_token
from coordinator.wire import (
    ENROL,
    INVALID_REQUEST,
    MAX_LINE,
    NOT_ENROLLED,
    REFUSED,
    UNAVAILABLE,
    HealthReport,
    Method,
    Peer,
    RpcError,
    WireError,
    error,
)

logger = logging.getLogger(__name__)

BAD_TOKEN: Final = "enrolment token invalid or expired"


def _paused(seconds: float) -> str:
    return f"too many failed attempts from this address: try again in {seconds:.0f} s"


P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")


class HasState(Protocol):
    """What a registration answers with: the worker's state now (a ``Worker`` is one)."""

    @property
    def state(self) -> WorkerState: ...


class LinkService(Protocol):
    """Where the dryads' calls and their links' ups and downs go: the service itself, the
    leader's router of local and remote links (``holders``), or, on a follower, the
    leader over the peer routes (``announcer``; docs/failover.md §scale-out)."""

    async def register(
        self, caps: Mapping[str, str], ssh_address: str, host_keys: tuple[str, ...] = ()
    ) -> HasState: ...

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None: ...

    async def report_health(self, uuid: WorkerUUID, report: HealthReport) -> None: ...

    async def button(self, uuid: WorkerUUID, number: int) -> None: ...

    def link_up(self, uuid: WorkerUUID) -> None: ...

    def link_down(self, uuid: WorkerUUID) -> None: ...


class PanelSink(Protocol):
    """Where the boards' panels go (``feed.panels.Panels`` on the leader)."""

    async def update(self, worker: WorkerUUID, panel: wire.Panel, /) -> object: ...


class DryadLink(WireCalls):
    """Implements ``ports.Dryads`` over the connected sessions, one per worker UUID.

    Set ``service`` before the link server accepts dryads: their calls go to it. Their
    enrolments go to ``enrolment``: this coordinator's store unless set (a follower's go
    to the leader).
    """

    def __init__(
        self, store: Store, clock: Clock | None = None, attempts: FailedAttempts | None = None
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        # Failed logins and enrolments per address; the link server shares it.
        self.attempts = attempts or FailedAttempts()
        self.service: LinkService | None = None
        self.enrolment: Enrolment = StoreEnrolment(store, self._clock)
        self.panels: PanelSink | None = None  # where the boards' panels go; None drops them
        self._sessions: dict[WorkerUUID, DryadSession] = {}
        self._serving = 0  # sessions whose serve() has not returned
        self._changed = anyio.Event()
        self._calls = wire.Handlers[DryadSession](wire.Direction.TO_COORDINATOR)
        self._calls.on(wire.ENROL, self._enrol)
        self._calls.on(wire.REGISTER, self._register)
        self._calls.on(wire.SET_FAIL, self._set_fail)
        self._calls.on(wire.HEALTH, self._health)
        self._calls.on(wire.BUTTON, self._button)
        self._calls.on(wire.PANEL, self._panel)

    # ---- ports.Dryads (the calls: calls.WireCalls) ----------------------------------

    async def ask(self, worker: WorkerUUID, method: Method[P, R], params: P) -> R:
        """Call any row ``method`` on ``worker``'s dryad (a peer's call, relayed).

        :raises ConnectionError, TimeoutError, wire.RpcError, wire.WireError: as the calls.
        """
        return await self._call(worker, method, params)

    def links(self) -> list[WorkerUUID]:
        """The workers whose enrolled sessions are up here."""
        return list(self._sessions)

    async def _call(self, worker: WorkerUUID, method: Method[P, R], params: P) -> R:
        """Call ``method`` on ``worker``'s dryad, waiting as long as its row says."""
        session = self._sessions.get(worker)
        if session is None or session.peer is None:
            raise ConnectionError(f"dryad {worker} is not connected")
        try:
            return await session.peer.ask(method, params)
        except TimeoutError:
            raise TimeoutError(
                f"dryad {worker} did not answer {method} in {method.timeout:g} s"
            ) from None
        except ConnectionError:
            raise ConnectionError(f"dryad {worker} disconnected during {method}") from None

    # ---- tunnels ---------------------------------------------------------------------

    async def open_sshd(
        self,
        worker: WorkerUUID,
        factory: Callable[[], asyncssh.SSHTCPSession[bytes]],
        orig_host: str,
        orig_port: int,
    ) -> asyncssh.SSHTCPChannel[bytes]:
        """A channel to ``worker``'s sshd through its link, its data going to ``factory()``.

        :raises ConnectionError: when the dryad is not connected or offers no sshd.
        :raises asyncssh.ChannelOpenError: when the dryad cannot reach its sshd.
        """
        session = self._sessions.get(worker)
        if session is None:
            raise ConnectionError(f"dryad {worker} is not connected")
        if session.sshd is None:
            raise ConnectionError(f"dryad {worker} has not offered its sshd (yet)")
        channel, _ = await session.sshd(factory, orig_host, orig_port)
        return channel

    async def dial_back(self, worker: WorkerUUID, port: int, secret: bytes) -> wire.DialedBack:
        """Ask ``worker``'s dryad to connect its sshd to our dial-back ``port`` with ``secret``.

        :raises ConnectionError: when the dryad is not connected.
        :raises TimeoutError: when it does not answer in time.
        :raises wire.RpcError: REFUSED when its sshd cannot be reached; another code from
            a dryad that does not dial back (older than this method).
        :raises wire.WireError: when its answer is not the method's result.
        """
        return await self._call(worker, wire.DIAL_BACK, wire.DialBack.of(port, secret))

    # ---- sessions --------------------------------------------------------------------

    def connected(self, worker: WorkerUUID) -> bool:
        """Whether an enrolled session of ``worker`` is up."""
        return worker in self._sessions

    async def changed(self) -> None:
        """Return after the next session starts or ends (for tests and benches)."""
        await self._changed.wait()

    async def idle(self) -> None:
        """Return once no session is being served."""
        while self._serving:
            await self.changed()

    async def serve(self, session: DryadSession) -> None:
        """Serve ``session`` until its channel ends; the server calls this per channel."""
        peer = Peer(
            BoundedLines(session.reader),
            session.writer,
            partial(self._handle, session),
            calls=wire.Direction.TO_DRYAD,
            log=session.log,
        )
        session.peer = peer
        self._serving += 1
        try:
            if session.enrolled:
                self._attach(session)
            await peer.serve()
        except LineTooLong as exc:
            session.log.warning("link closed: %s (the limit is %d)", exc, MAX_LINE)
            with contextlib.suppress(OSError):  # the channel may be gone already
                session.writer.write(error(None, INVALID_REQUEST, f"line too long: {exc}"))
        finally:
            self._serving -= 1
            self._detach(session)
            session.close()

    def _attach(self, session: DryadSession) -> None:
        old = self._sessions.get(session.uuid)
        self._sessions[session.uuid] = session
        if old is not None:
            # One link per worker: a dryad that reconnects before its old TCP connection
            # has timed out must not leave a stale twin that could answer our calls.
            old.log.warning("link replaced by a new connection from %s", session.peer_host)
            old.close()
        session.log.info("link up from %s (key %s)", session.peer_host, session.fingerprint)
        self._require_service().link_up(session.uuid)
        self._notify()

    def _detach(self, session: DryadSession) -> None:
        if self._sessions.get(session.uuid) is session:
            del self._sessions[session.uuid]
            session.log.info("link down")
            self._require_service().link_down(session.uuid)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _require_service(self) -> LinkService:
        if self.service is None:
            raise RuntimeError("DryadLink.service must be set before dryads connect")
        return self.service

    # ---- the dryads' calls -----------------------------------------------------------

    async def _handle(self, session: DryadSession, method: str, params: dict[str, Any]) -> Any:
        """Serve one of ``session``'s calls from the table (``Peer`` answers errors)."""
        if method != ENROL and not session.enrolled:
            session.log.warning("%s refused: this key is not enrolled", method)
            raise RpcError(NOT_ENROLLED, "this key is not enrolled: call enrol with a token")
        try:
            return await self._calls.dispatch(session, method, params)
        except BorutaError as exc:
            session.log.warning("%s refused: %s", method, exc.message)
            raise RpcError(REFUSED, exc.message) from exc
        except (WireError, RpcError) as exc:  # answered INVALID_PARAMS or as raised
            if method != ENROL:  # enrolment logs its refusals itself
                session.log.warning("%s refused: %s", method, exc)
            raise

    async def _enrol(self, session: DryadSession, params: wire.Enrol) -> wire.Enrolled:
        if session.enrolled:
            return wire.Enrolled(session.uuid)  # a retried enrol after a lost answer
        if not self.attempts.allowed(session.peer_host):
            self._close_after_answer(session)
            raise RpcError(REFUSED, _paused(self.attempts.retry_after(session.peer_host)))
        try:
            valid = await self.enrolment.enrol(
                session.uuid, hash_token(params.token), session.public_key
            )
        except StoreUnavailable as exc:  # not a refusal: the dryad tries again soon
            session.log.warning("enrolment of key %s not done: %s", session.fingerprint, exc)
            self._close_after_answer(session)
            raise RpcError(UNAVAILABLE, exc.message) from exc
        except BorutaError as exc:  # Conflict: another key won a race for this UUID
            session.log.warning("enrolment of key %s refused: %s", session.fingerprint, exc)
            self._close_after_answer(session)
            raise RpcError(REFUSED, exc.message) from exc
        except RpcError as exc:  # UNAVAILABLE: the leader cannot be reached; try again
            session.log.warning("enrolment of key %s not done: %s", session.fingerprint, exc)
            self._close_after_answer(session)
            raise
        if not valid:
            if self.attempts.failed(session.peer_host, "bad enrolment tokens"):
                session.log.warning(
                    "enrolment of key %s from %s refused: %s",
                    session.fingerprint,
                    session.peer_host,
                    BAD_TOKEN,
                )
            self._close_after_answer(session)
            raise RpcError(REFUSED, BAD_TOKEN)
        session.enrolled = True
        session.log.info("enrolled with key %s", session.fingerprint)
        self._attach(session)
        return wire.Enrolled(session.uuid)

    @staticmethod
    def _close_after_answer(session: DryadSession) -> None:
        # Peer queues the error answer in the same step in which the handler raises, so a
        # close scheduled now runs after it; the channel flushes queued data before closing.
        asyncio.get_running_loop().call_soon(session.close)

    async def _register(self, session: DryadSession, reg: wire.Registration) -> wire.Registered:
        claimed = reg.caps.get("UUID", "")
        if claimed != session.uuid:
            raise RpcError(REFUSED, f"caps UUID {claimed!r} is not this dryad's {session.uuid}")
        address = _with_host(reg.ssh_address, session.peer_host)
        host_keys = _checked_host_keys(session, reg.host_keys)
        worker = await self._require_service().register(reg.caps, address, host_keys)
        session.log.info(
            "registered (%s, ssh %s, %d host keys): %s",
            reg.version or "?", address, len(host_keys), worker.state,
        )  # fmt: skip
        return wire.Registered(wire_state(worker.state))

    async def _set_fail(self, session: DryadSession, params: wire.SetFail) -> None:
        session.log.error("dryad reports failure: %s", params.reason)
        await self._require_service().set_fail(session.uuid, params.reason)

    async def _health(self, session: DryadSession, report: HealthReport) -> None:
        await self._require_service().report_health(session.uuid, report)

    async def _button(self, session: DryadSession, params: wire.Button) -> None:
        await self._require_service().button(session.uuid, params.button)

    async def _panel(self, session: DryadSession, panel: wire.Panel) -> None:
        if self.panels is not None:
            await self.panels.update(session.uuid, panel)


def _checked_host_keys(session: DryadSession, lines: tuple[str, ...]) -> tuple[str, ...]:
    """The valid ones of the host keys a dryad reported; each refused one is logged (with
    the dryad's UUID, from the session's logger) and not stored."""
    kept, refused = wire.hostkeys.host_keys(lines)
    for start, why in refused:
        session.log.warning("host key %r refused: %s", start, why)
    if not kept:
        # Users' ssh then has no key to check the board against, and refuses it.
        session.log.warning("no valid sshd host key reported: users cannot check the board")
    return tuple(kept)


def _with_host(address: str, peer_host: str) -> str:
    """``address`` with an empty host replaced by the dryad's IP, as the original does."""
    host, sep, port = address.rpartition(":")
    if not sep or host:
        return address  # complete, or malformed (the service refuses it)
    return f"[{peer_host}]:{port}" if ":" in peer_host else f"{peer_host}:{port}"
