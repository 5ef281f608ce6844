"""The in-memory view of the stored farm: requests, workers, the queue, timers and jobs.

Every live request is held, and only the newest finished ones: the rest are read from
the store when asked for (docs/architecture.md §requests in memory).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from heapq import heappush, heappushpop

from coordinator.domain.fairshare import Charge, Usage
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.matcher import Queue
from coordinator.domain.model import Request, Worker
from coordinator.domain.quotas import Quotas
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState
from coordinator.domain.timers import Timers
from coordinator.errors import NotFound
from coordinator.store import Changes, Snapshot


class Farm:
    """What the store holds, indexed for the matcher, the timers and the API.

    The service holds two: the *committed* farm, changed only with what the store has
    just made durable (memory never runs ahead of the database: every read and report
    uses it), and the *pending* one, which also holds what is staged for the next commit
    and which operations decide on (docs/architecture.md §the commit path). Only the
    pending one keeps timers (``timed``).
    """

    def __init__(self, finished_in_memory: int | None = None, *, timed: bool = True) -> None:
        self.timed = timed
        # The live requests and the finished ones with the highest IDs (all with None).
        self.requests: dict[RequestID, Request] = {}
        self.finished_in_memory = finished_in_memory
        self._finished: list[RequestID] = []  # a min-heap of the finished requests held
        self.left_out = 0  # finished requests that only the store holds
        self.finishes = 0  # requests that finished since the start (to notice one)
        self.workers: dict[WorkerUUID, Worker] = {}
        self.queue = Queue()  # the WAITING requests in matching order
        self.timers = Timers()
        self.jobs: dict[WorkerUUID, RequestID] = {}  # the running request of each worker
        self.held: Counter[str] = Counter()  # the running requests of each owner
        self.usage: dict[str, Usage] = {}  # each owner's stored usage (docs/scheduling.md)
        self.quotas = Quotas()
        self.next_id = 1
        self.next_queued = 1

    @classmethod
    def load(
        cls,
        snapshot: Snapshot,
        now: datetime,
        finished_in_memory: int | None = None,
        *,
        timed: bool = True,
    ) -> Farm:
        """Rebuild every index from stored state, re-arming timers from stored times."""
        farm = cls(finished_in_memory, timed=timed)
        for worker in snapshot.workers:
            farm.workers[worker.uuid] = worker
        for req in snapshot.requests:
            farm.apply_request(req, now)
        farm.next_id = max(farm.next_id, snapshot.next_id)
        farm.next_queued = max(farm.next_queued, snapshot.next_queued)
        farm.left_out += snapshot.left_out
        farm.usage = dict(snapshot.usage)
        farm.quotas = snapshot.quotas
        return farm

    def copy(self, now: datetime, *, timed: bool = True) -> Farm:
        """An independent farm with the same state; its timers are armed from the requests'
        stored times, as at a restart (an entry already popped is not re-armed: a
        ValidAfter reached needs a pass over the whole queue)."""
        farm = Farm(self.finished_in_memory, timed=timed)
        farm.requests = dict(self.requests)
        farm._finished = list(self._finished)
        farm.left_out, farm.finishes = self.left_out, self.finishes
        farm.workers = dict(self.workers)
        live = [r for r in self.requests.values() if r.state not in FINAL_REQUEST_STATES]
        farm.queue = Queue(r for r in live if r.state is RequestState.WAITING)
        if timed:
            farm.timers.arm_all(live, now)
        farm.jobs = dict(self.jobs)
        farm.held = Counter(self.held)
        farm.usage = dict(self.usage)
        farm.quotas = self.quotas
        farm.next_id, farm.next_queued = self.next_id, self.next_queued
        return farm

    def apply(self, changes: Changes, now: datetime) -> list[tuple[Request | None, Request]]:
        """Take a batch's changes in; returns each changed request with the version it
        replaced."""
        self.charge(changes.charges)
        replaced = [(self.apply_request(req, now), req) for req in changes.requests]
        for worker in changes.workers:
            self.workers[worker.uuid] = worker
        for uuid in changes.removed_workers:
            self.workers.pop(uuid, None)
        return replaced

    @property
    def floor(self) -> int:
        """Every finished request that only the store holds has a lower ID: the finished
        requests held are always those with the highest IDs."""
        return self._finished[0] if self._finished else self.next_id

    def worker(self, uuid: WorkerUUID) -> Worker:
        try:
            return self.workers[uuid]
        except KeyError:
            raise NotFound("Worker") from None

    def running_on(self, uuid: WorkerUUID) -> Request | None:
        rid = self.jobs.get(uuid)
        return None if rid is None else self.requests[rid]

    def apply_request(self, new: Request, now: datetime) -> Request | None:
        """Take a committed request in; returns the version it replaced."""
        old = self.requests.get(new.id)
        if old is not None and old.state is RequestState.WAITING:
            self.queue.remove(old)  # by its old priority and place, before they change
        self.requests[new.id] = new
        self.next_id = max(self.next_id, new.id + 1)
        self.next_queued = max(self.next_queued, new.queued + 1)
        if old is not None and old.job is not None and self.jobs.get(old.job.worker) == new.id:
            del self.jobs[old.job.worker]
            self.held[old.owner] -= 1
            if not self.held[old.owner]:
                del self.held[old.owner]
        if new.state is RequestState.IN_PROGRESS and new.job is not None:
            self.jobs[new.job.worker] = new.id
            self.held[new.owner] += 1
        if new.state is RequestState.WAITING:
            self.queue.add(new)
        timed = (new.valid_after, new.deadline, new.job, new.state)
        if self.timed and (
            old is None or (old.valid_after, old.deadline, old.job, old.state) != timed
        ):
            self.timers.arm(new, now)
        if new.state in FINAL_REQUEST_STATES and (
            old is None or old.state not in FINAL_REQUEST_STATES
        ):
            self.finishes += 1
            if self.finished_in_memory is not None:
                self._hold_finished(new.id, self.finished_in_memory)
        return old

    def _hold_finished(self, rid: RequestID, most: int) -> None:
        """Hold a newly finished request, letting the one with the lowest ID go if more
        than ``most`` are held (it may be this one)."""
        if len(self._finished) < most:
            heappush(self._finished, rid)
            return
        gone = heappushpop(self._finished, rid)
        del self.requests[gone]
        self.left_out += 1

    def charge(self, charges: Iterable[Charge]) -> None:
        """Add committed charges to the owners' usage, as the store did."""
        for item in charges:
            self.usage[item.owner] = item.onto(self.usage.get(item.owner))
