"""Timers from stored instants: ValidAfter, Deadline and job timeout, in one min-heap.

Entries are never removed early: when one fires, the state machine re-checks the stored
time (``requests.time_out``/``expire_job`` return ``None`` for stale entries), as the
original's DeadlineMatcher and TimeoutMatcher do (docs/boruta-api.md §timers).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime
from enum import IntEnum

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState


class Due(IntEnum):
    """What a timer entry stands for."""

    VALID_AFTER = 0  # the request becomes ready: run the matcher
    DEADLINE = 1  # a WAITING request times out
    JOB_TIMEOUT = 2  # a running job ends


class Timers:
    """A min-heap of (instant, kind, request)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, Due, RequestID]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: datetime, kind: Due, rid: RequestID) -> None:
        heapq.heappush(self._heap, (when, kind, rid))

    def arm(self, req: Request, now: datetime) -> None:
        """Add the entries a request needs in its current state (also after a restart)."""
        if req.state is RequestState.WAITING:
            if req.valid_after > now:
                self.push(req.valid_after, Due.VALID_AFTER, req.id)
            self.push(req.deadline, Due.DEADLINE, req.id)
        elif req.state is RequestState.IN_PROGRESS and req.job is not None:
            self.push(req.job.timeout, Due.JOB_TIMEOUT, req.id)

    def arm_all(self, requests: Iterable[Request], now: datetime) -> None:
        for req in requests:
            self.arm(req, now)

    def next(self) -> datetime | None:
        """The earliest instant to wake up at, if any."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[tuple[Due, RequestID]]:
        """Every entry at or before ``now``, in time order."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            _when, kind, rid = heapq.heappop(self._heap)
            due.append((kind, rid))
        return due
