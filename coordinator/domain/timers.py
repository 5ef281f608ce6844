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


class Due(IntEnum):
    """What a timer entry stands for."""

    VALID_AFTER = 0  # the request becomes ready: run the matcher
    DEADLINE = 1  # a WAITING request times out
    JOB_TIMEOUT = 2  # a running job ends


# The kinds as a plain tuple and their count: iterating or measuring an enum class runs
# Python code of ``enum`` every time, and arming runs on every change of a request.
_KINDS: Final = tuple(Due)
_KIND_COUNT: Final = len(_KINDS)


class Timers:
    """A min-heap of (instant, kind, request), and the instant of each kind a request
    needs now (one at most: a later Deadline replaces the earlier one)."""

    def __init__(self) -> None:
        # The kind as a plain int: a tuple of atomic values only is one the garbage
        # collector stops tracking, and one with an enum member it walks at every full
        # pass, one tuple per live request (docs/events.md §long steps).
        self._heap: list[tuple[datetime, int, RequestID]] = []
        # Keyed by one int per (request, kind), of atomic values only, for the same reason.
        self._live: dict[int, datetime] = {}

    def __len__(self) -> int:
        """The live entries."""
        return len(self._live)

    @property
    def size(self) -> int:
        """Entries in the heap, dropped ones included (never over twice ``len`` + SLACK)."""
        return len(self._heap)

    def push(self, when: datetime, kind: Due, rid: RequestID) -> None:
        """Set the request's entry of this kind (the same entry is not added twice)."""
        if self._live.get(_key(rid, kind)) != when:
            self._live[_key(rid, kind)] = when
            heapq.heappush(self._heap, (when, int(kind), rid))

    def arm(self, req: Request, now: datetime) -> None:
        """Hold the entries the request needs in its current state (also after a restart),
        and drop those it no longer needs. An entry due by ``now`` that nothing replaces
        stays: it fires at the next pass as it would have, and the state machine judges it."""
        needed: dict[Due, datetime] = {}
        if req.state is RequestState.WAITING:
            if req.valid_after > now:
                needed[Due.VALID_AFTER] = req.valid_after
            needed[Due.DEADLINE] = req.deadline
        elif req.state is RequestState.IN_PROGRESS and req.job is not None:
            needed[Due.JOB_TIMEOUT] = req.job.timeout
        for kind in _KINDS:
            when = needed.get(kind)
            if when is not None:
                self.push(when, kind, req.id)
            elif self._live.get(_key(req.id, kind), now) > now:
                del self._live[_key(req.id, kind)]
        if len(self._heap) > 2 * len(self._live) + SLACK:
            self._rebuild()

    def arm_all(self, requests: Iterable[Request], now: datetime) -> None:
        for req in requests:
            self.arm(req, now)

    def next(self) -> datetime | None:
        """The earliest instant to wake up at, if any."""
        self._skip_dropped()
        return self._heap[0][0] if self._heap else None

    def sooner(self, than: datetime | None) -> bool:
        """Whether the earliest instant is now before ``than`` (``None``: there was none).
        A sleeper woken only then never sleeps too long; it may wake early, for nothing."""
        nxt = self.next()
        return nxt is not None and (than is None or nxt < than)

    def pop_due(self, now: datetime) -> list[tuple[Due, RequestID]]:
        """Every live entry at or before ``now``, in time order."""
        due = []
        self._skip_dropped()
        while self._heap and self._heap[0][0] <= now:
            _when, kind, rid = heapq.heappop(self._heap)
            del self._live[_key(rid, kind)]
            due.append((Due(kind), rid))
            self._skip_dropped()
        return due

    def _alive(self, item: tuple[datetime, int, RequestID]) -> bool:
        return self._live.get(_key(item[2], item[1])) == item[0]

    def _skip_dropped(self) -> None:
        while self._heap and not self._alive(self._heap[0]):
            heapq.heappop(self._heap)

    def _rebuild(self) -> None:
        # A set: an entry dropped and needed again was pushed twice; one copy is enough.
        self._heap = list({item for item in self._heap if self._alive(item)})
        heapq.heapify(self._heap)


def _key(rid: RequestID, kind: int) -> int:
    return rid * _KIND_COUNT + kind
