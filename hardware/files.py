"""Atomic file writes: a power cut leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, data: bytes | Callable[[Path], object], mode: int = 0o600) -> None:
    """Write ``data`` (bytes, or a function that writes a file at the path it is given)
    to ``path`` through a temporary file beside it, created with ``mode``.

    The temporary name keeps ``path``'s suffix, because some writers (PIL) choose the
    format by it.
    """
    tmp = path.with_name(f".tmp-{path.name}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a power cut
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
        if not isinstance(data, bytes):
            data(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)
