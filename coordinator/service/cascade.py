"""What one change implies for others (docs/boruta-api.md §side effects), added to a batch."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Generator, Iterable, Mapping
from typing import Final, TypeVar

import anyio
import anyio.lowlevel

from coordinator.domain import matcher, requests, workers
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.domain.timers import Due
from coordinator.service.batch import Batch
from coordinator.service.farm import Farm
from coordinator.service.shares import Shares
from coordinator.wire import HealthReport

NO_WORKER: Final = "no registered worker has these caps and groups"
# States a failed healthcheck or an absent dryad leaves alone: not in service anyway.
OUT_OF_SERVICE: Final = frozenset({WorkerState.MAINTENANCE, WorkerState.BUSY, WorkerState.FAIL})

T = TypeVar("T")


async def stepwise(scan: Generator[None, None, T]) -> T:
    """Run a domain scan that pauses now and then, letting the event loop run other steps
    at each pause (docs/events.md §long steps)."""
    while True:
        try:
            next(scan)
        except StopIteration as done:
            result: T = done.value
            return result
        await anyio.lowlevel.checkpoint()


def finish_job(batch: Batch, req: Request) -> None:
    """A running request ended: its worker goes to PREPARE for a new key."""
    if req.state is not RequestState.IN_PROGRESS or req.job is None:
        return
    worker = batch.worker(req.job.worker)
    if worker is not None and (prepared := workers.finish_job(worker, batch.now)):
        batch.put_worker(prepared)


def fire(batch: Batch, due: Iterable[tuple[Due, RequestID]]) -> list[RequestID]:
    """Timers that are due: a Deadline times a waiting request out, a job timeout ends the
    job; returns the requests whose ValidAfter came (for a matcher pass)."""
    ready: list[RequestID] = []
    for kind, rid in due:
        req = batch.request(rid)
        if req is None:
            continue
        if kind is Due.VALID_AFTER:
            ready.append(rid)
        elif kind is Due.DEADLINE and (timed_out := requests.time_out(req, batch.now)):
            batch.put_request(timed_out)
        elif kind is Due.JOB_TIMEOUT and (ended := requests.expire_job(req, batch.now)):
            batch.put_request(ended)
            finish_job(batch, req)
    return ready


def apply_health(batch: Batch, worker: Worker, report: HealthReport, self_heal: bool) -> None:
    """Healthcheck results: a failed critical check sends a worker in service to FAIL;
    with self-heal, passing checks send a FAILED worker back through PREPARE; otherwise
    the results are noted in the worker's history."""
    failed = report.failed_critical
    if failed and worker.state not in OUT_OF_SERVICE:
        reason = "; ".join(f"healthcheck {c.name} failed: {c.detail}" for c in failed)
        batch.put_worker(workers.set_fail(worker, reason, batch.now))
    elif not failed and self_heal and worker.state is WorkerState.FAIL:
        batch.put_worker(workers.move(worker, WorkerState.PREPARE, batch.now))
    else:
        summary = ", ".join(f"{c.name} {'ok' if c.passed else 'FAILED'}" for c in report.checks)
        batch.note(worker, f"healthcheck: {summary}")


async def invalidate_unsatisfiable(
    farm: Farm, batch: Batch, gone: WorkerUUID | None = None
) -> None:
    """Waiting requests that no registered worker could take any more become INVALID.

    Only a worker removed, or one that lost a cap or a group, can leave a request without
    a worker, and only a request it fitted before: the queue's distinct needs are judged,
    a few hundred per event loop step, not its requests (docs/events.md §long steps).
    """
    everyone = {**farm.workers, **batch.workers}
    before = [farm.workers[gone]] if gone is not None and gone in farm.workers else []
    if gone is not None:
        everyone.pop(gone, None)
    before += [old for old in _lost_something(farm, batch) if old.uuid != gone]
    if not before:
        return
    lost = await stepwise(matcher.stranded(list(farm.queue.needs), before, everyone.values()))
    for rid in farm.queue.wanting(lost):
        req = batch.request(rid)
        if req is not None:
            batch.put_request(requests.invalidate(req, NO_WORKER))


async def _any_fit(
    farm: Farm,
    reqs: Mapping[RequestID, Request],
    fresh: Iterable[RequestID],
    pool: Mapping[WorkerUUID, Worker],
) -> bool:
    """Whether some idle worker fits the need of some waiting request: by the queue's
    distinct needs, not its requests, in short steps (docs/events.md §long steps)."""
    idle = [w for w in pool.values() if w.state is WorkerState.IDLE]
    needs = set(farm.queue.needs)
    needs.update(matcher.need_of(reqs[rid].caps, reqs[rid].groups) for rid in fresh)
    return await stepwise(matcher.fitting_any(needs, idle))


def _lost_something(farm: Farm, batch: Batch) -> list[Worker]:
    """The workers of ``batch`` as they were before it, of those that lost a cap or a group
    (a new worker, or one that only gained some, takes no request away)."""
    lost = []
    for uuid, new in batch.workers.items():
        old = farm.workers.get(uuid)
        if old is None:
            continue
        if not old.caps.items() <= new.caps.items() or not set(old.groups) <= set(new.groups):
            lost.append(old)
    return lost


async def match_candidates(
    farm: Farm, batch: Batch, ready: Iterable[RequestID], everything: bool, shares: Shares
) -> tuple[dict[WorkerUUID, Worker], Mapping[RequestID, Request], Iterable[RequestID]]:
    """What a matcher pass over ``batch`` considers: the workers as the batch leaves them,
    the requests, and the order of the waiting ones to try (``shares``'s policy).

    That is the batch's waiting requests and ``ready`` ones (ValidAfter reached), or the
    whole queue when a worker became IDLE, ``everything`` is set, or (with quotas) a job
    ended, which may take its owner back under their limit (docs/scheduling.md §quotas).
    """
    reqs = ChainMap(batch.requests, farm.requests)
    fresh = {rid for rid, r in batch.requests.items() if r.state is RequestState.WAITING}
    fresh.update(rid for rid in ready if reqs[rid].state is RequestState.WAITING)
    whole_queue = (
        everything
        or any(w.state is WorkerState.IDLE for w in batch.workers.values())
        or (farm.quotas and batch.charges())
    )
    if not fresh and not whole_queue:
        return {}, reqs, ()  # nothing to match: no copy of every worker for it
    pool = {**farm.workers, **batch.workers}
    for uuid in batch.removed:
        pool.pop(uuid, None)
    if whole_queue:
        if not await _any_fit(farm, reqs, fresh, pool):
            return pool, reqs, ()  # the pass would walk the whole queue to assign nothing
        if not fresh:
            return pool, reqs, shares.order(farm, reqs, None, batch.now)
        fresh.update(farm.queue)
    return pool, reqs, shares.order(farm, reqs, fresh, batch.now)
