"""A job's ``known_hosts``: the worker sshd's host keys the coordinator vouches for, under
the tunnel's ``[host]:port``, so that ``ssh`` checks the board strictly.

The tunnel's bytes may travel between the board and the coordinator outside the dryad's
encrypted link; a checked host key is what keeps anyone on that path out of the user's
session (docs/boruta-api.md §host keys).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Final

from coordinator.boruta_cli import keys
from coordinator.domain.ids import RequestID
from coordinator.domain.model import AccessInfo
from coordinator.errors import MalformedInput
from coordinator.wire import hostkeys

# What the coordinator gives as the host: an IP literal or a DNS name. Nothing that
# known_hosts reads specially (",", "*", "!", "#", white space) gets through.
_HOST: Final = re.compile(r"[A-Za-z0-9._:-]+")


def entry(host: str, port: int) -> str:
    """How ``known_hosts`` names ``host:port``: ``[host]:port``, or the bare host on 22.

    :raises MalformedInput: a host or port the coordinator should never have given.
    """
    if not _HOST.fullmatch(host) or not 0 < port < 65536:
        raise MalformedInput(f"the server's address {host!r} port {port} is not one")
    return host if port == 22 else f"[{host}]:{port}"


def text(access: AccessInfo) -> str:
    """The ``known_hosts`` lines of ``access``: one per host key, each checked again.

    :raises MalformedInput: a host, port or key that cannot be written safely.
    """
    name = entry(access.host, access.port)
    try:
        return "".join(f"{name} {hostkeys.host_key(key)}\n" for key in access.host_keys)
    except hostkeys.HostKeyRefused as exc:
        raise MalformedInput(f"the server vouches for a host key that is not one: {exc}") from None


def path(rid: RequestID) -> Path:
    return keys.folder() / f"boruta-{rid}.known_hosts"


def save(rid: RequestID, access: AccessInfo) -> Path:
    """Write the request's ``known_hosts`` (mode 0600, replacing any file at that name
    without writing through it) and return its path."""
    return keys.write_private(path(rid), text(access).encode(), ".known_hosts-")


def temporary(rid: RequestID, access: AccessInfo) -> str:
    """The request's ``known_hosts`` in a private temporary file; the caller removes it."""
    lines = text(access)
    fd, name = tempfile.mkstemp(prefix=f"boruta-{rid}-", suffix=".known_hosts")
    with os.fdopen(fd, "w") as sink:
        sink.write(lines)
    return name


def forget(rid: RequestID) -> None:
    """Remove a request's ``known_hosts``, if there is one (its job has ended)."""
    with contextlib.suppress(FileNotFoundError):
        path(rid).unlink()


def option_value(file: str) -> str:
    """``file`` as ssh_config(5) reads a ``UserKnownHostsFile`` value: ``%`` starts a
    token and white space separates files, so escape the one and quote the other."""
    escaped = file.replace("%", "%%")
    return f'"{escaped}"' if any(c.isspace() for c in escaped) else escaped


def ssh_options(file: str) -> list[str]:
    """``ssh`` options that accept exactly the host keys in ``file``."""
    return [
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={option_value(file)}",
    ]


def unvouched(access: AccessInfo) -> str | None:
    """Why ``ssh`` will refuse the board, when the coordinator vouches for no host key."""
    if access.host_keys:
        return None
    return (
        "warning: the coordinator vouches for no host key of this worker (its dryad "
        "reported none, or the coordinator is older), so ssh will refuse it (host key "
        "verification failed); ask an admin to update the board"
    )
