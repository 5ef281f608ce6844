"""Client-side DUT current sampling, as the Go stm package does (docs/stm-protocol.md §sampling)."""

from __future__ import annotations

import logging
from typing import Final, Protocol

import anyio

from hardware.errors import BadArgument, HardwareError

logger = logging.getLogger(__name__)

SAMPLES_MAX: Final = 120_960_000
PERIOD_MIN: Final = 0.003
FAILED: Final = -1  # a read that failed is stored as -1, as in Go


class _Ammeter(Protocol):
    async def current(self) -> int: ...


class CurrentRecorder:
    """Read the DUT current every *interval / samples* seconds until *samples* are in.

    Run :meth:`run` in a task group; :meth:`record` may be read at any time, and
    cancelling the task is how a recording stops early.
    """

    def __init__(self, stm: _Ammeter, samples: int, interval: float) -> None:
        if not 0 < samples <= SAMPLES_MAX:
            raise BadArgument(f"current sample count {samples} is outside 1..{SAMPLES_MAX}")
        self.period = interval / samples
        if self.period < PERIOD_MIN:
            raise BadArgument(
                f"current sampling period {self.period * 1000:.2f} ms is under "
                f"{PERIOD_MIN * 1000:.0f} ms; take fewer samples or a longer interval"
            )
        self.samples = samples
        self._stm = stm
        self._record: list[int] = []

    def record(self) -> list[int]:
        """The samples so far, in mA (-1 where a read failed)."""
        return list(self._record)

    async def run(self) -> None:
        start = anyio.current_time()
        while len(self._record) < self.samples:
            try:
                value = await self._stm.current()
            except HardwareError as exc:
                logger.warning("current sample failed: %s", exc)
                value = FAILED
            self._record.append(value)
            # Sleep to the next tick of a fixed grid so slow reads do not drift it.
            await anyio.sleep_until(start + len(self._record) * self.period)
