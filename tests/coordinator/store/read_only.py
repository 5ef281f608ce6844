"""A database file made read-only for everyone, root included."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

IS_ROOT = os.geteuid() == 0


@contextmanager
def read_only_file(path: str) -> Iterator[None]:
    """Make a file read-only, for root too (who ignores modes) by marking it immutable."""
    os.chmod(path, 0o444)
    if IS_ROOT:
        subprocess.run(["chattr", "+i", path], check=True)
    try:
        yield
    finally:
        if IS_ROOT:
            subprocess.run(["chattr", "-i", path], check=True)
        os.chmod(path, 0o644)
