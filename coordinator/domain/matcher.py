"""The matcher (docs/boruta-api.md §matcher): which waiting request gets which idle worker.

Priority first (1 is the most important), FIFO within a priority; a request takes the
least capable idle worker that fits (fewest caps + groups), ties to the lowest UUID.
Requests with the same caps and groups share one candidate list per pass, so a pass over
a long queue costs one step per request plus one scan of the workers per distinct need.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from coordinator.domain.ids import UUID_CAP, RequestID, WorkerUUID
from coordinator.domain.model import Request, Worker
from coordinator.domain.requests import is_ready
from coordinator.domain.states import WorkerState

Need = tuple[frozenset[tuple[str, str]], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Assignment:
    """One decision of the matcher."""

    request: RequestID
    worker: WorkerUUID


def need_of(caps: Mapping[str, str], groups: Iterable[str]) -> Need:
    """What a request needs of a worker, hashable so equal needs share work."""
    return frozenset(caps.items()), tuple(sorted(groups))


def fits(worker: Worker, need: Need) -> bool:
    """Caps are a subset with exact values; non-empty groups must share one with the worker."""
    caps, groups = need
    worker_caps = worker.caps
    if any(worker_caps.get(key) != value for key, value in caps):
        return False
    return not groups or any(group in worker.groups for group in groups)


def _pool(need: Need, workers: Mapping[WorkerUUID, Worker]) -> Iterable[Worker]:
    """The workers worth checking: a ``UUID`` cap pins one, so it is a lookup, not a scan."""
    pinned = dict(need[0]).get(UUID_CAP)
    if pinned is None:
        return workers.values()
    one = workers.get(WorkerUUID(pinned))
    return [one] if one is not None else []


def candidates_for(need: Need, workers: Mapping[WorkerUUID, Worker]) -> list[Worker]:
    """The workers that fit ``need``."""
    return [w for w in _pool(need, workers) if fits(w, need)]


def _score(worker: Worker) -> tuple[int, str]:
    # Least capable first: a worker with fewer caps and groups is less in demand.
    return len(worker.caps) + len(worker.groups), worker.uuid


class Queue:
    """Waiting requests in matching order: priority, then FIFO place (``Request.queued``)."""

    def __init__(self, requests: Iterable[Request] = ()) -> None:
        self._keys: list[tuple[int, int, RequestID]] = sorted(
            (r.priority, r.queued, r.id) for r in requests
        )

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[RequestID]:
        return (rid for _prio, _queued, rid in self._keys)

    def add(self, req: Request) -> None:
        bisect.insort(self._keys, (req.priority, req.queued, req.id))

    def remove(self, req: Request) -> None:
        """Remove by the request's current priority and place; absent ones are ignored."""
        key = (req.priority, req.queued, req.id)
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            del self._keys[at]

    def position(self, req: Request) -> int:
        """How many waiting requests come before this one."""
        return bisect.bisect_left(self._keys, (req.priority, req.queued, req.id))


def match(
    queue: Iterable[RequestID],
    requests: Mapping[RequestID, Request],
    idle: Iterable[Worker],
    now: datetime,
) -> list[Assignment]:
    """Assign idle workers to ready requests, taken in ``queue`` order."""
    free = {w.uuid: w for w in sorted(idle, key=_score) if w.state is WorkerState.IDLE}
    if not free:
        return []
    taken: set[WorkerUUID] = set()
    candidates: dict[Need, list[Worker]] = {}
    assignments: list[Assignment] = []
    for rid in queue:
        req = requests[rid]
        if not is_ready(req, now):
            continue
        need = need_of(req.caps, req.groups)
        fitting = candidates.get(need)
        if fitting is None:
            fitting = candidates[need] = candidates_for(need, free)
        while fitting and fitting[0].uuid in taken:
            fitting.pop(0)
        if fitting:
            worker = fitting.pop(0)
            taken.add(worker.uuid)
            assignments.append(Assignment(req.id, worker.uuid))
            if len(taken) == len(free):
                break
    return assignments


def unsatisfiable(requests: Iterable[Request], workers: Iterable[Worker]) -> list[Request]:
    """The requests that no registered worker, in any state, could ever take (→ INVALID)."""
    everyone = {w.uuid: w for w in workers}
    verdicts: dict[Need, bool] = {}
    lost = []
    for req in requests:
        need = need_of(req.caps, req.groups)
        if need not in verdicts:
            # One fitting worker settles it: no need to find them all.
            verdicts[need] = any(fits(w, need) for w in _pool(need, everyone))
        if not verdicts[need]:
            lost.append(req)
    return lost
