"""Timers from stored instants: ValidAfter, Deadline and job timeout, in one min-heap.

When one fires, the state machine still re-checks the stored time (``requests.time_out``
and ``expire_job`` return ``None`` for an entry that no longer applies), as the
original's DeadlineMatcher and TimeoutMatcher do (docs/boruta-api.md §timers). Entries a
request no longer needs (its deadline moved, its job prolonged or ended) are dropped,
so the heap holds only what live requests need: a coordinator that runs for months
must not keep a month-away deadline of every request it ever closed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime
from enum import IntEnum
from typing import Final

from coordinator.domain.ids import RequestID
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState

# Dropped entries stay in the heap until they reach its top or outnumber the live ones
# (plus this slack): then the heap is rebuilt, so dropping costs O(1) amortised.
SLACK: Final = 64

Entry = tuple[datetime, "Due"]


class Due(IntEnum):
    """What a timer entry stands for."""

    VALID_AFTER = 0  # the request becomes ready: run the matcher
    DEADLINE = 1  # a WAITING request times out
    JOB_TIMEOUT = 2  # a running job ends


class Timers:
    """A min-heap of (instant, kind, request), and the entries each request needs now."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, Due, RequestID]] = []
        self._live: dict[RequestID, set[Entry]] = {}
        self._count = 0  # live entries; the rest of the heap was dropped

    def __len__(self) -> int:
        """The live entries."""
        return self._count

    @property
    def size(self) -> int:
        """Entries in the heap, dropped ones included (never over twice ``len`` + SLACK)."""
        return len(self._heap)

    def push(self, when: datetime, kind: Due, rid: RequestID) -> None:
        """Add an entry (an entry already there is not added twice)."""
        entries = self._live.setdefault(rid, set())
        if (when, kind) not in entries:
            entries.add((when, kind))
            self._count += 1
            heapq.heappush(self._heap, (when, kind, rid))

    def arm(self, req: Request, now: datetime) -> None:
        """Hold the entries the request needs in its current state (also after a restart),
        and drop those it no longer needs. Entries due by ``now`` stay: they fire at the
        next pass as they would have, and the state machine judges them."""
        needed: set[Entry] = set()
        if req.state is RequestState.WAITING:
            if req.valid_after > now:
                needed.add((req.valid_after, Due.VALID_AFTER))
            needed.add((req.deadline, Due.DEADLINE))
        elif req.state is RequestState.IN_PROGRESS and req.job is not None:
            needed.add((req.job.timeout, Due.JOB_TIMEOUT))
        old = self._live.pop(req.id, set())
        kept = {entry for entry in old if entry[0] <= now or entry in needed}
        self._count -= len(old) - len(kept)
        if kept:
            self._live[req.id] = kept
        for when, kind in sorted(needed - kept):
            self.push(when, kind, req.id)
        if len(self._heap) > 2 * self._count + SLACK:
            self._rebuild()

    def arm_all(self, requests: Iterable[Request], now: datetime) -> None:
        for req in requests:
            self.arm(req, now)

    def next(self) -> datetime | None:
        """The earliest instant to wake up at, if any."""
        self._skip_dropped()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[tuple[Due, RequestID]]:
        """Every live entry at or before ``now``, in time order."""
        due = []
        self._skip_dropped()
        while self._heap and self._heap[0][0] <= now:
            when, kind, rid = heapq.heappop(self._heap)
            self._take(rid, (when, kind))
            due.append((kind, rid))
            self._skip_dropped()
        return due

    def _alive(self, item: tuple[datetime, Due, RequestID]) -> bool:
        return (item[0], item[1]) in self._live.get(item[2], ())

    def _skip_dropped(self) -> None:
        while self._heap and not self._alive(self._heap[0]):
            heapq.heappop(self._heap)

    def _take(self, rid: RequestID, entry: Entry) -> None:
        entries = self._live[rid]
        entries.discard(entry)
        self._count -= 1
        if not entries:
            del self._live[rid]

    def _rebuild(self) -> None:
        # A set: an entry dropped and needed again was pushed twice; one copy is enough.
        self._heap = list({item for item in self._heap if self._alive(item)})
        heapq.heapify(self._heap)
