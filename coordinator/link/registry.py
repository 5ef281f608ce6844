"""``DryadLink``: the connected dryads by worker UUID, our calls to them and theirs to us.

Params and results on the wire (both ends must agree; the dryad side mirrors this):

- dryad → coordinator: ``enrol {"token"}`` → ``{"uuid"}``; ``register``
  (``wire.Registration``) → ``{"state"}``; ``set_fail {"reason"}``; ``health``
  (``wire.HealthReport``); ``button {"button": int}``; the last three answer ``null``;
  ``panel`` (``wire.Panel``, a notification) is kept by ``coordinator.feed.panels``.
- coordinator → dryad: ``prepare {"public_key"}``, ``maintenance {"message"}``,
  ``release {}``, ``identify {"seconds"}``, ``display`` (``wire.Display``) answer
  anything; ``healthcheck {}`` answers a ``wire.HealthReport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import anyio
import asyncssh

from coordinator.domain.clock import Clock, SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.errors import BorutaError
from coordinator.feed.panels import Panels
from coordinator.link.session import BoundedLines, DryadSession, LineTooLong
from coordinator.store import Store
from coordinator.tokens import hash_token
from coordinator.wire import (
    BUTTON,
    DISPLAY,
    ENROL,
    HEALTH,
    HEALTHCHECK,
    IDENTIFY,
    INVALID_REQUEST,
    MAINTENANCE,
    MAX_LINE,
    METHOD_NOT_FOUND,
    NOT_ENROLLED,
    PANEL,
    PREPARE,
    REFUSED,
    REGISTER,
    RELEASE,
    SET_FAIL,
    Display,
    HealthReport,
    Panel,
    Peer,
    Registration,
    RpcError,
    WireError,
    error,
)

if TYPE_CHECKING:
    from coordinator.service.operations import Service

logger = logging.getLogger(__name__)

# Seconds the dryad has for each call: recreating the job user or showing maintenance
# may wait on useradd and the STM; the panel and the blink are quick.
TIMEOUTS: Final = {
    PREPARE: 60.0,
    MAINTENANCE: 60.0,
    RELEASE: 60.0,
    HEALTHCHECK: 60.0,
    IDENTIFY: 10.0,
    DISPLAY: 10.0,
}
BAD_TOKEN: Final = "enrolment token invalid or expired"

Call = Callable[[DryadSession, dict[str, Any]], Awaitable[Any]]


class DryadLink:
    """Implements ``ports.Dryads`` over the connected sessions, one per worker UUID.

    Set ``service`` before the link server accepts dryads: their calls go to it.
    """

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self.service: Service | None = None
        self.panels: Panels | None = None  # where the boards' panels go; None drops them
        self._sessions: dict[WorkerUUID, DryadSession] = {}
        self._serving = 0  # sessions whose serve() has not returned
        self._changed = anyio.Event()
        self._calls: dict[str, Call] = {
            REGISTER: self._register,
            SET_FAIL: self._set_fail,
            HEALTH: self._health,
            BUTTON: self._button,
            PANEL: self._panel,
        }

    # ---- ports.Dryads ----------------------------------------------------------------

    async def prepare(self, worker: WorkerUUID, public_key: str) -> None:
        await self._call(worker, PREPARE, {"public_key": public_key})

    async def maintenance(self, worker: WorkerUUID, message: str) -> None:
        await self._call(worker, MAINTENANCE, {"message": message})

    async def release(self, worker: WorkerUUID) -> None:
        await self._call(worker, RELEASE, {})

    async def healthcheck(self, worker: WorkerUUID) -> HealthReport:
        return HealthReport.from_wire(await self._call(worker, HEALTHCHECK, {}))

    async def identify(self, worker: WorkerUUID, seconds: float) -> None:
        await self._call(worker, IDENTIFY, {"seconds": seconds})

    async def display(self, worker: WorkerUUID, panel: Display) -> None:
        await self._call(worker, DISPLAY, panel.to_wire())

    async def _call(self, worker: WorkerUUID, method: str, params: dict[str, Any]) -> Any:
        session = self._sessions.get(worker)
        if session is None or session.peer is None:
            raise ConnectionError(f"dryad {worker} is not connected")
        seconds = TIMEOUTS[method]
        try:
            return await session.peer.call(method, params, seconds)
        except TimeoutError:
            raise TimeoutError(f"dryad {worker} did not answer {method} in {seconds:g} s") from None
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
        peer = Peer(BoundedLines(session.reader), session.writer, partial(self._handle, session))
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

    def _require_service(self) -> Service:
        if self.service is None:
            raise RuntimeError("DryadLink.service must be set before dryads connect")
        return self.service

    # ---- the dryads' calls -----------------------------------------------------------

    async def _handle(self, session: DryadSession, method: str, params: dict[str, Any]) -> Any:
        if method == ENROL:
            return await self._enrol(session, params)
        if not session.enrolled:
            raise RpcError(NOT_ENROLLED, "this key is not enrolled: call enrol with a token")
        call = self._calls.get(method)
        if call is None:
            raise RpcError(METHOD_NOT_FOUND, f"no method {method!r}")
        try:
            return await call(session, params)
        except BorutaError as exc:
            session.log.warning("%s refused: %s", method, exc.message)
            raise RpcError(REFUSED, exc.message) from exc

    async def _enrol(self, session: DryadSession, params: dict[str, Any]) -> dict[str, str]:
        if session.enrolled:
            return {"uuid": session.uuid}  # a retried enrol after a lost answer
        token = params.get("token")
        try:
            valid = isinstance(token, str) and await anyio.to_thread.run_sync(
                self._store.enrol_token_valid, hash_token(token), self._clock.now()
            )
            if valid:
                await anyio.to_thread.run_sync(
                    self._store.bind_dryad, session.uuid, session.public_key
                )
        except BorutaError as exc:  # Conflict: another key won a race for this UUID
            session.log.warning("enrolment of key %s refused: %s", session.fingerprint, exc)
            self._close_after_answer(session)
            raise RpcError(REFUSED, exc.message) from exc
        if not valid:
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
        return {"uuid": session.uuid}

    @staticmethod
    def _close_after_answer(session: DryadSession) -> None:
        # Peer queues the error answer in the same step in which the handler raises, so a
        # close scheduled now runs after it; the channel flushes queued data before closing.
        asyncio.get_running_loop().call_soon(session.close)

    async def _register(self, session: DryadSession, params: dict[str, Any]) -> dict[str, str]:
        reg = Registration.from_wire(params)
        claimed = reg.caps.get("UUID", "")
        if claimed != session.uuid:
            raise RpcError(REFUSED, f"caps UUID {claimed!r} is not this dryad's {session.uuid}")
        address = _with_host(reg.ssh_address, session.peer_host)
        worker = await self._require_service().register(reg.caps, address)
        session.log.info("registered (%s, ssh %s): %s", reg.version or "?", address, worker.state)
        return {"state": worker.state.value}

    async def _set_fail(self, session: DryadSession, params: dict[str, Any]) -> None:
        reason = params.get("reason")
        if not isinstance(reason, str):
            raise WireError("reason must be a string")
        session.log.error("dryad reports failure: %s", reason)
        await self._require_service().set_fail(session.uuid, reason)

    async def _health(self, session: DryadSession, params: dict[str, Any]) -> None:
        await self._require_service().report_health(session.uuid, HealthReport.from_wire(params))

    async def _button(self, session: DryadSession, params: dict[str, Any]) -> None:
        number = params.get("button")
        if not isinstance(number, int) or isinstance(number, bool):
            raise WireError("button must be an integer")
        await self._require_service().button(session.uuid, number)

    async def _panel(self, session: DryadSession, params: dict[str, Any]) -> None:
        if self.panels is not None:
            await self.panels.update(session.uuid, Panel.from_wire(params))


def _with_host(address: str, peer_host: str) -> str:
    """``address`` with an empty host replaced by the dryad's IP, as the original does."""
    host, sep, port = address.rpartition(":")
    if not sep or host:
        return address  # complete, or malformed (the service refuses it)
    return f"[{peer_host}]:{port}" if ":" in peer_host else f"{peer_host}:{port}"
