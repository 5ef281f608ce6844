"""The dryad link's SSH server (asyncssh): keys decide who a dryad is; all else is denied.

A dryad logs in as SSH user ``<worker UUID>`` with its identity key, then opens one
session channel running the subsystem ``wire.LINK_SUBSYSTEM``. A key bound to that UUID
gets an enrolled session; a UUID bound to another key is refused at authentication; an
unbound UUID gets an unenrolled session that may only call ``enrol`` with a token.
Passwords, keyboard-interactive, host-based and GSS authentication, shells, commands,
ptys, SFTP/SCP, X11 and agent forwarding and every kind of port forwarding are refused,
but for one: an enrolled dryad's remote forward of the virtual ``wire.TUNNEL_HOST:PORT``,
through which job tunnels reach its sshd (no port opens here for it).
"""

from __future__ import annotations

import logging
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import asyncssh
from anyio.abc import TaskStatus
from asyncssh.stream import SSHServerStreamSession

from coordinator.domain.ids import WorkerUUID
from coordinator.errors import StoreUnavailable
from coordinator.link.hostkey import load_or_create
from coordinator.link.registry import DryadLink
from coordinator.link.session import DryadSession, WorkerLog
from coordinator.store import Store
from coordinator.wire import LINK_SUBSYSTEM, TUNNEL_HOST, TUNNEL_PORT

logger = logging.getLogger(__name__)

LISTENING: Final = "dryad link listening on %s:%d"  # stable: e2e tests and scripts wait for it
LOGIN_TIMEOUT: Final = 30.0  # seconds from TCP connect to authenticated
SHUTDOWN_TIMEOUT: Final = 5.0  # seconds to close every connection when stopping
# A tunnel channel's receive window and packets: larger than asyncssh's defaults (2 MiB,
# 32 KiB), so a bulk copy waits less for window adjustments and pays asyncssh's cost per
# packet less often (both ends are ours: no other SSH implementation sees these).
CHANNEL_WINDOW: Final = 8 << 20
CHANNEL_PACKET: Final = 256 << 10


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Where and how the link listens."""

    host: str
    port: int
    host_key: Path
    keepalive: float  # seconds between keepalives; three missed end the connection


class LinkServer:
    """Runs the SSH listener in a task group until cancelled, then closes every connection."""

    def __init__(self, config: LinkConfig, store: Store, link: DryadLink) -> None:
        self._config = config
        self._store = store
        self._link = link
        self._connections: set[asyncssh.SSHServerConnection] = set()

    async def run(
        self, *, task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen; ``task_status.started`` gets the host and the port actually bound."""
        key = await anyio.to_thread.run_sync(load_or_create, self._config.host_key)
        acceptor = await asyncssh.create_server(
            partial(_DryadConnection, self._store, self._link, self._connections),
            self._config.host,
            self._config.port,
            server_host_keys=[key],
            config=None,
            public_key_auth=True,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            allow_scp=False,
            sftp_factory=None,
            encoding=None,
            login_timeout=LOGIN_TIMEOUT,
            keepalive_interval=self._config.keepalive,
            keepalive_count_max=3,
        )
        try:
            host, port = acceptor.sockets[0].getsockname()[:2]
            logger.info(LISTENING, host, port)
            task_status.started((host, port))
            while True:  # the failed attempts' summaries, once their window has ended
                await anyio.sleep(self._link.attempts.window)
                self._link.attempts.sweep()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_TIMEOUT):
                acceptor.close()
                await acceptor.wait_closed()
                for conn in list(self._connections):
                    conn.close()
                for conn in list(self._connections):
                    await conn.wait_closed()
                await self._link.idle()
            logger.info("dryad link stopped")


def worker_uuid(username: str) -> WorkerUUID | None:
    """``username`` as a worker UUID when it is one in canonical lower-case form."""
    try:
        canonical = str(uuid_module.UUID(username))
    except ValueError:
        return None
    return WorkerUUID(username) if canonical == username else None


def openssh(key: asyncssh.SSHKey) -> str:
    """A public key as ``type base64``, without the comment, as bindings are stored."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def fingerprint(public_key: str) -> str:
    try:
        return str(asyncssh.import_public_key(public_key).get_fingerprint())
    except (asyncssh.KeyImportError, ValueError):
        return "(unreadable key)"


class _SshdOffer(asyncssh.SSHListener):
    """The dryad's forward of its sshd: a listener in name only, as nothing listens here;
    asyncssh closes it when the dryad cancels the forward or the connection ends."""

    def __init__(self, session: DryadSession, opener: object) -> None:
        super().__init__()
        self._session = session
        self._opener = opener

    def get_port(self) -> int:
        return TUNNEL_PORT

    def close(self) -> None:
        if self._session.sshd is self._opener:  # not a newer offer on the same session
            self._session.sshd = None

    async def wait_closed(self) -> None:
        return None


class _LinkChannel(SSHServerStreamSession[bytes]):
    """A session channel that runs the link subsystem and nothing else."""

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        return False

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return bool(subsystem == LINK_SUBSYSTEM)


class _DryadConnection(asyncssh.SSHServer):
    """One SSH connection: authentication by enrolment binding, then one link channel."""

    def __init__(
        self,
        store: Store,
        link: DryadLink,
        connections: set[asyncssh.SSHServerConnection],
    ) -> None:
        self._store = store
        self._link = link
        self._connections = connections
        self._conn: asyncssh.SSHServerConnection | None = None
        self._host = "?"
        self._uuid: WorkerUUID | None = None
        self._key = ""  # the key last accepted by validate_public_key
        self._enrolled = False
        self._channel_open = False
        self._session: DryadSession | None = None

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._connections.add(conn)
        peer = conn.get_extra_info("peername")
        self._host = str(peer[0]) if peer else "?"

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._connections.discard(self._conn)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # ---- authentication: public keys of enrolled or enrolling dryads only -------------

    def begin_auth(self, username: str) -> bool:
        self._uuid = worker_uuid(username)
        if self._uuid is None and self._link.attempts.failed(self._host, "not worker UUIDs"):
            logger.warning(
                "link: refused user %.64r from %s: not a worker UUID", username, self._host
            )
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def validate_password(self, username: str, password: str) -> bool:
        return False

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # certificates are not how dryads prove who they are

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh asks once for the key's offer and again with its signature; the state
        # kept here is that of the last call, which is the one that authenticates.
        if self._uuid is None:
            return False
        log = WorkerLog(logger, {"worker": self._uuid})
        offered = openssh(key)
        try:
            bound = await anyio.to_thread.run_sync(self._store.dryad_key, self._uuid)
        except StoreUnavailable as exc:
            log.error("key check from %s failed: %s", self._host, exc.message)
            return False
        if bound is not None and bound != offered:
            if self._link.attempts.failed(self._host, "keys of other workers"):
                log.warning(
                    "refused key %s from %s: this worker is enrolled with key %s",
                    key.get_fingerprint(),
                    self._host,
                    fingerprint(bound),
                )
            return False
        if bound is None and not self._link.attempts.allowed(self._host):
            # Only an enrolment could follow; the address is paused for those. A bound
            # key is let in above whatever the address did.
            self._link.attempts.failed(self._host, "logins while paused")
            return False
        self._key, self._enrolled = offered, bound is not None
        return True

    # ---- channels: one link session; nothing else -------------------------------------

    def session_requested(self) -> _LinkChannel | bool:
        if self._channel_open or self._uuid is None or not self._key:
            return False
        self._channel_open = True
        return _LinkChannel(self._serve)

    async def _serve(
        self, stdin: asyncssh.SSHReader[bytes], stdout: asyncssh.SSHWriter[bytes], stderr: Any
    ) -> None:
        if self._uuid is None:  # session_requested let no such channel open
            return
        session = DryadSession(
            uuid=self._uuid,
            public_key=self._key,
            fingerprint=fingerprint(self._key),
            peer_host=self._host,
            enrolled=self._enrolled,
            reader=stdin,
            writer=stdout,
            close=self._close,
        )
        self._session = session
        try:
            await self._link.serve(session)
        except (asyncssh.Error, OSError) as exc:
            session.log.info("link lost: %s", exc)

    def connection_requested(self, dest_host: str, dest_port: int, *args: Any) -> bool:
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool | asyncssh.SSHListener:
        session, conn = self._session, self._conn
        if (
            (listen_host, listen_port) != (TUNNEL_HOST, TUNNEL_PORT)
            or session is None
            or not session.enrolled
            or conn is None
        ):
            logger.warning(
                "link: refused forward of %.64r:%d from %s (%s)",
                listen_host,
                listen_port,
                self._uuid or "?",
                "not enrolled" if session is None or not session.enrolled else "not ours",
            )
            return False

        async def open_sshd(
            factory: Callable[[], asyncssh.SSHTCPSession[bytes]], host: str, port: int
        ) -> tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]:
            return await conn.create_connection(
                factory,
                TUNNEL_HOST,
                TUNNEL_PORT,
                host,
                port,
                window=CHANNEL_WINDOW,
                max_pktsize=CHANNEL_PACKET,
            )

        session.sshd = open_sshd
        session.log.info("offers its sshd for job tunnels")
        return _SshdOffer(session, open_sshd)

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def tun_requested(self, unit: int | None) -> bool:
        return False

    def tap_requested(self, unit: int | None) -> bool:
        return False
