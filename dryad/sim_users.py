"""The simulated job user: the job's key for the dryad's own SSH server, a home per job.

``[job_user] simulate = true`` (docs/simulated-board.md): no system user is created;
``prepare`` gives the board's SSH server the job's key and a fresh home under the board's
folder, ``release`` takes the key back, ends every session and removes the home. The key
is kept in the state directory so that a dryad restarted during a job serves it again.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path

import anyio
import asyncssh
from anyio.abc import TaskStatus

from dryad.errors import ConfigError, JobUserError
from dryad.settings import Settings
from dryad.sim_ssh import JobSshServer
from dryad.users import JobUsers, authorized_key

logger = logging.getLogger(__name__)

HOST_KEY = "sim_ssh_host_key"
JOB_KEY = "sim_job_key.pub"
PORT_FILE = "sim_ssh_port"  # the port chosen for "port 0", kept: the coordinator takes a
# changed sshd port for a changed board (maintenance), so a restart must keep it
# Passed on to sessions when set: what a shell needs to find commands and the project.
PASSED_ON = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")


class SimJobUsers:
    """The job user of a simulated board (what ``JobUsers`` is on a real one).

    :param name: the user name the coordinator hands out (``job_username``); the only
        name the server accepts.
    :param home: the job's home directory, recreated for each job.
    :param state_dir: where the server's host key and the running job's key are kept.
    :param address: HOST:PORT to listen on; port 0 picks a free one.
    :param stm_socket: the control socket ``stm`` in a session talks to.
    """

    def __init__(
        self,
        name: str,
        *,
        home: Path,
        state_dir: Path,
        host: str,
        port: int,
        stm_socket: Path,
    ) -> None:
        self.name = name
        self.home = home
        self._state_dir = state_dir
        self._key_file = state_dir / JOB_KEY
        sock = _listen(host or "127.0.0.1", port, state_dir / PORT_FILE)
        self._lock = anyio.Lock()
        self.server = JobSshServer(
            sock,
            username=name,
            home=home,
            host_key=_host_key(state_dir / HOST_KEY),
            env=_session_env(stm_socket),
        )

    @property
    def port(self) -> int:
        """The port the server listens on (the one chosen when 0 was asked)."""
        return self.server.address[1]

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve SSH until cancelled; a job's key kept from before a restart is served again."""
        try:
            line = self._key_file.read_text()
        except FileNotFoundError:
            pass
        else:
            if self.home.is_dir():
                self.server.grant(line)
                logger.info("simulated job user: serving the running job's key again")
        await self.server.run(task_status=task_status)

    async def prepare(self, public_key: str) -> None:
        """A fresh home and ``public_key`` as the only key that logs in.

        :raises JobUserError: the key is refused, or the home cannot be made.
        """
        line = authorized_key(public_key)
        async with self._lock:
            await self.server.revoke()
            try:
                await anyio.to_thread.run_sync(self._fresh_home, line)
            except OSError as exc:
                raise JobUserError(f"simulated job user: {exc}") from exc
            self.server.grant(line)
        logger.info("simulated job user %s prepared in %s", self.name, self.home)

    async def release(self) -> None:
        """The key stops working, every session and process of the job ends, the home goes.

        :raises JobUserError: the home cannot be removed.
        """
        async with self._lock:
            await self.server.revoke()
            try:
                await anyio.to_thread.run_sync(self._remove)
            except OSError as exc:
                raise JobUserError(f"simulated job user: {exc}") from exc
        logger.info("simulated job user %s released", self.name)

    def _fresh_home(self, line: str) -> None:
        self._remove()
        self.home.mkdir(mode=0o700, parents=True)
        # What /etc/skel and /usr/bin give a board's job user: `stm` on PATH in a login
        # shell too (Debian's /etc/profile resets PATH before reading ~/.profile).
        bin_dir = Path(sys.executable).parent
        (self.home / ".profile").write_text(
            "# Written by the simulated dryad for each job (docs/simulated-board.md).\n"
            f'export PATH="{bin_dir}:$PATH"\n'
        )
        _write_private(self._key_file, line)

    def _remove(self) -> None:
        self._key_file.unlink(missing_ok=True)
        if self.home.is_symlink():
            self.home.unlink()
        elif self.home.exists():
            shutil.rmtree(self.home)


def _listen(host: str, port: int, port_file: Path) -> socket.socket:
    """A listening socket on ``port``; for 0, the port kept in ``port_file`` if it is free
    (else a new one, noted there)."""
    if port == 0:
        try:
            kept = int(port_file.read_text())
        except (OSError, ValueError):
            kept = 0
        if kept:
            try:
                return socket.create_server((host, kept))
            except OSError as exc:
                logger.warning(
                    "simulated sshd: port %d of the last run is taken (%s); choosing another "
                    "(the coordinator will put the worker in maintenance)",
                    kept, exc.strerror or exc,
                )  # fmt: skip
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise ConfigError(
            f"ssh_address: cannot listen on {host}:{port} for the simulated sshd: "
            f"{exc.strerror or exc}"
        ) from exc
    if port == 0:
        port_file.parent.mkdir(parents=True, exist_ok=True)
        port_file.write_text(f"{sock.getsockname()[1]}\n")
    return sock


def _session_env(stm_socket: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ON if k in os.environ}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    env["BORUTA_STM_SOCKET"] = str(stm_socket)
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    env["USER"] = env["LOGNAME"] = user
    return env


def _host_key(path: Path) -> asyncssh.SSHKey:
    """The server's Ed25519 host key, made on first use and kept (stable fingerprint)."""
    try:
        return asyncssh.read_private_key(path)
    except FileNotFoundError:
        pass
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"simulated sshd host key {path}: {exc}") from exc
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, key.export_private_key().decode())
    return key


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def job_users(settings: Settings) -> JobUsers | SimJobUsers:
    """The job user the configuration asks for; a simulated one listens at once.

    :raises ConfigError: a bad name, or the simulated sshd's address cannot be bound.
    """
    ju = settings.job_user
    if not ju.simulate:
        return JobUsers(ju.name, ju.groups, ju.manage)
    host, _, port = settings.ssh_address.rpartition(":")
    return SimJobUsers(
        ju.name,
        home=ju.home_in(settings.state_dir),
        state_dir=settings.state_dir,
        host=host.strip("[]"),
        port=int(port),
        stm_socket=settings.control_sockets()[0],
    )


def with_port(settings: Settings, users: JobUsers | SimJobUsers) -> Settings:
    """``settings`` with the simulated sshd's real port (registered, health-checked)."""
    if not isinstance(users, SimJobUsers):
        return settings
    host = settings.ssh_address.rpartition(":")[0]
    return replace(
        settings,
        ssh_address=f"{host}:{users.port}",
        health=replace(settings.health, sshd_port=users.port),
    )
