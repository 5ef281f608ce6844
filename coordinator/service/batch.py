"""One operation's changes, gathered so they commit in one transaction with their audit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from coordinator.domain import requests as request_rules, workers as worker_rules
from coordinator.domain.fairshare import DEFAULT_HALF_LIFE, Charge
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, SubjectKind, Transition, Worker
from coordinator.domain.states import RequestState
from coordinator.store import Changes

logger = logging.getLogger(__name__)


class Batch:
    """Requests and workers as the operation leaves them, plus a transition per state change.

    Later steps of the same operation read through it (``request``/``worker``), so they
    see what earlier steps decided before anything is committed. ``put_worker`` is the
    only way to change a worker, so a worker that leaves RUN fails its job on every path.
    """

    def __init__(
        self,
        now: datetime,
        actor: str,
        requests: dict[RequestID, Request],
        workers: dict[WorkerUUID, Worker],
        jobs: Mapping[WorkerUUID, RequestID],
        half_life: timedelta = DEFAULT_HALF_LIFE,
    ) -> None:
        self.now = now
        self.half_life = half_life  # of the usage that ended jobs are charged to
        self.actor = actor
        self._base_requests = requests
        self._base_workers = workers
        self._jobs = jobs  # the running request of each worker, as committed
        self.requests: dict[RequestID, Request] = {}
        self.workers: dict[WorkerUUID, Worker] = {}
        self.removed: list[WorkerUUID] = []
        self.transitions: list[Transition] = []

    def request(self, rid: RequestID) -> Request | None:
        return self.requests.get(rid) or self._base_requests.get(rid)

    def worker(self, uuid: WorkerUUID) -> Worker | None:
        return self.workers.get(uuid) or self._base_workers.get(uuid)

    def put_request(self, new: Request, actor: str | None = None) -> None:
        """``actor`` overrides the batch's, for a batch that acts for several users."""
        old = self.request(new.id)
        self.requests[new.id] = new
        if old is None or old.state is not new.state:
            old_state = old.state if old else ""
            self._record("request", str(new.id), old_state, new.state, new.reason, actor)

    def put_worker(self, new: Worker) -> None:
        """Record a worker change; leaving RUN for FAIL or BUSY fails its job
        (docs/boruta-api.md §worker states)."""
        old = self.worker(new.uuid)
        self.workers[new.uuid] = new
        if old is None or old.state is not new.state:
            self._record("worker", new.uuid, old.state if old else "", new.state, new.reason)
        if old is not None and worker_rules.fails_job(old.state, new.state):
            rid = self._jobs.get(new.uuid)
            req = None if rid is None else self.request(rid)
            if req is not None and req.state is RequestState.IN_PROGRESS:
                reason = new.reason or f"worker {new.uuid} left RUNNING for {new.state}"
                self.put_request(request_rules.fail(req, reason))

    def remove_worker(self, old: Worker) -> None:
        self.workers.pop(old.uuid, None)
        self.removed.append(old.uuid)
        self._record("worker", old.uuid, old.state, "", "deregistered")

    def note(self, worker: Worker, reason: str) -> None:
        """An event that changes no state but belongs in the history (a failed healthcheck)."""
        self._record("worker", worker.uuid, worker.state, worker.state, reason)

    def _record(
        self,
        kind: SubjectKind,
        subject: str,
        old: str,
        new: str,
        reason: str,
        actor: str | None = None,
    ) -> None:
        if old != new:
            logger.info(
                "%s %s: %s -> %s %s",
                kind,
                subject,
                old or "(new)",
                new or "(removed)",
                f"({reason})" if reason else "",
            )
        who = self.actor if actor is None else actor
        self.transitions.append(Transition(self.now, kind, subject, old, new, reason, who))

    def charges(self) -> list[Charge]:
        """A charge to its owner's usage for each job that ends here, from its start until
        now (docs/scheduling.md §fair share)."""
        out = []
        for rid, new in self.requests.items():
            old = self._base_requests.get(rid)
            if (
                old is not None
                and old.job is not None
                and old.state is RequestState.IN_PROGRESS
                and new.state is not RequestState.IN_PROGRESS
            ):
                out.append(Charge(old.owner, old.job.started, self.now, self.half_life))
        return out

    def changes(self) -> Changes:
        return Changes(
            requests=list(self.requests.values()),
            workers=list(self.workers.values()),
            removed_workers=list(self.removed),
            transitions=list(self.transitions),
            charges=self.charges(),
        )
