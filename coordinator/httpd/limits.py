"""The open-file limit: raised to the hard limit at start, and shared out between uses."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

NR_OPEN: Final = Path("/proc/sys/fs/nr_open")  # the kernel's ceiling for one process
# Descriptors kept for everything but HTTP clients: the database, the dryads' link
# connections, job tunnels, webhook deliveries, logs. A quarter, and at least 256.
MIN_RESERVE: Final = 256


@dataclass(frozen=True, slots=True)
class OpenFiles:
    """The limit this process runs with, and how many of them HTTP clients may hold."""

    soft: int
    hard: int

    @property
    def reserve(self) -> int:
        """Descriptors kept back from HTTP clients."""
        return max(MIN_RESERVE, self.soft // 4)

    @property
    def for_http(self) -> int:
        """How many connections HTTP clients may hold together."""
        return max(64, self.soft - self.reserve)

    @property
    def accept_batch(self) -> int:
        """The listen backlog, which asyncio also takes as the number of connections it
        accepts in one go before any is looked at: a quarter of the reserve, so the few batches
        not closed yet on top of a full HTTP allowance leave descriptors for the rest."""
        return max(16, min(2048, self.reserve // 4))


def raise_open_files(nr_open: Path = NR_OPEN) -> OpenFiles:
    """Raise the soft limit of open files as far as the hard limit allows; log the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _kernel_ceiling(nr_open, soft)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("open files: cannot raise the limit of %d to %d: %s", soft, target, exc)
        else:
            logger.info("open files: limit raised from %d to %d", soft, target)
            soft = target
    else:
        logger.info("open files: limit %d (the hard limit)", soft)
    limits = OpenFiles(soft, hard)
    logger.info("open files: HTTP clients may hold %d connections", limits.for_http)
    return limits


def _kernel_ceiling(nr_open: Path, soft: int) -> int:
    try:
        return max(soft, int(nr_open.read_text().strip()))
    except (OSError, ValueError):
        return soft
