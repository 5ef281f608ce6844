"""The simulated board's SSH server: the job's key only, as this process's user.

An asyncssh server inside the dryad (docs/simulated-board.md §Why asyncssh): it needs no
root, no system user and no sshd binary. Every callback denies by default; the one
public key it accepts is the running job's, for the job user's name only, and
:meth:`JobSshServer.revoke` ends every session and process of the job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Mapping
from pathlib import Path

import anyio
import asyncssh
from anyio.abc import TaskStatus

from dryad.sim_shell import MARK, run_session

logger = logging.getLogger(__name__)

REVOKE_WAIT = 5.0  # seconds for killed processes to go before revoke gives up waiting


class JobSshServer:
    """Serves SSH on a bound socket for user ``username`` with at most one authorized key.

    :param sock: a listening TCP socket (bound by the caller, so the port is known early).
    :param home: the job's home: sessions start there with ``HOME`` set to it.
    :param env: the sessions' environment (``HOME`` and the job's mark are added).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        username: str,
        home: Path,
        host_key: asyncssh.SSHKey,
        env: Mapping[str, str],
    ) -> None:
        self._sock = sock
        self.username = username
        self.home = home
        self._host_key = host_key
        self._env = dict(env)
        self._key: asyncssh.SSHKey | None = None
        self._generation = 0  # the job's mark: new for each granted key
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._children: set[asyncio.subprocess.Process] = set()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def host_keys(self) -> tuple[str, ...]:
        """This server's host public key, ``type base64``, as the dryad reports it."""
        return (self._host_key.export_public_key().decode().strip(),)

    @property
    def granted(self) -> bool:
        return self._key is not None

    def grant(self, public_key: str) -> None:
        """From now on, ``public_key`` (one OpenSSH line) logs in as the job user."""
        self._key = asyncssh.import_public_key(public_key)
        self._generation += 1

    async def revoke(self) -> None:
        """Refuse the key, close every connection and kill every process of the job."""
        self._key = None
        mark = self._mark()
        for conn in list(self._connections):
            conn.close()
        for child in list(self._children):
            _kill_group(child.pid)
        self._generation += 1  # a new session from now on carries another mark
        with anyio.move_on_after(REVOKE_WAIT):
            while left := await anyio.to_thread.run_sync(_marked, mark):
                for pid in left:
                    _kill(pid)
                await anyio.sleep(0.05)
        if self._connections:
            logger.info("simulated sshd: %d sessions closed", len(self._connections))

    def _mark(self) -> str:
        return f"{os.getpid()}-{id(self)}-{self._generation}"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled; then end every session."""
        acceptor = await asyncssh.listen(
            sock=self._sock,
            server_factory=lambda: _Server(self),
            server_host_keys=[self._host_key],
            process_factory=self._session,
            sftp_factory=self._sftp,
            allow_scp=True,
            encoding=None,
            # Like a board's sshd: agent and X11 forwarding are not offered.
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=True,
        )
        host, port = self.address
        logger.info("simulated sshd for %s listening on %s:%d", self.username, host, port)
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            acceptor.close()
            with anyio.CancelScope(shield=True):
                await self.revoke()
                await acceptor.wait_closed()

    def _sftp(self, chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        return _Sftp(chan, chroot=os.fsencode(self.home))

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        env = {**self._env, "HOME": str(self.home), MARK: self._mark()}
        peer = process.get_extra_info("peername") or ("?", 0)
        env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {self.address[0]} {self.address[1]}"
        await run_session(process, home=self.home, env=env, started=self._children)

    def _accepts(self, username: str, key: asyncssh.SSHKey) -> bool:
        granted = self._key
        return (
            granted is not None
            and username == self.username
            and key.public_data == granted.public_data
        )


class _Sftp(asyncssh.SFTPServer):
    """asyncssh's SFTP server, rooted at the job's home, ending with exit status 0: OpenSSH's
    scp (SFTP by default) takes a session without one for a failure."""

    def exit(self) -> None:
        self.channel.exit(0)


class _Server(asyncssh.SSHServer):
    """One connection: public-key authentication only, sessions only, nothing forwarded."""

    def __init__(self, owner: JobSshServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate; there is no anonymous access

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = self._owner._accepts(username, key)
        if not ok:
            logger.info("simulated sshd: refused key %s for %r", key.get_fingerprint(), username)
        return ok


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _marked(mark: str) -> list[int]:
    """Living processes of ours whose environment carries ``MARK=mark``."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if status.rpartition(")")[2].split()[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found
