"""The in-memory view of the stored farm: requests, workers, the queue, timers and jobs."""

from __future__ import annotations

from datetime import datetime

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.matcher import Queue
from coordinator.domain.model import Request, Worker
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

    def queue_position(self, rid: RequestID) -> int | None:
        """How many waiting requests are ahead of this one; ``None`` if it is not waiting."""
        req = self.request(rid)
        return self.queue.position(req) if req.state is RequestState.WAITING else None

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
        if new.state is RequestState.IN_PROGRESS and new.job is not None:
            self.jobs[new.job.worker] = new.id
        if new.state is RequestState.WAITING:
            self.queue.add(new)
        timed = (new.valid_after, new.deadline, new.job, new.state)
        if old is None or (old.valid_after, old.deadline, old.job, old.state) != timed:
            self.timers.arm(new, now)
        return old
