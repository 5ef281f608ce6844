"""What one change implies for others (docs/boruta-api.md §side effects), added to a batch."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping
from typing import Final

from coordinator.domain import matcher, requests, workers
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.service.batch import Batch
from coordinator.service.farm import Farm

NO_WORKER: Final = "no registered worker has these caps and groups"


def finish_job(batch: Batch, req: Request) -> None:
    """A running request ended: its worker goes to PREPARE for a new key."""
    if req.state is not RequestState.IN_PROGRESS or req.job is None:
        return
    worker = batch.worker(req.job.worker)
    if worker is not None and (prepared := workers.finish_job(worker, batch.now)):
        batch.put_worker(prepared)


def invalidate_unsatisfiable(farm: Farm, batch: Batch, gone: WorkerUUID | None = None) -> None:
    """Waiting requests that no registered worker could take any more become INVALID."""
    everyone = {**farm.workers, **batch.workers}
    if gone is not None:
        everyone.pop(gone, None)
    waiting = [batch.request(rid) for rid in farm.queue]
    for req in matcher.unsatisfiable([r for r in waiting if r], everyone.values()):
        batch.put_request(requests.invalidate(req, NO_WORKER))


def match_candidates(
    farm: Farm, batch: Batch, ready: Iterable[RequestID], everything: bool
) -> tuple[dict[WorkerUUID, Worker], Mapping[RequestID, Request], Iterable[RequestID]]:
    """What a matcher pass over ``batch`` considers: the workers as the batch leaves them,
    the requests, and the order of the waiting ones to try.

    That is the batch's waiting requests and ``ready`` ones (ValidAfter reached), or the
    whole queue when a worker became IDLE or ``everything`` is set.
    """
    pool = {**farm.workers, **batch.workers}
    for uuid in batch.removed:
        pool.pop(uuid, None)
    reqs = ChainMap(batch.requests, farm.requests)
    fresh = {rid for rid, r in batch.requests.items() if r.state is RequestState.WAITING}
    fresh.update(rid for rid in ready if reqs[rid].state is RequestState.WAITING)
    if everything or any(w.state is WorkerState.IDLE for w in batch.workers.values()):
        if not fresh:
            return pool, reqs, farm.queue
        fresh.update(farm.queue)
    return pool, reqs, sorted(fresh, key=lambda rid: (reqs[rid].priority, reqs[rid].queued))
