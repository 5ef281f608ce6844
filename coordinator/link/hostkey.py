"""The link's SSH host key: an Ed25519 key made on first start, then loaded from its file."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import asyncssh

logger = logging.getLogger(__name__)


def load_or_create(path: Path) -> asyncssh.SSHKey:
    """The host key at ``path``; made (mode 0600, written atomically) when there is none.

    :raises OSError: when the file cannot be read or written.
    :raises asyncssh.KeyImportError: when the file holds no usable private key.
    """
    try:
        key: asyncssh.SSHKey = asyncssh.read_private_key(path)
    except FileNotFoundError:
        pass
    else:
        if path.stat().st_mode & 0o077:
            logger.warning("link host key %s is readable by others: chmod 600 it", path)
        return key
    key = asyncssh.generate_private_key("ssh-ed25519")
    if not _write_new(path, key.export_private_key("openssh")):
        return load_or_create(path)  # another coordinator made one first: use it
    logger.info("link host key created at %s (%s)", path, key.get_fingerprint())
    return key


def _write_new(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it exists; whether it was written."""
    # A crash mid-write must leave either no key or a whole one, never a torn file that
    # would stop the next start: a private temporary file is linked into place, which
    # (unlike a rename) also never replaces a key another process has just made.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
