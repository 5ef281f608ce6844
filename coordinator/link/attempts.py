"""Failed logins and enrolments on the link, per source address: limited, and logged once.

Someone guessing enrolment tokens, or a misconfigured board retrying with the wrong key,
fails again and again from one address. After ``limit`` failures within ``window``
seconds that address may not enrol (nor log in with a key no worker is bound to) until
the window ends; a key already bound to a worker always gets in, so an enrolled dryad
behind the same NAT as a prober is never locked out by the prober's failures. The first
failure of an address in a window is logged in full; the rest are counted and written
as one line when the window ends, never one line per attempt.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

logger = logging.getLogger(__name__)

LIMIT: Final = 10  # failures per address and window before it is paused
WINDOW: Final = 60.0  # seconds
MAX_TRACKED: Final = 10_000  # addresses remembered at once; the oldest are forgotten


@dataclass
class _Window:
    start: float
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def failures(self) -> int:
        return sum(self.reasons.values())


class FailedAttempts:
    """Counts failures per source address in fixed windows."""

    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "link",
        pauses: bool = True,
    ) -> None:
        self.name = name  # what the summary line says the attempts were at
        self.pauses = pauses  # whether reaching the limit pauses the address (enrolment)
        self.limit = limit
        self.window = window
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def allowed(self, address: str) -> bool:
        """Whether ``address`` may still try something that can fail (enrol)."""
        current = self._current(address)
        return current is None or current.failures < self.limit

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0 if it may now)."""
        current = self._current(address)
        if current is None or current.failures < self.limit:
            return 0.0
        return max(0.0, current.start + self.window - self._clock())

    def failed(self, address: str, reason: str) -> bool:
        """Count a failure; True if it is the first of its window (log it in full)."""
        current = self._current(address)
        if current is None:
            current = self._windows[address] = _Window(self._clock())
            self._forget_oldest()
        current.reasons[reason] += 1
        return current.failures == 1

    def sweep(self) -> None:
        """Log and forget the windows that have ended."""
        now = self._clock()
        for address, ended in list(self._windows.items()):
            if now - ended.start >= self.window:
                del self._windows[address]
                self._log_ended(address, ended)

    def _current(self, address: str) -> _Window | None:
        found = self._windows.get(address)
        if found is not None and self._clock() - found.start >= self.window:
            del self._windows[address]
            self._log_ended(address, found)
            return None
        return found

    def _forget_oldest(self) -> None:
        while len(self._windows) > MAX_TRACKED:
            address = next(iter(self._windows))
            self._log_ended(address, self._windows.pop(address))

    def _log_ended(self, address: str, ended: _Window) -> None:
        if ended.failures <= 1:
            return  # its one failure was logged when it happened
        reasons = ", ".join(f"{n} {reason}" for reason, n in ended.reasons.most_common())
        paused = (
            "; enrolment from it was paused" if self.pauses and ended.failures >= self.limit else ""
        )
        logger.warning(
            "%s: %d failed attempts from %s within %g s (%s)%s",
            self.name,
            ended.failures,
            address,
            self.window,
            reasons,
            paused,
        )
