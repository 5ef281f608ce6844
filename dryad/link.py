"""The link client: dials the coordinator over SSH, enrols, registers, serves, reconnects,
and carries the coordinator's job tunnels to the local sshd."""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import anyio
import asyncssh
from anyio.abc import TaskStatus

from coordinator import wire
from dryad import __version__
from dryad.addresses import Address
from dryad.candidates import Resolver, Rotation, Target, resolve
from dryad.errors import (
    EnrolmentRefused,
    HostKeyMismatch,
    LinkError,
    NoEnrolmentToken,
)
from dryad.identity import Identity
from dryad.settings import Settings
from dryad.states import LinkState

logger = logging.getLogger(__name__)

StateHook = Callable[[LinkState, str], Awaitable[None]]

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")

KEEPALIVE_INTERVAL = 5.0  # seconds; with 3 missed answers a dead coordinator is noticed in 15 s
KEEPALIVE_COUNT_MAX = 3
LINK_CIPHERS = (
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
)
TUNNEL_WINDOW = 8 << 20  # bytes a tunnel channel may have in flight towards us
TUNNEL_PACKET = 256 << 10  # the largest tunnel data packet we accept


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with full jitter, so a farm of dryads does not dial in step."""

    base: float = 1.0
    # Half the coordinator's default link_grace (60 s): after a coordinator restart every
    # dryad dials back well within the grace, so no worker is failed for being slow.
    cap: float = 30.0
    refused: float = 300.0  # after what only a person can fix: a refused token, a new host key

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 32)))


class _Ended(enum.Enum):
    """How one dial, or one round of dials, ended."""

    SERVED = "a link was up and has ended"
    FAILED = "no link came up"
    REFUSED = "refused in a way only a person can fix"


def registration(
    settings: Settings, identity: Identity, host_keys: tuple[str, ...] = ()
) -> wire.Registration:
    """What this dryad tells the coordinator on every (re)connection."""
    caps = {**settings.caps, "UUID": identity.uuid}
    return wire.Registration(caps, settings.ssh_address, __version__, host_keys)


HostKeys = Callable[[], tuple[str, ...]]  # the sshd's host keys, read afresh (blocking)


class Link:
    """The one link to the coordinator, redialled for as long as ``run`` runs.

    The agent sends through ``call`` and ``notify``; they raise ``LinkError`` while
    the link is down rather than queueing, since a late button press or health report
    would mislead.
    """

    def __init__(
        self,
        settings: Settings,
        identity: Identity,
        *,
        backoff: Backoff = Backoff(),
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        connect_timeout: float = 30.0,
        host_keys: HostKeys | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self._settings = settings
        self._host_keys = host_keys
        self._identity = identity
        self._backoff = backoff
        self._keepalive = keepalive_interval
        self._connect_timeout = connect_timeout
        self._peer: wire.Peer | None = None
        self._state: LinkState | None = None
        self._running = False
        # Its own UUID picks where its first round starts: dryads spread over the coordinators.
        self._rotation = Rotation(settings.coordinators, resolver, identity.uuid)
        self._target: Target | None = None  # the coordinator linked, or last dialled

    @property
    def coordinator(self) -> str:
        """The coordinator linked now (or, while down, the one last dialled), as
        configured: for the panel and the status line."""
        if self._target is None:
            return self._settings.coordinator
        return str(self._target.address)

    @property
    def host(self) -> str:
        """The IP address of the coordinator linked now, which dial-backs go to; the
        first configured host before any dial."""
        if self._target is None:
            return self._settings.coordinator_host
        return self._target.ip

    @property
    def running(self) -> bool:
        """Whether ``run``'s dial-serve-redial loop still goes on (the watchdog asks)."""
        return self._running

    @property
    def connected(self) -> bool:
        return self._peer is not None

    async def call(self, method: wire.Method[P, R], params: P) -> R:
        """Call the coordinator, waiting as long as the method's row says; raises
        ``LinkError``, ``wire.RpcError``, ``wire.WireError`` or ``TimeoutError``."""
        peer = self._need_peer()
        try:
            return await peer.ask(method, params)
        except wire.RpcError:
            raise
        except ConnectionError as exc:
            raise LinkError(f"{method}: link to the coordinator lost") from exc

    async def notify(self, method: wire.Method[P, Any], params: P) -> None:
        """Send a notification; raises ``LinkError`` while the link is down."""
        peer = self._need_peer()
        try:
            await peer.tell(method, params)
        except ConnectionError as exc:
            raise LinkError(f"{method}: link to the coordinator lost") from exc

    def _need_peer(self) -> wire.Peer:
        if self._peer is None:
            raise LinkError(f"not connected to the coordinator {self.coordinator}")
        return self._peer

    async def run(
        self,
        handler: wire.Handler,
        on_state: StateHook,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Dial, serve the coordinator's calls with ``handler``, and redial, forever.

        ``on_state`` hears every change of ``LinkState`` with a one-line detail.
        """
        task_status.started()
        self._running = True
        try:
            await self._redial(handler, on_state)
        finally:
            self._running = False

    async def _redial(self, handler: wire.Handler, on_state: StateHook) -> NoReturn:
        failed_rounds = 0
        while True:
            targets = await self._rotation.round(self._unresolved)
            ended = await self._round(targets, handler, on_state)
            if ended is _Ended.SERVED:
                # A link that served restarts the back-off; the short jitter keeps a farm
                # of dryads from dialling the next coordinator all at once.
                failed_rounds = 1
                delay = self._backoff.delay(0)
            else:
                # Only a whole round failed makes the back-off grow (docs/failover.md).
                refused = ended is _Ended.REFUSED
                delay = self._backoff.refused if refused else self._backoff.delay(failed_rounds)
                failed_rounds += 1
                logger.warning(
                    "no coordinator reached (%s); retrying in %.1f s",
                    ", ".join(str(t) for t in targets) or "no address resolved",
                    delay,
                )
            await anyio.sleep(delay)

    async def _round(
        self, targets: list[Target], handler: wire.Handler, on_state: StateHook
    ) -> _Ended:
        """Dial each target in turn until one served a link (that has now ended)."""
        outcomes: list[_Ended] = []
        for target in targets:
            self._target = target
            ended = await self._attempt(target, handler, on_state)
            if ended is _Ended.SERVED:
                self._rotation.served(target)
                return ended
            outcomes.append(ended)
        if outcomes and all(o is _Ended.REFUSED for o in outcomes):
            return _Ended.REFUSED  # only a person can fix it: retry slowly
        return _Ended.FAILED

    async def _attempt(self, target: Target, handler: wire.Handler, on_state: StateHook) -> _Ended:
        """One dial of ``target``, and its link while it lasts; logs how it ended."""
        try:
            await self._session(target, handler, on_state)
        except HostKeyMismatch as exc:
            logger.error("link to %s: %s", target, exc)
            await self._set_state(on_state, LinkState.HOST_KEY_MISMATCH, "host key changed")
            return _Ended.REFUSED
        except NoEnrolmentToken as exc:
            logger.error("link to %s: %s", target, exc)
            await self._set_state(on_state, LinkState.NOT_ENROLLED, "no enrolment token")
            return _Ended.REFUSED
        except EnrolmentRefused as exc:
            logger.error("link to %s: %s", target, exc)
            await self._set_state(on_state, LinkState.ENROLMENT_REFUSED, "enrolment refused")
            return _Ended.REFUSED
        except (OSError, asyncssh.Error, TimeoutError, wire.RpcError, wire.WireError) as exc:
            # OSError covers ConnectionError and so LinkError; asyncssh.Error covers
            # refused authentication and keepalive timeouts; WireError an answer to
            # enrol or register that is not the table's.
            served = self._state is LinkState.CONNECTED
            logger.warning(
                "link to %s %s: %s", target, "lost" if served else "failed", _reason(exc)
            )
            await self._set_state(on_state, LinkState.DISCONNECTED, _reason(exc))
            return _Ended.SERVED if served else _Ended.FAILED
        # The coordinator closed the channel cleanly (say, it is restarting).
        logger.warning("link to %s closed by the coordinator; redialling", target)
        await self._set_state(on_state, LinkState.DISCONNECTED, "closed by coordinator")
        return _Ended.SERVED

    def _unresolved(self, address: Address, exc: OSError) -> None:
        logger.warning("link to %s failed: cannot resolve: %s", address, _reason(exc))

    async def _set_state(self, on_state: StateHook, state: LinkState, detail: str) -> None:
        if state is self._state and state is not LinkState.CONNECTED:
            return  # the panel already says so; a retry changes nothing for people
        self._state = state
        try:
            await on_state(state, detail)
        except Exception:  # the panel failing must not take the link down
            logger.exception("link: state hook failed for %s", state)

    async def _session(self, target: Target, handler: wire.Handler, on_state: StateHook) -> None:
        """One connection, from dialling to its end; returns if the coordinator closed it."""
        client = _Client(self._identity, str(target))
        try:
            conn = await asyncssh.connect(
                target.ip,
                target.address.port,
                client_factory=lambda: client,
                username=self._identity.uuid,
                client_keys=[self._identity.key],
                known_hosts=([], [], []),  # no file: _Client decides (trust on first use)
                preferred_auth="publickey",
                agent_path=None,
                config=None,  # no ~/.ssh/config: the dryad's behaviour must not vary per host
                keepalive_interval=self._keepalive,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
                connect_timeout=self._connect_timeout,
                # AES-GCM first: with AES instructions it carries bulk tunnel traffic about
                # twice as fast as asyncssh's default ChaCha20 (docs/architecture.md §throughput).
                encryption_algs=LINK_CIPHERS,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise client.mismatch or LinkError("coordinator host key not verifiable") from None
        except asyncssh.PermissionDenied:
            # The coordinator binds each UUID to one key: ours is not the one it knows.
            raise EnrolmentRefused(
                f"the coordinator refused key {self._identity.fingerprint} for worker "
                f"{self._identity.uuid}; is this UUID enrolled with another key?"
            ) from None
        try:
            writer, reader, _ = await conn.open_session(
                subsystem=wire.LINK_SUBSYSTEM, encoding=None
            )
            peer = wire.Peer(reader, writer, handler, calls=wire.Direction.TO_COORDINATOR)
            await self._serve(target, peer, on_state, conn)
        finally:
            self._peer = None
            conn.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await conn.wait_closed()

    async def _serve(
        self,
        target: Target,
        peer: wire.Peer,
        on_state: StateHook,
        conn: asyncssh.SSHClientConnection,
    ) -> None:
        ended = anyio.Event()
        failure: BaseException | None = None

        async def serve() -> None:
            nonlocal failure
            try:
                await peer.serve()
            except (OSError, asyncssh.Error) as exc:
                failure = exc
            finally:
                ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            try:
                registered = await self._handshake(target, peer)
            except Exception as exc:
                # Raised after the task group, not from its body, so callers see the
                # error itself rather than an ExceptionGroup.
                failure = failure or exc
                tg.cancel_scope.cancel()
            else:
                await self._offer_sshd(conn)
                self._peer = peer
                logger.info(
                    "dryad connected to coordinator %s as %s",
                    target,
                    self._identity.uuid,
                )
                # The detail is the worker's state as registered: the panel draws it at
                # once (a restarted dryad shows its boot screen until told otherwise).
                await self._set_state(on_state, LinkState.CONNECTED, registered.state.value)
                await ended.wait()
        peer.close()
        if failure is not None:
            raise failure

    async def _offer_sshd(self, conn: asyncssh.SSHClientConnection) -> None:
        """Ask the coordinator to send job tunnels to us, as channels we connect to the
        local sshd; a refusal leaves the link up, as every other service still works."""
        port = int(self._settings.ssh_address.rpartition(":")[2])

        async def to_sshd(orig_host: str, orig_port: int) -> asyncssh.SSHTCPSession[bytes]:
            try:
                # asyncssh's forwarder copies with flow control both ways.
                return await conn.forward_connection("127.0.0.1", port)  # type: ignore[return-value]
            except asyncssh.ChannelOpenError as exc:
                logger.warning(
                    "tunnel from %s:%d: the local sshd (port %d) refused: %s",
                    orig_host, orig_port, port, exc.reason,
                )  # fmt: skip
                raise

        try:
            await conn.create_server(
                to_sshd,
                wire.TUNNEL_HOST,
                wire.TUNNEL_PORT,
                window=TUNNEL_WINDOW,  # larger than asyncssh's defaults: bulk copies (scp)
                max_pktsize=TUNNEL_PACKET,
            )
        except asyncssh.ChannelListenError as exc:
            logger.error("the coordinator refused our sshd forward, so no job tunnels: %s", exc)

    async def _handshake(self, target: Target, peer: wire.Peer) -> wire.Registered:
        """Enrol if we must, then register; the coordinator's calls are served meanwhile.
        Returns the coordinator's answer to ``register`` (the worker's state)."""
        if not self._identity.enrolled and self._settings.read_enrol_token() is not None:
            await self._enrol(target, peer)  # the coordinator answers a repeated enrol kindly
        # Read at every connection: first boot may make the sshd's keys after we start.
        keys = () if self._host_keys is None else await anyio.to_thread.run_sync(self._host_keys)
        params = registration(self._settings, self._identity, keys)
        try:
            registered = await peer.ask(wire.REGISTER, params)
        except wire.RpcError as exc:
            if exc.code != wire.NOT_ENROLLED:
                raise LinkError(f"register refused: {exc.message}") from exc
            # Unknown to the coordinator: never enrolled, or its database is new.
            if self._identity.enrolled:
                logger.warning("coordinator does not know this dryad any more; enrolling again")
                self._identity.forget_enrolment()
            await self._enrol(target, peer)
            registered = await peer.ask(wire.REGISTER, params)
        if not self._identity.enrolled:
            self._identity.mark_enrolled(str(target))  # lost marker, key known
        return registered

    async def _enrol(self, target: Target, peer: wire.Peer) -> None:
        token = self._settings.read_enrol_token()
        if token is None:
            raise NoEnrolmentToken(
                "not enrolled and no enrol_token configured; create one with "
                "`boruta-coordinator enrol-token create` and put it in the configuration"
            )
        try:
            await peer.ask(wire.ENROL, wire.Enrol(token))
        except wire.RpcError as exc:
            if exc.code == wire.REFUSED:
                raise EnrolmentRefused(f"enrolment refused: {exc.message}") from exc
            raise LinkError(f"enrol failed: {exc.message}") from exc
        self._identity.mark_enrolled(str(target))
        logger.info("enrolled as %s with key %s", self._identity.uuid, self._identity.fingerprint)


class _Client(asyncssh.SSHClient):
    """Checks the coordinator's host key against the one trusted on first use."""

    def __init__(self, identity: Identity, coordinator: str) -> None:
        self._identity = identity
        self._coordinator = coordinator
        self.mismatch: HostKeyMismatch | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        try:
            self._identity.verify_host_key(key, self._coordinator)
        except HostKeyMismatch as exc:
            self.mismatch = exc  # asyncssh only hears False; run() reports the details
            return False
        return True


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is None or not str(cause) or str(cause) in text:
        return text
    return f"{text} ({cause})"
