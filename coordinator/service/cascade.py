"""What one change implies for others (docs/boruta-api.md §side effects), added to a batch."""

from __future__ import annotations

from typing import Final

from coordinator.domain import matcher, requests, workers
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState
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
