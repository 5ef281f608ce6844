"""The matcher (docs/boruta-api.md §matcher): which waiting request gets which idle worker.

Priority first (1 is the most important), FIFO within a priority, or with the ``fair``
policy the owner with the least recent usage first (docs/scheduling.md §fair share); a
request whose owner holds as many boards as their quota allows is passed over. A request
takes the least capable idle worker that fits (fewest caps + groups), ties to the lowest
UUID. Requests with the same caps and groups share one candidate list per pass, so a pass
over a long queue costs one step per request plus one scan of the workers per distinct need.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from coordinator.domain.fairshare import Policy
from coordinator.domain.ids import UUID_CAP, RequestID, WorkerUUID
from coordinator.domain.model import Request, Worker
from coordinator.domain.quotas import Quota, Quotas
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
    """Waiting requests in matching order: priority, then FIFO place (``Request.queued``).

    Each owner's requests of one priority are also kept apart, in FIFO order, so the
    ``fair`` order is a merge of those lists by usage, not a sort of the whole queue.
    """

    def __init__(self, requests: Iterable[Request] = ()) -> None:
        self._keys: list[tuple[int, int, RequestID]] = []
        self._owned: dict[int, dict[str, list[tuple[int, RequestID]]]] = {}
        self.waiting: Counter[str] = Counter()  # WAITING requests of each owner
        self.needs: Counter[Need] = Counter()  # WAITING requests of each need
        # The same requests by need, as their queue keys (atoms only: a dict of them is
        # not walked by the garbage collector), so a scan by need costs no request walk.
        self._by_need: dict[Need, dict[tuple[int, int, RequestID], None]] = {}
        for req in sorted(requests, key=lambda r: (r.priority, r.queued, r.id)):
            self.add(req)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[RequestID]:
        return (rid for _prio, _queued, rid in self._keys)

    def add(self, req: Request) -> None:
        key = (req.priority, req.queued, req.id)  # one tuple for both indexes
        bisect.insort(self._keys, key)
        owners = self._owned.setdefault(req.priority, {})
        bisect.insort(owners.setdefault(req.owner, []), (req.queued, req.id))
        self.waiting[req.owner] += 1
        need = need_of(req.caps, req.groups)
        self.needs[need] += 1
        self._by_need.setdefault(need, {})[key] = None

    def remove(self, req: Request) -> None:
        """Remove by the request's current priority and place; absent ones are ignored."""
        key = (req.priority, req.queued, req.id)
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            del self._keys[at]
            owners = self._owned[req.priority]
            mine = owners[req.owner]
            del mine[bisect.bisect_left(mine, (req.queued, req.id))]
            if not mine:
                del owners[req.owner]
                if not owners:
                    del self._owned[req.priority]
            self.waiting[req.owner] -= 1
            if not self.waiting[req.owner]:
                del self.waiting[req.owner]
            need = need_of(req.caps, req.groups)
            self.needs[need] -= 1
            del self._by_need[need][key]
            if not self.needs[need]:
                del self.needs[need]
                del self._by_need[need]

    def per_priority(self) -> dict[int, int]:
        """How many requests wait at each priority, most important first (a metric read
        at every scrape: from the per-owner lists, not a walk of the queue)."""
        return {
            prio: sum(map(len, owners.values())) for prio, owners in sorted(self._owned.items())
        }

    def wanting(self, needs: Iterable[Need]) -> list[RequestID]:
        """The waiting requests of these needs, in queue (FIFO) order."""
        keys = [key for need in needs for key in self._by_need.get(need, ())]
        keys.sort()
        return [rid for _prio, _queued, rid in keys]

    def ordered(self, policy: Policy, usage: Mapping[str, float]) -> Iterator[RequestID]:
        """The queue in ``policy``'s order, lazily: a pass that stops early pays little."""
        if policy is Policy.FIFO:
            return iter(self)
        return self._fair(usage)

    def _fair(self, usage: Mapping[str, float]) -> Iterator[RequestID]:
        # Within a priority, a heap of owners by (usage, their next request's place): equal
        # usage falls back to FIFO across owners, as the sort key (priority, usage, queued).
        for prio in sorted(self._owned):
            owners = self._owned[prio]
            heap = [(usage.get(o, 0.0), reqs[0][0], o, 0) for o, reqs in owners.items()]
            heapq.heapify(heap)
            while heap:
                used, _queued, owner, at = heap[0]
                reqs = owners[owner]
                yield reqs[at][1]
                if at + 1 < len(reqs):
                    heapq.heapreplace(heap, (used, reqs[at + 1][0], owner, at + 1))
                else:
                    heapq.heappop(heap)

    def position(
        self, req: Request, policy: Policy = Policy.FIFO, usage: Mapping[str, float] | None = None
    ) -> int:
        """How many waiting requests come before this one in ``policy``'s order."""
        if policy is Policy.FIFO:
            return bisect.bisect_left(self._keys, (req.priority, req.queued, req.id))
        usage = usage or {}
        ahead = sum(
            len(reqs)
            for prio, owners in self._owned.items()
            if prio < req.priority
            for reqs in owners.values()
        )
        mine = usage.get(req.owner, 0.0)
        for owner, reqs in self._owned.get(req.priority, {}).items():
            used = usage.get(owner, 0.0)
            if used < mine:
                ahead += len(reqs)
            elif used == mine:
                ahead += bisect.bisect_left(reqs, (req.queued, req.id))
        return ahead


@dataclass(slots=True)
class Limits:
    """What a pass must respect of quotas: the boards each owner holds, and the quotas."""

    held: Mapping[str, int]
    quotas: Quotas
    _cache: dict[tuple[str, tuple[str, ...]], Quota] = field(default_factory=dict)

    def of(self, req: Request) -> Quota:
        """The limits of ``req``'s owner, as a member of the groups the request carries."""
        key = (req.owner, req.groups)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self.quotas.limits(req.owner, req.groups)
        return found


def match(
    queue: Iterable[RequestID],
    requests: Mapping[RequestID, Request],
    idle: Iterable[Worker],
    now: datetime,
    limits: Limits | None = None,
) -> list[Assignment]:
    """Assign idle workers to ready requests, taken in ``queue`` order, passing over those
    whose owner already holds as many boards as ``limits`` allow."""
    free = {w.uuid: w for w in sorted(idle, key=_score) if w.state is WorkerState.IDLE}
    if not free:
        return []
    limit_of = limits.of if limits is not None and limits.quotas else None
    held: Counter[str] = Counter(limits.held if limits is not None else {})
    taken: set[WorkerUUID] = set()
    candidates: dict[Need, list[Worker]] = {}
    assignments: list[Assignment] = []
    for rid in queue:
        req = requests[rid]
        if not is_ready(req, now):
            continue
        if limit_of is not None:
            most = limit_of(req).max_held
            if most is not None and held[req.owner] >= most:
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
            held[req.owner] += 1
            assignments.append(Assignment(req.id, worker.uuid))
            if len(taken) == len(free):
                break
    return assignments


class CapsIndex:
    """The workers by each cap pair and each group, so that whether any worker fits a need
    is a few set operations on the rarest of its caps, not a scan of every worker."""

    def __init__(self, workers: Iterable[Worker]) -> None:
        self._all: dict[WorkerUUID, Worker] = {}
        self._caps: dict[tuple[str, str], set[WorkerUUID]] = {}
        for worker in workers:
            self._all[worker.uuid] = worker
            for pair in worker.caps.items():
                self._caps.setdefault(pair, set()).add(worker.uuid)

    def any_fits(self, need: Need) -> bool:
        """Whether some worker fits ``need``, as ``fits`` says."""
        caps, groups = need
        if not caps:
            return any(fits(w, need) for w in self._all.values())
        postings = sorted((self._caps.get(pair, _NONE) for pair in caps), key=len)
        if not postings[0]:
            return False
        having = postings[0].intersection(*postings[1:])  # in C, the rarest cap first
        if not groups:
            return bool(having)
        return any(fits(self._all[uuid], need) for uuid in having)


_NONE: frozenset[WorkerUUID] = frozenset()
_SCAN_NEEDS = 8  # distinct needs checked by a scan before an index pays for itself


STEP_NEEDS: Final = 100  # distinct needs judged between two pauses of a stepwise scan


class _Verdicts:
    """Whether any of some workers fits a need, remembered per need. A few distinct needs
    are settled by a scan that stops at the first fitting worker; past that, by a
    ``CapsIndex``, so that many distinct needs do not cost needs × workers. Nothing is
    built that the needs do not ask for: one new request's check (at every creation)
    costs a short scan, not a map of the whole farm."""

    def __init__(self, workers: Iterable[Worker]) -> None:
        self._workers = workers if isinstance(workers, Collection) else list(workers)
        self._known: dict[Need, bool] = {}
        self._index: CapsIndex | None = None

    def anyone_fits(self, need: Need) -> bool:
        verdict = self._known.get(need)
        if verdict is None:
            if len(self._known) < _SCAN_NEEDS:
                # One fitting worker settles it: no need to find them all.
                verdict = any(fits(w, need) for w in self._workers)
            else:
                self._index = self._index or CapsIndex(self._workers)
                verdict = self._index.any_fits(need)
            self._known[need] = verdict
        return verdict


def unsatisfiable(requests: Iterable[Request], workers: Iterable[Worker]) -> list[Request]:
    """The requests that no registered worker, in any state, could ever take (→ INVALID),
    judged once per distinct need (docs/events.md §long steps)."""
    verdicts = _Verdicts(workers)
    return [req for req in requests if not verdicts.anyone_fits(need_of(req.caps, req.groups))]


def stranded(
    needs: Iterable[Need], before: Sequence[Worker], workers: Iterable[Worker]
) -> Generator[None, None, list[Need]]:
    """The needs that some worker of ``before`` fitted and none of ``workers`` fits: the
    waiting requests of those needs lost their last possible worker (→ INVALID).

    A generator that pauses (yields) after every ``STEP_NEEDS`` needs and returns the
    stranded ones: the service yields to its event loop at each pause, so that a queue of
    very many distinct needs is judged in short steps (docs/events.md §long steps).
    """
    verdicts = _Verdicts(workers)
    lost = []
    for count, need in enumerate(needs, 1):
        if count % STEP_NEEDS == 0:
            yield
        if any(fits(old, need) for old in before) and not verdicts.anyone_fits(need):
            lost.append(need)
    return lost


def fitting_any(needs: Iterable[Need], workers: Iterable[Worker]) -> Generator[None, None, bool]:
    """Whether some worker fits some need, as a stepwise scan: it pauses after every
    ``STEP_NEEDS`` needs, and stops at the first fit (docs/events.md §long steps)."""
    index = CapsIndex(workers)
    for count, need in enumerate(needs, 1):
        if count % STEP_NEEDS == 0:
            yield
        if index.any_fits(need):
            return True
    return False
