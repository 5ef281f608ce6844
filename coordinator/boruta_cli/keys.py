"""Where the CLI keeps a job's private key: one private file per request in the user's cache."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from coordinator.domain.ids import RequestID


def folder() -> Path:
    """``$XDG_CACHE_HOME/boruta`` (``~/.cache/boruta``), only the user may enter it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "boruta"


def path(rid: RequestID) -> Path:
    return folder() / f"boruta-{rid}.key"


def save(rid: RequestID, pem: bytes) -> Path:
    """Write the key with mode 0600 and return its path."""
    return write_private(path(rid), pem, ".key-")


def write_private(target: Path, data: bytes, prefix: str) -> Path:
    """Write ``data`` to ``target`` (mode 0600, in the private key folder) and return it.

    The data goes to a new private file that then replaces the old name, so a file or
    symlink left at that name is never written through, and a reader never sees half of it.
    """
    where = folder()
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    if where.stat().st_uid == os.getuid():
        where.chmod(0o700)  # an existing folder may have been looser
    fd, temp = tempfile.mkstemp(dir=where, prefix=prefix)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(data)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return target


def forget(rid: RequestID) -> None:
    """Remove a request's key file, if there is one (its job has ended)."""
    with contextlib.suppress(FileNotFoundError):
        path(rid).unlink()
