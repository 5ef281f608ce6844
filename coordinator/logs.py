"""The coordinator process's logging: its format and level, and the third-party loggers
kept quieter than ours."""

from __future__ import annotations

import logging
from typing import Final

# Loggers whose INFO lines say nothing an operator needs, each at WARNING: alembic logs one
# line per migration step; asyncssh every connection and channel (the link logs what
# matters itself); httpx one line per request, so every peer call between coordinators
# (a follower's announcements, its dryads' calls, the leader's calls through holders)
# would be a line (docs/failover.md §scale-out); httpcore its connections at DEBUG.
QUIET: Final = ("alembic", "asyncssh", "httpx", "httpcore")


def configure(level: str | int) -> None:
    """Log to stderr at ``level``, the loggers of ``QUIET`` at WARNING at the least."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
