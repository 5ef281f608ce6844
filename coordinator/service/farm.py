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
from coordinator.store import Snapshot


class Farm:
    """What the store holds, indexed for the matcher, the timers and the API.

    Only the service changes it, and only with what it has just committed, so memory
    never runs ahead of the database.
    """

    def __init__(self, finished_in_memory: int | None = None) -> None:
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
    def load(cls, snapshot: Snapshot, now: datetime, finished_in_memory: int | None = None) -> Farm:
        """Rebuild every index from stored state, re-arming timers from stored times."""
        farm = cls(finished_in_memory)
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
        if old is None or (old.valid_after, old.deadline, old.job, old.state) != timed:
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
