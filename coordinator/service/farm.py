"""The in-memory view of the stored farm: requests, workers, the queue, timers and jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from coordinator.domain.fairshare import Charge, Usage
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.matcher import Queue
from coordinator.domain.model import Request, Worker
from coordinator.domain.quotas import Quotas
from coordinator.domain.states import RequestState
from coordinator.domain.timers import Timers
from coordinator.errors import NotFound
from coordinator.store import Snapshot


class Farm:
    """What the store holds, indexed for the matcher, the timers and the API.

    Only the service changes it, and only with what it has just committed, so memory
    never runs ahead of the database.
    """

    def __init__(self) -> None:
        self.requests: dict[RequestID, Request] = {}
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
    def load(cls, snapshot: Snapshot, now: datetime) -> Farm:
        """Rebuild every index from stored state, re-arming timers from stored times."""
        farm = cls()
        for worker in snapshot.workers:
            farm.workers[worker.uuid] = worker
        for req in snapshot.requests:
            farm.apply_request(req, now)
        farm.usage = dict(snapshot.usage)
        farm.quotas = snapshot.quotas
        return farm

    def request(self, rid: RequestID) -> Request:
        try:
            return self.requests[rid]
        except KeyError:
            raise NotFound("Request") from None

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
        return old

    def charge(self, charges: Iterable[Charge]) -> None:
        """Add committed charges to the owners' usage, as the store did."""
        for item in charges:
            self.usage[item.owner] = item.onto(self.usage.get(item.owner))
