"""The per-job Unix user: recreated with the next job's key, removed without a trace."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from dryad.errors import ConfigError, JobUserError

logger = logging.getLogger(__name__)

# Exit codes of shadow's useradd and userdel, worded as the original dryad (boruta:dryad/user.go).
USERADD_EXIT = {
    1: "can't update password file",
    2: "invalid command syntax",
    3: "invalid argument to option",
    4: "UID already in use (and no -o)",
    6: "specified group doesn't exist",
    9: "username already in use",
    10: "can't update group file",
    12: "can't create home directory",
    14: "can't update SELinux user mapping",
}
USERDEL_EXIT = {
    1: "can't update password file",
    2: "invalid command syntax",
    6: "specified user doesn't exist",
    8: "user currently logged in",
    10: "can't update group file",
    12: "can't remove home directory",
}
USERDEL_ABSENT = 6
GETENT_ABSENT = 2  # getent: "one or more supplied key could not be found"
PKILL_NONE = 1  # pkill/pgrep: no process matched
# Every process state but Z (zombie) and X (dead). A zombie of the user runs nothing and
# holds nothing; it stays until its parent (maybe not the user's, maybe a slow init) reaps
# it, and SIGKILL cannot hurry that, so counting it would fail a clean release.
LIVING = ["--runstates", "D,I,K,P,R,S,T,t,W"]

KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
# Names every useradd accepts; also keeps the name safe inside paths and argv.
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
KILL_ROUNDS = 20


class CommandRunner(Protocol):
    """Runs a command and returns (exit code, stdout, stderr)."""

    async def run(self, argv: Sequence[str]) -> tuple[int, str, str]: ...


class SystemRunner:
    """Runs commands on this machine."""

    async def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        try:
            done = await anyio.run_process(list(argv), check=False)
        except OSError as exc:
            return 127, "", f"{argv[0]}: {exc}"
        return (
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )


@dataclass(frozen=True)
class Account:
    """The passwd entry of the job user."""

    uid: int
    gid: int
    home: Path


def authorized_key(public_key: str) -> str:
    """The one ``authorized_keys`` line for *public_key* (an OpenSSH public key line).

    :raises JobUserError: the key is empty ("empty public key") or not a public key line.
    """
    text = public_key.strip()
    if not text:
        raise JobUserError("empty public key")
    fields = text.split(maxsplit=2)
    if "\n" in text or "\r" in text or len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise JobUserError("malformed public key: expected one 'TYPE BASE64 [COMMENT]' line")
    try:
        blob = base64.b64decode(fields[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        named = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise JobUserError("malformed public key: its base64 body does not decode") from None
    if named != fields[0]:
        raise JobUserError(f"malformed public key: the body is a {named!r} key, not {fields[0]}")
    return " ".join(fields) + "\n"


class JobUsers:
    """Creates and removes the job user ``name`` (original: ``boruta-user``).

    :param groups: supplementary groups, created where missing.
    :param manage: False on a developer machine running a simulated farm: nothing is done.
    :param home_root: where the home is created (``useradd -d``), and checked gone.
    """

    def __init__(
        self,
        name: str,
        groups: Sequence[str],
        manage: bool,
        runner: CommandRunner | None = None,
        home_root: Path = Path("/home"),
    ) -> None:
        for word in (name, *groups):
            if not _NAME.fullmatch(word):
                raise ConfigError(f"{word!r} is not a valid user or group name")
        self.name = name
        self.groups = tuple(groups)
        self.manage = manage
        self.home = home_root / name
        self._runner = runner or SystemRunner()
        self._lock = anyio.Lock()
        if not manage:
            logger.warning("job users are not managed on this dryad")

    async def prepare(self, public_key: str) -> None:
        """Recreate the user with a fresh home whose only authorized key is *public_key*.

        :raises JobUserError: the key is refused, or a step failed (the message says which).
        """
        line = authorized_key(public_key)
        if not self.manage:
            return
        async with self._lock:
            await self._remove()
            await anyio.to_thread.run_sync(self._remove_leftover_home)
            for group in self.groups:
                code, _, _ = await self._runner.run(["getent", "group", group])
                if code == GETENT_ABSENT:
                    await self._must(["groupadd", "-f", group], "groupadd")
            useradd = ["useradd", "-p", "*", "-m", "-d", str(self.home)]
            if self.groups:
                useradd += ["-G", ",".join(self.groups)]
            await self._must([*useradd, self.name], "useradd", USERADD_EXIT)
            account = await self._account()
            if account is None:
                raise JobUserError(f"useradd reported success but {self.name} has no passwd entry")
            await anyio.to_thread.run_sync(_install_key, account, line)
            logger.info("job user %s prepared (uid %d)", self.name, account.uid)

    async def release(self) -> None:
        """Kill every process of the user, remove it and its home, and check nothing remains.

        :raises JobUserError: a step failed or something of the user survived.
        """
        if not self.manage:
            return
        async with self._lock:
            account = await self._remove()
            await self._verify_gone(account)
            logger.info("job user %s released", self.name)

    async def _remove(self) -> Account | None:
        """Kill the user's processes and delete it with its home; its old entry, if any."""
        account = await self._account()
        if account is not None:
            await self._kill_all(self.name)
        code, out, err = await self._runner.run(["userdel", "-r", "-f", self.name])
        if code not in (0, USERDEL_ABSENT):
            raise _failure("userdel", self.name, code, out, err, USERDEL_EXIT)
        return account

    async def _kill_all(self, who: str) -> None:
        # A process may fork while we kill; repeat until pkill finds nothing to signal.
        for round_ in range(KILL_ROUNDS):
            code, out, err = await self._runner.run(["pkill", "-KILL", *LIVING, "-u", who])
            if code == PKILL_NONE:
                return
            if code != 0:
                raise _failure("pkill", who, code, out, err, {})
            await anyio.sleep(0.01 * round_)  # SIGKILL is delivered asynchronously
        raise JobUserError(
            f"processes of {who} survive {KILL_ROUNDS} rounds of pkill -KILL (a fork bomb?)"
        )

    async def _verify_gone(self, account: Account | None) -> None:
        left = []
        if await self._account() is not None:
            left.append("its passwd entry")
        homes = {self.home} | ({account.home} if account else set())
        left += [f"its home {home}" for home in sorted(homes) if home.exists()]
        if account is not None:
            code, out, _ = await self._runner.run(["pgrep", *LIVING, "-u", str(account.uid)])
            if code != PKILL_NONE:
                pids = ", ".join(out.split()) or "?"
                left.append(f"processes of uid {account.uid} ({pids})")
        if left:
            raise JobUserError(f"job user {self.name} was not removed: " + "; ".join(left))

    async def _account(self) -> Account | None:
        code, out, err = await self._runner.run(["getent", "passwd", self.name])
        if code == GETENT_ABSENT:
            return None
        if code != 0:
            raise _failure("getent passwd", self.name, code, out, err, {})
        fields = out.strip().split(":")
        try:
            return Account(int(fields[2]), int(fields[3]), Path(fields[5]))
        except (IndexError, ValueError):
            raise JobUserError(f"getent passwd {self.name}: unreadable entry {out!r}") from None

    def _remove_leftover_home(self) -> None:
        # userdel of an absent user removes nothing; a home left by a crash must not
        # be adopted by the next job (useradd -m keeps an existing directory).
        if self.home.is_symlink():
            self.home.unlink()
        elif self.home.exists():
            logger.warning("removing leftover home %s", self.home)
            shutil.rmtree(self.home)

    async def _must(
        self, argv: list[str], what: str, messages: dict[int, str] | None = None
    ) -> None:
        code, out, err = await self._runner.run(argv)
        if code != 0:
            raise _failure(what, self.name, code, out, err, messages or {})


def _failure(
    what: str, name: str, code: int, out: str, err: str, messages: dict[int, str]
) -> JobUserError:
    said = (err or out).strip().splitlines()
    detail = messages.get(code) or (said[-1] if said else "no message")
    return JobUserError(f"{what} {name} failed: {detail} (exit {code})")


def _install_key(account: Account, line: str) -> None:
    """~/.ssh (0700) and ~/.ssh/authorized_keys (0600) with *line*, owned by the user."""
    ssh = account.home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    os.chmod(ssh, 0o700, follow_symlinks=False)  # mkdir's mode is cut by the umask
    os.chown(ssh, account.uid, account.gid, follow_symlinks=False)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(ssh / "authorized_keys", flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.fchown(fd, account.uid, account.gid)
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)
