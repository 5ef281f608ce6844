"""The board sshd's host public keys, which the dryad reports at every registration so that
the coordinator can vouch for them to users (docs/boruta-api.md §host keys)."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from coordinator.wire import hostkeys

logger = logging.getLogger(__name__)


def read(pattern: str) -> tuple[str, ...]:
    """The valid keys of the files matching ``pattern`` (sorted by name), at most
    ``MAX_HOST_KEYS``; each file that is unreadable or holds no valid key is logged and
    skipped, so one bad file never hides the others."""
    keys: list[str] = []
    for name in sorted(glob.glob(pattern)):
        try:
            with Path(name).open("rb") as f:
                # A .pub file is one line; more than a line's limit is not one.
                raw = f.read(hostkeys.MAX_HOST_KEY_LINE + 1)
        except OSError as exc:
            logger.warning("sshd host key %s: unreadable: %s", name, exc.strerror or exc)
            continue
        try:
            key = hostkeys.host_key(raw.decode("ascii", "replace").rstrip("\r\n"))
        except hostkeys.HostKeyRefused as exc:
            logger.warning("sshd host key %s refused: %s", name, exc)
            continue
        if key in keys:
            continue
        if len(keys) == hostkeys.MAX_HOST_KEYS:
            logger.warning("sshd host key %s left out: over %d keys", name, len(keys))
            continue
        keys.append(key)
    if not keys:
        logger.warning("no sshd host key found at %s: users' ssh cannot check this board", pattern)
    return tuple(keys)
